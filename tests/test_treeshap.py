"""The pattern-table TreeSHAP kernel equals LightGBM's pred_contrib on every model shape it accepts."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from leadscore.models.learners import TreeMargin
from leadscore.models.treeshap import MAX_TREE_SPLITS, TreeShapTables, Unsupported, build_tables


def _data(n: int = 1500, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 7))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[:, 0] = rng.integers(0, 12, n).astype(float)  # a category code
    X[rng.random(n) < 0.1, 0] = np.nan
    X[:, 1] = np.where(rng.random(n) < 0.3, 0.0, X[:, 1])  # many exact zeros
    y = (np.nan_to_num(X[:, 2]) + (X[:, 0] % 3 == 0) - np.isnan(X[:, 3]) + rng.normal(size=n) > 0.3).astype(int)
    return X, y


def _probe(X: np.ndarray) -> np.ndarray:
    """The training rows plus the edge values the decision rules treat specially."""
    P = X.copy()
    P[:20, 0] = -1.0  # negative category: right
    P[20:40, 0] = 99.0  # a category never seen
    P[40:60, 0] = 2.7  # truncated to 2, as LightGBM casts
    P[60:80, 1] = 1e-40  # |x| <= 1e-35 counts as zero
    P[80:100, 4] = np.inf
    P[100:120, :] = np.nan
    P[120:140, 0] = -0.5  # truncated to category 0, as LightGBM casts
    P[140:160, 0] = 1e12  # far beyond every category: right
    return P


SHAPES = {
    "default": dict(num_leaves=31),
    "small trees (one table per tree)": dict(num_leaves=6),
    "depth-limited": dict(num_leaves=8, max_depth=3),
    "deep (leaf tables)": dict(num_leaves=40, min_data_in_leaf=3),
    "very deep (over 64 splits)": dict(num_leaves=90, min_data_in_leaf=2),
    "zero as missing": dict(num_leaves=15, zero_as_missing=True),
    "no missing handling": dict(num_leaves=15, use_missing=False),
    "stumps": dict(num_leaves=2),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_kernel_equals_pred_contrib(shape):
    X, y = _data()
    params = {"objective": "binary", "verbose": -1, "min_data_per_group": 5, "cat_smooth": 1, "seed": 1,
              **SHAPES[shape]}
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=[0]), num_boost_round=25)
    dump = booster.dump_model()
    kinds = {n["decision_type"] for t in dump["tree_info"] for n in _splits(t["tree_structure"])}
    assert "==" in kinds or shape == "stumps"  # categorical splits are exercised
    tables = TreeShapTables.build(booster)
    P = _probe(X)
    got = tables.contributions(P)
    want = booster.predict(P, pred_contrib=True)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-9
    # Contributions and bias add up to LightGBM's raw margin, which the decision tables give directly.
    raw = booster.predict(P, raw_score=True)
    assert np.abs(got.sum(axis=1) - raw).max() <= 1e-9
    assert np.abs(tables.margin(P) - raw).max() <= 1e-12
    if shape.startswith("small"):
        assert tables.tree_small.all()
    if shape.startswith("very deep"):
        splits = np.diff(tables.tree_node_start)
        assert splits.max() > 64 and not tables.tree_small[splits > MAX_TREE_SPLITS].any()


def _splits(node):
    if "split_index" in node:
        yield node
        yield from _splits(node["left_child"])
        yield from _splits(node["right_child"])


def test_one_leaf_trees_move_only_the_bias():
    X, y = _data(400)
    booster = lgb.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 10_000}, lgb.Dataset(X, y),
                        num_boost_round=3)
    tables = TreeShapTables.build(booster)
    got = tables.contributions(X)
    assert np.abs(got - booster.predict(X, pred_contrib=True)).max() <= 1e-12
    assert np.abs(tables.margin(X) - booster.predict(X, raw_score=True)).max() <= 1e-12
    assert np.all(got[:, :-1] == 0)


def test_threads_and_empty_input_and_wrong_width():
    X, y = _data(600)
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), num_boost_round=10)
    tables = TreeShapTables.build(booster)
    assert np.array_equal(tables.contributions(X, threads=1), tables.contributions(X))
    assert tables.contributions(X[:0]).shape == (0, X.shape[1] + 1)
    with pytest.raises(ValueError, match="expected 7 columns"):
        tables.contributions(X[:, :3])


def test_what_the_kernel_does_not_cover_falls_back_to_lightgbm(monkeypatch):
    X, y = _data(600)
    multi = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1},
                      lgb.Dataset(X, y + (X[:, 2] > 1)), num_boost_round=3)
    with pytest.raises(Unsupported, match="multiclass"):
        TreeShapTables.build(multi)
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), num_boost_round=10)
    want = booster.predict(X, pred_contrib=True)
    monkeypatch.setenv("LEADSCORE_TREESHAP", "lightgbm")
    with pytest.raises(Unsupported):
        build_tables(booster)
    margin = TreeMargin(booster)
    assert margin.shap_tables() is None
    assert np.array_equal(margin.contributions(X), want)
    monkeypatch.delenv("LEADSCORE_TREESHAP")
    kernel = TreeMargin(booster)
    assert kernel.shap_tables() is not None
    assert np.abs(kernel.contributions(X) - want).max() <= 1e-9


def test_tables_are_built_once_per_model_text():
    """A model loaded again from its text (the registry's copy) reuses the tables; another model gets its own."""
    X, y = _data(800, seed=3)
    params = {"objective": "binary", "verbose": -1, "seed": 2, "num_leaves": 7}
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=12)
    first = build_tables(booster)
    again = lgb.Booster(model_str=booster.model_to_string())
    assert build_tables(again) is first
    other = lgb.train({**params, "seed": 3, "bagging_fraction": 0.7, "bagging_freq": 1}, lgb.Dataset(X, y),
                      num_boost_round=12)
    tables = build_tables(other)
    assert tables is not first
    assert np.abs(tables.contributions(X) - other.predict(X, pred_contrib=True)).max() <= 1e-9
    assert np.abs(build_tables(again).contributions(X) - booster.predict(X, pred_contrib=True)).max() <= 1e-9


def test_top_reasons_equal_a_stable_full_sort_ties_included():
    from leadscore.models.scorer import top_reasons

    rng = np.random.default_rng(4)
    values = rng.normal(size=(3000, 12))
    values[::7, :6] = 0.0  # many exact ties at zero
    values[::5, 3] = -values[::5, 4]  # ties in size with opposite signs
    values[1::11] = np.round(values[1::11], 1)
    for k in (1, 3, 5, 12):
        want = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
        assert np.array_equal(top_reasons(values, k), want), k


def test_reason_text_is_built_per_value_as_the_single_lead_path_builds_it():
    import pandas as pd

    from leadscore.models.scorer import _format_value, format_values, reason_text, shown_value

    cells = [3.0, 1234567.0, 0.000123, None, float("nan"), "webinar", 12.5, -0.0, 2 ** 40, 1234.5, pd.NA]
    got = format_values(np.asarray(cells, dtype=object))
    assert list(got) == [_format_value(shown_value(v)) for v in cells]
    amount = np.asarray([0.0812, -0.00049, 0.0])
    points = np.char.mod("%+.1f", amount * 100)
    assert [f"f = v ({p} pts)" for p in points] == [reason_text("f", "v", a) for a in amount]


def test_threads_default_to_the_cpus_this_process_may_use():
    import os

    from leadscore.runtime import available_cpus, set_threads, threads

    allowed = len(os.sched_getaffinity(0))
    assert 1 <= available_cpus() <= allowed
    try:
        assert set_threads(1) == 1 and threads() == 1
    finally:
        assert set_threads(0) == available_cpus()


def test_waiting_policy_keeps_the_users_choice_and_reads_the_machine(monkeypatch):
    import os

    from leadscore.runtime import busy_cpus, passive_waiting

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert passive_waiting() is False and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert passive_waiting() is True
    busy = busy_cpus(0.05)
    assert busy is None or 0.0 <= busy <= (os.cpu_count() or 1) + 1e-9
