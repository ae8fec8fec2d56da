"""Scoring throughput: rows/s of the predictor with reasons, without reasons, and of plain LightGBM prediction.

Usage: python benchmarks/score_throughput.py [--n-train 20000] [--n-score 100000]
Trains on a demo world, then scores a larger fresh list (leads + events, features built point-in-time).
Ratios against plain prediction in the same run are the figures to compare (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from leadscore.demo_world import generate_demo_world
from leadscore.features.config import TrainConfig
from leadscore.serve.predictor import Predictor
from leadscore.training.train import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-score", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    world = generate_demo_world(args.n_train, args.seed, n_fresh=args.n_score)
    result = train_model(world.leads, world.outcomes, world.events, TrainConfig(seed=args.seed))
    predictor = Predictor(result.bundle)
    leads, events = world.fresh_leads, world.fresh_events

    t0 = time.perf_counter()
    scored = predictor.score(leads, events, reasons=False)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    predictor.score(leads, events, reasons=True)
    t_reasons = time.perf_counter() - t0

    from leadscore.features.build import build_lead_frame, resolve_as_of, type_events, type_leads

    t0 = time.perf_counter()
    typed = type_leads(leads, predictor.spec, source="bench", strict=False, as_of_column="as_of")
    frame = build_lead_frame(typed.leads, type_events(events, predictor.spec, source="bench"), predictor.spec,
                             resolve_as_of(typed.leads, predictor.spec, None, source="bench"))
    t_features = time.perf_counter() - t0
    X = frame.X
    t0 = time.perf_counter()
    result.bundle.booster.predict(X, raw_score=True)
    t_predict = time.perf_counter() - t0

    n = len(scored)
    print(json.dumps({
        "n_leads": n, "n_events": len(events), "trees": result.bundle.booster.num_trees(),
        "features": len(predictor.spec.feature_names),
        "rows_per_s_score_with_reasons": round(n / t_reasons),
        "rows_per_s_score_without_reasons": round(n / t_plain),
        "rows_per_s_features_only": round(n / t_features),
        "rows_per_s_lightgbm_predict_only": round(n / t_predict),
        "reasons_cost_ratio": round(t_reasons / t_plain, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
