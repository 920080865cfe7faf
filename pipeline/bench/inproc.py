"""In-process part of ``make bench``: the cost of each stage without Kafka, a profile, and state sizes.

Drives :class:`pipeline.runtime.Runtime` exactly as the worker's agent does (micro-batches of
``HELIOS_BATCH_SIZE`` raw records), with the default settings and the shipped XGBoost model. Prints one
JSON document on stdout. ``python -m pipeline.bench.inproc [--quick]``.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from models.forecast import OnlineForecaster
from pipeline.app import tune_gc
from pipeline.bench.common import Sample, make_samples
from pipeline.errors import BadSample
from pipeline.metrics import HeliosMetrics
from pipeline.model_store import ModelStore
from pipeline.runtime import RawRecord, Runtime
from pipeline.settings import Settings, load_settings
from pipeline.stages import DeploymentPipeline, score_batch


def build_runtime(settings: Settings) -> tuple[Runtime, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = HeliosMetrics.create(registry)
    models = ModelStore(settings.model_path, metrics)
    if not models.reload():
        raise SystemExit(f"no XGBoost model under {settings.model_path}: {models.last_error}")
    return Runtime(settings, metrics, models), registry


def raw_records(samples: Sequence[Sample], first_offset: int = 0) -> list[RawRecord]:
    return [
        RawRecord(
            key=s.key,
            value=s.value,
            topic="bench.metrics",
            partition=hash(s.key) % 8,
            offset=first_offset + i,
        )
        for i, s in enumerate(samples)
    ]


def no_state(key: str) -> dict[str, Any] | None:
    return None  # every tracked deployment stays in Runtime.entries; nothing is restored


def run_batches(rt: Runtime, records: Sequence[RawRecord], batch: int) -> float:
    """Seconds Runtime.process took over ``records`` in micro-batches."""
    started = time.perf_counter()
    dead = 0
    for i in range(0, len(records), batch):
        dead += len(rt.process(records[i : i + batch], no_state).dead)
    if dead:
        raise SystemExit(f"{dead} bench samples were dead-lettered: the generator is wrong")
    return time.perf_counter() - started


def stage_costs(rt: Runtime, records: Sequence[RawRecord], batch: int) -> dict[str, float]:
    """Runtime.process taken apart: the same calls in the same order, each timed (µs/sample)."""
    t: dict[str, float] = collections.defaultdict(float)
    pc = time.perf_counter
    n = 0
    xgb_calls: list[float] = []
    out_bytes = 0
    for i in range(0, len(records), batch):
        chunk = records[i : i + batch]
        now = rt.clock()
        prepared = []
        touched: set[int] = set()
        due: list[str] = []
        for raw in chunk:
            a = pc()
            sample = rt.decode(raw, now)
            b = pc()
            entry = rt.entry_for(sample, raw.partition, no_state)
            c = pc()
            try:
                prep = entry.pipeline.prepare(sample)
            except BadSample as exc:
                raise SystemExit(f"bench sample rejected: {exc}") from None
            d = pc()
            t["decode (orjson + pydantic MetricSample)"] += b - a
            t["state lookup (entry_for)"] += c - b
            t["prepare (align, learn, forecast, streaming score)"] += d - c
            prepared.append((prep, entry))
            if rt.applied(sample.key, entry, raw, now):
                due.append(sample.key)
            touched.add(raw.partition)
        a = pc()
        probabilities = score_batch(rt.models.xgb, [p for p, _ in prepared])
        xgb_calls.append((pc() - a) / max(1, len(prepared)))
        t["XGBoost (one batched call)"] += pc() - a
        for (prep, entry), probability in zip(prepared, probabilities, strict=True):
            a = pc()
            out = entry.pipeline.finish(prep, probability)
            b = pc()
            blobs = [r.model_dump_json().encode() for r in (out.forecast, out.anomaly, out.recommendation)]
            c = pc()
            acc = rt._accuracy(entry)
            rt.metrics.observe(out.forecast, out.anomaly, out.recommendation, acc, now)
            d = pc()
            t["finish (combine, recommend, build records)"] += b - a
            t["JSON encode (3 output records)"] += c - b
            out_bytes += sum(len(x) for x in blobs)
            t["gauges (accuracy + observe)"] += d - c
            assert blobs
        a = pc()
        assert rt._save(due, touched)
        t[f"state writes (every {rt.settings.snapshot_every} samples) and partition markers"] += pc() - a
        n += len(chunk)
    costs = {k: v / n * 1e6 for k, v in t.items()}
    # The mean is at the mercy of the OpenMP threads on a busy 2-core box; the median call is the code's cost.
    costs["XGBoost median call (per row)"] = sorted(xgb_calls)[len(xgb_calls) // 2] * 1e6
    costs["output bytes per sample (3 records)"] = out_bytes / n
    return costs


def profile(rt: Runtime, records: Sequence[RawRecord], batch: int, top: int = 25) -> dict[str, Any]:
    """pyinstrument over Runtime.process: functions by inclusive and by self time (share of the total)."""
    from pyinstrument import Profiler

    prof = Profiler(interval=0.0005)
    prof.start()
    run_batches(rt, records, batch)
    prof.stop()
    session = prof.last_session
    assert session is not None
    root = session.root_frame()
    assert root is not None
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()

    def name(frame: Any) -> str:
        path = frame.file_path_short or ""
        for marker in ("/main/", "site-packages/"):
            if marker in path:
                path = path.split(marker, 1)[1]
        return f"{frame.function} ({path}:{frame.line_no})"

    def walk(frame: Any, above: frozenset[str]) -> None:
        key = name(frame)
        own[key] += frame.total_self_time
        if key not in above:
            inclusive[key] += frame.time
        for child in frame.children:
            walk(child, above | {key})

    walk(root, frozenset())
    total = root.time
    return {
        "seconds": total,
        "samples": len(records),
        "inclusive": [(k, v / total) for k, v in inclusive.most_common(top)],
        "self": [(k, v / total) for k, v in own.most_common(top)],
    }


def potentials(rt: Runtime, repeat: int = 400) -> dict[str, float]:
    """Micro-benchmarks (µs per call) behind the optimisations the report proposes."""
    entry = next(iter(rt.entries.values()))
    fc = next(iter(entry.pipeline.forecasters.values()))
    assert isinstance(fc, OnlineForecaster), "the micro-benchmarks time Helios' own forecaster"
    n_fc = len(entry.pipeline.forecasters)
    steps = max(rt.config.horizon_steps.values())
    published = sorted(set(rt.config.horizon_steps.values()))
    t_next = fc._t_last + rt.config.step_seconds
    cur = (t_next, 0.5)
    pc = time.perf_counter

    def per_call(fn: Any) -> float:
        fn()
        a = pc()
        for _ in range(repeat):
            fn()
        return (pc() - a) / repeat * 1e6

    out: dict[str, Any] = {
        "forecasters_per_sample": n_fc,
        "forecast_max_steps": steps,
        "published_steps": published,
        "forecast(all steps, current) us/call": per_call(lambda: fc.intervals(steps, current=cur)),
        "clone via from_dict(to_dict()) us/call": per_call(lambda: OnlineForecaster.from_dict(fc.to_dict())),
    }
    if hasattr(fc, "forecast_at"):
        out["forecast_at(published, current) us/call"] = per_call(
            lambda: fc.forecast_at(published, current=cur)
        )
    if hasattr(fc, "_clone"):
        out["_clone() us/call"] = per_call(fc._clone)
    # A snapshot per sample: what each state write costs, and what the gauges cost per sample.
    out["state to_dict+orjson us/deployment"] = per_call(
        lambda: orjson.dumps({"offset": 1, "pipe": entry.pipeline.to_dict()})
    )
    series = rt.metrics.deployments
    key = (entry.pipeline.namespace, entry.pipeline.deployment)
    out["gauges: one series update us/call"] = per_call(lambda: series.update(key, [(0, 1.0)], 0.0))
    return out


def state_sizes(settings: Settings, rt: Runtime) -> dict[str, Any]:
    """Serialized JSON state of one deployment after k samples (one per interval)."""
    sizes = {}
    samples = make_samples(1, 1500, settings.scoring_interval, seed=3)
    pipe = DeploymentPipeline("bench", "svc-00000", rt.config)
    for k, s in enumerate(samples, start=1):
        sample = rt.decode(RawRecord(s.key, s.value, "t", 0, k), time.time())
        pipe.prepare(sample)
        if k in (1, 10, 100, 1000, 1500):
            blob = orjson.dumps({"offset": k, "pipe": pipe.to_dict()})
            parts = {name: len(orjson.dumps(v)) for name, v in pipe.to_dict().items()}
            sizes[str(k)] = {"bytes": len(blob), "parts": parts}
    return sizes


def memory_breakdown(settings: Settings, deployments: int) -> dict[str, float]:
    """Python heap per tracked deployment (tracemalloc), whole runtime and its parts, 2 samples each."""
    import gc
    import tracemalloc

    samples = make_samples(deployments, 2, settings.scoring_interval, seed=21)
    recs = raw_records(samples)
    out: dict[str, float] = {}
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rt, _ = build_runtime(settings)
    after_build = tracemalloc.get_traced_memory()[0]
    run_batches(rt, recs, settings.batch_size)
    gc.collect()
    whole = tracemalloc.get_traced_memory()[0] - after_build
    out["runtime (pipelines + gauges) bytes/deployment"] = whole / deployments
    del base
    # The pipelines alone: the same samples through DeploymentPipeline, no gauges.
    pipes: dict[str, DeploymentPipeline] = {}
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for r in recs:
        sample = rt.decode(r, time.time())
        pipe = pipes.get(sample.key)
        if pipe is None:
            pipe = pipes[sample.key] = DeploymentPipeline(sample.namespace, sample.deployment, rt.config)
        pipe.prepare(sample)
    gc.collect()
    out["DeploymentPipeline objects bytes/deployment"] = (
        tracemalloc.get_traced_memory()[0] - before
    ) / deployments
    # What the worker's state table keeps per deployment: the serialized snapshot (bytes).
    blobs = [orjson.dumps({"offset": 1, "pipe": p.to_dict()}) for p in pipes.values()]
    out["state table value bytes/deployment"] = sum(len(b) + 33 for b in blobs) / deployments
    tracemalloc.stop()
    out["gauges + runtime bookkeeping bytes/deployment (difference)"] = (
        out["runtime (pipelines + gauges) bytes/deployment"]
        - out["DeploymentPipeline objects bytes/deployment"]
    )
    return out


def memory_by_age(settings: Settings, deployments: int, ages: Sequence[int]) -> dict[str, float]:
    """Python heap of the runtime per deployment after k samples each: the state grows until its daily
    profile and pending forecasts are full, so 2 samples (the RSS phase of the bench) understate it."""
    import gc
    import tracemalloc

    out: dict[str, float] = {}
    samples = make_samples(deployments, max(ages), settings.scoring_interval, seed=23)
    recs = raw_records(samples)
    gc.collect()
    tracemalloc.start()
    rt, _ = build_runtime(settings)
    start = tracemalloc.get_traced_memory()[0]
    done = 0
    for k in sorted(ages):
        run_batches(rt, recs[done * deployments : k * deployments], settings.batch_size)
        done = k
        gc.collect()
        out[str(k)] = (tracemalloc.get_traced_memory()[0] - start) / deployments
    tracemalloc.stop()
    return out


def series_per_deployment(registry: CollectorRegistry, deployments: int) -> float:
    n = 0
    for family in registry.collect():
        for s in family.samples:
            if s.labels.get("namespace") == "bench":
                n += 1
    return n / deployments


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, to debug the harness")
    a = p.parse_args()
    tune_gc()  # as the worker does: the stage costs below are the worker's
    settings = load_settings({})
    batch = settings.batch_size
    step = settings.scoring_interval
    out: dict[str, Any] = {"batch_size": batch, "scoring_interval": step}
    d_main = 200 if a.quick else 1000
    warm, measure = 2, (2 if a.quick else 3)

    # 1. stage costs and the whole Runtime.process at d_main deployments, after a warm-up.
    samples = make_samples(d_main, warm + measure + 2, step)
    recs = raw_records(samples)
    cut = d_main * warm
    cut2 = d_main * (warm + measure)
    rt, registry = build_runtime(settings)
    run_batches(rt, recs[:cut], batch)
    out["stages_us"] = stage_costs(rt, recs[cut:cut2], batch)
    out["stages_deployments"] = d_main
    rt2, _ = build_runtime(settings)
    run_batches(rt2, recs[:cut], batch)
    secs = run_batches(rt2, recs[cut:cut2], batch)
    out["process_us"] = secs / (cut2 - cut) * 1e6
    out["series_per_deployment"] = series_per_deployment(registry, d_main)
    out["profile"] = profile(rt2, recs[cut2:], batch)
    out["potentials"] = potentials(rt2)

    # 2. cost per sample against the number of tracked deployments (first sample, then steady state).
    scaling = {}
    for d in (10, 1000, 10_000) if not a.quick else (10, 500, 2000):
        steady_n = 4000 if not a.quick else 1000
        steps_needed = 1 + max(1, -(-steady_n // d))
        s_d = make_samples(d, steps_needed, step, seed=11)
        r_d = raw_records(s_d)
        rt_d, _ = build_runtime(settings)
        first = run_batches(rt_d, r_d[:d], batch) / d * 1e6
        steady = r_d[d : d + steady_n]
        scaling[str(d)] = {
            "first_sample_us": first,
            "steady_us": run_batches(rt_d, steady, batch) / len(steady) * 1e6,
            "steady_samples": len(steady),
        }
    out["by_deployments"] = scaling
    out["state_sizes"] = state_sizes(settings, rt)
    out["memory_breakdown"] = memory_breakdown(settings, 200 if a.quick else 1000)
    out["memory_by_age"] = memory_by_age(settings, 50 if a.quick else 100, (2, 20, 100, 300))
    sys.stdout.write(orjson.dumps(out).decode())


if __name__ == "__main__":
    main()
