"""Style transfer through a live Triton server."""
import numpy as np
import pytest
import torch
from PIL import Image

from artforge.benchmarks.reliability import write_png_header
from artforge.errors import ArtforgeError
from artforge.serving.client import Client
from artforge.families.style.stylize import style_weights, stylize_image, stylize_paths

pytestmark = pytest.mark.slow


def expected(net, photo, weights):
    with torch.no_grad():
        x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 127.5 - 1
        y = net(x, torch.from_numpy(weights)[None])
    return np.round((y.clamp(-1, 1).numpy()[0] + 1) * 127.5).transpose(1, 2, 0)


def test_stylize_round_trip_at_an_odd_size_with_a_style_and_a_blend(style_server):
    server, net = style_server
    photo = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    with Client(server.grpc_url) as client:
        styles = client.model("stylize").metadata["styles"]
        for weights in (style_weights(styles, style="mosaic"), style_weights(styles, blend="ink=1,mosaic=1")):
            result = stylize_image(client, "stylize", photo, weights)
            assert result.shape == (37, 53, 3)
            assert np.abs(result.astype(int) - expected(net, photo, weights)).max() <= 1


def test_stylize_command_writes_the_style_and_the_blend_asked_for(style_server, tmp_path, capsys):
    from artforge.cli import main
    from artforge.imaging import read_image

    server, net = style_server
    photo = np.random.default_rng(3).integers(0, 256, (40, 29, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    for name, choice, weights in (("mosaic", ["--style", "mosaic"], [0.0, 1.0]),
                                  ("blend", ["--blend", "ink=1,mosaic=3"], [0.25, 0.75])):
        out = tmp_path / f"{name}.png"
        assert main(["stylize", "--model", "stylize", "--input", str(tmp_path / "photo.png"), *choice,
                     "--out", str(out), "--url", server.grpc_url, "--quiet"]) == 0
        want = expected(net, photo, np.array(weights, np.float32))
        assert np.abs(read_image(out).astype(int) - want).max() <= 1
    capsys.readouterr()  # (the blend's normalisation warning goes through logging: where depends on test order)
    assert main(["stylize", "--model", "stylize", "--input", str(tmp_path / "photo.png"), "--style", "cubism",
                 "--out", str(tmp_path / "x.png"), "--url", server.grpc_url]) == 1
    err = capsys.readouterr().err
    assert "cubism" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()


def test_a_2048_pixel_photo_goes_through_grpc(style_server):
    server, net = style_server
    photo = np.random.default_rng(2).integers(0, 256, (2048, 2048, 3), dtype=np.uint8)  # 12.6 MB each way
    weights = np.array([1.0, 0.0], np.float32)
    with Client(server.grpc_url, timeout_s=300) as client:
        result = stylize_image(client, "stylize", photo, weights)
    assert result.shape == (2048, 2048, 3)
    assert np.abs(result.astype(int) - expected(net, photo, weights)).max() <= 1  # every pixel as PyTorch makes it


def test_folder_input_and_bad_inputs(style_server, tmp_path):
    server, _ = style_server
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 24, 3), 60 * i, np.uint8)).save(photos / f"p{i}.jpg")
    with Client(server.grpc_url) as client:
        written = stylize_paths(client, "stylize", photos, tmp_path / "out", style=0, progress=False)
        assert [p.name for p in written] == ["p0.png", "p1.png", "p2.png"]
        assert Image.open(written[0]).size == (24, 20)
        (tmp_path / "notes.png").write_text("not an image")
        with pytest.raises(ArtforgeError, match="cannot read image"):
            stylize_paths(client, "stylize", tmp_path / "notes.png", tmp_path / "x.png", style=0)
        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
        with pytest.raises(ArtforgeError, match="is 1x1; the model takes 16-2048 x 16-2048 pixels"):
            stylize_paths(client, "stylize", tmp_path / "dot.png", tmp_path / "x.png", style=0)
        bomb = tmp_path / "bomb.png"
        write_png_header(bomb, 100_000, 100_000)
        with pytest.raises(ArtforgeError, match="is 100000x100000 .10000 megapixels., over the limit"):
            stylize_paths(client, "stylize", bomb, tmp_path / "x.png", style=0)
        Image.fromarray(np.zeros((3000, 20, 3), np.uint8)).save(tmp_path / "tall.png")
        with pytest.raises(ArtforgeError, match="tall.png is 20x3000; the model takes"):
            stylize_paths(client, "stylize", tmp_path / "tall.png", tmp_path / "x.png", style=0)
        with pytest.raises(ArtforgeError, match="must end in .png"):
            stylize_paths(client, "stylize", photos / "p0.jpg", str(tmp_path / "x.jpg"), style=0)
        assert not (tmp_path / "x.jpg").exists() and not (tmp_path / "x.png").exists()
        [folder_out] = stylize_paths(client, "stylize", photos / "p0.jpg", str(tmp_path / "single") + "/", style=0)
        assert folder_out == tmp_path / "single" / "p0.png" and folder_out.exists()
        with pytest.raises(ArtforgeError, match="input 'style_weights' must have shape"):
            client.infer("stylize", {"content": np.zeros((1, 16, 16, 3), np.uint8),
                                     "style_weights": np.ones((1, 3), np.float32)})


def test_style_weights_are_checked_and_normalised():
    styles = ["ink", "mosaic", "wave"]
    assert style_weights(styles, style="wave").tolist() == [0, 0, 1]
    assert style_weights(styles, blend="ink=1,mosaic=3").tolist() == [0.25, 0.75, 0]
    assert style_weights(["only"]).tolist() == [1.0]  # one style: no --style needed
    for kwargs, message in ((dict(blend="ink=-1"), "finite and >= 0"), (dict(blend="ink=nan"), "finite and >= 0"),
                            (dict(blend="ink=inf,mosaic=1"), "finite"), (dict(blend="ink=0"), "sum to 0"),
                            (dict(blend="oil=1"), "unknown style 'oil'"), (dict(style=5), "out of range"),
                            (dict(), "exactly one"), (dict(blend="ink"), "must look like")):
        with pytest.raises(ArtforgeError, match=message):
            style_weights(styles, **kwargs)
