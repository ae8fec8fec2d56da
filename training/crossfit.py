"""Cross-fitting and an honest choice of learner: every non-test lead trains, every candidate is scored the same way.

K folds over the training rows (contiguous blocks in as_of order where there are dates, stratified otherwise)
give each candidate its out-of-fold margins: LightGBM at a few presets (early stopping on the folds' mean loss
curve, as `lightgbm.cv` does), a logistic model (plain or with spline terms, L2 strength chosen on the same
folds) and the blend of the best of each in margin space. Each candidate's cross-validated log loss is taken
after calibrating its out-of-fold margins (itself cross-validated), so a raw LightGBM and a logistic model
compare fairly; the lowest wins unless a simpler one is within one standard error of it (a tie goes to the
simpler) or ranks the training leads at least as well (cross-validated ROC AUC). The winner is refitted on every
training row
and its calibrator is fitted on its out-of-fold margins: no rows are lost to a fixed calibration slice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from leadscore.features.config import ModelConfig, TrainConfig
from leadscore.features.spec import LeadFrame
from leadscore.models.calibration import make_calibrator, select_calibration
from leadscore.models.learners import BlendMargin, LinearEncoder, LinearMargin, MarginModel, TreeMargin

T = TypeVar("T")
log = logging.getLogger(__name__)

# Relative log-loss margin that always counts as a tie (besides one standard error of the paired difference).
TIE_TOLERANCE = 0.0005
LOGISTIC_C = (0.01, 0.1, 1.0, 10.0)
BLEND_WEIGHTS = tuple(np.round(np.arange(0.1, 0.95, 0.1), 2))
# Order of simplicity: ties go to the earlier name.
COMPLEXITY = ("logistic", "logistic_splines", "lightgbm_small", "lightgbm", "lightgbm_defaults", "blend")


@dataclass
class CandidateResult:
    """One candidate's out-of-fold margins and cross-validated scores."""

    name: str
    oof_margin: np.ndarray
    cv_log_loss: float
    cv_roc_auc: float
    calibration: str
    params: dict[str, Any]
    seconds: float
    row_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def row(self) -> dict[str, Any]:
        shown = {k: v for k, v in self.params.items() if k in ("n_trees", "num_leaves", "learning_rate",
                                                              "min_data_in_leaf", "lambda_l2", "C", "splines",
                                                              "weight", "of")}
        return {"candidate": self.name, "cv_log_loss": self.cv_log_loss, "cv_roc_auc": self.cv_roc_auc,
                "calibration": self.calibration, "seconds": round(self.seconds, 2), "params": shown}


@dataclass
class Selection:
    """The chosen learner refitted on every training row, its out-of-fold margins and every candidate's scores."""

    chosen: str
    model: MarginModel
    oof_margin: np.ndarray
    calibration: str
    calibration_cv: dict[str, float]
    results: dict[str, CandidateResult]
    n_folds: int
    fold_kind: str
    info: dict[str, Any] = field(default_factory=dict)
    # Any candidate refitted on every training row, as the chosen one was (`benchmarks/learner_choice.py`).
    refit: Callable[[str], MarginModel] | None = field(default=None, repr=False)

    def table(self) -> pd.DataFrame:
        rows = [r.row() for r in self.results.values()]
        out = pd.DataFrame(rows).sort_values("cv_log_loss", kind="stable").reset_index(drop=True)
        out["chosen"] = out["candidate"] == self.chosen
        return out


def make_folds(frame: LeadFrame, rows: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, str]:
    """Fold number (0..k-1) of each training row: contiguous as_of blocks with dates, else stratified."""
    if frame.as_of.notna().all():
        order = np.argsort(frame.as_of.to_numpy()[rows], kind="stable")
        folds = np.empty(len(rows), dtype=np.int64)
        folds[order] = np.minimum((np.arange(len(rows)) * k) // len(rows), k - 1)
        return folds, "time-ordered blocks"
    from sklearn.model_selection import StratifiedKFold

    folds = np.empty(len(rows), dtype=np.int64)
    y = frame.y[rows]
    for i, (_, held) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(rows, y)):
        folds[held] = i
    return folds, "stratified"


def lightgbm_presets(config: ModelConfig, n_rows: int, seed: int, threads: int | None = None
                     ) -> dict[str, dict[str, Any]]:
    """LightGBM parameter sets to try: the configured one, LightGBM's defaults, and a small-data preset."""
    from leadscore.runtime import threads as available

    common = {"objective": "binary", "seed": seed, "num_threads": threads or available(), "deterministic": True,
              "force_row_wise": True, "verbose": -1, "feature_pre_filter": False}
    configured = {**common, "learning_rate": config.learning_rate, "num_leaves": config.num_leaves,
                  "min_data_in_leaf": config.min_child_samples, "feature_fraction": config.feature_fraction,
                  "bagging_fraction": config.bagging_fraction,
                  "bagging_freq": 1 if config.bagging_fraction < 1 else 0, "lambda_l2": config.reg_lambda}
    defaults = {**common, "learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 20}
    small = {**common, "learning_rate": 0.03, "num_leaves": 7, "min_data_in_leaf": max(30, n_rows // 200),
             "feature_fraction": 0.7, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 10.0,
             # High-cardinality categories: many rows per level before a split, and shrunk level means.
             "min_data_per_group": 50, "cat_smooth": 30.0, "cat_l2": 10.0, "max_cat_threshold": 16}
    return {"lightgbm": configured, "lightgbm_defaults": defaults, "lightgbm_small": small}


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if np.unique(y).size == 2 else float("nan")


def _cv_probabilities(margin: np.ndarray, y: np.ndarray, method: str, seed: int, folds: int = 5) -> np.ndarray:
    """Cross-validated calibrated probabilities (the same folds `select_calibration` scores on)."""
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    pred = np.empty(len(y))
    for k in range(folds):
        held = fold == k
        if np.unique(y[~held]).size < 2:
            pred[held] = y[~held].mean()
            continue
        pred[held] = make_calibrator(method).fit(margin[~held], y[~held]).predict(margin[held])
    return np.clip(pred, 1e-15, 1 - 1e-15)


def _scored(name: str, oof: np.ndarray, y: np.ndarray, params: dict, started: float, seed: int) -> CandidateResult:
    method, scores = select_calibration(oof, y, seed=seed)
    p = _cv_probabilities(oof, y, method, seed)
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return CandidateResult(name, oof, float(scores[method]), _auc(y, oof), method, params,
                           time.perf_counter() - started, losses)


def choose(results: dict[str, CandidateResult]) -> str:
    """The simplest candidate whose CV log loss is within one standard error of the best (paired by lead), unless
    a simpler one ranks the training leads at least as well (CV ROC AUC): then the simplest such.

    A difference smaller than its own noise is a tie, and a tie goes to the simpler learner. A more complex
    learner must earn its place on both: lower log loss beyond noise and a better ranking. On small files with
    little signal a tree can shave the log loss while ranking no better than the logistic model, and then ranks
    worse on the later leads (a leadforge task file of 2,800 leads, split by time: 0.624 against 0.653).
    """
    by_loss = _lowest_loss(results)
    for name in COMPLEXITY:
        if name == by_loss:
            break
        if name in results and results[name].cv_roc_auc >= results[by_loss].cv_roc_auc:
            return name
    return by_loss


def choice_reason(results: dict[str, CandidateResult], chosen: str) -> str:
    """Why `choose` picked `chosen`, in a sentence."""
    best = min(results, key=lambda n: (results[n].cv_log_loss, COMPLEXITY.index(n)))
    by_loss = _lowest_loss(results)
    if chosen == best:
        return f"{chosen}: the lowest CV log loss"
    if chosen == by_loss:
        return (f"{chosen}: its CV log loss is within one standard error of {best}'s "
                f"({results[chosen].cv_log_loss:.4f} against {results[best].cv_log_loss:.4f}), and it is simpler")
    loss = "which had the lowest CV log loss" if by_loss == best else \
        "whose CV log loss was within noise of the lowest"
    return (f"{chosen}: it ranks the training leads at least as well as {by_loss} (CV ROC AUC "
            f"{results[chosen].cv_roc_auc:.3f} against {results[by_loss].cv_roc_auc:.3f}), {loss}, and it is simpler")


def _lowest_loss(results: dict[str, CandidateResult]) -> str:
    best = min(results, key=lambda n: (results[n].cv_log_loss, COMPLEXITY.index(n)))
    for name in COMPLEXITY:
        if name not in results:
            continue
        if name == best:
            return name
        diff = results[name].row_losses - results[best].row_losses
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        if diff.mean() <= max(se, TIE_TOLERANCE * results[best].cv_log_loss):
            return name
    return best


@dataclass
class _FoldBooster:
    """One preset's booster on one fold: its per-round validation losses and whether a chunk is running."""

    booster: Any
    held: np.ndarray
    losses: list[float] = field(default_factory=list)
    running: bool = False


@dataclass
class _PresetRun:
    """Early stopping on one preset's mean validation loss over the folds, as `lightgbm.early_stopping` in
    `lightgbm.cv` decides it: a new best needs a strictly lower mean; `patience` rounds without one stop."""

    folds: list[_FoldBooster]
    started: float
    checked: int = 0  # rounds whose mean has been looked at
    best_iter: int = 0
    best_score: float = float("inf")
    best: int | None = None  # the chosen number of rounds, once decided
    seconds: float = 0.0

    def settle(self, max_trees: int, patience: int) -> None:
        """Look at every round all folds have finished; decide the number of rounds once early stopping would."""
        done = min(len(f.losses) for f in self.folds)
        while self.best is None and self.checked < done:
            i = self.checked
            score = float(np.mean([f.losses[i] for f in self.folds]))  # lgb.cv's mean of the folds' losses
            if i == 0 or score < self.best_score:
                self.best_score, self.best_iter = score, i
            elif patience > 0 and i - self.best_iter >= patience:
                self.best = self.best_iter + 1
            if self.best is None and i == max_trees - 1:
                self.best = self.best_iter + 1 if patience > 0 else max_trees
            self.checked += 1
        if self.best is not None and not self.seconds:
            self.seconds = time.perf_counter() - self.started

    def target(self, chunk: int, max_trees: int, patience: int) -> int:
        """How far a fold may run now: one chunk past the slowest fold, never past the round that would stop
        the run if the mean improves no more (so a stopped run wasted no rounds), never past `max_trees`."""
        slowest = min(len(f.losses) for f in self.folds)
        limit = max_trees if patience <= 0 else min(max_trees, self.best_iter + patience + 1)
        return min(slowest + chunk, limit)


def _quiet_lightgbm_thread() -> None:
    """LightGBM keeps its log level per thread and sets it only where it reads parameters: a thread that steps
    boosters made on another one would print LightGBM's info lines. Reading `verbose=-1` here quiets it."""
    import lightgbm as lgb

    lgb.Dataset(np.zeros((2, 1)), np.array([0.0, 1.0]), params={"verbose": -1}).construct()


def cross_fit_lightgbm(X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, presets: dict[str, dict[str, Any]],
                       cats: list[str], *, max_trees: int, patience: int, chunk: int = 20
                       ) -> dict[str, tuple[np.ndarray, int, float]]:
    """Out-of-fold margins of each LightGBM preset at one number of rounds for all its folds (the minimum of the
    folds' mean validation loss, with early stopping after `patience` rounds; 0: exactly `max_trees`), the
    rounds, and the seconds until that preset was decided.

    The same models and rounds as `lightgbm.cv` per preset (the same binned data, folds and stopping rule; the
    tests compare them), but every (preset, fold) booster steps on its own, `chunk` rounds at a time, one per CPU
    on one LightGBM thread each. LightGBM's threads scale poorly on a fold of a few thousand leads, and `lgb.cv`
    steps its boosters one after the other: in `benchmarks/train_scale.py --n-leads 20000`'s stages the demo's
    three presets took 10 s that way and 7 s side by side in the same session (the small preset's 857 rounds a
    fold are the longest chain of work either way).
    """
    import lightgbm as lgb

    from leadscore.runtime import release_memory, threads

    k = int(folds.max()) + 1
    cpus = max(1, threads())
    workers = min(cpus, k * len(presets))
    per_booster = max(1, cpus // (k * len(presets)))  # more CPUs than boosters: the rest go to each booster
    splits = [(np.flatnonzero(folds != i), np.flatnonzero(folds == i)) for i in range(k)]
    runs: dict[str, _PresetRun] = {}
    for name, params in presets.items():
        # As lgb.cv: the whole training set binned once with the run's parameters, each fold a subset of it.
        cv_params = {**params, "metric": "binary_logloss", "num_threads": per_booster, "num_iterations": max_trees}
        full = lgb.Dataset(X, y, categorical_feature=cats or "auto", free_raw_data=False,
                           params={"verbose": -1, **cv_params}).construct()
        fold_boosters = []
        for train_idx, held in splits:
            booster = lgb.Booster(cv_params, full.subset(sorted(train_idx)))
            booster.add_valid(full.subset(sorted(held)), "valid")
            fold_boosters.append(_FoldBooster(booster, held))
        runs[name] = _PresetRun(fold_boosters, time.perf_counter())

    def advance(fold: _FoldBooster, rounds: int) -> None:
        for _ in range(rounds):
            fold.booster.update()
            fold.losses.append(fold.booster.eval_valid()[0][2])

    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(workers, thread_name_prefix="leadscore-cv", initializer=_quiet_lightgbm_thread) as pool:
        pending: dict[Any, tuple[_PresetRun, _FoldBooster]] = {}

        def feed(run: _PresetRun) -> None:
            if run.best is not None:
                return
            goal = run.target(chunk, max_trees, patience)
            # The slowest folds first, so the mean can be looked at as soon as possible.
            for fold in sorted(run.folds, key=lambda f: len(f.losses)):
                if not fold.running and len(fold.losses) < goal:
                    fold.running = True
                    pending[pool.submit(advance, fold, goal - len(fold.losses))] = (run, fold)

        for run in runs.values():
            feed(run)
        out: dict[str, tuple[np.ndarray, int, float]] = {}

        def collect(name: str, run: _PresetRun) -> None:
            # Decided and no fold still stepping: its out-of-fold margins, then its boosters let go.
            if name in out or run.best is None or any(f.running for f in run.folds):
                return
            oof = np.empty(len(y))
            for fold in run.folds:
                oof[fold.held] = fold.booster.predict(X.iloc[fold.held], raw_score=True, num_iteration=run.best)
                fold.booster = None
            out[name] = (oof, run.best, run.seconds)

        names = {id(run): name for name, run in runs.items()}
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in finished:
                run, fold = pending.pop(future)
                future.result()  # a LightGBM error surfaces here
                fold.running = False
                run.settle(max_trees, patience)
                feed(run)
                collect(names[id(run)], run)
    release_memory()
    return {name: out[name] for name in presets}


def cv_logistic(Z: np.ndarray, y: np.ndarray, folds: np.ndarray, *, c: float, seed: int) -> np.ndarray:
    """Out-of-fold margins of an L2 logistic model on a design matrix (see `models.learners.LinearEncoder`).

    The encoder's transforms (medians, scales, spline knots) are unsupervised and fitted once on all training
    rows; only the coefficients are fitted per fold.
    """
    from sklearn.linear_model import LogisticRegression

    oof = np.empty(len(y))
    for i in range(int(folds.max()) + 1):
        held = folds == i
        clf = LogisticRegression(C=c, solver="newton-cholesky", max_iter=200, random_state=seed).fit(
            Z[~held], y[~held])
        oof[held] = clf.decision_function(Z[held])
    return oof


def parallel_fits(tasks: Sequence[Callable[[int], T]], sizes: Sequence[float] | None = None) -> list[T]:
    """Run independent LightGBM fits, each task called with the thread count its fit should use; results in order.
    `sizes` (e.g. the rows each fit reads): the largest fits start first, so the last one does not run alone.

    With several tasks and CPUs, one task per CPU at one LightGBM thread each: LightGBM's threads scale poorly on
    the small fits of a report (six fits of 946 trees on 7-12k demo leads: 2.0 s two at a time on
    one thread each against 2.7 s one after the other on two threads). Else in order on all threads. LightGBM
    runs deterministic, so the results do not depend on the thread count (the tests compare them)."""
    from leadscore.runtime import threads

    n = threads()
    if n < 2 or len(tasks) < 2:
        return [task(n) for task in tasks]
    from concurrent.futures import ThreadPoolExecutor

    order = sorted(range(len(tasks)), key=lambda i: -sizes[i]) if sizes is not None else list(range(len(tasks)))
    with ThreadPoolExecutor(min(n, len(tasks)), thread_name_prefix="leadscore-fit") as pool:
        futures = {i: pool.submit(tasks[i], 1) for i in order}
        return [futures[i].result() for i in range(len(tasks))]


def fit_lightgbm_rounds(X: pd.DataFrame, y: np.ndarray, params: dict[str, Any], cats: list[str], n_trees: int):
    """A LightGBM booster with a fixed number of rounds on all rows."""
    import lightgbm as lgb

    data = lgb.Dataset(X, y, categorical_feature=cats or "auto", params={"verbose": -1})
    return lgb.train(params, data, num_boost_round=n_trees)


def select_learner(
    frame: LeadFrame, train: np.ndarray, config: TrainConfig, *, step: Callable[[str], None] | None = None,
    keep_refit: bool = False,
) -> Selection:
    """Cross-fit every candidate on the training rows, choose one (`choose`), refit the winner on all of them."""
    rows = np.flatnonzero(train)
    k = config.model.cv_folds
    folds, fold_kind = make_folds(frame, rows, k, config.seed)
    X_all = frame.X
    X = X_all.iloc[rows].reset_index(drop=True)
    Xn = X.to_numpy(dtype="float64")
    y = frame.y[rows].astype("float64")
    cats = list(frame.spec.categorical_columns)
    results: dict[str, CandidateResult] = {}
    rounds: dict[str, int] = {}
    encoders: dict[str, LinearEncoder] = {}
    designs: dict[str, np.ndarray] = {}
    presets = lightgbm_presets(config.model, len(rows), config.seed)
    allowed = set(config.model.candidates)
    tree_presets = {name: params for name, params in presets.items() if name in allowed}
    if tree_presets:
        if step is not None:
            step(f"cross-fitting {', '.join(tree_presets)} ({k} folds, side by side)")
        patience = config.model.early_stopping_rounds and max(config.model.early_stopping_rounds, 20)
        fitted = cross_fit_lightgbm(X, y, folds, tree_presets, cats, max_trees=config.model.max_trees,
                                    patience=patience)
        for name, (oof, best, seconds) in fitted.items():
            rounds[name] = best
            results[name] = _scored(name, oof, y, {**tree_presets[name], "n_trees_cv": best},
                                    time.perf_counter() - seconds, config.seed)
    for name, splines in (("logistic", False), ("logistic_splines", True)):
        if name not in allowed:
            continue
        if step is not None:
            step(f"cross-fitting {name} ({k} folds)")
        started = time.perf_counter()
        encoders[name] = LinearEncoder(frame.spec, splines=splines).fit(Xn)
        designs[name] = encoders[name].transform(Xn)[0]
        best_c, best_oof, best_loss = None, None, np.inf
        # The spline model reuses the plain model's L2 strength: its design is several times wider and the
        # strength that suits one suits the other closely.
        grid = (results["logistic"].params["C"],) if splines and "logistic" in results else LOGISTIC_C
        for c in grid:
            oof = cv_logistic(designs[name], y, folds, c=c, seed=config.seed)
            loss = _log_loss(y, 1 / (1 + np.exp(-oof)))
            if loss < best_loss - 1e-12:
                best_c, best_oof, best_loss = c, oof, loss
        results[name] = _scored(name, best_oof, y, {"C": best_c, "splines": splines}, started, config.seed)
    trees = [n for n in results if n.startswith("lightgbm")]
    linears = [n for n in results if n.startswith("logistic")]
    if "blend" in allowed and trees and linears:
        started = time.perf_counter()
        tree = min(trees, key=lambda n: results[n].cv_log_loss)
        lin = min(linears, key=lambda n: results[n].cv_log_loss)
        best_w, best_loss = None, np.inf
        for w in BLEND_WEIGHTS:
            m = w * results[tree].oof_margin + (1 - w) * results[lin].oof_margin
            _, scores = select_calibration(m, y, seed=config.seed, methods=("sigmoid",))
            if scores["sigmoid"] < best_loss - 1e-12:
                best_w, best_loss = float(w), scores["sigmoid"]
        oof = best_w * results[tree].oof_margin + (1 - best_w) * results[lin].oof_margin
        results["blend"] = _scored("blend", oof, y, {"weight": best_w, "of": f"{tree} + {lin}"}, started,
                                   config.seed)
        results["blend"].params.update({"tree": tree, "linear": lin})
    if not results:
        raise ValueError("model.candidates names no learner")
    chosen = choose(results)
    if step is not None:
        step(f"refitting {chosen} on all {len(rows):,} training leads")
    model = _refit(chosen, results, presets, rounds, encoders, designs, X, y, cats, config, k)
    res = results[chosen]
    method, cal_scores = select_calibration(res.oof_margin, y, seed=config.seed)
    if config.model.calibration != "auto":
        method = config.model.calibration
    tree_preset = chosen if chosen.startswith("lightgbm") else res.params.get("tree")
    info = {"n_trees": _n_trees(model), "cv_best_rounds": rounds, "tree_preset": tree_preset,
            "choice": choice_reason(results, chosen)}
    refit = (lambda name: _refit(name, results, presets, rounds, encoders, designs, X, y, cats, config, k)) \
        if keep_refit else None  # it holds the design matrices
    return Selection(chosen, model, res.oof_margin, method, cal_scores, results, k, fold_kind, info, refit=refit)


def _n_trees(model: MarginModel) -> int | None:
    booster = getattr(model, "booster", None)
    return None if booster is None else int(booster.num_trees())


def _refit(name: str, results: dict[str, CandidateResult], presets: dict, rounds: dict, encoders: dict,
           designs: dict, X: pd.DataFrame, y: np.ndarray, cats: list[str], config: TrainConfig, k: int
           ) -> MarginModel:
    def tree_model(tree_name: str) -> TreeMargin:
        # Every fold model saw (k-1)/k of the rows; the refit sees all of them, so it earns a few more rounds.
        n_trees = max(10, int(round(rounds[tree_name] * k / (k - 1))))
        if config.model.early_stopping_rounds == 0:  # early stopping explicitly off: exactly max_trees
            n_trees = config.model.max_trees
        return TreeMargin(fit_lightgbm_rounds(X, y, presets[tree_name], cats, n_trees))

    def linear_model(lin_name: str) -> LinearMargin:
        return LinearMargin.fit_design(encoders[lin_name], designs[lin_name], y, c=results[lin_name].params["C"],
                                       seed=config.seed)

    if name.startswith("lightgbm"):
        return tree_model(name)
    if name.startswith("logistic"):
        return linear_model(name)
    params = results[name].params
    return BlendMargin(tree_model(params["tree"]), linear_model(params["linear"]), params["weight"])
