"""Evaluate on the test slice through the same scorer that serving uses: metrics, verdict, band and slice tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leadscore.features.spec import LeadFrame
from leadscore.models.bundle import Bands
from leadscore.models.metrics import (
    BOOTSTRAP_DRAWS,
    BOOTSTRAP_SEED,
    bootstrap_metrics,
    classification_metrics,
    interval,
)
from leadscore.models.scorer import ModelScorer, assign_bands, score_from_probability

if TYPE_CHECKING:
    from leadscore.training.train import TrainResult


def evaluate_scorer(
    scorer: ModelScorer, frame: LeadFrame, *, truth: np.ndarray | None = None, reasons: bool = True
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics of a scorer on a labelled LeadFrame, and the scored rows (with label) it produced."""
    scored = scorer.score_frame(frame, reasons=reasons)
    scored["label"] = frame.y
    metrics = classification_metrics(frame.y, scored["probability"].to_numpy(), truth=truth)
    return metrics, scored


def evaluate_baseline(model: Any, features: pd.DataFrame, y: np.ndarray, *, truth: np.ndarray | None = None
                      ) -> dict[str, float]:
    """Metrics of a fitted scikit-learn classifier on a feature frame."""
    p = model.predict_proba(features)[:, 1]
    return classification_metrics(y, p, truth=truth)


def signal_verdict(y: np.ndarray, p_model: np.ndarray, p_baseline: np.ndarray, *, n_boot: int = BOOTSTRAP_DRAWS,
                   seed: int = BOOTSTRAP_SEED) -> dict[str, object]:
    """Does the data hold a usable signal, and does the model earn its place over the logistic baseline?

    Paired bootstrap on the test slice (`models.metrics.bootstrap_metrics`, the intervals the model card shows):
    the 95% interval of the model's ROC AUC, and of its gain over the baseline. No signal (the interval reaches
    0.55) means: say so and keep the rule score.
    """
    ci = bootstrap_metrics(y, {"model": p_model, "baseline": p_baseline}, metrics=("roc_auc",), n_boot=n_boot,
                           seed=seed)
    _, *auc_ci = interval(ci, "model", "roc_auc")
    _, *gain_ci = interval(ci, "model - baseline", "roc_auc")
    if auc_ci[0] < 0.55:
        verdict, text = "no_signal", (
            f"No usable signal: test ROC AUC 95% interval [{auc_ci[0]:.3f}, {auc_ci[1]:.3f}] reaches 0.55. Keep "
            f"the rule score; collect more outcomes or behaviour data before trusting a learned score.")
    elif gain_ci[1] < 0:
        verdict, text = "baseline_better", (
            f"The logistic baseline ranks better (model - baseline AUC [{gain_ci[0]:+.3f}, {gain_ci[1]:+.3f}]); "
            f"prefer the simpler model on this data.")
    elif gain_ci[0] <= 0:
        verdict, text = "model_equal_to_baseline", (
            f"Signal found (ROC AUC [{auc_ci[0]:.3f}, {auc_ci[1]:.3f}]); the model and the logistic baseline rank "
            f"about equally (gain [{gain_ci[0]:+.3f}, {gain_ci[1]:+.3f}]).")
    else:
        verdict, text = "model_better", (
            f"Signal found (ROC AUC [{auc_ci[0]:.3f}, {auc_ci[1]:.3f}]); the model beats the logistic baseline "
            f"(gain [{gain_ci[0]:+.3f}, {gain_ci[1]:+.3f}]).")
    return {"verdict": verdict, "text": text, "roc_auc_ci": auc_ci, "gain_over_baseline_ci": gain_ci}


def band_table(probability: np.ndarray, label: np.ndarray, bands: Bands) -> pd.DataFrame:
    """Per band (in band order): score range, leads, share, expected (sum of p) and observed conversions."""
    p = np.asarray(probability, dtype="float64")
    y = np.asarray(label, dtype="float64")
    assigned = assign_bands(score_from_probability(p), bands)
    names, cutoffs = list(bands.names), list(bands.cutoffs)
    lows = [0, *cutoffs]
    highs = [c - 1 for c in cutoffs] + [100]
    rows = []
    for name, low, high in zip(names, lows, highs, strict=True):
        mask = assigned == name
        n = int(mask.sum())
        rows.append({"band": name, "scores": f"{low}-{high}", "n": n, "share": n / len(p) if len(p) else np.nan,
                     "expected": float(p[mask].sum()), "observed": float(y[mask].sum()),
                     "expected_rate": float(p[mask].mean()) if n else np.nan,
                     "observed_rate": float(y[mask].mean()) if n else np.nan})
    return pd.DataFrame(rows)


def slice_table(result: TrainResult) -> pd.DataFrame:
    """Leads, conversions, rate and as_of range (days) of the train / calibration / test slices."""
    frame, split = result.frame, result.split
    y = frame.y
    as_of = frame.as_of
    rows = []
    for name, mask in (("train", split.train), ("calibration", split.calibration), ("test", split.test)):
        mask = np.asarray(mask)
        t = as_of[mask]
        rows.append({"slice": name, "n": int(mask.sum()), "positives": int(y[mask].sum()),
                     "rate": float(y[mask].mean()) if mask.any() else np.nan,
                     "as_of_from": t.min().strftime("%Y-%m-%d") if t.notna().any() else "",
                     "as_of_to": t.max().strftime("%Y-%m-%d") if t.notna().any() else ""})
    return pd.DataFrame(rows)


def baseline_probabilities(result: TrainResult) -> np.ndarray:
    """The logistic baseline's probabilities on the test slice."""
    from leadscore.training.train import _baseline_input

    return result.baseline.predict_proba(_baseline_input(result.test_frame))[:, 1]
