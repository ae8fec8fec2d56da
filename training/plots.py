"""Evaluation plots (PNG): reliability diagram with counts, cumulative gains and lift."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def _figure():
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


def roc_pr_curves(y: np.ndarray, curves: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """ROC and precision-recall curves of each model on the same leads, with AUC and PR AUC in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    plt = _figure()
    y = np.asarray(y, dtype=int)
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax_roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="random")
    ax_pr.axhline(y.mean(), ls="--", color="grey", lw=1, label=f"random ({y.mean():.3f})")
    for name, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax_roc.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
        precision, recall, _ = precision_recall_curve(y, p)
        ax_pr.plot(recall, precision, label=f"{name} (PR AUC {average_precision_score(y, p):.3f})")
    ax_roc.set_xlabel("false positive rate")
    ax_roc.set_ylabel("true positive rate")
    ax_roc.set_title("ROC curve on the test slice")
    ax_roc.legend(loc="lower right")
    ax_pr.set_xlabel("recall (share of conversions found)")
    ax_pr.set_ylabel("precision (conversion rate of the leads worked)")
    ax_pr.set_ylim(0, 1.02)
    ax_pr.set_title("Precision-recall on the test slice")
    ax_pr.legend(loc="lower left")
    out = _save(fig, path)
    plt.close(fig)
    return out


def band_expected_observed(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Expected (sum of probabilities) vs observed conversions per band, with lead counts on the bars.

    `table` has one row per band with columns band, n, expected, observed (see `training.model_card.band_table`).
    """
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = np.arange(len(table))
    expected = table["expected"].to_numpy(dtype=float)
    observed = table["observed"].to_numpy(dtype=float)
    bars_e = ax.bar(x - 0.2, expected, width=0.4, label="expected (sum of probabilities)", color="#9ecae1")
    bars_o = ax.bar(x + 0.2, observed, width=0.4, label="observed conversions", color="#3182bd")
    ax.bar_label(bars_e, labels=[f"{v:.0f}" for v in expected], fontsize=8)
    ax.bar_label(bars_o, labels=[f"{v:.0f}" for v in observed], fontsize=8)
    ax.set_xticks(x, [f"{b}\n{int(n):,} leads" for b, n in zip(table["band"], table["n"], strict=True)])
    ax.set_ylabel("conversions")
    ax.set_title("Expected vs observed conversions per band (test slice)")
    ax.legend(loc="upper left")
    out = _save(fig, path)
    plt.close(fig)
    return out


def shap_summary(contributions: np.ndarray, X: pd.DataFrame, path: str | os.PathLike, *, max_display: int = 20) -> Path:
    """SHAP beeswarm of the base LightGBM model's margin contributions (categoricals coloured by their code).

    `contributions` is `booster.predict(X, pred_contrib=True)`: one column per feature and the bias last.
    """
    import warnings

    plt = _figure()
    with warnings.catch_warnings():
        # shap's colour maps use matplotlib calls slated for deprecation: third-party noise in every test run.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

    contrib = np.asarray(contributions, dtype=float)[:, : X.shape[1]]
    shap.summary_plot(contrib, features=X, feature_names=list(X.columns), max_display=max_display, show=False,
                      plot_size=(8, 0.35 * min(max_display, X.shape[1]) + 1.5))
    fig = plt.gcf()
    ax = fig.axes[0]
    ax.set_xlabel("contribution to the log-odds margin (SHAP value)")
    ax.set_title(f"Feature contributions, base LightGBM model ({len(contrib):,} test leads)")
    out = _save(fig, path)
    plt.close(fig)
    return out


def dependence_plots(contributions: np.ndarray, X: pd.DataFrame, path: str | os.PathLike, *,
                     categories: dict[str, tuple[str, ...]] | None = None, top_k: int = 4) -> Path:
    """Feature value vs its contribution for the `top_k` features with the largest mean |contribution|.

    Numbers are a scatter (missing values at the left edge); categories show every lead per category as a
    jittered strip with the category mean, so a reader sees the effect of each level.
    """
    plt = _figure()
    categories = categories or {}
    contrib = np.asarray(contributions, dtype=float)[:, : X.shape[1]]
    order = np.argsort(-np.abs(contrib).mean(axis=0), kind="stable")[:top_k]
    n_cols = 2 if len(order) > 1 else 1
    n_rows = int(np.ceil(len(order) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.5 * n_cols, 3.8 * n_rows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, j in zip(axes.ravel(), order, strict=False):
        name = X.columns[j]
        values = X.iloc[:, j].to_numpy(dtype=float)
        c = contrib[:, j]
        missing = np.isnan(values)
        if name in categories:
            labels = list(categories[name])
            codes = np.where(missing, len(labels), values).astype(int)
            labels = labels + ["(missing)"]
            used = np.unique(codes)
            pos = {code: i for i, code in enumerate(used)}
            xs = np.array([pos[code] for code in codes], dtype=float)
            ax.scatter(xs + rng.uniform(-0.25, 0.25, len(xs)), c, s=4, alpha=0.3)
            means = [c[codes == code].mean() for code in used]
            ax.scatter(np.arange(len(used)), means, marker="_", s=300, color="black", label="mean")
            ax.set_xticks(np.arange(len(used)), [labels[code] for code in used], rotation=60, ha="right",
                          fontsize=7)
        else:
            ax.scatter(values[~missing], c[~missing], s=4, alpha=0.3)
            if missing.any():
                left = np.nanmin(values) if (~missing).any() else 0.0
                ax.scatter(np.full(missing.sum(), left), c[missing], s=4, alpha=0.3, color="red",
                           label="missing")
                ax.legend(loc="best", fontsize=8)
            finite = values[~missing]
            # Heavy-tailed counts and money are easier to read on a log axis.
            if finite.size and finite.min() >= 0 and np.quantile(finite, 0.99) > 50 * max(np.median(finite), 1):
                ax.set_xscale("symlog")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(name)
        ax.set_ylabel("contribution (log-odds)")
    for ax in axes.ravel()[len(order):]:
        ax.set_visible(False)
    fig.suptitle("Dependence: feature value vs its contribution (base LightGBM model)")
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def learning_curve_chart(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Test ROC AUC and log loss against the number of training leads (latest leads kept)."""
    plt = _figure()
    fig, (ax_auc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    n = table["n_train"].to_numpy(dtype=float)
    ax_auc.plot(n, table["roc_auc"], marker="o")
    ax_loss.plot(n, table["log_loss"], marker="o", color="#d95f02")
    for ax, label in ((ax_auc, "test ROC AUC (higher is better)"), (ax_loss, "test log loss (lower is better)")):
        ax.set_xlabel("training leads (the most recent ones)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for x, f, auc in zip(n, table["fraction"], table["roc_auc"], strict=True):
        ax_auc.annotate(f"{f:.0%}", (x, auc), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax_auc.set_title("Learning curve: does more data help?")
    ax_loss.set_title("Learning curve: log loss")
    out = _save(fig, path)
    plt.close(fig)
    return out


def backtest_chart(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """ROC AUC and calibration-in-the-large of each rolling-origin fold, by test period, with fold sizes."""
    plt = _figure()
    fig, (ax_auc, ax_cal) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    x = np.arange(len(table))
    ax_auc.plot(x, table["roc_auc"], marker="o")
    for xi, auc, n in zip(x, table["roc_auc"], table["n"], strict=True):
        if np.isfinite(auc):
            ax_auc.annotate(f"n={int(n):,}", (xi, auc), textcoords="offset points", xytext=(0, 6), ha="center",
                            fontsize=7)
    ax_auc.margins(y=0.2)
    ax_auc.set_ylabel("ROC AUC")
    ax_auc.set_title("Rolling-origin backtest (train on earlier months, test on the next)")
    ax_auc.grid(alpha=0.3)
    ax_cal.axhline(0, color="grey", ls="--", lw=1)
    ax_cal.bar(x, table["calibration_in_the_large"], color="#3182bd")
    ax_cal.set_ylabel("mean probability - rate")
    ax_cal.set_xlabel("test period")
    ax_cal.set_xticks(x, [str(p) for p in table["test_period"]], rotation=45, ha="right")
    ax_cal.grid(alpha=0.3)
    out = _save(fig, path)
    plt.close(fig)
    return out
