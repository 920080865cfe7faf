"""Deferred state writes: a deployment's state goes to the changelog every HELIOS_SNAPSHOT_EVERY samples
(or HELIOS_SNAPSHOT_MAX_AGE after its first unsaved one), and the partition's replay marker says where a
new owner must start reading so that the restored state misses nothing and counts nothing twice."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.metrics import HeliosMetrics
from pipeline.model_store import ModelStore
from pipeline.offsets import OffsetTracker, marker_key, marker_value
from pipeline.runtime import RawRecord, Runtime, first_write_after
from pipeline.settings import load_settings
from tests.unit.test_runtime_rules import Clock

STEP = 60
T0 = 1_700_000_040.0
TOPIC = "helios.metrics"


def runtime(clock: Clock, every: int = 4, max_age: float = 300.0) -> Runtime:
    settings = load_settings(
        {
            "HELIOS_SCORING_INTERVAL": str(STEP),
            "HELIOS_SNAPSHOT_EVERY": str(every),
            "HELIOS_SNAPSHOT_MAX_AGE": str(max_age),
        }
    )
    metrics = HeliosMetrics.create(CollectorRegistry(), clock=clock)
    return Runtime(settings, metrics, ModelStore(Path("/nonexistent"), metrics, clock=clock), clock=clock)


def record(offset: int, deployment: str = "api", partition: int = 0, step: int | None = None) -> RawRecord:
    """The sample of ``step`` (default: ``offset``) at ``offset`` of the metrics topic."""
    t = T0 + (offset if step is None else step) * STEP + 1
    value = json.dumps(
        {
            "namespace": "shop",
            "deployment": deployment,
            "timestamp": t,
            "replicas": 3,
            "metrics": {"cpu_utilization": 0.4 + 0.2 * math.sin(offset / 3), "memory_utilization": 0.5},
        }
    ).encode()
    return RawRecord(f"shop/{deployment}".encode(), value, TOPIC, partition, offset)


def steady(every: int, prefix: str = "api") -> str:
    """A deployment whose first state write comes after ``every`` samples, like every later one."""
    return next(
        d for d in (f"{prefix}{i}" for i in range(1000)) if first_write_after(f"shop/{d}", every) == every
    )


class Store:
    """The state table as the changelog would restore it."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply(self, writes: list[tuple[int, str, bytes | None]]) -> list[str]:
        for _, key, value in writes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = json.loads(value)
        return [key for _, key, _ in writes]


def test_state_is_written_every_n_samples_and_the_marker_points_at_the_first_unsaved_one() -> None:
    clock = Clock(T0 + 20 * STEP)
    rt, store, d = runtime(clock, every=4), Store(), steady(4)
    written = []
    for offset in range(10):
        keys = store.apply(rt.process([record(offset, d)], store.data.get).state_writes)
        written.append((offset, f"shop/{d}" in keys, marker_value(store.data[marker_key(0)])))
    assert [o for o, saved, _ in written if saved] == [3, 7]
    # Before the first write the replay starts at offset 0; after a write, at the first sample after it.
    assert [m for _, _, m in written] == [0, 0, 0, 4, 4, 4, 4, 8, 8, 8]
    assert store.data[f"shop/{d}"]["offset"] == 7


def test_first_writes_are_spread_over_the_interval_by_key_and_later_ones_come_every_n() -> None:
    clock = Clock(T0 + 40 * STEP)
    rt, store = runtime(clock, every=4), Store()
    deployments = [f"svc{i}" for i in range(200)]
    saved_at: dict[str, list[int]] = {d: [] for d in deployments}
    for step in range(12):
        batch = [record(step * 1000 + i, d, step=step) for i, d in enumerate(deployments)]
        for key in store.apply(rt.process(batch, store.data.get).state_writes):
            if key.startswith("shop/"):
                saved_at[key.removeprefix("shop/")].append(step)
    firsts = [at[0] for at in saved_at.values()]
    # Each of the 4 phases holds about a quarter of the fleet: no interval writes all of it.
    assert all(30 <= firsts.count(phase) <= 70 for phase in range(4))
    assert all(at == [at[0], at[0] + 4, at[0] + 8] for at in saved_at.values())


def test_a_new_owner_replaying_from_the_marker_ends_in_the_same_state() -> None:
    clock = Clock(T0 + 20 * STEP)
    first, store, d = runtime(clock, every=4), Store(), steady(4)
    outputs = {}
    for offset in range(11):
        result = first.process([record(offset, d)], store.data.get)
        store.apply(result.state_writes)
        outputs[offset] = result.outputs[0].recommendation
    # The first worker dies; the second restores the table and reads from the marker on.
    second = runtime(clock, every=4)
    tracker = OffsetTracker()
    tracker.start(0, marker_value(store.data[marker_key(0)]))
    redelivered = [record(o, d) for o in range(6, 11)]  # the consumer resumes at its committed offset
    fresh = tracker.fresh(redelivered)
    assert [r.offset for r in fresh] == [8, 9, 10]
    replay = second.process(fresh, store.data.get)
    assert [o.recommendation for o in replay.outputs] == [outputs[8], outputs[9], outputs[10]]
    # And both go on alike (saved floats keep 12 significant digits, so bands agree to ~1e-9).
    a = first.process([record(11, d)], store.data.get).outputs[0]
    b = second.process([record(11, d)], store.data.get).outputs[0]
    assert a.recommendation == b.recommendation
    for ha, hb in zip(a.forecast.horizons, b.forecast.horizons, strict=True):
        assert ha.cpu_utilization and hb.cpu_utilization
        assert hb.cpu_utilization.upper == pytest.approx(ha.cpu_utilization.upper, rel=1e-9)


def test_the_marker_waits_for_the_oldest_unsaved_deployment_of_its_partition() -> None:
    clock = Clock(T0 + 20 * STEP)
    rt, store, a, b = runtime(clock, every=3), Store(), steady(3, "a"), steady(3, "b")
    store.apply(
        rt.process([record(0, a), record(1, b), record(2, a), record(3, a)], store.data.get).state_writes
    )
    # "a" was saved at offset 3; "b" has one unsaved sample at offset 1.
    assert store.data[f"shop/{a}"]["offset"] == 3 and f"shop/{b}" not in store.data
    assert marker_value(store.data[marker_key(0)]) == 1


def test_unsaved_state_is_written_once_its_first_sample_is_max_age_old() -> None:
    clock = Clock(T0 + 20 * STEP)
    rt, store, d = runtime(clock, every=100, max_age=120.0), Store(), steady(100)
    store.apply(rt.process([record(0, d), record(1, d)], store.data.get).state_writes)
    assert rt.save_due() == []
    clock.now += 121
    store.apply(rt.save_due())
    assert store.data[f"shop/{d}"]["offset"] == 1
    assert marker_value(store.data[marker_key(0)]) == 2
    assert rt.save_due() == []
