"""Optional hyperparameter search: time-ordered folds, a seeded study, and a usable model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from leadscore.features.config import TrainConfig
from leadscore.training.train import train_model
from leadscore.training.tune import time_series_folds


def test_folds_are_expanding_and_never_validate_on_the_past():
    as_of = pd.Series(pd.date_range("2025-01-01", periods=100, freq="D", tz="UTC")).sample(frac=1, random_state=0)
    as_of = as_of.reset_index(drop=True)
    mask = np.ones(100, dtype=bool)
    mask[:10] = False
    folds = time_series_folds(as_of, mask, n_folds=3)
    assert len(folds) == 3
    for k, (train, valid) in enumerate(folds):
        assert as_of[train].max() < as_of[valid].min()
        assert not set(train) & set(range(10)) and not set(valid) & set(range(10))
        if k:
            assert len(train) > len(folds[k - 1][0])


@pytest.mark.slow
def test_tuning_runs_a_seeded_search_and_keeps_a_good_model(small_world, trained):
    cfg = dataclasses.replace(TrainConfig(seed=3), tune_trials=3)
    a = train_model(small_world.leads, small_world.outcomes, small_world.events, cfg)
    assert a.params["tuning_trials"] == 3 and len(a.tuning) == 3
    assert set(a.params["tuned"]) >= {"learning_rate", "num_leaves"}
    assert a.tuning["value"].notna().all()
    # The first trial is the default settings, so the search can only pick something it scored better in CV.
    assert a.metrics["model"]["roc_auc"] >= trained.metrics["model"]["roc_auc"] - 0.03
    b = train_model(small_world.leads, small_world.outcomes, small_world.events, cfg)
    assert a.params["tuned"] == b.params["tuned"]  # same seed, same search
