import numpy as np
import pytest
import torch

from artforge.export.parity import onnx_session
from artforge.export.pipeline import export_checkpoint
from artforge.serving.repository_config import parse_config
from artforge.families.style.network import StyleNetConfig, StyleTransferNet


def distinct_styles(net: StyleTransferNet) -> StyleTransferNet:
    """Untrained CIN tables are identical for every style; give each style its own."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if hasattr(module, "scale") and isinstance(module.scale, torch.nn.Parameter):
                module.scale.normal_(1.0, 0.5)
                module.shift.normal_(0.0, 0.5)
    return net.eval()


@pytest.mark.parametrize("width", ["full", "lite", "fast"])
@pytest.mark.parametrize("size", [(16, 16), (17, 23), (33, 30)])
def test_any_size_in_gives_the_same_size_out(width, size):
    net = StyleTransferNet(StyleNetConfig.preset(width, 2)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size) * 2 - 1, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert out.shape == (2, 3, *size) and out.abs().max() <= 1


def test_one_hot_weights_equal_a_single_style_network_and_blends_differ():
    multi = distinct_styles(StyleTransferNet(StyleNetConfig.preset("lite", 3)))
    single = StyleTransferNet(StyleNetConfig.preset("lite", 1)).eval()
    state = {k: (v[1:2] if k.endswith((".scale", ".shift")) else v) for k, v in multi.state_dict().items()}
    single.load_state_dict(state)
    image = torch.rand(1, 3, 20, 20) * 2 - 1
    with torch.no_grad():
        one_hot = multi(image, torch.tensor([[0.0, 1.0, 0.0]]))
        alone = single(image, torch.tensor([[1.0]]))
        other = multi(image, torch.tensor([[1.0, 0.0, 0.0]]))
        blend = multi(image, torch.tensor([[0.5, 0.5, 0.0]]))
    torch.testing.assert_close(one_hot, alone, rtol=1e-5, atol=1e-5)
    assert (one_hot - other).abs().mean() > 1e-2
    assert (blend - one_hot).abs().mean() > 1e-3 and (blend - other).abs().mean() > 1e-3


@pytest.mark.slow
def test_style_family_exports_through_the_same_interface_with_dynamic_sizes(style_run, tmp_path):
    run, net = style_run
    result = export_checkpoint(run, tmp_path / "repo", name="stylize", max_batch=4, float_output=True)
    sizes = {tuple(r.sizes.values()) for r in result.parity}
    assert (17, 19) in sizes and (16, 16) in sizes  # odd sizes and the smallest were checked
    config = parse_config((tmp_path / "repo" / "stylize" / "config.pbtxt").read_text())
    assert [(i.name, list(i.dims)) for i in config.input] == [("content", [-1, -1, 3]), ("style_weights", [2])]
    assert [(o.name, list(o.dims)) for o in config.output][0] == ("image", [-1, -1, 3])
    session = onnx_session(result.version_dir / "model.onnx")
    content = np.random.default_rng(0).integers(0, 256, (1, 21, 18, 3), dtype=np.uint8)
    image, = session.run(["image"], {"content": content, "style_weights": np.array([[2.0, 2.0]], np.float32)})
    with torch.no_grad():  # [2, 2] is normalised inside the graph to the 0.5/0.5 blend
        x = torch.from_numpy(content).permute(0, 3, 1, 2).float() / 127.5 - 1
        want = net(x, torch.tensor([[0.5, 0.5]]))
    want = np.round((want.clamp(-1, 1).numpy() + 1) * 127.5).transpose(0, 2, 3, 1)
    assert image.shape == (1, 21, 18, 3) and np.abs(image.astype(int) - want).max() <= 1


def test_the_fast_preset_keeps_full_resolution_thin_and_costs_a_quarter_of_lite():
    from artforge.benchmarks.measure import count_flops

    fast = StyleTransferNet(StyleNetConfig.preset("fast", 2)).eval()
    lite = StyleTransferNet(StyleNetConfig.preset("lite", 2)).eval()
    assert fast.down[0].conv.stride == (2, 2) and fast.to_image[1].in_channels == 8  # 16 / 2 at full resolution
    args = (torch.zeros(1, 3, 256, 256), torch.tensor([[1.0, 0.0]]))
    assert count_flops(fast, args) < 0.3 * count_flops(lite, args)


def test_a_checkpoint_from_before_early_downsampling_loads_as_johnsons_layout(tmp_path):
    from artforge.checkpoint import save_checkpoint
    from artforge.registry import load_network

    net = StyleTransferNet(StyleNetConfig.preset("lite", 2))
    save_checkpoint(tmp_path, family="style", config=net.config, step=1, weights=net.state_dict())
    meta = tmp_path / "checkpoints" / "step_00000001" / "checkpoint.json"
    import json

    saved = json.loads(meta.read_text())
    del saved["config"]["early_downsampling"]  # what artforge wrote before the option existed
    meta.write_text(json.dumps(saved))
    loaded, _ = load_network(tmp_path)
    assert loaded.config.early_downsampling is False and loaded.down[0].conv.stride == (1, 1)
