"""Factories: config in, unfitted estimator out."""

from __future__ import annotations

from typing import Any

from leadscore.features.config import ModelConfig
from leadscore.features.spec import FeatureSpec, signed_log
from leadscore.runtime import threads


def lightgbm_params(config: ModelConfig, seed: int) -> dict[str, Any]:
    """LightGBM parameters for a binary conversion model (deterministic, 2 threads, quiet)."""
    return {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "colsample_bytree": config.feature_fraction,
        "subsample": config.bagging_fraction,
        "subsample_freq": 1 if config.bagging_fraction < 1 else 0,
        "reg_lambda": config.reg_lambda,
        "random_state": seed,
        "n_jobs": threads(),
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


def make_lightgbm(config: ModelConfig, seed: int, n_estimators: int | None = None):
    """Unfitted LGBMClassifier."""
    import lightgbm as lgb

    return lgb.LGBMClassifier(n_estimators=n_estimators or config.max_trees, **lightgbm_params(config, seed))


def make_logistic(spec: FeatureSpec, config: ModelConfig, seed: int):
    """Unfitted logistic-regression baseline over the readable feature frame.

    Numbers: median-imputed with a missing indicator, signed log1p (counts and money are heavy-tailed),
    standardised. Categories: one-hot over the spec's vocabulary, missing as its own level.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric = [c for c in spec.feature_names if c not in spec.categorical_vocab]
    categorical = list(spec.categorical_columns)
    transformers = []
    if numeric:
        transformers.append((
            "num",
            make_pipeline(
                FunctionTransformer(signed_log, feature_names_out="one-to-one"),
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                StandardScaler(),
            ),
            numeric,
        ))
    if categorical:
        transformers.append((
            "cat",
            make_pipeline(
                SimpleImputer(strategy="constant", fill_value="__missing__", missing_values=None),
                OneHotEncoder(
                    categories=[[*spec.categorical_vocab[c], "__missing__"] for c in categorical],
                    handle_unknown="ignore",
                ),
            ),
            categorical,
        ))
    return Pipeline([
        ("prep", ColumnTransformer(transformers)),
        ("clf", LogisticRegression(C=config.logistic_c, max_iter=2000, random_state=seed)),
    ])
