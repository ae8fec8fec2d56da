"""`leadscore score` end to end on large generated lead lists: wall time, rows/s and peak memory (sampled every second).

Usage: python benchmarks/score_scale.py [--n-leads 1000000] [--workdir /tmp/leadscore-scale] [--kill-check]

Once per work folder: trains the demo model (`leadscore demo`), then writes a fresh lead list of `--n-leads` rows
with its events (CSV): the first million simulated from a seeded demo world, longer lists (a multiple of 1M) that
million repeated under other id prefixes (P1-, P2-, ...: distinct leads, the same distribution). Then
runs the CLI with exact top-3 reasons and, as its peer in the same run, with `--no-reasons`, each in its own
process, reading its resident memory (VmRSS of the process and its children) every second. `--kill-check` also
kills a run halfway and checks that neither the output nor the rejects file exists. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PIECE = 1_000_000


def _rss_kib(pid: int) -> int:
    """Resident memory of a process and its children, in KiB (0 once it has gone)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _run(cmd: list[str], *, kill_after: float | None = None, stderr_tail: int = 2000) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _rss_kib(proc.pid))
        if kill_after is not None and time.perf_counter() - started > kill_after:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        time.sleep(1.0)
    out, err = proc.communicate()
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(peak / 1024, 1),
            "returncode": proc.returncode, "stdout": out, "stderr": err[-stderr_tail:]}


def _leadscore(*args: str) -> list[str]:
    return [sys.executable, "-m", "leadscore", *args]


def _prepare(workdir: Path, n_leads: int) -> tuple[Path, Path, Path]:

    from leadscore.demo_world import generate_demo_world

    demo = workdir / "demo"
    if not (demo / "mlflow.db").exists():
        run = _run(_leadscore("demo", "--workdir", str(demo), "--json"))
        if run["returncode"] != 0:
            raise SystemExit(f"leadscore demo failed: {run['stderr']}")
    leads_path, events_path = workdir / f"leads_{n_leads}.csv", workdir / f"events_{n_leads}.csv"
    if not (leads_path.exists() and events_path.exists()):
        for path in (leads_path, events_path):
            path.unlink(missing_ok=True)
        first_leads, first_events = workdir / f"leads_{min(n_leads, PIECE)}.csv", workdir / \
            f"events_{min(n_leads, PIECE)}.csv"
        if not (first_leads.exists() and first_events.exists()):
            world = generate_demo_world(n_leads=2_000, seed=100, n_fresh=min(n_leads, PIECE))
            leads, events = world.fresh_leads.copy(), world.fresh_events.copy()
            leads["lead_id"] = "P0-" + leads["lead_id"].astype(str)
            events["lead_id"] = "P0-" + events["lead_id"].astype(str)
            leads.to_csv(first_leads, index=False)
            events.to_csv(first_events, index=False)
            del world, leads, events
        # Longer lists repeat the first million leads (and their events) under other id prefixes: the same
        # feature distribution, distinct leads, written in seconds instead of simulated again.
        for src, dst in ((first_leads, leads_path), (first_events, events_path)):
            if dst != src:
                _repeat(src, dst, -(-n_leads // PIECE))
    return demo, leads_path, events_path


def _repeat(src: Path, dst: Path, copies: int) -> None:
    """`dst`: the header of `src`, then its rows `copies` times with the id prefix P0- replaced by P<copy>-."""
    tmp = dst.with_name(dst.name + ".partial")
    with src.open("rb") as handle:
        header = handle.readline()
    with tmp.open("wb") as out:
        out.write(header)
        for copy in range(copies):
            with src.open("rb") as handle:
                handle.readline()
                carry = b""
                while block := handle.read(1 << 24):
                    block = carry + block
                    cut = block.rfind(b"\n") + 1
                    carry, block = block[cut:], block[:cut]
                    out.write(b"\n".join(b"P%d-" % copy + line[3:] if line.startswith(b"P0-") else line
                                          for line in block.split(b"\n")[:-1]) + b"\n")
                if carry:
                    out.write(b"P%d-" % copy + carry[3:] + b"\n")
    tmp.replace(dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-leads", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/leadscore-scale"))
    parser.add_argument("--kill-check", action="store_true")
    parser.add_argument("--skip-peer", action="store_true", help="Leave out the --no-reasons run.")
    args = parser.parse_args()
    if args.n_leads > PIECE and args.n_leads % PIECE:
        raise SystemExit(f"--n-leads: above {PIECE:,}, give a multiple of {PIECE:,}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    demo, leads_path, events_path = _prepare(args.workdir, args.n_leads)
    base = ["score", "--model", "models:/lead-conversion@champion", "--tracking-uri",
            f"sqlite:///{demo / 'mlflow.db'}", "--leads", str(leads_path), "--events", str(events_path),
            "--no-log-run", "--json"]
    results: dict = {"n_leads": args.n_leads, "leads_mb": round(leads_path.stat().st_size / 2**20, 1),
                     "events_mb": round(events_path.stat().st_size / 2**20, 1), "cpus": os.cpu_count()}
    runs = [("with_reasons", [])] + ([] if args.skip_peer else [("no_reasons", ["--no-reasons"])])
    for name, extra in runs:
        out = args.workdir / f"scored_{name}.csv"
        run = _run(_leadscore(*base, "--out", str(out), *extra))
        entry = {k: run[k] for k in ("seconds", "peak_rss_mb", "returncode")}
        if run["returncode"] == 0:
            summary = json.loads(run["stdout"])
            entry.update(input_rows=summary["input_rows"], scored_rows=summary["scored_rows"],
                         rejected_rows=summary["rejected_rows"],
                         rows_per_s=round(summary["input_rows"] / max(run["seconds"], 1e-9)),
                         reconciles=summary["input_rows"] == summary["scored_rows"] + summary["rejected_rows"])
        else:
            entry["stderr"] = run["stderr"]
        results[name] = entry
    if args.kill_check:
        out = args.workdir / "scored_killed.csv"
        out.unlink(missing_ok=True)
        half = results["with_reasons"]["seconds"] / 2
        _run(_leadscore(*base, "--out", str(out)), kill_after=half)
        rejects = out.with_name(f"{out.stem}.rejects{out.suffix}")
        results["kill_check"] = {"killed_after_s": round(half, 1), "output_exists": out.exists(),
                                 "rejects_exists": rejects.exists()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
