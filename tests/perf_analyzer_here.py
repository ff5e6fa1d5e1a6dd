"""Whether NVIDIA's perf_analyzer runs on this machine: CI (make env installs every piece) must have it;
elsewhere a missing piece is one line saying what to install."""
from __future__ import annotations

import os

import pytest

from artforge.benchmarks.perf_analyzer import PerfAnalyzer, find_perf_analyzer
from artforge.errors import ArtforgeError


def perf_analyzer_here() -> tuple[PerfAnalyzer | None, str]:
    """(the installed perf_analyzer, "") or, off CI, (None, what is missing); in CI a missing piece fails."""
    try:
        return find_perf_analyzer(), ""
    except ArtforgeError as e:
        if os.environ.get("CI"):
            raise
        return None, str(e)


def perf_analyzer_or_skip() -> PerfAnalyzer:
    analyzer, missing = perf_analyzer_here()
    if analyzer is None:
        pytest.skip(missing)
    return analyzer
