"""`artforge data clipart` on a folder laid out as Debian's openclipart-png: transparent drawings, one folder
per category (nested folders too), and the files the package really has that must be skipped."""
import json

import numpy as np
import pytest
from PIL import Image

from artforge.cli import main
from artforge.errors import ArtforgeError
from artforge.training.clipart import ClipartOptions, build_clipart


@pytest.fixture
def clipart_tree(tmp_path):
    """animals: 3 good drawings (red squares on transparency), one too small, one broken, one over the pixel
    limit the tests set; food: 2 good ones in a nested folder; plants: not asked for."""
    root = tmp_path / "png"
    for category, folder, count in (("animals", "animals", 3), ("food", "food/fruit", 2), ("plants", "plants", 1)):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            picture = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
            picture.paste((220, 20, 20, 255), (10, 10, 30, 30))
            picture.save(root / folder / f"{category}_{i}.png")
    Image.new("RGBA", (12, 12), (0, 0, 255, 255)).save(root / "animals" / "tiny.png")
    (root / "animals" / "broken.png").write_bytes(b"\x89PNG not really")
    Image.new("RGB", (400, 300), (0, 255, 0)).save(root / "animals" / "bomb.png")  # 0.12 Mpx
    return root


def options(root, out, **given):
    return ClipartOptions(**{"out": str(out), "source": str(root), "categories": ["animals", "food"], "per_class": 10,
                             "size": 16, "background": "black", "max_megapixels": 0.1, "progress": False, **given})


def test_drawings_are_composited_fitted_and_the_skipped_counted(clipart_tree, tmp_path):
    description = build_clipart(options(clipart_tree, tmp_path / "out"))
    assert description["per_class"] == {"animals": 3, "food": 2}  # every good drawing, fewer than --per-class
    assert description["skipped"] == {"animals": {"too small": 1, "unreadable": 1, "over the pixel limit": 1}}
    written = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert written == description and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "animals", "dataset.json", "food"]
    drawing = np.asarray(Image.open(tmp_path / "out" / "animals" / "00000.png"))
    assert drawing.shape == (16, 16, 3)
    assert np.abs(drawing[8, 5].astype(int) - (220, 20, 20)).max() <= 10  # the drawing (resampled)
    assert tuple(drawing[0, 0]) == (0, 0, 0) and tuple(drawing[4, 14]) == (0, 0, 0)  # padding; transparency


def test_the_same_seed_takes_the_same_drawings(clipart_tree, tmp_path):
    for name in ("a", "b"):
        build_clipart(options(clipart_tree, tmp_path / name, per_class=2, seed=3))
    for category, count in (("animals", 2), ("food", 2)):
        for i in range(count):
            path = f"{category}/{i:05d}.png"
            assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()


def test_what_cannot_be_built_says_why_in_one_line_and_writes_nothing(clipart_tree, tmp_path, capsys, monkeypatch):
    from artforge.training import clipart

    out = tmp_path / "out"
    with pytest.raises(ArtforgeError, match=r"has no category \['music'\]; it has \['animals', 'food', 'plants'\]"):
        build_clipart(options(clipart_tree, out, categories=["animals", "music"]))
    assert not out.exists()
    monkeypatch.setattr(clipart, "OPENCLIPART", tmp_path / "not-installed")  # the package's folder, absent
    with pytest.raises(ArtforgeError, match="apt-get install openclipart-png"):
        build_clipart(options(tmp_path / "not-installed", out))
    build_clipart(options(clipart_tree, out))
    assert main(["data", "clipart", "--out", str(out), "--source", str(clipart_tree), "--quiet"]) == 1
    assert "exists; give a new folder" in capsys.readouterr().err
    assert main(["data", "clipart", "--out", str(tmp_path / "cli"), "--source", str(clipart_tree), "--categories",
                 "food", "--per-class", "1", "--size", "8", "--quiet"]) == 0
    assert "wrote food 1 to" in capsys.readouterr().out
