"""Exact reasons and probabilities against their peers on the same encoded matrix, in one run (read the ratios).

Usage: python benchmarks/explain_throughput.py [--n-train 20000] [--n-score 100000] [--shap-rows 5000]

Trains the demo model, builds the features of a fresh list once, then times on that matrix:
- the pattern-table TreeSHAP kernel (`models/treeshap.py`) against LightGBM's `pred_contrib` and
  `shap.TreeExplainer` (on `--shap-rows` rows: it is the slowest), with the largest difference to `pred_contrib`;
- probability-only scoring (`ModelScorer.predict_proba_features`: encoding, margin, calibration) against raw
  `Booster.predict` on the encoded matrix.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from leadscore.demo_world import generate_demo_world
from leadscore.features.build import build_lead_frame, resolve_as_of, type_events, type_leads
from leadscore.features.config import TrainConfig
from leadscore.models.scorer import ModelScorer
from leadscore.models.treeshap import TreeShapTables
from leadscore.training.train import train_model


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-score", type=int, default=100_000)
    parser.add_argument("--shap-rows", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    world = generate_demo_world(args.n_train, args.seed, n_fresh=args.n_score)
    result = train_model(world.leads, world.outcomes, world.events, TrainConfig(seed=args.seed))
    bundle = result.bundle
    spec = bundle.spec
    typed = type_leads(world.fresh_leads, spec, source="bench", strict=False, as_of_column="as_of")
    frame = build_lead_frame(typed.leads, type_events(world.fresh_events, spec, source="bench"), spec,
                             resolve_as_of(typed.leads, spec, None, source="bench"))
    X = np.ascontiguousarray(frame.X, dtype=np.float64)
    booster = bundle.booster
    n = len(X)

    t0 = time.perf_counter()
    tables = TreeShapTables.build(booster)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    tables.contributions(X[:10])  # compiles (or loads the cached machine code)
    t_compile = time.perf_counter() - t0
    t_kernel = _best(lambda: tables.contributions(X))
    t_contrib = _best(lambda: booster.predict(X, pred_contrib=True), repeat=1)
    diff = float(np.abs(tables.contributions(X) - booster.predict(X, pred_contrib=True)).max())

    import shap

    m = min(args.shap_rows, n)
    explainer = shap.TreeExplainer(booster)
    t_shap = _best(lambda: explainer.shap_values(X[:m]), repeat=1)

    scorer = ModelScorer(bundle)
    features = frame.features
    t_proba = _best(lambda: scorer.predict_proba_features(features))
    t_raw = _best(lambda: booster.predict(X, raw_score=True))

    dump = booster.dump_model()
    print(json.dumps({
        "n_rows": n, "trees": booster.num_trees(), "features": len(spec.feature_names),
        "max_leaves": max(t["num_leaves"] for t in dump["tree_info"]),
        "pattern_table_values": int(tables.table.size), "tables_build_s": round(t_build, 3),
        "first_call_s": round(t_compile, 3),
        "rows_per_s_kernel": round(n / t_kernel), "rows_per_s_pred_contrib": round(n / t_contrib),
        "rows_per_s_shap_tree_explainer": round(m / t_shap),
        "kernel_speedup_vs_pred_contrib": round(t_contrib / t_kernel, 2),
        "max_abs_diff_vs_pred_contrib": diff,
        "rows_per_s_probability_only": round(n / t_proba), "rows_per_s_booster_predict": round(n / t_raw),
        "probability_only_vs_booster_predict": round(t_raw / t_proba, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
