"""Learners: exact additive contributions for every learner, safe round trips, an honest cross-fitted choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from leadscore.features.config import ModelConfig, TrainConfig
from leadscore.models.bundle import ModelBundle
from leadscore.models.calibration import IsotonicCalibrator, SigmoidCalibrator
from leadscore.models.learners import BlendMargin, LinearMargin, TreeMargin
from leadscore.models.scorer import ModelScorer
from leadscore.training.train import train_model


def _flat_table(n: int, seed: int, *, interaction: bool) -> pd.DataFrame:
    """A flat export with missing numbers, a category with rare levels, and a linear or interaction truth."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.normal(size=n)
    level = rng.choice(["alpha", "beta", "gamma", "delta"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    rare = np.array([f"page-{i}" for i in rng.integers(0, 400, n)])
    logit = -1.2 + (3.0 * (a > 0) * (b > 0) - 1.5 * (a < 0) * (b < 0) if interaction else 1.1 * a - 0.8 * b)
    logit = logit + np.where(level == "alpha", 0.5, 0.0)
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    a_text = np.where(rng.random(n) < 0.1, "", np.round(a, 4).astype(str))
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "a": a_text, "b": np.round(b, 4), "level": level,
                         "page": rare, "outcome": np.where(y, "Won", "Lost")})


def _run(n: int, seed: int, *, interaction: bool):
    frame = _flat_table(n, seed, interaction=interaction)
    cfg = TrainConfig(seed=seed)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, lead_id="id", label="outcome"))
    return frame, train_model(frame, None, None, cfg)


@pytest.fixture(scope="module")
def linear_run():
    return _run(4000, 1, interaction=False)


@pytest.fixture(scope="module")
def interaction_run():
    return _run(6000, 2, interaction=True)


def test_linear_truth_picks_a_logistic_model_and_interactions_pick_trees(linear_run, interaction_run):
    _, linear = linear_run
    _, inter = interaction_run
    assert linear.params["learner"].startswith("logistic"), linear.candidates
    assert inter.params["learner"] in ("lightgbm", "lightgbm_defaults", "lightgbm_small", "blend"), inter.candidates
    for result in (linear, inter):
        table = result.candidates
        assert set(table["candidate"]) == {"lightgbm", "lightgbm_defaults", "lightgbm_small", "logistic",
                                           "logistic_splines", "blend"}
        assert table["chosen"].sum() == 1
        chosen = table.loc[table["chosen"]].iloc[0]
        # Never more than noise worse than the best candidate.
        assert chosen["cv_log_loss"] <= table["cv_log_loss"].min() * 1.02


def test_cross_fit_trains_on_every_non_test_lead(linear_run):
    _, result = linear_run
    split = result.split
    assert split.cross_fit_folds == 5
    assert split.calibration.sum() == 0
    assert split.train.sum() + split.test.sum() == len(result.frame)
    assert result.bundle.meta["calibration"]["fitted_on"] == "out-of-fold margins"


def test_rare_levels_are_pooled_not_dropped(linear_run):
    _, result = linear_run
    vocab = result.bundle.spec.categorical_vocab
    # 400 pages seen ~10 times each: the frequent ones are kept, the rest pooled into one level.
    assert "page" in vocab and vocab["page"][-1] == "(other)"


@pytest.mark.parametrize("which", ["logistic", "logistic_splines", "blend"])
def test_contributions_add_up_exactly_for_every_learner(interaction_run, which):
    frame, result = interaction_run
    spec = result.bundle.spec
    X = result.frame.X.to_numpy()
    y = result.frame.y
    tree = TreeMargin(result.bundle.booster) if result.bundle.booster is not None else None
    linear = LinearMargin.fit(spec, X, y, c=0.5, splines=which != "logistic")
    if which == "blend":
        if tree is None:
            import lightgbm as lgb

            tree = TreeMargin(lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7},
                                        lgb.Dataset(result.frame.X, y), num_boost_round=30))
        model = BlendMargin(tree, linear, 0.6)
    else:
        model = linear
    contrib = model.contributions(result.frame.X)
    np.testing.assert_allclose(contrib.sum(axis=1), model.margin(result.frame.X), atol=1e-9)
    for calibrator in (SigmoidCalibrator().fit(model.margin(X), y), IsotonicCalibrator().fit(model.margin(X), y)):
        bundle = ModelBundle(spec, model, calibrator, result.bundle.bands)
        base, parts, p = ModelScorer(bundle).contributions(result.frame.features)
        np.testing.assert_allclose(base + parts.sum(axis=1).to_numpy(), p, atol=1e-9)


def test_logistic_and_blend_bundles_round_trip_without_pickle(interaction_run, tmp_path):
    _, result = interaction_run
    X = result.frame.X.to_numpy()
    y = result.frame.y
    linear = LinearMargin.fit(result.bundle.spec, X, y, c=0.5, splines=True)
    for name, model in (("logistic", linear),):
        bundle = ModelBundle(result.bundle.spec, model, SigmoidCalibrator().fit(model.margin(X), y),
                             result.bundle.bands)
        bundle.save(tmp_path / name)
        assert not (tmp_path / name / "model.txt").exists()
        loaded = ModelBundle.load(tmp_path / name)
        assert loaded.learner == "logistic (splines)"
        np.testing.assert_array_equal(ModelScorer(loaded).predict_proba_features(result.frame.features),
                                      ModelScorer(bundle).predict_proba_features(result.frame.features))


def test_isotonic_map_is_strictly_increasing_so_ranking_survives():
    rng = np.random.default_rng(0)
    margin = rng.normal(size=3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-0.3 * margin))).astype(float)
    iso = IsotonicCalibrator().fit(margin, y)
    grid = np.sort(margin)
    assert np.all(np.diff(iso.predict(grid)) > 0)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, iso.predict(margin)) == pytest.approx(roc_auc_score(y, margin), abs=1e-12)


def test_candidates_can_be_restricted_and_bad_names_are_config_errors():
    from leadscore.features.errors import ConfigError

    with pytest.raises(ConfigError, match="model.candidates: unknown learner"):
        ModelConfig(candidates=("xgboost",))


def test_spline_basis_equals_scipy_design_matrix():
    from scipy.interpolate import BSpline

    from leadscore.models.learners import SPLINE_DEGREE, _bspline_bases, _bspline_basis

    rng = np.random.default_rng(4)
    k = SPLINE_DEGREE
    for _ in range(50):
        knots = np.unique(np.quantile(rng.exponential(size=40), np.linspace(0, 1, 4)))
        x = np.concatenate([rng.uniform(knots[0] - 1, knots[-1] + 1, 200), knots, [knots[-1]] * 3])
        t = np.concatenate([[knots[0]] * k, knots, [knots[-1]] * k])
        ref = BSpline.design_matrix(np.clip(x, knots[0], knots[-1]), t, k, extrapolate=False).toarray()
        np.testing.assert_allclose(_bspline_basis(x, knots), ref, rtol=0, atol=1e-14)
    # Batched over columns: each column equals its own basis.
    knots = np.sort(rng.uniform(0, 5, size=(3, 4)), axis=1)
    x = rng.uniform(-1, 6, size=(30, 3))
    batched = _bspline_bases(x, knots)
    for c in range(3):
        np.testing.assert_array_equal(batched[:, c], _bspline_basis(x[:, c], knots[c]))


def _lgb_cv_reference(X, y, folds, params, cats, max_trees, patience):
    """What `lightgbm.cv` itself gives: out-of-fold margins at its best iteration, and that iteration."""
    import lightgbm as lgb

    splits = [(np.flatnonzero(folds != i), np.flatnonzero(folds == i)) for i in range(int(folds.max()) + 1)]
    data = lgb.Dataset(X, y, categorical_feature=cats, free_raw_data=False, params={"verbose": -1})
    stop = [lgb.early_stopping(patience, verbose=False)] if patience else []
    result = lgb.cv({**params, "metric": "binary_logloss"}, data, num_boost_round=max_trees, folds=splits,
                    callbacks=stop, return_cvbooster=True)
    best = int((result["cvbooster"].best_iteration if patience else 0) or len(result["valid binary_logloss-mean"]))
    oof = np.empty(len(y))
    for (_, held), booster in zip(splits, result["cvbooster"].boosters, strict=True):
        oof[held] = booster.predict(X.iloc[held], raw_score=True, num_iteration=best)
    return oof, best


@pytest.mark.parametrize(("max_trees", "patience"), [(400, 20), (25, 20), (30, 0)])
def test_side_by_side_cross_fit_gives_lightgbm_cv_models_and_rounds(max_trees, patience):
    """Every preset's boosters stepped side by side stop where `lightgbm.cv` stops (early stopping on the folds'
    mean loss, the last round, or exactly max_trees) with the same out-of-fold margins, on one thread or two."""
    from leadscore.runtime import set_threads
    from leadscore.training.crossfit import cross_fit_lightgbm, lightgbm_presets

    rng = np.random.default_rng(5)
    n = 3000
    a = rng.normal(size=n)
    a[rng.random(n) < 0.15] = np.nan  # missing values take the default direction
    level = rng.integers(0, 12, n).astype("float64")
    logit = -1.5 + 1.2 * np.nan_to_num(a) + np.where(level < 3, 0.8, 0.0) + rng.normal(scale=0.5, size=n)
    X = pd.DataFrame({"a": a, "b": rng.normal(size=n), "level": level})
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("float64")
    folds = np.minimum(np.arange(n) * 5 // n, 4)
    presets = lightgbm_presets(ModelConfig(), n, seed=0)
    runs = {}
    try:
        for threads in (1, 2):
            set_threads(threads)
            runs[threads] = cross_fit_lightgbm(X, y, folds, presets, ["level"], max_trees=max_trees,
                                               patience=patience, chunk=7)
    finally:
        set_threads(None)
    for name, params in presets.items():
        oof, best = _lgb_cv_reference(X, y, folds, params, ["level"], max_trees, patience)
        for threads, fitted in runs.items():
            assert fitted[name][1] == best, (name, threads)
            np.testing.assert_array_equal(fitted[name][0], oof)
    if patience == 0:
        assert all(fitted[1] == max_trees for fitted in runs[2].values())
    elif max_trees == 400:
        assert any(fitted[1] < max_trees - patience for fitted in runs[2].values())  # early stopping happened


def _candidate(name: str, losses: np.ndarray, auc: float):
    from leadscore.training.crossfit import CandidateResult

    return CandidateResult(name, np.zeros(len(losses)), float(losses.mean()), auc, "none", {}, 0.0, losses)


def test_a_learner_that_lowers_the_log_loss_but_ranks_no_better_loses_to_the_simpler():
    from leadscore.training.crossfit import choice_reason, choose

    rng = np.random.default_rng(0)
    base = rng.exponential(0.6, 3000)
    tree_better = base - 0.01 + rng.normal(0, 0.05, 3000)  # lower log loss, far beyond its noise
    # Better on both: the tree. Lower loss but no better ranking: the simplest that ranks at least as well.
    both = {"logistic": _candidate("logistic", base, 0.650), "lightgbm_small": _candidate("lightgbm_small",
                                                                                          tree_better, 0.700)}
    assert choose(both) == "lightgbm_small"
    ranks_worse = {"logistic": _candidate("logistic", base, 0.660),
                   "logistic_splines": _candidate("logistic_splines", base + 0.002, 0.655),
                   "lightgbm_small": _candidate("lightgbm_small", tree_better, 0.657)}
    assert choose(ranks_worse) == "logistic"
    assert choice_reason(ranks_worse, "logistic") == (
        "logistic: it ranks the training leads at least as well as lightgbm_small (CV ROC AUC 0.660 against 0.657), "
        "which had the lowest CV log loss, and it is simpler")
    assert choice_reason(both, "lightgbm_small") == "lightgbm_small: the lowest CV log loss"
    splines_rank = {**ranks_worse, "logistic": _candidate("logistic", base + 0.004, 0.640),
                    "logistic_splines": _candidate("logistic_splines", base + 0.002, 0.658)}
    assert choose(splines_rank) == "logistic_splines"
    # Within noise on the loss, the simpler wins whatever the ranking says.
    noisy = {"logistic": _candidate("logistic", base, 0.600),
             "lightgbm": _candidate("lightgbm", base + rng.normal(0, 0.5, 3000) - 0.001, 0.700)}
    assert choose(noisy) == "logistic"
