"""The only tabular I/O of the project: read and write CSV/Parquet, parse typed columns with clear errors.

Every reader returns text columns as read (CSV) or as stored (Parquet); typing happens through the
`parse_*` helpers so an error can name the file, the column and the first offending rows.
Every writer is atomic: it writes a temporary file beside the target and renames it.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.errors import DataError, describe_rows

SUPPORTED = (".csv", ".parquet", ".pq", ".txt", ".tsv")
_DELIMITERS = ",;\t|"
_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


def table_format(path: str | os.PathLike) -> str:
    """'csv' or 'parquet' from a file name; anything else is a DataError."""
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    raise DataError(f"{path}: unsupported file type '{suffix or '(none)'}'; use .csv or .parquet")


def _decode(raw: bytes, path: Path) -> str:
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path}: cannot decode the file as UTF-8 or Latin-1")  # pragma: no cover


def _sniff_delimiter(sample: str) -> str:
    lines = [ln for ln in sample.splitlines()[:50] if ln.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        # Fall back to the candidate that splits the header most often.
        header = lines[0]
        return max(_DELIMITERS, key=header.count)


def read_table(path: str | os.PathLike, *, what: str = "table") -> pd.DataFrame:
    """Read a CSV (any common delimiter, UTF-8 with or without BOM, or Latin-1) or Parquet file.

    CSV columns come back as text (missing cells as NA) so ids keep leading zeros; Parquet keeps its types.
    Raises DataError for a missing, empty or unreadable file.
    """
    path = Path(path)
    fmt = table_format(path)
    if not path.exists():
        raise DataError(f"{path}: {what} file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: {what} file is empty")
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types
            raise DataError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from exc
    else:
        text = _decode(path.read_bytes(), path)
        if not text.strip():
            raise DataError(f"{path}: {what} file is empty")
        delimiter = _sniff_delimiter(text[:65536])
        try:
            frame = pd.read_csv(
                io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=True, skipinitialspace=True
            )
        except pd.errors.EmptyDataError as exc:
            raise DataError(f"{path}: {what} file is empty") from exc
        except pd.errors.ParserError as exc:
            raise DataError(f"{path}: cannot parse as CSV with delimiter {delimiter!r} ({exc})") from exc
        frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError(f"{path}: {what} file has a header but no rows")
    dupes = pd.Index(frame.columns)[pd.Index(frame.columns).duplicated()].unique().tolist()
    if dupes:
        raise DataError(f"{path}: duplicate column names {dupes}")
    return frame


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


def parse_timestamps(values: pd.Series, *, source: str, column: str, allow_missing: bool = True) -> pd.Series:
    """Parse a column to UTC timestamps (naive values are read as UTC). One-line DataError on failure."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.dt.tz_localize("UTC")
    text = values.astype("string").str.strip()
    text = text.mask(text == "")
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed", dayfirst=_day_first(text, source,
                                                                                                  column))
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


def _atomic_target(path: Path) -> tuple[int, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    return fd, Path(tmp)


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write CSV or Parquet (by extension) atomically: temp file in the same folder, then rename."""
    path = Path(path)
    fmt = table_format(path)
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


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
