"""Metrics of probabilities against outcomes and their one bootstrap; shared by training, the card and comparisons."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width bins, weighted by bin size."""
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for k in np.unique(bins):
        mask = bins == k
        total += mask.sum() * abs(p[mask].mean() - y[mask].mean())
    return float(total / len(p))


def ece_noise_floor(p: np.ndarray, n_bins: int = 15, n_draws: int = 200, seed: int = 0) -> tuple[float, float]:
    """ECE a perfectly calibrated model would still show on this many leads: labels drawn from p itself.

    Returns (mean, 95th percentile) over draws; an observed ECE below the 95th percentile is within noise.
    """
    rng = np.random.default_rng(seed)
    p = np.asarray(p, dtype="float64")
    n = len(p)
    if n == 0:
        return float("nan"), float("nan")
    # The bins depend on p alone: sort the leads by bin once, then every draw's per-bin label sums are one
    # `add.reduceat` over a block of draws (the same uniforms, in the same order, as one draw at a time).
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    order = np.argsort(bins, kind="stable")
    p_sorted = p[order]
    starts = np.flatnonzero(np.r_[True, np.diff(bins[order]) != 0])
    counts = np.diff(np.r_[starts, n])
    mean_p = np.add.reduceat(p_sorted, starts) / counts
    draws = np.empty(n_draws)
    block = max(1, (1 << 21) // n)  # draws per block: ~16 MB of uniforms
    for first in range(0, n_draws, block):
        k = min(block, n_draws - first)
        y = (rng.random((k, n)) < p)[:, order]
        mean_y = np.add.reduceat(y, starts, axis=1, dtype="float64") / counts
        draws[first:first + k] = (counts * np.abs(mean_p - mean_y)).sum(axis=1) / n
    return float(draws.mean()), float(np.quantile(draws, 0.95))


def lift_at(y: np.ndarray, p: np.ndarray, share: float = 0.1) -> float:
    """Conversion rate among the top `share` of leads by probability, divided by the overall rate."""
    y = np.asarray(y, dtype="float64")
    n_top = max(1, int(round(share * len(y))))
    order = np.argsort(-np.asarray(p), kind="stable")
    base = y.mean()
    return float(y[order[:n_top]].mean() / base) if base > 0 else float("nan")


# --- the one bootstrap -----------------------------------------------------------------------------------------

# One seed and one number of resamples for every interval the product reports (model card, training verdict,
# model-vs-rules comparison, scorecard): the same model on the same leads gets the same interval everywhere.
BOOTSTRAP_SEED = 0
BOOTSTRAP_DRAWS = 300
PROBABILITY_METRICS = ("roc_auc", "pr_auc", "brier", "ece", "calibration_in_the_large")
# For scores that are not probabilities (rule points): only the ranking metrics mean something.
RANKING_METRICS = ("roc_auc", "pr_auc")
_RANGES = {"roc_auc": (0.0, 1.0), "pr_auc": (0.0, 1.0), "brier": (0.0, 1.0), "ece": (0.0, 1.0),
           "calibration_in_the_large": (-1.0, 1.0)}
N_ECE_BINS = 15


class _WeightedMetrics:
    """The interval metrics under integer resampling weights, in O(n) per replicate (no re-sorting)."""

    def __init__(self, y: np.ndarray, p: np.ndarray, metrics: tuple[str, ...]) -> None:
        self.y = np.asarray(y, dtype="float64")
        self.p = np.asarray(p, dtype="float64")
        self.metrics = metrics
        uniq, self.group = np.unique(self.p, return_inverse=True)  # ascending; ties share a group
        self.n_groups = len(uniq)
        self.bins = np.minimum((np.clip(self.p, 0, 1) * N_ECE_BINS).astype(int), N_ECE_BINS - 1)

    def __call__(self, w: np.ndarray) -> dict[str, float]:
        y, p, wanted = self.y, self.p, self.metrics
        n = w.sum()
        out: dict[str, float] = {}
        if "brier" in wanted:
            out["brier"] = float(np.dot(w, (p - y) ** 2) / n)
        if "calibration_in_the_large" in wanted:
            out["calibration_in_the_large"] = float((np.dot(w, p) - np.dot(w, y)) / n)
        if "ece" in wanted:
            sum_p = np.bincount(self.bins, weights=w * p, minlength=N_ECE_BINS)
            sum_y = np.bincount(self.bins, weights=w * y, minlength=N_ECE_BINS)
            out["ece"] = float(np.abs(sum_p - sum_y).sum() / n)
        if "roc_auc" not in wanted and "pr_auc" not in wanted:
            return out
        pos = np.bincount(self.group, weights=w * y, minlength=self.n_groups)
        neg = np.bincount(self.group, weights=w * (1 - y), minlength=self.n_groups)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            out["roc_auc"] = out["pr_auc"] = float("nan")
            return out
        neg_below = np.cumsum(neg) - neg
        out["roc_auc"] = float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))
        # Average precision as scikit-learn defines it: thresholds from the highest score down.
        tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
        precision = tp / np.maximum(tp + fp, 1e-300)
        out["pr_auc"] = float((pos[::-1] / n_pos * precision).sum())
        return out


def bootstrap_metrics(y: np.ndarray, curves: Mapping[str, np.ndarray], *,
                      metrics: Sequence[str] = PROBABILITY_METRICS, n_boot: int = BOOTSTRAP_DRAWS,
                      seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> pd.DataFrame:
    """Point estimate and bootstrap interval of each metric for each scorer: the product's only bootstrap.

    Leads are resampled with replacement (as multiplicity weights, in the order given), the same leads for every
    scorer (paired), so the differences between scorers get their own interval (rows named "A - B"). The
    interval is the percentile interval shifted by the bootstrap bias (mean of replicates - point estimate):
    ECE computed on a resample is biased upwards, and a plain percentile interval can lie entirely above the
    point estimate. The draws depend only on the number of leads, `n_boot` and `seed`, never on the scorers,
    so the same model on the same leads gets the same interval whatever it is compared with.
    Returns columns model, metric, point, low, high.
    """
    wanted = tuple(metrics)
    unknown = set(wanted) - set(PROBABILITY_METRICS)
    if unknown:
        raise ValueError(f"bootstrap_metrics: unknown metrics {sorted(unknown)}")
    y = np.asarray(y, dtype="float64")
    names = list(curves)
    evaluators = {name: _WeightedMetrics(y, np.asarray(p, dtype="float64"), wanted) for name, p in curves.items()}
    ones = np.ones(len(y))
    points = {name: ev(ones) for name, ev in evaluators.items()}
    rng = np.random.default_rng(seed)
    reps: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype("float64")
        for name, ev in evaluators.items():
            reps[name].append(ev(w))
    tables = {name: pd.DataFrame(reps[name], columns=list(wanted)) for name in names}
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    alpha = (1 - level) / 2
    rows = []

    def add(model: str, metric: str, point: float, draws: np.ndarray, bounded: bool) -> None:
        draws = draws[np.isfinite(draws)]
        if not draws.size or not math.isfinite(point):
            rows.append({"model": model, "metric": metric, "point": point, "low": np.nan, "high": np.nan})
            return
        bias = draws.mean() - point
        low, high = np.quantile(draws, alpha) - bias, np.quantile(draws, 1 - alpha) - bias
        if bounded:
            lo_r, hi_r = _RANGES[metric]
            low, high = max(low, lo_r), min(high, hi_r)
        rows.append({"model": model, "metric": metric, "point": point, "low": float(low), "high": float(high)})

    for metric in wanted:
        for name in names:
            add(name, metric, points[name][metric], tables[name][metric].to_numpy(), True)
        for a, b in pairs:
            add(f"{a} - {b}", metric, points[a][metric] - points[b][metric],
                (tables[a][metric] - tables[b][metric]).to_numpy(), False)
    return pd.DataFrame(rows, columns=["model", "metric", "point", "low", "high"])


def interval(table: pd.DataFrame, model: str, metric: str) -> tuple[float, float, float]:
    """(point, low, high) of one scorer (or "A - B" difference) and metric from `bootstrap_metrics` output."""
    hit = table[(table["model"] == model) & (table["metric"] == metric)]
    if hit.empty:
        return float("nan"), float("nan"), float("nan")
    row = hit.iloc[0]
    return float(row["point"]), float(row["low"]), float(row["high"])


def calibration_in_the_large_interval(y: np.ndarray, p: np.ndarray, *, n_boot: int = BOOTSTRAP_DRAWS,
                                      seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Bootstrap 95% interval of mean(p) - mean(y): an interval containing 0 means the level is right within noise."""
    ci = bootstrap_metrics(y, {"model": p}, metrics=("calibration_in_the_large",), n_boot=n_boot, seed=seed)
    return float(ci["low"].iloc[0]), float(ci["high"].iloc[0])


def classification_metrics(y: np.ndarray, p: np.ndarray, truth: np.ndarray | None = None) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier, log loss, ECE (15 bins) with its noise floor, top-decile lift, mean vs rate."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype="int64")
    p = np.clip(np.asarray(p, dtype="float64"), 1e-15, 1 - 1e-15)
    floor_mean, floor_p95 = ece_noise_floor(p)
    citl = calibration_in_the_large_interval(y, p) if len(y) <= 200_000 else (float("nan"), float("nan"))
    out = {
        "n": float(len(y)),
        "positive_rate": float(y.mean()),
        "mean_probability": float(p.mean()),
        "calibration_in_the_large": float(p.mean() - y.mean()),
        "calibration_in_the_large_ci_low": citl[0],
        "calibration_in_the_large_ci_high": citl[1],
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "ece_noise_floor": floor_mean,
        "ece_noise_p95": floor_p95,
        "lift_top_decile": lift_at(y, p, 0.1),
    }
    if truth is not None:
        truth = np.asarray(truth, dtype="float64")
        ok = ~np.isnan(truth)
        out["mae_vs_truth"] = float(np.abs(p[ok] - truth[ok]).mean())
    return out
