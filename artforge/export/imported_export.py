"""`artforge export` of a model trained elsewhere: an ONNX file, or a PyTorch module and its weights.

Either way the network becomes an ONNX graph (the user's own, or torch.onnx's export of the module),
pictures get their uint8 conversions inside it, and the parity gate holds the served graph against the
original (ONNX Runtime on the user's file, or the PyTorch module) on the converted requests, at batch
1, 3 and the largest, and at the smallest and odd sizes of dynamic axes. Nothing is written otherwise.
"""
from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError

from artforge.checkpoint import file_digest, package_versions
from artforge.errors import ArtforgeError
from artforge.export.declarations import Picture, by_name, parse_input, parse_picture
from artforge.export.formats import Recognised, is_diffusers_folder, recognise
from artforge.export.imported import GraphTensor, ImportedSpec, contract, graph_tensors, network_spec
from artforge.export.onnx_model import OnnxReport, add_metadata, export_onnx
from artforge.export.parity import UINT8_TOLERANCE, onnx_session, parity_cases, run_parity
from artforge.export.pictures import add_batch_axes, add_pictures, network_to_pixels, pixels_to_network
from artforge.export.publish import (ExportOptions, ExportResult, check_max_dim, parse_formats, publish,
                                     triton_options)
from artforge.export.triton_repo import validate_name
from artforge.export.user_module import load_user_network

MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for one ONNX file without external data
FLOAT_TOLERANCE = 1e-4  # |difference| / max(1, |value|), as for the families


@dataclass
class Network:
    """A network as ONNX plus the reference the parity gate holds the served graph to."""

    graph: onnx.ModelProto  # float pictures, the network's own layout
    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]  # network inputs -> outputs in graph order
    reference: str  # what `run` is, for the summary
    source: dict[str, Any]  # where it came from (export.json, ONNX metadata)
    nodes_exported: int
    took: str  # one line: what artforge took the file or module for
    inputs: list[str]  # the --input declarations in force (the user's, or a known format's)
    pictures: list[str]  # likewise --picture


def is_imported(opts: ExportOptions) -> bool:
    """A --module, a file (artforge's own checkpoints are folders) or a diffusers folder."""
    return bool(opts.module) or Path(opts.source).is_file() or is_diffusers_folder(Path(opts.source))


def export_imported(opts: ExportOptions) -> ExportResult:
    """Export an ONNX file or a PyTorch module (opts.source / opts.module) into the repository."""
    check_options(opts)
    name = opts.name or default_name(opts)
    validate_name(name)
    network = source_network(opts)
    triton = triton_options(opts, use_engine=False)
    spec, served = served_graph(network, opts, name)
    if spec.fixed_batch:
        triton.max_batch = 1
    with tempfile.TemporaryDirectory(prefix="artforge-export-") as work:
        path = Path(work) / "model.onnx"
        data = served.SerializeToString(deterministic=True)
        path.write_bytes(data)
        report = OnnxReport(network.nodes_exported, len(served.graph.node), opset_of(served), len(data))
        parity = check_imported_parity(network, spec, path, triton.max_batch, opts)
        result = ExportResult(name, 0, Path(), report, parity, reference=network.reference, source=network.took)
        files = {"model.onnx": path, "export.json": write_record(Path(work), network, spec, result, triton)}
        return publish(result, opts.repository, spec, triton, files)


def source_network(opts: ExportOptions) -> Network:
    """The network to export: a --module, a file or folder in a known format, or an ONNX file."""
    if opts.module:
        return module_network(opts)
    found = recognise(Path(opts.source))
    if found:
        return recognised_network(found, opts)
    return onnx_file_network(Path(opts.source), opts.input, opts.picture)


def check_options(opts: ExportOptions) -> None:
    if "tensorrt" in parse_formats(opts.formats) or opts.cpu_runtime != "onnxruntime" or opts.precision != "fp32":
        raise ArtforgeError("a model trained elsewhere is exported as ONNX for ONNX Runtime (fp32) for now; leave out "
                            "--formats, --cpu-runtime and --precision")
    if opts.float_output:
        raise ArtforgeError("--float-output is for artforge's own image families; declare what a model outputs "
                            "with --picture")
    if opts.module and opts.source:
        raise ArtforgeError(f"give either a file to export ({opts.source}) or --module, not both")
    if opts.weights and not opts.module:
        raise ArtforgeError("--weights go with --module (the network they belong to)")
    if opts.output and not opts.module and Path(opts.source).suffix == ".onnx":
        raise ArtforgeError("--output names a PyTorch network's outputs; an ONNX file's outputs have their names")


def default_name(opts: ExportOptions) -> str:
    """The file's stem, or the factory's name, as a Triton model name."""
    raw = opts.module.rpartition(":")[2] if opts.module else Path(opts.source).stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw).lstrip("_.-") or "model"


# ---- the two sources ----
def onnx_file_network(path: Path, inputs: list[str], pictures: list[str]) -> Network:
    """The user's ONNX file, and ONNX Runtime running it unchanged as the reference."""
    try:
        graph = onnx.load(str(path))
    except (DecodeError, OSError, ValueError, RuntimeError) as e:
        raise ArtforgeError(f"{path} is not an ONNX model ({first_line(e)}); artforge exports ONNX files, checkpoint "
                            "folders, or --module networks") from None
    if graph.ByteSize() > MAX_PROTO_BYTES:
        raise ArtforgeError(f"{path} is over 2 GB with its weights; artforge does not export such models yet")
    session = runtime_session(path)
    names = [o.name for o in session.get_outputs()]
    source = {"kind": "onnx", "path": str(path), **file_digest(path)}
    took = (f"took {path} for an ONNX file: opset {opset_of(graph)}, inputs {[i.name for i in session.get_inputs()]}, "
            f"outputs {names}")
    return Network(graph, lambda feed: session.run(names, feed), "ONNX Runtime on the original file", source,
                   len(graph.graph.node), took, inputs, pictures)


def module_network(opts: ExportOptions) -> Network:
    """The user's PyTorch module with its weights, exported by torch.onnx; PyTorch is the reference."""
    if not opts.input:
        raise ArtforgeError("--module needs every input declared with --input NAME:DTYPE:SHAPE (a network has no "
                            "graph to read them from yet)")
    network, source = load_user_network(opts.module, opts.weights)
    return pytorch_network(network, source, opts.input, opts.picture, opts.output,
                           f"took {opts.module} for a PyTorch network")


def recognised_network(found: Recognised, opts: ExportOptions) -> Network:
    """A network from a known format, with its declarations unless the user declared the same names."""
    return pytorch_network(found.network, found.source, overridden(found.inputs, opts.input),
                           overridden(found.pictures, opts.picture), opts.output or found.outputs, found.what)


def overridden(defaults: list[str], given: list[str]) -> list[str]:
    """The user's declarations, and the defaults for names they did not declare."""
    names = {text.split(":")[0] for text in given}
    return [text for text in defaults if text.split(":")[0] not in names] + list(given)


def pytorch_network(network: torch.nn.Module, source: dict[str, Any], input_texts: list[str],
                    picture_texts: list[str], output_given: list[str], took: str) -> Network:
    """Export a PyTorch network to ONNX from its declared inputs; the network itself is the reference."""
    declarations = [parse_input(text) for text in input_texts]
    inputs = [d.name for d in declarations]
    draft, merged, _ = contract([GraphTensor(d.name, d.dtype, None) for d in declarations], [], declarations, [], {})
    if draft.fixed_batch:
        raise ArtforgeError("a PyTorch network is exported with a dynamic batch axis: declare the first axis of its "
                            "inputs as 'batch' (it is traced at batch 2)")
    outputs = output_names(network, draft, output_given)
    shared = sorted(set(outputs) & set(inputs))
    if shared:
        raise ArtforgeError(f"an output may not have an input's name ({shared[0]}); name the outputs with --output")
    wrapped = TupleOutputs(network)
    with tempfile.TemporaryDirectory(prefix="artforge-trace-") as work:
        path = Path(work) / "network.onnx"
        report = export_onnx(wrapped, network_spec(draft, merged, declarations, outputs), path, {})
        graph = onnx.load(str(path))

    @torch.no_grad()
    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [o.numpy() for o in wrapped(*(torch.from_numpy(feed[n]) for n in inputs))]
    return Network(graph, run, "PyTorch", source, report.nodes_exported, f"{took}: inputs {inputs}, outputs {outputs}",
                   input_texts, picture_texts)


class TupleOutputs(torch.nn.Module):
    """The user's network with its answer as a tuple of tensors (one tensor, a list or a dict's values)."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, *inputs):
        out = self.network(*inputs)
        if isinstance(out, dict):
            return tuple(out.values())
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@torch.no_grad()
def output_names(network: torch.nn.Module, spec: ImportedSpec, given: list[str]) -> list[str]:
    """The names of what the network returns: as given, a dict's keys, 'output', or output0, output1, ..."""
    sample = spec.sample_inputs(1 if spec.fixed_batch else 2, seed=0)
    try:
        out = network(*(torch.from_numpy(sample[t.name]) for t in spec.inputs))
    except Exception as e:  # the user's network may raise anything on inputs that do not suit it
        raise ArtforgeError(f"the network fails on inputs shaped as declared ({first_line(e)}); check --input") \
            from None
    count = len(out) if isinstance(out, (tuple, list, dict)) else 1
    if given:
        if len(given) != count:
            raise ArtforgeError(f"the network returns {count} tensor(s); --output names {len(given)}")
        return list(given)
    if isinstance(out, dict):
        return [str(k) for k in out]
    return ["output"] if count == 1 and not isinstance(out, (tuple, list)) else [f"output{i}" for i in range(count)]


# ---- the served graph and its parity gate ----
def served_graph(network: Network, opts: ExportOptions, name: str) -> tuple[ImportedSpec, onnx.ModelProto]:
    """The served contract, and the graph with pictures converted inside it and artforge's metadata."""
    graph = network.graph
    initializers = {i.name for i in graph.graph.initializer}
    pictures = [parse_picture(text) for text in network.pictures]
    metadata = {"source": network.source, "pictures": {p.name: asdict(p) for p in pictures}}
    spec, inputs, outputs = contract(graph_tensors(graph.graph.input, initializers), graph_tensors(graph.graph.output),
                                     [parse_input(text) for text in network.inputs], pictures, metadata)
    if opts.max_dim:
        check_max_dim(opts.max_dim, spec)
        spec.limit_dynamic_dims(opts.max_dim)
    unbatched = spec.metadata["unbatched"]
    batched = add_batch_axes(graph, [n for n in unbatched if n in {t.name for t in inputs}],
                             [n for n in unbatched if n in {t.name for t in outputs}])
    served = add_pictures(batched, by_name(pictures, "--picture"), {t.name: t.shape for t in (*inputs, *outputs)})
    add_metadata(served, {"family": spec.family, "model_name": name, "source": network.source,
                          "normalization": spec.normalization, "spec": spec.to_json(),
                          "artforge_version": package_versions()["artforge"]}, keep_others=True)
    try:
        onnx.checker.check_model(served)
    except onnx.checker.ValidationError as e:
        raise ArtforgeError(f"the served graph fails onnx.checker: {first_line(e)}") from None
    return spec, served


def check_imported_parity(network: Network, spec: ImportedSpec, path: Path, max_batch: int, opts: ExportOptions):
    """The served graph against the reference, on requests converted as the served graph converts them."""
    session = runtime_session(path)
    pictures = {name: Picture(**p) for name, p in spec.metadata["pictures"].items()}
    outputs = [t.name for t in spec.outputs]

    unbatched = set(spec.metadata["unbatched"])

    def reference(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        network_feed = {n: pixels_to_network(v, pictures[n]) if n in pictures else v for n, v in feed.items()}
        answers = network.run({n: v[0] if n in unbatched else v for n, v in network_feed.items()})
        answers = [a[None] if n in unbatched else a for n, a in zip(outputs, answers)]
        return [network_to_pixels(a, pictures[n]) if n in pictures else a for n, a in zip(outputs, answers)]

    def served(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return session.run(outputs, feed)
        except Exception as e:  # ONNX Runtime's own error types
            sizes = {n: v.shape for n, v in feed.items()}
            raise ArtforgeError(f"ONNX Runtime cannot run the model on inputs {sizes}: {first_line(e)}") from None
    cases = sorted({(min(b, max_batch), tuple(s.items())) for b, s in parity_cases(spec, max_batch)})
    tolerance = FLOAT_TOLERANCE if opts.tolerance is None else opts.tolerance
    return run_parity(spec, [(b, dict(s)) for b, s in cases], 1234, reference, served, tolerance, UINT8_TOLERANCE,
                      f"the served graph differs from {network.reference}")


def runtime_session(path: Path):
    try:
        return onnx_session(path)
    except ArtforgeError:
        raise
    except Exception as e:  # ONNX Runtime's own error types: an op it lacks, a graph it cannot load
        raise ArtforgeError(f"ONNX Runtime cannot load {path.name}: {first_line(e)}") from None


def write_record(work: Path, network: Network, spec: ImportedSpec, result: ExportResult, triton) -> Path:
    """export.json beside the model: where it came from, its contract and the parity figures."""
    record = {"source": network.source, "family": spec.family, "spec": spec.to_json(), "triton": asdict(triton),
              "onnx": asdict(result.onnx), "parity": [asdict(r) for r in result.parity],
              "parity_reference": network.reference, "versions": package_versions()}
    path = work / "export.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def opset_of(graph: onnx.ModelProto) -> int:
    return next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), 0)


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
