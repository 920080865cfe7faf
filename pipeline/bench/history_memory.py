"""The status page's history ring: what it costs per sample, per deployment and per request.

    .venv/bin/python -m pipeline.bench.history_memory [--deployments 200] [--steps 400]

Runs the real Runtime (with the shipped XGBoost model) twice over the same samples, once with
``HELIOS_HISTORY=0`` (no ring) and once with the default: the difference in Python heap (tracemalloc)
per deployment is what the ring adds, after 2 samples (what the RSS phase of ``make bench`` holds) and
after ``--steps`` samples (the ring full). Then the record hook alone (µs per sample, timed on the outputs
the stages produced) and ``to_json`` of a full ring (ms, bytes of JSON).

``--starts N`` instead replays only the full ring, on workloads ending at N times of day, and prints
the range of its bytes.

``--rss`` instead runs ``make bench``'s memory phase (a real worker on the broker of
``HELIOS_KAFKA_BOOTSTRAP``, its RSS at 10 / 1,000 / 10,000 deployments of 2 samples each) twice, without
and with the ring, and prints the RSS slope per deployment of each.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import time
import tracemalloc
from datetime import UTC, datetime

import numpy as np
import orjson

from pipeline.bench.common import NAMESPACE, deployment_name, make_samples
from pipeline.bench.inproc import build_runtime, raw_records, run_batches
from pipeline.history import DeploymentHistory, HistoryConfig
from pipeline.runtime import RawRecord, Runtime
from pipeline.settings import load_settings
from pipeline.sources.synthetic import row_to_sample, synthetic_trace
from pipeline.stages import StageOutput


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


def workloads(rt: Runtime, steps: int, end: float | None = None) -> dict[str, list[StageOutput]]:
    """One deployment's real stage outputs on three kinds of data: the make_samples load of ``make bench``
    (daily cycle, AR(1) noise), the synthetic Saleor workload (``pipeline/sources/synthetic.py``, with
    its incident), and uniform noise (CPU and memory drawn anew each window: the worst case to compress).
    They end at ``end`` (now by default): the time of day moves the daily cycle, hence which decisions
    are kept, and the minute moves the chunks' alignment.
    """
    step = rt.settings.scoring_interval
    bench = make_samples(1, steps, step, seed=9, end=end)
    saleor_name, noise_name = deployment_name(1), deployment_name(2)
    first = datetime.fromtimestamp(bench[0].window, UTC)
    trace = synthetic_trace(steps, step, seed=3, incident_at=steps // 2, start=first)
    rng = np.random.default_rng(4)
    saleor, noise = [], []
    for row in trace.to_dict("records"):
        row["timestamp"] = row["timestamp"].to_pydatetime()
        saleor.append(row_to_sample(row, NAMESPACE, saleor_name).model_dump_json().encode())
        row["cpu_utilization"], row["memory_utilization"] = rng.uniform(0.02, 0.98, 2)
        noise.append(row_to_sample(row, NAMESPACE, noise_name).model_dump_json().encode())
    data = {
        "bench": raw_records(bench),
        "saleor": [
            RawRecord(f"{NAMESPACE}/{saleor_name}".encode(), v, "t", 0, i) for i, v in enumerate(saleor)
        ],
        "noise": [RawRecord(f"{NAMESPACE}/{noise_name}".encode(), v, "t", 0, i) for i, v in enumerate(noise)],
    }
    out = {}
    for name, recs in data.items():
        outputs = []
        for i in range(0, len(recs), 100):
            outputs += rt.process(recs[i : i + 100], lambda key: None).outputs
        out[name] = outputs
    return out


def hook_cost(config: HistoryConfig, outputs: list[StageOutput]) -> tuple[float, int, DeploymentHistory]:
    """µs per DeploymentHistory.record and settle (best of 5) replaying real outputs into a fresh ring,
    and the most bytes the ring held once full (rows raw and compressed, and the kept records).

    Each record is settled (its record packed) before the next, as at a production pace of one sample
    per deployment per micro-batch: the most a sample pays.
    """
    blobs = [o.recommendation.model_dump_json().encode() for o in outputs]
    starts = [o.forecast.timestamp.timestamp() for o in outputs]
    best = float("inf")
    ring = DeploymentHistory(config)
    for _ in range(5):
        ring = DeploymentHistory(config)
        began = time.perf_counter()
        for t, o, b in zip(starts, outputs, blobs, strict=True):
            ring.record(t, o, b)
            ring.settle()
        best = min(best, (time.perf_counter() - began) / len(outputs))
    most, ring = 0, DeploymentHistory(config)
    for k, (t, o, b) in enumerate(zip(starts, outputs, blobs, strict=True)):
        ring.record(t, o, b)
        ring.settle()
        if k >= config.capacity:
            most = max(most, ring.nbytes)
    return best * 1e6, most, ring


def describe(ring: DeploymentHistory) -> str:
    closed = [b for b in ring._chunks if b]
    per_window = sum(map(len, closed)) / max(1, len(closed) * ring.config.chunk)
    kept, count = sum(map(len, ring._notable)), sum(b[1] for b in ring._notable)
    return (
        f"open chunk {len(ring._sealed)} B sealed + {len(ring._open)} B raw, {len(ring._chunks)} closed "
        f"{per_window:.1f} B/window, latest {len(ring._latest or b'')} B, {count} kept {kept} B"
    )


def full_ring_over_starts(starts: int) -> None:
    """The most bytes a full ring holds (default settings), for workloads ending at ``starts`` times ~2 h
    apart: every hour of the day and many minute alignments, so one lucky start cannot carry the figure.
    """
    most: dict[str, list[int]] = {}
    now = time.time()
    for k in range(starts):
        rt, _ = build_runtime(load_settings({}))
        config = rt.history
        assert config is not None
        for name, outputs in workloads(rt, config.capacity + 240, end=now - k * 7393.0).items():
            _, bytes_held, _ = hook_cost(config, outputs)
            most.setdefault(name, []).append(bytes_held)
    for name, held in most.items():
        print(
            f"{name:6s} full ring over {starts} ends: {min(held):,}-{max(held):,} B, "
            f"mean {sum(held) / len(held):,.0f} B"
        )


def rss_slopes() -> None:
    from pipeline.bench.perf import Run, phase_memory

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
    parser.add_argument("--starts", type=int, default=0, help="only the full ring, at N workload ends")
    args = parser.parse_args()
    if args.rss:
        rss_slopes()
        return
    if args.starts:
        full_ring_over_starts(args.starts)
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
    base = rt.history
    ring = None
    # Long enough for the ring to fill and then close two chunks of the largest size.
    for name, outputs in workloads(rt, max(args.steps, base.capacity + 240)).items():
        for chunk, seal in ((60, 60), (60, 10), (60, 15), (60, 20), (30, 10), (120, 15)):
            config = dataclasses.replace(base, chunk=chunk, seal=seal)
            config.dictionaries.update(base.dictionaries)
            us, most, ring = hook_cost(config, outputs)
            print(
                f"{name:6s} chunk {chunk:3d} seal {seal:3d}: record {us:.2f} µs/sample, at most {most:,} B "
                f"once full ({describe(ring)})"
            )
    assert ring is not None
    best, body = float("inf"), b""
    for _ in range(20):
        began = time.perf_counter()
        body = orjson.dumps(ring.to_json())
        best = min(best, time.perf_counter() - began)
    print(f"to_json + orjson of the full ring: {best * 1e3:.2f} ms, {len(body):,} bytes of JSON")


if __name__ == "__main__":
    main()
