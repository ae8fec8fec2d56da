"""Evaluation plots (PNG): reliability diagram with counts, cumulative gains and lift."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def reliability_diagram(y: np.ndarray, curves: dict[str, np.ndarray], path: str | os.PathLike,
                        n_bins: int = 15) -> Path:
    """Observed conversion rate against mean predicted probability per bin, with lead counts below."""
    plt = _figure()
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(6, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    edges = np.linspace(0, 1, n_bins + 1)
    width = 1 / n_bins / (len(curves) + 1)
    for i, (name, p) in enumerate(curves.items()):
        bins = np.minimum((np.asarray(p) * n_bins).astype(int), n_bins - 1)
        xs, ys, ns = [], [], []
        for k in range(n_bins):
            mask = bins == k
            if mask.sum():
                xs.append(np.mean(p[mask]))
                ys.append(np.mean(y[mask]))
                ns.append(mask.sum())
        ax.plot(xs, ys, marker="o", label=name)
        counts = np.bincount(bins, minlength=n_bins)
        ax_n.bar(edges[:-1] + i * width, counts, width=width, align="edge", label=name)
    upper = min(1.0, max(float(np.max(np.concatenate(list(curves.values())))) * 1.1, 0.2))
    ax.set_xlim(0, upper)
    ax.set_ylim(0, upper)
    ax.set_ylabel("observed conversion rate")
    ax.set_title("Reliability on the test slice")
    ax.legend(loc="upper left")
    ax_n.set_yscale("log")
    ax_n.set_ylabel("leads")
    ax_n.set_xlabel("predicted probability")
    out = _save(fig, path)
    plt.close(fig)
    return out


def gains_chart(y: np.ndarray, curves: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Cumulative gains (share of conversions captured vs share of leads worked) and lift by decile."""
    plt = _figure()
    y = np.asarray(y, dtype=float)
    fig, (ax, ax_lift) = plt.subplots(1, 2, figsize=(11, 4.5))
    share = np.arange(1, len(y) + 1) / len(y)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="random")
    best = np.cumsum(np.sort(y)[::-1]) / y.sum()
    ax.plot(share, best, color="lightgrey", lw=1, label="perfect")
    deciles = np.arange(1, 11)
    for i, (name, p) in enumerate(curves.items()):
        order = np.argsort(-np.asarray(p), kind="stable")
        gains = np.cumsum(y[order]) / y.sum()
        ax.plot(share, gains, label=name)
        rates = [y[order[int((d - 1) * len(y) / 10): int(d * len(y) / 10)]].mean() / y.mean() for d in deciles]
        ax_lift.bar(deciles + (i - 0.5) * 0.4, rates, width=0.4, label=name)
    ax.set_xlabel("share of leads worked (highest score first)")
    ax.set_ylabel("share of conversions captured")
    ax.set_title("Cumulative gains")
    ax.legend(loc="lower right")
    ax_lift.axhline(1, color="grey", ls="--", lw=1)
    ax_lift.set_xticks(deciles)
    ax_lift.set_xlabel("decile (1 = highest scores)")
    ax_lift.set_ylabel("lift (conversion rate / overall)")
    ax_lift.set_title("Lift by decile")
    ax_lift.legend()
    out = _save(fig, path)
    plt.close(fig)
    return out
