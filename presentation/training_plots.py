"""Figures of a training run: reliability with counts, gains and lift, ROC and PR, bands, contributions, backtest.

Each function takes arrays or a table computed in `training` and returns a `matplotlib.figure.Figure`
(`presentation.figures`); callers save or embed it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.presentation.figures import COLOURS, GREY, figure, percent_axis, png, swarm_offsets, thousands, write_png


def reliability_figure(y: np.ndarray, curves: Mapping[str, np.ndarray], n_bins: int = 15) -> Any:
    """Observed conversion rate against mean predicted probability per bin, with lead counts below."""
    y = np.asarray(y, dtype="float64")
    fig, (ax, ax_n) = figure(2, 1, size=(6.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color=GREY, lw=1, label="perfectly calibrated")
    edges = np.linspace(0, 1, n_bins + 1)
    width = 1 / n_bins / (len(curves) + 1)
    for i, (name, p) in enumerate(curves.items()):
        p = np.asarray(p, dtype="float64")
        bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
        counts = np.bincount(bins, minlength=n_bins)
        used = counts > 0
        mean_p = np.bincount(bins, weights=p, minlength=n_bins)[used] / counts[used]
        rate = np.bincount(bins, weights=y, minlength=n_bins)[used] / counts[used]
        ax.plot(mean_p, rate, marker="o", label=name, color=COLOURS[i % len(COLOURS)])
        ax_n.bar(edges[:-1] + i * width, counts, width=width, align="edge", label=name,
                 color=COLOURS[i % len(COLOURS)])
    upper = min(1.0, max(float(np.max(np.concatenate([np.asarray(p) for p in curves.values()]))) * 1.1, 0.2))
    ax.set_xlim(0, upper)
    ax.set_ylim(0, upper)
    percent_axis(ax, "y")
    ax.set_ylabel("observed conversion rate")
    ax.set_title("Reliability on the test slice")
    ax.legend(loc="upper left")
    ax_n.set_yscale("log")
    ax_n.set_ylabel("leads (log scale)")
    ax_n.set_xlabel("predicted probability")
    return fig


def gains_figure(y: np.ndarray, curves: Mapping[str, np.ndarray]) -> Any:
    """Cumulative gains (share of conversions captured vs share of leads worked) and lift by decile."""
    y = np.asarray(y, dtype=float)
    fig, (ax, ax_lift) = figure(1, 2, size=(11, 4.5))
    share = np.arange(1, len(y) + 1) / len(y)
    ax.plot([0, 1], [0, 1], ls="--", color=GREY, lw=1, label="random order")
    best = np.cumsum(np.sort(y)[::-1]) / y.sum()
    ax.plot(share, best, color="lightgrey", lw=1, label="perfect")
    deciles = np.arange(1, 11)
    for i, (name, p) in enumerate(curves.items()):
        order = np.argsort(-np.asarray(p), kind="stable")
        gains = np.cumsum(y[order]) / y.sum()
        ax.plot(share, gains, label=name, color=COLOURS[i % len(COLOURS)])
        rates = [y[order[int((d - 1) * len(y) / 10): int(d * len(y) / 10)]].mean() / y.mean() for d in deciles]
        ax_lift.bar(deciles + (i - 0.5) * 0.4, rates, width=0.4, label=name, color=COLOURS[i % len(COLOURS)])
    percent_axis(ax, "x")
    percent_axis(ax, "y")
    ax.set_xlabel("leads worked (highest score first)")
    ax.set_ylabel("conversions captured")
    ax.set_title("Cumulative gains")
    ax.legend(loc="lower right")
    ax_lift.axhline(1, color=GREY, ls="--", lw=1)
    ax_lift.set_xticks(deciles)
    ax_lift.set_xlabel("decile (1 = highest scores)")
    ax_lift.set_ylabel("lift (conversion rate / overall)")
    ax_lift.set_title("Lift by decile")
    ax_lift.legend()
    return fig


def roc_pr_points(y: np.ndarray, curves: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Each model's ROC and precision-recall curve points with ROC AUC and PR AUC: what `roc_pr_figure` draws.
    Computed where the scores are (scikit-learn is loaded there): the figure process need not load it."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    y = np.asarray(y, dtype=int)
    out = {}
    for name, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        precision, recall, _ = precision_recall_curve(y, p)
        out[name] = {"fpr": fpr, "tpr": tpr, "roc_auc": float(roc_auc_score(y, p)), "recall": recall,
                     "precision": precision, "pr_auc": float(average_precision_score(y, p))}
    return out


def roc_pr_figure(y: np.ndarray, curves: Mapping[str, np.ndarray],
                  points: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """ROC and precision-recall curves of each model on the same leads, with ROC AUC and PR AUC in the legend
    (`points`: `roc_pr_points` of the same labels and scores, when already computed)."""
    y = np.asarray(y, dtype=int)
    points = roc_pr_points(y, curves) if points is None else points
    fig, (ax_roc, ax_pr) = figure(1, 2, size=(11, 4.5))
    ax_roc.plot([0, 1], [0, 1], ls="--", color=GREY, lw=1, label="random order")
    ax_pr.axhline(y.mean(), ls="--", color=GREY, lw=1, label=f"random order ({y.mean():.1%})")
    for i, name in enumerate(curves):
        colour, pt = COLOURS[i % len(COLOURS)], points[name]
        ax_roc.plot(pt["fpr"], pt["tpr"], label=f"{name} (ROC AUC {pt['roc_auc']:.3f})", color=colour)
        ax_pr.plot(pt["recall"], pt["precision"], label=f"{name} (PR AUC {pt['pr_auc']:.3f})", color=colour)
    ax_roc.set_xlabel("share of non-converting leads flagged")
    ax_roc.set_ylabel("share of converting leads flagged")
    ax_roc.set_title("ROC curve on the test slice")
    ax_roc.legend(loc="lower right")
    ax_pr.set_xlabel("recall (share of conversions found)")
    ax_pr.set_ylabel("precision (conversion rate of the leads worked)")
    ax_pr.set_ylim(0, 1.02)
    ax_pr.set_title("Precision-recall on the test slice")
    ax_pr.legend(loc="lower left")
    return fig


def bands_figure(table: pd.DataFrame) -> Any:
    """Expected (sum of probabilities) vs observed conversions per band, with lead counts under the bars.

    `table` has one row per band with columns band, n, expected, observed (`training.evaluate.band_table`).
    """
    fig, ax = figure(size=(7, 4.5))
    x = np.arange(len(table))
    expected = table["expected"].to_numpy(dtype=float)
    observed = table["observed"].to_numpy(dtype=float)
    bars_e = ax.bar(x - 0.2, expected, width=0.4, label="expected (sum of probabilities)", color="#9ecae1")
    bars_o = ax.bar(x + 0.2, observed, width=0.4, label="observed conversions", color="#3182bd")
    ax.bar_label(bars_e, labels=[f"{v:,.0f}" for v in expected], fontsize=8)
    ax.bar_label(bars_o, labels=[f"{v:,.0f}" for v in observed], fontsize=8)
    ax.set_xticks(x, [f"{b}\n{int(n):,} leads" for b, n in zip(table["band"], table["n"], strict=True)])
    thousands(ax)
    ax.set_ylabel("conversions")
    ax.set_title("Expected vs observed conversions per band (test slice)")
    ax.legend(loc="upper left")
    return fig


def contributions_figure(contributions: np.ndarray, X: pd.DataFrame, *, categorical: set[str] | frozenset[str] = (),
                         max_display: int = 20) -> Any:
    """A beeswarm of margin contributions per feature, the largest mean |contribution| on top.

    Numeric features are coloured by their value (low to high, a colour bar); categorical features have no
    order, so their points are one neutral colour and the row says "(category)" (the dependence figure shows the
    effect of each level). Missing values are grey.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    contrib = np.asarray(contributions, dtype=float)[:, : X.shape[1]]
    order = np.argsort(-np.abs(contrib).mean(axis=0), kind="stable")[:max_display]
    n_rows = len(order)
    fig, ax = figure(size=(8.5, 0.38 * n_rows + 1.6))
    cmap = colormaps["coolwarm"]
    rng_labels = []
    for row, j in enumerate(order[::-1]):
        name = str(X.columns[j])
        c = contrib[:, j]
        offsets = swarm_offsets(c)
        values = X.iloc[:, j]
        missing = values.isna().to_numpy()
        if name in categorical:
            colours = np.where(missing, GREY, "#6a51a3")
            rng_labels.append(f"{name} (category)")
            ax.scatter(c, row + offsets, s=5, c=list(colours), alpha=0.6, linewidths=0)
        else:
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
            rank = pd.Series(x).rank(pct=True).to_numpy()
            colour = np.where(missing[:, None], np.array([[0.6, 0.6, 0.6, 1.0]]), cmap(np.nan_to_num(rank)))
            rng_labels.append(name)
            ax.scatter(c, row + offsets, s=5, c=colour, alpha=0.7, linewidths=0)
    ax.axvline(0, color=GREY, lw=0.8)
    ax.set_yticks(np.arange(n_rows), rng_labels, fontsize=9)
    ax.set_ylim(-0.6, n_rows - 0.4)
    ax.set_xlabel("contribution to the log-odds margin (negative lowers the probability)")
    ax.set_title(f"What drives the score: contributions of each feature ({len(contrib):,} test leads)")
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=cmap), ax=ax, aspect=40, pad=0.01)
    bar.set_ticks([0, 1], labels=["low", "high"])
    bar.set_label("value of a numeric feature (grey: missing)")
    return fig


def dependence_figure(contributions: np.ndarray, X: pd.DataFrame, *,
                      categories: Mapping[str, tuple[str, ...]] | None = None, top_k: int = 4) -> Any:
    """Feature value vs its contribution for the `top_k` features with the largest mean |contribution|.

    Numbers are a scatter (missing values at the left edge, in red); categories show every lead per level as a
    jittered strip with the level's mean, so a reader sees the effect of each level.
    """
    categories = dict(categories or {})
    contrib = np.asarray(contributions, dtype=float)[:, : X.shape[1]]
    order = np.argsort(-np.abs(contrib).mean(axis=0), kind="stable")[:top_k]
    n_cols = 2 if len(order) > 1 else 1
    n_rows = int(np.ceil(len(order) / n_cols))
    fig, axes = figure(n_rows, n_cols, size=(5.5 * n_cols, 3.9 * n_rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, j in zip(axes.ravel(), order, strict=False):
        name = X.columns[j]
        values = X.iloc[:, j].to_numpy(dtype=float)
        c = contrib[:, j]
        missing = np.isnan(values)
        if name in categories:
            labels = list(categories[name]) + ["(missing)"]
            codes = np.where(missing, len(labels) - 1, values).astype(int)
            used = np.unique(codes)
            pos = {code: i for i, code in enumerate(used)}
            xs = np.array([pos[code] for code in codes], dtype=float)
            ax.scatter(xs + rng.uniform(-0.25, 0.25, len(xs)), c, s=4, alpha=0.3, color=COLOURS[0])
            means = [c[codes == code].mean() for code in used]
            ax.scatter(np.arange(len(used)), means, marker="_", s=300, color="black", label="mean")
            ax.set_xticks(np.arange(len(used)), [labels[code] for code in used], rotation=60, ha="right",
                          fontsize=7)
        else:
            ax.scatter(values[~missing], c[~missing], s=4, alpha=0.3, color=COLOURS[0])
            if missing.any():
                left = np.nanmin(values) if (~missing).any() else 0.0
                ax.scatter(np.full(missing.sum(), left), c[missing], s=4, alpha=0.3, color="red", label="missing")
                ax.legend(loc="best", fontsize=8)
            finite = values[~missing]
            # Heavy-tailed counts and money are easier to read on a log axis.
            if finite.size and finite.min() >= 0 and np.quantile(finite, 0.99) > 50 * max(np.median(finite), 1):
                ax.set_xscale("symlog")
        ax.axhline(0, color=GREY, lw=0.8)
        ax.set_title(str(name))
        ax.set_ylabel("contribution (log-odds)")
    for ax in axes.ravel()[len(order):]:
        ax.set_visible(False)
    fig.suptitle("Dependence: feature value vs its contribution")
    return fig


def learning_curve_figure(table: pd.DataFrame) -> Any:
    """Test ROC AUC and log loss against the number of training leads (latest leads kept)."""
    fig, (ax_auc, ax_loss) = figure(1, 2, size=(11, 4))
    n = table["n_train"].to_numpy(dtype=float)
    ax_auc.plot(n, table["roc_auc"], marker="o", color=COLOURS[0])
    ax_loss.plot(n, table["log_loss"], marker="o", color="#d95f02")
    for ax, text in ((ax_auc, "test ROC AUC (higher is better)"), (ax_loss, "test log loss (lower is better)")):
        ax.set_xlabel("training leads (the most recent ones)")
        ax.set_ylabel(text)
        ax.grid(alpha=0.3)
        thousands(ax, "x")
    for x, f, auc in zip(n, table["fraction"], table["roc_auc"], strict=True):
        ax_auc.annotate(f"{f:.0%}", (x, auc), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax_auc.set_title("Learning curve: does more data help?")
    ax_loss.set_title("Learning curve: log loss")
    return fig


def backtest_figure(table: pd.DataFrame) -> Any:
    """ROC AUC and calibration-in-the-large of each rolling-origin fold, by test period, with fold sizes."""
    fig, (ax_auc, ax_cal) = figure(2, 1, size=(8, 6), sharex=True)
    x = np.arange(len(table))
    ax_auc.plot(x, table["roc_auc"], marker="o", color=COLOURS[0])
    for xi, auc, n in zip(x, table["roc_auc"], table["n"], strict=True):
        if np.isfinite(auc):
            ax_auc.annotate(f"{int(n):,} leads", (xi, auc), textcoords="offset points", xytext=(0, 6), ha="center",
                            fontsize=7)
    ax_auc.margins(y=0.2)
    ax_auc.set_ylabel("ROC AUC")
    ax_auc.set_title("Rolling-origin backtest (train on earlier months, test on the next)")
    ax_auc.grid(alpha=0.3)
    ax_cal.axhline(0, color=GREY, ls="--", lw=1)
    ax_cal.bar(x, table["calibration_in_the_large"] * 100, color="#3182bd")
    ax_cal.set_ylabel("mean probability - rate (points)")
    ax_cal.set_xlabel("test period")
    ax_cal.set_xticks(x, [str(p) for p in table["test_period"]], rotation=45, ha="right")
    ax_cal.grid(alpha=0.3)
    return fig


def report_figures(parts: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """The training report's figures, key -> (file name, figure), from `model_report.figure_parts`."""
    y, curves = parts["y"], parts["curves"]
    figures = {
        "plots_reliability": ("reliability.png", reliability_figure(y, curves)),
        "plots_gains_lift": ("gains_lift.png", gains_figure(y, curves)),
        "plots_roc_pr": ("roc_pr.png", roc_pr_figure(y, curves, parts.get("roc_pr"))),
        "plots_bands": ("bands.png", bands_figure(parts["bands"])),
        "plots_shap_summary": ("shap_summary.png", contributions_figure(
            parts["contributions"], parts["explained"], categorical=set(parts["categorical"]))),
        "plots_dependence": ("dependence.png", dependence_figure(
            parts["contributions"], parts["explained"], categories=parts["vocab"], top_k=4)),
    }
    if parts["learning"] is not None:
        figures["plots_learning_curve"] = ("learning_curve.png", learning_curve_figure(parts["learning"]))
    if parts["backtest"] is not None and not parts["backtest"].empty:
        figures["plots_backtest"] = ("backtest.png", backtest_figure(parts["backtest"]))
    return figures


def draw_report_figures(parts: Mapping[str, Any], directory: str | os.PathLike) -> dict[str, Path]:
    """Draw `report_figures` into PNG files in `directory` (each written atomically); key -> path."""
    directory = Path(directory)
    return {key: write_png(png(fig), directory / name) for key, (name, fig) in report_figures(parts).items()}
