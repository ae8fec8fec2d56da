"""The point-in-time features on Spark: the same definitions as the DuckDB engine, run where the leads live.

Nothing here re-implements a feature. Lead typing (numbers, categories, as_of, rejects) runs the very functions
batch scoring runs (`prepare_leads`, `type_events`), partition by partition through `mapInPandas`; the event
aggregates are the SQL of `event_aggregate_sql`, transpiled from DuckDB's dialect to Spark's with SQLGlot. So a
lead gets the same features on a laptop and on a cluster (tested equal to 1e-9 on `local[2]`).

Needs the `spark` extra (pyspark, sqlglot) and a session whose time zone is UTC (`spark.sql.session.timeZone`),
so that timestamps cast to text and truncated to days mean the same instants as in the DuckDB engine.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.build import (
    REJECT_REASON,
    empty_event_features,
    event_aggregate_sql,
    event_stats,
    prepare_leads,
    type_events,
)
from leadscore.features.errors import ConfigError, DataError
from leadscore.features.io import require_columns
from leadscore.features.spec import AS_OF, FeatureSpec

CORRUPT = "_corrupt_record"  # Spark's column for CSV records that do not fit the header (PERMISSIVE mode)
_RID, _REASON, _STATS, _AS_OF = "__rid", "__reject_reason", "__stats", "__as_of"


@dataclass(frozen=True)
class SparkFeatures:
    """Features of the valid leads (id, as_of, every feature, kept columns), rejects with a reason, counters.

    `features` and `rejects` are lazy Spark DataFrames over one cached typing pass; `stats()` runs a small job.
    """

    features: object  # pyspark.sql.DataFrame
    rejects: object  # pyspark.sql.DataFrame
    spec: FeatureSpec
    _typed: object
    _events: object | None
    _stats_sql: str | None
    _views: tuple[str, ...]

    def stats(self) -> dict:
        """Counters as batch scoring reports them (unseen categories, implausible values, events used, ...)."""
        totals: dict = {}
        for row in self._typed.where(self._typed[_STATS].isNotNull()).select(_STATS).collect():
            for key, value in json.loads(row[0]).items():
                totals[key] = totals.get(key, 0) + value
        totals.pop("rejected_rows", None)
        if self._stats_sql is not None:
            spark = self._typed.sparkSession
            totals.update(event_stats(spark.sql(self._stats_sql).collect()[0]))
        return totals


def col(name: str):
    """A column by its exact name (names with dots, spaces or backticks included)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def require_utc(spark) -> None:
    zone = spark.conf.get("spark.sql.session.timeZone")
    if zone not in ("UTC", "Etc/UTC", "GMT", "Z", "+00:00"):
        raise ConfigError(f"Spark session time zone is {zone!r}; set spark.sql.session.timeZone to UTC for lead "
                          f"scoring (times are compared and cut into days in UTC, as on DuckDB)")


def _text_columns(frame):
    """Every column as text, as a CSV reader gives it, so typing is the batch path's to the character."""
    return frame.select([col(c).cast("string").alias(c) for c in frame.columns])


def _typed_schema(spec: FeatureSpec, raw_columns: Sequence[str]):
    from pyspark.sql import types as T

    fields = [T.StructField(_RID, T.LongType()), T.StructField(_REASON, T.StringType()),
              T.StructField(_STATS, T.StringType()), T.StructField(_AS_OF, T.TimestampType())]
    for i, name in enumerate(spec.lead_feature_names):
        kind = T.StringType() if name in spec.categorical_vocab else T.DoubleType()
        fields.append(T.StructField(f"__f{i}", kind))
    fields += [T.StructField(c, T.StringType()) for c in raw_columns]
    return T.StructType(fields)


def _lead_typer(spec: FeatureSpec, as_of, source: str, raw_columns: Sequence[str]):
    """The per-partition function: `prepare_leads` on each Arrow batch, features and rejects in one frame."""
    names = list(spec.lead_feature_names)
    duplicate = f"column {spec.id_column!r}: duplicate lead id"

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            batch = batch.reset_index(drop=True)
            rid = batch.pop(_RID).to_numpy(dtype="int64")
            early = pd.Series(pd.NA, index=batch.index, dtype="object")
            dup = batch.pop("__dup").fillna(False).astype(bool).to_numpy()
            if CORRUPT in batch.columns:
                corrupt = batch.pop(CORRUPT)
                # A cut or shifted record is rejected whole (none of its cells can be trusted), before duplicates.
                early[corrupt.notna().to_numpy()] = corrupt[corrupt.notna()].to_numpy()
            early[dup & early.isna().to_numpy()] = duplicate
            rest = np.flatnonzero(early.isna().to_numpy())
            raw = batch[list(raw_columns)]
            ok, stamps, rejects, stats = prepare_leads(raw.iloc[rest].reset_index(drop=True), spec, as_of,
                                                       source=source)
            reason = early.copy()
            rejected = rest[rejects["input_row"].to_numpy(dtype="int64") - 1] if len(rejects) else rest[:0]
            reason.iloc[rejected] = rejects[REJECT_REASON].to_numpy() if len(rejects) else []
            accepted = np.setdiff1d(rest, rejected)  # prepare_leads keeps the order of the rows it accepts
            out = pd.DataFrame({_RID: rid, _REASON: reason.astype("object").where(reason.notna(), None)})
            out[_STATS] = None
            if len(out):
                out.loc[0, _STATS] = json.dumps({k: int(v) for k, v in stats.items()})
            out[_AS_OF] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
            out.loc[accepted, _AS_OF] = stamps.to_numpy()
            for i, name in enumerate(names):
                if name in spec.categorical_vocab:
                    values = pd.Series(None, index=out.index, dtype="object")
                    values.iloc[accepted] = ok[name].astype("object").where(ok[name].notna(), None).to_numpy()
                else:
                    values = pd.Series(np.nan, index=out.index)
                    values.iloc[accepted] = pd.to_numeric(ok[name], errors="coerce").to_numpy(dtype="float64")
                out[f"__f{i}"] = values
            for c in raw_columns:
                out[c] = raw[c].astype("object").where(raw[c].notna(), None)
            yield out

    return run


def _event_typer(spec: FeatureSpec, source: str):
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            typed = type_events(batch, spec, source=source)
            yield pd.DataFrame({"lead_id": typed["lead_id"].astype("object"), "ts": typed["ts"],
                                "type": typed["type"].astype("object")})

    return run


def spark_features(
    leads,
    events,
    spec: FeatureSpec,
    *,
    as_of: pd.Timestamp | str | None = None,
    keep_columns: Sequence[str] = (),
    dedupe_events: bool = False,
    source: str = "leads",
    events_source: str = "events",
) -> SparkFeatures:
    """Point-in-time features of a Spark lead table (and event table), as `Predictor.features` builds them.

    `as_of`: one time for every lead, `"created"` for the model's rule, or None for the leads' `as_of` column
    (else the time of this call, the same for every partition). Duplicate lead ids keep their first row (in the
    table's order) and reject the others, like batch scoring; rejects carry the input columns and a reason.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spark = leads.sparkSession
    require_utc(spark)
    require_columns(pd.DataFrame(columns=leads.columns), [spec.id_column], source=source, what="id")
    if as_of is None and AS_OF not in leads.columns:
        as_of = pd.Timestamp.now(tz="UTC")  # one "now" for the whole table, not one per partition
    has_corrupt = CORRUPT in leads.columns
    raw_columns = [c for c in leads.columns if c != CORRUPT]
    text = _text_columns(leads).withColumn(_RID, F.monotonically_increasing_id())
    key = F.trim(col(spec.id_column))
    order = Window.partitionBy(key).orderBy(F.col(_RID))
    flagged = text.withColumn("__dup", (F.row_number().over(order) > 1) & key.isNotNull() & (key != ""))
    ordered = [_RID, "__dup", *([CORRUPT] if has_corrupt else []), *raw_columns]
    typed = flagged.select([col(c) for c in ordered]).mapInPandas(
        _lead_typer(spec, as_of, source, raw_columns), _typed_schema(spec, raw_columns)).persist()

    ok = typed.where(F.col(_REASON).isNull())
    rejects = typed.where(F.col(_REASON).isNotNull()).select(
        *[col(c) for c in raw_columns], F.col(_REASON).alias(REJECT_REASON))
    lead_part = ok.select(
        F.col(_RID), F.trim(col(spec.id_column)).alias("__id"), F.col(_AS_OF).alias(AS_OF),
        *[F.col(f"__f{i}").alias(name) for i, name in enumerate(spec.lead_feature_names)],
        *[col(c).alias(f"__keep_{c}") for c in keep_columns if c in raw_columns and c not in
          (spec.id_column, AS_OF)])

    typed_events, stats_sql, views = None, None, ()
    if spec.has_events and events is not None:
        require_columns(pd.DataFrame(columns=events.columns), [spec.event_lead_id, spec.event_time,
                                                               spec.event_type], source=events_source,
                        what="event")
        schema = T.StructType([T.StructField("lead_id", T.StringType()), T.StructField("ts", T.TimestampType()),
                               T.StructField("type", T.StringType())])
        raw_events = _text_columns(events.select(col(spec.event_lead_id), col(spec.event_time),
                                                 col(spec.event_type)))
        typed_events = raw_events.mapInPandas(_event_typer(spec, events_source), schema)
        if dedupe_events:
            typed_events = typed_events.dropDuplicates(["lead_id", "ts", "type"])
        tag = uuid.uuid4().hex[:12]
        views = (f"leadscore_leads_{tag}", f"leadscore_events_{tag}")
        ok.select(F.col(_RID).alias("rid"), F.trim(col(spec.id_column)).alias("lead_id"),
                  F.col(_AS_OF).alias("as_of")).createOrReplaceTempView(views[0])
        typed_events.createOrReplaceTempView(views[1])
        query, stats_query = (_to_spark(q) for q in event_aggregate_sql(spec, leads=views[0], events=views[1]))
        stats_sql = stats_query
        agg = spark.sql(query).withColumnRenamed("rid", _RID)
        joined = lead_part.join(agg, on=_RID, how="left")
        fill = empty_event_features(spec, 1).iloc[0]
        event_cols = [F.coalesce(col(n), F.lit(float(fill[n]))).alias(n) if not np.isnan(fill[n])
                      else col(n).cast("double").alias(n) for n in spec.event_feature_names]
    elif spec.has_events:
        joined = lead_part
        fill = empty_event_features(spec, 1).iloc[0]
        event_cols = [F.lit(None if np.isnan(fill[n]) else float(fill[n])).cast("double").alias(n)
                      for n in spec.event_feature_names]
    else:
        joined, event_cols = lead_part, []
    features = joined.select(
        F.col(_RID), F.col("__id").alias(spec.id_column), col(AS_OF),
        *[col(n) for n in spec.lead_feature_names], *event_cols,
        *[col(f"__keep_{c}").alias(c) for c in keep_columns if c in raw_columns and c not in
          (spec.id_column, AS_OF)])
    return SparkFeatures(features, rejects, spec, typed, typed_events, stats_sql, views)


def _to_spark(sql: str) -> str:
    try:
        import sqlglot
    except ImportError as exc:  # pragma: no cover - the spark extra brings it
        raise ConfigError("the Spark engine needs sqlglot: pip install 'leadscore[spark]'") from exc
    # Spark has no compensated sum: its plain sum (the engines then agree to ~1e-15, not bit for bit).
    tree = sqlglot.parse_one(sql, read="duckdb")
    tree = tree.transform(lambda node: sqlglot.exp.Sum(this=node.expressions[0])
                          if isinstance(node, sqlglot.exp.Anonymous) and str(node.this).lower() == "fsum" else node)
    return tree.sql(dialect="spark")


def spark_error(exc: BaseException) -> DataError | None:
    """The project's own one-line error inside a failed Spark job (a DataError raised on an executor)."""
    import re

    match = re.search(r"(?:DataError|ConfigError): ([^\n]+)", str(exc))
    return DataError(match.group(1).strip()) if match else None


def read_spark_table(spark, path: str, *, what: str = "table"):
    """A lead or event table for the Spark engine: Parquet (file or folder) as typed, CSV as text like
    `read_table` gives it, with each record that does not have the header's fields marked in `_corrupt_record`.

    CSV follows RFC 4180 (double quotes, `""` inside quotes, quoted line breaks) with the delimiter sniffed from the
    first lines. The schema carries one spare column, so a record with more fields than the header fills it and is
    rejected whole. Spark's CSV reader pads a record with fewer fields with empty cells and cannot tell it from
    one with empty trailing cells, so such a record is scored with those cells missing (the DuckDB engine rejects
    it); Parquet has no such ambiguity.
    """
    import csv
    import io
    from pathlib import Path

    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from leadscore.features.io import sniff_delimiter, table_format

    text = str(path)
    local = "://" not in text
    if local and not Path(text).exists():
        raise DataError(f"{text}: {what} file not found")
    fmt = "parquet" if text.rstrip("/").endswith(".parquet") else table_format(text)
    if fmt == "parquet":
        return spark.read.parquet(text)
    if fmt != "csv":
        raise DataError(f"{text}: the Spark engine reads CSV or Parquet {what} files (convert the {fmt} file)")
    head = [r[0] for r in spark.read.text(text).limit(50).collect()]
    if not head:
        raise DataError(f"{text}: {what} file is empty")
    sample = "\n".join(head).lstrip("\ufeff")
    delimiter = sniff_delimiter(sample)
    header = [c.strip() for c in next(csv.reader(io.StringIO(sample), delimiter=delimiter))]
    spare = "__spare_field"
    schema = T.StructType([T.StructField(c, T.StringType()) for c in [*header, spare]])
    frame = (spark.read.schema(schema).option("header", True).option("sep", delimiter).option("quote", '"')
             .option("escape", '"').option("multiLine", True).option("mode", "PERMISSIVE")
             .option("encoding", "UTF-8").csv(text))
    frame = frame.withColumn(CORRUPT, F.when(col(spare).isNotNull(),
                                             F.lit(f"row has more fields than the header's {len(header)}")))
    return frame.select(*[F.when(col(c) == "", F.lit(None)).otherwise(col(c)).alias(c) for c in header],
                        col(CORRUPT))
