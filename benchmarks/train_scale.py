"""`leadscore demo` end to end at several sizes: wall time, peak memory (sampled every second) and each stage's time.

Usage: python benchmarks/train_scale.py [--n-leads 20000 100000 1000000] [--workdir /tmp/leadscore-train-scale]

Each size runs in its own process (`leadscore demo --n-leads N`: generate the world, read it back, build
features, cross-fit or fit, write the report, log to MLflow, register, score the fresh list), reading the resident
memory of the process and its children every second. The stage times come from the command's own progress lines
(each names the elapsed seconds when the stage started). Prints JSON: one row per size.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from score_scale import _leadscore, _run  # noqa: E402 - the same sampler as the scoring benchmark

STAGE = re.compile(r"^> (?P<name>.+) \((?P<at>\d+) s\)$")


def _stages(stderr: str, total: float) -> dict[str, float]:
    """Seconds spent in each announced stage (from one progress line to the next, the last one to the end)."""
    marks = [(m["name"], float(m["at"])) for line in stderr.splitlines() if (m := STAGE.match(line.strip()))]
    out: dict[str, float] = {}
    for (name, at), nxt in zip(marks, [*marks[1:], ("end", total)], strict=True):
        out[name] = round(nxt[1] - at, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-leads", type=int, nargs="+", default=[20_000, 100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/leadscore-train-scale"))
    args = parser.parse_args()
    rows = []
    for n in args.n_leads:
        folder = args.workdir / f"demo-{n}"
        shutil.rmtree(folder, ignore_errors=True)
        run = _run(_leadscore("demo", "--workdir", str(folder), "--n-leads", str(n)), stderr_tail=100_000)
        row = {"n_leads": n, "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
               "returncode": run["returncode"], "stages": _stages(run["stderr"], run["seconds"])}
        if run["returncode"] == 0:
            summary = json.loads((folder / "summary.json").read_text())
            row.update({"learner": summary.get("learner"), "test_roc_auc": summary["metrics"]["model"]["roc_auc"],
                        "train_rows": summary["data"].get("train_rows")})
        else:
            row["error"] = run["stderr"][-500:]
        rows.append(row)
    print(json.dumps({"benchmark": "train_scale", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
