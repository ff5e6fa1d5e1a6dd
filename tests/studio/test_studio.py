"""artforge studio in a real browser (Debian's chromium driven by Playwright) and through gradio_client, over
a real Triton serving a DCGAN, a two-style transfer network, a diffusion model, a poem model and a music
model: what the page shows must equal what the command-line clients return for the same seed and inputs."""
from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artforge.imaging import make_grid

pytest.importorskip("gradio", reason="the studio extra (pip install -e '.[studio]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def token_runs(art32, tmp_path_factory) -> dict[str, Path]:
    """A tiny poem model, music model, critic, restorer, StyleGAN2 and translator (quality is not the point:
    the page must equal the CLI)."""
    from artforge.families.critic.train import train_critic
    from artforge.families.restore.train import train_restore
    from artforge.families.music.train import train_music
    from artforge.families.poem.train import train_poem
    from tests.families.test_critic import TINY_CRITIC
    from tests.families.test_music import scale_piece, write_midi_file
    from tests.families.test_restore import TINY_RESTORE
    from tests.families.test_poem import TINY, jueju
    from artforge.families.stylegan.train import train_stylegan
    from artforge.families.translate.train import train_translate
    from tests.families.test_stylegan import TINY_STYLEGAN
    from tests.families.test_translate import TINY_TRANSLATE

    data = tmp_path_factory.mktemp("token-data")
    rng = np.random.default_rng(0)
    (data / "poems").mkdir()
    (data / "poems" / "poems.txt").write_text("\n\n".join(jueju(rng, 5) for _ in range(100)) + "\n", encoding="utf-8")
    (data / "midi").mkdir()
    for i in range(12):
        write_midi_file(data / "midi" / f"piece{i:02d}.mid", scale_piece(i))
    runs = {"poem": data / "poem-run", "music": data / "music-run", "critic": data / "critic-run",
            "restore": data / "restore-run", "stylegan": data / "stylegan-run", "translate": data / "translate-run"}
    train_stylegan(data=str(art32), out=str(runs["stylegan"]), steps=2, **TINY_STYLEGAN)
    train_translate(out=str(runs["translate"]), steps=2, **TINY_TRANSLATE)
    train_critic(out=str(runs["critic"]), steps=4, **TINY_CRITIC)
    train_restore(out=str(runs["restore"]), steps=4, **TINY_RESTORE)
    train_poem(data=str(data / "poems"), out=str(runs["poem"]), steps=60, eval_every=60, **TINY)
    train_music(data=str(data / "midi"), out=str(runs["music"]), steps=120, eval_every=120, context=64, layers=2,
                heads=2, width=64, batch_size=16, dropout=0.0, lr=3e-3, transpose=1, heldout=0.15,
                sample_every=1000, checkpoint_every=1000, progress=False)
    return runs


@pytest.fixture(scope="module")
def studio_triton(dcgan_run, style_run, diffusion_run, token_runs, tmp_path_factory):
    """One Triton serving 'dcgan', 'stylize' (2 styles), 'diffusion', 'poem', 'music', 'critic', 'restore',
    'stylegan' and 'translate'."""
    from artforge.export.pipeline import export_checkpoint
    from artforge.serving.server import Server

    repo = tmp_path_factory.mktemp("studio-repo")
    export_checkpoint(dcgan_run, repo, name="dcgan", max_batch=8)
    export_checkpoint(style_run[0], repo, name="stylize", max_batch=4)
    export_checkpoint(diffusion_run, repo, name="diffusion", max_batch=8)
    export_checkpoint(token_runs["poem"], repo, name="poem", max_batch=2)
    export_checkpoint(token_runs["music"], repo, name="music", max_batch=2)
    export_checkpoint(token_runs["critic"], repo, name="critic", max_batch=2)
    export_checkpoint(token_runs["restore"], repo, name="restore", max_batch=2)
    export_checkpoint(token_runs["stylegan"], repo, name="stylegan", max_batch=8)
    export_checkpoint(token_runs["translate"], repo, name="translate", max_batch=2)
    with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server:
        yield server


@pytest.fixture(scope="module")
def studio(studio_triton, tmp_path_factory):
    """The studio on a free port of 127.0.0.1 (with one bench report), and its address."""
    from artforge.studio.app import launch
    from artforge.serving.server import free_port

    bench = tmp_path_factory.mktemp("bench")
    (bench / "run1").mkdir()
    (bench / "run1" / "bench.json").write_text('{"ratios": {"x": 1}}')
    (bench / "run1" / "bench.md").write_text("# a bench report\n\n| ratio | value |\n|---|---|\n| x | 1.000 |\n")
    app, address = launch(studio_triton.grpc_url, "127.0.0.1", free_port(), bench, block=False)
    yield address.rstrip("/")
    app.close()


def cli_grid(url: str, model: str, count: int, seed: int, controls: dict | None = None, label=None) -> np.ndarray:
    """What `artforge generate` puts in its grid for the same request (before enlarging)."""
    from artforge.families.generate import generate
    from artforge.serving.client import Client
    from artforge.serving.generators import remote_generator

    with Client(url) as client:
        images = generate(remote_generator(client, model), count, seed, label, controls)
    return make_grid(images, count if label is not None else min(count, 8))


def cli_forming(url: str, model: str, count: int, seed: int, controls: dict) -> np.ndarray:
    """The frames `artforge generate --previews-gif` writes (before enlarging): one grid per preview step."""
    from artforge.families.generate import PreviewFrames, generate
    from artforge.serving.client import Client
    from artforge.serving.generators import remote_generator

    frames = PreviewFrames(count, min(count, 8))
    with Client(url) as client:
        generate(remote_generator(client, model), count, seed, None, controls, frames.on_event)
    return frames.frames()


def shrunk(picture: np.ndarray, side: int) -> np.ndarray:
    """Undo the studio's whole-pixel enlargement (128 // side)."""
    factor = max(1, 128 // side)
    return picture[::factor, ::factor]


def test_studio_api_gives_what_the_command_line_gives(studio, studio_triton, tmp_path, capsys):
    from gradio_client import Client as StudioClient, handle_file

    from artforge.families.restore.client import restore_image
    from artforge.serving.client import Client

    api = StudioClient(studio, verbose=False)
    grid_file, message = api.predict("all in turn", 6, 7, api_name="/dcgan_generate")
    assert message == ""
    shown = np.asarray(Image.open(grid_file).convert("RGB"))
    np.testing.assert_array_equal(shrunk(shown, 32), cli_grid(studio_triton.grpc_url, "dcgan", 6, 7))

    walk_file, message = api.predict(6, 3, "all in turn", 7, api_name="/dcgan_walk")
    cli_output(capsys, "generate", "--model", "dcgan", "--url", studio_triton.grpc_url, "--interpolate", "6",
               "--walk-points", "3", "--seed", "7", "--out", str(tmp_path / "walk.gif"))
    assert message == "" and Path(walk_file).read_bytes() == (tmp_path / "walk.gif").read_bytes()

    grid_file, forming, _ = api.predict("all in turn", 3, 5, 4, 2.0, "ddim", 0, api_name="/diffusion_generate")
    shown = np.asarray(Image.open(grid_file).convert("RGB"))
    want = cli_grid(studio_triton.grpc_url, "diffusion", 3, 5, {"steps": 4, "guidance": 2.0, "sampler": 0})
    np.testing.assert_array_equal(shrunk(shown, 16), want)
    assert forming == []  # no previews asked: nothing forms
    _, _, message = api.predict("all in turn", 2, 5, 4, 2.0, "ddim", 0, api_name="/diffusion_generate")
    assert message == ""
    grid_file, forming, _ = api.predict("all in turn", 3, 5, 4, 2.0, "ddim", 1, api_name="/diffusion_generate")
    np.testing.assert_array_equal(shrunk(np.asarray(Image.open(grid_file).convert("RGB")), 16), want)
    frames = [np.asarray(Image.open(item["image"]).convert("RGB")) for item in forming]  # every preview step's grid
    for frame, cli_frame in zip(frames, cli_forming(studio_triton.grpc_url, "diffusion", 3, 5,
                                                    {"steps": 4, "guidance": 2.0, "sampler": 0, "previews": 1}),
                                strict=True):
        np.testing.assert_array_equal(shrunk(frame, 16), cli_frame)

    # StyleGAN2's style mixing: the grid `artforge generate --mixing-grid 2x3 --mix-from 2` writes
    cli_output(capsys, "generate", "--model", "stylegan", "--url", studio_triton.grpc_url, "--mixing-grid", "2x3",
               "--mix-from", "2", "--seed", "4", "--out", str(tmp_path / "mixing.png"))
    with Client(studio_triton.grpc_url) as client:
        from artforge.studio.pages import mixing_layers

        layer = mixing_layers(client.model("stylegan"))[2]
    mixed, message = api.predict(2, 3, layer, "all in turn", 4, 1.0, 4, api_name="/stylegan_mix")
    assert message == "" and layer.startswith("2: ")
    np.testing.assert_array_equal(np.asarray(Image.open(mixed).convert("RGB")),
                                  np.asarray(Image.open(tmp_path / "mixing.png").convert("RGB")))

    # the music page runs `compose` itself: bars, seed, temperature, top k, top p, bpm, program
    cli_output(capsys, "compose", "--model", "music", "--url", studio_triton.grpc_url, "--bars", "3", "--seed", "4",
               "--bpm", "120", "--out", str(tmp_path / "cli.mid"))
    picture, _, files, message = api.predict(3, 4, 1.0, 0, 0.95, 120, 0, api_name="/music_compose")
    midi = [Path(f) for f in files if str(f).endswith(".mid")]
    assert len(midi) == 1 and midi[0].read_bytes() == (tmp_path / "cli.mid").read_bytes()
    assert Path(picture).suffix == ".png" and (message == "") == can_render_audio()
    _, _, _, message = api.predict(0, 4, 1.0, 0, 0.95, 120, 0, api_name="/music_compose")
    assert message.startswith("**Not done:** --bars must be at least 1")

    # the critic's probabilities as one bar per label, its OOD score as a number: what the server answers
    photo = (np.random.default_rng(5).random((40, 36, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    plot, _, ood, message = api.predict(handle_file(str(tmp_path / "photo.png")), api_name="/critic_run")
    with Client(studio_triton.grpc_url) as client:
        info = client.model("critic")
        want = client.infer("critic", {"image": photo[None]})
    bars = {label: value for label, value in plot["data"]}
    assert list(bars) == [str(label) for label in info.metadata["labels"]]
    np.testing.assert_allclose(list(bars.values()), want["probabilities"][0], rtol=1e-6)
    np.testing.assert_allclose(ood, want["ood_score"][0], rtol=1e-6)

    # a mask drawn on the restore page's picture: the stroke layer's opaque pixels are the mask sent
    layer = np.zeros((40, 36, 4), np.uint8)
    layer[10:20, 5:30] = (255, 0, 0, 255)
    Image.fromarray(layer).save(tmp_path / "stroke.png")
    editor = {"background": handle_file(str(tmp_path / "photo.png")),
              "layers": [handle_file(str(tmp_path / "stroke.png"))], "composite": None}
    restored, sent, message = api.predict(editor, api_name="/restore_run")
    assert message == ""
    mask = np.asarray(Image.open(sent).convert("L")) // 255
    assert mask.sum() == 10 * 25 and mask[10:20, 5:30].all()
    with Client(studio_triton.grpc_url) as client:
        want = restore_image(client, "restore", photo, mask)
    np.testing.assert_array_equal(np.asarray(Image.open(restored).convert("RGB")), want)


def test_studio_pages_come_from_the_contracts(studio_triton):
    from artforge.serving.client import Client
    from artforge.studio import pages

    with Client(studio_triton.grpc_url) as client:
        kinds = {name: pages.page_kind(client.model(name)) for name in client.models()}
        fields = pages.form_fields(client.model("stylize"))
        controls = {c.name: c for c in pages.generator_controls(client.model("diffusion"))}
    assert kinds == {"dcgan": "generator", "diffusion": "generator", "stylize": "form", "poem": "stream",
                     "music": "command", "critic": "form", "restore": "form", "stylegan": "generator",
                     "translate": "form"}  # music offers `compose` as its page
    assert [(f.tensor.name, f.kind) for f in fields] == [("content", "picture"), ("style_weights", "mix")]
    assert controls["steps"].maximum == 200 and controls["sampler"].choices == ["ddim", "dpmpp_2m"]
    with Client(studio_triton.grpc_url) as client:  # a walk moves noise inputs: a diffusion model has none
        assert pages.can_walk(client.model("dcgan")) and not pages.can_walk(client.model("diffusion"))
        # previews every step of 4: the grid at steps 1, 2 and 3 as the pictures form, at 4, then the final grid
        grids = list(pages.generator_grids(client, "diffusion", None, 3, 5,
                                           {"steps": 4, "guidance": 2.0, "sampler": 0, "previews": 1}))
    want = cli_grid(studio_triton.grpc_url, "diffusion", 3, 5, {"steps": 4, "guidance": 2.0, "sampler": 0})
    assert len(grids) == 5 and not np.array_equal(grids[0].grid, grids[-1].grid)
    np.testing.assert_array_equal(shrunk(grids[-1].grid, 16), want)
    assert len(grids[-1].forming) == 4 and [len(g.forming) for g in grids[:-1]] == [1, 2, 3, 4]  # steps 1 to 4
    np.testing.assert_array_equal(grids[-1].forming[0], grids[0].grid)  # the first preview stays in view
    with Client(studio_triton.grpc_url) as client:
        restore = pages.form_fields(client.model("restore"))
        poem = pages.stream_defaults(client.model("poem"))
    assert poem == {"max_tokens": 200, "temperature": 0.8, "top_k": 0, "top_p": 0.9}  # `artforge write`'s
    assert [(f.tensor.name, f.kind, f.over) for f in restore] == [("image", "picture", ""), ("mask", "mask", "image")]
    with Client(studio_triton.grpc_url) as client:  # a translation's direction by name, as `translate --direction`
        translate = pages.form_fields(client.model("translate"))
        assert pages.can_mix(client.model("stylegan")) and not pages.can_mix(client.model("dcgan"))
    assert [(f.tensor.name, f.kind, f.labels) for f in translate] == [
        ("image", "picture", []), ("direction", "labels", ["grid2waves", "waves2grid"])]


def test_a_long_running_studio_keeps_only_its_latest_request_folders(tmp_path):
    from artforge.studio.pages import RequestFolders

    folders = RequestFolders(tmp_path / "given", keep=3)
    (tmp_path / "given").mkdir()
    made = [folders.new("walk-") for _ in range(5)]
    assert [f.exists() for f in made] == [False, False, True, True, True]
    folders.close()  # a folder the studio was given stays; what it made there goes
    assert (tmp_path / "given").is_dir() and not any((tmp_path / "given").iterdir())
    own = RequestFolders()
    own.new("walk-")
    own.close()
    assert not own.root.exists()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make env installs it as root)")
def test_a_person_generates_stylises_and_sees_errors_in_the_browser(studio, studio_triton, tmp_path, capsys):
    from playwright.sync_api import expect, sync_playwright

    from artforge.families.restore.client import restore_image
    from artforge.families.style.stylize import stylize_image, style_weights
    from artforge.serving.client import Client

    photo = (np.random.default_rng(3).random((48, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(studio)
        # a DCGAN grid for seed 7
        open_tab(page, "dcgan")
        page.locator("#dcgan-seed input").fill("7")
        set_number(page, "#dcgan-count", 6)
        page.locator("#dcgan-run").click()
        grid = shown_picture(page, "#dcgan-output")
        np.testing.assert_array_equal(shrunk(grid, 32), cli_grid(studio_triton.grpc_url, "dcgan", 6, 7))
        # a diffusion grid with previews on: the last grid the page shows is the command line's
        open_tab(page, "diffusion")
        set_number(page, "#diffusion-count", 3)
        page.locator("#diffusion-seed input").fill("5")
        set_number(page, "#diffusion-steps", 4)
        set_number(page, "#diffusion-previews", 1)
        page.evaluate("""() => { window.shownGrids = [];
            new MutationObserver(() => { const img = document.querySelector('#diffusion-output img');
                if (img && img.src !== window.shownGrids.at(-1)) window.shownGrids.push(img.src); })
            .observe(document.querySelector('#diffusion-output'), {subtree: true, childList: true,
                                                                   attributes: true}); }""")
        page.locator("#diffusion-run").click()
        page.wait_for_function("() => window.shownGrids.length > 0")
        done = re.compile(r"\bhide\b")  # Gradio's tracker is "generating" while the grids stream, then "hide"
        expect(page.locator("#diffusion-output [data-testid=status-tracker]")).to_have_class(done, timeout=60_000)
        grids = page.evaluate("() => window.shownGrids")
        final = np.asarray(Image.open(io.BytesIO(page.request.get(grids[-1]).body())).convert("RGB"))
        want = cli_grid(studio_triton.grpc_url, "diffusion", 3, 5, {"steps": 4, "guidance": 2.0, "sampler": 1})
        np.testing.assert_array_equal(shrunk(final, 16), want)
        # a tiny model's previews come too fast to watch each one replace the last, so they stay in view: a grid
        # per preview step, each the frame `artforge generate --previews-gif` writes
        forming = page.locator("#diffusion-forming img")
        cli_frames = cli_forming(studio_triton.grpc_url, "diffusion", 3, 5,
                                 {"steps": 4, "guidance": 2.0, "sampler": 1, "previews": 1})
        expect(forming).to_have_count(len(cli_frames), timeout=30_000)
        for i, cli_frame in enumerate(cli_frames):
            frame = Image.open(io.BytesIO(page.request.get(forming.nth(i).get_attribute("src")).body()))
            np.testing.assert_array_equal(shrunk(np.asarray(frame.convert("RGB")), 16), cli_frame)
        # StyleGAN2's style mixing with the page's defaults (3 rows, 4 columns, the middle layer, seed 0)
        open_tab(page, "stylegan")
        page.get_by_text("style mixing").filter(visible=True).click()
        page.locator("#stylegan-mix").click()
        mixed = shown_picture(page, "#stylegan-mix-output")
        layer = page.locator("#stylegan-mix-layer input").input_value().split(":")[0]
        cli_output(capsys, "generate", "--model", "stylegan", "--url", studio_triton.grpc_url, "--mixing-grid",
                   "3x4", "--mix-from", layer, "--seed", "0", "--out", str(tmp_path / "mixing.png"))
        np.testing.assert_array_equal(mixed, np.asarray(Image.open(tmp_path / "mixing.png").convert("RGB")))
        # the DCGAN's latent walk: the GIF `artforge generate --interpolate 6 --walk-points 3 --seed 7` writes
        open_tab(page, "dcgan")
        page.get_by_text("latent walk").filter(visible=True).click()  # (StyleGAN2's tab has one too)
        set_number(page, "#dcgan-walk-frames", 6)
        set_number(page, "#dcgan-walk-points", 3)
        page.locator("#dcgan-walk").click()
        walked = page.locator("#dcgan-walk-output img").first
        walked.wait_for(timeout=60_000)
        cli_output(capsys, "generate", "--model", "dcgan", "--url", studio_triton.grpc_url, "--interpolate", "6",
                   "--walk-points", "3", "--seed", "7", "--out", str(tmp_path / "walk.gif"))
        assert page.request.get(walked.get_attribute("src")).body() == (tmp_path / "walk.gif").read_bytes()
        page.screenshot(path=str(tmp_path / "dcgan.png"))
        # a translation the other way round, its direction picked by the domains' names
        open_tab(page, "translate")
        page.locator("#translate-image input[type=file]").set_input_files(str(tmp_path / "photo.png"))
        page.locator("#translate-image img").wait_for(timeout=30_000)
        page.locator("#translate-direction input").click()
        page.get_by_role("option", name="waves2grid").click()
        expect(page.locator("#translate-direction input")).to_have_value("waves2grid")
        page.locator("#translate-run").click()
        shown = shown_picture(page, "#translate-out-translated")
        cli_output(capsys, "translate", "--model", "translate", "--url", studio_triton.grpc_url, "--input",
                   str(tmp_path / "photo.png"), "--direction", "waves2grid", "--out", str(tmp_path / "translated.png"))
        np.testing.assert_array_equal(shown, np.asarray(Image.open(tmp_path / "translated.png").convert("RGB")))
        # an uploaded photo in an even blend of the two styles
        open_tab(page, "stylize")
        page.locator("#stylize-content input[type=file]").set_input_files(str(tmp_path / "photo.png"))
        page.locator("#stylize-content img").wait_for(timeout=30_000)  # uploaded
        set_number(page, "#stylize-style_weights-1", 1)
        page.locator("#stylize-run").click()
        shown = shown_picture(page, "#stylize-out-image")
        with Client(studio_triton.grpc_url) as client:
            want = stylize_image(client, "stylize", photo, style_weights(["ink", "mosaic"], blend="ink=1,mosaic=1"))
        assert np.abs(shown.astype(int) - want.astype(int)).max() <= 1
        # a refused request is one message on the page, not a traceback
        for i in (0, 1):
            set_number(page, f"#stylize-style_weights-{i}", 0)
        page.locator("#stylize-run").click()
        expect(page.locator("#stylize-message")).to_contain_text("must have a positive sum", timeout=30_000)
        assert "Traceback" not in page.content()
        # a mask drawn with the brush on the picture to restore: the page restores with the mask it shows as sent
        open_tab(page, "restore")
        page.locator("#restore-image button[aria-label=Brush]").wait_for()  # an upload before the editor is up is lost
        page.locator("#restore-image input[type=file]").set_input_files(str(tmp_path / "photo.png"))
        expect(page.locator("#restore-image")).not_to_contain_text("Upload an image", timeout=30_000)  # placed
        box = page.locator("#restore-image canvas").first.bounding_box()
        middle_x, middle_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(middle_x - 30, middle_y)
        page.mouse.down()
        page.mouse.move(middle_x + 30, middle_y, steps=10)  # a stroke across the middle of the picture
        page.mouse.up()
        page.locator("#restore-run").click()
        restored = shown_picture(page, "#restore-out-restored")
        sent = shown_picture(page, "#restore-sent-mask")[..., 0] // 255
        assert 0 < sent.sum() < sent.size and sent[photo.shape[0] // 2].any()
        with Client(studio_triton.grpc_url) as client:
            np.testing.assert_array_equal(restored, restore_image(client, "restore", photo, sent))
        # the bench report's table
        page.get_by_role("tab", name="bench: run1").click()
        expect(page.get_by_text("a bench report")).to_be_visible()
        browser.close()


def cli_output(capsys, *args: str) -> str:
    from artforge.cli import main

    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def open_tab(page, model: str) -> None:
    """Open a model's tab and wait until it is laid out (what is typed sooner can be lost)."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name=model, exact=True).click()
    expect(page.locator(f"#{model}-run")).to_be_visible()


def set_number(page, where: str, value) -> None:
    """Type a slider's value and wait until the slider holds it (a click sent sooner would carry the old one)."""
    from playwright.sync_api import expect

    for _ in range(4):  # typing into a slider that is still being laid out (a tab or panel just opened) is lost
        page.locator(f"{where} input[type=number]").fill(str(value))
        page.locator(f"{where} input[type=number]").press("Enter")
        try:
            expect(page.locator(f"{where} input[type=range]")).to_have_value(str(value), timeout=3_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"the slider {where} did not take the value {value}")


def can_render_audio() -> bool:
    from artforge.families.music.render import SOUNDFONTS

    return shutil.which("fluidsynth") is not None and any(p.is_file() for p in SOUNDFONTS)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make env installs it as root)")
def test_a_person_writes_a_poem_and_composes_a_piece_in_the_browser(studio, studio_triton, tmp_path, capsys):
    from playwright.sync_api import expect, sync_playwright

    url = studio_triton.grpc_url
    poem = cli_output(capsys, "write", "--model", "poem", "--url", url, "--prompt", "春", "--max-tokens", "30",
                      "--seed", "5").rstrip("\n")  # write's own temperature and top p: where the page starts
    cli_output(capsys, "compose", "--model", "music", "--url", url, "--bars", "2", "--seed", "3", "--temperature",
               "0.9", "--out", str(tmp_path / "cli.mid"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(studio)
        # a poem streamed into the page: the text `artforge write` prints for the same seed and no other flags
        open_tab(page, "poem")
        page.locator("#poem-prompt").get_by_role("textbox").fill("春")
        set_number(page, "#poem-tokens", 30)
        page.locator("#poem-seed input").fill("5")
        page.locator("#poem-run").click()
        expect(page.locator("#poem-output").get_by_role("textbox")).to_have_value(poem, timeout=60_000)
        page.screenshot(path=str(tmp_path / "poem.png"))
        # a piece composed on the page: the MIDI file `artforge compose` writes, its piano roll and its audio
        open_tab(page, "music")
        page.locator("#music-bars input").fill("2")
        page.locator("#music-seed input").fill("3")
        page.locator("#music-temperature input").fill("0.9")
        page.locator("#music-run").click()
        link = page.locator('#music-files a[download="piece.mid"]')
        link.wait_for(timeout=60_000)
        assert page.request.get(link.get_attribute("href")).body() == (tmp_path / "cli.mid").read_bytes()
        roll = page.locator("#music-picture img")
        roll.wait_for(timeout=30_000)
        assert Image.open(io.BytesIO(page.request.get(roll.get_attribute("src")).body())).size[0] > 200
        if can_render_audio():
            sound = page.locator("#music-audio audio[src]").first  # the player's waveform holds the file
            sound.wait_for(state="attached", timeout=30_000)
            head, size = page.evaluate("async src => { const b = await (await fetch(src)).arrayBuffer();"
                                       " return [Array.from(new Uint8Array(b.slice(0, 4))), b.byteLength]; }",
                                       sound.get_attribute("src"))
            assert bytes(head) == b"RIFF" and size > 44100 * 4  # over a second of 16-bit stereo
        else:  # the MIDI and the piano roll are shown; the missing renderer is the page's one message
            expect(page.locator("#music-message")).to_contain_text("FluidSynth", timeout=30_000)
        assert "Traceback" not in page.content()
        page.screenshot(path=str(tmp_path / "music.png"))
        browser.close()


def shown_picture(page, where: str) -> np.ndarray:
    """The output picture of a tab once it appears: its file fetched as the browser fetched it."""
    image = page.locator(f"{where} img").first
    image.wait_for(timeout=60_000)
    response = page.request.get(image.get_attribute("src"))
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


def test_studio_binds_loopback_by_default():
    from artforge.studio.command import StudioOptions

    assert StudioOptions().host == "127.0.0.1"


def test_bench_folder_that_is_not_one_is_a_one_line_error(tmp_path):
    from artforge.errors import ArtforgeError
    from artforge.studio.app import bench_reports

    with pytest.raises(ArtforgeError, match="is not a folder"):
        bench_reports(Path(tmp_path / "missing"))


def test_the_studio_command_stops_on_sigterm_and_frees_its_clients_shared_memory(studio_triton, tmp_path):
    import signal
    import subprocess
    import sys

    from gradio_client import Client as StudioClient

    from artforge.serving.server import free_port

    port = free_port()
    page = subprocess.Popen([sys.executable, "-m", "artforge", "studio", "--url", studio_triton.grpc_url, "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_page(port, page)
        api = StudioClient(f"http://127.0.0.1:{port}", verbose=False)
        assert api.predict("all in turn", 2, 1, api_name="/dcgan_generate")[1] == ""  # a request over shared memory
        page.send_signal(signal.SIGTERM)
        _, errors = page.communicate(timeout=60)
    finally:
        page.kill()
    assert page.returncode == 0, errors[-2000:]
    assert "leaked shared_memory" not in errors


def test_make_studio_stops_the_page_and_the_server_when_only_its_shell_is_signalled(dcgan_repo, tmp_path):
    """`kill SHELL` (not a Ctrl-C to the whole group) used to leave `artforge serve` running: the shell waited on
    the page in the foreground and acted on the signal only once the page ended."""
    import os
    import signal
    import socket
    import subprocess

    from artforge.serving.server import free_ports

    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "repo").symlink_to(dcgan_repo)
    grpc, http, metrics, port = free_ports(4)
    make = subprocess.Popen(["make", "--no-print-directory", "studio", f"DEMO={demo}", f"STUDIO_PORT={port}",
                             f"GRPC_PORT={grpc}", f"HTTP_PORT={http}", f"METRICS_PORT={metrics}"],
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_page(port, make, limit_s=180)
        assert make.poll() is None, make.communicate()[0][-2000:]
        processes = session_processes(make.pid)
        shells = [pid for pid, (parent, _) in processes.items() if parent == make.pid]
        assert len(shells) == 1
        assert any("artforge serve" in line for _, line in processes.values())
        assert any("artforge studio" in line for _, line in processes.values())
        os.kill(shells[0], signal.SIGTERM)  # the recipe's shell alone
        output, _ = make.communicate(timeout=120)  # its output ends when every process writing it has ended
        left = session_processes(make.pid)
        assert left == {}, f"still running after make ended: {left}\n{output[-2000:]}"
        with pytest.raises(ConnectionRefusedError):  # Triton (in a session of its own) has stopped too
            socket.create_connection(("127.0.0.1", grpc), timeout=5).close()
    finally:
        try:
            os.killpg(make.pid, signal.SIGKILL)  # whatever is left of the group, make itself ended or not
        except ProcessLookupError:
            pass


def wait_for_page(port: int, process, limit_s: float = 120) -> None:
    """Until the page on this port answers, or the process starting it ends (the limit only catches a hang)."""
    import time
    import urllib.request

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=5)
            return
        except OSError:
            time.sleep(0.2)


def session_processes(session: int) -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, command line)} of the processes in a session, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()  # after the name in brackets
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended while listed
            continue
        if int(fields[3]) == session:  # stat's field 6, the session id
            found[int(entry.name)] = (int(fields[1]), line.strip())
    return found
