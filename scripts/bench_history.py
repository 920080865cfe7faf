"""The status page's history ring: what it costs per sample, per deployment and per request.

    .venv/bin/python scripts/bench_history.py [--deployments 200] [--steps 400]

Runs the real Runtime (with the shipped XGBoost model) twice over the same samples, once with
``HELIOS_HISTORY=0`` (no ring) and once with the default: the difference in Python heap (tracemalloc)
per deployment is what the ring adds, after 2 samples (what the RSS phase of ``make bench`` holds) and
after ``--steps`` samples (the ring full). Then the record hook alone (µs per sample, timed on the outputs
the stages produced) and ``to_json`` of a full ring (ms, bytes of JSON).

``--rss`` instead runs ``make bench``'s memory phase (a real worker on the broker of
``HELIOS_KAFKA_BOOTSTRAP``, its RSS at 10 / 1,000 / 10,000 deployments of 2 samples each) twice, without
and with the ring, and prints the RSS slope per deployment of each.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
import tracemalloc

import orjson

from pipeline.bench.common import make_samples
from pipeline.bench.inproc import build_runtime, raw_records, run_batches
from pipeline.history import DeploymentHistory
from pipeline.runtime import Runtime
from pipeline.settings import load_settings


def heap_per_deployment(history: str, deployments: int, steps: list[int]) -> dict[int, float]:
    settings = load_settings({"HELIOS_HISTORY": history})
    recs = raw_records(make_samples(deployments, max(steps), settings.scoring_interval, seed=5))
    gc.collect()
    tracemalloc.start()
    rt, _ = build_runtime(settings)
    start = tracemalloc.get_traced_memory()[0]
    out, done = {}, 0
    for k in sorted(steps):
        run_batches(rt, recs[done * deployments : k * deployments], settings.batch_size)
        done = k
        gc.collect()
        out[k] = (tracemalloc.get_traced_memory()[0] - start) / deployments
    tracemalloc.stop()
    return out


def hook_cost(rt: Runtime, steps: int) -> tuple[float, DeploymentHistory]:
    """µs per DeploymentHistory.record, replaying one deployment's real outputs into a fresh ring."""
    recs = raw_records(make_samples(1, steps, rt.settings.scoring_interval, seed=9))
    outputs = []
    for i in range(0, len(recs), 100):
        outputs += rt.process(recs[i : i + 100], lambda key: None).outputs
    blobs = [o.recommendation.model_dump_json().encode() for o in outputs]
    starts = [o.forecast.timestamp.timestamp() for o in outputs]
    best = float("inf")
    ring = rt.history.new()
    assert ring is not None
    for _ in range(5):
        ring = rt.history.new()
        assert ring is not None
        began = time.perf_counter()
        for t, o, b in zip(starts, outputs, blobs, strict=True):
            ring.record(t, o, b)
        best = min(best, (time.perf_counter() - began) / len(outputs))
    return best * 1e6, ring


def rss_slopes() -> None:
    from bench import Run, phase_memory

    bootstrap = os.environ.get("HELIOS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    for history in ("0", "6h"):
        os.environ["HELIOS_HISTORY"] = history  # the bench's worker inherits the environment
        run = Run(bootstrap, quick=False)
        try:
            mem = asyncio.run(phase_memory(run, quick=False))
        finally:
            run.close()
        levels = ", ".join(f"{lv['deployments']}: {lv['rss'] / 2**20:.1f} MiB" for lv in mem["levels"])
        slope = mem["per_deployment_bytes"] / 1024
        print(f"HELIOS_HISTORY={history}: RSS {levels}; slope {slope:.1f} KB/deployment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rss", action="store_true", help="the RSS slope of a real worker, without and with")
    args = parser.parse_args()
    if args.rss:
        rss_slopes()
        return
    ages = [2, args.steps]
    without = heap_per_deployment("0", args.deployments, ages)
    with_ring = heap_per_deployment("6h", args.deployments, ages)
    for k in ages:
        print(
            f"after {k} samples: {with_ring[k] / 1024:.2f} KB/deployment with the ring, "
            f"{without[k] / 1024:.2f} KB without: the ring adds {(with_ring[k] - without[k]) / 1024:.2f} KB"
        )
    rt, _ = build_runtime(load_settings({}))
    us, ring = hook_cost(rt, args.steps)
    shape = f"{rt.history.capacity} rows x ({rt.history.columns} + 3) columns"
    print(f"ring matrices: {ring.nbytes} bytes ({shape})")
    print(f"record hook: {us:.2f} µs per sample (best of 5 over {args.steps} real outputs)")
    best, body = float("inf"), b""
    for _ in range(20):
        began = time.perf_counter()
        body = orjson.dumps(ring.to_json())
        best = min(best, time.perf_counter() - began)
    print(f"to_json + orjson of the full ring: {best * 1e3:.2f} ms, {len(body):,} bytes of JSON")


if __name__ == "__main__":
    main()
