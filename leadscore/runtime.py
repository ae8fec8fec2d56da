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


def busy_cpus(seconds: float = 0.1) -> float | None:
    """CPUs kept busy by other work right now (from two reads of /proc/stat), or None where it cannot be read."""
    import time

    def read() -> tuple[float, float]:
        fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = read()
        time.sleep(seconds)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return None
    spent = total1 - total0
    if spent <= 0:
        return None
    return (1 - (idle1 - idle0) / spent) * (os.cpu_count() or 1)


def passive_waiting() -> bool:
    """On a machine that is already busy, let OpenMP threads sleep, not spin, while they wait (before LightGBM is
    first loaded); returns whether it did.

    Measured here (300 trees, 46k rows, 2 threads): idle, OpenMP's default spinning takes 1.6 s and sleeping 4.4 s;
    beside one busy process, spinning takes 5.3 s and sleeping 3.5 s. So the policy follows the machine at start:
    when other work keeps at least half a CPU busy (sampled for 0.1 s), threads sleep. Called by the command line
    only, never on import; a value the user set (OMP_WAIT_POLICY) is kept.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return os.environ["OMP_WAIT_POLICY"].upper() == "PASSIVE"
    busy = busy_cpus()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # pragma: no cover - no load average on this platform
            return False
    if busy >= 0.5:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return True
    return False


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc's malloc_trim), so a long streamed job's resident memory
    follows what it holds, not the largest chunk it ever held. A no-op where there is no glibc."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None
