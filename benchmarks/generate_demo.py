"""Time generate_demo_world at scale and print one JSON line (n_leads, n_events, seconds, peak RSS)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from leadscore.demo_world import generate_demo_world


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-leads", type=int, default=1_000_000)
    parser.add_argument("--n-fresh", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    world = generate_demo_world(args.n_leads, args.seed, n_fresh=args.n_fresh)
    seconds = time.perf_counter() - started
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak / 1024**2 if sys.platform == "darwin" else peak / 1024
    print(
        json.dumps(
            {
                "n_leads": len(world.leads),
                "n_events": len(world.events),
                "n_fresh": len(world.fresh_leads),
                "seconds": round(seconds, 3),
                "leads_per_second": round(len(world.leads) / seconds),
                "peak_rss_mb": round(peak_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
