"""Labels: converted within a window after the lead's as_of; converted-before and immature leads left out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.errors import DataError, describe_rows
from leadscore.features.io import parse_timestamps, require_columns
from leadscore.features.spec import AS_OF, LABEL

# Outcome values that mean "converted" in CRM exports, compared after lower-casing and collapsing spaces.
POSITIVE_TOKENS = frozenset({"won", "closed won", "yes", "y", "true", "t", "converted", "success", "1"})
# Their usual opposites: a column written in several spellings of yes/no ('Yes', 'no', 'TRUE', '0') still maps.
NEGATIVE_TOKENS = frozenset({"lost", "closed lost", "no", "n", "false", "f", "not converted", "failure", "0"})


def _token(value: object) -> str:
    return " ".join(str(value).replace("_", " ").replace("-", " ").split()).lower()


def _as_text(values: pd.Series) -> pd.Series:
    """Label cells as stripped text; numbers written as 1.0 read as '1' so a Parquet 0/1 column maps like a CSV one."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.map({True: "true", False: "false"}).astype("string")
    if pd.api.types.is_numeric_dtype(values.dtype):
        num = pd.to_numeric(values, errors="coerce")
        whole = num.notna() & (num == np.round(num))
        text = num.astype("string")
        text = text.mask(whole, num[whole].astype("Int64").astype("string")) if whole.any() else text
        return text
    text = values.astype("string").str.strip()
    return text.mask(text == "")


@dataclass(frozen=True)
class LabelMapping:
    """How the outcome column's values became 1 (converted), 0 (not) or were left out (still open)."""

    column: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    open: tuple[str, ...]
    counts: dict[str, int]
    how: str  # "given" (--positive) or "recognised" (a known positive token)

    def describe(self) -> str:
        """'label deal_stage: 'Won' = converted (4,238), 'Lost' = not converted (2,473)'."""
        parts = [f"{v!r} = converted ({self.counts.get(v, 0):,})" for v in self.positive]
        parts += [f"{v!r} = not converted ({self.counts.get(v, 0):,})" for v in self.negative]
        parts += [f"{v!r} = still open, left out ({self.counts.get(v, 0):,})" for v in self.open]
        return f"label {self.column}: " + ", ".join(parts)

    def to_dict(self) -> dict:
        return {"column": self.column, "positive": list(self.positive), "negative": list(self.negative),
                "open": list(self.open), "counts": dict(self.counts), "how": self.how, "text": self.describe()}


def map_label(
    values: pd.Series, *, source: str, column: str, positive: tuple[str, ...] = (), open_values: tuple[str, ...] = ()
) -> tuple[pd.Series, LabelMapping]:
    """Map any outcome column to 1 / 0 / NA (open): named positives are 1, named open values are left out.

    Without `positive`, a two-valued column is recognised when exactly one value is a known positive token
    (won, yes, true, converted, 1, ...). Anything else is a one-line DataError listing the values with counts
    and naming the option. Missing cells are an error (a lead without an outcome cannot be labelled).
    """
    text = _as_text(values)
    missing = text.isna()
    if missing.any():
        raise DataError(f"{source}: column {column!r}: missing label ({describe_rows(_rows(missing))})")
    counts = text.value_counts()
    listed = ", ".join(f"{v!r} ({n:,})" for v, n in counts.head(8).items()) + (" ..." if len(counts) > 8 else "")
    by_token: dict[str, list[str]] = {}
    for v in counts.index:
        by_token.setdefault(_token(v), []).append(str(v))

    def resolve(names: tuple[str, ...], option: str) -> list[str]:
        out: list[str] = []
        for name in names:
            found = by_token.get(_token(name))
            if not found:
                raise DataError(f"{source}: column {column!r}: {option} {name!r} is not a value of the label "
                                f"(values: {listed})")
            out += found
        return out

    opened = resolve(tuple(open_values), "--open")
    if positive:
        pos = resolve(tuple(positive), "--positive")
        how = "given"
    else:
        closed = [v for v in counts.index if v not in opened]
        known = [v for v in closed if _token(v) in POSITIVE_TOKENS]
        spelled = all(_token(v) in POSITIVE_TOKENS | NEGATIVE_TOKENS for v in closed) and 0 < len(known) < len(closed)
        if not spelled and (len(closed) != 2 or len(known) != 1):
            why = ("it has more than two values" if len(closed) > 2 else
                   "it has a single value" if len(closed) < 2 else
                   "no value is a known positive (won, yes, true, converted, 1)" if not known else
                   "both values look positive")
            raise DataError(f"{source}: column {column!r}: cannot tell which label value means converted ({why}; "
                            f"values: {listed}); name it with --positive VALUE (label.positive in a config)"
                            + ("; values still in progress can be left out with --open VALUE"
                               if len(closed) > 2 else ""))
        pos = known
        how = "recognised"
    overlap = set(pos) & set(opened)
    if overlap:
        raise DataError(f"{source}: column {column!r}: {sorted(overlap)} named both --positive and --open")
    negative = [str(v) for v in counts.index if v not in pos and v not in opened]
    mapped = pd.Series(np.where(text.isin(pos), 1.0, 0.0), index=values.index)
    mapped = mapped.mask(text.isin(opened))
    decided = mapped.dropna()
    if decided.nunique() < 2:
        only = "converted" if (decided == 1).all() else "not converted"
        raise DataError(f"{source}: column {column!r}: label has a single class (every decided lead is {only}; "
                        f"values: {listed}); need both converted and not converted leads")
    mapping = LabelMapping(column, tuple(map(str, pos)), tuple(negative), tuple(map(str, opened)),
                           {str(k): int(n) for k, n in counts.items()}, how)
    return mapped, mapping


def _rows(mask: pd.Series) -> list[int]:
    return [int(i) + 1 for i in np.flatnonzero(np.asarray(mask))]


@dataclass(frozen=True)
class Labelled:
    """Leads with as_of and label, plus how many were left out and why."""

    leads: pd.DataFrame
    counts: dict[str, int]
    data_end: pd.Timestamp
    mapping: LabelMapping | None = None


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
    converted_column: str = "converted_at",
    before_created: str = "error",
) -> Labelled:
    """Attach as_of (created + as_of_days) and label (converted in (as_of, as_of + window]).

    Leads already converted at as_of, and leads whose window has not closed by `data_end`, are dropped and
    counted. A conversion dated before the lead's creation is an export error: a DataError naming the rows, or
    (`before_created="exclude"`) those leads are left out and counted. Raises DataError if what remains has a
    single class.
    """
    created = leads[created_column]
    as_of = created + pd.Timedelta(days=as_of_days)
    times = pd.to_datetime(pd.Series(converted), utc=True) if len(converted) else \
        pd.Series([], dtype="datetime64[us, UTC]")
    times.index = times.index.astype(str)
    conv = pd.Series(times.reindex(leads[id_column].astype(str).to_numpy()).to_numpy(), index=leads.index)
    conv = pd.to_datetime(conv, utc=True).astype("datetime64[us, UTC]")
    window_end = as_of + pd.Timedelta(days=window_days)
    no_date = as_of.isna()
    early = conv.notna() & created.notna() & (conv < created)
    if early.any() and before_created != "exclude":
        first = int(np.flatnonzero(early.to_numpy())[0])
        raise DataError(
            f"{source}: {int(early.sum()):,} lead(s) converted before they were created (column "
            f"{converted_column!r} {conv.iloc[first]:%Y-%m-%d %H:%M} < {created_column!r} "
            f"{created.iloc[first]:%Y-%m-%d %H:%M}; {describe_rows(_rows(early))}); fix the export, or leave them "
            f"out with --exclude-early-conversions (config: label.converted_before_created: exclude)"
        )
    before = conv.notna() & (conv <= as_of) & ~early
    immature = ~before & ~early & (window_end > data_end) & ~no_date
    keep = ~(before | immature | no_date | early)
    label = (conv.notna() & (conv > as_of) & (conv <= window_end)).astype("int8")
    out = leads.loc[keep].copy()
    out[AS_OF] = as_of[keep]
    out[LABEL] = label[keep]
    counts = {
        "leads": len(leads),
        "converted_before_as_of": int(before.sum()),
        "converted_before_created": int(early.sum()),
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
    positive: tuple[str, ...] = (),
    open_values: tuple[str, ...] = (),
) -> Labelled:
    """Labels taken from an outcome column of the lead table, or of an outcomes table joined by id.

    Any two-valued outcome maps to 0/1 (see `map_label`); leads whose outcome is named open are left out and
    counted. as_of is created + as_of_days when the leads have a creation time, else missing (no event features).
    """
    if label in leads.columns:
        values, mapping = map_label(leads[label], source=source, column=label, positive=positive,
                                    open_values=open_values)
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
        parsed, mapping = map_label(outcomes[label], source=outcomes_source, column=label, positive=positive,
                                    open_values=open_values)
        mapped = leads[id_column].map(pd.Series(parsed.to_numpy(), index=ids.to_numpy()))
        missing = ~leads[id_column].isin(set(ids.dropna()))
        if missing.any():
            rows = [int(i) + 1 for i in np.flatnonzero(missing.to_numpy())]
            raise DataError(f"{outcomes_source}: column {label!r}: no label for {int(missing.sum())} lead(s) of "
                            f"{source} (first: {leads[id_column][missing].iloc[0]!r}, leads rows {rows[:5]})")
        values = mapped
        out = leads.copy()
    still_open = values.isna().to_numpy()
    out = out.loc[~still_open].copy()
    out[LABEL] = values[~still_open].to_numpy(dtype="int8")
    if created_column in out.columns:
        out[AS_OF] = out[created_column] + pd.Timedelta(days=as_of_days)
        data_end = out[AS_OF].max()
    else:
        out[AS_OF] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
        data_end = pd.NaT
    counts = {"leads": len(leads), "converted_before_as_of": 0, "immature": 0, "open_outcome": int(still_open.sum()),
              "labelled": len(out), "positives": int(out[LABEL].sum())}
    return Labelled(out.reset_index(drop=True), counts, data_end, mapping)
