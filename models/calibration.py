"""Calibration of a frozen model's raw margin on a disjoint calibration slice.

Sigmoid (Platt) calibration acts on the LightGBM margin: calibrated logit = a * margin + b. Because it is
affine in the margin, a * (tree contributions) stay exactly additive in calibrated log-odds.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit


class SigmoidCalibrator:
    """Platt scaling on a raw margin, scikit-learn style: `fit` learns `a_`, `b_` and returns self."""

    method = "sigmoid"

    def __init__(self, smooth_targets: bool = True) -> None:
        self.smooth_targets = smooth_targets

    def fit(self, margin: np.ndarray, y: np.ndarray) -> SigmoidCalibrator:
        margin = np.asarray(margin, dtype="float64")
        y = np.asarray(y, dtype="float64")
        if self.smooth_targets:
            # Platt's targets keep the fit finite when a slice is (nearly) separable.
            n_pos, n_neg = y.sum(), (1 - y).sum()
            t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        else:
            t = y

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            z = theta[0] * margin + theta[1]
            p = expit(z)
            value = np.sum(np.logaddexp(0, z) - t * z)
            grad_z = p - t
            return float(value), np.array([np.dot(grad_z, margin), grad_z.sum()])

        result = minimize(loss, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        self.a_, self.b_ = float(result.x[0]), float(result.x[1])
        return self

    def logit(self, margin: np.ndarray) -> np.ndarray:
        return self.a_ * np.asarray(margin, dtype="float64") + self.b_

    def predict(self, margin: np.ndarray) -> np.ndarray:
        return expit(self.logit(margin))

    def to_dict(self) -> dict[str, float | str]:
        return {"method": self.method, "a": self.a_, "b": self.b_}


class IdentityCalibrator(SigmoidCalibrator):
    """No calibration: probability = sigmoid(margin). Same interface, so reasons add up the same way."""

    method = "none"

    def fit(self, margin: np.ndarray, y: np.ndarray) -> IdentityCalibrator:
        self.a_, self.b_ = 1.0, 0.0
        return self


def calibrator_from_dict(values: dict) -> SigmoidCalibrator:
    """Rebuild a fitted calibrator from its saved coefficients."""
    cls = {"sigmoid": SigmoidCalibrator, "none": IdentityCalibrator}.get(values.get("method"))
    if cls is None:
        raise ValueError(f"unknown calibration method {values.get('method')!r}")
    cal = cls()
    cal.a_, cal.b_ = float(values["a"]), float(values["b"])
    return cal


def make_calibrator(method: str) -> SigmoidCalibrator:
    """Unfitted calibrator for a method name."""
    return IdentityCalibrator() if method == "none" else SigmoidCalibrator()
