"""Train a calibrated LightGBM conversion model and a logistic baseline on leads, events and outcomes."""

from __future__ import annotations

import dataclasses
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.build import (
    build_lead_frame,
    fit_spec,
    refit_vocabularies,
    resolve_created_column,
    type_events,
    type_leads,
)
from leadscore.features.checks import CheckReport, run_checks
from leadscore.features.config import TrainConfig, config_to_dict
from leadscore.features.errors import DataError
from leadscore.features.io import apply_na_values, require_columns
from leadscore.features.labels import infer_data_end, label_leads, labels_from_column, outcome_times
from leadscore.features.spec import AS_OF, LABEL, LeadFrame
from leadscore.models.bundle import Bands, ModelBundle
from leadscore.models.calibration import make_calibrator, select_calibration
from leadscore.models.drift import reference as drift_reference
from leadscore.models.estimator import make_lightgbm, make_logistic
from leadscore.models.scorer import ModelScorer, score_from_probability
from leadscore.models.wording import default_labels
from leadscore.training.evaluate import evaluate_baseline, evaluate_scorer, signal_verdict
from leadscore.training.split import Split, random_split, time_order, time_split

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced: the bundle, the baseline, the data it saw and its test metrics."""

    bundle: ModelBundle
    baseline: Any
    frame: LeadFrame
    split: Split
    metrics: dict[str, dict[str, float]]
    counts: dict[str, Any]
    test_scores: pd.DataFrame
    config: TrainConfig
    params: dict[str, Any] = field(default_factory=dict)
    checks: CheckReport | None = None
    tuning: pd.DataFrame | None = None
    report_files: dict[str, Any] = field(default_factory=dict)
    candidates: pd.DataFrame | None = None  # every learner's cross-validated scores (cross-fitted runs)
    label_mapping: Any = None

    @property
    def test_frame(self) -> LeadFrame:
        return self.frame.subset(self.split.test)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model depends on (saved with the model)."""
    import lightgbm
    import sklearn

    return {"python": platform.python_version(), "lightgbm": lightgbm.__version__, "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__, "numpy": np.__version__}


def band_cutoffs(probabilities: np.ndarray, shares: tuple[float, ...]) -> tuple[int, ...]:
    """Integer score cut-offs so the top shares of these leads fall in the upper bands (capacity rule).

    Scores are integers and often tied, so each cut-off is the score whose "at or above" share is closest to
    the target share (not simply the quantile, which puts every tied lead in the upper band).
    """
    scores = score_from_probability(probabilities)
    candidates = np.arange(0, 102)
    at_or_above = np.array([(scores >= c).mean() for c in candidates])
    cutoffs = []
    cumulative = 0.0
    for share in reversed(shares):
        cumulative += share
        cutoffs.append(int(candidates[np.argmin(np.abs(at_or_above - cumulative))]))
    cutoffs = sorted(cutoffs)
    # Strictly increasing, so every band can be reached.
    for i in range(1, len(cutoffs)):
        cutoffs[i] = max(cutoffs[i], cutoffs[i - 1] + 1)
    return tuple(min(max(c, 1), 100) for c in cutoffs)


def fit_lightgbm(frame: LeadFrame, train: np.ndarray, config: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """Early stopping on the latest share of the training slice, then a refit on all of it."""
    import lightgbm as lgb

    spec = frame.spec
    X = frame.X
    y = frame.y
    idx = np.flatnonzero(train)
    order = time_order(train, frame.as_of, config.seed)
    n_valid = max(1, int(len(order) * config.model.early_stopping_fraction))
    fit_idx, valid_idx = order[:-n_valid], order[-n_valid:]
    cats = list(spec.categorical_columns)
    info: dict[str, Any] = {}
    if config.model.early_stopping_rounds == 0:  # explicitly off: exactly max_trees
        n_trees = config.model.max_trees
        info["early_stopping_best_iteration"] = None
    elif np.unique(y[valid_idx]).size == 2 and np.unique(y[fit_idx]).size == 2:
        probe = make_lightgbm(config.model, config.seed)
        probe.fit(
            X.iloc[fit_idx], y[fit_idx], eval_X=(X.iloc[valid_idx],), eval_y=(y[valid_idx],),
            eval_metric="binary_logloss",
            categorical_feature=cats or "auto",
            callbacks=[lgb.early_stopping(config.model.early_stopping_rounds, verbose=False)],
        )
        best = int(probe.best_iteration_ or config.model.max_trees)
        # Refit on the whole slice: scale trees by the extra data the refit sees.
        n_trees = max(10, int(round(best * len(idx) / len(fit_idx))))
        info["early_stopping_best_iteration"] = best
    else:
        n_trees = 200
        info["early_stopping_best_iteration"] = None
    model = make_lightgbm(config.model, config.seed, n_estimators=n_trees)
    model.fit(X.iloc[idx], y[idx], categorical_feature=cats or "auto")
    info["n_trees"] = n_trees
    return model.booster_, info


@dataclass
class Prepared:
    """Labelled point-in-time features and their data checks, before any model is fitted."""

    spec: Any
    frame: LeadFrame
    split: Split
    counts: dict[str, Any]
    checks: CheckReport
    has_dates: bool
    data_end: pd.Timestamp | None = None
    label_mapping: Any = None  # features.labels.LabelMapping of a label column, else None
    config: TrainConfig | None = None  # the run's config with its data section settled against the lead table


class DataCheckFailed(DataError):
    """Fatal data-check findings (insufficient data, leaks); the report is attached."""

    def __init__(self, message: str, report: CheckReport) -> None:
        super().__init__(message)
        self.report = report


class HandedTable:
    """A table handed over to training, which reads it once and then lets it go: hand the event log over this way
    (keeping no reference of your own) and the raw log is not in memory beside the typed one while the features
    are built (the 1M-lead demo's peak: 4.7 GB lent, 3.5 GB handed over; `benchmarks/train_scale.py`). `len` is
    known after the hand-over; `take()` gives the frame once."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame: pd.DataFrame | None = frame
        self.rows = len(frame)

    def __len__(self) -> int:
        return self.rows

    def peek(self) -> pd.DataFrame:
        """The frame, for a look before it is taken: pass it on in one expression, keep no reference to it."""
        if self._frame is None:
            raise RuntimeError("the handed-over table was already taken")
        return self._frame

    def take(self) -> pd.DataFrame:
        if self._frame is None:
            raise RuntimeError("the handed-over table was already taken")
        frame, self._frame = self._frame, None
        return frame


def prepare_training_data(
    leads: pd.DataFrame,
    outcomes: pd.DataFrame | None = None,
    events: pd.DataFrame | HandedTable | None = None,
    config: TrainConfig | None = None,
    *,
    data_end: pd.Timestamp | None = None,
    sources: dict[str, str] | None = None,
) -> Prepared:
    """Spec, typed leads, labels, point-in-time features, split and data checks (what `check-data` runs).

    `events` handed over (`HandedTable`) are let go as soon as they are typed."""
    if isinstance(events, HandedTable):
        events = events.take()
    config = config or TrainConfig()
    sources = {"leads": "leads", "events": "events", "outcomes": "outcomes", **(sources or {})}
    require_columns(leads, [config.data.lead_id], source=sources["leads"], what="id")
    data, detected = resolve_created_column(leads, config.data, source=sources["leads"])
    config = dataclasses.replace(config, data=data)
    has_dates = data.created_at in leads.columns
    if data.label is None:
        if outcomes is None:
            raise DataError(f"{sources['leads']}: no outcomes table and no label column; give one of them")
        if not has_dates:
            require_columns(leads, [data.created_at], source=sources["leads"])
    if events is not None and not has_dates:
        raise DataError(f"{sources['leads']}: events need the leads' creation time column {data.created_at!r} "
                        f"to know which events came before as_of")
    spec = fit_spec(leads, events, data, config.features, source=sources["leads"])
    typed = type_leads(leads, spec, source=sources["leads"], strict=True, require_created=has_dates)
    # Category cells as read, by lead id: the vocabulary is refitted on the training slice below, and the
    # rows must then be categorised from what the file says, exactly as scoring will.
    as_read = apply_na_values(leads, spec.na_values)
    raw_categories = pd.DataFrame({c: as_read[c].to_numpy() for c in spec.categorical_columns},
                                  index=typed.leads[spec.id_column].to_numpy()) if len(typed.leads) == len(leads) \
        else None
    typed_events = type_events(events, spec, source=sources["events"]) if events is not None else None
    events = None  # the raw log is not needed again: a handed-over one is freed here
    mapping = None
    if data.label is not None:
        labelled = labels_from_column(typed.leads, outcomes, label=data.label, id_column=spec.id_column,
                                      created_column=spec.created_column, as_of_days=spec.as_of_days,
                                      source=sources["leads"], outcomes_source=sources["outcomes"],
                                      positive=config.label.positive, open_values=config.label.open)
        mapping = labelled.mapping
    else:
        converted = outcome_times(outcomes, id_column=data.lead_id, converted_at=data.converted_at,
                                  source=sources["outcomes"])
        if data_end is None:
            data_end = infer_data_end(typed.leads[spec.created_column], converted,
                                      None if typed_events is None else typed_events["ts"])
        labelled = label_leads(
            typed.leads, converted, id_column=spec.id_column, created_column=spec.created_column,
            as_of_days=spec.as_of_days, window_days=spec.label_window_days, data_end=data_end,
            source=sources["leads"], converted_column=data.converted_at,
            before_created=config.label.converted_before_created,
        )
    # The split needs only the labels and the as_of times; the event features are built once, after the
    # vocabularies are refitted on the training slice. A data check's fatal finding still comes before a split
    # error (both need the features' counters).
    labelled_rows = labelled.leads.reset_index(drop=True)
    split_error: DataError | None = None
    try:
        if has_dates:
            split = time_split(labelled_rows, labelled_rows[AS_OF], config.split, source=sources["leads"])
        else:
            split = random_split(labelled_rows[LABEL].to_numpy(dtype="int8"), config.split, config.seed,
                                 source=sources["leads"])
    except DataError as exc:
        split, split_error = None, exc
    rows, checked_spec = labelled.leads.copy(), spec
    if split is not None:
        if int((~split.test).sum()) <= config.model.crossfit_max_rows:
            split = split.cross_fitted(config.model.cv_folds)
        # Vocabularies and event types from the training slice only (events up to its last as_of), so nothing
        # first seen in the calibration or test period shapes the model's inputs.
        train_until = labelled_rows[AS_OF][split.train].max() if has_dates else None
        if raw_categories is not None:
            for col in spec.categorical_columns:
                rows[col] = rows[spec.id_column].map(raw_categories[col])
        refit = refit_vocabularies(spec, rows.loc[split.train], typed_events, config.features,
                                   events_until=train_until)
        if refit != spec or raw_categories is not None:
            spec = refit
            for col in spec.categorical_columns:  # as scoring does: pooled or missing when not in the vocabulary
                rows[col], _ = spec.categorise(col, rows[col])
    frame = build_lead_frame(rows, typed_events, spec, rows[AS_OF], extra_columns=[LABEL], stats=typed.stats)
    report = run_checks(labelled.leads, checked_spec, data, config.checks, counts=labelled.counts,
                        events_after_as_of=frame.stats.get("events_after_as_of_ignored"),
                        has_events=typed_events is not None)
    if report.fatal:
        first = report.fatal[0]["message"]
        more = f" (and {len(report.fatal) - 1} more fatal finding(s); run check-data for the report)" \
            if len(report.fatal) > 1 else ""
        raise DataCheckFailed(f"{sources['leads']}: data check failed: {first}{more}", report)
    if split_error is not None:
        raise split_error
    if typed_events is not None and len(frame.frame):
        # What training's event log looked like, so scoring can tell an events file that does not match.
        n = len(frame.frame)
        profile = {"leads_with_events_share": frame.stats.get("leads_with_events", 0) / n,
                   "leads_matched_by_events_share": frame.stats.get("leads_matched_by_events", 0) / n}
        spec = dataclasses.replace(spec, profile=profile)
        frame = dataclasses.replace(frame, spec=spec)
    counts = {**labelled.counts, **split.describe(), "lead_stats": frame.stats,
              "train_positive_rate": float(frame.y[split.train].mean())}
    if detected is not None:
        counts["created_column_detected"] = detected
    return Prepared(spec, frame, split, counts, report, has_dates, data_end, mapping, config)


def train_model(
    leads: pd.DataFrame,
    outcomes: pd.DataFrame | None = None,
    events: pd.DataFrame | HandedTable | None = None,
    config: TrainConfig | None = None,
    *,
    data_end: pd.Timestamp | None = None,
    truth: pd.Series | None = None,
    sources: dict[str, str] | None = None,
    step: Callable[[str], None] | None = None,
) -> TrainResult:
    """Labels, point-in-time features, checks, time split, LightGBM + calibration, logistic baseline, metrics.

    Labels come from outcome times (converted within the window after as_of) or, with `config.data.label`,
    from a ready-made 0/1 column. `truth` (optional, demo data) maps lead id to the true conversion
    probability, for the error against the truth.
    """
    config = config or TrainConfig()
    step = step or (lambda _: None)
    step(f"building point-in-time features ({len(leads):,} leads"
         + (f", {len(events):,} events)" if events is not None else ")"))
    prepared = prepare_training_data(leads, outcomes, events, config, data_end=data_end, sources=sources)
    config = prepared.config or config
    del events  # a handed-over log has been let go; a frame stays the caller's
    spec, frame, split, counts = prepared.spec, prepared.frame, prepared.split, prepared.counts
    tuning = None
    if config.tune_trials > 0:
        from leadscore.training.tune import tune_model_config

        tuned_model, tuning = tune_model_config(frame, split.train, config, config.tune_trials)
        config = dataclasses.replace(config, model=tuned_model)
    if split.cross_fit_folds:
        from leadscore.training.crossfit import select_learner

        selection = select_learner(frame, split.train, config, step=step)
        model, margin_cal, y_cal = selection.model, selection.oof_margin, frame.y[split.train]
        method, calibration_cv = selection.calibration, selection.calibration_cv
        fit_info: dict[str, Any] = {
            "learner": selection.chosen, "cross_fit": {"folds": selection.n_folds, "kind": selection.fold_kind},
            "candidates": {r.name: r.row() for r in selection.results.values()}, **selection.info}
        candidates_table = selection.table()
    else:
        step(f"fitting LightGBM on {int(split.train.sum()):,} training leads (early stopping, then a refit)")
        booster, fit_info = fit_lightgbm(frame, split.train, config)
        model = booster
        cal_frame = frame.subset(split.calibration)
        margin_cal, y_cal = booster.predict(cal_frame.X, raw_score=True), cal_frame.y
        method = config.model.calibration
        calibration_cv = {}
        if method == "auto":
            method, calibration_cv = select_calibration(margin_cal, y_cal, seed=config.seed)
        fit_info["learner"] = "lightgbm"
        candidates_table = None
    if tuning is not None:
        fit_info["tuning_trials"] = len(tuning)
        fit_info["tuned"] = {k: getattr(config.model, k) for k in ("learning_rate", "num_leaves",
                                                                   "min_child_samples", "feature_fraction",
                                                                   "bagging_fraction", "reg_lambda")}
    calibrator = make_calibrator(method).fit(margin_cal, y_cal)
    fit_info["calibration"] = method
    fit_info["calibration_cv_log_loss"] = calibration_cv
    # Band cut-offs from the calibrated probabilities of leads the model did not see: the calibration slice,
    # or the out-of-fold margins when cross-fitted.
    p_cal = calibrator.predict(margin_cal)
    if config.bands.cutoffs is not None:
        cutoffs = tuple(int(round(c)) for c in config.bands.cutoffs)
    else:
        cutoffs = band_cutoffs(p_cal, config.bands.shares)
    bands = Bands(tuple(config.bands.names), cutoffs)

    window = {"split": split.method}
    if prepared.has_dates:
        window.update({
            "train_as_of_min": frame.as_of[split.train].min().isoformat(),
            "train_as_of_max": frame.as_of[split.train].max().isoformat(),
            "calibration_start": None if split.calibration_start is None else split.calibration_start.isoformat(),
            "test_start": split.test_start.isoformat(),
            "test_as_of_max": frame.as_of[split.test].max().isoformat(),
            "data_end": None if prepared.data_end is None else pd.Timestamp(prepared.data_end).isoformat(),
        })
    meta = {"calibration": {"method": method, "cv_log_loss": calibration_cv,
                            "fitted_on": "out-of-fold margins" if split.cross_fit_folds else "calibration slice"},
            "training_window": window, "counts": counts, "versions": library_versions(),
            "config": config_to_dict(config), "fit": fit_info, "learner": fit_info["learner"]}
    if prepared.label_mapping is not None:
        meta["label"] = prepared.label_mapping.to_dict()
    meta["reason_labels"] = default_labels(spec, config.reasons)
    bundle = ModelBundle(spec=spec, model=model, calibrator=calibrator, bands=bands, meta=meta)

    test_frame = frame.subset(split.test)
    truth_test = None
    if truth is not None:
        truth_test = test_frame.ids.map(truth).to_numpy(dtype="float64", na_value=np.nan)
    step(f"scoring the {len(test_frame):,} test leads (probabilities and reasons)")
    scorer = ModelScorer(bundle)
    model_metrics, test_scores = evaluate_scorer(scorer, test_frame, truth=truth_test)
    # What inputs and scores looked like, for the drift check of every scored batch (saved with the model).
    bundle.meta["reference"] = drift_reference(spec, frame.features, test_scores["probability"].to_numpy())
    uncal = make_calibrator("none").fit(margin_cal, y_cal)
    uncal_metrics, _ = evaluate_scorer(
        ModelScorer(ModelBundle(spec, bundle.model, uncal, bands)), test_frame, truth=truth_test, reasons=False
    )

    step("fitting the logistic baseline")
    baseline = make_logistic(spec, config.model, config.seed)
    train_frame = frame.subset(split.train)
    try:
        baseline.fit(_baseline_input(train_frame), train_frame.y)
    except ValueError as exc:  # pragma: no cover - reported, not fatal
        raise DataError(f"{sources['leads']}: logistic baseline failed to fit ({exc})") from exc
    baseline_metrics = evaluate_baseline(baseline, _baseline_input(test_frame), test_frame.y, truth=truth_test)
    metrics = {"model": model_metrics, "model_uncalibrated": uncal_metrics, "baseline": baseline_metrics}
    verdict = signal_verdict(test_frame.y, test_scores["probability"].to_numpy(),
                             baseline.predict_proba(_baseline_input(test_frame))[:, 1], seed=config.seed)
    fit_info["verdict"] = verdict
    bundle.metrics = {"test": model_metrics, "test_uncalibrated": uncal_metrics, "test_baseline": baseline_metrics}
    log.info("trained: %s test AUC %.3f (baseline %.3f)", fit_info, model_metrics["roc_auc"],
             baseline_metrics["roc_auc"])
    return TrainResult(bundle, baseline, frame, split, metrics, counts, test_scores, config, params=fit_info,
                       checks=prepared.checks, tuning=tuning, candidates=candidates_table,
                       label_mapping=prepared.label_mapping)


def _baseline_input(frame: LeadFrame) -> pd.DataFrame:
    features = frame.features.copy()
    for col in frame.spec.categorical_columns:
        features[col] = features[col].astype("object").where(features[col].notna(), None)
    return features
