"""The short version of `make reliability`: every suite runs, every promise is checked."""
import json

import pytest

from artforge.benchmarks.reliability import reliability_problems
from artforge.cli import main

pytestmark = pytest.mark.slow


def test_short_reliability_run_keeps_every_promise(tmp_path, capsys):
    code = main(["reliability", "--out", str(tmp_path), "--kills", "3", "--fuzz-rounds", "1",
                 "--image-copies", "1", "--soak-seconds", "2", "--quiet"])
    results = json.loads((tmp_path / "reliability.json").read_text())["results"]
    assert code == 0, capsys.readouterr().err
    kills = results["kills"]
    assert kills["kills"] == 3 and kills["newest_checkpoint_loaded"] == 3
    assert kills["identical_to_uninterrupted_run"] and kills["leftover_folders"] == 0 and kills["steps_reached"] > 3
    images = results["images"]
    assert images["files"] == 10 and images["read"] == 7 and not images["wrong_outcomes"]
    assert results["fuzz"]["requests"] >= 35 and results["fuzz"]["server_up_and_healthy_after"]
    soak = results["soak"]
    # every request the load generator counted as answered, the server counted too; and the soak ran its time
    assert soak["errors"] == 0 and soak["requests"] == soak["answered_by_server"] > 0 and soak["ran_s"] >= 2
    assert "| kills | newest checkpoint loaded | 3 |" in (tmp_path / "reliability.md").read_text()


def test_a_broken_promise_is_reported():
    assert reliability_problems({"kills": {"kills": 3, "newest_checkpoint_loaded": 2, "leftover_folders": 0,
                                           "identical_to_uninterrupted_run": True}})
    assert reliability_problems({"images": {"wrong_outcomes": ["bomb-0.png"], "transparent_files_on_background": True}})
    assert reliability_problems({"soak": {"errors": 1}})
    assert not reliability_problems({"soak": {"errors": 0}})
