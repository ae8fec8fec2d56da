"""MLflow "models from code" entry for the pyfunc flavour: MLflow runs this file to build the model.

Logging the model this way stores no pickle: the model is this code plus the bundle (LightGBM text, JSON).
MLflow executes this file when loading; importing it only registers the wrapper with MLflow.
"""

from __future__ import annotations

import mlflow  # noqa: TID251 - this file belongs to the MLflow integration
import pandas as pd
from mlflow.pyfunc import PythonModel  # noqa: TID251


class LeadScorePyfunc(PythonModel):
    """Pyfunc wrapper over the same ModelScorer the predictor uses (plain probability, score and band)."""

    def load_context(self, context) -> None:
        from leadscore.models.bundle import ModelBundle
        from leadscore.models.scorer import ModelScorer

        # The bundle's manifest hash travels in the model config, so a pyfunc load (Spark UDF, mlflow serve)
        # verifies the files just as the predictor does.
        expected = (getattr(context, "model_config", None) or {}).get("bundle_manifest_sha256")
        self._scorer = ModelScorer(ModelBundle.load(context.artifacts["bundle"], expected_manifest_sha256=expected))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        scorer = self._scorer
        spec = scorer.spec
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        for name in spec.feature_names:
            if name not in frame.columns:
                frame[name] = None
        ids = frame[spec.id_column] if spec.id_column in frame.columns else pd.Series(range(len(frame)))
        scored = scorer.score_features(ids.astype(str), frame[list(spec.feature_names)], reasons=False)
        return scored[["probability", "score", "band"]]


mlflow.models.set_model(LeadScorePyfunc())
