import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from artforge.errors import ArtforgeError
from artforge.imaging import uint8_to_unit
from artforge.registry import load_network
from artforge.feature_network import efficientnet_lite0, relative_error, vgg_from_file
from artforge.families.style.train import (StyleTrainOptions, content_images, perceptual_loss,
                                     style_targets, train_style)
from artforge.training.synth import paint


def tiny_vgg_state(widths=(4, 8, 8, 8)) -> dict:
    """torchvision VGG16 layout (2, 2, 3, 3, 3 convs a stage) with tiny channel counts."""
    state, index, c_in = {}, 0, 3
    for stage, convs in enumerate((2, 2, 3, 3, 3)):
        c_out = widths[min(stage, len(widths) - 1)]
        for _ in range(convs):
            state[f"features.{index}.weight"] = torch.randn(c_out, c_in, 3, 3) * 0.1
            state[f"features.{index}.bias"] = torch.zeros(c_out)
            index, c_in = index + 2, c_out
        index += 1  # max pool
    state["classifier.0.weight"] = torch.zeros(2, 2)
    return state


@pytest.fixture(scope="module")
def style_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("styles")
    paths = []
    for name in ("waves", "grid"):
        paint(name, 64, seed=3, index=0).save(folder / f"{name}.png")
        paths.append(str(folder / f"{name}.png"))
    return paths


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_vgg_loss_network_loads_from_a_torchvision_format_file(tmp_path, suffix):
    path = tmp_path / f"vgg16{suffix}"
    state = tiny_vgg_state()
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    taps = vgg_from_file(path)
    assert taps.info.name.startswith("vgg16") and taps.info.content_layer == "relu2"
    features = taps(torch.zeros(1, 3, 32, 32))
    assert [f.shape[-1] for f in features.values()] == [32, 16, 8, 4]
    assert features["relu1"].shape[1] == 4 and features["relu4"].shape[1] == 8


def test_loss_layers_are_chosen_by_name_and_unknown_ones_are_refused(tmp_path):
    taps = efficientnet_lite0(("block2", "block10"), "block7")
    features = taps(torch.zeros(1, 3, 64, 64))
    assert list(features) == ["block2", "block7", "block10"]  # run in network order, no deeper than needed
    assert [(f.shape[1], f.shape[-1]) for f in features.values()] == [(24, 16), (80, 4), (112, 4)]
    assert taps.info.describe() == {"name": "efficientnet-lite0", "style_layers": ["block2", "block10"],
                                    "content_layer": "block7"}
    with pytest.raises(ArtforgeError, match=r"no layer\(s\) \['block99'\]; choose from \['block0'"):
        efficientnet_lite0(("block99",))
    path = tmp_path / "vgg16.safetensors"
    save_file(tiny_vgg_state(), str(path))
    assert vgg_from_file(path, ("relu1", "relu3"), "relu4").info.style_layers == ("relu1", "relu3")
    with pytest.raises(ArtforgeError, match="relu9"):
        vgg_from_file(path, content_layer="relu9")


def test_relative_error_is_scale_free_per_sample():
    a, b = torch.randn(2, 8, 8), torch.randn(2, 8, 8)
    assert torch.allclose(relative_error(a * 1000, b * 1000), relative_error(a, b))
    assert relative_error(b, b).tolist() == [0.0, 0.0] and relative_error(a, b).shape == (2,)


def test_a_weights_file_that_needs_unpickling_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"features.0.weight": object()}, f)
    with pytest.raises(ArtforgeError, match="cannot read loss-network weights .* safely"):
        vgg_from_file(path)


def test_efficientnet_lite0_from_its_wheel_taps_four_scales():
    taps = efficientnet_lite0()
    features = taps(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in features.values()] == [32, 16, 8, 4]
    assert not any(p.requires_grad for p in taps.parameters())


def test_training_lowers_the_loss_and_the_checkpoint_rebuilds_the_network(style_images, tmp_path):
    options = dict(styles=style_images, size=32, batch_size=2, steps=150, lr=3e-3, sample_every=150,
                   checkpoint_every=150, progress=False)
    opts = StyleTrainOptions(out=str(tmp_path / "run"), **options)
    content = content_images("builtin", 32)
    from artforge.families.style.network import StyleNetConfig, StyleTransferNet
    from artforge.feature_network import gram

    loss_net = efficientnet_lite0()
    targets = {k: gram(v) for k, v in loss_net(style_targets(style_images, 32)).items()}
    images, style = uint8_to_unit(content.held_out), torch.tensor([0, 1])  # photos training never sees

    def loss_of(net):
        with torch.no_grad():
            weights = torch.nn.functional.one_hot(style, 2).float()
            return float(perceptual_loss(loss_net, images, net.eval()(images, weights), style, targets, opts)["loss"])

    torch.manual_seed(0)
    before = loss_of(StyleTransferNet(StyleNetConfig.preset("lite", 2)))
    train_style(out=str(tmp_path / "run"), **options)
    trained, checkpoint = load_network(tmp_path / "run", expect_family="style")
    assert checkpoint.meta["styles"] == ["waves", "grid"]
    assert checkpoint.meta["loss_network"]["name"] == "efficientnet-lite0"
    after = loss_of(trained)
    assert after < 0.8 * before
    assert (tmp_path / "run" / "samples" / "step_00000150.png").exists()

    # --init: a third style joins; the first two keep their learnt rows
    grown = tmp_path / "grown"
    train_style(out=str(grown), **{**options, "styles": style_images + [style_images[0]], "steps": 1},
                init=str(tmp_path / "run"))
    bigger, _ = load_network(grown)
    old_scale = trained.state_dict()["down.0.norm.scale"]
    assert bigger.state_dict()["down.0.norm.scale"].shape[0] == 3
    assert torch.allclose(bigger.state_dict()["down.0.norm.scale"][:2], old_scale, atol=0.05)


def test_bad_style_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ArtforgeError, match="at least one --style"):
        train_style(out=str(tmp_path / "a"), styles=[], progress=False)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ArtforgeError, match="style image: cannot read image"):
        train_style(out=str(tmp_path / "b"), styles=[str(bad)], progress=False)


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(style_images, tmp_path):
    from safetensors.torch import load_file

    options = dict(styles=style_images, size=32, batch_size=2, sample_every=100, checkpoint_every=100, progress=False)
    train_style(out=str(tmp_path / "straight"), steps=4, **options)
    train_style(out=str(tmp_path / "split"), steps=2, **options)
    train_style(out=str(tmp_path / "split"), steps=4, resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "step_00000004" / "state.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoints" / "step_00000004" / "state.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ArtforgeError, match="started with width='fast'"):
        train_style(out=str(tmp_path / "split"), steps=6, resume=True, width="full")


def test_bf16_autocast_trains_the_style_network_through_the_shared_loop(style_images, tmp_path):
    run = tmp_path / "bf16"
    train_style(out=str(run), styles=style_images, size=32, batch_size=2, steps=2, bf16=True, device="cpu",
                sample_every=2, checkpoint_every=2, progress=False)
    net, checkpoint = load_network(run, expect_family="style")
    assert checkpoint.step == 2 and checkpoint.meta["training"]["bf16"] is True
    assert all(torch.isfinite(p).all() for p in net.parameters())
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2] and all(line["images_per_s"] > 0 for line in lines)


def test_the_colour_loss_measures_a_palette_and_its_gradient_moves_towards_it():
    from artforge.feature_network import colour_directions, colour_quantiles

    axes = colour_directions()
    red = torch.zeros(1, 3, 16, 16)
    red[:, 0] = 0.8
    target = colour_quantiles(red, axes)
    shuffled = red.flatten(2)[..., torch.randperm(256)].view(1, 3, 16, 16)  # same pixels, other places
    assert float((colour_quantiles(shuffled, axes) - target).abs().mean()) == pytest.approx(0.0, abs=1e-6)
    grey = torch.zeros(1, 3, 16, 16, requires_grad=True)
    loss = (colour_quantiles(grey, axes) - target).abs().mean()
    assert float(loss) > 0.1
    loss.backward()
    assert float(grey.grad[0, 0].mean()) < 0  # descending the loss raises red
    # the training option: a colour term joins the loss only when asked for, and adds to the total
    opts = StyleTrainOptions(out="unused", colour_weight=2.0)
    loss_net = efficientnet_lite0()
    from artforge.feature_network import gram

    styles = torch.nn.functional.interpolate(red, size=32)
    targets = {k: gram(v) for k, v in loss_net(styles).items()}
    plain = perceptual_loss(loss_net, styles, styles, torch.tensor([0]), targets, opts)
    targets["colour"] = (axes, colour_quantiles(styles, axes))
    photo = torch.rand(1, 3, 32, 32) * 2 - 1
    with_colour = perceptual_loss(loss_net, photo, photo, torch.tensor([0]), targets, opts)
    assert "colour" not in plain and float(with_colour["colour"]) > 0.1
    assert float(with_colour["loss"]) == pytest.approx(float(with_colour["content"]) + 5 * float(with_colour["style"])
                                                       + float(with_colour["tv"]) + 2 * float(with_colour["colour"]),
                                                       rel=1e-5)
