"""What the evaluation report of a training run shows, computed: curves, bands, contributions, intervals, folds.

`report_data` returns frames and arrays only; `leadscore.presentation.model_report.write_report` turns them into
PNGs, the model card and one self-contained HTML page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from leadscore.models.explain import margin_contributions
from leadscore.models.metrics import BOOTSTRAP_DRAWS, bootstrap_metrics
from leadscore.training.backtest import learning_curve as compute_learning_curve
from leadscore.training.backtest import rolling_backtest, run_learner, segment_metrics
from leadscore.training.evaluate import band_table, baseline_probabilities

if TYPE_CHECKING:
    from leadscore.training.train import TrainResult

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_COLUMNS = ("lead_source", "industry", "country", "channel", "origin")
SHAP_MAX_ROWS = 2000
# The report backtests the most recent months only, each fold one fit of the run's own trees: the latest months
# are the ones a reader compares with the test slice (rolling_backtest itself takes any number).
BACKTEST_FOLDS = 6
# On large exports the report's extra fits use at most this many training leads each: backtest folds train on
# their latest ones, and the learning curve stops fitting there (its last point is the run's own model).
REPORT_MAX_FIT_ROWS = 100_000
MODEL_NAME = "chosen learner (calibrated)"
BASELINE_NAME = "logistic baseline"


def default_segment_columns(result: TrainResult, extra: Sequence[str] | None = None) -> list[str]:
    """The default segment columns present among the model's categorical columns, then any given ones."""
    cats = set(result.bundle.spec.categorical_columns)
    return list(dict.fromkeys([c for c in DEFAULT_SEGMENT_COLUMNS if c in cats] + list(extra or ())))


@dataclass
class ReportData:
    """Everything the training report shows, as arrays and frames (no formatting)."""

    y: np.ndarray
    curves: dict[str, np.ndarray]  # display name -> test-slice probabilities (model first, baseline second)
    bands: pd.DataFrame
    intervals: pd.DataFrame  # models.metrics.bootstrap_metrics of model and baseline (the card's brackets)
    contributions: np.ndarray
    explained: pd.DataFrame  # the sampled test features the contributions explain
    segments: pd.DataFrame
    learning: pd.DataFrame | None = None
    backtest: pd.DataFrame | None = None
    n_boot: int = BOOTSTRAP_DRAWS
    seed: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def report_data(result: TrainResult, *, segment_columns: Sequence[str] | None = None, backtest: bool = True,
                learning_curve: bool = True, step: Callable[[str], None] | None = None,
                n_boot: int = BOOTSTRAP_DRAWS) -> ReportData:
    """Compute the report's contents: curves, bands, paired bootstrap intervals, SHAP sample, learning, backtest."""
    announce = step or (lambda message: None)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def lap(stage: str, following: str | None = None) -> None:
        nonlocal started
        now = time.perf_counter()
        timings[stage] = now - started
        started = now
        if following:
            announce(following)

    announce("report: curves, bands and bootstrap intervals")
    bundle = result.bundle
    test = result.test_frame
    y = np.asarray(test.y)
    p_model = result.test_scores["probability"].to_numpy(dtype="float64")
    p_base = baseline_probabilities(result)
    curves = {MODEL_NAME: p_model, BASELINE_NAME: p_base}
    seed = result.config.seed
    intervals = bootstrap_metrics(y, curves, n_boot=n_boot, seed=seed)
    bands = band_table(p_model, y, bundle.bands)
    lap("curves", "report: contributions (SHAP) on sampled test leads")

    # SHAP on a fixed sample: exact TreeSHAP costs grow with rows, and 2,000 leads show the shape well.
    X = test.X
    if len(X) > SHAP_MAX_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(len(X), SHAP_MAX_ROWS, replace=False))
        X = X.iloc[rows]
    contrib = margin_contributions(bundle.model, X)
    lap("shap", "report: learning curve" if learning_curve else None)

    learning = None
    if learning_curve:
        learning = compute_learning_curve(result, max_fit_rows=REPORT_MAX_FIT_ROWS)
        lap("learning_curve")

    folds = None
    if backtest and test.as_of.notna().all() and result.frame.as_of.notna().all():
        announce("report: rolling backtest (monthly folds)")
        folds = rolling_backtest(result.frame, result.config, max_folds=BACKTEST_FOLDS,
                                 max_train_rows=REPORT_MAX_FIT_ROWS, trees=run_learner(result))
        lap("backtest")

    segments = segment_metrics(result.test_scores, test, default_segment_columns(result, segment_columns))
    lap("segments")
    return ReportData(y=y, curves=curves, bands=bands, intervals=intervals, contributions=contrib, explained=X,
                      segments=segments, learning=learning, backtest=folds, n_boot=n_boot, seed=seed,
                      timings=timings)
