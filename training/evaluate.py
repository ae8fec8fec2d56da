"""Evaluate on the test slice through the same scorer that serving uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.spec import LeadFrame
from models.metrics import classification_metrics
from models.scorer import ModelScorer


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
