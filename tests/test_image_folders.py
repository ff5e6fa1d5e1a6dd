import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from artforge.errors import DataError
from artforge.image_folders import load_image_folder


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
    assert len(data) == 30 and len(data.skipped.unreadable) == 2 and not data.skipped.too_large
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 unreadable" in warnings[0].getMessage()


def test_too_large_files_are_counted_apart_from_unreadable_ones_and_warnings_summed(art32, tmp_path, caplog):
    from artforge.benchmarks.reliability import write_png_header

    root = tmp_path / "data"
    shutil.copytree(art32, root)
    write_png_header(root / "grid" / "bomb.png", 30_000, 30_000)  # 900 Mpx declared in 60 bytes
    (root / "grid" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for i in range(3):  # palette PNGs with a transparent index: Pillow warns about each when mishandled
        picture = Image.new("P", (40, 40), 0)
        picture.putpalette([255, 0, 0] * 256)
        picture.save(root / "waves" / f"palette{i}.png", transparency=0)
    with caplog.at_level(logging.WARNING):
        data = load_image_folder(root, 32, progress=False)
    assert len(data) == 33 and len(data.skipped.too_large) == 1 and len(data.skipped.unreadable) == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 unreadable" in warning and "1 over 100 megapixels" in warning
    palette = data.images[data.labels == data.classes.index("waves")][-1]
    assert palette.float().mean() > 254  # fully transparent: the white background, not the stored red
    assert data.describe()["skipped_too_large"] == 1


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


def test_pad_keeps_the_whole_picture_on_the_background(tmp_path):
    (tmp_path / "wide").mkdir()
    Image.new("RGB", (64, 32), (0, 0, 0)).save(tmp_path / "wide" / "a.png")
    padded = load_image_folder(tmp_path, 32, progress=False, fit="pad", background=(255, 0, 0)).images[0]
    assert padded[:, 0, 0].tolist() == [255, 0, 0] and padded[:, 16, 16].tolist() == [0, 0, 0]  # bars, picture
    cropped = load_image_folder(tmp_path, 32, progress=False).images[0]
    assert cropped.max() == 0


def write_pairs(root, rng):
    """4 scenes: input, target = its negative, a mask; one scene lacks a target, one input is corrupt,
    one target has another size."""
    from PIL import Image

    for role in ("input", "target", "mask"):
        (root / role).mkdir(parents=True)
    for i in range(4):
        picture = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(picture).save(root / "input" / f"scene{i}.png")
        name = f"scene{i}.jpg" if i == 3 else f"scene{i}.png"
        Image.fromarray(255 - picture).save(root / "target" / name)
        mask = np.zeros((40, 48), np.uint8)
        mask[10:20, 12:30] = 255
        Image.fromarray(mask).save(root / "mask" / f"scene{i}.png")
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "input" / "lonely.png")
    (root / "target" / "lonely-twin.png").write_bytes(b"")
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "input" / "broken.png")
    (root / "target" / "broken.png").write_bytes(b"not an image")
    (root / "mask" / "broken.png").write_bytes((root / "mask" / "scene0.png").read_bytes())
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "input" / "odd.png")
    Image.fromarray(rng.integers(0, 256, (30, 48, 3), dtype=np.uint8)).save(root / "target" / "odd.png")
    (root / "mask" / "odd.png").write_bytes((root / "mask" / "scene0.png").read_bytes())


def test_paired_folder_matches_by_name_crops_alike_and_reports_what_it_skipped(tmp_path, caplog):
    from artforge.image_folders import load_paired_folder

    write_pairs(tmp_path, np.random.default_rng(0))
    data = load_paired_folder(tmp_path, size=32)
    assert data.names == ["scene0", "scene1", "scene2", "scene3"]
    assert data.tensors["input"].shape == (4, 3, 32, 32) and data.tensors["mask"].shape == (4, 1, 32, 32)
    assert set(data.tensors["mask"].unique().tolist()) == {0, 1}
    # the same crop for every role: the target is still the input's negative, pixel by pixel
    difference = 255 - data.tensors["input"][:3].int() - data.tensors["target"][:3].int()
    assert difference.abs().max() <= 1  # (scene3's target is a lossy JPEG)
    assert data.skipped == {"unmatched": ["lonely", "lonely-twin"], "unreadable": ["broken"],
                            "size_mismatch": ["odd"]}
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 1
    assert data.describe()["skipped_unmatched"] == 2


def test_paired_folder_without_masks_and_bad_folders_are_clear(tmp_path):
    from artforge.errors import DataError
    from artforge.image_folders import load_paired_folder

    write_pairs(tmp_path / "data", np.random.default_rng(1))
    shutil.rmtree(tmp_path / "data" / "mask")
    assert sorted(load_paired_folder(tmp_path / "data", size=16).tensors) == ["input", "target"]
    shutil.rmtree(tmp_path / "data" / "target")
    with pytest.raises(DataError, match="no images in target/"):
        load_paired_folder(tmp_path / "data", size=16)
    with pytest.raises(DataError, match="does not exist"):
        load_paired_folder(tmp_path / "nowhere", size=16)


def test_a_folder_split_holds_out_the_same_share_for_a_seed(art32, tmp_path):
    from artforge.errors import DataError
    from artforge.image_folders import split_image_folder

    train, held, facts = split_image_folder(art32, 32, share=0.1, seed=4, max_held_out=64, progress=False)
    again = split_image_folder(art32, 32, share=0.1, seed=4, max_held_out=64, progress=False)[1]
    assert train.shape == (27, 3, 32, 32) and held.shape == (3, 32, 32, 3) and facts["held_out_images"] == 3
    assert np.array_equal(held, again)
    assert split_image_folder(art32, 32, share=0.5, seed=4, max_held_out=2, progress=False)[1].shape[0] == 2
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.png").write_bytes((art32 / "grid" / "00000.png").read_bytes())
    with pytest.raises(DataError, match="has 1 image.s.; training and a held-out set need at least 2"):
        split_image_folder(tmp_path / "one", 32, share=0.1, seed=0, max_held_out=64, progress=False)
