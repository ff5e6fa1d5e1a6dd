"""Models trained elsewhere: an ONNX file the test writes, a PyTorch module defined here, their weights in
the layouts users have; exported with pictures on the wire, served by a real Triton, called with `infer`."""
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from tritonclient.grpc import model_config_pb2 as mc

from artforge.cli import main
from artforge.errors import ArtforgeError
from artforge.export.declarations import Axis, Picture, parse_input, parse_picture
from artforge.export.imported_export import export_imported
from artforge.export.parity import onnx_session
from artforge.export.pictures import network_to_pixels, pixels_to_network
from artforge.export.publish import ExportOptions
from artforge.serving.repository_config import parse_config

IMAGE = "image:float32:batch,3,height=16..128,width=16..128:-1..1"
STRENGTH = "strength:float32:batch,1:0..2"


class Tint(nn.Module):
    """A picture network with a second, numeric input: tanh(image + conv(image) * strength)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, image, strength):
        return torch.tanh(image + self.conv(image) * strength[:, :, None, None])


def make_tint() -> Tint:
    torch.manual_seed(0)
    return Tint()


def make_broken():
    raise ValueError("no such width")


def export(source="", **options):
    return export_imported(ExportOptions(source=str(source), **options))


@pytest.fixture(scope="module")
def tint_onnx(tmp_path_factory):
    """An ONNX file as users bring them: the legacy exporter, its own axis names, a metadata prop of its own."""
    path = tmp_path_factory.mktemp("onnx") / "tint.onnx"
    x, s = torch.rand(2, 3, 32, 32) * 2 - 1, torch.ones(2, 1)
    torch.onnx.export(make_tint(), (x, s), str(path), input_names=["image", "strength"], output_names=["out"],
                      dynamic_axes={"image": {0: "N", 2: "h", 3: "w"}, "strength": {0: "N"},
                                    "out": {0: "N", 2: "h", 3: "w"}}, dynamo=False, opset_version=17)
    model = onnx.load(str(path))
    model.metadata_props.add(key="author", value="someone else")
    onnx.save(model, str(path))
    return path


def pixels(seed, batch=1, height=24, width=20):
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


# ---- declarations ----
def test_input_declarations_read_names_ranges_and_tensorflow_names():
    d = parse_input("input:0:float32:batch,3,height=64..512,-1,7:-1..1")
    assert d.name == "input:0" and d.dtype == "float32" and (d.min_value, d.max_value) == (-1, 1)
    assert d.axes == (Axis(name="batch"), Axis(size=3), Axis(name="height", min=64, max=512), Axis(), Axis(size=7))
    assert parse_input("z:int64:1,16").axes == (Axis(size=1), Axis(size=16))
    assert parse_picture("out:0..255:nhwc:bgr") == Picture("out", 0, 255, "nhwc", "bgr")
    assert parse_picture("image:-1..1") == Picture("image", -1, 1, "nchw", "rgb")


@pytest.mark.parametrize("text, words", [("image:float64:batch,3", "DTYPE one of"), ("image:float32", "NAME:DTYPE"),
                                         ("x:float32:batch,0", "size 0"), ("x:float32:batch,h=9..3", "MIN < MAX"),
                                         ("x:float32:batch:1..-1", "not a range"), ("x:float32:b,h=1.5..3", "whole")])
def test_a_bad_input_declaration_says_what_to_write(text, words):
    with pytest.raises(ArtforgeError, match=words):
        parse_input(text)


# ---- pictures inside the graph ----
def identity_graph(channels=3) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, "h", "w"])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_picture_conversions_swap_channels_and_ranges_exactly_as_declared(tmp_path):
    path = tmp_path / "identity.onnx"
    onnx.save(identity_graph(), str(path))
    result = export(path, repository=str(tmp_path / "repo"), picture=["x:0..1", "y:0..1:nchw:bgr"])
    session = onnx_session(result.version_dir / "model.onnx")
    request = pixels(3, batch=2)
    assert np.array_equal(session.run(["y"], {"x": request})[0], request[..., ::-1])  # RGB in, BGR out
    normalised = export(path, repository=str(tmp_path / "repo2"), picture=["x:imagenet", "y:0..1:mean=0,0,0:std=2,2,2"])
    x = onnx_session(normalised.version_dir / "model.onnx").run(["y"], {"x": request})[0]  # (x/255 - mean)/std*2*255
    want = (request / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]) * 2 * 255
    assert np.abs(x.astype(int) - np.round(np.clip(want, 0, 255))).max() <= 1
    config = parse_config((result.version_dir.parent / "config.pbtxt").read_text())
    uint8 = mc.TYPE_UINT8
    assert [(t.name, list(t.dims), t.data_type) for t in (*config.input, *config.output)] == [
        ("x", [-1, -1, 3], uint8), ("y", [-1, -1, 3], uint8)]


def test_numpy_reference_conversions_round_trip_every_level():
    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    for picture in (Picture("p", -1, 1), Picture("p", 0, 255, "nhwc", "bgr"), Picture("p", 0, 1, "nchw", "bgr"),
                    parse_picture("p:imagenet"), parse_picture("p:0..255:bgr:mean=104,117,123:std=1,1,1")):
        assert np.array_equal(network_to_pixels(pixels_to_network(levels, picture), picture), levels)
    imagenet = pixels_to_network(levels, parse_picture("p:imagenet"))  # torchvision's ToTensor + Normalize
    want = (levels.transpose(0, 3, 1, 2) / 255 - np.array([0.485, 0.456, 0.406])[:, None, None]) \
        / np.array([0.229, 0.224, 0.225])[:, None, None]
    assert np.abs(imagenet - want).max() < 1e-5


# ---- an ONNX file ----
def test_an_onnx_file_is_served_with_its_contract_read_from_the_graph(tint_onnx, tmp_path):
    result = export(tint_onnx, repository=str(tmp_path / "repo"), input=[STRENGTH], max_batch=4,
                    picture=["image:-1..1", "out:-1..1"])
    assert result.name == "tint" and result.source.startswith(f"took {tint_onnx} for an ONNX file")
    assert {r.batch for r in result.parity} == {1, 2, 3, 4} and all(r.ok for r in result.parity)
    config = parse_config((result.version_dir.parent / "config.pbtxt").read_text())
    limits = json.loads(config.parameters["artforge.limits"].string_value)
    assert limits["strength"] == {"dims": [[1, 1]], "finite": True, "min": 0.0, "max": 2.0}
    assert limits["image"]["dims"] == [[16, 512], [16, 512], [3, 3]]  # undeclared axes: the default range
    served = onnx.load(str(result.version_dir / "model.onnx"))
    assert {p.key: p.value for p in served.metadata_props}["author"] == "someone else"
    record = json.loads((result.version_dir / "export.json").read_text())
    assert record["source"]["sha256"] and record["parity_reference"] == "ONNX Runtime on the original file"
    request = {"image": pixels(1), "strength": np.full((1, 1), 0.7, np.float32)}
    want = onnx_session(tint_onnx).run(["out"], {"image": pixels_to_network(request["image"], Picture("i", -1, 1)),
                                                 "strength": request["strength"]})[0]
    have = onnx_session(result.version_dir / "model.onnx").run(["out"], request)[0]
    assert np.abs(have.astype(int) - network_to_pixels(want, Picture("o", -1, 1))).max() <= 1


def test_tensors_without_a_batch_axis_get_one_and_the_model_takes_one_item_at_a_time(tmp_path):
    """As Magenta's multi-style network: image (1, 3, h, w) and style weights (26,) with no batch axis."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    weights = helper.make_tensor_value_info("weights", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    negated = helper.make_tensor_value_info("negated", TensorProto.FLOAT, [4])
    nodes = [helper.make_node("Add", ["x", "weights"], ["y"]), helper.make_node("Neg", ["weights"], ["negated"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x, weights], [y, negated]),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "mix.onnx"))
    result = export(tmp_path / "mix.onnx", repository=str(tmp_path / "repo"), input=["weights:float32:4:0..1"])
    config = parse_config((result.version_dir.parent / "config.pbtxt").read_text())
    assert config.max_batch_size == 1 and [list(t.dims) for t in config.input] == [[4], [4]]
    assert [list(t.dims) for t in config.output] == [[4], [4]]
    w = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    y, negated = onnx_session(result.version_dir / "model.onnx").run(["y", "negated"], {"x": w * 10, "weights": w})
    assert np.allclose(y, w * 11) and np.allclose(negated, -w) and negated.shape == (1, 4)


def test_declarations_that_contradict_the_graph_are_refused(tint_onnx, tmp_path):
    repo = tmp_path / "repo"
    for declaration, words in (("strength:float16:batch,1", "says float16"),
                               ("strength:float32:batch,2", "graph fixes it at 1"),
                               ("strength:float32:batch,1,1", "has 3 axes"), ("colour:float32:batch,1", "no input")):
        with pytest.raises(ArtforgeError, match=words):
            export(tint_onnx, repository=str(repo), input=[declaration])
    with pytest.raises(ArtforgeError, match="no input or output of that name"):
        export(tint_onnx, repository=str(repo), picture=["photo:-1..1"])
    with pytest.raises(ArtforgeError, match="channel axis"):
        export(tint_onnx, repository=str(repo), picture=["image:-1..1:nhwc"])
    assert not repo.exists()


def test_an_op_onnx_runtime_lacks_and_a_file_that_is_not_onnx_fail_in_one_line(tmp_path, capsys):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Warp", ["x"], ["y"], domain="com.example")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(tmp_path / "warp.onnx"))
    (tmp_path / "notes.onnx").write_text("not a model")
    for name, words in (("warp.onnx", "ONNX Runtime cannot load warp.onnx"), ("notes.onnx", "is not an ONNX model")):
        assert main(["export", str(tmp_path / name), "--repository", str(tmp_path / "repo")]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "repo").exists()


def test_the_parity_gate_fails_when_the_served_graph_converts_differently(tint_onnx, tmp_path, monkeypatch):
    import artforge.export.imported_export as imported_export

    monkeypatch.setattr(imported_export, "network_to_pixels", lambda v, p: network_to_pixels(v, p) // 2)
    with pytest.raises(ArtforgeError, match="parity check failed for output 'out'"):
        export(tint_onnx, repository=str(tmp_path / "repo"), picture=["image:-1..1", "out:-1..1"])
    assert not (tmp_path / "repo").exists()


# ---- a PyTorch module ----
def test_a_module_with_safetensors_or_state_dict_weights_matches_pytorch(tmp_path):
    net = make_tint()
    with torch.no_grad():
        net.conv.weight.mul_(3)  # weights unlike the factory's own: they must come from the file
    save_file(net.state_dict(), str(tmp_path / "tint.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 9}, tmp_path / "t.pt")
    for weights in ("tint.safetensors", "t.pt"):
        result = export(repository=str(tmp_path / "repo"), module="tests.export.test_imported:make_tint",
                        weights=str(tmp_path / weights), input=[IMAGE, STRENGTH], name="tint", max_batch=4)
        assert result.reference == "PyTorch" and all(r.ok for r in result.parity)
        x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 24, 40)).astype(np.float32)
        s = np.full((2, 1), 1.5, np.float32)
        have = onnx_session(result.version_dir / "model.onnx").run(["output"], {"image": x, "strength": s})[0]
        with torch.no_grad():
            want = net(torch.from_numpy(x), torch.from_numpy(s)).numpy()
        assert np.abs(have - want).max() < 1e-5
    assert result.version == 2


def test_a_module_from_a_file_path_with_named_outputs_and_pictures(tmp_path):
    source = "import torch\n\n\ndef two():\n    return torch.nn.Sequential(torch.nn.Identity())\n"
    (tmp_path / "nets.py").write_text(source)
    result = export(repository=str(tmp_path / "repo"), module=f"{tmp_path / 'nets.py'}:two", output=["picture"],
                    input=["photo:float32:batch,3,h=8..64,w=8..64"], picture=["photo:0..1", "picture:0..1:nchw:bgr"])
    request = pixels(2, height=9, width=13)
    have = onnx_session(result.version_dir / "model.onnx").run(["picture"], {"photo": request})[0]
    assert np.array_equal(have, request[..., ::-1]) and result.name == "two"


@pytest.mark.parametrize("case, words", [
    ("pickled", "never unpickles code"), ("mismatch", "do not fit the network"), ("factory", "raised ValueError"),
    ("missing", "has no function 'nothing'"), ("no-inputs", "needs every input declared"),
    ("shape", "fails on inputs shaped as declared")])
def test_a_module_that_cannot_be_exported_says_why_in_one_line_and_writes_nothing(case, words, tmp_path, capsys):
    module, weights, inputs = "tests.export.test_imported:make_tint", "", [IMAGE, STRENGTH]
    if case == "pickled":
        torch.save(make_tint(), tmp_path / "w.pt")
        weights = str(tmp_path / "w.pt")
    elif case == "mismatch":
        save_file({"conv.weight": torch.zeros(3, 3, 5, 5), "conv.bias": torch.zeros(3)},
                  str(tmp_path / "w.safetensors"))
        weights = str(tmp_path / "w.safetensors")
    module = {"factory": "tests.export.test_imported:make_broken",
              "missing": "tests.export.test_imported:nothing"}.get(case, module)
    inputs = {"no-inputs": [], "shape": ["image:float32:batch,4,16,16", STRENGTH]}.get(case, inputs)
    args = ["export", "--module", module, "--repository", str(tmp_path / "repo")]
    args += [a for i in inputs for a in ("--input", i)] + (["--weights", weights] if weights else [])
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    if case == "mismatch":
        assert "conv.weight" in err
    assert not (tmp_path / "repo").exists()


# ---- served by Triton, called with `artforge infer` ----
@pytest.fixture(scope="module")
def imported_server(tint_onnx, tmp_path_factory):
    from artforge.serving.server import Server

    repo = tmp_path_factory.mktemp("imported-repo")
    export(tint_onnx, repository=str(repo), input=[STRENGTH], picture=["image:-1..1", "out:-1..1"], max_batch=4)
    export(repository=str(repo), module="tests.export.test_imported:make_tint", input=[IMAGE, STRENGTH],
           picture=["image:-1..1", "output:-1..1"], name="tint_pt", max_batch=4)
    with Server(repo, grpc_port=0, http_port=0, metrics_port=0) as server:
        yield server, repo


def test_served_imported_models_answer_what_they_answer_in_process(imported_server):
    from artforge.serving.client import Client

    server, repo = imported_server
    request = {"image": pixels(5, batch=2, height=33, width=47), "strength": np.array([[0.2], [1.9]], np.float32)}
    with Client(server.grpc_url) as client:
        for name, output in (("tint", "out"), ("tint_pt", "output")):
            served = client.infer(name, request)[output]
            in_process = onnx_session(repo / name / "1" / "model.onnx").run([output], request)[0]
            assert served.dtype == np.uint8 and np.array_equal(served, in_process), name
        with torch.no_grad():  # and the PyTorch module itself, through the declared conversions
            x = torch.from_numpy(pixels_to_network(request["image"], Picture("image", -1, 1)))
            want = network_to_pixels(make_tint()(x, torch.from_numpy(request["strength"])).numpy(), Picture("o", -1, 1))
        assert np.abs(served.astype(int) - want).max() <= 1
        with pytest.raises(ArtforgeError, match="strength.*above its maximum 2"):
            client.infer("tint", {**request, "strength": np.full((2, 1), 5, np.float32)})


def test_infer_writes_pictures_and_a_json_summary_from_files(imported_server, tmp_path, capsys):
    from artforge.serving.client import Client

    server, repo = imported_server
    photo = pixels(6, height=40, width=30)[0]
    Image.fromarray(photo).save(tmp_path / "photo.png")
    args = ["infer", "--url", server.grpc_url, "--model", "tint", "--input", f"image={tmp_path / 'photo.png'}",
            "--input", "strength=0.5", "--out", str(tmp_path / "out")]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["outputs"]["out"]["shape"] == [1, 40, 30, 3] and summary["inputs"]["strength"]["max"] == 0.5
    written = np.asarray(Image.open(tmp_path / "out" / "out.png"))
    with Client(server.grpc_url) as client:
        want = client.infer("tint", {"image": photo[None], "strength": np.full((1, 1), 0.5, np.float32)})["out"][0]
    assert np.array_equal(written, want)
    assert main(args[:-4]) == 1  # strength missing: named with its dtype and shape
    assert "give --input for strength (float32 (batch, 1))" in capsys.readouterr().err


# ---- formats users already have ----
def upstream_style_keys() -> set[str]:
    """pytorch/examples fast_neural_style TransformerNet's state dict keys, from its module names."""
    convs = ["conv1", "conv2", "conv3", "deconv1", "deconv2", "deconv3"]
    keys = {f"{c}.conv2d.{p}" for c in convs for p in ("weight", "bias")}
    keys |= {f"in{i}.{p}" for i in range(1, 6) for p in ("weight", "bias")}
    for r in range(1, 6):
        keys |= {f"res{r}.{m}.{p}" for m in ("conv1.conv2d", "conv2.conv2d", "in1", "in2") for p in ("weight", "bias")}
    return keys


def upstream_cyclegan_keys(blocks: int = 9) -> set[str]:
    """junyanz's resnet_9blocks generator with instance norm (no affine): convolutions only."""
    layers = [f"model.{i}" for i in (1, 4, 7, 10 + blocks, 13 + blocks, 17 + blocks)]
    layers += [f"model.{10 + b}.conv_block.{i}" for b in range(blocks) for i in (1, 5)]
    return {f"{layer}.{p}" for layer in layers for p in ("weight", "bias")}


def test_known_layouts_have_the_upstream_keys():
    from artforge.export.known_networks import FastStyleNet, ResnetGenerator, UnetGenerator

    assert set(FastStyleNet().state_dict()) == upstream_style_keys()
    assert set(ResnetGenerator().state_dict()) == upstream_cyclegan_keys()
    unet = UnetGenerator().state_dict()  # unet_256 with batch norm: 8 levels; a level's inner ones are its 3rd layer
    innermost = "model.model.1.model." + "3.model." * 6
    assert {"model.model.0.weight", "model.model.3.weight", "model.model.3.bias", f"{innermost}1.weight",
            f"{innermost}3.weight", f"{innermost}4.running_var"} <= set(unet) and "model.model.0.bias" not in unet


@pytest.mark.parametrize("layout", ["style", "cyclegan", "pix2pix"])
def test_state_dicts_in_public_layouts_are_recognised_and_exported(layout, tmp_path, capsys):
    from artforge.export.known_networks import FastStyleNet, ResnetGenerator, UnetGenerator

    torch.manual_seed(1)
    net = {"style": FastStyleNet, "cyclegan": lambda: ResnetGenerator(width=8, blocks=6),
           "pix2pix": lambda: UnetGenerator(levels=7, width=8, norm="instance")}[layout]().eval()
    state = net.state_dict()
    if layout == "style":  # as the 2017 models were saved: InstanceNorm running stats the network ignores
        state = {**state, "in1.running_mean": torch.zeros(32), "in1.running_var": torch.ones(32)}
    torch.save(state, tmp_path / "latest_net_G.pth")
    assert main(["export", str(tmp_path / "latest_net_G.pth"), "--repository", str(tmp_path / "repo"),
                 "--max-batch", "2", "--name", "known"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert {"style": "fast_neural_style TransformerNet", "cyclegan": "CycleGAN ResnetGenerator (6 blocks, instance",
            "pix2pix": "pix2pix UnetGenerator (7 levels, instance"}[layout] in first
    side = 128 if layout == "pix2pix" else 64
    photo = pixels(7, height=side, width=side)
    low, high = (0, 255) if layout == "style" else (-1, 1)
    with torch.no_grad():
        want = net(torch.from_numpy(pixels_to_network(photo, Picture("i", low, high)))).numpy()
    have = onnx_session(tmp_path / "repo" / "known" / "1" / "model.onnx").run(["output"], {"image": photo})[0]
    assert np.abs(have.astype(int) - network_to_pixels(want, Picture("o", low, high))).max() <= 1


def test_a_state_dict_in_no_known_layout_is_refused_with_what_to_do(tmp_path, capsys):
    save_file({"encoder.weight": torch.zeros(4, 4)}, str(tmp_path / "mystery.safetensors"))
    assert main(["export", str(tmp_path / "mystery.safetensors"), "--repository", str(tmp_path / "repo")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no layout artforge knows" in err and "--module" in err


@pytest.mark.slow
def test_a_diffusers_unet_folder_is_exported_and_answers_as_diffusers_does(tmp_path):
    import diffusers  # the diffusers extra, in the dev install

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, num_class_embeds=5)
    unet.save_pretrained(tmp_path / "unet")
    result = export(tmp_path / "unet", repository=str(tmp_path / "repo"), max_batch=4)
    assert "diffusers UNet2DModel folder (3x16x16, 5 classes)" in result.source
    config = parse_config((result.version_dir.parent / "config.pbtxt").read_text())
    assert [i.name for i in config.input] == ["sample", "timestep", "class_labels"]
    rng = np.random.default_rng(0)
    sample = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    timestep, label = np.array([[5], [500], [999]]), np.array([[0], [2], [4]])
    have = onnx_session(result.version_dir / "model.onnx").run(
        ["prediction"], {"sample": sample, "timestep": timestep, "class_labels": label})[0]
    with torch.no_grad():
        want = unet(torch.from_numpy(sample), torch.from_numpy(timestep[:, 0]),
                    class_labels=torch.from_numpy(label[:, 0])).sample.numpy()
    assert np.abs(have - want).max() < 1e-4
    limits = json.loads(config.parameters["artforge.limits"].string_value)
    assert limits["timestep"] == {"dims": [[1, 1]], "min": 0, "max": 999}
    assert limits["class_labels"] == {"dims": [[1, 1]], "min": 0, "max": 4}


# ---- benched as served, whoever exported it ----
def test_a_request_drawn_from_a_served_contract_keeps_to_its_limits():
    from artforge.benchmarks.served import contract_request
    from artforge.contract import TensorSpec
    from artforge.serving.client import ModelInfo

    info = ModelInfo("m", (TensorSpec("image", "uint8", ("dim0", "dim1", 3)), TensorSpec("w", "float32", (26,)),
                           TensorSpec("k", "int64", (1,))), (), 4,
                     limits={"image": {"dims": [[80, 512], [16, 40], [3, 3]]}, "w": {"min": 0.0, "max": 1.0},
                             "k": {"min": 2, "max": 4}})
    request = contract_request(info, 3, seed=0, side=64)
    assert request["image"].shape == (3, 80, 40, 3) and request["image"].dtype == np.uint8  # 64 clipped into range
    assert request["w"].shape == (3, 26) and 0 <= request["w"].min() and request["w"].max() <= 1
    assert set(request["k"].ravel()) <= {2, 3, 4}


def test_bench_measures_a_served_model_from_what_the_server_says(imported_server, tmp_path):
    from tests.perf_analyzer_here import perf_analyzer_here

    server, repo = imported_server
    analyzer, _ = perf_analyzer_here()
    out = tmp_path / "bench"
    assert main(["bench", "--url", server.grpc_url, "--model", "tint", "--out", str(out), "--concurrency", "1,2",
                 "--batch-sizes", "1,2", "--requests", "20", "--warmup", "2", "--sizes", "48", "--quiet",
                 "--onnx", str(repo / "tint" / "1" / "model.onnx"), "--baseline-seconds", "0.2",
                 *(["--perf-analyzer"] if analyzer else [])]) == 0
    document = json.loads((out / "bench.json").read_text())
    assert document["model"]["request"] == {"image": [48, 48, 3], "strength": [1]}
    points = {(p["concurrency"], p["batch"]): p for p in document["triton"]}
    assert set(points) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert all(p["errors"] == 0 and p["requests"] == 20 for p in points.values())
    assert points[(1, 2)]["items_per_s"] == pytest.approx(2 * points[(1, 2)]["requests_per_s"])
    if analyzer:  # CI has it: perf_analyzer sent the same request and Triton answered it
        pa = {p["concurrency"]: p for p in document["perf_analyzer"]["points"]}
        assert "error" not in pa[1] and pa[1]["server_compute_infer_us"] > 0
        assert document["ratios"]["artforge_p50_over_perf_analyzer_c1"] == pytest.approx(
            points[(1, 1)]["latency_ms"]["p50"] / pa[1]["p50_ms"])
    one = document["one_client_b1"]  # the served file in-process, in turns with Triton, on the same request
    assert one["max_abs_difference"] == {"out": 0.0} and one["onnxruntime"]["calls"] >= 20
    assert document["ratios"]["triton_minus_onnxruntime_b1_ms"] == pytest.approx(
        one["triton"]["p50_ms"] - one["onnxruntime"]["p50_ms"])
    assert "| tint | 2 | 2 |" in (out / "bench.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["AutoencoderKL", "VQModel"])
def test_a_diffusers_vae_folder_serves_its_decoder_as_pictures(kind, tmp_path):
    import diffusers  # the diffusers extra, in the dev install

    torch.manual_seed(0)
    blocks = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), norm_num_groups=8,
                  sample_size=16, layers_per_block=1)
    vae = getattr(diffusers, kind)(latent_channels=4, **blocks, **({"num_vq_embeddings": 16} if kind == "VQModel"
                                                                    else {})).eval()
    vae.save_pretrained(tmp_path / "vae")
    result = export(tmp_path / "vae", repository=str(tmp_path / "repo"), max_batch=2)
    assert f"diffusers {kind} folder: its decoder, latents 4x8x8" in result.source
    latent = np.random.default_rng(0).standard_normal((2, 4, 8, 8)).astype(np.float32)
    have = onnx_session(result.version_dir / "model.onnx").run(["image"], {"latent": latent})[0]
    with torch.no_grad():
        want = vae.decode(torch.from_numpy(latent) / vae.config.scaling_factor).sample.numpy()
    assert have.shape == (2, 16, 16, 3) and have.dtype == np.uint8  # a picture on the wire
    assert np.abs(have.astype(int) - network_to_pixels(want, Picture("o", -1, 1))).max() <= 1


def test_infer_calls_a_family_model_with_a_class_by_name(triton, dcgan_run, tmp_path, capsys):
    from tests.served import in_process

    z = np.random.default_rng(4).standard_normal(16).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    args = ["infer", "--url", triton.grpc_url, "--model", "dcgan", "--input", f"z={tmp_path / 'z.npy'}"]
    assert main([*args, "--input", "style=waves", "--out", str(tmp_path / "out")]) == 0
    written = np.asarray(Image.open(tmp_path / "out" / "image.png"))
    want = in_process(dcgan_run, {"z": z[None], "style": np.array([[4]])})["image"][0]  # 'waves' is class 4
    assert np.abs(written.astype(int) - want.astype(int)).max() <= 1
    assert main([*args, "--input", "style=sky", "--out", str(tmp_path / "x")]) == 1
    assert "unknown class 'sky'" in capsys.readouterr().err
