"""Evaluation beyond one split: rolling-origin backtest by month, metrics per segment, and a learning curve."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leadscore.features.config import TrainConfig
from leadscore.features.spec import LeadFrame
from leadscore.models.calibration import make_calibrator
from leadscore.models.metrics import expected_calibration_error
from leadscore.training.split import time_order

if TYPE_CHECKING:
    from leadscore.training.train import TrainResult

MISSING_SEGMENT = "(missing)"
# Below this many cases of either class a segment's ROC AUC is mostly noise, so it is not reported.
MIN_CLASS_CASES = 5
BACKTEST_COLUMNS = (
    "fold", "test_period", "test_start", "test_end", "calibration_period", "calibration", "train_start", "train_end",
    "n_train", "n_calibration", "n_trees", "n", "positives", "positive_rate", "mean_probability", "roc_auc", "ece",
    "calibration_in_the_large", "brier",
)


@dataclass(frozen=True)
class RunLearner:
    """A run's own learner as a recipe to fit again on other leads (the learning curve, the backtest's folds): its
    trees (LightGBM parameters and tree count), its logistic part (L2 strength, spline terms) and the weight of
    the trees in the margin (1: trees only, 0: the logistic model only). `start`: the run's own logistic model;
    its transforms (medians, scales, spline knots: unsupervised, fitted on its training leads) are reused so each
    fit is only the coefficients, as in the cross-fit, and the solver starts from its coefficients (the same
    optimum in fewer steps: the problem is convex)."""

    trees: tuple[dict[str, Any], int] | None = None
    linear: tuple[float, bool] | None = None
    weight: float = 1.0
    start: Any = None

    @property
    def n_trees(self) -> int | None:
        return None if self.trees is None else int(self.trees[1])

    def fitter(self, frame: LeadFrame) -> Callable[[np.ndarray, int, int], Callable[[np.ndarray], np.ndarray]]:
        """`fit(rows, n_threads, seed)` on rows of the frame, returning the margin of other rows (by position).
        The logistic design of every lead is built once here; the fits may then run side by side."""
        from leadscore.models.learners import LinearEncoder, LinearMargin
        from leadscore.training.crossfit import fit_lightgbm_rounds

        X, y = frame.X, frame.y
        design = encoder = None
        if self.linear is not None:
            Xn = X.to_numpy(dtype="float64")
            encoder = self.start.encoder if self.start is not None else \
                LinearEncoder(frame.spec, splines=self.linear[1]).fit(Xn)
            design = encoder.transform(Xn)[0]
        cats = list(frame.spec.categorical_columns)

        def fit(rows: np.ndarray, n_threads: int, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
            booster = linear = None
            if self.trees is not None:
                booster = fit_lightgbm_rounds(X.iloc[rows], y[rows], {**self.trees[0], "num_threads": n_threads},
                                              cats, self.trees[1])
            if design is not None:
                linear = LinearMargin.fit_design(encoder, design[rows], y[rows].astype("float64"),
                                                 c=self.linear[0], seed=seed, start=self.start)

            def margin(idx: np.ndarray) -> np.ndarray:
                out = np.zeros(len(idx))
                if booster is not None:
                    out += self.weight * booster.predict(X.iloc[idx], raw_score=True)
                if linear is not None:
                    scale = 1 - self.weight if booster is not None else 1.0
                    out += scale * (design[idx] @ linear.coef + linear.intercept)
                return out
            return margin
        return fit


def calibration_method(config: TrainConfig) -> str:
    """The calibration a refit uses: the configured method, or sigmoid when the run chose it on data ("auto")."""
    method = config.model.calibration
    # A month is too small a slice to choose a method on reliably; sigmoid is the robust default.
    return method if method in ("none", "sigmoid", "isotonic") else "sigmoid"


def probability_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """n, positives, rate, mean probability, ROC AUC (NaN with one class), ECE, calibration-in-the-large, Brier."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    n = len(y)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "positives": 0, "positive_rate": nan, "mean_probability": nan, "roc_auc": nan, "ece": nan,
                "calibration_in_the_large": nan, "brier": nan}
    return {
        "n": int(n),
        "positives": int(y.sum()),
        "positive_rate": float(y.mean()),
        "mean_probability": float(p.mean()),
        "roc_auc": float(roc_auc_score(y, p)) if np.unique(y).size == 2 else float("nan"),
        "ece": expected_calibration_error(y, p),
        "calibration_in_the_large": float(p.mean() - y.mean()),
        "brier": float(np.mean((p - y) ** 2)),
    }


def as_of_periods(as_of: pd.Series, period: str = "M") -> pd.Series:
    """Calendar period (month by default) of each as_of, in UTC."""
    t = pd.to_datetime(as_of, utc=True)
    # Periods carry no time zone; convert to naive UTC first so the cut is the same on every machine.
    return t.dt.tz_convert(None).dt.to_period(period)


def _period_bounds(period: pd.Period) -> tuple[pd.Timestamp, pd.Timestamp]:
    return period.start_time.tz_localize("UTC"), period.end_time.tz_localize("UTC")


# A test month with fewer leads than this share of the median month's is a month cut short (most often the last
# one, where the labelled data ends): its few leads would show noise as a fold's metrics, so it is not tested.
PARTIAL_PERIOD_SHARE = 1 / 3


def _whole_periods(folds: list[tuple]) -> list[tuple]:
    """The folds whose test period is not cut short (`PARTIAL_PERIOD_SHARE`); all of them below three folds."""
    if len(folds) < 3:
        return folds
    sizes = np.asarray([int(fold[4].sum()) for fold in folds])
    return [fold for fold, size in zip(folds, sizes, strict=True) if size >= PARTIAL_PERIOD_SHARE * np.median(sizes)]


def rolling_backtest(frame: LeadFrame, config: TrainConfig, *, period: str = "M", min_train_periods: int = 3,
                     max_folds: int | None = None, max_train_rows: int | None = None,
                     trees: RunLearner | tuple[dict[str, Any], int] | None = None) -> pd.DataFrame:
    """Rolling-origin backtest: fit on all periods before the last one before the test period, calibrate on that one.

    Fold k tests period k; LightGBM is fitted as in training (early stopping on the latest share, then a refit)
    on periods < k-1, and the calibration (`calibration_method`) on period k-1. One row per fold; `max_folds`
    keeps only the most recent folds, `max_train_rows` fits each fold on at most that many of its most recent
    training leads (a sliding window instead of all the past: the fold cost stays bounded on large exports).
    With `trees` (a run's own learner, `run_learner`, or LightGBM parameters and a tree count), each fold is one
    fit of it instead of early stopping and a refit of LightGBM. `train_end` (latest training as_of) is always
    before `test_start`.
    A test period cut short (fewer leads than `PARTIAL_PERIOD_SHARE` of the median period's) is left out.
    """
    from leadscore.training.crossfit import parallel_fits
    from leadscore.training.train import fit_lightgbm

    if isinstance(trees, tuple):
        trees = RunLearner(trees=trees)
    if len(frame) == 0 or frame.as_of.isna().any():
        # Without dates there is no time order to roll over.
        return pd.DataFrame(columns=list(BACKTEST_COLUMNS))
    periods = as_of_periods(frame.as_of, period).reset_index(drop=True)
    ordered = sorted(periods.unique())
    y = frame.y
    X = frame.X
    as_of = frame.as_of.reset_index(drop=True)
    first = min_train_periods + 1
    if max_folds is not None:
        first = max(first, len(ordered) - max_folds)
    folds = []
    for k in range(first, len(ordered)):
        test_p, cal_p = ordered[k], ordered[k - 1]
        train = (periods < cal_p).to_numpy()
        cal = (periods == cal_p).to_numpy()
        test = (periods == test_p).to_numpy()
        if max_train_rows is not None and int(train.sum()) > max_train_rows:
            latest = time_order(train, as_of, config.seed)[-max_train_rows:]
            train = np.zeros(len(train), dtype=bool)
            train[latest] = True
        if np.unique(y[train]).size < 2 or not cal.any() or not test.any():
            continue  # nothing to learn from (or to test on) in this fold
        folds.append((test_p, cal_p, train, cal, test))
    folds = _whole_periods(folds)

    fit_learner = trees.fitter(frame) if trees is not None and folds else None

    def fold_fit(train: np.ndarray):
        def run(n_threads: int):
            if fit_learner is None:
                booster, info = fit_lightgbm(frame, train, config)
                return (lambda idx: booster.predict(X.iloc[idx], raw_score=True)), info["n_trees"]
            return fit_learner(np.flatnonzero(train), n_threads, config.seed), trees.n_trees
        return run

    # Fits of the run's own learner run side by side; with early stopping (`fit_lightgbm`) one after the other.
    fits = parallel_fits([fold_fit(f[2]) for f in folds], [f[2].sum() for f in folds]) if trees is not None else \
        [fold_fit(f[2])(0) for f in folds]
    rows = []
    for (test_p, cal_p, train, cal, test), (margin, n_trees) in zip(folds, fits, strict=True):
        calibrator = make_calibrator(calibration_method(config)).fit(margin(np.flatnonzero(cal)), y[cal])
        p = calibrator.predict(margin(np.flatnonzero(test)))
        test_start, test_end = _period_bounds(test_p)
        rows.append({
            "fold": len(rows) + 1,
            "test_period": str(test_p),
            "test_start": test_start,
            "test_end": test_end,
            "calibration_period": str(cal_p),
            "calibration": calibrator.method,
            "train_start": as_of[train].min(),
            "train_end": as_of[train].max(),
            "n_train": int(train.sum()),
            "n_calibration": int(cal.sum()),
            "n_trees": None if n_trees is None else int(n_trees),
            **probability_metrics(y[test], p),
        })
    return pd.DataFrame(rows, columns=list(BACKTEST_COLUMNS))


def _segment_values(values: pd.Series, max_levels: int = 10) -> pd.Series:
    """Readable segment labels; many-valued numbers are cut into quintiles so segments stay comparable."""
    numeric = pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)
    if numeric and values.nunique(dropna=True) > max_levels:
        binned = pd.qcut(values, 5, duplicates="drop")
        labels = binned.astype("object").map(lambda iv: f"{iv.left:,.4g} to {iv.right:,.4g}", na_action="ignore")
        return labels.fillna(MISSING_SEGMENT).astype("object")
    out = values.astype("object").map(str, na_action="ignore")
    return out.fillna(MISSING_SEGMENT).astype("object")


def _aligned(scored: pd.DataFrame, frame: LeadFrame) -> pd.DataFrame:
    """Scored rows in the frame's order (matched by lead id when the order differs)."""
    id_col = frame.spec.id_column
    ids = frame.ids.reset_index(drop=True)
    if id_col in scored.columns and len(scored) == len(frame) and \
            scored[id_col].astype("string").reset_index(drop=True).equals(ids.astype("string")):
        return scored.reset_index(drop=True)
    if id_col not in scored.columns:
        if len(scored) != len(frame):
            raise ValueError("scored rows and the frame differ in length and the scored rows carry no lead id")
        return scored.reset_index(drop=True)
    keyed = scored.assign(**{id_col: scored[id_col].astype("string")}).drop_duplicates(id_col).set_index(id_col)
    out = keyed.reindex(ids.astype("string"))
    if out["probability"].isna().any():
        raise ValueError("some leads of the frame have no scored row")
    return out.reset_index(drop=True)


def segment_metrics(scored: pd.DataFrame, frame: LeadFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per segment of each column: count, positives, rate, mean probability, ROC AUC, calibration-in-the-large.

    ROC AUC only where the segment has at least MIN_CLASS_CASES of each class. Columns absent from the frame
    are skipped. Within a column, the weakest segments (lowest AUC) come first.
    """
    scored = _aligned(scored, frame)
    p = scored["probability"].to_numpy(dtype="float64")
    y = scored["label"].to_numpy(dtype="float64") if "label" in scored.columns else frame.y.astype("float64")
    table = frame.frame.reset_index(drop=True)
    parts = []
    for column in dict.fromkeys(columns):
        if column not in table.columns:
            continue
        segments = _segment_values(table[column])
        rows = []
        for value, idx in segments.groupby(segments, sort=True).groups.items():
            pos = np.asarray(idx)
            m = probability_metrics(y[pos], p[pos])
            enough = min(m["positives"], m["n"] - m["positives"]) >= MIN_CLASS_CASES
            rows.append({"column": column, "segment": str(value), "n": m["n"], "positives": m["positives"],
                         "rate": m["positive_rate"], "mean_probability": m["mean_probability"],
                         "roc_auc": m["roc_auc"] if enough else float("nan"),
                         "calibration_in_the_large": m["calibration_in_the_large"]})
        part = pd.DataFrame(rows).sort_values(["roc_auc", "n"], ascending=[True, False], na_position="last",
                                              kind="stable")
        parts.append(part)
    cols = ["column", "segment", "n", "positives", "rate", "mean_probability", "roc_auc",
            "calibration_in_the_large"]
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def learning_curve(result: TrainResult, *, fractions: Sequence[float] = (0.1, 0.25, 0.5, 1.0),
                   n_trees: int | None = None, max_fit_rows: int | None = None) -> pd.DataFrame:
    """Test ROC AUC and log loss when fitting on the latest fraction of the training slice (fixed tree count).

    The learner is the run's own (`run_learner`): its LightGBM (the preset the cross-fit chose at its tree count,
    else the configured parameters), its logistic model, or the blend of both. Each model is calibrated on the
    run's calibration slice (the latest 15% of the training leads when the run was cross-fitted), so log loss
    compares fairly.
    With `max_fit_rows`, points that would fit more leads than that are left out, except the full slice of a run
    that was not cross-fitted: that point is the run's own model (fitted on the same leads with the same number of
    trees and calibrated on the same slice), read from its test scores instead of fitted again; the other points
    are then fractions of `max_fit_rows` leads.
    """
    from sklearn.metrics import log_loss, roc_auc_score

    from leadscore.training.crossfit import parallel_fits

    config = result.config
    frame, split = result.frame, result.split
    learner = run_learner(result)
    if n_trees is not None and learner.trees is not None:
        learner = dataclasses.replace(learner, trees=(learner.trees[0], int(n_trees)))
    y = frame.y
    order = time_order(split.train, frame.as_of, config.seed)
    cal_idx, test_idx = np.flatnonzero(split.calibration), np.flatnonzero(split.test)
    if len(cal_idx) == 0:
        # Cross-fitted run (no calibration slice): the latest 15% of the training leads calibrate each curve point.
        n_cal = max(1, int(round(0.15 * len(order))))
        cal_idx, order = order[-n_cal:], order[:-n_cal]
    run_is_full_point = bool(np.asarray(split.calibration).any()) and result.params.get("learner") == "lightgbm"
    if max_fit_rows is not None and len(order) > max_fit_rows:
        # A large slice: the same shape of curve over at most `max_fit_rows` leads, then the run's own model.
        fractions = [max_fit_rows * f / len(order) for f in fractions if f < 1] + [max_fit_rows / len(order), 1.0]
    points = []
    for fraction in sorted(set(float(f) for f in fractions)):
        n = max(1, int(round(fraction * len(order))))
        rows_idx = order[-n:]  # the most recent leads: closest to what the test slice looks like
        if np.unique(y[rows_idx]).size < 2:
            continue
        if max_fit_rows is not None and n > max_fit_rows and not (n == len(order) and run_is_full_point):
            continue
        points.append((fraction, n, rows_idx, max_fit_rows is None or n <= max_fit_rows))

    fit_learner = learner.fitter(frame) if any(fit for *_, fit in points) else None

    def point_fit(rows_idx: np.ndarray):
        def run(n_threads: int):
            margin = fit_learner(rows_idx, n_threads, config.seed)
            calibrator = make_calibrator(calibration_method(config)).fit(margin(cal_idx), y[cal_idx])
            return calibrator.predict(margin(test_idx))
        return run

    fitted = iter(parallel_fits([point_fit(idx) for _, _, idx, fit in points if fit],
                                [n for _, n, _, fit in points if fit]))
    rows = []
    for fraction, n, rows_idx, fit in points:
        # A point too large to fit again is the run's own model: its test scores.
        p = next(fitted) if fit else result.test_scores["probability"].to_numpy(dtype="float64")
        rows.append({"fraction": fraction, "n_train": int(n), "positives": int(y[rows_idx].sum()),
                     "n_trees": learner.n_trees, "roc_auc": float(roc_auc_score(y[test_idx], p)),
                     "log_loss": float(log_loss(y[test_idx], np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))})
    return pd.DataFrame(rows, columns=["fraction", "n_train", "positives", "n_trees", "roc_auc", "log_loss"])


def run_trees(result: TrainResult) -> tuple[dict[str, Any], int] | None:
    """The run's own LightGBM as (parameters, tree count), alone or as the tree half of a blend; None for a
    logistic model."""
    booster = getattr(result.bundle.model, "booster", None)
    if booster is None:
        return None
    n_trees = int(result.params.get("n_trees") or booster.num_trees())
    return _tree_params(result, int(np.asarray(result.split.train).sum())), n_trees


def run_learner(result: TrainResult) -> RunLearner:
    """The run's own learner, what the learning curve and the backtest fit again: its trees, its logistic model
    (the same L2 strength and spline terms) or the blend of both at the run's weight."""
    model = result.bundle.model
    linear = getattr(model, "linear", model if getattr(model, "kind", None) == "logistic" else None)
    spline = None if linear is None else (float(linear.c), bool(linear.encoder.splines))
    trees = run_trees(result)
    weight = float(getattr(model, "weight", 1.0 if linear is None else 0.0))
    return RunLearner(trees=trees, linear=spline, weight=weight, start=linear)


def _tree_params(result: TrainResult, n_rows: int) -> dict[str, Any]:
    """LightGBM parameters of the run's trees: the cross-fit's chosen preset, else the configured model."""
    from leadscore.training.crossfit import lightgbm_presets

    config = result.config
    presets = lightgbm_presets(config.model, n_rows, config.seed)
    return presets.get(result.params.get("tree_preset") or "lightgbm", presets["lightgbm"])
