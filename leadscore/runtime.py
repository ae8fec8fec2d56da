"""How many threads the heavy parts (LightGBM, DuckDB, the TreeSHAP kernel) use, and how they share a machine.

The default is the CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota (a container
with `--cpus 2` on a 64-core host gets 2), never the host's core count. `set_threads(n)` (`--threads N`) overrides
it for the process. Nothing is read or set at import time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_threads: int | None = None


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup CPU quota of this process (v2 `cpu.max`, v1 `cfs_quota_us`), or None."""
    limits = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2]
        if controllers == "":  # cgroup v2: walk up, the tightest cpu.max wins
            here = Path("/sys/fs/cgroup") / path.lstrip("/")
            for folder in [here, *here.parents]:
                if not str(folder).startswith("/sys/fs/cgroup"):
                    break
                try:
                    quota, period = (folder / "cpu.max").read_text().split()[:2]
                except (OSError, ValueError):
                    continue
                if quota != "max" and float(period) > 0:
                    limits.append(float(quota) / float(period))
        elif "cpu" in controllers.split(","):
            base = Path("/sys/fs/cgroup") / controllers
            for folder in (base / path.lstrip("/"), base):
                try:
                    quota = float((folder / "cpu.cfs_quota_us").read_text())
                    period = float((folder / "cpu.cfs_period_us").read_text())
                except (OSError, ValueError):
                    continue
                if quota > 0 and period > 0:
                    limits.append(quota / period)
                    break
    return min(limits) if limits else None


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by the cgroup quota (rounded down, at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, math.floor(quota + 1e-9)))
    return max(1, count)


def set_threads(n: int | None) -> int:
    """Use `n` threads from now on (None or 0: the available CPUs); returns the number in force."""
    global _threads
    if n is not None and n < 0:
        raise ValueError("threads must be >= 0")
    _threads = None if not n else int(n)
    return threads()


def threads() -> int:
    """Threads for LightGBM, DuckDB and the TreeSHAP kernel."""
    return _threads if _threads else available_cpus()


def passive_waiting() -> None:
    """Let OpenMP threads sleep, not spin, while they wait for work (before LightGBM is first loaded).

    With spinning threads, a fit sharing its cores with any other busy process runs many times slower than on the
    CPU left to it (measured in benchmarks/cpu_contention.py). Called by the command line only, never on import;
    a value the user set is kept.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
