"""Triton Python-backend model: runs the version folder's model.onnx with ONNX Runtime.

`artforge export --runtime embedded` copies this file as REPO/NAME/VERSION/model.py. It is the
same for every model family: tensor names come from config.pbtxt, which artforge generates from
the family's spec. It imports neither artforge nor torch, so it also runs in a stock Triton
container that has onnxruntime installed.
"""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def pick_providers(available, kind):
    """GPU instances try TensorRT, then CUDA, before the CPU."""
    if kind == "KIND_GPU":
        wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        return [p for p in wanted if p in available]
    return ["CPUExecutionProvider"]


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0") or 0)
        options.inter_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        providers = pick_providers(ort.get_available_providers(), args.get("model_instance_kind", "KIND_CPU"))
        self.session = ort.InferenceSession(path, options, providers=providers)

    def execute(self, requests):
        # The dynamic batcher hands over several requests at once: run those whose item shapes
        # agree as one batch (image-to-image requests of different sizes cannot be stacked).
        inputs = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names] for r in requests]
        responses = [None] * len(requests)
        for indices in group_by_item_shape(inputs):
            self.run_group(indices, inputs, responses)
        return responses

    def run_group(self, indices, inputs, responses):
        sizes = [inputs[i][0].shape[0] for i in indices]
        feed = {name: np.concatenate([inputs[i][k] for i in indices]) if len(indices) > 1 else inputs[indices[0]][k]
                for k, name in enumerate(self.input_names)}
        try:
            results = self.session.run(self.output_names, feed)
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

    def finalize(self):
        self.session = None


def group_by_item_shape(inputs):
    groups = {}
    for i, tensors in enumerate(inputs):
        groups.setdefault(tuple(t.shape[1:] for t in tensors), []).append(i)
    return list(groups.values())
