"""Generator requests from the contract alone: seeded, controls at defaults, latent walks through way points."""
from __future__ import annotations

import numpy as np
import pytest

from artforge.contract import TensorSpec
from artforge.errors import ArtforgeError
from artforge.generation import generation_request, latent_walk, noise_inputs, slerp

INPUTS = (TensorSpec("z", "float32", (8,)), TensorSpec("style", "int64", (1,), min_value=0, max_value=4),
          TensorSpec("truncation", "float32", (1,), min_value=0, max_value=2), TensorSpec("noise", "float32", (20,)))
METADATA = {"class_input": "style", "controls": {"truncation": 1.0}}
LIMITS = {"style": {"min": 0, "max": 4}}


def test_request_is_seeded_and_keeps_controls_and_classes_apart_from_noise():
    a = generation_request(INPUTS, METADATA, LIMITS, 3, seed=5)
    b = generation_request(INPUTS, METADATA, LIMITS, 3, seed=5, classes=np.array([4, 4, 4]),
                           controls={"truncation": 0.7})
    assert np.array_equal(a["z"], b["z"]) and np.array_equal(a["noise"], b["noise"])  # class/control change no noise
    assert np.array_equal(a["z"], np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32))  # z first
    assert np.all(a["truncation"] == 1.0) and np.allclose(b["truncation"], 0.7)
    assert b["style"].tolist() == [[4], [4], [4]] and a["style"].min() >= 0 and a["style"].max() <= 4
    assert {k: v.dtype for k, v in a.items()} == {"z": np.float32, "style": np.int64, "truncation": np.float32,
                                                  "noise": np.float32}
    assert not np.array_equal(a["z"], generation_request(INPUTS, METADATA, LIMITS, 3, seed=6)["z"])


def test_a_control_the_model_lacks_and_a_picture_input_are_refused():
    with pytest.raises(ArtforgeError, match="no mix_from input; its controls: \\['truncation'\\]"):
        generation_request(INPUTS, METADATA, LIMITS, 1, 0, controls={"mix_from": 3})
    with pytest.raises(ArtforgeError, match="not a generator"):
        generation_request((TensorSpec("image", "uint8", ("height", "width", 3)),), {}, {}, 1, 0)


def test_slerp_keeps_the_norm_and_ends_at_the_points():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 512))
    assert np.allclose(slerp(a, b, 0.0), a) and np.allclose(slerp(a, b, 1.0), b)
    middle = slerp(a, b, 0.5)
    assert abs(np.linalg.norm(middle) - np.linalg.norm(a)) < 0.05 * np.linalg.norm(a)  # a straight line loses ~30%
    assert np.allclose(slerp(a, a, 0.3), a)


def test_latent_walk_loops_through_the_way_points():
    request = generation_request(INPUTS, METADATA, LIMITS, 4, seed=1)
    walked = noise_inputs(INPUTS, METADATA)
    assert walked == ["z", "noise"]
    walk = latent_walk(request, walked, 12)
    assert walk["z"].shape == (12, 8) and walk["truncation"].shape == (12, 1)
    for k in range(4):  # frame 3k is way point k
        assert np.allclose(walk["z"][3 * k], request["z"][k], atol=1e-6)
    assert np.all(walk["style"] == request["style"][0])  # one style throughout
    norms, ends = np.linalg.norm(walk["z"], axis=1).reshape(4, 3), np.linalg.norm(request["z"], axis=1)
    low, high = np.minimum(ends, np.roll(ends, -1)), np.maximum(ends, np.roll(ends, -1))  # leg k: point k to k+1
    assert np.all(norms >= 0.95 * low[:, None]) and np.all(norms <= 1.05 * high[:, None])  # no dip to the origin
    with pytest.raises(ArtforgeError, match="at least 2 way points"):
        latent_walk(generation_request(INPUTS, METADATA, LIMITS, 1, seed=1), walked, 5)
