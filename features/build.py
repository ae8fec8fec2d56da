"""Point-in-time features: typed lead columns plus event aggregates that only see events at or before as_of.

The event side runs in DuckDB (measured faster and leaner than pandas on 10M events; see ARCHITECTURE.md).
All functions are pure: frames in, new frames out; inputs are never mutated.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.config import DataConfig, FeatureConfig
from leadscore.features.errors import DataError, describe_rows
from leadscore.features.io import (
    apply_na_values,
    looks_formatted,
    malformed_rows,
    parse_numbers,
    parse_timestamps,
    process_alive,
    require_columns,
    strip_text,
)
from leadscore.features.spec import AS_OF, MAX_EXACT, OTHER, FeatureSpec, LeadFrame, event_column_name
from leadscore.runtime import threads

log = logging.getLogger(__name__)

REJECT_REASON = "reject_reason"
AGGREGATE_MEMORY = "1GB"  # DuckDB's limit for the event aggregates of a training run (it spills beyond)
_NUMERIC_SHARE = 0.95  # a text column is numeric when this share of its non-empty cells parse as numbers
_ID_LIKE_SHARE = 0.5  # a text column with more distinct values than this share of rows is identifier-like
_ID_NAME = re.compile(r"(^|[^a-z])(id|ids|number|num|no|nr|key|code|uuid|guid|index)([^a-z]|$)|#|_id$|id$",
                      re.IGNORECASE)


@dataclass(frozen=True)
class TypedLeads:
    """Lead rows that passed validation, and the rows that did not (with a reason each)."""

    leads: pd.DataFrame
    rejects: pd.DataFrame
    stats: dict[str, int]
    input_rows: np.ndarray | None = None  # 1-based input row of each accepted lead


def _is_datetime_text(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(200)
    if sample.empty or not sample.str.contains(r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}", regex=True).all():
        return False
    return bool(pd.to_datetime(sample, errors="coerce", utc=True, format="mixed").notna().all())


# Words a lead table's creation-time column is named with ("lead_created_at", "CreatedDate", "Create Date",
# "Date Created", "signup_date"): one of _CREATED_WORDS, the rest from _CREATED_OTHER. A name with any other
# word ("opportunity_created_at", "account_created", "last_modified") is some other record's time.
_CREATED_WORDS = frozenset({"created", "creation", "create", "createdate", "createddate", "createdat", "signup",
                            "signed", "registered", "registration"})
_CREATED_OTHER = frozenset({"lead", "leads", "contact", "prospect", "record", "mql", "inquiry", "sign", "up",
                            "date", "time", "at", "on", "datetime", "timestamp", "ts", "utc", "dt", "of"})


def _name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def created_column_candidates(leads: pd.DataFrame, data: DataConfig) -> list[str]:
    """Lead columns whose name says "when the lead was created" and whose cells read as dates."""
    found = []
    for col in leads.columns:
        words = set(_name_words(col))
        if col in (data.lead_id, data.label, data.converted_at) or col in data.excluded:
            continue
        if not (words & _CREATED_WORDS) or not words <= (_CREATED_WORDS | _CREATED_OTHER):
            continue
        values = leads[col]
        if pd.api.types.is_datetime64_any_dtype(values.dtype) or _is_datetime_text(values):
            found.append(str(col))
    return found


def resolve_created_column(leads: pd.DataFrame, data: DataConfig, *, source: str) -> tuple[DataConfig, str | None]:
    """The data config with its creation-time column settled against the lead table, and the column found by name.

    A column named on purpose (`--date`, `data.created_at`) must exist. With the default name absent, a single
    column named like a creation time whose cells are dates takes its place (the time split and as_of need it);
    with none or several, the table is treated as having no creation time.
    """
    default = DataConfig.created_at
    if data.created_at in leads.columns:
        return data, None
    if data.created_at != default:
        require_columns(leads, [data.created_at], source=source, what="creation time (--date / data.created_at)")
    found = created_column_candidates(leads, data)
    if len(found) != 1:
        return data, None
    return dataclasses.replace(data, created_at=found[0]), found[0]


def _two_valued_with_token(values: pd.Series, numbers: pd.Series, bad: pd.Series, min_count: int) -> bool:
    """A yes/no (or 0/1) column whose unreadable cells are mostly one frequent token such as 'unknown'."""
    if not bad.any() or numbers.dropna().nunique() > 2:
        return False
    tokens = values[bad].astype("string").str.strip().str.lower().value_counts()
    return bool(tokens.iloc[0] >= min_count)


def infer_columns(leads: pd.DataFrame, data: DataConfig, *, source: str, min_count: int = 10
                  ) -> tuple[list[str], list[str], dict[str, str]]:
    """Split lead columns into numeric and categorical features; report the columns left out and why."""
    excluded = data.excluded
    skip = {data.lead_id, data.created_at, data.converted_at, AS_OF, *excluded}
    if data.label:
        skip.add(data.label)
    dropped = {c: reason for c, reason in excluded.items() if c in leads.columns}
    numeric: list[str] = []
    categorical: list[str] = []
    if data.numeric is not None or data.categorical is not None:
        numeric = list(data.numeric or ())
        categorical = list(data.categorical or ())
        require_columns(leads, numeric + categorical, source=source, what="feature")
        return numeric, categorical, dropped
    n = len(leads)
    for col in leads.columns:
        if col in skip:
            continue
        values = leads[col]
        present = values.notna().sum()
        if present == 0:
            dropped[col] = "always empty"
            continue
        numbers, bad = parse_numbers(values, source=source, column=col, decimal=data.decimal)
        if bad.sum() > (1 - _NUMERIC_SHARE) * present and data.decimal is None:
            example = looks_formatted(values)
            if example is not None:
                raise DataError(
                    f"{source}: column {col!r}: numbers are written with currency or thousands separators "
                    f"(e.g. {example!r}); set data.decimal to ',' or '.' (--decimal) to parse them, or exclude "
                    f"the column"
                )
        if bad.sum() <= (1 - _NUMERIC_SHARE) * present and _two_valued_with_token(values, numbers, bad,
                                                                                    min_count):
            # yes / no / unknown: the third value is an answer of its own, not an unreadable number.
            categorical.append(col)
            continue
        if bad.sum() <= (1 - _NUMERIC_SHARE) * present:
            distinct = numbers.nunique(dropna=True)
            whole = numbers.dropna()
            if distinct <= 1:
                dropped[col] = "constant"
            elif (distinct == present and present >= 50 and _ID_NAME.search(str(col))
                  and bool((whole == np.round(whole)).all())):
                dropped[col] = f"identifier-like number (unique per row, {distinct} values)"
            else:
                numeric.append(col)
            continue
        if _is_datetime_text(values):
            dropped[col] = ("date/time column (not a feature)" if data.created_at in leads.columns else
                            f"date/time column (not a feature; if it is when the lead was created, --date "
                            f"{shlex.quote(str(col))} splits by time instead of at random)")
            continue
        distinct = values.nunique(dropna=True)
        if distinct <= 1:
            dropped[col] = "constant"
        elif distinct > max(_ID_LIKE_SHARE * n, 1000) or distinct == present:
            dropped[col] = f"identifier-like text ({distinct} distinct values)"
        else:
            categorical.append(col)
    return numeric, categorical, dropped


def fit_vocabulary(values: pd.Series, *, max_categories: int, min_count: int) -> tuple[str, ...]:
    """The categories a model will know: the most frequent values seen at least `min_count` times.

    The rest are pooled into one `OTHER` level (last) when together they are seen at least `min_count` times:
    on Olist, landing pages seen fewer than 10 times convert at a rate of their own, which "missing" would hide.
    A value never seen in training is scored as `OTHER` too (or missing when there is no `OTHER` level).
    """
    counts = values.dropna().astype(str).str.strip()
    counts = counts[counts != ""].value_counts()
    frequent = counts[counts >= min_count]
    # Sort by count, then name, so the vocabulary (and the codes) do not depend on row order.
    ordered = sorted(frequent.items(), key=lambda kv: (-kv[1], kv[0]))[:max_categories]
    kept = sorted(k for k, _ in ordered)
    if not kept:
        return ()
    rest = int(counts.sum() - sum(n for _, n in ordered))
    return tuple(kept) + ((OTHER,) if rest >= min_count else ())


def fit_spec(
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    data: DataConfig,
    features: FeatureConfig,
    *,
    source: str = "leads",
) -> FeatureSpec:
    """Learn the feature spec (columns, vocabularies, event types) from training leads and events."""
    leads = apply_na_values(leads, data.na_values)
    numeric, categorical, dropped = infer_columns(leads, data, source=source,
                                                  min_count=features.min_category_count)
    vocab = {
        col: fit_vocabulary(leads[col], max_categories=features.max_categories, min_count=features.min_category_count)
        for col in categorical
    }
    for col in [c for c, v in vocab.items() if not v]:
        dropped[col] = f"no value seen at least {features.min_category_count} times"
        del vocab[col]
    if events is not None:
        require_columns(events, [data.event_lead_id, data.event_time, data.event_type], source="events",
                        what="event")
        if features.event_types is not None:
            event_types = tuple(features.event_types)
        else:
            event_types = frequent_types(events[data.event_type])
        names = [event_column_name(t) for t in event_types]
        if len(set(names)) != len(names):
            raise DataError(f"events: column {data.event_type!r}: event types collide after normalisation: {names}")
    else:
        event_types = ()
    ranges = {}
    for col in numeric:
        numbers, _ = parse_numbers(leads[col], source=source, column=col, decimal=data.decimal)
        values = numbers.to_numpy(dtype="float64", na_value=np.nan)
        values = values[np.isfinite(values) & (np.abs(values) < MAX_EXACT)]
        if len(values):
            ranges[col] = (float(values.min()), float(values.max()))
    return FeatureSpec(
        id_column=data.lead_id,
        created_column=data.created_at,
        as_of_days=features.as_of_days,
        label_window_days=features.label_window_days,
        numeric_columns=tuple(numeric),
        categorical_vocab=vocab,
        event_types=event_types,
        negative_event_types=tuple(features.negative_event_types),
        windows=tuple(sorted(features.windows)),
        half_life_days=float(features.half_life_days),
        event_lead_id=data.event_lead_id,
        event_time=data.event_time,
        event_type=data.event_type,
        has_events=events is not None,
        dropped_columns=dropped,
        na_values=tuple(data.na_values),
        decimal=data.decimal,
        numeric_ranges=ranges,
    )


def frequent_types(values: pd.Series, k: int = 40) -> tuple[str, ...]:
    """The `k` most frequent event types (sorted by name; ties at the cut broken by name, so the choice does not
    depend on the order of the log), counted on the column as it is (no copy of the log as Python strings)."""
    counts = values.value_counts()
    ranked = sorted(zip(counts.index.astype(str), counts.to_numpy(), strict=True), key=lambda kv: (-kv[1], kv[0]))
    return tuple(sorted(name for name, _ in ranked[:k]))


def refit_vocabularies(
    spec: FeatureSpec,
    train_leads: pd.DataFrame,
    events: pd.DataFrame | None,
    features: FeatureConfig,
    *,
    events_until: pd.Timestamp | None = None,
) -> FeatureSpec:
    """The spec with category vocabularies and event types learned from the training rows only.

    `events` are typed events (`type_events`); with `events_until`, only events up to that time count. A
    category column left without any value seen often enough in training is dropped (and said so).
    """
    vocab: dict[str, tuple[str, ...]] = {}
    dropped = dict(spec.dropped_columns)
    for col in spec.categorical_columns:
        values = fit_vocabulary(train_leads[col], max_categories=features.max_categories,
                                min_count=features.min_category_count)
        if values:
            vocab[col] = values
        else:
            dropped[col] = f"no value seen at least {features.min_category_count} times in the training slice"
    event_types = spec.event_types
    if events is not None and features.event_types is None:
        types = events["type"] if events_until is None else events["type"][(events["ts"] <= events_until).to_numpy()]
        event_types = frequent_types(types) or spec.event_types
    return dataclasses.replace(spec, categorical_vocab=vocab, event_types=event_types, dropped_columns=dropped)


def type_leads(
    leads: pd.DataFrame,
    spec: FeatureSpec,
    *,
    source: str,
    strict: bool,
    require_created: bool = False,
    as_of_column: str | None = None,
) -> TypedLeads:
    """Validate and type lead rows against a spec.

    `strict` (training) turns any bad row into a one-line DataError. Otherwise (scoring) bad rows go to
    `rejects` with a reason, so every input row ends in the output or in the rejects. Feature columns absent
    from the file are treated as missing and counted.
    """
    require_columns(leads, [spec.id_column], source=source, what="id")
    if require_created:
        require_columns(leads, [spec.created_column], source=source)
    if spec.input_columns and not any(c in leads.columns for c in spec.input_columns):
        raise DataError(
            f"{source}: none of the model's {len(spec.input_columns)} input columns is present "
            f"(expected e.g. {', '.join(repr(c) for c in spec.input_columns[:4])}); is this the right file?"
        )
    out = apply_na_values(leads, spec.na_values)
    reasons = pd.Series(pd.NA, index=out.index, dtype="object")
    stats: dict[str, int] = {}

    def flag(mask: pd.Series, reason: str) -> None:
        mask = mask.fillna(False).astype(bool) & reasons.isna()
        if strict and mask.any():
            raise DataError(f"{source}: {reason} ({describe_rows([int(i) + 1 for i in np.flatnonzero(mask)])})")
        reasons[mask] = reason

    offset, by_reason = _row_offset(leads), {}
    for position, reason in sorted(malformed_rows(leads).items()):
        # A row with a wrong field count was cut or shifted: none of its cells can be trusted.
        if 0 <= position - offset < len(out):
            by_reason.setdefault(reason, []).append(position - offset)
    for reason, positions in by_reason.items():
        mask = np.zeros(len(out), dtype=bool)
        mask[positions] = True
        flag(pd.Series(mask, index=out.index), reason)
    ids = out[spec.id_column].astype("string").str.strip()
    flag(ids.isna() | (ids == ""), f"column {spec.id_column!r}: missing lead id")
    flag(ids.duplicated(keep="first") & ids.notna(), f"column {spec.id_column!r}: duplicate lead id")
    out[spec.id_column] = ids

    for col in [c for c in (spec.created_column, as_of_column) if c and c in out.columns]:
        text = out[col]
        try:
            out[col] = parse_timestamps(text, source=source, column=col)
        except DataError:
            if strict:
                raise
            parsed = pd.to_datetime(text.astype("string"), errors="coerce", utc=True, format="mixed")
            flag(parsed.isna() & text.notna(), f"column {col!r}: not a date/time")
            out[col] = parsed.astype("datetime64[us, UTC]")

    missing_cols = [c for c in spec.input_columns if c not in out.columns]
    for col in missing_cols:
        stats[f"missing_column:{col}"] = len(out)
        out[col] = np.nan if col in spec.numeric_columns else pd.Series(pd.NA, index=out.index, dtype="object")
    for col in spec.numeric_columns:
        numbers, bad = parse_numbers(out[col], source=source, column=col, decimal=spec.decimal)
        present = max(int(out[col].notna().sum()), 1)
        # Much text where a number is expected means the wrong column or a format we cannot read: stop.
        # (Training tolerates what column inference tolerated; scoring rejects rows unless most are bad.)
        limit = (1 - _NUMERIC_SHARE) if strict else 0.5
        if bad.sum() > limit * present:
            example = out.loc[bad, col].iloc[0]
            raise DataError(
                f"{source}: column {col!r}: expected a number, found {example!r} "
                f"({describe_rows([int(i) + 1 for i in np.flatnonzero(bad)])})"
            )
        if bad.any():
            # One rule for training and scoring: an odd unreadable cell ('unknown', '-') in a number column is
            # missing, counted in the stats, never a reason to lose the lead.
            stats[f"not_a_number:{col}"] = int(bad.sum())
            log.info("%s: column %r: %d value(s) are not numbers, treated as missing (%s)", source, col,
                     int(bad.sum()), describe_rows([int(i) + 1 for i in np.flatnonzero(bad)]))
        numbers, dropped = spec.plausible(col, numbers)
        if dropped.any():
            # inf, overflowing or far-outside-training numbers: missing, counted, never shown as a reason.
            stats[f"implausible:{col}"] = int(dropped.sum())
            log.info("%s: column %r: %d implausible value(s) treated as missing (%s)", source, col,
                     int(dropped.sum()), describe_rows([int(i) + 1 for i in np.flatnonzero(dropped)]))
        out[col] = numbers
    for col in spec.categorical_vocab:
        out[col], unseen = spec.categorise(col, out[col])
        if unseen:
            stats[f"unseen_category:{col}"] = unseen
    ok = reasons.isna()
    rejects = leads.loc[~ok].copy()
    rejects[REJECT_REASON] = reasons[~ok].astype(str)
    # 1-based position in the input, so a reject can be found in the original file.
    rejects.insert(0, "input_row", np.flatnonzero(~ok.to_numpy()) + 1 + _row_offset(leads))
    stats["rejected_rows"] = int((~ok).sum())
    accepted = np.flatnonzero(ok.to_numpy()) + 1 + _row_offset(leads)
    return TypedLeads(out.loc[ok].reset_index(drop=True), rejects.reset_index(drop=True), stats, accepted)


def _row_offset(frame: pd.DataFrame) -> int:
    """Row offset of a chunk cut from a larger frame with a default RangeIndex (0 otherwise)."""
    index = frame.index
    return int(index[0]) if isinstance(index, pd.RangeIndex) and len(index) else 0


def type_events(events: pd.DataFrame, spec: FeatureSpec, *, source: str) -> pd.DataFrame:
    """Check and type an event log: lead id as text, UTC timestamps, type as text."""
    require_columns(events, [spec.event_lead_id, spec.event_time, spec.event_type], source=source, what="event")
    out = pd.DataFrame(
        {
            "lead_id": strip_text(events[spec.event_lead_id]),
            "ts": parse_timestamps(events[spec.event_time], source=source, column=spec.event_time),
            "type": strip_text(events[spec.event_type]),
        }
    )
    return out.dropna(subset=["lead_id", "ts", "type"])



def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def event_aggregate_sql(spec: FeatureSpec, *, leads: str = "leads_tbl", events: str = "events_tbl"
                        ) -> tuple[str, str]:
    """The point-in-time event aggregates as SQL (DuckDB dialect), written once for every engine.

    `leads` has (rid BIGINT, lead_id TEXT, as_of TIMESTAMP), `events` has (lead_id TEXT, ts TIMESTAMP, type TEXT),
    times in UTC. The first query gives one row per lead with events (rid and `spec.event_feature_names`; leads
    without any are absent: zero counts, no last activity); the second counts events after as_of, events used,
    leads matched by any event and leads with activity. `features.spark` runs the same text transpiled to Spark SQL.
    """
    max_window = max(spec.windows)
    # Without negative types every event is engagement (`NOT IN (NULL)` would make none of them count).
    engaged = (f"ev.type NOT IN ({', '.join(_sql_literal(t) for t in spec.negative_event_types)})"
               if spec.negative_event_types else "TRUE")
    known = ", ".join(_sql_literal(t) for t in spec.event_types) or "NULL"
    selects = []
    for event_type in spec.event_types:
        for w in spec.windows:
            selects.append(
                f"CAST(count(*) FILTER (WHERE type = {_sql_literal(event_type)} AND age < {w}) AS DOUBLE) "
                f'AS "{event_column_name(event_type)}_{w}d"'
            )
    for w in spec.windows:
        selects.append(f'CAST(count(*) FILTER (WHERE engaged AND age < {w}) AS DOUBLE) AS "engagement_events_{w}d"')
    selects.append('min(age) FILTER (WHERE engaged) AS "days_since_last_activity"')
    selects.append(
        f"CAST(coalesce(fsum(pow(0.5, age / CAST({spec.half_life_days!r} AS DOUBLE))) FILTER (WHERE engaged), 0) "
        f'AS DOUBLE) AS "decayed_engagement"'
    )
    selects.append(
        f'CAST(count(DISTINCT day) FILTER (WHERE engaged AND age < {max_window}) AS DOUBLE) AS "active_days"'
    )
    # Age in days from exact microseconds, as a double in both engines (no decimal arithmetic). The decayed sum is
    # compensated (fsum), so it does not depend on the order rows reach the aggregate (threads, deduplication).
    query = f"""
        WITH e AS (
            SELECT l.rid,
                   ev.type,
                   CAST(date_diff('microsecond', ev.ts, l.as_of) AS DOUBLE) / CAST(86400000000 AS DOUBLE) AS age,
                   date_trunc('day', ev.ts) AS day,
                   {engaged} AS engaged
            FROM {leads} l
            JOIN {events} ev ON ev.lead_id = l.lead_id
            WHERE ev.ts <= l.as_of AND ev.type IN ({known})
        )
        SELECT rid, {", ".join(selects)}
        FROM e GROUP BY rid
    """
    stats_query = f"""
        SELECT count(*) FILTER (WHERE ev.ts > l.as_of) AS after_as_of,
               count(*) FILTER (WHERE ev.ts <= l.as_of) AS used,
               count(DISTINCT l.rid) AS matched,
               count(DISTINCT l.rid) FILTER (WHERE ev.ts <= l.as_of AND ev.type IN ({known})) AS active,
               count(*) FILTER (WHERE ev.type NOT IN ({known}) OR ev.type IS NULL) AS unknown_types
        FROM {leads} l JOIN {events} ev ON ev.lead_id = l.lead_id
    """
    return query, stats_query


def empty_event_features(spec: FeatureSpec, n: int) -> pd.DataFrame:
    """Event features of leads without any event: zero counts and no last activity."""
    base = pd.DataFrame({name: 0.0 for name in spec.event_feature_names}, index=range(n))
    base["days_since_last_activity"] = np.nan
    return base


def event_stats(row: Sequence) -> dict[str, int]:
    """The counters of `event_aggregate_sql`'s second query, by name."""
    after, used, matched, active, unknown_types = (int(v or 0) for v in row)
    return {"events_after_as_of_ignored": after, "events_used": used, "events_unknown_type_ignored": unknown_types,
            "leads_matched_by_events": matched, "leads_with_events": active}


_STORE_PREFIX = "leadscore-events-"
# Up to this many leads an EventStore clusters its log by Parquet partitions, beyond it by a sort: measured here
# with the store's 256 MB, a 10M-lead list (147M events) runs DuckDB's partitioned writer out of memory
# (`benchmarks/score_scale.py --n-leads 10000000`), a 1M-lead list does not and takes half the sort's time.
PARTITIONED_CLUSTER_LEADS = 2_000_000


def remove_stale_stores(folder: str) -> int:
    """Remove event stores that killed runs left in the temporary folder (their process is gone)."""
    import os
    import shutil

    removed = 0
    try:
        names = [n for n in os.listdir(folder) if n.startswith(_STORE_PREFIX)]
    except OSError:
        return 0
    for name in names:
        pid = name[len(_STORE_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            removed += 1
    return removed


class EventStore:
    """A typed event log in a DuckDB database on disk (a temporary folder), so the log never has to fit in memory;
    `features` aggregates it for one chunk of leads with the same SQL as `event_features`."""

    def __init__(self, spec: FeatureSpec, *, n_threads: int | None = None, memory_limit: str = "1GB") -> None:
        import os
        import tempfile

        import duckdb

        self.spec = spec
        remove_stale_stores(tempfile.gettempdir())
        self.folder = tempfile.mkdtemp(prefix=f"{_STORE_PREFIX}{os.getpid()}-")
        self.con = duckdb.connect(os.path.join(self.folder, "events.duckdb"))
        self.con.execute(f"SET threads TO {max(int(n_threads or threads()), 1)}")
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute(f"SET temp_directory = '{os.path.join(self.folder, 'spill')}'")
        self.con.execute("SET preserve_insertion_order = false")
        self.con.execute("CREATE TABLE events (lead_id VARCHAR, ts TIMESTAMP, type VARCHAR)")
        self.con.execute("CREATE TABLE events_none (lead_id VARCHAR, ts TIMESTAMP, type VARCHAR)")
        self.rows = 0
        self.table = "events"
        self.dedupe = False
        self.parts = False  # `map_leads` was called: the log is clustered by the lead chunk of its events
        self.clustered = False
        self.mapped = 0  # lead ids mapped to chunks
        self.by_part: str | None = None  # the folder of the log partitioned by chunk (`cluster`)

    def map_leads(self, part: int, lead_ids: pd.Series) -> None:
        """Say which chunk (`part`) of the lead list these ids come from, before the lead chunks are scored: the
        log is then clustered by chunk once (`cluster`), and each chunk reads only its own events instead of
        scanning the whole log (which made a long list quadratic). Ids as `type_leads` gives them (stripped)."""
        import pyarrow as pa

        ids = lead_ids.dropna()
        if not self.parts:
            self.con.execute("CREATE TABLE lead_parts (lead_id VARCHAR, part INTEGER)")
            self.parts = True
        if not len(ids):
            return
        self.con.register("incoming_ids", pa.table({"lead_id": _arrow_text(ids.astype(str))}))
        try:
            self.con.execute(f"INSERT INTO lead_parts SELECT DISTINCT lead_id, {int(part)} FROM incoming_ids")
            self.mapped += len(ids)
        finally:
            self.con.unregister("incoming_ids")

    def cluster(self) -> None:
        """Keep the events of mapped leads only, grouped by their chunk, so a chunk reads its own events alone: for
        lists up to `PARTITIONED_CLUSTER_LEADS` leads as Parquet files partitioned by chunk (one join and one
        partitioned write, half the time of a sort), for longer lists (whose join the partitioned writer cannot
        spill within the store's memory) as a table sorted by chunk (one join and one sort, out of core)."""
        if not self.parts or self.clustered:
            return
        import os
        import shutil

        import duckdb

        join = "SELECT p.part, e.lead_id, e.ts, e.type FROM events e JOIN lead_parts p ON e.lead_id = p.lead_id"
        if self.mapped <= PARTITIONED_CLUSTER_LEADS:
            self.by_part = os.path.join(self.folder, "by_part")
            try:
                self.con.execute(f"COPY ({join}) TO {_sql_literal(self.by_part)} (FORMAT parquet, PARTITION_BY (part))")
            except duckdb.OutOfMemoryException:
                shutil.rmtree(self.by_part, ignore_errors=True)
                self.by_part = None
        if self.by_part is None:
            self.con.execute(f"CREATE TABLE events_by_part AS {join} ORDER BY p.part")
        self.con.execute("DROP TABLE events")
        self.con.execute("CHECKPOINT")
        self.clustered = True

    def _part_source(self, part: int) -> str:
        """The FROM source of one chunk's events (`cluster`): its Parquet files (none: an empty log) or its range of
        the sorted table."""
        import glob
        import os

        if self.by_part is None:
            return f"(SELECT lead_id, ts, type FROM events_by_part WHERE part = {int(part)})"
        files = sorted(glob.glob(os.path.join(glob.escape(self.by_part), f"part={int(part)}", "*.parquet")))
        if not files:
            return "(SELECT lead_id, ts, type FROM events_none)"
        return f"read_parquet([{', '.join(_sql_literal(f) for f in files)}])"

    def add(self, typed: pd.DataFrame) -> None:
        """Append typed events (`type_events`)."""
        if typed.empty:
            return
        import pyarrow as pa

        # Arrow columns: DuckDB reads them without a Python object per cell.
        chunk = pa.table({"lead_id": _arrow_text(typed["lead_id"]), "ts": pa.array(_naive_utc(typed["ts"])),
                          "type": _arrow_text(typed["type"])})
        self.con.register("incoming", chunk)
        self.con.execute("INSERT INTO events SELECT * FROM incoming")
        self.con.unregister("incoming")
        self.rows += len(chunk)

    def deduplicate(self) -> None:
        """Count each (lead, time, type) once from now on."""
        if self.parts:  # each chunk's events are deduplicated as they are read (the same rows counted once)
            self.dedupe = True
            return
        self.con.execute("CREATE TABLE events_unique AS SELECT DISTINCT lead_id, ts, type FROM events")
        self.table = "events_unique"

    def features(self, lead_ids: pd.Series, as_of: pd.Series, part: int | None = None
                 ) -> tuple[pd.DataFrame, dict[str, int]]:
        """Event features of these leads (same order) as of their as_of, the counters, and their duplicate
        event rows (`duplicate_events`, counted on the log as given). `part`: the chunk these leads were mapped
        under (`map_leads`), whose events are read alone; every id must have been mapped under it."""
        spec = self.spec
        n = len(lead_ids)
        base = empty_event_features(spec, n)
        if n == 0 or self.rows == 0:
            return base, {"events_used": 0, "leads_matched_by_events": 0, "leads_with_events": 0}
        import pyarrow as pa

        chunk = pa.table({"rid": np.arange(n, dtype=np.int64), "lead_id": _arrow_text(lead_ids.astype(str)),
                          "as_of": pa.array(_naive_utc(as_of))})
        self.con.register("chunk_leads", chunk)
        try:
            # One scan of the whole log per chunk: its leads' events first (as given, and as counted), then the
            # aggregates, the counters and the duplicates from those.
            if part is not None and self.parts:
                self.cluster()
                missing = self.con.execute(
                    f"SELECT count(*) FROM chunk_leads WHERE lead_id NOT IN "
                    f"(SELECT lead_id FROM lead_parts WHERE part = {int(part)})").fetchall()[0][0]
                if missing:  # the list was read differently the second time: an invariant, not an input problem
                    raise RuntimeError(f"{missing} lead(s) of chunk {part} were not mapped to it")
                self.con.execute("CREATE OR REPLACE TEMP TABLE chunk_log AS SELECT lead_id, ts, type "
                                 f"FROM {self._part_source(part)} "
                                 "WHERE lead_id IN (SELECT lead_id FROM chunk_leads)")
            else:
                if self.clustered:
                    raise RuntimeError("the event log is clustered by chunk: give the chunk (part)")
                self.con.execute("CREATE OR REPLACE TEMP TABLE chunk_log AS SELECT * FROM events "
                                 "WHERE lead_id IN (SELECT lead_id FROM chunk_leads)")
            source = "chunk_log"
            if self.dedupe:
                self.con.execute("CREATE OR REPLACE TEMP TABLE chunk_events AS "
                                 "SELECT DISTINCT lead_id, ts, type FROM chunk_log")
                source = "chunk_events"
            elif self.table != "events":
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE chunk_events AS SELECT * FROM {self.table} "
                                 "WHERE lead_id IN (SELECT lead_id FROM chunk_leads)")
                source = "chunk_events"
            query, stats_query = event_aggregate_sql(spec, leads="chunk_leads", events=source)
            agg = self.con.execute(query).fetchnumpy()
            stats = event_stats(self.con.execute(stats_query).fetchall()[0])
            dupes = self.con.execute(
                "SELECT coalesce(sum(c - 1), 0) FROM (SELECT count(*) AS c FROM chunk_log "
                "GROUP BY lead_id, ts, type HAVING count(*) > 1)").fetchall()[0][0]
        finally:
            self.con.unregister("chunk_leads")
        if dupes:
            stats["duplicate_events"] = int(dupes)
        return _fill_aggregates(n, agg, spec), stats

    def close(self) -> None:
        import shutil

        try:
            self.con.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _arrow_text(values: pd.Series):
    import pyarrow as pa

    return pa.array(values.astype(pd.StringDtype("pyarrow")).array)


def _naive_utc(stamps: pd.Series) -> np.ndarray:
    """UTC times as naive microsecond datetimes (what DuckDB's TIMESTAMP holds)."""
    return stamps.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]").to_numpy()


def _fill_aggregates(n: int, agg: dict[str, np.ndarray], spec: FeatureSpec) -> pd.DataFrame:
    """One row per lead (0..n-1) from the aggregates of the leads with events (DuckDB's `fetchnumpy`, consumed
    column by column): the others get zero counts and no last activity (`empty_event_features`)."""
    rows = np.asarray(agg.pop("rid"), dtype=np.int64)
    columns = {}
    for name in spec.event_feature_names:
        values = agg.pop(name)
        column = np.full(n, np.nan if name == "days_since_last_activity" else 0.0)
        column[rows] = np.ma.filled(np.ma.asarray(values, dtype="float64"), np.nan)
        columns[name] = column
    return pd.DataFrame(columns, index=range(n), copy=False)


def event_features(
    lead_ids: pd.Series, as_of: pd.Series, events: pd.DataFrame | None, spec: FeatureSpec
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Aggregate typed events (see `type_events`) per lead, counting only events with ts <= as_of.

    Returns one row per input lead (same order) with `spec.event_feature_names`, and counters
    (events after as_of ignored, events of unknown types ignored).
    """
    import duckdb

    n = len(lead_ids)
    if not spec.has_events:
        return pd.DataFrame(index=range(n)), {}
    base = empty_event_features(spec, n)
    if events is None or events.empty or n == 0:
        return base, {"events_used": 0, "leads_matched_by_events": 0, "leads_with_events": 0}

    import pyarrow as pa

    # Arrow columns: DuckDB reads them in place, without a Python string object per cell of a large log.
    leads_tbl = pa.table({"rid": np.arange(n, dtype=np.int64), "lead_id": _arrow_text(lead_ids.astype(str)),
                          "as_of": pa.array(_naive_utc(as_of))})
    events_tbl = pa.table({"lead_id": _arrow_text(events["lead_id"]), "ts": pa.array(_naive_utc(events["ts"])),
                           "type": _arrow_text(events["type"])})
    query, stats_query = event_aggregate_sql(spec)
    import tempfile

    con = duckdb.connect()
    spill = tempfile.mkdtemp(prefix="leadscore-aggregate-")
    try:
        con.execute(f"SET threads TO {threads()}")
        # The join and the aggregate spill to disk beyond this, so a log of tens of millions of events does not
        # double the memory the log itself takes; the rows order of the aggregate does not matter (rid says).
        con.execute(f"SET memory_limit = '{AGGREGATE_MEMORY}'")
        con.execute(f"SET temp_directory = '{spill}'")
        con.execute("SET preserve_insertion_order = false")
        con.register("leads_tbl", leads_tbl)
        con.register("events_tbl", events_tbl)
        agg = con.execute(query).fetchnumpy()
        stats = event_stats(con.execute(stats_query).fetchone())
    finally:
        con.close()
        import shutil

        shutil.rmtree(spill, ignore_errors=True)
    return _fill_aggregates(n, agg, spec), stats


def resolve_as_of(
    leads: pd.DataFrame, spec: FeatureSpec | None, as_of: pd.Timestamp | str | None, *, source: str
) -> pd.Series:
    """Per-lead as_of: an explicit time for all leads, else the leads' `as_of` column, else now (UTC).

    `as_of="created"` applies the training rule instead: each lead's creation time + `spec.as_of_days`.
    """
    if isinstance(as_of, str) and as_of.strip().lower() == "created":
        if spec is None:
            raise DataError(f"{source}: as_of 'created' needs a model's as-of rule")
        require_columns(leads, [spec.created_column], source=source)
        created = parse_timestamps(leads[spec.created_column], source=source, column=spec.created_column,
                                   allow_missing=False)
        return created + pd.Timedelta(days=spec.as_of_days)
    if as_of is not None:
        try:
            stamp = pd.Timestamp(as_of)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{source}: as_of: cannot parse {as_of!r} as a date/time") from exc
        if pd.isna(stamp):
            raise DataError(f"{source}: as_of: cannot parse {as_of!r} as a date/time")
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return pd.Series(stamp, index=leads.index).astype("datetime64[us, UTC]")
    if AS_OF in leads.columns:
        return parse_timestamps(leads[AS_OF], source=source, column=AS_OF, allow_missing=False)
    return pd.Series(pd.Timestamp.now(tz="UTC"), index=leads.index).astype("datetime64[us, UTC]")


def prepare_leads(leads: pd.DataFrame, spec: FeatureSpec, as_of, *, source: str
                  ) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, dict]:
    """Type leads for scoring and give each its scoring time: (valid leads, their as_of, rejects, counters).

    A lead without a scoring time, or scored before it existed, goes to the rejects (found by its input row),
    like a row that does not type. The batch, the API and the Spark engine all start here.
    """
    typed = type_leads(leads, spec, source=source, strict=False,
                       as_of_column=AS_OF if as_of is None and AS_OF in leads.columns else None)
    ok = typed.leads
    if as_of is None and AS_OF in ok.columns:
        stamps = ok[AS_OF]  # parsed by type_leads; unreadable cells are already rejects
    else:
        stamps = resolve_as_of(ok, spec, as_of, source=source)
    stamps = pd.Series(stamps.array, index=ok.index)  # positions, not labels (no Timestamp object per cell)
    stats = dict(typed.stats)
    reasons = pd.Series(pd.NA, index=ok.index, dtype="object")
    reasons[stamps.isna()] = f"column {AS_OF!r}: missing date/time"
    created_col = spec.created_column
    if created_col in ok.columns and pd.api.types.is_datetime64_any_dtype(ok[created_col].dtype):
        created = ok[created_col]
        early = (stamps < created).fillna(False).astype(bool) & reasons.isna()
        if early.any():
            given = "as_of (--as-of)" if as_of is not None else f"column {AS_OF!r}"
            reasons[early] = (f"{given}: " + stamps[early].dt.strftime("%Y-%m-%d %H:%M")
                              + f" is before the lead's creation ({created_col!r} "
                              + created[early].dt.strftime("%Y-%m-%d %H:%M") + ")")
    future = stamps > pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)
    if future.any():
        stats["as_of_in_future"] = int(future.sum())
    rejects = typed.rejects
    bad = reasons.notna().to_numpy()
    if bad.any():
        rows = typed.input_rows[bad]
        rejected = leads.iloc[rows - 1 - _row_offset(leads)].copy()
        rejected.insert(0, "input_row", rows)
        rejected[REJECT_REASON] = reasons[bad].to_numpy()
        rejects = pd.concat([rejects, rejected], ignore_index=True).sort_values("input_row", kind="stable")
        rejects = rejects.reset_index(drop=True)
        ok, stamps = ok.loc[~bad].reset_index(drop=True), stamps[~bad].reset_index(drop=True)
    stats["rejected_rows"] = len(rejects)
    return ok, stamps, rejects, stats


def build_lead_frame(
    typed_leads: pd.DataFrame,
    events: pd.DataFrame | None,
    spec: FeatureSpec,
    as_of: pd.Series,
    *,
    extra_columns: Sequence[str] = (),
    stats: dict | None = None,
    event_store: EventStore | None = None,
    event_part: int | None = None,
) -> LeadFrame:
    """Join typed lead columns with point-in-time event features into a LeadFrame (one row per lead).

    The events are a typed frame (`type_events`) or, for logs that need not fit in memory, an `EventStore`.
    """
    typed_leads = typed_leads.reset_index(drop=True)
    as_of = pd.Series(as_of).reset_index(drop=True)
    if event_store is not None and spec.has_events:
        ev, ev_stats = event_store.features(typed_leads[spec.id_column], as_of, part=event_part)
    else:
        ev, ev_stats = event_features(typed_leads[spec.id_column], as_of, events, spec)
    parts = [
        typed_leads[[spec.id_column]],
        pd.DataFrame({AS_OF: as_of}),
        typed_leads[list(spec.lead_feature_names)],
        ev,
        typed_leads[[c for c in extra_columns if c in typed_leads.columns]],
    ]
    frame = pd.concat(parts, axis=1)
    return LeadFrame(frame, spec, {**(stats or {}), **ev_stats})
