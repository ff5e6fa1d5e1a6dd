"""Triton Python-backend model: runs the version folder's model.onnx with ONNX Runtime (or OpenVINO).

`artforge export --runtime embedded` copies this file as REPO/NAME/VERSION/model.py. It is the
same for every model family: tensor names, request limits and the CPU runtime (the parameter
`artforge.cpu_runtime`: onnxruntime, or openvino through openvino_session.py) come from config.pbtxt,
which artforge generates from the family's spec. It imports neither artforge nor torch, so it also
runs in a stock Triton container that has onnxruntime (or openvino) installed.

Every request is checked against the limits before ONNX Runtime sees it: declared shapes first
(from the request, no data read), then values. A bad request gets INVALID_ARG and costs nothing.
"""
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

# request_limits.py, decoding.py, denoising.py: copied beside
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from openvino_session import STATIC_SHAPES, OpenVinoSession  # noqa: E402
from decoding import Outbox, Sequence, StreamScheduler, batches_streams, continuous_batch, decode, stepper  # noqa: E402
from denoising import SAMPLERS, DenoiseBatch, Denoising  # noqa: E402
from request_limits import shape_problem, value_problem  # noqa: E402

# ONNX Runtime keeps the memory of its largest run in its arena (11 GB after one 4096x4096 photo);
# runs whose inputs exceed this (about a 1.4-megapixel photo) give it back afterwards
SHRINK_ARENA_ABOVE_BYTES = 4 << 20


def pick_providers(available, kind, installed=None):
    """GPU instances try TensorRT, then CUDA, before the CPU; a GPU instance with neither is an error,
    not a silent fall-back to the CPU."""
    if kind != "KIND_GPU":
        return ["CPUExecutionProvider"]
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    if not any(p in available for p in wanted[:2]):
        installed = installed_onnxruntimes() if installed is None else installed
        raise RuntimeError(f"a KIND_GPU instance needs ONNX Runtime's CUDA provider, but only {available} are "
                           f"available: {gpu_install_problem(installed)}")
    return [p for p in wanted if p in available]


def installed_onnxruntimes():
    from importlib import metadata

    found = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return found


def gpu_install_problem(installed):
    names = [i.split()[0] for i in installed]
    if "onnxruntime" in names and "onnxruntime-gpu" in names:
        return (f"both {' and '.join(installed)} are installed and the CPU package hides the CUDA provider; "
                "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu (docs/gpu.md)")
    if "onnxruntime-gpu" not in names:
        return "onnxruntime-gpu is not installed (pip install 'artforge[gpu]', docs/gpu.md)"
    return "onnxruntime-gpu is installed but finds no CUDA (check the driver and the CUDA/cuDNN libraries it needs)"


def onnxruntime_session(path, threads, kind):
    """(session, the onnxruntime module) for this instance's kind of device."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=pick_providers(ort.get_available_providers(), kind)), ort


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        self.max_batch = int(config.get("max_batch_size", 0))
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.limits = json.loads(params.get("artforge.limits", "") or "{}")
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        threads = int(params.get("intra_op_threads", "0") or 0)
        if params.get("artforge.cpu_runtime") == "openvino":
            shapes = int(params.get("artforge.openvino_static_shapes") or STATIC_SHAPES)
            self.session = OpenVinoSession(path, params.get("artforge.precision") or "fp32", threads, shapes)
            self.ort = None
            pb_utils.Logger.log_info(f"{config['name']}: OpenVINO runs model.onnx in {self.session.precision}")
        else:
            self.session, self.ort = onnxruntime_session(path, threads, args.get("model_instance_kind", "KIND_CPU"))
        if params.get("artforge.answer_from_memory") == "true":  # the bench's serving-path-only model
            self.session = AnswersFromMemory(self.session)
        self.stream = json.loads(params["artforge.stream"]) if params.get("artforge.stream") else None
        self.sampler = json.loads(params["artforge.sampler"]) if params.get("artforge.sampler") else None
        self.scheduler, self.outbox = self.start_loop_thread(int(params.get("artforge.max_streams", "") or 1))

    def start_loop_thread(self, most):
        """(scheduler, outbox) of a loop model whose concurrent requests (up to `most`) run as one batch on a
        thread, else (None, None)."""
        if self.sampler:  # pictures step together; each preview is sent from the stepping thread (a few a request)
            return StreamScheduler(DenoiseBatch(self.denoise), most), None
        if self.stream and batches_streams(self.stream):  # streams decode together
            return (StreamScheduler(continuous_batch(self.session.run, self.stream), most),
                    Outbox(lambda sender, tokens: sender.send(self.token_response(tokens)), self.end_stream))
        return None, None

    def execute(self, requests):
        if self.stream or self.sampler:
            for request in requests:
                serve = self.submit_picture if self.sampler else self.submit_stream if self.scheduler \
                    else self.stream_tokens
                serve(request, request.get_response_sender())
            return None  # a decoupled model answers through the response senders (here or from the thread)
        # The dynamic batcher hands over several requests at once: run those whose item shapes
        # agree as one batch (image-to-image requests of different sizes cannot be stacked).
        responses = [None] * len(requests)
        inputs, accepted = [], []
        for i, request in enumerate(requests):
            tensors, problem = self.read_request(request)
            if problem:
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(problem, pb_utils.TritonError.INVALID_ARG))
            else:
                inputs.append(tensors)
                accepted.append(i)
        for group in group_by_item_shape(inputs):
            self.run_group([accepted[k] for k in group], [inputs[k] for k in group], responses)
        return responses

    def read_request(self, request):
        """(input arrays, None) for a request within the limits, or (None, why it is refused)."""
        tensors = [pb_utils.get_input_tensor_by_name(request, name) for name in self.input_names]
        for name, tensor in zip(self.input_names, tensors):
            problem = shape_problem(name, list(tensor.shape()), self.limits.get(name, {}), self.max_batch)
            if problem:
                return None, problem
        arrays = [tensor.as_numpy() for tensor in tensors]
        for name, array in zip(self.input_names, arrays):
            problem = value_problem(name, array, self.limits.get(name, {}))
            if problem:
                return None, problem
        return arrays, None

    def run_group(self, indices, inputs, responses):
        """Run requests `indices` (their arrays in `inputs`) as one ONNX Runtime call."""
        sizes = [arrays[0].shape[0] for arrays in inputs]
        feed = {name: np.concatenate([arrays[k] for arrays in inputs]) if len(inputs) > 1 else inputs[0][k]
                for k, name in enumerate(self.input_names)}
        try:
            results = self.session.run(self.output_names, feed, self.run_options(feed))
        except Exception as e:  # ONNX Runtime's own error types; report them to each client
            for i in indices:
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"inference failed: {e}"))
            return
        offset = 0
        for i, size in zip(indices, sizes):
            tensors = [pb_utils.Tensor(name, value[offset:offset + size])
                       for name, value in zip(self.output_names, results)]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            offset += size

    def read_stream_request(self, request, sender):
        """The request's settings by input name, or None after refusing it on its stream."""
        arrays, problem = self.read_request(request)
        if problem:
            refusal = pb_utils.TritonError(problem, pb_utils.TritonError.INVALID_ARG)
            sender.send(pb_utils.InferenceResponse(error=refusal), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return None
        given = {name: array[0] for name, array in zip(self.input_names, arrays)}
        given.setdefault("top_p", np.ones(1, np.float32))  # repositories exported before top_p
        return given

    def stream_tokens(self, request, sender):
        """Run the decoding loop for one request here, one response per token, then the final flag."""
        given = self.read_stream_request(request, sender)
        if given is None:
            return
        cancelled = getattr(request, "is_cancelled", lambda: False)  # the client went away: stop working for it
        tokens = decode(stepper(self.session.run, self.stream), given["prompt"], given["max_tokens"][0],
                        float(given["temperature"][0]), int(given["top_k"][0]), given["seed"][0], self.stream["eos"],
                        cancelled, float(given["top_p"][0]))
        try:
            for token in tokens:
                sender.send(self.token_response([token]))
        except Exception as e:  # ONNX Runtime's own error types
            self.end_stream(sender, f"inference failed: {e}")
            return
        self.end_stream(sender, None)

    def submit_stream(self, request, sender):
        """Hand a request to the decoding thread, which batches it with the other open streams."""
        given = self.read_stream_request(request, sender)
        if given is None:
            return
        sequence = Sequence(given["prompt"], given["max_tokens"][0], given["temperature"][0], given["top_k"][0],
                            given["seed"][0], self.stream["eos"], given["top_p"][0])
        client_gone = getattr(sender, "is_cancelled", None) or getattr(request, "is_cancelled", lambda: False)
        self.scheduler.submit(sequence, lambda token: self.outbox.token(sender, token),
                              lambda error: self.outbox.end(sender, error),
                              lambda: sender in self.outbox.broken or client_gone())

    def submit_picture(self, request, sender):
        """Hand a diffusion request to the sampling thread, which steps it with the other open ones."""
        given = self.read_stream_request(request, sender)
        if given is None:
            return
        picture = Denoising(self.sampler, given["style"][0], given["seed"][0], given["steps"][0],
                            given["guidance"][0], SAMPLERS[int(given["sampler"][0])], given["previews"][0])
        # sent at once from the stepping thread: through a sending thread (as tokens go) previews queued behind
        # the stepping for tens of milliseconds on 2 cores; a failed send ends the picture there
        self.scheduler.submit(picture, lambda event: sender.send(self.picture_response(event)),
                              lambda error: self.end_stream(sender, error),
                              getattr(sender, "is_cancelled", None) or getattr(request, "is_cancelled", lambda: False))

    def denoise(self, x, t, classes):
        names = self.sampler
        return self.session.run([names["output"]], {names["sample_input"]: x, names["timestep_input"]: t,
                                                   names["class_input"]: classes})[0]

    def picture_response(self, event):
        step, image = event
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("image", image[None]), pb_utils.Tensor("step", np.array([[step]], np.int32))])

    def token_response(self, tokens):
        """One response with these tokens (several when they queued while the last response went out)."""
        text = np.array([[self.stream["vocab"][t].encode("utf-8") for t in tokens]], dtype=np.object_)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("token", np.array([tokens], np.int64)), pb_utils.Tensor("text", text)])

    def end_stream(self, sender, error):
        """The final flag; with the error when the stream failed (a cancelled one just ends)."""
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        if error and error != "cancelled":
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(error)), flags=final)
        else:
            sender.send(flags=final)

    def run_options(self, feed):
        if self.ort is None:  # OpenVINO: no arena to shrink
            return None
        options = self.ort.RunOptions()
        if sum(value.nbytes for value in feed.values()) > SHRINK_ARENA_ABOVE_BYTES:
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return options

    def finalize(self):
        if self.scheduler:
            self.scheduler.close()
        if self.outbox:
            self.outbox.close()
        self.session = None


class AnswersFromMemory:
    """Computes each input shape's answer once, then repeats it: what Triton, gRPC and this backend cost
    when the model costs nothing. `artforge bench` serves such a copy to show what is left to win."""

    def __init__(self, session):
        self.session, self.answers = session, {}

    def run(self, names, feed, options=None):
        key = (tuple(names),) + tuple((name, value.shape, value.dtype.str) for name, value in sorted(feed.items()))
        if key not in self.answers:
            self.answers = self.answers if len(self.answers) < 64 else {}
            self.answers[key] = self.session.run(names, feed, options)
        return self.answers[key]


def group_by_item_shape(inputs):
    groups = {}
    for i, tensors in enumerate(inputs):
        groups.setdefault(tuple(t.shape[1:] for t in tensors), []).append(i)
    return list(groups.values())
