"""docs/ci/bench.yml, the GitHub Actions example for users, stays runnable: its "bench: ..." steps run here
as one script (a fresh folder, the same commands; the server's ports swapped for free ones)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from artforge.serving.server import free_ports
from tests.perf_analyzer_here import perf_analyzer_or_skip

WORKFLOW = Path(__file__).resolve().parents[2] / "docs" / "ci" / "bench.yml"

pytestmark = pytest.mark.slow


def bench_script(job: dict) -> str:
    steps = [step["run"] for step in job["steps"] if step.get("name", "").startswith("bench:")]
    script = "set -euo pipefail\n" + "\n".join(steps)
    for port, free in zip(("8100", "8101", "8102"), free_ports(3)):
        script = re.sub(rf"\b{port}\b", str(free), script)  # whole numbers: a free port may contain "8101"
    return script


def test_the_example_workflows_bench_steps_run_as_a_script(tmp_path):
    perf_analyzer_or_skip()
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["bench"]
    assert [s.get("name", s.get("uses")) for s in job["steps"]][-1] == "actions/upload-artifact@v4"
    env = {**os.environ, **job["env"], "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", bench_script(job)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    bench = tmp_path / job["env"]["BENCH"]
    report = json.loads((bench / "report" / "bench.json").read_text())
    assert report["perf_analyzer"]["points"] and all("error" not in p for p in report["perf_analyzer"]["points"])
    assert (bench / "grid.png").exists() and (bench / "baseline.json").exists()  # first run: a baseline to commit
    assert (bench / "bench.xml").exists() and (bench / "report" / "trend.png").exists()
    assert len((bench / "history.jsonl").read_text().splitlines()) == 1
