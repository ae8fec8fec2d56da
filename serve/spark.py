"""Score a Spark lead table (and event table) with a registered model: the features of `features.spark`, the
probabilities of the logged MLflow model through `mlflow.pyfunc.spark_udf`, equal to `leadscore score`.

    from leadscore.serve.spark import score_spark
    scored = score_spark(leads_df, events_df, "models:/lead-conversion@champion", as_of="2025-10-01")
    scored.scores.write.parquet("s3://bucket/scores/")   # lead id, as_of, probability, score, band
    scored.rejects.write.parquet("s3://bucket/rejects/") # the input columns and a reject_reason

Needs the `spark` extra and a UTC session (`spark.sql.session.timeZone=UTC`); the model is loaded once per
executor from the tracking store (MLflow ships it with the job).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.errors import ConfigError
from leadscore.features.spark import SparkFeatures, col, spark_features
from leadscore.features.spec import AS_OF
from leadscore.models.drift import DriftAccumulator
from leadscore.models.registry import default_tracking_uri, load_bundle, spark_udf
from leadscore.models.scorer import ModelScorer, reason_mode

SCORE_COLUMNS = ("probability", "score", "band")


@dataclass(frozen=True)
class SparkScores:
    """Scored leads and rejects as lazy Spark DataFrames, and the features they were scored from."""

    scores: object  # pyspark.sql.DataFrame: id, as_of, probability, score, band, kept columns
    rejects: object  # pyspark.sql.DataFrame: the input columns and reject_reason
    features: SparkFeatures
    reference: dict | None  # the model's training reference, for `drift()`
    _with_features: object = None  # the scores with each feature beside them (`__feature_<name>`)

    def drift(self) -> dict | None:
        """PSI per feature and of the score against training, expected conversions and ROC AUC (a small job:
        each partition bins its own rows, the driver adds the counts)."""
        if self.reference is None:
            return None
        spec = self.features.spec
        names = [n for n in self.reference["features"] if n in spec.feature_names]
        rows = self._with_features.select(*[col(f"__feature_{n}").alias(n) for n in names], "probability")
        reference = self.reference
        counts = rows.mapInPandas(_drift_counts(reference, names), "counts string")
        total = DriftAccumulator(reference)
        import json

        for row in counts.collect():
            part = json.loads(row[0])
            for name, values in part["counts"].items():
                total.counts[name] += np.asarray(values, dtype="float64")
            total.probabilities.append(np.asarray(part["probabilities"], dtype="float64"))
        return total.result()


def _drift_counts(reference: dict, names: Sequence[str]):
    def run(batches):
        import json

        acc = DriftAccumulator(reference)
        for batch in batches:
            acc.add(batch[list(names)], batch["probability"].to_numpy(dtype="float64"))
        p = np.concatenate(acc.probabilities) if acc.probabilities else np.zeros(0)
        yield pd.DataFrame({"counts": [json.dumps({"counts": {k: v.tolist() for k, v in acc.counts.items()},
                                                   "probabilities": p.tolist()})]})

    return run


def _add_reasons(scored, bundle, n_reasons: int, kept: Sequence[str], mode: str = "top"):
    """The scores with base_rate and the top reasons, computed per partition by the scorer batch scoring uses
    (exact TreeSHAP contributions of the same model, in probability points)."""
    from pyspark.sql import types as T


    spec = bundle.spec
    empty = ModelScorer(bundle, n_reasons=n_reasons).score_features(pd.Series([], dtype="object"),
                                                                     pd.DataFrame(columns=list(spec.feature_names)),
                                                                     reasons=mode)
    extra = [c for c in empty.columns if c not in (spec.id_column, *SCORE_COLUMNS)]
    fields = [f for f in scored.schema.fields if not f.name.startswith("__feature_")]
    fields += [T.StructField(c, T.DoubleType() if empty[c].dtype == float else T.StringType()) for c in extra]
    schema = T.StructType(fields)
    names = [f.name for f in fields]

    def run(batches):
        scorer = ModelScorer(bundle, n_reasons=n_reasons)
        for batch in batches:
            features = pd.DataFrame({n: batch[f"__feature_{n}"] for n in spec.feature_names})
            for name in spec.categorical_vocab:
                features[name] = features[name].astype("object")
            out = scorer.score_features(batch[spec.id_column], features, reasons=mode)
            for c in extra:
                batch[c] = out[c].to_numpy()
            yield batch[names]

    return scored.mapInPandas(run, schema)


def worker_python(spark_conf: dict | None = None) -> dict:
    """Spark settings for a session that scores leads: UTC, and Python workers running this interpreter (so they
    import the same installed `leadscore` and MLflow)."""
    conf = {"spark.sql.session.timeZone": "UTC", "spark.pyspark.python": sys.executable,
            "spark.pyspark.driver.python": sys.executable}
    conf.update(spark_conf or {})
    return conf


def local_session(master: str = "local[*]", conf: dict | None = None):
    """A Spark session for the CLI (`--engine spark`): UTC, this interpreter on the workers, quiet logs."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError("--engine spark needs PySpark: pip install 'leadscore[spark]' (and Java 17+)") from exc
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # PySpark warns about pandas 3 on every worker; the paths used here are tested on it.
    os.environ.setdefault("PYTHONWARNINGS", "ignore:PySpark does not yet fully support pandas:FutureWarning")
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    builder = SparkSession.builder.master(master).appName("leadscore")
    for key, value in worker_python({"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8",
                                     "spark.sql.execution.arrow.pyspark.enabled": "true",
                                     **(conf or {})}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def score_spark(
    leads,
    events,
    model_uri: str,
    *,
    as_of: pd.Timestamp | str | None = None,
    tracking_uri: str | None = None,
    keep_columns: Sequence[str] = (),
    dedupe_events: bool = False,
    source: str = "leads",
    events_source: str = "events",
    reasons: bool | str = False,
    n_reasons: int = 3,
) -> SparkScores:
    """Score a Spark lead table (and its events) with the model at `model_uri`; see the module docstring.

    The probabilities come from the registered MLflow model itself (`mlflow.pyfunc.spark_udf`, this
    interpreter's environment), fed the features `features.spark` builds; a local bundle folder is not an MLflow
    model, so `model_uri` is a `models:/` or `runs:/` URI.
    """
    from pyspark.sql import functions as F

    if "://" not in str(model_uri) and ":/" not in str(model_uri):
        raise ConfigError(f"{model_uri}: the Spark engine scores a logged MLflow model (models:/name@alias or "
                          f"runs:/<id>/model), not a local folder")
    uri = tracking_uri or default_tracking_uri()
    bundle = load_bundle(model_uri, tracking_uri=uri)  # verifies the bundle's hash; gives the feature spec
    spec = bundle.spec
    features = spark_features(leads, events, spec, as_of=as_of, keep_columns=keep_columns,
                              dedupe_events=dedupe_events, source=source, events_source=events_source)
    spark = leads.sparkSession
    udf = spark_udf(spark, str(model_uri), tracking_uri=uri)
    inputs = [spec.id_column, *spec.feature_names]
    frame = features.features
    scored = frame.withColumn("__scored", udf(F.struct(*[col(c) for c in inputs])))
    kept = [c for c in frame.columns if c not in (*inputs, "__rid", AS_OF)]
    scored = scored.select(col(spec.id_column), col(AS_OF),
                           *[F.col("__scored").getField(c).alias(c) for c in SCORE_COLUMNS],
                           *[col(c) for c in kept], *[col(n).alias(f"__feature_{n}") for n in spec.feature_names])
    public = scored.select(col(spec.id_column), col(AS_OF), *SCORE_COLUMNS, *[col(c) for c in kept])
    mode = reason_mode(reasons)
    if ModelScorer(bundle, n_reasons=n_reasons).reason_columns(mode):
        public = _add_reasons(scored, bundle, n_reasons, kept, mode)
    return SparkScores(public, features.rejects, features, (bundle.meta or {}).get("reference"), scored)


def score_spark_files(
    model_uri: str,
    leads_path: str,
    out_path: str | os.PathLike,
    *,
    events_path: str | None = None,
    as_of: pd.Timestamp | str | None = None,
    reasons: bool | str = True,
    keep_columns: Sequence[str] = (),
    strict: bool = False,
    dedupe_events: bool = False,
    tracking_uri: str | None = None,
    master: str = "local[*]",
    spark=None,
):
    """`leadscore score --engine spark`: read the files with Spark, score there, and write the output and rejects
    as batch scoring does (one file each, staged and renamed together, formula cells neutralised), with the same
    counters, warnings and drift summary. For tables larger than this machine, call `score_spark` in a Spark job
    and write its DataFrames with Spark."""
    from leadscore.features.io import check_writable, output_format
    from leadscore.features.spark import read_spark_table, spark_error
    from leadscore.serve.batch import rejects_path, write_results

    output_format(out_path)
    check_writable(out_path, rejects_path(Path(out_path)))
    from pyspark.sql import SparkSession

    owned = spark is None and SparkSession.getActiveSession() is None
    session = spark or local_session(master)
    try:
        leads = read_spark_table(session, str(leads_path), what="leads")
        events = None if events_path is None else read_spark_table(session, str(events_path), what="events")
        if events is not None:
            from leadscore.features.spark import CORRUPT

            events = events.where(col(CORRUPT).isNull()) if CORRUPT in events.columns else events
        result = score_spark(leads, events, model_uri, as_of=as_of, tracking_uri=tracking_uri,
                             keep_columns=keep_columns, dedupe_events=dedupe_events, source=str(leads_path),
                             events_source=str(events_path), reasons=reasons)
        scores = _utc(result.scores.toPandas())
        rejects = result.rejects.toPandas()
        stats = result.features.stats()
        total = int(leads.count())
        events_rows = 0 if events is None else int(events.count())
        drift = result.drift() if len(scores) else None
        keep_missing = [c for c in keep_columns if c not in leads.columns]
    except Exception as exc:
        own = spark_error(exc)
        if own is not None:
            raise own from exc
        raise
    finally:
        if owned:  # a session the caller (or a notebook) already had is theirs to stop
            session.stop()
    return write_results(scores, rejects, out_path, spec=result.features.spec, total=total, stats=stats,
                         events_given=events is not None, events_rows=events_rows, keep_missing=keep_missing,
                         strict=strict, source=str(leads_path), drift=drift)


def _utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Spark hands timestamps back as naive session-time (UTC) values; batch scoring writes them as UTC."""
    if AS_OF in frame.columns and not isinstance(frame[AS_OF].dtype, pd.DatetimeTZDtype):
        frame[AS_OF] = pd.to_datetime(frame[AS_OF]).dt.tz_localize("UTC")
    return frame
