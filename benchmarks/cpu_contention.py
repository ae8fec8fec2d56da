"""`leadscore demo` (20k leads) alone and beside a CPU hog: the slowdown, and what OpenMP's waiting policy does to it.

Usage: python benchmarks/cpu_contention.py [--workdir /tmp/leadscore-contention] [--hogs 1]

Runs the demo three times, each in a fresh process: on the idle machine; beside `--hogs` busy processes (one
spinning Python loop each) with the command's defaults (it sees the busy CPU and lets OpenMP threads sleep while
they wait); and beside the same hogs with OMP_WAIT_POLICY=ACTIVE (threads spin). Also fits one LightGBM model (300
trees, 46k rows, 2 threads) under the hogs with each policy. Ratios against the idle run of the same script are
the figures to read. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

FIT = """
import time, numpy as np, lightgbm as lgb
rng = np.random.default_rng(0)
X = rng.normal(size=(46000, 40)); y = (X[:, 0] + rng.normal(size=46000) > 0).astype(int)
t = time.perf_counter()
lgb.train({"objective": "binary", "verbose": -1, "num_threads": 2, "force_row_wise": True},
          lgb.Dataset(X, y), num_boost_round=300)
print(time.perf_counter() - t)
"""


def _hog(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def _timed(cmd: list[str], env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - started


def _demo(workdir: Path, env: dict) -> float:
    shutil.rmtree(workdir, ignore_errors=True)
    return _timed([sys.executable, "-m", "leadscore", "demo", "--workdir", str(workdir), "--json"], env)


def _fit(env: dict) -> float:
    proc = subprocess.run([sys.executable, "-c", FIT], capture_output=True, text=True, env=env)
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/leadscore-contention"))
    parser.add_argument("--hogs", type=int, default=1)
    parser.add_argument("--fit-only", action="store_true", help="Only the LightGBM fits (seconds, not minutes).")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    spin = {**base, "OMP_WAIT_POLICY": "ACTIVE"}
    passive = {**base, "OMP_WAIT_POLICY": "PASSIVE"}
    out: dict = {"cpus": os.cpu_count(), "hogs": args.hogs}
    if not args.fit_only:
        out["demo_idle_s"] = round(_demo(args.workdir, base), 1)
    out["fit_idle_spinning_s"] = round(_fit(spin), 2)
    out["fit_idle_openmp_default_s"] = round(_fit(base), 2)
    out["fit_idle_s"] = round(_fit(passive), 2)
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=_hog, args=(stop,), daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    try:
        if not args.fit_only:
            out["demo_beside_hog_s"] = round(_demo(args.workdir, base), 1)
        out["fit_beside_hog_passive_s"] = round(_fit(passive), 2)
        out["fit_beside_hog_openmp_default_s"] = round(_fit(base), 2)
        out["fit_beside_hog_spinning_s"] = round(_fit(spin), 2)
        if not args.fit_only:
            out["demo_beside_hog_spinning_s"] = round(_demo(args.workdir, spin), 1)
    finally:
        stop.set()
        for h in hogs:
            h.join(timeout=5)
    if not args.fit_only:
        out["demo_slowdown"] = round(out["demo_beside_hog_s"] / out["demo_idle_s"], 2)
        out["demo_slowdown_spinning"] = round(out["demo_beside_hog_spinning_s"] / out["demo_idle_s"], 2)
    fastest_idle = min(out["fit_idle_spinning_s"], out["fit_idle_openmp_default_s"], out["fit_idle_s"])
    for key in ("passive", "openmp_default", "spinning"):
        out[f"fit_slowdown_{key}"] = round(out[f"fit_beside_hog_{key}_s"] / fastest_idle, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
