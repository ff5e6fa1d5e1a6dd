"""What a served model answered, held against what its checkpoint computes in-process."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from artforge.export.parity import UINT8_TOLERANCE, compare
from artforge.registry import load_network, spec_for


@torch.no_grad()
def in_process(run: str | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The checkpoint's serving network (the graph export traces) on the same request."""
    network, checkpoint = load_network(run)
    spec = spec_for(checkpoint)
    out = spec.serving_network(network)(*(torch.from_numpy(inputs[t.name]) for t in spec.inputs))
    return {t.name: o.numpy() for t, o in zip(spec.outputs, out if isinstance(out, tuple) else (out,))}


def assert_served_matches(run: str | Path, inputs: dict[str, np.ndarray], served: dict[str, np.ndarray]) -> None:
    """Every served output equals the in-process one within the family's parity tolerance (uint8: one
    grey level)."""
    spec = spec_for(load_network(run)[1])
    for name, want in in_process(run, inputs).items():
        if name not in served:
            continue
        result = compare(name, want, served[name], len(want), {}, spec.parity_tolerance)
        if want.dtype == np.uint8:
            result.tolerance, result.absolute = UINT8_TOLERANCE, True
        assert result.ok, result.line()
