"""Pictures of measurements: a confusion matrix and quality curves, written atomically as PNG."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from artforge.files import atomic_write_bytes


def figure_png(figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())


def confusion_matrix_png(matrix: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    """Rows: true label, columns: predicted; each cell shows its count, coloured by its row share."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    matrix = np.asarray(matrix)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = 1.6 + 0.55 * len(labels)
    figure = Figure(figsize=(side + 1.2, side))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                  color="white" if shares[row, column] > 0.5 else "black")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true label")
    figure_png(figure, path)


def curves_png(steps: list[float], series: dict[str, list[float]], path: Path, title: str,
               x_label: str = "step") -> None:
    """One panel per measure against training steps (e.g. FD and KID during a run), or another x_label."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4 * len(series), 3.2))
    for index, (name, values) in enumerate(series.items(), start=1):
        axes = figure.add_subplot(1, len(series), index)
        axes.plot(steps, values, marker="o")
        axes.set_xlabel(x_label)
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    figure_png(figure, path)
