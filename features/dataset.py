"""Assemble a CRM export described by a dataset config: leads (+ lookup joins), outcomes and event sources.

The result uses the project's canonical names for events (lead_id, timestamp, event_type) and outcomes
(the lead id column, converted_at or the label), so the rest of the pipeline sees one shape whatever the CRM.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from leadscore.features.config import DataConfig, DatasetConfig, OutcomeConfig
from leadscore.features.errors import ConfigError, DataError
from leadscore.features.io import read_table, require_columns

EVENT_COLUMNS = ("lead_id", "timestamp", "event_type")


@dataclass(frozen=True)
class Dataset:
    """Frames ready for training or scoring, the data config that names their columns, and their sources."""

    leads: pd.DataFrame
    events: pd.DataFrame | None
    outcomes: pd.DataFrame | None
    data: DataConfig
    sources: dict[str, str]


def join_lookups(leads: pd.DataFrame, dataset: DatasetConfig, *, source: str) -> pd.DataFrame:
    """Left-join each lookup table (many leads to one row); a lookup with duplicate keys is an error."""
    out = leads
    for join in dataset.joins:
        table = read_table(join.table, what="lookup")
        key = join.key or join.by
        require_columns(out, [join.by], source=source, what="join key")
        require_columns(table, [key], source=join.table, what="join key")
        dupes = table[key].duplicated() & table[key].notna()
        if dupes.any():
            raise DataError(f"{join.table}: column {key!r}: duplicate key {table[key][dupes].iloc[0]!r}; a lookup "
                            f"table needs one row per key")
        cols = list(join.columns) if join.columns is not None else [c for c in table.columns if c != key]
        require_columns(table, cols, source=join.table)
        right = table[[key, *cols]].rename(columns={c: f"{join.prefix}{c}" for c in cols})
        clash = [c for c in right.columns if c != key and c in out.columns]
        if clash:
            raise ConfigError(f"{join.table}: joined columns {clash} already exist in the leads; set a prefix")
        right = right.rename(columns={key: "__join_key__"})
        out = out.merge(right, how="left", left_on=join.by, right_on="__join_key__", validate="many_to_one")
        out = out.drop(columns="__join_key__")
    return out


def collect_events(dataset: DatasetConfig) -> pd.DataFrame | None:
    """All event sources as one log with columns lead_id, timestamp, event_type (types prefixed per source)."""
    parts = []
    for src in dataset.events:
        table = read_table(src.table, what="events")
        cols = [src.lead_id, src.time] + ([src.type] if src.type else [])
        require_columns(table, cols, source=src.table, what="event")
        kind = table[src.type].astype("string") if src.type else pd.Series(src.type_value, index=table.index)
        parts.append(pd.DataFrame({
            "lead_id": table[src.lead_id].astype("string"),
            "timestamp": table[src.time],
            "event_type": src.prefix + kind.astype("string"),
        }))
    if not parts:
        return None
    return pd.concat(parts, ignore_index=True)


def collect_outcomes(outcomes: OutcomeConfig, lead_id: str) -> pd.DataFrame:
    """The outcome table(s) with the lead id renamed to the leads' id column."""
    tables = outcomes.table if isinstance(outcomes.table, tuple) else (outcomes.table,)
    value = outcomes.time or outcomes.label
    frames = []
    for path in tables:
        table = read_table(path, what="outcomes")
        require_columns(table, [outcomes.lead_id, value], source=str(path), what="outcome")
        frames.append(table[[outcomes.lead_id, value]].rename(columns={outcomes.lead_id: lead_id}))
    return pd.concat(frames, ignore_index=True)


def load_dataset(
    dataset: DatasetConfig,
    data: DataConfig,
    *,
    leads_path: str | None = None,
    with_outcomes: bool = True,
) -> Dataset:
    """Read and assemble the tables of a dataset config (`leads_path` overrides the config's lead table)."""
    path = leads_path or dataset.leads
    if path is None:
        raise ConfigError("dataset.leads: no lead table given (in the config or with --leads)")
    leads = join_lookups(read_table(path, what="leads"), dataset, source=str(path))
    events = collect_events(dataset)
    outcomes = None
    replace: dict[str, object] = {}
    if events is not None:
        replace.update(event_lead_id="lead_id", event_time="timestamp", event_type="event_type")
    if with_outcomes and dataset.outcomes is not None:
        outcomes = collect_outcomes(dataset.outcomes, data.lead_id)
        if dataset.outcomes.time:
            outcomes = outcomes.rename(columns={dataset.outcomes.time: "converted_at"})
            replace.update(converted_at="converted_at", label=None)
        else:
            replace.update(label=dataset.outcomes.label)
    sources = {"leads": str(path), "events": ", ".join(e.table for e in dataset.events) or "events",
               "outcomes": "outcomes" if dataset.outcomes is None else ", ".join(
                   dataset.outcomes.table if isinstance(dataset.outcomes.table, tuple) else [dataset.outcomes.table])}
    return Dataset(leads, events, outcomes, dataclasses.replace(data, **replace), sources)
