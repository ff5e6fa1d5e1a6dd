"""The poem family: corpora, form measures, the cached transformer, training with held-out
perplexity, export with the key/value cache, and poems streamed from a real Triton server."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from artforge.errors import ArtforgeError
from artforge.families.poem import END, PoemConfig, build_network, encode, make_spec
from artforge.families.poem.corpus import heldout, read_chinese_poetry, read_fortunes, read_text_poems
from artforge.families.poem.form import form_of, form_report, verse_lengths
from artforge.serving.decoding import CachedSteps, ContinuousBatch, Sequence, StreamScheduler, decode, sample_token

VERSE_CHARACTERS = "春风花月夜山水云天江"  # a tiny classical vocabulary for a corpus a model learns in seconds


def jueju(rng: np.random.Generator, length: int) -> str:
    """A four-verse poem of `length`-character verses, two verses a line, as the corpora write them."""
    verse = lambda: "".join(rng.choice(list(VERSE_CHARACTERS), length))  # noqa: E731
    return f"{verse()}，{verse()}。\n{verse()}，{verse()}。"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """300 regular poems (jueju of 5- and 7-character verses) in the training format."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("poems")
    poems = [jueju(rng, 5 if i % 2 else 7) for i in range(300)]
    (folder / "poems.txt").write_text("\n\n".join(poems) + "\n", encoding="utf-8")
    return folder


TINY = dict(context=48, layers=2, heads=2, width=64, batch_size=16, dropout=0.0, lr=3e-3, sample_every=1000,
            checkpoint_every=1000, progress=False, heldout=0.1)


@pytest.fixture(scope="module")
def poem_run(corpus, tmp_path_factory) -> Path:
    from artforge.families.poem.train import train_poem

    run = tmp_path_factory.mktemp("poem-run")
    train_poem(data=str(corpus), out=str(run), steps=800, eval_every=400, **TINY)
    return run


# ---- corpora ----
def test_fortunes_files_lose_titles_authors_and_part_headings(tmp_path):
    colour = "\x1b[32m《送别》\x1b[m\n\x1b[33m作者：王维\x1b[m\n"
    (tmp_path / "tang").write_text(colour + "下马饮君酒，问君何所之。\n%\n"
                                   "\x1b[32m题目:《二首》\x1b[m\n其一\n春云如兽复如禽。\n"
                                   "其二\n日照风吹浅又深。\n%\n", encoding="utf-8")
    assert list(read_fortunes(tmp_path / "tang")) == ["下马饮君酒，问君何所之。", "春云如兽复如禽。\n日照风吹浅又深。"]


def test_chinese_poetry_json_keeps_verses_and_drops_poems_with_lost_characters(tmp_path):
    folder = tmp_path / "dist" / "quantangshi"
    folder.mkdir(parents=True)
    poems = [{"title": "a", "paragraphs": ["秦川雄帝宅，函谷壯皇居。", " 綺殿千尋起，離宮百雉餘。 "]},
             {"title": "b", "paragraphs": ["□□雄帝宅，函谷壯皇居。"]}, {"title": "c", "paragraphs": []}]
    (folder / "poet.tang.0.json").write_text(json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    (folder / "poet.song.0.json").write_text("[]", encoding="utf-8")
    assert list(read_chinese_poetry("poet.tang.*.json")(tmp_path)) == [
        "秦川雄帝宅，函谷壯皇居。\n綺殿千尋起，離宮百雉餘。"]
    with pytest.raises(ArtforgeError, match="no poet.tang.*.json files"):
        list(read_chinese_poetry("poet.tang.*.json")(tmp_path / "elsewhere"))


def test_text_poems_split_on_blank_lines_and_refuse_other_encodings(tmp_path):
    (tmp_path / "a.txt").write_text("Shall I compare thee\r\nto a summer's day?\r\n\r\n \r\nSecond poem\n",
                                    encoding="utf-8")
    assert list(read_text_poems(tmp_path)) == ["Shall I compare thee\nto a summer's day?", "Second poem"]
    (tmp_path / "b.txt").write_bytes("déjà".encode("latin-1"))
    with pytest.raises(ArtforgeError, match="b.txt is not UTF-8 text"):
        list(read_text_poems(tmp_path))


def test_data_poems_writes_the_training_format_or_says_how_to_install(tmp_path, monkeypatch, capsys):
    from artforge.cli import main
    from artforge.families.poem import corpus

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.txt").write_text("one\ntwo\n\nthree\n", encoding="utf-8")
    assert main(["data", "poems", "--source", "english", "--path", str(tmp_path / "src"), "--out",
                 str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "poems.txt").read_text(encoding="utf-8") == "one\ntwo\n\nthree\n"
    assert json.loads((tmp_path / "out" / "source.json").read_text())["poems"] == 2
    monkeypatch.setattr(corpus, "FORTUNES", tmp_path / "nowhere")
    capsys.readouterr()
    assert main(["data", "poems", "--source", "tang300", "--out", str(tmp_path / "t")]) == 1
    assert "install it with 'sudo apt-get install fortunes-zh'" in capsys.readouterr().err


def test_heldout_split_depends_on_the_poem_only():
    poems = [f"poem {i}" for i in range(2000)]
    chosen = {p for p in poems if heldout(p, 0.05)}
    assert chosen == {p for p in reversed(poems) if heldout(p, 0.05)}
    assert 60 < len(chosen) < 140


# ---- form ----
def test_form_counts_han_characters_per_verse():
    assert verse_lengths("床前明月光，疑是地上霜。\n举头望明月，低头思故乡。") == [5, 5, 5, 5]
    assert form_of("床前明月光，疑是地上霜。\n举头望明月，低头思故乡。") == "jueju5"
    assert form_of("床前明月光，疑是地上霜。") is None  # two verses: no regular form
    report = form_report(["床前明月光，疑是地上霜。\n举头望明月，低头思故乡。", "春眠不觉晓，处处闻啼鸟鸟。"])
    assert report["regular"] == 0.5 and report["verses_matching_first"] == 3 / 4


# ---- the network and the decoding loop ----
def test_cached_steps_give_the_logits_of_the_full_forward():
    torch.manual_seed(0)
    config = PoemConfig("".join(VERSE_CHARACTERS) + "，。\n", context=16, layers=2, heads=2, width=32)
    lm = build_network(config).eval()
    tokens = torch.randint(0, len(config.vocab), (1, 12))
    with torch.no_grad():
        full = lm(tokens)[0]
        logits, past = lm.step(tokens[:, :5], lm.empty_cache())
        assert torch.allclose(logits[0], full[4], atol=1e-5)
        for i in range(5, 12):
            logits, past = lm.step(tokens[:, i:i + 1], past)
            assert torch.allclose(logits[0], full[i], atol=1e-5)
    assert past.shape == (1, 2, 2, 2, 12, 16)


def test_long_sequences_are_scored_in_overlapping_windows_each_token_once():
    from artforge.families.transformer import scoring_windows

    ids = list(range(23))
    windows = scoring_windows(ids, span=8)
    scored = [w[1 + j] for w, first in windows for j in range(first, len(w) - 1)]
    assert scored == ids[1:]  # every token but the first is a target exactly once, in order
    assert all(len(w) <= 8 for w, _ in windows) and all(first <= 4 for w, first in windows[1:])
    assert scoring_windows(ids[:5], span=8) == [(ids[:5], 0)]


def test_cached_stepper_prefills_once_then_feeds_one_token_and_restarts_when_full():
    fed = []

    def step(new, past):
        fed.append(new.shape[1])
        return np.zeros((1, 4)), np.zeros((1, past.shape[1] + new.shape[1]))

    steps = CachedSteps(step, np.zeros((1, 0)), max_context=8)
    list(decode(steps, [1, 2, 3], max_tokens=10, temperature=0, top_k=0, seed=0))
    # prompt 3, then one at a time up to 8 in the cache; the 9th restarts from the latest 4
    assert fed == [3, 1, 1, 1, 1, 1, 4, 1, 1, 1]


def tiny_lm() -> tuple[torch.nn.Module, PoemConfig]:
    torch.manual_seed(0)
    config = PoemConfig("".join(VERSE_CHARACTERS) + "，。\n", context=16, layers=2, heads=2, width=32)
    return build_network(config).eval(), config


def numpy_step(lm, sizes: list[int] | None = None):
    """lm.step over numpy (tokens, past, cached), recording each call's batch size in `sizes`."""
    def step(tokens, past, cached):
        if sizes is not None:
            sizes.append(tokens.shape[0])
        with torch.no_grad():
            logits, present = lm.step(*(torch.from_numpy(a) for a in (tokens, past, cached)))
        return logits.numpy(), present.numpy()
    return step


def test_a_row_padded_at_the_front_gets_the_logits_it_gets_alone():
    lm, config = tiny_lm()
    tokens = torch.randint(0, len(config.vocab), (2, 9))
    with torch.no_grad():
        _, long_past = lm.step(tokens[:1, :8], lm.empty_cache())  # 8 cached tokens
        _, short_past = lm.step(tokens[1:, :3], lm.empty_cache())  # 3 cached tokens
        alone = [lm.step(tokens[:1, 8:], long_past)[0], lm.step(tokens[1:, 3:4], short_past)[0]]
        padded = torch.cat([long_past, torch.cat([torch.randn(1, 2, 2, 2, 5, 16), short_past], dim=4)])
        together, present = lm.step(torch.stack([tokens[0, 8:], tokens[1, 3:4]]), padded, torch.tensor([[8], [3]]))
    # the padding is random on purpose: masked out, it cannot matter
    assert torch.allclose(together[0], alone[0][0], atol=1e-5) and torch.allclose(together[1], alone[1][0], atol=1e-5)
    assert present.shape == (2, 2, 2, 2, 9, 16)


def alone_tokens(lm, prompt, seed, max_tokens, eos=None):
    steps = CachedSteps(lambda new, past: numpy_step(lm)(new, past, np.full((1, 1), past.shape[4], np.int64)),
                        lm.empty_cache().numpy(), lm.context)
    return list(decode(steps, prompt, max_tokens, 1.0, 0, seed, eos=eos))


def test_streams_decoded_as_one_batch_write_what_each_writes_alone():
    lm, config = tiny_lm()
    prompts = [[END, 3, 4], [END], [END, 5, 6, 7, 8, 9, 2, 4, 5]]
    sequences = [Sequence(p, 40, 1.0, 0, seed=10 + i) for i, p in enumerate(prompts)]
    sizes = []
    batch = ContinuousBatch(numpy_step(lm, sizes), lm.empty_cache().numpy(), lm.context, axis=4)
    written = {id(s): [] for s in sequences}
    written[id(sequences[0])].append(batch.join(sequences[0]))
    for step in range(60):  # the others join later, at different lengths; 40 tokens pass the context twice
        if step in (3, 7):
            sequence = sequences[1 if step == 3 else 2]
            written[id(sequence)].append(batch.join(sequence))
        for sequence, token in batch.advance():
            written[id(sequence)].append(token)
    for i, sequence in enumerate(sequences):
        assert written[id(sequence)] == alone_tokens(lm, prompts[i], 10 + i, 40)
    assert max(sizes) == 3 and not batch.rows and batch.past is None  # finished streams left the batch


def test_scheduler_batches_concurrent_streams_and_lets_a_cancelled_one_go():
    import threading

    lm, config = tiny_lm()
    sizes = []
    scheduler = StreamScheduler(ContinuousBatch(numpy_step(lm, sizes), lm.empty_cache().numpy(), lm.context, 4),
                                max_streams=3, cancel_check_s=0)  # asked every step
    results, done = {}, threading.Event()

    def start(key, prompt, seed, cancel_after=None):
        tokens = results.setdefault(key, [])

        def end(error):
            results[key + "-end"] = error
            if sum(k.endswith("-end") for k in results) == 5:
                done.set()
        scheduler.submit(Sequence(prompt, 30, 1.0, 0, seed), tokens.append, end,
                         lambda: cancel_after is not None and len(tokens) >= cancel_after)

    try:
        for i in range(4):
            start(f"s{i}", [END, 2 + i], seed=i)
        start("cancelled", [END], seed=9, cancel_after=5)
        assert done.wait(60), "the decoding thread did not finish the streams"
    finally:
        scheduler.close()
    for i in range(4):
        assert results[f"s{i}"] == alone_tokens(lm, [END, 2 + i], i, 30) and results[f"s{i}-end"] is None
    assert results["cancelled-end"] == "cancelled" and 5 <= len(results["cancelled"]) < 30
    assert max(sizes) == 3  # never more than max_streams at once; the 4th and 5th waited their turn


def test_a_failed_batched_step_ends_every_stream_in_it_with_the_reason():
    import threading

    lm, _ = tiny_lm()
    good = numpy_step(lm)

    def fails_when_batched(tokens, past, cached):
        if tokens.shape[0] > 1:
            raise RuntimeError("out of memory")
        return good(tokens, past, cached)

    scheduler = StreamScheduler(ContinuousBatch(fails_when_batched, lm.empty_cache().numpy(), lm.context, 4), 4)
    ends, both = [], threading.Event()

    def end(error):
        ends.append(error)
        if len(ends) == 2:
            both.set()
    try:
        for seed in (1, 2):  # endless: the two are certainly decoded together at some step
            scheduler.submit(Sequence([END], 10**9, 1.0, 0, seed), lambda token: None, end)
        assert both.wait(60)
        assert ends == ["inference failed: out of memory"] * 2
        last, over = [], threading.Event()
        scheduler.submit(Sequence([END], 3, 0.0, 0, 0), last.append, lambda error: (last.append(error), over.set()))
        assert over.wait(60) and len(last) == 4 and last[-1] is None  # the thread goes on serving
    finally:
        scheduler.close()


def test_outbox_sends_queued_tokens_of_a_stream_together_and_marks_a_gone_client():
    import threading

    from artforge.serving.decoding import Outbox, coalesce

    assert coalesce([("a", 1, None), ("b", 7, None), ("a", 2, None), ("a", None, ""), ("b", 8, None)]) == [
        ("a", [1, 2], ""), ("b", [7, 8], None)]
    sent, entered, gate, ended = [], threading.Event(), threading.Event(), threading.Event()

    def send_tokens(key, tokens):
        entered.set()
        gate.wait(10)  # the first response is slow: what comes meanwhile queues up
        if key == "gone":
            raise ConnectionError("client went away")
        sent.append((key, tokens))

    outbox = Outbox(send_tokens, lambda key, error: (sent.append((key, "end", error)), ended.set()))
    try:
        outbox.token("a", 1)
        assert entered.wait(10)
        for token in (2, 3, 4):
            outbox.token("a", token)
        outbox.token("gone", 9)
        outbox.end("a", None)
        gate.set()
        assert ended.wait(10)
        for _ in range(100):
            if "gone" in outbox.broken:
                break
            threading.Event().wait(0.01)
    finally:
        outbox.close()
    assert sent[0] == ("a", [1]) and sent[1:] == [("a", [2, 3, 4]), ("a", "end", None)]
    assert outbox.broken == {"gone"}  # the decoder drops that stream at its next step


def test_top_p_samples_only_the_nucleus():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(0)
    drawn = {sample_token(logits, 1.0, 0, rng, top_p=0.7) for _ in range(300)}
    assert drawn == {0, 1}  # 0.5 + 0.3 reaches 0.7: the two likeliest
    assert {sample_token(logits, 1.0, 0, rng, top_p=0.0) for _ in range(20)} == {0}
    assert len({sample_token(logits, 1.0, 0, rng) for _ in range(300)}) == 4


def test_spec_traces_prefill_and_decode_cases_within_the_context():
    spec = make_spec(PoemConfig("ab", context=16, layers=1, heads=1, width=8))
    prefill = spec.sample_inputs(2, 0, {"length": 16, "past_length": 0})
    decode_one = spec.sample_inputs(1, 0, {"length": 8, "past_length": 15})
    assert prefill["past"].shape == (2, 1, 2, 1, 0, 8) and prefill["tokens"].shape == (2, 16)
    assert decode_one["tokens"].shape == (1, 1)  # cut so positions stay inside the context
    assert spec.stream.bos == END and spec.stream.encode("ab").tolist() == [[END, 2, 3]]


# ---- training, export, serving ----
def test_training_learns_the_form_and_logs_heldout_perplexity(poem_run):
    from artforge.registry import load_network
    from artforge.families.poem.train import write_poems

    records = [json.loads(line) for line in (poem_run / "log.jsonl").read_text().splitlines()]
    curve = [r["heldout_perplexity"] for r in records if "heldout_perplexity" in r]
    # from about the vocabulary size (15) to near the corpus's own entropy (random verses of 10 characters: ~6.5)
    assert len(curve) == 3 and curve[0] > 12 and curve[-1] < 8
    lm, checkpoint = load_network(poem_run)
    config = PoemConfig(**checkpoint.meta["config"])
    poems = write_poems(lm, config, count=8, seed=0, temperature=0.8)
    assert form_report(poems)["verses_matching_first"] > 0.8 and form_report(poems)["regular"] >= 0.75
    assert checkpoint.meta["training"]["heldout_poems"] > 0


def test_export_serves_a_stream_identical_to_pytorch(poem_run, tmp_path, capsys):
    from artforge.cli import main
    from artforge.export.pipeline import export_checkpoint
    from artforge.registry import load_network
    from artforge.families.poem.train import write_poems
    from artforge.serving.client import Client
    from artforge.serving.server import Server

    result = export_checkpoint(poem_run, tmp_path / "repo", max_batch=4)
    cases = {(r.batch, tuple(sorted(r.sizes.items()))) for r in result.parity}
    assert any(dict(sizes)["past_length"] == 0 for _, sizes in cases)  # prefill from an empty cache
    assert all(r.ok for r in result.parity)
    lm, checkpoint = load_network(poem_run)
    config = PoemConfig(**checkpoint.meta["config"])
    greedy = write_poems(lm, config, 1, 0, prompt="春风", max_tokens=60, temperature=0)[0]
    with torch.no_grad():  # the full forward, no cache: what the cache must reproduce
        ids = [END] + encode(config, "春风")
        for _ in range(60):
            ids.append(int(lm(torch.tensor([ids[-config.context:]]))[0, -1].argmax()))
            if ids[-1] == END:
                break
    assert greedy == "春风" + "".join(config.vocab[i] for i in ids[3:])
    with Server(tmp_path / "repo", grpc_port=0, http_port=0, metrics_port=0) as server:
        with Client(server.grpc_url, timeout_s=30) as client:
            pieces = list(client.stream_text("poem", "春风", max_tokens=60, temperature=0))
            sampled = "".join(client.stream_text("poem", "", max_tokens=60, temperature=0.8, top_p=0.9, seed=5))
        # streamed as made: one response per character, or the few made while the last response went out
        # (how many depends on the machine's load; the Outbox test checks the rule itself). The end
        # token's text is empty, so a response holding only it is an empty piece.
        assert "春风" + "".join(pieces) == greedy
        assert sampled == write_poems(lm, config, 1, 5, max_tokens=60, temperature=0.8, top_p=0.9)[0]
        # concurrent streams decode as one batch on the server (padded caches): each writes what it writes alone
        assert concurrent_poems(server.grpc_url, seeds=range(6)) == write_poems(lm, config, 6, 0, max_tokens=60)
        with Client(server.grpc_url, timeout_s=30) as client:  # a stream left early leaves the batch
            for i, _ in enumerate(client.stream_text("poem", "", max_tokens=1000, temperature=1.0)):
                if i == 3:
                    break
        assert server.check_health() == {}
        capsys.readouterr()
        assert main(["write", "--model", "poem", "--prompt", "春风", "--max-tokens", "60", "--temperature", "0",
                     "--url", server.grpc_url]) == 0
        assert capsys.readouterr().out == greedy + "\n"
        assert main(["write", "--model", "poem", "--prompt", "xyz", "--url", server.grpc_url]) == 1
        assert "characters the model does not know: 'xyz'" in capsys.readouterr().err
        assert main(["write", "--model", "poem", "--max-tokens", "60", "--seed", "5", "--temperature", "0.8",
                     "--top-p", "0.9", "--count", "2", "--url", server.grpc_url]) == 0
        served_two = capsys.readouterr().out
    # in-process from the checkpoint (--run): what the server writes, and what the library writes
    assert main(["write", "--run", str(poem_run), "--prompt", "春风", "--max-tokens", "60", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == greedy + "\n"
    assert main(["write", "--run", str(poem_run), "--max-tokens", "60", "--seed", "5", "--temperature", "0.8",
                 "--top-p", "0.9", "--count", "2"]) == 0
    assert capsys.readouterr().out == served_two
    assert served_two.startswith(sampled + "\n\n")  # seed 5 first, as the library wrote it above


def concurrent_poems(url: str, seeds) -> list[str]:
    """One poem per seed (60 characters at most, temperature 0.8, top-p 0.9), each from its own client
    thread, all streaming at once."""
    from concurrent.futures import ThreadPoolExecutor

    from artforge.serving.client import Client

    def poem(seed: int) -> str:
        with Client(url, timeout_s=30) as client:
            return "".join(client.stream_text("poem", "", max_tokens=60, temperature=0.8, top_p=0.9, seed=seed))
    with ThreadPoolExecutor(len(seeds)) as pool:
        return list(pool.map(poem, seeds))


def test_onnx_step_decodes_padded_batches_like_pytorch_one_stream_at_a_time(poem_run, tmp_path):
    from artforge.export.parity import onnx_session
    from artforge.export.pipeline import export_checkpoint
    from artforge.registry import load_network
    from artforge.serving.decoding import continuous_batch

    result = export_checkpoint(poem_run, tmp_path / "repo", max_batch=4)
    config_text = (result.version_dir.parent / "config.pbtxt").read_text()
    assert 'key: "artforge.max_streams"' in config_text and 'string_value: "4"' in config_text
    lm, checkpoint = load_network(poem_run)
    stream = make_spec(PoemConfig(**checkpoint.meta["config"])).stream.to_json()
    batch = continuous_batch(onnx_session(result.version_dir / "model.onnx").run, stream)
    prompts = [[END], [END, 5, 6, 7], [END, 9]]
    sequences = [Sequence(p, 70, 1.0, 0, seed=i) for i, p in enumerate(prompts)]  # no eos: past the context
    written = {id(s): [batch.join(s)] for s in sequences[:2]}
    for step in range(200):
        if step == 4:
            written[id(sequences[2])] = [batch.join(sequences[2])]
        for sequence, token in batch.advance():
            written[id(sequence)].append(token)
    for i, sequence in enumerate(sequences):  # 70 tokens pass the context (48): restarts included
        assert written[id(sequence)] == alone_tokens(lm, prompts[i], i, 70) and len(written[id(sequence)]) == 70


def test_benchmark_serves_streams_with_and_without_continuous_batching(poem_run, tmp_path):
    """Also with perf_analyzer --streaming beside each point, where it is installed (CI: always)."""
    from artforge.benchmarks.run import run_benchmark

    from tests.perf_analyzer_here import perf_analyzer_here

    analyzer = perf_analyzer_here()[0] is not None
    document = run_benchmark(checkpoint=str(poem_run), out=str(tmp_path / "bench"), concurrency=[1, 4], requests=8,
                             prompt_length=4, max_tokens=12, max_batch=4, progress=False, perf_analyzer=analyzer)
    variants = {p["variant"] for p in document["triton"]}
    assert variants == {"one stream per instance", "continuous batching"}
    batched = document["variants"]["continuous batching"]
    assert batched["instances"] == 1 and batched["max_batch"] == 4  # one instance decodes up to 4 streams a step
    assert document["variants"]["one stream per instance"]["max_batch"] == 1
    tokens = {(p["variant"], p["concurrency"]): p["tokens"] for p in document["triton"]}
    for point in document["triton"]:
        assert point["errors"] == 0 and point["requests"] == 8 and 8 <= point["tokens"] <= 96
        assert point["tokens_per_s"] == pytest.approx(point["tokens"] / point["seconds"])
        # the same seeded requests: a batched step writes, token for token, what one stream at a time writes
        assert point["tokens"] == tokens["one stream per instance", point["concurrency"]]
    by = {(p["variant"], p["concurrency"]): p["tokens_per_s"] for p in document["triton"]}
    assert document["ratios"]["continuous_batching_speedup_at_4_streams"] == pytest.approx(
        by["continuous batching", 4] / by["one stream per instance", 4])
    assert "Triton gRPC, continuous batching | 4 |" in (tmp_path / "bench" / "bench.md").read_text()
    if analyzer:  # its first-response latency and streams/s of the same points, and the ratio to ours
        theirs = {(p["variant"], p["concurrency"]): p for p in document["perf_analyzer"]["points"]}
        assert set(theirs) == {(v, c) for v in variants for c in (1, 4)}
        assert all("error" not in p and p["throughput"] > 0 for p in theirs.values()), theirs
        first = {p["variant"]: p["first_token_ms"]["p50"] for p in document["triton"] if p["concurrency"] == 1}
        assert document["ratios"]["artforge_first_token_over_perf_analyzer_continuous_batching"] == pytest.approx(
            first["continuous batching"] / theirs["continuous batching", 1]["p50_ms"])
        assert "perf_analyzer --streaming" in (tmp_path / "bench" / "bench.md").read_text()



def test_evaluate_reports_perplexity_form_and_copied_verses(poem_run, tmp_path):
    from artforge.cli import main

    assert main(["evaluate", str(poem_run), "--count", "6", "--out", str(tmp_path / "eval")]) == 0
    document = json.loads((tmp_path / "eval" / "evaluate.json").read_text())
    assert 1 < document["heldout_perplexity"] < 8
    assert document["written"]["poems"] == 6 and document["real"]["form"]["regular"] == 1.0
    assert 0 <= document["written"]["verses_copied"] <= 1
    assert "Held-out perplexity per character" in (tmp_path / "eval" / "evaluate.md").read_text()
