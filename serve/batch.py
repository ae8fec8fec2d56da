"""Batch scoring of a lead list file: every input row ends in the output or in a rejects file with its reason."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.build import REJECT_REASON
from leadscore.features.io import read_table, table_format, write_table
from leadscore.serve.predictor import Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchResult:
    """What a batch run wrote and counted."""

    output: Path
    rejects: Path | None
    input_rows: int
    scored_rows: int
    rejected_rows: int
    stats: dict

    def to_dict(self) -> dict:
        return {"output": str(self.output), "rejects": None if self.rejects is None else str(self.rejects),
                "input_rows": self.input_rows, "scored_rows": self.scored_rows,
                "rejected_rows": self.rejected_rows, "stats": self.stats}


def rejects_path(out: Path) -> Path:
    """`scores.csv` -> `scores.rejects.csv` (same folder and format)."""
    return out.with_name(f"{out.stem}.rejects{out.suffix}")


def score_file(
    predictor: Predictor,
    leads_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    events_path: str | os.PathLike | None = None,
    as_of: pd.Timestamp | str | None = None,
    reasons: bool = True,
    keep_columns: Sequence[str] = (),
    chunk_size: int = 100_000,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Score a CSV/Parquet lead list (optionally with an event log) into a CSV/Parquet file."""
    table_format(out_path)  # fail early on an unsupported output type, before any work
    leads = read_table(leads_path, what="leads")
    events = read_table(events_path, what="events") if events_path is not None else None
    return score_frames(predictor, leads, out_path, events=events, as_of=as_of, reasons=reasons,
                        keep_columns=keep_columns, chunk_size=chunk_size, progress=progress,
                        sources={"leads": str(leads_path), "events": str(events_path)})


def score_frames(
    predictor: Predictor,
    leads: pd.DataFrame,
    out_path: str | os.PathLike,
    *,
    events: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
    reasons: bool = True,
    keep_columns: Sequence[str] = (),
    chunk_size: int = 100_000,
    progress: Callable[[int, int], None] | None = None,
    sources: dict[str, str] | None = None,
) -> BatchResult:
    """Score leads (and their events) already in memory into a file; rejects go beside it.

    Leads are scored in chunks; output and rejects are written atomically (temp file, then rename).
    """
    out_path = Path(out_path)
    table_format(out_path)
    sources = {"leads": "leads", "events": "events", **(sources or {})}
    if events is not None:
        events = _events_for(events, predictor, leads)
    parts, reject_parts, stats = [], [], {}
    total = len(leads)
    leads = leads.reset_index(drop=True)
    id_col = predictor.spec.id_column
    if id_col in leads.columns:
        # Duplicates across chunk boundaries: one chunk alone cannot see them, so they are set aside here.
        ids = leads[id_col].astype("string").str.strip()
        dupes = ids.duplicated(keep="first") & ids.notna() & (ids != "")
        if dupes.any():
            rejected = leads.loc[dupes].copy()
            rejected.insert(0, "input_row", np.flatnonzero(dupes.to_numpy()) + 1)
            rejected[REJECT_REASON] = f"column {id_col!r}: duplicate lead id"
            reject_parts.append(rejected)
            keep_rows = np.flatnonzero(~dupes.to_numpy())
            leads = leads.loc[~dupes]
        else:
            keep_rows = np.arange(total)
    else:
        keep_rows = np.arange(total)
    leads = leads.reset_index(drop=True)
    for start in range(0, len(leads), chunk_size):
        chunk = leads.iloc[start:start + chunk_size]
        chunk_events = None
        if events is not None:
            ids = set(chunk[predictor.spec.id_column].astype("string").str.strip().dropna())
            chunk_events = events[events[predictor.spec.event_lead_id].isin(ids)]
        result = predictor.score_detailed(chunk, chunk_events, as_of, reasons=reasons, keep_columns=keep_columns,
                                          source=sources["leads"], events_source=sources["events"])
        parts.append(result.scores)
        rejects = result.rejects
        if "input_row" in rejects.columns:
            # Chunk-relative row numbers back to the file's rows.
            rejects = rejects.assign(input_row=keep_rows[rejects["input_row"].to_numpy(dtype=int) - 1] + 1)
        reject_parts.append(rejects)
        for key, value in result.stats.items():
            if isinstance(value, int | float):
                stats[key] = stats.get(key, 0) + value
        if progress is not None:
            progress(min(start + chunk_size, len(leads)), len(leads))
    scores = pd.concat(parts, ignore_index=True)
    rejects = pd.concat(reject_parts, ignore_index=True)
    write_table(scores, out_path)
    rej_path = None
    rej_file = rejects_path(out_path)
    if len(rejects):
        rej_path = write_table(rejects, rej_file)
    elif rej_file.exists():
        rej_file.unlink()  # a stale rejects file from an earlier run would mislead
    if len(scores) + len(rejects) != total:  # pragma: no cover - an invariant, not an input problem
        raise RuntimeError(f"lost rows: {total} in, {len(scores)} scored + {len(rejects)} rejected")
    return BatchResult(out_path, rej_path, total, len(scores), len(rejects), stats)


def _events_for(events: pd.DataFrame, predictor: Predictor, leads: pd.DataFrame) -> pd.DataFrame:
    col = predictor.spec.event_lead_id
    if col not in events.columns:
        return events  # type_events reports the missing column with the file name
    ids = set(leads[predictor.spec.id_column].astype("string").str.strip().dropna()) \
        if predictor.spec.id_column in leads.columns else set()
    trimmed = events[col].astype("string").str.strip()
    return events.loc[trimmed.isin(ids)].assign(**{col: trimmed[trimmed.isin(ids)]})
