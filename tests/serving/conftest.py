"""Fixtures of the serving tests."""
import pytest

from artforge.export.pipeline import export_checkpoint
from artforge.serving.server import Server


@pytest.fixture(scope="module")
def style_server(style_run, tmp_path_factory):
    """The tiny two-style network served as 'stylize' (max batch 4) by a live Triton: (server, network)."""
    run, net = style_run
    repo = tmp_path_factory.mktemp("style-repo")
    export_checkpoint(run, repo, name="stylize", max_batch=4)
    with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server:
        yield server, net
