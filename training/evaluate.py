"""Evaluate on the test slice through the same scorer that serving uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.spec import LeadFrame
from leadscore.models.metrics import classification_metrics
from leadscore.models.scorer import ModelScorer


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


def signal_verdict(y: np.ndarray, p_model: np.ndarray, p_baseline: np.ndarray, *, n_boot: int = 300, seed: int = 0
                   ) -> dict[str, object]:
    """Does the data hold a usable signal, and does the model earn its place over the logistic baseline?

    Paired bootstrap on the test slice: the 95% interval of the model's ROC AUC, and of its gain over the
    baseline. No signal (the interval reaches 0.55) means: say so and keep the rule score.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    aucs, gains = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if np.unique(y[idx]).size < 2:
            continue
        a = roc_auc_score(y[idx], p_model[idx])
        aucs.append(a)
        gains.append(a - roc_auc_score(y[idx], p_baseline[idx]))
    auc_ci = [float(np.quantile(aucs, 0.025)), float(np.quantile(aucs, 0.975))]
    gain_ci = [float(np.quantile(gains, 0.025)), float(np.quantile(gains, 0.975))]
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
