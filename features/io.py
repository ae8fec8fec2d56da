"""The only tabular I/O of the project: read and write CSV/Parquet, parse typed columns with clear errors.

Every reader returns text columns as read (CSV) or as stored (Parquet); typing happens through the
`parse_*` helpers so an error can name the file, the column and the first offending rows.
Every writer is atomic: it writes a temporary file beside the target and renames it.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.errors import DataError, describe_rows
from leadscore.runtime import threads

SUPPORTED = (".csv", ".parquet", ".pq", ".txt", ".tsv", ".xlsx", ".xlsm")
_DELIMITERS = ",;\t|"
_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}
MALFORMED = "malformed_rows"  # frame.attrs key: {0-based row position: reason} of rows read with a wrong field count


def table_format(path: str | os.PathLike) -> str:
    """'csv', 'parquet' or 'excel' from a file name; anything else is a DataError."""
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    if suffix in (".xlsx", ".xlsm"):
        return "excel"
    raise DataError(f"{path}: unsupported file type '{suffix or '(none)'}'; use .csv, .parquet or .xlsx")


def output_format(path: str | os.PathLike) -> str:
    """'csv' or 'parquet': the formats the product writes."""
    fmt = table_format(path)
    if fmt == "excel":
        raise DataError(f"{path}: output must be .csv or .parquet (Excel files are read, not written)")
    return fmt


def _sniff_binary(raw: bytes, path: Path) -> None:
    """Name the real format of a file that is not text: a spreadsheet or other binary saved with a .csv name."""
    if raw[:4] == b"PK\x03\x04":
        raise DataError(f"{path}: this is an Excel workbook (.xlsx), not a CSV file; save it as CSV, or give it "
                        f"the .xlsx extension to read its first sheet")
    if raw[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise DataError(f"{path}: this is an Excel 97-2003 (.xls) file, not a CSV file; save it as CSV or .xlsx")
    if raw[:4] == b"PAR1":
        raise DataError(f"{path}: this is a Parquet file; give it the .parquet extension")


def _utf16(raw: bytes) -> str | None:
    """The UTF-16 variant of a text file (by BOM, or by NUL bytes in every other position), else None."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    sample = raw[:4096]
    if len(sample) >= 4 and sample.count(0) >= len(sample) // 4:
        odd, even = sample[1::2].count(0), sample[0::2].count(0)
        if odd >= 0.9 * (len(sample) // 2):
            return "utf-16-le"
        if even >= 0.9 * (len(sample) // 2):
            return "utf-16-be"
    return None


def _decode(raw: bytes, path: Path) -> str:
    _sniff_binary(raw, path)
    utf16 = _utf16(raw)
    if utf16 is not None:
        try:
            return raw.decode(utf16).lstrip("\ufeff")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: looks like UTF-16 text but cannot be decoded ({exc.reason} at byte "
                            f"{exc.start})") from exc
    if b"\x00" in raw[:65536]:
        raise DataError(f"{path}: binary content (NUL bytes), not a CSV text file")
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path}: cannot decode the file as UTF-8 or Latin-1")  # pragma: no cover


def sniff_delimiter(sample: str) -> str:
    lines = [ln for ln in sample.splitlines()[:50] if ln.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        # Fall back to the candidate that splits the header most often.
        header = lines[0]
        return max(_DELIMITERS, key=header.count)


def _count_fields_block(data: np.ndarray, delimiter: int) -> np.ndarray:
    """Fields per non-blank line of a block of bytes that ends at a line end (or at the end of the file)."""
    # Line ends as the CSV reader sees them: "\n", "\r\n", or a lone "\r".
    cr = np.flatnonzero(data == 13)
    lone_cr = cr[(cr + 1 >= len(data)) | (data[np.minimum(cr + 1, len(data) - 1)] != 10)] if len(cr) else cr
    ends = np.flatnonzero(data == 10)
    if len(lone_cr):
        ends = np.union1d(ends, lone_cr)
    if len(data) and (not len(ends) or ends[-1] != len(data) - 1):
        ends = np.append(ends, len(data))
    starts = np.concatenate([[0], ends[:-1] + 1])
    delims = np.flatnonzero(data == delimiter)
    counts = np.searchsorted(delims, ends) - np.searchsorted(delims, starts) + 1
    # A line of only blanks (or an empty line, or a lone CR) is no record; only one-field lines can be blank.
    single = np.flatnonzero(counts == 1)
    if not len(single):
        return counts
    filled = np.flatnonzero(data > 32)
    blank = np.searchsorted(filled, ends[single]) == np.searchsorted(filled, starts[single])
    keep = np.ones(len(counts), dtype=bool)
    keep[single[blank]] = False
    return counts[keep]


def _field_counts(text: str, delimiter: str) -> np.ndarray:
    """Fields per record of a CSV text, header first, blank lines left out (as the CSV reader skips them).

    Without quote characters this is a vectorised count of delimiters between line ends; with quotes the
    standard library's reader splits the records (quoted delimiters and line breaks are not field breaks).
    """
    if '"' not in text:
        return _field_counts_bytes(np.frombuffer(text.encode("utf-8"), dtype=np.uint8), delimiter)
    counts = [len(rec) for rec in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
              if rec and not (len(rec) == 1 and not rec[0].strip())]
    return np.asarray(counts, dtype=np.int64)


def _blank_after_break(data: np.ndarray, delimiter: str) -> bool:
    """Whether a space or tab follows a delimiter or a line break in these bytes (a field pandas' reader would read
    with `skipinitialspace`): one vectorised pass, the blanks being few."""
    blanks = np.flatnonzero((data == 32) | (data == 9))
    blanks = blanks[blanks > 0]
    if not len(blanks):
        return False
    before = data[blanks - 1]
    return bool(((before == ord(delimiter)) | (before == 10) | (before == 13)).any())


def _any_blank_after_break(data: np.ndarray, delimiter: str, block: int = 1 << 24) -> bool:
    """`_blank_after_break` over bytes of any length, in blocks of 16 MB (bounded scratch)."""
    for start in range(0, len(data), block):
        if _blank_after_break(data[max(start - 1, 0):start + block], delimiter):
            return True
    return False


def _field_counts_bytes(data: np.ndarray, delimiter: str, block: int = 1 << 24) -> np.ndarray:
    """`_field_counts` of unquoted CSV bytes, in blocks of ~16 MB cut after a line break (bounded scratch)."""
    parts, start, n = [], 0, len(data)
    newline = np.uint8(10)
    while start < n:
        end = min(start + block, n)
        if end < n:  # cut after a line break, so no line spans two blocks
            breaks = np.flatnonzero(data[start:end] == newline)
            if len(breaks):
                end = start + int(breaks[-1]) + 1
            else:
                later = np.flatnonzero(data[end:] == newline)
                end = end + int(later[0]) + 1 if len(later) else n
        parts.append(_count_fields_block(data[start:end], ord(delimiter)))
        start = end
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _plain_csv(data: bytes, start: int = 0):
    """The frame `pd.read_csv(dtype=str, skipinitialspace=True)` gives of the UTF-8 CSV `data[start:]`, read by
    Arrow's multi-threaded parser straight from the bytes (five times faster, no decoded copy of the file), for
    the plain case only: no quote characters past the header line (a header of quoted names is fine, as Arrow's
    own writer puts it), no blank after a delimiter or at a line start, a header of distinct non-empty names and
    every row with the header's field count. Anything else (or bytes that are not UTF-8) returns None and takes
    the decoding reader. Returns an Arrow table (`_table_frame` makes the frame) so the caller can free the bytes
    first."""
    ends = [i for i in (data.find(b"\n", start), data.find(b"\r", start)) if i >= 0]
    end = min(ends, default=len(data))
    try:
        header = data[start:end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    delimiter = sniff_delimiter(data[start:start + 65536].decode("utf-8", errors="ignore"))
    if data.find(b'"', end) >= 0 or header[:1] in (" ", "\t") or f"{delimiter} " in header \
            or f"{delimiter}\t" in header:
        return None
    if '"' in header:
        if header.count('"') % 2:
            return None
        names = next(csv.reader([header], delimiter=delimiter))
    else:
        names = header.split(delimiter)
    if len(set(names)) != len(names) or any(not n.strip() for n in names):
        return None
    # A row with another field count than the header stops Arrow's parser (ArrowInvalid below), so the rows need
    # no count of their own here; blank lines are skipped by both readers.
    if _any_blank_after_break(np.frombuffer(data, dtype=np.uint8)[end:], delimiter):
        return None
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from pandas._libs.parsers import STR_NA_VALUES

    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)[start:]),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False, newlines_in_values=False),
            # Large strings: what pandas' Arrow-backed text columns hold, so the frame takes them without a copy.
            convert_options=pacsv.ConvertOptions(column_types={n: pa.large_string() for n in names},
                                                 null_values=sorted(STR_NA_VALUES), strings_can_be_null=True),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 22,
                                           use_threads=threads() > 1))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table if table.num_rows else None  # a header alone: the decoding reader's message


def _table_frame(table) -> pd.DataFrame:
    """A frame of text columns from `_plain_csv`'s table (the table is consumed), names stripped."""
    import pyarrow as pa

    dtype = pd.StringDtype(na_value=np.nan)
    frame = table.to_pandas(types_mapper=lambda t: dtype if t in (pa.string(), pa.large_string()) else None,
                            self_destruct=True)
    del table
    pa.default_memory_pool().release_unused()
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _utf8_plain_csv(raw: bytes, path: Path):
    """`_plain_csv` of a file's bytes when they are UTF-8 text (with or without BOM), else None."""
    _sniff_binary(raw, path)
    if _utf16(raw) is not None or b"\x00" in raw[:65536]:
        return None
    return _plain_csv(raw, 3 if raw.startswith(b"\xef\xbb\xbf") else 0)


def _read_csv(text: str, path: Path, what: str) -> pd.DataFrame:
    table = _plain_csv(text.encode("utf-8"))
    if table is not None:
        return _table_frame(table)
    delimiter = sniff_delimiter(text[:65536])
    counts = _field_counts(text, delimiter)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=True,
                            skipinitialspace=True, index_col=False, on_bad_lines="skip")
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: {what} file is empty") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: cannot parse as CSV with delimiter {delimiter!r} ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(counts) < 2:
        return frame
    expected, rows = int(counts[0]), counts[1:]
    long_rows = rows > expected
    if int((~long_rows).sum()) != len(frame):
        return frame  # the reader split records differently (odd quoting): keep what it read
    bad = np.flatnonzero(rows != expected)
    if not len(bad):
        return frame
    if len(bad) > len(rows) / 2 and len(rows) >= 2:
        # Most rows disagree with the header: the header (or the delimiter) is wrong, not the rows.
        values, counts = np.unique(rows, return_counts=True)
        typical = int(values[np.argmax(counts)])
        raise DataError(f"{path}: {len(bad):,} of {len(rows):,} rows have a field count other than the header's "
                        f"{expected} (most have {typical}); check the header line (line 1) and the delimiter "
                        f"{delimiter!r}")
    # Rows with too many fields were skipped by the reader: put them back in place (their first fields, so the
    # rejects file shows what the row held) so every row of the file keeps its position, and note every
    # malformed row for the rejects.
    if long_rows.any():
        frame.index = np.flatnonzero(~long_rows)
        frame = frame.reindex(pd.RangeIndex(len(rows)))
        wanted = set(np.flatnonzero(long_rows).tolist())
        records = (rec for rec in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
                   if rec and not (len(rec) == 1 and not rec[0].strip()))
        next(records, None)  # the header
        columns = list(frame.columns)
        for i, rec in enumerate(records):
            if i in wanted:
                frame.loc[i, columns] = [v.strip() if v.strip() else None for v in rec[:expected]]
    frame.attrs[MALFORMED] = {int(i): f"row has {int(rows[i])} of {expected} fields" for i in bad}
    return frame


def _check_input(path: Path, what: str) -> int:
    """A readable, non-empty input file (one-line errors otherwise); returns its size in bytes."""
    if not path.exists():
        raise DataError(f"{path}: {what} file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a {what} file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: {what} file is empty")
    return size


def read_table(path: str | os.PathLike, *, what: str = "table") -> pd.DataFrame:
    """Read a CSV (any common delimiter; UTF-8 with or without BOM, UTF-16 or Latin-1), Parquet or Excel file.

    CSV columns come back as text (missing cells as NA) so ids keep leading zeros; Parquet keeps its types.
    Rows with more or fewer fields than the header are kept in place and listed in `frame.attrs[MALFORMED]`
    (row position -> reason), so a scorer can reject them and a trainer can refuse them.
    Raises DataError for a missing, empty or unreadable file.
    """
    path = Path(path)
    fmt = table_format(path)
    _check_input(path, what)
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types
            raise DataError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc
    elif fmt == "excel":
        try:
            frame = pd.read_excel(path, dtype=str, sheet_name=0)
        except Exception as exc:  # openpyxl and zipfile raise several types
            raise DataError(f"{path}: cannot read as an Excel workbook ({type(exc).__name__}: {exc})") from exc
        frame.columns = [str(c).strip() for c in frame.columns]
    else:
        raw = path.read_bytes()
        table = _utf8_plain_csv(raw, path)
        if table is not None:
            del raw  # before the frame is made: the file's bytes and the frame are never held together
            frame = _table_frame(table)
        else:
            text = _decode(raw, path)
            del raw
            if not text.strip():
                raise DataError(f"{path}: {what} file is empty")
            frame = _read_csv(text, path, what)
    if frame.empty:
        raise DataError(f"{path}: {what} file has a header but no rows")
    dupes = pd.Index(frame.columns)[pd.Index(frame.columns).duplicated()].unique().tolist()
    if dupes:
        raise DataError(f"{path}: duplicate column names {dupes}")
    return frame


@dataclass(frozen=True)
class Chunk:
    """A piece of a table read in order: its rows (malformed ones listed in `attrs[MALFORMED]`, positions within the
    chunk), the position of its first row in the table (0-based), and the share of the input read so far."""

    frame: pd.DataFrame
    first_row: int
    fraction: float


def chunk_frame(frame: pd.DataFrame, rows: int, *, first_row: int = 0) -> Iterator[Chunk]:
    """A frame in memory as chunks of `rows` rows (its malformed-row notes split with it)."""
    total = len(frame)
    for start in range(0, max(total, 1), max(rows, 1)):
        yield Chunk(_slice(frame, start, start + rows), first_row + start, min((start + rows) / max(total, 1), 1.0))


def _record_end(data: bytes, *, first: bool = False) -> int:
    """Length of the longest (`first`: shortest) prefix of `data` that ends at a record boundary (a line end
    outside quotes), or 0 when there is none."""
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    quotes = np.flatnonzero(arr == 34)
    # A line end is a record end when an even number of quote characters precede it ("" counts twice).
    ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0] if len(quotes) else newlines
    if not len(ends):
        return 0
    return int(ends[0] if first else ends[-1]) + 1


def iter_table(path: str | os.PathLike, *, what: str = "table", rows: int = 100_000,
               block_bytes: int = 4 << 20) -> Iterator[Chunk]:
    """Read a table in order, in chunks of about `rows` rows, with the rules of `read_table` (same text, same
    malformed-row notes, same errors), so memory does not grow with the file.

    CSV is cut at record boundaries (line ends outside quotes) into blocks of ~`block_bytes` (4 MB), each parsed
    with the header, and the rows regrouped into chunks of `rows`; Parquet is read by record batches. UTF-16 text
    and Excel workbooks are read whole, then cut.
    """
    path = Path(path)
    fmt = table_format(path)
    size = _check_input(path, what)
    if fmt == "parquet":
        yield from _iter_parquet(path, what, rows)
        return
    with path.open("rb") as handle:
        head = handle.read(65536)
    if fmt == "excel" or _utf16(head) is not None or size <= block_bytes:
        yield from chunk_frame(read_table(path, what=what), rows)
        return
    _sniff_binary(head, path)
    if b"\x00" in head:
        raise DataError(f"{path}: binary content (NUL bytes), not a CSV text file")
    yield from _iter_csv(path, what, rows, block_bytes, size)


def _iter_parquet(path: Path, what: str, rows: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
        total = handle.metadata.num_rows
        if total == 0:
            raise DataError(f"{path}: {what} file has a header but no rows")
        done = 0
        for batch in handle.iter_batches(batch_size=rows):
            frame = batch.to_pandas()
            if done == 0:
                dupes = pd.Index(frame.columns)[pd.Index(frame.columns).duplicated()].unique().tolist()
                if dupes:
                    raise DataError(f"{path}: duplicate column names {dupes}")
            yield Chunk(frame, done, min((done + len(frame)) / total, 1.0))
            done += len(frame)
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several types
        raise DataError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc


def _decode_block(raw: bytes, path: Path, first: bool) -> str:
    for encoding in (("utf-8-sig" if first else "utf-8"), "cp1252", "latin-1"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path}: cannot decode the file as UTF-8 or Latin-1")  # pragma: no cover


def _iter_csv(path: Path, what: str, rows: int, block_bytes: int, size: int) -> Iterator[Chunk]:
    header: str | None = None
    done, consumed, carry = 0, 0, b""
    pending: list[pd.DataFrame] = []
    held = emitted = 0
    with path.open("rb") as handle:
        while True:
            data = handle.read(block_bytes)
            last = not data
            block = carry + data
            if not block:
                break
            cut = len(block) if last else _record_end(block)
            if cut == 0:  # one record longer than a block (or an open quote): read on
                carry = block
                continue
            body, carry = block[:cut], block[cut:]
            consumed += cut
            if header is None:
                end = _record_end(body, first=True) or len(body)
                header = _decode_block(body[:end], path, True)
                body = body[end:]
                if not header.strip():
                    raise DataError(f"{path}: {what} file is empty")
            text = _decode_block(body, path, False)
            if text.strip():
                frame = _read_csv(header + text, path, what)
                if done == 0:
                    dupes = pd.Index(frame.columns)[pd.Index(frame.columns).duplicated()].unique().tolist()
                    if dupes:
                        raise DataError(f"{path}: duplicate column names {dupes}")
                pending.append(frame)
                held += len(frame)
                done += len(frame)
                while held >= rows:  # chunks of `rows` rows whatever the block size (small blocks, small peaks)
                    chunk, pending, held = _take_rows(pending, rows)
                    yield Chunk(chunk, emitted, consumed / size)
                    emitted += len(chunk)
            if last:
                break
    if held:
        chunk, pending, held = _take_rows(pending, held)
        yield Chunk(chunk, emitted, 1.0)
    if done == 0:
        raise DataError(f"{path}: {what} file has a header but no rows")


def _take_rows(frames: list[pd.DataFrame], rows: int) -> tuple[pd.DataFrame, list[pd.DataFrame], int]:
    """The first `rows` rows of consecutive frames as one (malformed-row notes renumbered), and the rest."""
    taken, notes, count, rest = [], {}, 0, list(frames)
    while rest and count < rows:
        frame = rest.pop(0)
        need = rows - count
        if len(frame) > need:
            rest.insert(0, _slice(frame, need, len(frame)))
            frame = _slice(frame, 0, need)
        notes.update({count + i: r for i, r in malformed_rows(frame).items()})
        taken.append(frame)
        count += len(frame)
    out = taken[0] if len(taken) == 1 else pd.concat(taken, ignore_index=True)
    out = out.reset_index(drop=True)
    if notes:
        out.attrs[MALFORMED] = notes
    else:
        out.attrs.pop(MALFORMED, None)
    return out, rest, sum(len(f) for f in rest)


def _slice(frame: pd.DataFrame, start: int, stop: int) -> pd.DataFrame:
    piece = frame.iloc[start:stop].reset_index(drop=True)
    notes = {i - start: r for i, r in malformed_rows(frame).items() if start <= i < stop}
    if notes:
        piece.attrs[MALFORMED] = notes
    else:
        piece.attrs.pop(MALFORMED, None)
    return piece


def malformed_rows(frame: pd.DataFrame) -> dict[int, str]:
    """{0-based position: reason} of rows the reader found with a wrong number of fields (see read_table)."""
    return dict(frame.attrs.get(MALFORMED, {}))


def require_columns(frame: pd.DataFrame, columns: Iterable[str], *, source: str, what: str = "") -> None:
    """Raise a one-line DataError if any required column is missing."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, list(frame.columns)[:12]))
        label = f" {what}" if what else ""
        raise DataError(
            f"{source}: missing required{label} column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} (columns present: {have})"
        )


def _bad_rows(mask: np.ndarray | pd.Series) -> list[int]:
    return [int(i) + 1 for i in np.flatnonzero(np.asarray(mask))]


_SLASHED = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{2,4})")


def _day_first(text: pd.Series, source: str, column: str) -> bool:
    """Decide once per column whether 03/04/2025 means 3 April (day first) or 4 March.

    Parsing cell by cell would read a European export month-first whenever the day is 12 or less.
    """
    parts = text.dropna().str.extract(_SLASHED).dropna()
    if parts.empty:
        return False
    first, second = parts[0].astype(int), parts[1].astype(int)
    day_first, month_first = bool((first > 12).any()), bool((second > 12).any())
    if day_first and month_first:
        raise DataError(f"{source}: column {column!r}: dates mix day-first and month-first order "
                        f"(e.g. {text.dropna()[first.index[first > 12][0]]!r} and "
                        f"{text.dropna()[second.index[second > 12][0]]!r})")
    return day_first


TIMESTAMP_SLICE_ROWS = 1 << 21


def _arrow_iso_timestamps(text: pd.Series) -> pd.Series | None:
    """Stripped text that is all ISO 8601 with a zone offset, or all without one (read as UTC), parsed by Arrow
    (fifteen times faster than pandas); None when any value is neither, or offsets and none are mixed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pa.array(text.astype(pd.StringDtype("pyarrow")).array)
    micros = np.empty(len(values), dtype=np.int64)
    for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            # In slices: the parse of one slice at a time beside the result (bounded scratch on a large log).
            for start in range(0, len(values), TIMESTAMP_SLICE_ROWS):
                parsed = pc.cast(values.slice(start, TIMESTAMP_SLICE_ROWS), target).cast(pa.int64())
                part = parsed.to_numpy(zero_copy_only=False)
                if parsed.null_count:
                    part = np.where(pc.is_null(parsed).to_numpy(zero_copy_only=False), np.iinfo(np.int64).min, part)
                micros[start:start + len(part)] = part
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        stamps = micros.view("datetime64[us]")
        return pd.Series(stamps, index=text.index, name=text.name).dt.tz_localize("UTC")
    return None


STRIP_CHECK_ROWS = 1 << 22


def strip_text(values: pd.Series) -> pd.Series:
    """Text without surrounding blanks. A long column (`STRIP_CHECK_ROWS` or more) with none to strip is kept as it
    is: the check costs about three times the strip, and saves a copy of a large log; shorter ones are stripped."""
    text = values.astype("string")
    if len(text) >= STRIP_CHECK_ROWS and isinstance(text.array, pd.arrays.ArrowStringArray):
        import pyarrow as pa
        import pyarrow.compute as pc

        # Any character `str.strip` could remove (ASCII and Unicode spaces and separators) at either end.
        blank = r"[\s\pZ\x0b\x1c-\x1f\x85]"
        if not pc.any(pc.match_substring_regex(pa.array(text.array), f"^{blank}|{blank}$")).as_py():
            return text
    return text.str.strip()


def parse_timestamps(values: pd.Series, *, source: str, column: str, allow_missing: bool = True) -> pd.Series:
    """Parse a column to UTC timestamps (naive values are read as UTC). One-line DataError on failure."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.dt.tz_localize("UTC")
    text = strip_text(values)
    empty = (text == "").to_numpy(dtype=bool, na_value=False)
    if empty.any():
        text = text.mask(empty)
    fast = _arrow_iso_timestamps(text)
    if fast is not None:
        return fast
    # ISO 8601 first (ten times faster on millions of events); whatever it cannot read, by format inference.
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    rest = parsed.isna() & text.notna()
    if rest.any():
        parsed = parsed.astype("datetime64[ns, UTC]")
        parsed[rest] = pd.to_datetime(text[rest], errors="coerce", utc=True, format="mixed",
                                      dayfirst=_day_first(text[rest], source, column))
    bad = parsed.isna() & text.notna()
    if bad.any():
        rows = _bad_rows(bad)
        example = text[bad].iloc[0]
        raise DataError(
            f"{source}: column {column!r}: cannot parse {example!r} as a date/time ({describe_rows(rows)})"
        )
    if not allow_missing and parsed.isna().any():
        raise DataError(f"{source}: column {column!r}: missing date/time ({describe_rows(_bad_rows(parsed.isna()))})")
    return parsed.astype("datetime64[us, UTC]")


_FORMATTED = re.compile(
    r"^[-+]?\s*(?:[$€£¥]|usd|eur|gbp|r\$)?\s*[-+]?\d{1,3}(?:[,.\s'’]\d{3})+(?:[.,]\d+)?\s*(?:[$€£¥%]|usd|eur|gbp)?$"
    r"|^[-+]?\s*(?:[$€£¥]|usd|eur|gbp|r\$)\s*[-+]?\d+(?:[.,]\d+)?$|^[-+]?\d+(?:[.,]\d+)?\s*(?:[$€£¥]|usd|eur|gbp)$",
    re.IGNORECASE,
)


def looks_formatted(values: pd.Series, share: float = 0.95) -> str | None:
    """An example cell if the column holds numbers written with currency or thousands separators, else None."""
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    if text.empty:
        return None
    matches = text.str.match(_FORMATTED) | text.str.fullmatch(r"[-+]?\d+(?:,\d+)?")
    formatted = matches & ~text.str.fullmatch(r"[-+]?\d+(?:\.\d+)?")
    if matches.mean() >= share and formatted.any():
        return str(text[formatted].iloc[0])
    return None


def _strip_format(text: pd.Series, decimal: str) -> pd.Series:
    cleaned = text.str.replace(r"(?i)usd|eur|gbp|r\$|[$€£¥%\s'’]", "", regex=True)
    thousands = "." if decimal == "," else ","
    cleaned = cleaned.str.replace(thousands, "", regex=False)
    return cleaned.str.replace(",", ".", regex=False) if decimal == "," else cleaned


def parse_numbers(
    values: pd.Series, *, source: str, column: str, decimal: str | None = None
) -> tuple[pd.Series, pd.Series]:
    """Parse a column to float64. Returns (numbers, bad_mask): cells that are present but not numbers.

    With `decimal` ("," or "."), currency symbols and thousands separators are removed first
    ("$1,200.50" or "1.200,50 EUR" -> 1200.5).
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64"), pd.Series(False, index=values.index)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64"), pd.Series(False, index=values.index)
    text = values.astype("string").str.strip()
    text = text.mask(text == "")
    lowered = text.str.lower()
    numeric_text = _strip_format(text, decimal) if decimal else text
    numbers = pd.to_numeric(numeric_text, errors="coerce").astype("float64")
    # Booleans written as words are common in CRM exports.
    numbers = numbers.mask(lowered.isin(_TRUE) & numbers.isna(), 1.0)
    numbers = numbers.mask(lowered.isin(_FALSE) & numbers.isna(), 0.0)
    bad = numbers.isna() & text.notna()
    return numbers, bad.fillna(False).astype(bool)


_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INFINITY = re.compile(r"[+-]?(?:inf|infinity)", re.IGNORECASE)
_FORMAT_CHARS = re.compile(r"(?i)usd|eur|gbp|r\$|[$€£¥%\s'’]")


def parse_number(value, *, decimal: str | None = None, na_values: Iterable[str] = ()) -> float | None:
    """One cell as `parse_numbers` reads it: a float (NaN = missing), or None when present but not a number.

    The scalar twin of `parse_numbers`, for scoring one lead without pandas (tests hold the two equal).
    """
    if value is None or value is pd.NA:
        return float("nan")
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    text = str(value).strip()
    if text == "" or text in na_values:
        return float("nan")
    numeric = text
    if decimal:
        numeric = _FORMAT_CHARS.sub("", numeric).replace("." if decimal == "," else ",", "")
        if decimal == ",":
            numeric = numeric.replace(",", ".")
    if _NUMBER.fullmatch(numeric):
        return float(numeric)
    if _INFINITY.fullmatch(numeric):
        return float("-inf") if numeric.startswith("-") else float("inf")
    lowered = text.lower()
    if lowered in _TRUE:
        return 1.0
    if lowered in _FALSE:
        return 0.0
    return None


_FORMULA = re.compile(r"^[=+\-@\t\r]")
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula get a leading apostrophe (OWASP's CSV-injection advice).

    Cells starting with =, +, -, @, tab or carriage return in text columns (and such column names) are
    prefixed with ', numbers and numeric columns are untouched ('-12.5' stays a number).
    """
    out = frame
    for pos in range(frame.shape[1]):
        values = frame.iloc[:, pos]
        if not (pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values.dtype)):
            continue
        text = values.astype("string")
        risky = text.str.contains(_FORMULA, na=False) & ~text.str.fullmatch(_PLAIN_NUMBER, na=False)
        if risky.any():
            if out is frame:
                out = frame.copy()
            out.isetitem(pos, values.astype("object").mask(risky, "'" + text.astype("object")))
    names = [f"'{c}" if isinstance(c, str) and _FORMULA.match(c) and not _PLAIN_NUMBER.match(c) else c
             for c in frame.columns]
    if names != list(frame.columns):
        out = out.copy() if out is frame else out
        out.columns = names
    return out


_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[^.]+\.(?:tmp|probe)$")
_STALE_SECONDS = 3600


def _umask() -> int:
    """The process umask, read without changing it (Linux), else by the set-and-restore idiom."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> int:
    """Remove temporary files an interrupted write of `path` left beside it (their process is gone)."""
    removed = 0
    try:
        candidates = [p for pattern in ("tmp", "probe")
                      for p in path.parent.glob(f".{glob.escape(path.name)}.*.{pattern}")]
    except OSError:
        return 0
    for tmp in candidates:
        match = _TMP.match(tmp.name)
        try:
            if match and match["name"] == path.name:
                stale = not process_alive(int(match["pid"]))
            else:  # an older naming without the writer's pid: stale once it is an hour old
                stale = time.time() - tmp.stat().st_mtime > _STALE_SECONDS
            if stale:
                tmp.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def _atomic_target(path: Path) -> tuple[int, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    # mkstemp creates 0600; the finished file gets the mode any new file gets here (0644 under umask 022).
    os.chmod(tmp, 0o666 & ~_umask())
    return fd, Path(tmp)


def check_writable(*paths: str | os.PathLike) -> None:
    """Fail before any work when a target cannot be written: a folder in its place, or no write permission."""
    for target in map(Path, paths):
        if target.is_dir():
            raise DataError(f"{target}: is a folder; give a file name to write")
        folder = target.parent
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise DataError(f"{target}: cannot create folder {folder} ({existing} is a file)")
        try:  # a real probe: permission bits say nothing for root, a read-only mount or a full disk
            fd, probe = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".probe", dir=existing)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise DataError(f"{target}: cannot write to folder {existing} ({exc.strerror or exc})") from exc


WRITE_SLICE_ROWS = 1 << 19


def _write_frame(frame: pd.DataFrame, tmp: Path, fmt: str) -> None:
    if fmt == "parquet":
        frame.to_parquet(tmp, index=False)
    else:
        # In slices: the text of a slice (formatted times, neutralised cells, its CSV bytes) is all that is held at
        # once, so writing a log of tens of millions of events needs no more memory than the frame itself.
        for start in range(0, max(len(frame), 1), WRITE_SLICE_ROWS):
            _write_csv(frame.iloc[start:start + WRITE_SLICE_ROWS], tmp, append=start > 0)


def _write_csv(frame: pd.DataFrame, target: Path, *, append: bool) -> None:
    """Write (or append, without the header) a frame as CSV: formula cells neutralised, UTC times as text.

    Text and number columns go through Arrow's writer (ten times faster than pandas'; every text value quoted
    only when one in the chunk needs it); other column types through pandas'."""
    safe = neutralise_formulas(_utc_text(frame))
    data = _arrow_csv_bytes(safe, header=not append)
    if data is not None:
        with target.open("ab" if append else "wb") as handle:
            handle.write(data)
        return
    # The csv writer quotes a cell with "\n" but not one with a lone "\r", which a reader takes for a line
    # break: such a file is written with every text cell quoted, so no row is ever split.
    quoting = csv.QUOTE_NONNUMERIC if _has_carriage_return(safe) else csv.QUOTE_MINIMAL
    safe.to_csv(target, index=False, date_format="%Y-%m-%dT%H:%M:%S%z", quoting=quoting,
                mode="a" if append else "w", header=not append)


def _arrow_csv_bytes(frame: pd.DataFrame, *, header: bool) -> bytes | None:
    """CSV bytes of a frame of text, integer and float columns (None for any other column type or name)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not all(isinstance(c, str) for c in frame.columns) or frame.columns.duplicated().any():
        return None
    arrays = []
    for col in frame.columns:
        values = frame[col]
        dtype = values.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
            arrays.append(pa.array(values.to_numpy()))
        elif isinstance(dtype, pd.StringDtype) or (pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(
                values, skipna=True) in ("string", "empty")):
            arrays.append(pa.array(values.astype(pd.StringDtype("pyarrow")).array))
        else:
            return None
    table = pa.Table.from_arrays(arrays, names=list(frame.columns))
    for style in ("none", "needed"):  # unquoted unless a value holds a delimiter, quote or line break
        sink = io.BytesIO()
        try:
            pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=header, quoting_style=style))
        except pa.ArrowInvalid:
            continue
        return sink.getvalue()
    return None  # pragma: no cover - quoting every text value always writes


def _utc_text(frame: pd.DataFrame) -> pd.DataFrame:
    """UTC time columns as the text `date_format="%Y-%m-%dT%H:%M:%S%z"` gives (`2025-09-01T00:12:32+0000`), made
    by numpy in one pass: pandas formats them cell by cell, the slowest part of writing a million scores."""
    columns = [c for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)
               and str(frame[c].dtype.tz) in ("UTC", "utc")]
    if not columns:
        return frame
    out = frame.copy()
    for col in columns:
        values = out[col].dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
        text = np.char.add(np.datetime_as_string(values, unit="s"), "+0000").astype(object)
        text[np.isnat(values)] = None
        out[col] = text
    return out


def _has_carriage_return(frame: pd.DataFrame) -> bool:
    for pos in range(frame.shape[1]):
        values = frame.iloc[:, pos]
        if pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values.dtype):
            if values.astype("string").str.contains("\r", regex=False, na=False).any():
                return True
    return any(isinstance(c, str) and "\r" in c for c in frame.columns)


def stage_table(frame: pd.DataFrame, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write a table to a temporary file beside `path`; `commit` renames it. Returns (temporary, target)."""
    path = Path(path)
    fmt = output_format(path)
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        _write_frame(frame, tmp, fmt)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, path


class StagedWriter:
    """A table written chunk by chunk to a temporary file beside `path` (CSV or Parquet by extension), renamed by
    `commit([writer.close()])` only when complete. Every chunk must have the first chunk's columns.

    Chunks are written as `write_table` writes a whole table (formula cells neutralised in CSV); Parquet chunks
    are cast to the first chunk's schema (text columns always as strings, so an all-empty chunk fits).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.fmt = output_format(self.path)
        fd, self.tmp = _atomic_target(self.path)
        os.close(fd)
        self.rows = 0
        self._columns: list | None = None
        self._parquet = None
        self._schema = None
        self._started = False

    def write(self, frame: pd.DataFrame) -> None:
        if self._columns is None:
            self._columns = list(frame.columns)
        elif list(frame.columns) != self._columns:
            raise ValueError(f"{self.path}: chunk columns {list(frame.columns)} differ from {self._columns}")
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            frame = frame.copy()
            for col in frame.columns:
                if pd.api.types.is_object_dtype(frame[col].dtype):
                    frame[col] = frame[col].astype("string")
            table = pa.Table.from_pandas(frame, preserve_index=False, schema=self._schema)
            if self._parquet is None:
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(self.tmp, self._schema)
            self._parquet.write_table(table)
        else:
            _write_csv(frame, self.tmp, append=self._started)
        self._started = True
        self.rows += len(frame)

    def close(self) -> tuple[Path, Path]:
        """Finish the file; returns (temporary, target) for `commit` or `discard`."""
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        return self.tmp, self.path

    def read_back(self, rows: int = 200_000) -> Iterator[pd.DataFrame]:
        """The rows written so far, in order, `rows` at a time (Parquet staging only; the file is closed first)."""
        import pyarrow.parquet as pq

        if self.fmt != "parquet":
            raise ValueError(f"{self.path}: only a Parquet staging file is read back")
        self.close()
        for batch in pq.ParquetFile(self.tmp).iter_batches(batch_size=rows):
            yield batch.to_pandas()

    def discard(self) -> None:
        if self._parquet is not None:
            try:
                self._parquet.close()
            except Exception:  # already failing: the file is removed either way
                pass
            self._parquet = None
        self.tmp.unlink(missing_ok=True)


def commit(staged: Iterable[tuple[Path, Path]]) -> list[Path]:
    """Rename staged temporaries onto their targets, all or (on an error before the first rename) none."""
    staged = list(staged)
    try:
        for tmp, _ in staged:
            if not tmp.exists():
                raise FileNotFoundError(tmp)
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [target for _, target in staged]


def discard(staged: Iterable[tuple[Path, Path]]) -> None:
    """Remove staged temporaries that will not be committed."""
    for tmp, _ in staged:
        tmp.unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write CSV or Parquet (by extension) atomically: temp file in the same folder, then rename.

    CSV text cells that a spreadsheet would run as formulas are neutralised (see `neutralise_formulas`).
    """
    return commit([stage_table(frame, path)])[0]


def write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write a binary file (a PNG) atomically."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (JSON, HTML, YAML) atomically, as UTF-8."""
    return write_bytes(text.encode("utf-8"), path)


def apply_na_values(frame: pd.DataFrame, na_values: Iterable[str]) -> pd.DataFrame:
    """Treat placeholder cells ("Select", "N/A - not given") as missing in every text column."""
    markers = [str(v) for v in na_values]
    out = frame.copy()  # always a new frame: callers type its columns in place
    if not markers:
        return out
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col].dtype) or pd.api.types.is_string_dtype(out[col].dtype):
            stripped = out[col].astype("string").str.strip()
            out[col] = out[col].mask(stripped.isin(markers))
    return out
