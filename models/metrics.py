"""Metrics of probabilities against outcomes; shared by training evaluation and comparison reports."""

from __future__ import annotations

import numpy as np


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
    draws = np.array([expected_calibration_error(rng.random(len(p)) < p, p, n_bins) for _ in range(n_draws)])
    return float(draws.mean()), float(np.quantile(draws, 0.95))


def lift_at(y: np.ndarray, p: np.ndarray, share: float = 0.1) -> float:
    """Conversion rate among the top `share` of leads by probability, divided by the overall rate."""
    y = np.asarray(y, dtype="float64")
    n_top = max(1, int(round(share * len(y))))
    order = np.argsort(-np.asarray(p), kind="stable")
    base = y.mean()
    return float(y[order[:n_top]].mean() / base) if base > 0 else float("nan")


def calibration_in_the_large_interval(y: np.ndarray, p: np.ndarray, *, n_boot: int = 300, seed: int = 0
                                      ) -> tuple[float, float]:
    """Bootstrap 95% interval of mean(p) - mean(y): an interval containing 0 means the level is right within noise."""
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (n_boot, len(y)))
    diffs = p[idx].mean(axis=1) - y[idx].mean(axis=1)
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


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
