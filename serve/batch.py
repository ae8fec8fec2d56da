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
from leadscore.features.errors import DataError
from leadscore.features.io import (
    MALFORMED,
    check_writable,
    commit,
    discard,
    malformed_rows,
    output_format,
    read_table,
    require_columns,
    stage_table,
)
from leadscore.models.drift import DriftAccumulator
from leadscore.serve.expectations import input_warnings
from leadscore.serve.predictor import Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchResult:
    """What a batch run wrote and counted, and how its input differed from training's."""

    output: Path
    rejects: Path | None
    input_rows: int
    scored_rows: int
    rejected_rows: int
    stats: dict
    warnings: tuple[str, ...] = ()
    drift: dict | None = None  # PSI per feature and of the score, expected conversions and ROC AUC

    def to_dict(self) -> dict:
        return {"output": str(self.output), "rejects": None if self.rejects is None else str(self.rejects),
                "input_rows": self.input_rows, "scored_rows": self.scored_rows,
                "rejected_rows": self.rejected_rows, "stats": self.stats, "warnings": list(self.warnings),
                "drift": self.drift}


def rejects_path(out: Path) -> Path:
    """`scores.csv` -> `scores.rejects.csv` (same folder and format)."""
    out = Path(out)
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
    strict: bool = False,
    dedupe_events: bool = False,
) -> BatchResult:
    """Score a CSV/Parquet lead list (optionally with an event log) into a CSV/Parquet file."""
    # Fail before any work on an unsupported or unwritable target (the output or its rejects file).
    output_format(out_path)
    check_writable(out_path, rejects_path(Path(out_path)))
    leads = read_table(leads_path, what="leads")
    events = read_table(events_path, what="events") if events_path is not None else None
    return score_frames(predictor, leads, out_path, events=events, as_of=as_of, reasons=reasons,
                        keep_columns=keep_columns, chunk_size=chunk_size, progress=progress,
                        sources={"leads": str(leads_path), "events": str(events_path)}, strict=strict,
                        dedupe_events=dedupe_events)


def _reject_rows(leads: pd.DataFrame, positions: np.ndarray, reasons: Sequence[str] | str) -> pd.DataFrame:
    rejected = leads.iloc[positions].copy()
    rejected.insert(0, "input_row", positions + 1)
    rejected[REJECT_REASON] = reasons
    return rejected


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
    strict: bool = False,
    dedupe_events: bool = False,
) -> BatchResult:
    """Score leads (and their events) already in memory into a file; rejects go beside it.

    Leads are scored in chunks. The output and the rejects are written to temporary files and renamed only when
    both are complete, so a failure leaves neither (and no stale rejects from an earlier run beside a new output).
    `strict`: any input warning (see `serve.expectations`) is an error before anything is written.
    """
    out_path = Path(out_path)
    rej_file = rejects_path(out_path)
    output_format(out_path)
    check_writable(out_path, rej_file)
    sources = {"leads": "leads", "events": "events", **(sources or {})}
    spec = predictor.spec
    id_col = spec.id_column
    require_columns(leads, [id_col], source=sources["leads"], what="id")
    total = len(leads)
    stats: dict = {}
    events_rows = 0
    if events is not None:
        bad_events = malformed_rows(events)
        if bad_events:
            stats["malformed_event_rows"] = len(bad_events)
            events = events.drop(index=events.index[sorted(bad_events)])
        events_rows = len(events)
        events = _events_for(events, predictor, leads, source=sources["events"])
    leads = leads.reset_index(drop=True)
    reject_parts = []
    bad = malformed_rows(leads)
    # Rows cut short (or with extra fields) are rejected whole; duplicates across chunk boundaries too (one chunk
    # alone cannot see them).
    drop = np.zeros(total, dtype=bool)
    if bad:
        positions = np.asarray(sorted(bad), dtype=np.int64)
        reject_parts.append(_reject_rows(leads, positions, [bad[int(p)] for p in positions]))
        drop[positions] = True
    ids = leads[id_col].astype("string").str.strip()
    dupes = (ids.duplicated(keep="first") & ids.notna() & (ids != "")).to_numpy() & ~drop
    # A duplicate of a malformed row is still a duplicate of a lead the file already gave.
    if dupes.any():
        reject_parts.append(_reject_rows(leads, np.flatnonzero(dupes), f"column {id_col!r}: duplicate lead id"))
        drop |= dupes
    keep_rows = np.flatnonzero(~drop)
    leads = leads.loc[~drop].reset_index(drop=True)
    leads.attrs.pop(MALFORMED, None)
    keep_missing = [c for c in keep_columns if c not in leads.columns]
    reference = (predictor.bundle.meta or {}).get("reference")
    drift = DriftAccumulator(reference) if reference else None
    parts = []
    for start in range(0, len(leads), chunk_size):
        chunk = leads.iloc[start:start + chunk_size]
        chunk_events = None
        if events is not None:
            chunk_ids = set(chunk[id_col].astype("string").str.strip().dropna())
            chunk_events = events[events[spec.event_lead_id].isin(chunk_ids)]
        result = predictor.score_detailed(chunk, chunk_events, as_of, reasons=reasons, keep_columns=keep_columns,
                                          source=sources["leads"], events_source=sources["events"],
                                          dedupe_events=dedupe_events)
        parts.append(result.scores)
        if drift is not None and result.features is not None and len(result.scores):
            drift.add(result.features, result.scores["probability"].to_numpy())
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
    if not parts:  # every row rejected before scoring: an output with the usual columns and no rows
        parts.append(predictor.score_detailed(leads.iloc[:0], None, as_of, reasons=reasons,
                                              keep_columns=keep_columns, source=sources["leads"]).scores)
    scores = pd.concat(parts, ignore_index=True)
    rejects = pd.concat(reject_parts, ignore_index=True) if reject_parts else pd.DataFrame()
    if len(rejects) and "input_row" in rejects.columns:
        rejects = rejects.sort_values("input_row", kind="stable").reset_index(drop=True)
    return write_results(scores, rejects, out_path, spec=spec, total=total, stats=stats,
                         events_given=events is not None, events_rows=events_rows, keep_missing=keep_missing,
                         strict=strict, source=sources["leads"], drift=None if drift is None else drift.result())


def write_results(scores: pd.DataFrame, rejects: pd.DataFrame, out_path: str | os.PathLike, *, spec, total: int,
                  stats: dict, events_given: bool, events_rows: int, keep_missing: Sequence[str] = (),
                  strict: bool = False, source: str = "leads", drift: dict | None = None) -> BatchResult:
    """Check that no row was lost, warn (or stop, `strict`) on input unlike training's, then write the output and
    the rejects together: both staged, both renamed, or neither. Every engine ends here."""
    out_path = Path(out_path)
    rej_file = rejects_path(out_path)
    stats = {**stats, "rejected_rows": len(rejects), "scored_rows": len(scores)}
    if len(scores) + len(rejects) != total:  # pragma: no cover - an invariant, not an input problem
        raise RuntimeError(f"lost rows: {total} in, {len(scores)} scored + {len(rejects)} rejected")
    warnings = input_warnings(spec, stats, scored_rows=len(scores), events_given=events_given,
                              events_rows=events_rows, keep_missing=keep_missing)
    if strict and warnings:
        more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
        raise DataError(f"{source}: --strict: {warnings[0]}{more}; nothing written")
    staged = [stage_table(scores, out_path)]
    try:
        if len(rejects):
            staged.append(stage_table(rejects, rej_file))
        commit(staged)
    except BaseException:
        discard(staged)
        raise
    if not len(rejects) and rej_file.exists():
        rej_file.unlink()  # a stale rejects file from an earlier run would mislead
    for line in warnings:
        log.info("%s: %s", source, line)
    return BatchResult(out_path, rej_file if len(rejects) else None, total, len(scores), len(rejects), stats,
                       tuple(warnings), drift)


def _events_for(events: pd.DataFrame, predictor: Predictor, leads: pd.DataFrame, *, source: str) -> pd.DataFrame:
    col = predictor.spec.event_lead_id
    require_columns(events, [col], source=source, what="event")
    ids = set(leads[predictor.spec.id_column].astype("string").str.strip().dropna())
    trimmed = events[col].astype("string").str.strip()
    return events.loc[trimmed.isin(ids)].assign(**{col: trimmed[trimmed.isin(ids)]})
