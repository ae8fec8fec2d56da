"""Labels: converted within a window after the lead's as_of; converted-before and immature leads left out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import DataError
from features.io import parse_label, parse_timestamps, require_columns
from features.spec import AS_OF, LABEL


@dataclass(frozen=True)
class Labelled:
    """Leads with as_of and label, plus how many were left out and why."""

    leads: pd.DataFrame
    counts: dict[str, int]
    data_end: pd.Timestamp


def outcome_times(
    outcomes: pd.DataFrame, *, id_column: str, converted_at: str, source: str
) -> pd.Series:
    """Earliest conversion time per lead id from an outcomes table (rows without a time mean not converted)."""
    require_columns(outcomes, [id_column, converted_at], source=source, what="outcome")
    times = parse_timestamps(outcomes[converted_at], source=source, column=converted_at)
    ids = outcomes[id_column].astype("string").str.strip()
    frame = pd.DataFrame({"id": ids, "t": times}).dropna(subset=["id", "t"])
    return frame.groupby("id")["t"].min()


def label_leads(
    leads: pd.DataFrame,
    converted: pd.Series,
    *,
    id_column: str,
    created_column: str,
    as_of_days: int,
    window_days: int,
    data_end: pd.Timestamp,
    source: str = "leads",
) -> Labelled:
    """Attach as_of (created + as_of_days) and label (converted in (as_of, as_of + window]).

    Leads already converted at as_of, and leads whose window has not closed by `data_end`, are dropped and
    counted. Raises DataError if what remains has a single class.
    """
    created = leads[created_column]
    as_of = created + pd.Timedelta(days=as_of_days)
    conv = leads[id_column].map(converted)
    conv = pd.to_datetime(conv, utc=True).astype("datetime64[us, UTC]")
    window_end = as_of + pd.Timedelta(days=window_days)
    no_date = as_of.isna()
    before = conv.notna() & (conv <= as_of)
    immature = ~before & (window_end > data_end) & ~no_date
    keep = ~(before | immature | no_date)
    label = (conv.notna() & (conv > as_of) & (conv <= window_end)).astype("int8")
    out = leads.loc[keep].copy()
    out[AS_OF] = as_of[keep]
    out[LABEL] = label[keep]
    counts = {
        "leads": len(leads),
        "converted_before_as_of": int(before.sum()),
        "immature": int(immature.sum()),
        "missing_created_at": int(no_date.sum()),
        "labelled": int(keep.sum()),
        "positives": int(out[LABEL].sum()),
    }
    if counts["labelled"] == 0:
        raise DataError(
            f"{source}: no lead has a closed label window: every as_of + {window_days} days is after the data end "
            f"{data_end:%Y-%m-%d} (column {created_column!r})"
        )
    n_classes = int(np.unique(out[LABEL]).size)
    if n_classes < 2:
        only = int(out[LABEL].iloc[0])
        raise DataError(
            f"{source}: label has a single class: all {counts['labelled']} labelled leads are "
            f"{'converted' if only else 'not converted'} within {window_days} days of as_of"
        )
    return Labelled(out.reset_index(drop=True), counts, data_end)


def infer_data_end(*series: pd.Series) -> pd.Timestamp:
    """The extract time of the data: the latest timestamp seen in any of the given columns."""
    latest = [s.max() for s in series if s is not None and len(s) and pd.notna(s.max())]
    return max(latest)


def labels_from_column(
    leads: pd.DataFrame,
    outcomes: pd.DataFrame | None,
    *,
    label: str,
    id_column: str,
    created_column: str,
    as_of_days: int,
    source: str = "leads",
    outcomes_source: str = "outcomes",
) -> Labelled:
    """Labels taken as given from a 0/1 column of the lead table, or of an outcomes table joined by id.

    as_of is created + as_of_days when the leads have a creation time, else missing (no event features).
    """
    if label in leads.columns:
        values = parse_label(leads[label], source=source, column=label)
        out = leads.copy()
    else:
        if outcomes is None:
            raise DataError(f"{source}: missing label column {label!r} (and no outcomes table was given)")
        require_columns(outcomes, [id_column, label], source=outcomes_source, what="outcome")
        ids = outcomes[id_column].astype("string").str.strip()
        dupes = ids.duplicated() & ids.notna()
        if dupes.any():
            raise DataError(f"{outcomes_source}: column {id_column!r}: duplicate lead id "
                            f"{ids[dupes].iloc[0]!r}; the label table needs one row per lead")
        parsed = parse_label(outcomes[label], source=outcomes_source, column=label)
        mapped = leads[id_column].map(pd.Series(parsed.to_numpy(), index=ids.to_numpy()))
        missing = mapped.isna()
        if missing.any():
            rows = [int(i) + 1 for i in np.flatnonzero(missing.to_numpy())]
            raise DataError(f"{outcomes_source}: column {label!r}: no label for {int(missing.sum())} lead(s) of "
                            f"{source} (first: {leads[id_column][missing].iloc[0]!r}, leads rows {rows[:5]})")
        values = mapped.astype("int8")
        out = leads.copy()
    out[LABEL] = values.to_numpy(dtype="int8")
    if created_column in out.columns:
        out[AS_OF] = out[created_column] + pd.Timedelta(days=as_of_days)
        data_end = out[AS_OF].max()
    else:
        out[AS_OF] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
        data_end = pd.NaT
    counts = {"leads": len(leads), "converted_before_as_of": 0, "immature": 0, "labelled": len(out),
              "positives": int(out[LABEL].sum())}
    return Labelled(out.reset_index(drop=True), counts, data_end)
