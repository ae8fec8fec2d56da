"""The one figure helper: `matplotlib.figure.Figure` objects, never pyplot state, never a backend switch.

A `Figure` made directly renders through the Agg canvas when saved and belongs to no pyplot figure manager, so
nothing piles up in long runs, nothing changes a notebook's backend, and a notebook still displays a returned
figure (it has a PNG repr). `png` / `base64_png` / `save_png` turn a figure into bytes, text for an `<img>`, or
an atomically written file.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import numpy as np

from leadscore.features.io import write_bytes

DPI = 110
# One palette for every report: the model first, the rules or baseline second, then the rest.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
GREY = "#9a9a9a"


def figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] = (7.0, 4.5), squeeze: bool = True,
           **subplot_kw: Any) -> tuple[Any, Any]:
    """A new Figure and its axes (as `plt.subplots` returns them), detached from pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **subplot_kw)
    return fig, axes


def png(fig: Any, *, dpi: int = DPI) -> bytes:
    """PNG bytes of a figure."""
    import io

    buffer = io.BytesIO()
    # Every figure comes from `figure` with the constrained layout, which already fits labels and legends inside
    # the canvas; bbox_inches="tight" would lay each figure out a second time (a quarter of the report's drawing).
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def base64_png(fig: Any) -> str:
    """Base64 PNG of a figure, for an `<img src="data:...">`."""
    return base64.b64encode(png(fig)).decode("ascii")


def save_png(fig: Any, path: str | os.PathLike) -> Path:
    """Write a figure as PNG atomically (temporary file beside the target, then rename); returns the path."""
    return write_bytes(png(fig), path)


def write_png(data: bytes, path: str | os.PathLike) -> Path:
    """Write PNG bytes atomically; returns the path."""
    return write_bytes(data, path)


def thousands(ax: Any, axis: str = "y") -> None:
    """Tick labels with thousands separators (counts read 12,000, not 12000 or 1.2e4)."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda v, _: f"{v:,.0f}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(formatter)


def percent_axis(ax: Any, axis: str = "y", *, scale: float = 1.0) -> None:
    """Tick labels as percentages; `scale` = 100 when the data are already in percent."""
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(xmax=scale, decimals=0))


def swarm_offsets(x: np.ndarray, *, n_bins: int = 80, width: float = 0.4) -> np.ndarray:
    """Vertical offsets that spread points with similar x into a beeswarm row of half-height `width`."""
    x = np.asarray(x, dtype="float64")
    if len(x) == 0:
        return np.zeros(0)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    span = hi - lo if hi > lo else 1.0
    cell = np.minimum(((x - lo) / span * n_bins).astype(int), n_bins - 1)
    order = np.argsort(cell, kind="stable")
    sorted_cells = cell[order]
    starts = np.searchsorted(sorted_cells, sorted_cells, side="left")
    rank = np.arange(len(x)) - starts
    counts = np.bincount(cell, minlength=n_bins)
    step = width / max(int(counts.max()) // 2, 1)
    # 0, +1, -1, +2, -2 ... steps from the row's centre line.
    signed = np.where(rank % 2 == 0, rank // 2, -(rank // 2 + 1)).astype("float64")
    out = np.empty(len(x))
    out[order] = signed * step
    return np.clip(out, -width, width)
