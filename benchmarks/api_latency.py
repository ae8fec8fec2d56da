"""Latency of `leadscore serve`: single-lead requests with 10 events each, over real HTTP on 127.0.0.1.

    python benchmarks/api_latency.py [--model FOLDER_OR_URI] [--requests 500]

Measures p50/p99 per request at 1 and 32 concurrent clients, with and without reasons, then 1,000 requests sent
at once (errors counted). Peers in the same run: the same lead scored in-process by the API's scorer (no HTTP)
and by the batch path (`Predictor.score`), so the HTTP overhead and the gain over the batch path read as ratios.
Goals: p50 <= 5 ms and p99 <= 20 ms at 1 client; no error at 1,000 concurrent. Prints one JSON object.
Needs the bench extra (aiohttp): pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

AS_OF = "2025-10-01T00:00:00+00:00"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _demo_model(folder: Path):
    """A model trained on a small demo world, saved as a bundle folder; returns (folder, leads, events)."""
    from leadscore.demo_world import generate_demo_world
    from leadscore.features.config import TrainConfig
    from leadscore.training.train import train_model

    world = generate_demo_world(n_leads=5_000, seed=1, n_fresh=500)
    result = train_model(world.leads, world.outcomes, world.events, TrainConfig(seed=1))
    result.bundle.save(folder)
    return world.fresh_leads.drop(columns=["as_of"]), world.fresh_events


def _requests(leads, events, n_events: int = 10) -> list[dict]:
    """Single-lead bodies, each with exactly `n_events` events (repeating a lead's own when it has fewer)."""
    by_lead = {k: v for k, v in events.groupby("lead_id")}
    out = []
    for row in json.loads(leads.to_json(orient="records", date_format="iso")):
        mine = by_lead.get(row["lead_id"])
        if mine is None or mine.empty:
            continue
        picked = mine.iloc[np.arange(n_events) % len(mine)]
        row["events"] = [{"timestamp": t.isoformat(), "type": k} for t, k in zip(picked["timestamp"],
                                                                               picked["event_type"], strict=True)]
        row["as_of"] = AS_OF
        out.append(row)
    return out


def _percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "mean_ms": round(float(a.mean()), 3)}


async def _run_clients(url: str, bodies: list[bytes], clients: int, total: int) -> tuple[list[float], int]:
    import aiohttp

    times: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def worker(session):
        nonlocal errors
        for i in counter:
            body = bodies[i % len(bodies)]
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            times.append((time.perf_counter() - start) * 1000)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(worker(session) for _ in range(clients)))
    return times, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or URI (default: train a 5k-lead demo model)")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--requests", type=int, default=500, help="requests per measured setting")
    args = parser.parse_args()

    from leadscore.serve.online import OnlineScorer
    from leadscore.serve.predictor import Predictor

    tmp = Path(tempfile.mkdtemp(prefix="leadscore-api-bench-"))
    if args.model:
        from leadscore.demo_world import generate_demo_world

        world = generate_demo_world(n_leads=2_000, seed=1, n_fresh=500)
        model, leads, events = args.model, world.fresh_leads.drop(columns=["as_of"]), world.fresh_events
    else:
        model = str(tmp / "model")
        leads, events = _demo_model(Path(model))
    bodies = _requests(leads, events)
    encoded = [json.dumps(b).encode() for b in bodies]

    # Peers, in this process: the API's scorer without HTTP, and the batch path on the same single lead.
    predictor = Predictor.load(model, tracking_uri=args.tracking_uri)
    online = OnlineScorer(predictor.scorer)
    peers = {}
    for reasons in (True, False):
        ms = []
        for body in bodies[: args.requests]:
            start = time.perf_counter()
            online.score([body], reasons=reasons)
            ms.append((time.perf_counter() - start) * 1000)
        peers[f"in_process_{'reasons' if reasons else 'no_reasons'}"] = _percentiles(ms)
    import pandas as pd

    ms = []
    for body in bodies[:50]:
        frame = pd.DataFrame([{k: v for k, v in body.items() if k not in ("events", "as_of")}])
        ev = pd.DataFrame([{"lead_id": body["lead_id"], "timestamp": e["timestamp"], "event_type": e["type"]}
                           for e in body["events"]])
        start = time.perf_counter()
        predictor.score(frame, ev, as_of=AS_OF)
        ms.append((time.perf_counter() - start) * 1000)
    peers["batch_path_reasons"] = _percentiles(ms)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "leadscore", "serve", "--model", model, "--port", str(port)]
    if args.tracking_uri:
        cmd += ["--tracking-uri", args.tracking_uri]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("leadscore serve did not start") from None
                time.sleep(0.2)
        results = {}
        for reasons in (True, False):
            url = base + "/score"
            payload = encoded if reasons else [json.dumps({"leads": [b], "reasons": False}).encode() for b in bodies]
            asyncio.run(_run_clients(url, payload, 1, 50))  # warm-up
            for clients in (1, 32):
                times, errors = asyncio.run(_run_clients(url, payload, clients, args.requests))
                results[f"{clients}_client{'s' if clients > 1 else ''}_{'reasons' if reasons else 'no_reasons'}"] = \
                    {**_percentiles(times), "errors": errors}
        times, errors = asyncio.run(_run_clients(base + "/score", encoded, 1000, 1000))
        results["1000_concurrent_reasons"] = {**_percentiles(times), "errors": errors}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    one = results["1_client_reasons"]
    print(json.dumps({
        "benchmark": "api_latency", "model": model if args.model else "demo 5k leads (trained here)",
        "events_per_lead": 10, "cpus": os.cpu_count(), "http": results, "peers": peers,
        "http_over_in_process_p50": round(one["p50_ms"] / peers["in_process_reasons"]["p50_ms"], 2),
        "batch_path_over_api_p50": round(peers["batch_path_reasons"]["p50_ms"] / one["p50_ms"], 1),
        "goals": {"p50_le_5ms_1_client": one["p50_ms"] <= 5, "p99_le_20ms_1_client": one["p99_ms"] <= 20,
                  "no_error_1000_concurrent": results["1000_concurrent_reasons"]["errors"] == 0},
    }, indent=2))


if __name__ == "__main__":
    main()
