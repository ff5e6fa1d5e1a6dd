import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from artforge.errors import DataError
from artforge.training.dataset import load_image_folder


def test_loads_every_image_with_labels_and_resizes(tmp_path):
    for style, colour in (("blue", (0, 0, 255)), ("red", (255, 0, 0))):
        (tmp_path / style).mkdir()
        for i in range(3):
            Image.new("RGB", (50 + i * 10, 40), colour).save(tmp_path / style / f"{i}.jpg")
    data = load_image_folder(tmp_path, 32, progress=False)
    assert data.classes == ["blue", "red"]
    assert data.images.shape == (6, 3, 32, 32) and data.images.dtype.is_floating_point is False
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.images[0, 2].float().mean() > 250 and data.images[3, 0].float().mean() > 250
    assert data.describe()["per_class"] == {"blue": 3, "red": 3}


def test_corrupt_files_are_skipped_with_one_warning_that_counts_them(art32, tmp_path, caplog):
    root = tmp_path / "data"
    shutil.copytree(art32, root)
    (root / "grid" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = sorted((root / "waves").glob("*.png"))[0].read_bytes()
    (root / "waves" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "circles" / "notes.txt").write_text("ignored: not an image suffix")
    with caplog.at_level(logging.WARNING):
        data = load_image_folder(root, 32, progress=False)
    assert len(data) == 30 and data.skipped == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 unreadable" in warnings[0].getMessage()


def test_missing_empty_and_unreadable_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nope", 32)
    with pytest.raises(DataError, match="has no images"):
        load_image_folder(tmp_path, 32)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="none could be read"):
        load_image_folder(tmp_path, 32, progress=False)


def test_a_flat_folder_of_images_is_one_class(tmp_path):
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 9 * i, np.uint8)).save(tmp_path / f"{i}.png")
    data = load_image_folder(tmp_path, 8, progress=False)
    assert data.classes == [tmp_path.name] and len(data) == 2
