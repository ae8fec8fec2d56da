"""Contributions in probability points that add up: base probability + sum(contributions) = probability."""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def probability_contributions(
    raw_contrib: np.ndarray, a: float, b: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn margin contributions (n, k+1, last column the bias) into probability contributions.

    With calibrated logit L = a * margin + b, each feature moves the logit by a * c_i. The logit path from the
    base L0 = a * bias + b to L is mapped to probability proportionally: c_i^p = a * c_i * (p - p0) / (L - L0),
    which keeps every sign and makes the sum exactly p - p0.
    Returns (base probability per row, contributions (n, k), probability per row).
    """
    raw_contrib = np.asarray(raw_contrib, dtype="float64")
    logit_contrib = a * raw_contrib[:, :-1]
    base_logit = a * raw_contrib[:, -1] + b
    delta = logit_contrib.sum(axis=1)
    p0 = expit(base_logit)
    p = expit(base_logit + delta)
    small = np.abs(delta) < 1e-12
    slope = np.where(small, p * (1 - p), (p - p0) / np.where(small, 1.0, delta))
    return p0, logit_contrib * slope[:, None], p


def margin_contributions(booster, X) -> np.ndarray:
    """Exact TreeSHAP contributions of a LightGBM booster on its raw margin (n, k+1)."""
    return np.asarray(booster.predict(X, pred_contrib=True), dtype="float64")
