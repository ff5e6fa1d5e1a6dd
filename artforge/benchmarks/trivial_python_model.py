"""The least a Triton Python-backend model can do with a model's tensors: read every input and answer
zeros of the outputs' shapes. `artforge bench --perf-analyzer` serves it as MODEL-trivial beside the model
(copied as its model.py), so that Triton's own split of the same requests tells what artforge's model.py
costs beyond the backend's floor. Runs inside Triton only (triton_python_backend_utils)."""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [(t["name"], [int(d) for d in t["dims"]], pb_utils.triton_string_to_numpy(t["data_type"]))
                        for t in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=self.zeros(request)) for request in requests]

    def zeros(self, request):
        """Zeros for every output; a variable dimension (-1) takes the size of an input of the same rank
        (an image-to-image model answers a picture the size of the one it got)."""
        arrays = [pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs]
        lead = [arrays[0].shape[0]] if self.batched else []
        tensors = []
        for name, dims, dtype in self.outputs:
            like = next((a for a in arrays if a.ndim == len(lead) + len(dims)), None)
            shape = lead + [d if d >= 0 else like.shape[len(lead) + i] for i, d in enumerate(dims)]
            tensors.append(pb_utils.Tensor(name, np.zeros(shape, dtype)))
        return tensors
