"""What a request may hold, checked before any work is done for it: shapes first, then values.

One copy of these rules serves both sides of the wire: the client checks a request before it
sends it, and Triton's Python model (`export` copies this file beside its model.py) checks it
again before ONNX Runtime allocates anything. So it imports numpy only: no artforge, no torch.

Limits are JSON, one entry per input tensor, written into config.pbtxt as the parameter
`artforge.limits` (edit it there to change what a served model accepts):

    {"content": {"dims": [[16, 2048], [16, 2048], [3, 3]]},
     "style_weights": {"dims": [[2, 2]], "min": 0, "finite": true, "positive_sum": true}}
"""
import numpy as np


def shape_problem(name, shape, limit, max_batch):
    """Why a declared (batch, ...) shape is refused, or None; reads no data."""
    dims = limit.get("dims", [])
    if len(shape) != len(dims) + 1:
        return f"input '{name}' has {len(shape)} dimensions, the model takes {len(dims) + 1} (batch first)"
    if not 1 <= shape[0] <= max(max_batch, 1):
        return f"input '{name}' has batch {shape[0]}; the model takes 1 to {max(max_batch, 1)}"
    for axis, (size, (low, high)) in enumerate(zip(shape[1:], dims), start=1):
        if not low <= size <= high:
            allowed = f"{low}" if low == high else f"{low} to {high}"
            return f"input '{name}' has size {size} on axis {axis}; the model takes {allowed} there"
    return None


def value_problem(name, array, limit):
    """Why an input's values are refused (NaN, out of range, an all-zero mix), or None."""
    if limit.get("finite") and not np.isfinite(array).all():
        return f"input '{name}' holds NaN or infinite values"
    low, high = limit.get("min"), limit.get("max")
    if low is not None and array.size and array.min() < low:
        return f"input '{name}' holds {array.min().item()}, below its minimum {low}"
    if high is not None and array.size and array.max() > high:
        return f"input '{name}' holds {array.max().item()}, above its maximum {high}"
    if limit.get("positive_sum") and (array.reshape(len(array), -1).sum(axis=1) <= 0).any():
        return f"input '{name}' must have a positive sum in every item (e.g. a one-hot style choice)"
    return None

