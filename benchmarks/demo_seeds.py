"""Demo quality across seeds: calibrated LightGBM vs the logistic baseline on the demo test slice.

Usage: python benchmarks/demo_seeds.py [--seeds 0 1 2 3 4 5] [--n-leads 20000]
Prints one JSON object: per-seed metrics and the worst case of each acceptance check.
"""

from __future__ import annotations

import argparse
import json
import time

from leadscore.demo_world import generate_demo_world
from leadscore.features.config import TrainConfig
from leadscore.training.train import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--n-leads", type=int, default=20_000)
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        world = generate_demo_world(args.n_leads, seed)
        truth = world.truth.set_index("lead_id")["true_probability"]
        result = train_model(world.leads, world.outcomes, world.events, TrainConfig(seed=seed), truth=truth)
        m, b, raw = result.metrics["model"], result.metrics["baseline"], result.metrics["model_uncalibrated"]
        rows.append({
            "seed": seed, "test_rows": int(m["n"]), "seconds": round(time.perf_counter() - start, 1),
            "model_auc": round(m["roc_auc"], 4), "baseline_auc": round(b["roc_auc"], 4),
            "model_ece": round(m["ece"], 4), "uncalibrated_ece": round(raw["ece"], 4),
            "baseline_ece": round(b["ece"], 4), "ece_noise_p95": round(m["ece_noise_p95"], 4),
            "model_brier": round(m["brier"], 5), "uncalibrated_brier": round(raw["brier"], 5),
            "model_mae_vs_truth": round(m["mae_vs_truth"], 4), "baseline_mae_vs_truth": round(b["mae_vs_truth"], 4),
        })
    summary = {
        "n_leads": args.n_leads,
        "min_auc_gain_over_baseline": min(r["model_auc"] - r["baseline_auc"] for r in rows),
        "max_model_ece": max(r["model_ece"] for r in rows),
        "seeds_with_ece_above_0.02": [r["seed"] for r in rows if r["model_ece"] > 0.02],
        "seeds_where_baseline_wins": [r["seed"] for r in rows if r["baseline_auc"] > r["model_auc"]],
    }
    print(json.dumps({"summary": summary, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
