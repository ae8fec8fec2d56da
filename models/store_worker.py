"""`python -m leadscore.models.store_worker /path/mlflow.db`: create a new SQLite tracking store
(`registry.create_sqlite_store`) for `registry.prepare_store`, which started this process."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m leadscore.models.store_worker /path/to/mlflow.db\n")
        return 2
    if hasattr(os, "nice"):
        # The store is needed only once the run logs, later; meanwhile training wants every CPU, and a
        # low priority lets it have them first (this process still runs at once on a CPU training leaves idle).
        os.nice(10)
    from leadscore.models.registry import create_sqlite_store

    try:
        create_sqlite_store(Path(argv[0]))
    except Exception as exc:  # reported by the parent as one line; it then creates the store itself
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
