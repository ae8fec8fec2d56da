"""One exception type for bad input, so the CLI can print it as one line."""

from __future__ import annotations

from collections.abc import Sequence


class DataError(ValueError):
    """Bad input data. The message is one line naming the file, the column and, where it applies, rows."""


class ConfigError(ValueError):
    """Bad configuration (unknown key, wrong type, impossible value)."""


def describe_rows(rows: Sequence[int], limit: int = 5) -> str:
    """Format 1-based data row numbers for an error message: 'rows 3, 7, 9 (and 12 more)'."""
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"
