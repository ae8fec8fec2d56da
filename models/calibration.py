"""Calibration of a frozen model's raw margin on a disjoint calibration slice: none, sigmoid or isotonic.

Sigmoid (Platt) calibration is affine in the margin (calibrated logit = a * margin + b), so tree contributions
stay exactly additive in calibrated log-odds. Isotonic calibration is a monotone step function of the margin;
reasons still add up because explanations redistribute the probability change along the margin (see explain.py).
`select_calibration` picks the method by cross-validated log loss on the calibration slice itself.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

METHODS = ("none", "sigmoid", "isotonic")
MIN_ISOTONIC_ROWS = 1000


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

    def to_dict(self) -> dict:
        return {"method": self.method, "a": self.a_, "b": self.b_}


class IdentityCalibrator(SigmoidCalibrator):
    """No calibration: probability = sigmoid(margin). Same interface, so reasons add up the same way."""

    method = "none"

    def fit(self, margin: np.ndarray, y: np.ndarray) -> IdentityCalibrator:
        self.a_, self.b_ = 1.0, 0.0
        return self


class IsotonicCalibrator:
    """Monotone step-free (interpolated) isotonic map from margin to probability, saved as plain numbers."""

    method = "isotonic"

    def __init__(self, clip: float = 1e-4, tie_break: float = 1e-3) -> None:
        self.clip = clip
        self.tie_break = tie_break

    def fit(self, margin: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=self.clip, y_max=1 - self.clip)
        iso.fit(np.asarray(margin, dtype="float64"), np.asarray(y, dtype="float64"))
        self.x_ = np.asarray(iso.X_thresholds_, dtype="float64")
        self.y_ = np.asarray(iso.y_thresholds_, dtype="float64")
        # Isotonic regression is flat over each pooled block, which would tie leads the model ranks apart and
        # cost ranking (ROC AUC) for nothing. A sliver of the Platt map keeps the map strictly increasing.
        platt = SigmoidCalibrator().fit(margin, y)
        self.a_, self.b_ = (platt.a_, platt.b_) if platt.a_ > 0 else (1.0, 0.0)
        return self

    def predict(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype="float64")
        steps = np.interp(margin, self.x_, self.y_)
        if not self.tie_break:
            return steps
        return (1 - self.tie_break) * steps + self.tie_break * expit(self.a_ * margin + self.b_)

    def to_dict(self) -> dict:
        return {"method": self.method, "x": self.x_.tolist(), "y": self.y_.tolist(), "a": self.a_, "b": self.b_,
                "tie_break": self.tie_break}


Calibrator = SigmoidCalibrator | IsotonicCalibrator


def calibrator_from_dict(values: dict) -> Calibrator:
    """Rebuild a fitted calibrator from its saved numbers."""
    method = values.get("method")
    if method in ("sigmoid", "none"):
        cal = SigmoidCalibrator() if method == "sigmoid" else IdentityCalibrator()
        cal.a_, cal.b_ = float(values["a"]), float(values["b"])
        return cal
    if method == "isotonic":
        iso = IsotonicCalibrator(tie_break=float(values.get("tie_break", 0.0)))
        iso.x_, iso.y_ = np.asarray(values["x"], dtype="float64"), np.asarray(values["y"], dtype="float64")
        iso.a_, iso.b_ = float(values.get("a", 1.0)), float(values.get("b", 0.0))
        return iso
    raise ValueError(f"unknown calibration method {method!r}")


def make_calibrator(method: str) -> Calibrator:
    """Unfitted calibrator for a method name."""
    return {"none": IdentityCalibrator, "sigmoid": SigmoidCalibrator, "isotonic": IsotonicCalibrator}[method]()


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def select_calibration(
    margin: np.ndarray, y: np.ndarray, *, methods: tuple[str, ...] = METHODS, folds: int = 5, seed: int = 0,
    min_isotonic_rows: int = MIN_ISOTONIC_ROWS,
) -> tuple[str, dict[str, float]]:
    """The simplest method within one standard error of the lowest cross-validated log loss, and every score.

    Each method is fitted on k-1 folds and scored on the held-out fold, so a flexible method (isotonic) does
    not win by memorising the slice. Isotonic is only considered with at least `min_isotonic_rows` rows.
    """
    margin = np.asarray(margin, dtype="float64")
    y = np.asarray(y, dtype="float64")
    candidates = [m for m in methods if m != "isotonic" or len(y) >= min_isotonic_rows]
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    scores: dict[str, float] = {}
    row_losses: dict[str, np.ndarray] = {}
    for method in candidates:
        pred = np.empty(len(y))
        for k in range(folds):
            held = fold == k
            train = ~held
            if np.unique(y[train]).size < 2:
                pred[held] = y[train].mean()
                continue
            pred[held] = make_calibrator(method).fit(margin[train], y[train]).predict(margin[held])
        scores[method] = _log_loss(y, pred)
        p = np.clip(pred, 1e-15, 1 - 1e-15)
        row_losses[method] = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    best = min(scores, key=lambda m: (scores[m], METHODS.index(m)))
    # A simpler method within one standard error of the best wins the tie: isotonic steps merge scores into
    # ties and cost ranking on weak-signal data, so it has to earn its place clearly.
    for method in sorted(scores, key=METHODS.index):
        diff = row_losses[method] - row_losses[best]
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        if diff.mean() <= se:
            return method, scores
    return best, scores
