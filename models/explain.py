"""Contributions in probability points that add up: base probability + sum(contributions) = probability."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def probability_contributions(
    raw_contrib: np.ndarray, calibrate: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn margin contributions (n, k+1, last column the bias) into probability contributions.

    With p = calibrate(margin) and base p0 = calibrate(bias), the probability change p - p0 is shared among
    features in proportion to their margin contributions: c_i^p = c_i * (p - p0) / (margin - bias). Every sign
    is kept (the calibration map is monotone) and the sum is exactly p - p0, whatever the calibration method.
    For sigmoid calibration this equals splitting the calibrated log-odds a * c_i along the logistic curve.
    Returns (base probability per row, contributions (n, k), probability per row).
    """
    raw_contrib = np.asarray(raw_contrib, dtype="float64")
    contrib = raw_contrib[:, :-1]
    bias = raw_contrib[:, -1]
    margin = bias + contrib.sum(axis=1)
    p0 = calibrate(bias)
    p = calibrate(margin)
    delta = margin - bias
    small = np.abs(delta) < 1e-9
    # At the base itself no feature moves the score; the local slope only keeps the formula finite.
    h = 1e-6
    slope_local = (calibrate(margin + h) - calibrate(margin - h)) / (2 * h)
    slope = np.where(small, slope_local, (p - p0) / np.where(small, 1.0, delta))
    return p0, contrib * slope[:, None], p


def tree_contributions(booster, X, **predict_params) -> np.ndarray:
    """Exact TreeSHAP contributions of a LightGBM booster on its raw margin (n, k+1)."""
    return np.asarray(booster.predict(X, pred_contrib=True, **predict_params), dtype="float64")


def margin_contributions(model, X) -> np.ndarray:
    """Exact additive contributions of a margin model (see `models.learners`) or a LightGBM booster (n, k+1).

    Every learner's contributions plus its bias equal its margin, row by row.
    """
    if hasattr(model, "contributions"):
        return np.asarray(model.contributions(X), dtype="float64")
    return tree_contributions(model, X)
