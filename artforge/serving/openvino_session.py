"""OpenVINO as the CPU runtime of an exported model, behind ONNX Runtime's `session.run` interface.

`artforge export --cpu-runtime openvino` copies this file beside the Triton Python model, which then
runs model.onnx with OpenVINO instead of ONNX Runtime; `artforge export` and `artforge bench` use the
same class in-process, so the parity check and the in-process baseline run what Triton runs. It
imports only numpy and openvino: no artforge, no torch.

Why two compiled models: OpenVINO's CPU plugin runs a model with dynamic sizes (any photo size)
slower than one compiled for a fixed shape (measured in `artforge bench --cpu-runtime openvino`; the
benchmarks/results/README.md cites the results files), and compiling one takes a noticeable time.
So every request runs on
the dynamic model until its exact shape has been seen `COMPILE_AFTER` times; that shape is then
compiled for on a background thread (no request waits 150 ms for it) and used from then on, for up
to `STATIC_SHAPES` shapes (the first ones seen twice keep their place): a stream of same-sized video
frames gets its own model after two frames.
Inside Triton the compile advances only while requests run (the Python backend's stub holds the GIL
between requests): the third and fourth requests of a new size are slower (the compile shares the
cores), and from the fifth on the size runs on its own model.
"""
import threading

import numpy as np

PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # artforge's names -> OpenVINO's
# The dynamic batcher makes every batch size a shape of its own: 8 holds batches 1-4 at one size and
# batches 1 and 4 at two more. A shape past the limit runs on the dynamic model; config.pbtxt's
# parameter artforge.openvino_static_shapes changes the limit (each compiled shape holds its own buffers).
STATIC_SHAPES = 8
COMPILE_AFTER = 2


def install_hint():
    return "OpenVINO is not installed: pip install 'artforge[openvino]'"


class OpenVinoSession:
    """`run(output_names, feed)` like onnxruntime.InferenceSession, on OpenVINO's CPU plugin."""

    def __init__(self, path, precision="fp32", threads=0, static_shapes=STATIC_SHAPES, compile_after=COMPILE_AFTER):
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeError(install_hint()) from None
        if precision not in PRECISIONS:
            raise ValueError(f"OpenVINO precision '{precision}' is not one of {', '.join(PRECISIONS)}")
        self.core = ov.Core()
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISIONS[precision]}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self.model = self.core.read_model(str(path))
        dynamic = self.core.compile_model(self.model, "CPU", self.config)
        # what the CPU really runs: a bf16 hint on a CPU without bf16 instructions runs f32, and f16 runs bf16
        self.precision = dynamic.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # f32, bf16, f16
        self.dynamic = dynamic.create_infer_request()
        self.static = {}  # shape key -> infer request of a model compiled for exactly that shape
        self.seen, self.failed = {}, set()
        self.static_shapes, self.compile_after = static_shapes, compile_after
        self.compiling = None

    def run(self, output_names, feed, run_options=None):
        """The outputs named, as arrays this call owns (the next call reuses OpenVINO's buffers)."""
        key = tuple((name, value.shape) for name, value in sorted(feed.items()))
        request = self.static.get(key)
        if request is None:
            request = self.dynamic
            self.note_shape(key)
        request.infer(feed)
        return [np.array(request.get_tensor(name).data, copy=True) for name in output_names]

    def note_shape(self, key):
        if key in self.failed or len(self.static) >= self.static_shapes:
            return
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen[key] >= self.compile_after and (self.compiling is None or not self.compiling.is_alive()):
            self.compiling = threading.Thread(target=self.compile_static, args=(key,), daemon=True,
                                              name="openvino-compile")
            self.compiling.start()

    def compile_static(self, key):
        try:
            model = self.model.clone()
            model.reshape({name: list(shape) for name, shape in key})
            request = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        except Exception:  # OpenVINO's own error types: that shape keeps running on the dynamic model
            self.failed.add(key)
            return
        self.static[key] = request  # one dict assignment: run() sees the old state or the new

    def wait_for_compiles(self, timeout_s=30.0):
        """Tests and benchmarks: let a background compile finish before timing."""
        if self.compiling is not None:
            self.compiling.join(timeout_s)
