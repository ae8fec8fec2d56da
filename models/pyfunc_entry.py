"""MLflow "models from code" entry for the pyfunc flavour: MLflow runs this file to build the model.

Logging the model this way stores no pickle: the model is this code plus the bundle (LightGBM text, JSON), and
the package's own code travels with it (`code/leadscore`), so it loads where the project is not installed.
MLflow executes this file when loading; importing it only registers the wrapper with MLflow.

Input, either form:
- raw lead records, as in a lead list: the id, the attributes, `events` inline (a list of {"timestamp", "type"})
  and optionally `as_of` (else the `as_of` param, else now); scored exactly as `leadscore score` scores them;
- the readable feature frame (every feature column, no `events`), as before.
"""

from __future__ import annotations

import math

import mlflow  # noqa: TID251 - this file belongs to the MLflow integration
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel  # noqa: TID251


def _events(value) -> list:
    """An `events` cell as a list of dicts (MLflow may hand over a list, a numpy array, None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return [dict(e) for e in value]


class LeadScorePyfunc(PythonModel):
    """Pyfunc wrapper over the same scorer the predictor and the API use (probability, score and band)."""

    def load_context(self, context) -> None:
        from leadscore.models.bundle import ModelBundle
        from leadscore.models.scorer import ModelScorer
        from leadscore.serve.online import OnlineScorer

        # The bundle's manifest hash travels in the model config, so a pyfunc load (Spark UDF, mlflow serve)
        # verifies the files just as the predictor does.
        expected = (getattr(context, "model_config", None) or {}).get("bundle_manifest_sha256")
        self._scorer = ModelScorer(ModelBundle.load(context.artifacts["bundle"], expected_manifest_sha256=expected))
        self._online = OnlineScorer(self._scorer, num_threads=0)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        spec = self._scorer.spec
        frame = pd.DataFrame(model_input).reset_index(drop=True)
        event_columns = [c for c in spec.event_feature_names if c in frame.columns]
        if "events" in frame.columns or not spec.has_events or not event_columns:
            return self._raw(frame, (params or {}).get("as_of") or None)
        for name in spec.feature_names:
            if name not in frame.columns:
                frame[name] = None
        ids = frame[spec.id_column] if spec.id_column in frame.columns else pd.Series(range(len(frame)))
        scored = self._scorer.score_features(ids.astype(str), frame[list(spec.feature_names)], reasons=False)
        return scored[["probability", "score", "band"]]

    def _raw(self, frame: pd.DataFrame, as_of) -> pd.DataFrame:
        from leadscore.serve.online import LeadError

        records = []
        for row in frame.to_dict(orient="records"):
            row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            row["events"] = _events(row.get("events"))
            records.append(row)
        try:
            result = self._online.score(records, as_of=as_of, reasons=False)
        except LeadError as exc:
            raise ValueError(str(exc)) from exc
        out = pd.DataFrame(result.leads)
        return out[["probability", "score", "band"]] if len(out) else pd.DataFrame(
            {"probability": [], "score": [], "band": []})


mlflow.models.set_model(LeadScorePyfunc())
