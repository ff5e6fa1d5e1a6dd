import json

import numpy as np
import pytest
from PIL import Image

from artforge.errors import ArtforgeError
from artforge.training.synth import STYLES, paint, synthesize_dataset


def test_same_seed_paints_the_same_image_and_another_seed_does_not():
    a = np.asarray(paint("waves", 32, seed=3, index=0))
    assert np.array_equal(a, np.asarray(paint("waves", 32, seed=3, index=0)))
    assert not np.array_equal(a, np.asarray(paint("waves", 32, seed=4, index=0)))
    assert not np.array_equal(a, np.asarray(paint("waves", 32, seed=3, index=1)))


def test_styles_are_statistically_distinct():
    # Mean colour histograms of each style; every pair of styles differs clearly.
    def signature(style):
        images = np.stack([np.asarray(paint(style, 32, 0, i)) for i in range(12)]).astype(float) / 255
        gray = images.mean(-1)
        edges = np.abs(np.diff(gray, axis=1)).mean() + np.abs(np.diff(gray, axis=2)).mean()
        saturation = (images.max(-1) - images.min(-1)).mean()
        return np.array([gray.mean(), gray.std(), edges, saturation])

    sigs = {s: signature(s) for s in STYLES}
    names = list(sigs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(sigs[a] - sigs[b]).max() > 0.03, (a, b, sigs[a], sigs[b])


def test_circles_are_a_centred_target_on_a_dark_ground_unlike_the_full_bleed_waves():
    def corners_and_centre(style):
        images = np.stack([np.asarray(paint(style, 32, 0, i)) for i in range(12)]).astype(float).mean(-1)
        corners = images[:, [0, 0, -1, -1], [0, -1, 0, -1]].mean()
        return corners, images[:, 12:20, 12:20].mean()

    corners, centre = corners_and_centre("circles")
    assert corners < 60 and centre > corners + 50
    assert corners_and_centre("waves")[0] > 80


def test_synthesize_writes_one_folder_per_style_and_a_description(tmp_path):
    description = synthesize_dataset(tmp_path, size=16, per_style=3, seed=0, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(STYLES)
    for style in STYLES:
        files = sorted((tmp_path / style).glob("*.png"))
        assert len(files) == 3
        assert Image.open(files[0]).size == (16, 16)
    assert json.loads((tmp_path / "dataset.json").read_text()) == description
    assert len(STYLES) >= 5


def test_synthesize_rejects_unknown_style_and_file_as_output(tmp_path):
    with pytest.raises(ArtforgeError, match="unknown style"):
        synthesize_dataset(tmp_path, styles=["cubism"], progress=False)
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ArtforgeError, match="is a file"):
        synthesize_dataset(target, per_style=1, progress=False)
