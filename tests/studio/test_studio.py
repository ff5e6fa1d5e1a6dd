"""artforge studio in a real browser (Debian's chromium driven by Playwright) and through gradio_client, over
a real Triton serving a DCGAN, a two-style transfer network and a diffusion model: what the page shows
must equal what the command-line clients return for the same seed and inputs."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artforge.imaging import make_grid

pytest.importorskip("gradio", reason="the studio extra (pip install -e '.[studio]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def studio_triton(dcgan_run, style_run, diffusion_run, tmp_path_factory):
    """One Triton serving 'dcgan', 'stylize' (2 styles) and 'diffusion'."""
    from artforge.export.pipeline import export_checkpoint
    from artforge.serving.server import Server

    repo = tmp_path_factory.mktemp("studio-repo")
    export_checkpoint(dcgan_run, repo, name="dcgan", max_batch=8)
    export_checkpoint(style_run[0], repo, name="stylize", max_batch=4)
    export_checkpoint(diffusion_run, repo, name="diffusion", max_batch=8)
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


def shrunk(picture: np.ndarray, side: int) -> np.ndarray:
    """Undo the studio's whole-pixel enlargement (128 // side)."""
    factor = max(1, 128 // side)
    return picture[::factor, ::factor]


def test_studio_api_gives_what_the_command_line_gives(studio, studio_triton):
    from gradio_client import Client as StudioClient

    api = StudioClient(studio, verbose=False)
    grid_file, message = api.predict("all in turn", 6, 7, api_name="/dcgan_generate")
    assert message == ""
    shown = np.asarray(Image.open(grid_file).convert("RGB"))
    np.testing.assert_array_equal(shrunk(shown, 32), cli_grid(studio_triton.grpc_url, "dcgan", 6, 7))

    grid_file, _ = api.predict("all in turn", 3, 5, 4, 2.0, "ddim", 0, api_name="/diffusion_generate")
    shown = np.asarray(Image.open(grid_file).convert("RGB"))
    want = cli_grid(studio_triton.grpc_url, "diffusion", 3, 5, {"steps": 4, "guidance": 2.0, "sampler": 0})
    np.testing.assert_array_equal(shrunk(shown, 16), want)
    _, message = api.predict("all in turn", 2, 5, 4, 2.0, "ddim", 0, api_name="/diffusion_generate")
    assert message == ""


def test_studio_pages_come_from_the_contracts(studio_triton):
    from artforge.serving.client import Client
    from artforge.studio import pages

    with Client(studio_triton.grpc_url) as client:
        kinds = {name: pages.page_kind(client.model(name)) for name in client.models()}
        fields = pages.form_fields(client.model("stylize"))
        controls = {c.name: c for c in pages.generator_controls(client.model("diffusion"))}
    assert kinds == {"dcgan": "generator", "diffusion": "generator", "stylize": "form"}
    assert [(f.tensor.name, f.kind) for f in fields] == [("content", "picture"), ("style_weights", "mix")]
    assert controls["steps"].maximum == 200 and controls["sampler"].choices == ["ddim", "dpmpp_2m"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make env installs it as root)")
def test_a_person_generates_stylises_and_sees_errors_in_the_browser(studio, studio_triton, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from artforge.families.style.stylize import stylize_image, style_weights
    from artforge.serving.client import Client

    photo = (np.random.default_rng(3).random((48, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(studio)
        # a DCGAN grid for seed 7
        page.get_by_role("tab", name="dcgan").click()
        page.locator("#dcgan-seed input").fill("7")
        page.locator("#dcgan-count input[type=number]").fill("6")
        page.locator("#dcgan-count input[type=number]").press("Enter")
        page.locator("#dcgan-run").click()
        grid = shown_picture(page, "#dcgan-output")
        np.testing.assert_array_equal(shrunk(grid, 32), cli_grid(studio_triton.grpc_url, "dcgan", 6, 7))
        page.screenshot(path=str(tmp_path / "dcgan.png"))
        # an uploaded photo in an even blend of the two styles
        page.get_by_role("tab", name="stylize").click()
        page.locator("#stylize-content input[type=file]").set_input_files(str(tmp_path / "photo.png"))
        page.locator("#stylize-content img").wait_for(timeout=30_000)  # uploaded
        page.locator("#stylize-style_weights-1 input[type=number]").fill("1")
        page.locator("#stylize-style_weights-1 input[type=number]").press("Enter")
        page.locator("#stylize-run").click()
        shown = shown_picture(page, "#stylize-out-image")
        with Client(studio_triton.grpc_url) as client:
            want = stylize_image(client, "stylize", photo, style_weights(["ink", "mosaic"], blend="ink=1,mosaic=1"))
        assert np.abs(shown.astype(int) - want.astype(int)).max() <= 1
        # a refused request is one message on the page, not a traceback
        for i in (0, 1):
            page.locator(f"#stylize-style_weights-{i} input[type=number]").fill("0")
            page.locator(f"#stylize-style_weights-{i} input[type=number]").press("Enter")
        page.locator("#stylize-run").click()
        expect(page.locator("#stylize-message")).to_contain_text("must have a positive sum", timeout=30_000)
        assert "Traceback" not in page.content()
        # the bench report's table
        page.get_by_role("tab", name="bench: run1").click()
        expect(page.get_by_text("a bench report")).to_be_visible()
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
