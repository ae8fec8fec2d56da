"""Budgeted hyperparameter search for the LightGBM model, scored by time-series cross-validation."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.config import ModelConfig, TrainConfig
from leadscore.features.spec import LeadFrame
from leadscore.models.estimator import make_lightgbm
from leadscore.training.split import time_order

log = logging.getLogger(__name__)


def time_series_folds(as_of: pd.Series, mask: np.ndarray, n_folds: int = 3, seed: int = 0
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds over the rows in `mask`: train on the earliest part, validate on the next.

    Without dates (no as_of), stratification is not known here, so the rows are shuffled once by seed.
    """
    order = time_order(mask, as_of, seed)
    blocks = np.array_split(order, n_folds + 1)
    return [(np.concatenate(blocks[: k + 1]), blocks[k + 1]) for k in range(n_folds)]


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def tune_model_config(frame: LeadFrame, train: np.ndarray, config: TrainConfig, n_trials: int
                      ) -> tuple[ModelConfig, pd.DataFrame]:
    """Search LightGBM settings with Optuna (TPE, seeded) on time-series CV of the training slice.

    Each trial fits every fold with early stopping on that fold's validation block and is scored by mean log
    loss. Returns the model config with the best settings and a table of all trials.
    """
    import lightgbm as lgb
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    X, y = frame.X, frame.y
    cats = list(frame.spec.categorical_columns) or "auto"
    folds = [(tr, va) for tr, va in time_series_folds(frame.as_of, train, seed=config.seed)
             if np.unique(y[tr]).size == 2 and np.unique(y[va]).size == 2]
    if not folds:
        raise ValueError("tuning needs both classes in every fold of the training slice")

    def objective(trial: Any) -> float:
        trial_cfg = dataclasses.replace(
            config.model,
            learning_rate=trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            num_leaves=trial.suggest_int("num_leaves", 4, 63, log=True),
            min_child_samples=trial.suggest_int("min_child_samples", 10, 300, log=True),
            feature_fraction=trial.suggest_float("feature_fraction", 0.4, 1.0),
            bagging_fraction=trial.suggest_float("bagging_fraction", 0.5, 1.0),
            reg_lambda=trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        )
        losses, trees = [], []
        for tr, va in folds:
            model = make_lightgbm(trial_cfg, config.seed)
            model.fit(X.iloc[tr], y[tr], eval_X=(X.iloc[va],), eval_y=(y[va],), eval_metric="binary_logloss",
                      categorical_feature=cats,
                      callbacks=[lgb.early_stopping(config.model.early_stopping_rounds or 100, verbose=False)])
            losses.append(_log_loss(y[va], model.predict_proba(X.iloc[va])[:, 1]))
            trees.append(model.best_iteration_ or trial_cfg.max_trees)
        trial.set_user_attr("trees", float(np.mean(trees)))
        return float(np.mean(losses))

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    study.enqueue_trial({"learning_rate": config.model.learning_rate, "num_leaves": config.model.num_leaves,
                         "min_child_samples": config.model.min_child_samples,
                         "feature_fraction": config.model.feature_fraction,
                         "bagging_fraction": config.model.bagging_fraction, "reg_lambda": config.model.reg_lambda})
    study.optimize(objective, n_trials=n_trials)
    best = dataclasses.replace(config.model, **study.best_params)
    trials = study.trials_dataframe(attrs=("number", "value", "params", "user_attrs"))
    log.info("tuning: best CV log loss %.4f with %s", study.best_value, study.best_params)
    return best, trials
