"""What `artforge bench` leaves for CI: JUnit XML, GitHub's job summary, the history and its trend."""
import json
from xml.etree import ElementTree

import pytest

from artforge.benchmarks.ci import add_to_job_summary, append_history, plot_history, read_history, write_junit
from artforge.benchmarks.report import ratio_verdicts
from artforge.cli import main
from artforge.errors import ArtforgeError


def document(speedup: float, overhead: float) -> dict:
    return {"model": {"family": "dcgan"}, "machine": {"cpu": "AMD EPYC", "cores": 2},
            "ratios": {"batching_speedup_c16": speedup, "triton_overhead_b1_ms": overhead}}


def test_junit_names_the_ratio_that_regressed_and_passes_the_others(tmp_path):
    baseline = document(speedup=2.0, overhead=0.5)
    verdicts = ratio_verdicts(document(speedup=0.9, overhead=1.2), baseline, tolerance=0.5)
    assert [(v.name, v.ok) for v in verdicts] == [("batching_speedup_c16", False), ("triton_overhead_b1_ms", True)]
    write_junit(tmp_path / "bench.xml", verdicts, errors=["dcgan c16 b1: 3 errors (UNAVAILABLE)"])
    suite = ElementTree.parse(tmp_path / "bench.xml").getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "2"
    cases = {c.get("name"): c.find("failure") for c in suite.iter("testcase")}
    assert "limit 1.000" in cases["batching_speedup_c16"].get("message")
    assert cases["triton_overhead_b1_ms"] is None and "3 errors" in cases["every request answered"].get("message")


def test_the_job_summary_is_written_only_where_github_sets_it(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert not add_to_job_summary("# bench", [])
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    assert add_to_job_summary("# bench", ["- ✅ fine"]) and add_to_job_summary("# again", [])
    assert (tmp_path / "summary.md").read_text().count("# ") == 2  # appended, as GitHub expects


def test_history_lines_accumulate_and_draw_a_trend(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef")
    history = tmp_path / "history.jsonl"
    for speedup in (2.0, 2.2, 1.4):
        append_history(history, document(speedup, 0.5))
    entries = read_history(history)
    assert [e["ratios"]["batching_speedup_c16"] for e in entries] == [2.0, 2.2, 1.4]
    assert entries[0]["commit"] == "0123456789abcdef" and entries[0]["machine"] == "AMD EPYC, 2 cores"
    assert main(["bench-history", str(history), "--out", str(tmp_path / "trend.png")]) == 0
    assert (tmp_path / "trend.png").stat().st_size > 10_000 and "3 runs" in capsys.readouterr().out
    assert plot_history(entries[:1], tmp_path / "one.png").exists()


def test_a_broken_history_line_is_named_by_file_and_line(tmp_path):
    history = tmp_path / "history.jsonl"
    history.write_text(json.dumps(document(2.0, 0.5) | {"commit": "a"}) + "\n{not json\n")
    with pytest.raises(ArtforgeError, match=r"history.jsonl:2: not a JSON line"):
        read_history(history)
    with pytest.raises(ArtforgeError, match="no such history file"):
        read_history(tmp_path / "missing.jsonl")


def test_with_trials_a_ratio_fails_only_when_its_whole_interval_is_past_the_limit():
    from artforge.benchmarks.report import bootstrap_interval, combine_trials

    low, high = bootstrap_interval([1.0, 1.1, 1.2, 1.3, 5.0])
    assert 1.0 <= low <= 1.2 <= high <= 5.0
    trials = [document(speedup, overhead) for speedup, overhead in ((0.9, 0.4), (1.3, 0.5), (1.1, 0.6))]
    combined = combine_trials(trials)
    assert combined["ratios"]["batching_speedup_c16"] == 1.1 and combined["trials"] == 3
    assert combined["ratio_trials"]["batching_speedup_c16"] == [0.9, 1.3, 1.1]
    baseline = document(speedup=2.0, overhead=0.5)  # limit at tolerance 0.5: speedup >= 1.0
    speedup = next(v for v in ratio_verdicts(combined, baseline, 0.5) if v.name == "batching_speedup_c16")
    assert speedup.value == 1.1 and speedup.interval[0] <= 1.0 <= speedup.interval[1] and speedup.ok
    worse = combine_trials([document(s, 0.5) for s in (0.7, 0.8, 0.9)])  # every trial below the limit
    verdict = next(v for v in ratio_verdicts(worse, baseline, 0.5) if v.name == "batching_speedup_c16")
    assert not verdict.ok and "95% interval 0.700-0.900" in verdict.problem()
