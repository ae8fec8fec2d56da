"""Batch scoring of a lead list file: every input row ends in the output or in a rejects file with its reason."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.build import REJECT_REASON, EventStore, type_events
from leadscore.features.errors import DataError
from leadscore.features.io import (
    MALFORMED,
    Chunk,
    StagedWriter,
    check_writable,
    chunk_frame,
    commit,
    discard,
    iter_table,
    malformed_rows,
    output_format,
    require_columns,
    stage_table,
)
from leadscore.models.drift import DriftAccumulator
from leadscore.models.scorer import reason_mode
from leadscore.runtime import release_memory
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
    reasons: bool | str = True,
    explain_top: int | None = None,
    keep_columns: Sequence[str] = (),
    chunk_size: int = 50_000,
    progress: Callable[..., None] | None = None,
    strict: bool = False,
    dedupe_events: bool = False,
    threads: int = 0,
) -> BatchResult:
    """Score a CSV/Parquet lead list (optionally with an event log) into a CSV/Parquet file, streamed: the list is
    read, scored and written chunk by chunk and the log is kept in DuckDB on disk, so memory does not grow with
    either file."""
    # Fail before any work on an unsupported or unwritable target (the output or its rejects file).
    output_format(out_path)
    check_writable(out_path, rejects_path(Path(out_path)))
    leads = iter_table(leads_path, what="leads", rows=chunk_size)
    events = iter_table(events_path, what="events", rows=250_000) if events_path is not None else None
    return score_chunks(predictor, leads, out_path, events=events, as_of=as_of, reasons=reasons,
                        lead_ids=lambda: iter_table(leads_path, what="leads", rows=chunk_size),
                        explain_top=explain_top, keep_columns=keep_columns, progress=progress,
                        sources={"leads": str(leads_path), "events": str(events_path)}, strict=strict,
                        dedupe_events=dedupe_events, threads=threads)


def score_frames(
    predictor: Predictor,
    leads: pd.DataFrame,
    out_path: str | os.PathLike,
    *,
    events: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
    reasons: bool | str = True,
    explain_top: int | None = None,
    keep_columns: Sequence[str] = (),
    chunk_size: int = 50_000,
    progress: Callable[..., None] | None = None,
    sources: dict[str, str] | None = None,
    strict: bool = False,
    dedupe_events: bool = False,
    threads: int = 0,
) -> BatchResult:
    """Score leads (and their events) already in memory into a file; rejects go beside it (see `score_chunks`)."""
    output_format(out_path)
    check_writable(out_path, rejects_path(Path(out_path)))
    sources = {"leads": "leads", "events": "events", **(sources or {})}
    require_columns(leads, [predictor.spec.id_column], source=sources["leads"], what="id")
    leads = leads.reset_index(drop=True)
    return score_chunks(predictor, chunk_frame(leads, chunk_size), out_path,
                        lead_ids=lambda: chunk_frame(leads[[predictor.spec.id_column]], chunk_size),
                        events=None if events is None else chunk_frame(events.reset_index(drop=True), 1_000_000),
                        as_of=as_of, reasons=reasons, explain_top=explain_top, keep_columns=keep_columns,
                        progress=progress, sources=sources, strict=strict, dedupe_events=dedupe_events,
                        threads=threads)


def _reject_rows(leads: pd.DataFrame, positions: np.ndarray, reasons: Sequence[str] | str, offset: int
                 ) -> pd.DataFrame:
    rejected = leads.iloc[positions].copy()
    rejected.insert(0, "input_row", positions + 1 + offset)
    rejected[REJECT_REASON] = reasons
    return rejected


class _SeenIds:
    """Lead ids of earlier chunks, as 64-bit hashes in DuckDB (8 bytes a lead, whatever the list's length)."""

    def __init__(self, con) -> None:
        self.con = con
        con.execute("CREATE TABLE seen_ids (h UBIGINT)")

    def seen(self, ids: pd.Series) -> np.ndarray:
        hashes = pd.util.hash_array(ids.fillna("").to_numpy(dtype=object)).astype(np.uint64)
        frame = pd.DataFrame({"pos": np.arange(len(hashes), dtype=np.int64), "h": hashes})
        self.con.register("chunk_ids", frame)
        try:
            hit = self.con.execute("SELECT pos FROM chunk_ids WHERE h IN (SELECT h FROM seen_ids)").df()
            self.con.execute("INSERT INTO seen_ids SELECT DISTINCT h FROM chunk_ids")
        finally:
            self.con.unregister("chunk_ids")
        out = np.zeros(len(hashes), dtype=bool)
        out[np.asarray(hit["pos"], dtype=np.int64)] = True
        return out


def score_chunks(
    predictor: Predictor,
    leads: Iterable[Chunk],
    out_path: str | os.PathLike,
    *,
    events: Iterable[Chunk] | None = None,
    as_of: pd.Timestamp | str | None = None,
    reasons: bool | str = True,
    explain_top: int | None = None,
    keep_columns: Sequence[str] = (),
    progress: Callable[..., None] | None = None,
    sources: dict[str, str] | None = None,
    strict: bool = False,
    dedupe_events: bool = False,
    threads: int = 0,
    memory_limit: str = "256MB",
    lead_ids: Callable[[], Iterable[Chunk]] | None = None,
) -> BatchResult:
    """Score a lead list given as chunks (and its event log as chunks) into a file; rejects go beside it.

    The log is typed chunk by chunk into a DuckDB database on disk; each lead chunk is typed, gets its event
    features from it (the chunk's ids and as_of), is scored and appended to a temporary output, so memory holds one
    chunk at a time. The output and the rejects are renamed only when both are complete: a failure (or a kill)
    leaves neither, and no stale rejects beside a new output. Duplicate ids are found across chunks.
    `strict`: any input warning (see `serve.expectations`) is an error, and nothing is written.
    `reasons`: `top` (or True), `none` (or False) or `all` (see `ModelScorer.score_features`).
    `explain_top`: reasons only for the K highest-scored leads of the whole list (ties in input order), the other
    rows keep the reason columns empty: the list is scored without reasons, the running top K explained as it
    goes, and the staged scores are rewritten once at the end with the final K's reasons.
    `lead_ids`: the same chunks again (a fresh iterator, read first for their id column): each lead chunk then
    reads only its own events from the log, clustered by chunk once, instead of scanning the whole log.
    """
    out_path = Path(out_path)
    mode = reason_mode(reasons)
    if explain_top is not None and explain_top < 0:
        raise ValueError(f"explain_top: {explain_top} is negative")
    top = None if explain_top is None or mode == "none" else _TopReasons(predictor.scorer, explain_top, mode)
    rej_file = rejects_path(out_path)
    output_format(out_path)
    check_writable(out_path, rej_file)
    sources = {"leads": "leads", "events": "events", **(sources or {})}
    spec = predictor.spec
    id_col = spec.id_column
    stats: dict = {}
    store = None
    # With explain_top the scores are staged as Parquet (typed, lossless) and rewritten with the reasons at the end.
    writer = StagedWriter(out_path if top is None else out_path.with_name(f"{out_path.name}.unexplained.parquet"))
    rejects_writer: StagedWriter | None = None
    reference = (predictor.bundle.meta or {}).get("reference")
    drift = DriftAccumulator(reference) if reference else None
    unexplained: StagedWriter | None = None
    total = scored = rejected = events_rows = 0
    keep_missing: list[str] = []
    try:
        if events is not None:
            store = EventStore(spec, n_threads=threads or None, memory_limit=memory_limit)
            if lead_ids is not None and spec.has_events:
                for part, chunk in enumerate(lead_ids()):
                    if id_col in chunk.frame.columns:
                        store.map_leads(part, chunk.frame[id_col].astype("string").str.strip())
                    if progress is not None:
                        progress(chunk.first_row + len(chunk.frame),
                                 _estimate(chunk.first_row + len(chunk.frame), chunk.fraction), what="reading lead ids")
            for chunk in events:
                frame = chunk.frame
                bad = malformed_rows(frame)
                if bad:
                    stats["malformed_event_rows"] = stats.get("malformed_event_rows", 0) + len(bad)
                    frame = frame.drop(index=frame.index[sorted(bad)])
                events_rows += len(frame)
                if spec.has_events:
                    store.add(type_events(frame, spec, source=sources["events"]))
                else:
                    require_columns(frame, [spec.event_lead_id], source=sources["events"], what="event")
                if progress is not None:
                    progress(events_rows, _estimate(events_rows, chunk.fraction), what="reading events")
            if dedupe_events:
                store.deduplicate()
        seen = _SeenIds(store.con if store is not None else _scratch())
        first = True
        for part, chunk in enumerate(leads):
            frame = chunk.frame.reset_index(drop=True)
            offset = chunk.first_row
            if first:
                require_columns(frame, [id_col], source=sources["leads"], what="id")
                keep_missing = [c for c in keep_columns if c not in frame.columns]
                first = False
            total += len(frame)
            parts = []
            bad = malformed_rows(frame)
            # Rows cut short (or with extra fields) are rejected whole; duplicates across chunks too.
            drop = np.zeros(len(frame), dtype=bool)
            if bad:
                positions = np.asarray(sorted(bad), dtype=np.int64)
                parts.append(_reject_rows(frame, positions, [bad[int(p)] for p in positions], offset))
                drop[positions] = True
            ids = frame[id_col].astype("string").str.strip()
            present = (ids.notna() & (ids != "")).to_numpy()
            # A duplicate of a malformed row is still a duplicate of a lead the file already gave.
            dupes = ((ids.duplicated(keep="first").to_numpy() | seen.seen(ids)) & present) & ~drop
            if dupes.any():
                parts.append(_reject_rows(frame, np.flatnonzero(dupes), f"column {id_col!r}: duplicate lead id",
                                          offset))
                drop |= dupes
            keep_rows = np.flatnonzero(~drop)
            kept = frame.loc[~drop].reset_index(drop=True)
            kept.attrs.pop(MALFORMED, None)
            result = predictor.score_detailed(kept, None, as_of, reasons=mode if top is None else "none",
                                              keep_columns=keep_columns, source=sources["leads"],
                                              events_source=sources["events"], event_store=store,
                                              event_part=part if store is not None and store.parts else None)
            if top is not None:
                result = top.add(result, first_row=scored)
            writer.write(result.scores)
            scored += len(result.scores)
            if drift is not None and result.features is not None and len(result.scores):
                drift.add(result.features, result.scores["probability"].to_numpy())
            chunk_rejects = result.rejects
            if "input_row" in chunk_rejects.columns and len(chunk_rejects):
                # Chunk-relative row numbers back to the file's rows.
                chunk_rejects = chunk_rejects.assign(
                    input_row=keep_rows[chunk_rejects["input_row"].to_numpy(dtype=int) - 1] + 1 + offset)
            parts.append(chunk_rejects)
            parts = [p for p in parts if len(p)]
            if parts:
                out = pd.concat(parts, ignore_index=True).sort_values("input_row", kind="stable")
                if rejects_writer is None:
                    rejects_writer = StagedWriter(rej_file)
                    reject_columns = list(out.columns)
                out = out.reindex(columns=reject_columns)
                rejects_writer.write(out)
                rejected += len(out)
            for key, value in result.stats.items():
                if isinstance(value, int | float) and key not in ("rejected_rows", "scored_rows"):
                    stats[key] = stats.get(key, 0) + value
            header_only = frame.iloc[:0]
            del result, kept, frame, parts
            release_memory()
            if progress is not None:
                progress(total, _estimate(total, chunk.fraction), what="scoring leads")
        if first:
            raise DataError(f"{sources['leads']}: leads file has a header but no rows")
        if writer.rows == 0:  # every row rejected before scoring: an output with the usual columns and no rows
            empty = predictor.score_detailed(header_only, None, as_of, reasons=mode if top is None else "none",
                                             keep_columns=keep_columns, source=sources["leads"])
            writer.write(empty.scores if top is None else top.add(empty, first_row=0).scores)
        if top is not None:
            unexplained, writer = writer, StagedWriter(out_path)
            if progress is not None:
                progress(0, scored, what="adding reasons")
            top.rewrite(unexplained, writer, progress)
        if dedupe_events and stats.get("duplicate_events"):
            stats["duplicate_events_dropped"] = stats["duplicate_events"]
        staged = [writer.close()] + ([rejects_writer.close()] if rejects_writer is not None else [])
        result = finish_results(staged, out_path, spec=spec, total=total, scored=scored, rejected=rejected,
                                stats=stats, events_given=events is not None, events_rows=events_rows,
                                keep_missing=keep_missing, strict=strict, source=sources["leads"],
                                drift=None if drift is None else drift.result())
    except BaseException:
        writer.discard()
        if unexplained is not None:
            unexplained.discard()
        if rejects_writer is not None:
            rejects_writer.discard()
        raise
    finally:
        if store is not None:
            store.close()
    return result


class _TopReasons:
    """The reasons of the K highest-scored leads of a list scored chunk by chunk (ties in input order).

    Each chunk's leads that could still be among the K (a probability above the K-th kept so far) are explained;
    the K kept are pruned as the list goes by, so the work is about K (1 + ln(n / K)) explanations for a list in
    random order, and memory holds K rows of reasons."""

    def __init__(self, scorer, k: int, mode: str) -> None:
        self.scorer, self.k, self.mode = scorer, int(k), mode
        self.columns = scorer.reason_columns(mode)
        self.kept = pd.DataFrame({"row": np.array([], dtype=np.int64), "probability": np.array([], dtype=float)})

    def _threshold(self) -> float:
        return -np.inf if len(self.kept) < self.k else float(self.kept["probability"].min())

    def add(self, result, *, first_row: int):
        """The chunk's scores with empty reason columns; its candidates' reasons kept aside."""
        scores = result.scores
        p = scores["probability"].to_numpy(dtype=float)
        threshold = self._threshold()
        # A later lead with the K-th probability loses the tie to the earlier one.
        candidates = np.flatnonzero(p > threshold) if self.k else np.zeros(0, dtype=np.int64)
        if len(candidates) and result.features is not None:
            feats = result.features.iloc[candidates].reset_index(drop=True)
            explained = self.scorer.score_features(scores[self.scorer.spec.id_column].iloc[candidates],
                                                   feats, reasons=self.mode)
            found = explained[list(self.columns)].assign(row=candidates + first_row,
                                                         probability=p[candidates])
            kept = pd.concat([self.kept, found], ignore_index=True) if len(self.kept) else found
            self.kept = kept.sort_values(["probability", "row"], ascending=[False, True],
                                         kind="stable").head(self.k).reset_index(drop=True)
        blank = scores.copy()
        at = blank.columns.get_loc("band") + 1
        for offset, (name, dtype) in enumerate(self.columns.items()):
            blank.insert(at + offset, name, pd.Series(np.nan if dtype == "float64" else None, index=blank.index,
                                                      dtype=dtype))
        return type(result)(blank, result.rejects, result.stats, result.features)

    def rewrite(self, staged: StagedWriter, out: StagedWriter, progress) -> None:
        """Copy the staged scores into `out` with the reasons of the final K filled in."""
        kept = self.kept.set_index("row").sort_index()
        done, total = 0, staged.rows
        try:
            for frame in staged.read_back():
                rows = kept.index[(kept.index >= done) & (kept.index < done + len(frame))]
                if len(rows):
                    at = (rows - done).to_numpy()
                    for name in self.columns:
                        values = kept.loc[rows, name].to_numpy()
                        column = frame[name].astype(object) if self.columns[name] == "object" else frame[name]
                        column = column.to_numpy(copy=True)
                        column[at] = values
                        frame[name] = column
                out.write(frame)
                done += len(frame)
                if progress is not None:
                    progress(done, total, what="adding reasons")
        finally:
            staged.discard()


def _estimate(done: int, fraction: float) -> int:
    """Rows in the whole input, from the rows read so far and the share of the file they came from."""
    return done if fraction >= 1 else max(int(done / max(fraction, 1e-9)), done)


def _scratch():
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 1")
    return con


def finish_results(staged: list, out_path: Path, *, spec, total: int, scored: int, rejected: int, stats: dict,
                   events_given: bool, events_rows: int, keep_missing: Sequence[str] = (), strict: bool = False,
                   source: str = "leads", drift: dict | None = None) -> BatchResult:
    """Reconcile the counts, warn (or stop, `strict`, discarding the staged files), then commit the output and the
    rejects together."""
    rej_file = rejects_path(out_path)
    stats = {**stats, "rejected_rows": rejected, "scored_rows": scored}
    if scored + rejected != total:  # pragma: no cover - an invariant, not an input problem
        discard(staged)
        raise RuntimeError(f"lost rows: {total} in, {scored} scored + {rejected} rejected")
    warnings = input_warnings(spec, stats, scored_rows=scored, events_given=events_given,
                              events_rows=events_rows, keep_missing=keep_missing)
    if strict and warnings:
        discard(staged)
        more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
        raise DataError(f"{source}: --strict: {warnings[0]}{more}; nothing written")
    commit(staged)
    if not rejected and rej_file.exists():
        rej_file.unlink()  # a stale rejects file from an earlier run would mislead
    for line in warnings:
        log.info("%s: %s", source, line)
    return BatchResult(out_path, rej_file if rejected else None, total, scored, rejected, stats, tuple(warnings),
                       drift)


def write_results(scores: pd.DataFrame, rejects: pd.DataFrame, out_path: str | os.PathLike, *, spec, total: int,
                  stats: dict, events_given: bool, events_rows: int, keep_missing: Sequence[str] = (),
                  strict: bool = False, source: str = "leads", drift: dict | None = None) -> BatchResult:
    """`finish_results` for an output and rejects held in memory (the Spark engine collects its result)."""
    out_path = Path(out_path)
    staged = [stage_table(scores, out_path)]
    try:
        if len(rejects):
            staged.append(stage_table(rejects, rejects_path(out_path)))
    except BaseException:
        discard(staged)
        raise
    return finish_results(staged, out_path, spec=spec, total=total, scored=len(scores), rejected=len(rejects),
                          stats=stats, events_given=events_given, events_rows=events_rows,
                          keep_missing=keep_missing, strict=strict, source=source, drift=drift)
