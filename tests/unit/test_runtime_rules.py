"""The bad-input rules of :class:`pipeline.runtime.Runtime`, driven directly (no Kafka, injected clock).

Each rule is the one documented in ``pipeline/runtime.py`` and ``pipeline/align.py``: a record
either lands in the dead-letter list with a precise reason and its original bytes, or is handled
by the rule (late-within-grace merged, replay skipped), and good records in the same batch are
still processed.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.metrics import HeliosMetrics
from pipeline.model_store import ModelStore
from pipeline.records import DeadLetter
from pipeline.runtime import DLQ_VALUE_BYTES, BatchResult, RawRecord, Runtime
from pipeline.settings import Settings, load_settings

STEP = 60
#: A round event time, so window arithmetic in the tests is easy to read.
T0 = 1_700_000_040.0
assert T0 % STEP == 0
KEY = b"saleor/saleor-api"
TOPIC = "helios.metrics"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(t: float, namespace: str = "saleor", deployment: str = "saleor-api", **metrics: object) -> bytes:
    return sample_with(
        t, metrics or {"cpu_utilization": 0.5, "memory_utilization": 0.4}, namespace, deployment
    )


def sample_with(
    t: float, metrics: dict[str, object], namespace: str = "saleor", deployment: str = "saleor-api"
) -> bytes:
    return json.dumps(
        {"namespace": namespace, "deployment": deployment, "timestamp": t, "replicas": 3, "metrics": metrics}
    ).encode()


def make_runtime(clock: Clock, **env: str) -> tuple[Runtime, CollectorRegistry]:
    # State written after every sample unless a test says otherwise (deferred writes: test_snapshots.py).
    env = {"HELIOS_SNAPSHOT_EVERY": "1", **env}
    settings: Settings = load_settings({"HELIOS_SCORING_INTERVAL": str(STEP), **env})
    registry = CollectorRegistry()
    metrics = HeliosMetrics.create(registry, clock=clock)
    # No XGBoost artifact loaded: the rules under test are decided before scoring.
    store = ModelStore(Path("/nonexistent"), metrics, clock=clock)
    return Runtime(settings, metrics, store, clock=clock), registry


class Feeder:
    """Feeds records one batch at a time with increasing offsets, as a partition would."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.offset = 0
        self.stored: dict[str, Any] = {}

    def feed(self, *values: bytes | None, key: bytes | None = KEY, partition: int = 0) -> BatchResult:
        records = []
        for value in values:
            records.append(RawRecord(key, value, TOPIC, partition, self.offset))
            self.offset += 1
        result = self.runtime.process(records, self.stored.get)
        for _, k, v in result.state_writes:
            if v is None:
                self.stored.pop(k, None)
            else:
                self.stored[k] = json.loads(v)
        return result


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 30)


@pytest.fixture
def rt(clock: Clock) -> tuple[Runtime, CollectorRegistry]:
    return make_runtime(clock)


def dlq_count(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("helios_dead_letters_total", {"reason": reason}) or 0.0


def only_dead(result: BatchResult) -> DeadLetter:
    assert not result.outputs, "a rejected record must not produce outputs"
    assert len(result.dead) == 1, result.dead
    return result.dead[0]


# -- decoding: each bad record is dead-lettered with its reason and original bytes -----------------
NOW = T0 + 30
BAD_RECORDS: list[tuple[str, bytes | None, str, str]] = [
    ("empty", b"", "empty", ""),
    ("none", None, "empty", ""),
    ("binary", b"\x00\xff\xfe garbage", "not_json", "not JSON"),
    ("truncated", sample(NOW)[:-5], "not_json", "not JSON"),
    # Python's json (and others) emit the bare NaN/Infinity tokens, which JSON does not have.
    ("nan_token", sample(NOW).replace(b"0.5", b"NaN"), "not_json", "not JSON"),
    ("infinity_token", sample(NOW).replace(b"0.5", b"Infinity"), "not_json", "not JSON"),
    ("overflow_1e400", sample(NOW).replace(b"0.5", b"1e400"), "not_json", "infinity"),
    ("array", b"[1, 2, 3]", "schema", "expected a JSON object"),
    ("string", b'"saleor"', "schema", "expected a JSON object"),
    (
        "missing_timestamp",
        json.dumps(
            {"namespace": "saleor", "deployment": "saleor-api", "metrics": {"cpu_utilization": 0.5}}
        ).encode(),
        "schema",
        "timestamp",
    ),
    (
        "missing_metrics",
        json.dumps({"namespace": "saleor", "deployment": "saleor-api", "timestamp": NOW}).encode(),
        "schema",
        "metrics",
    ),
    ("wrong_type_cpu", sample(NOW, cpu_utilization="high"), "schema", "metrics.cpu_utilization"),
    (
        "wrong_type_replicas",
        sample(NOW).replace(b'"replicas": 3', b'"replicas": "three"'),
        "schema",
        "replicas",
    ),
    ("wrong_type_timestamp", sample(NOW).replace(str(NOW).encode(), b'"yesterday"'), "schema", "timestamp"),
    ("negative_cpu", sample(NOW, cpu_utilization=-0.1), "schema", "metrics.cpu_utilization"),
    ("cpu_above_one", sample(NOW, cpu_utilization=1.7), "schema", "metrics.cpu_utilization"),
    ("memory_above_one", sample(NOW, memory_utilization=3.0), "schema", "metrics.memory_utilization"),
    ("absurd_bytes", sample(NOW, memory_bytes=1e20), "schema", "metrics.memory_bytes"),
    ("negative_bytes", sample(NOW, memory_bytes=-5), "schema", "metrics.memory_bytes"),
    ("absurd_connections", sample(NOW, db_connections=1e12), "schema", "metrics.db_connections"),
    ("unknown_feature", sample(NOW, cpu_utilization=0.5, gpu=0.3), "schema", "metrics.gpu"),
    ("bad_namespace", sample(NOW, namespace="Not A Name!"), "schema", "namespace"),
    (
        "no_features",
        sample(NOW).replace(b'{"cpu_utilization": 0.5, "memory_utilization": 0.4}', b"{}"),
        "no_metrics",
        "none of the six",
    ),
    ("far_future", sample(NOW + 10 * 86400), "future", "ahead"),
    ("year_9000", sample(NOW).replace(str(NOW).encode(), b'"9000-01-01T00:00:00Z"'), "future", "ahead"),
    ("very_old", sample(NOW - 400 * 86400), "too_old", "HELIOS_MAX_SAMPLE_AGE"),
    ("epoch_zero", sample(0), "too_old", "HELIOS_MAX_SAMPLE_AGE"),
]


@pytest.mark.parametrize(
    ("value", "reason", "mentions"), [c[1:] for c in BAD_RECORDS], ids=[c[0] for c in BAD_RECORDS]
)
def test_bad_record_is_dead_lettered_with_reason_and_original_bytes(
    rt: tuple[Runtime, CollectorRegistry], value: bytes | None, reason: str, mentions: str
) -> None:
    runtime, registry = rt
    feeder = Feeder(runtime)
    result = feeder.feed(value)
    dead = only_dead(result)
    assert dead.reason == reason, dead.detail
    assert mentions in dead.detail
    assert base64.b64decode(dead.value_b64) == (value or b"")
    assert (dead.topic, dead.partition, dead.offset, dead.key) == (TOPIC, 0, 0, KEY.decode())
    assert dlq_count(registry, reason) == 1
    # The DLQ record is emitted on the DLQ topic and nothing is tracked for a rejected record.
    assert [e.topic for e in result.emits] == [runtime.settings.topic_dlq]
    assert DeadLetter.model_validate_json(result.emits[0].value) == dead
    assert runtime.entries == {}
    # No deployment state, only the partition's replay marker moves past the record.
    assert [k for _, k, _ in result.state_writes] == ["~next-offset/0"]


def test_a_huge_bad_record_is_dead_lettered_with_its_head_and_where_to_find_the_rest(
    rt: tuple[Runtime, CollectorRegistry],
) -> None:
    runtime, _ = rt
    value = b"{" + b"x" * 900_000  # near the broker's 1 MB limit: its base64 would not fit in a record
    dead = only_dead(Feeder(runtime).feed(value))
    assert dead.reason == "not_json"
    assert base64.b64decode(dead.value_b64) == value[:DLQ_VALUE_BYTES]
    assert f"first {DLQ_VALUE_BYTES:,} of 900,001 bytes" in dead.detail and f"{TOPIC}[0]@0" in dead.detail


def test_skew_limits_are_settings(clock: Clock) -> None:
    runtime, _ = make_runtime(clock, HELIOS_MAX_FUTURE_SKEW="10", HELIOS_MAX_SAMPLE_AGE="3600")
    feeder = Feeder(runtime)
    assert only_dead(feeder.feed(sample(clock.now + 11))).reason == "future"
    assert only_dead(feeder.feed(sample(clock.now - 3601))).reason == "too_old"
    # Just inside both limits: accepted.
    assert len(feeder.feed(sample(clock.now + 9)).outputs) == 1
    assert not feeder.feed(sample(clock.now - 3599, "saleor", "other"), key=b"saleor/other").dead


def test_key_must_match_namespace_and_deployment(rt: tuple[Runtime, CollectorRegistry]) -> None:
    runtime, _ = rt
    feeder = Feeder(runtime)
    wrong = only_dead(feeder.feed(sample(NOW), key=b"saleor/other-api"))
    assert wrong.reason == "key_mismatch" and "saleor/saleor-api" in wrong.detail
    assert only_dead(feeder.feed(sample(NOW), key=None)).reason == "key_mismatch"
    assert runtime.entries == {}


# -- the aligner's rules ---------------------------------------------------------------------------
def test_exact_duplicate_is_dead_lettered_and_does_not_change_state(
    rt: tuple[Runtime, CollectorRegistry],
) -> None:
    runtime, registry = rt
    feeder = Feeder(runtime)
    first = feeder.feed(sample(T0 + 5, cpu_utilization=0.4))
    assert len(first.outputs) == 1
    before = runtime.entries["saleor/saleor-api"].pipeline.to_dict()
    dead = only_dead(feeder.feed(sample(T0 + 5, cpu_utilization=0.9)))
    assert dead.reason == "duplicate"
    assert runtime.entries["saleor/saleor-api"].pipeline.to_dict() == before
    assert dlq_count(registry, "duplicate") == 1
    # Same timestamp but a different set of features is another source's half: merged.
    other = feeder.feed(sample(T0 + 5, memory_utilization=0.6))
    assert len(other.outputs) == 1 and not other.dead


def test_out_of_order_within_the_open_window_is_averaged(rt: tuple[Runtime, CollectorRegistry]) -> None:
    runtime, _ = rt
    feeder = Feeder(runtime)
    feeder.feed(sample(T0 + 50, cpu_utilization=0.2))
    out = feeder.feed(sample(T0 + 10, cpu_utilization=0.6)).outputs
    assert out[0].forecast.observed.cpu_utilization == pytest.approx(0.4)
    assert out[0].forecast.timestamp.timestamp() == T0


def test_late_sample_within_grace_is_merged_into_open_window(clock: Clock) -> None:
    runtime, _ = make_runtime(clock)
    clock.now = T0 + 2 * STEP
    feeder = Feeder(runtime)
    feeder.feed(sample(T0 + 10, cpu_utilization=0.3))
    feeder.feed(sample(T0 + STEP + 5, cpu_utilization=0.4))  # opens window T0+60, closes T0
    # 30 s before the open window (grace = one interval = 60 s): merged into the open window.
    merged = feeder.feed(sample(T0 + STEP - 30, cpu_utilization=0.8))
    assert not merged.dead
    assert merged.outputs[0].forecast.timestamp.timestamp() == T0 + STEP
    assert merged.outputs[0].forecast.observed.cpu_utilization == pytest.approx(0.6)


def test_sample_older_than_grace_is_dead_lettered_too_late(clock: Clock) -> None:
    runtime, registry = make_runtime(clock)
    clock.now = T0 + 5 * STEP
    feeder = Feeder(runtime)
    feeder.feed(sample(T0 + 3 * STEP + 1))
    before = runtime.entries["saleor/saleor-api"].pipeline.to_dict()
    dead = only_dead(feeder.feed(sample(T0 + STEP + 50)))
    assert dead.reason == "too_late" and "grace" in dead.detail
    assert dlq_count(registry, "too_late") == 1
    assert runtime.entries["saleor/saleor-api"].pipeline.to_dict() == before


def test_grace_is_a_setting(clock: Clock) -> None:
    runtime, _ = make_runtime(clock, HELIOS_LATE_GRACE="300")
    clock.now = T0 + 10 * STEP
    feeder = Feeder(runtime)
    feeder.feed(sample(T0 + 5 * STEP))
    assert not feeder.feed(sample(T0 + STEP)).dead  # 240 s late: within 300 s
    assert only_dead(feeder.feed(sample(T0 - STEP))).reason == "too_late"  # 360 s late


# -- batches mix good and bad ----------------------------------------------------------------------
def test_good_records_around_bad_ones_are_all_processed(rt: tuple[Runtime, CollectorRegistry]) -> None:
    runtime, registry = rt
    feeder = Feeder(runtime)
    good = [sample(T0 - 10 * STEP + i * STEP + 1, cpu_utilization=0.3 + 0.01 * i) for i in range(10)]
    bad = [
        b"garbage",
        sample(NOW, cpu_utilization=2.0),
        sample(NOW + 86400),
        sample(NOW).replace(b"0.5", b"NaN"),
    ]
    batch = [good[0], bad[0], good[1], bad[1], *good[2:6], bad[2], *good[6:], bad[3]]
    result = feeder.feed(*batch)
    assert len(result.outputs) == len(good)
    assert sorted(d.reason for d in result.dead) == ["future", "not_json", "not_json", "schema"]
    assert [d.offset for d in result.dead] == [1, 3, 8, 13]
    assert registry.get_sample_value("helios_samples_total", {"outcome": "processed"}) == len(good)
    assert registry.get_sample_value("helios_samples_total", {"outcome": "dead_lettered"}) == len(bad)
    # Three outputs per good record plus one DLQ record per bad one.
    assert len(result.emits) == 3 * len(good) + len(bad)
    writes = {k: json.loads(v or b"") for _, k, v in result.state_writes}
    assert writes.keys() == {KEY.decode(), "~next-offset/0"}
    assert writes[KEY.decode()]["offset"] == 12  # the last good record
    assert writes["~next-offset/0"] == {"next": 14}  # past the last (bad) record


def test_replayed_offsets_are_skipped(rt: tuple[Runtime, CollectorRegistry]) -> None:
    runtime, registry = rt
    values = [sample(T0 - 5 * STEP + i * STEP + 1) for i in range(5)]
    records = [RawRecord(KEY, v, TOPIC, 0, i) for i, v in enumerate(values)]
    stored: dict[str, Any] = {}
    first = runtime.process(records[:3], stored.get)
    assert len(first.outputs) == 3
    again = runtime.process(records, stored.get)  # the worker died before committing offsets 0..2
    assert len(again.outputs) == 2 and not again.dead
    assert registry.get_sample_value("helios_samples_total", {"outcome": "replayed"}) == 3


# -- bounded state: the deployment cap and the idle TTL ------------------------------------------
def test_unknown_deployment_flood_is_capped(clock: Clock) -> None:
    cap = 20
    runtime, registry = make_runtime(clock, HELIOS_MAX_DEPLOYMENTS=str(cap))
    feeder = Feeder(runtime)
    flood = [sample(NOW, "flood", f"dep-{i}") for i in range(3 * cap)]
    results = [feeder.feed(v, key=f"flood/dep-{i}".encode()) for i, v in enumerate(flood)]
    assert len(runtime.entries) == cap
    assert sum(len(r.outputs) for r in results) == cap
    dead = [d for r in results for d in r.dead]
    assert len(dead) == 2 * cap and {d.reason for d in dead} == {"deployment_cap"}
    assert "HELIOS_MAX_DEPLOYMENTS=20" in dead[0].detail
    assert base64.b64decode(dead[0].value_b64) == flood[cap]
    assert registry.get_sample_value("helios_tracked_deployments") == cap
    # Deployments already tracked keep working under the cap.
    tracked = feeder.feed(sample(NOW + 1, "flood", "dep-0"), key=b"flood/dep-0")
    assert len(tracked.outputs) == 1 and not tracked.dead


def test_state_persisted_on_this_partition_is_not_refused_by_the_cap(clock: Clock) -> None:
    runtime, _ = make_runtime(clock, HELIOS_MAX_DEPLOYMENTS="1")
    feeder = Feeder(runtime)
    feeder.feed(sample(NOW - STEP, "a", "one"), key=b"a/one")
    feeder.feed(sample(NOW - STEP, "b", "two"), key=b"b/two")
    assert list(runtime.entries) == ["a/one"]
    # After a restart, state restored from the changelog is admitted (it is already owned here).
    fresh, _ = make_runtime(clock, HELIOS_MAX_DEPLOYMENTS="1")
    fresh.entries["b/two"] = runtime.entries.pop("a/one")  # occupy the only slot
    stored = {"a/one": feeder.stored["a/one"]}
    out = fresh.process([RawRecord(b"a/one", sample(NOW, "a", "one"), TOPIC, 0, 99)], stored.get)
    assert len(out.outputs) == 1 and not out.dead


def test_sweep_unexports_stale_and_evicts_idle_deployments(clock: Clock) -> None:
    runtime, registry = make_runtime(
        clock, HELIOS_STALE_AFTER="120", HELIOS_IDLE_TTL="600", HELIOS_MAX_DEPLOYMENTS="2"
    )
    feeder = Feeder(runtime)
    feeder.feed(sample(NOW, "a", "one"), key=b"a/one", partition=3)
    labels = {"namespace": "a", "deployment": "one"}
    assert registry.get_sample_value("helios_recommended_replicas", labels) is not None

    clock.now += 100
    feeder.feed(sample(clock.now, "b", "two"), key=b"b/two")
    assert runtime.sweep() == []
    assert registry.get_sample_value("helios_recommended_replicas", labels) is not None

    clock.now += 21  # a/one silent 121 s > HELIOS_STALE_AFTER: gauges go, state stays
    assert runtime.sweep() == []
    assert registry.get_sample_value("helios_recommended_replicas", labels) is None
    assert (
        registry.get_sample_value("helios_recommended_replicas", {"namespace": "b", "deployment": "two"})
        is not None
    )
    assert set(runtime.entries) == {"a/one", "b/two"}

    clock.now += 480  # a/one silent 601 s > HELIOS_IDLE_TTL: state dropped, tombstoned on its partition
    assert runtime.sweep() == [(3, "a/one")]
    assert set(runtime.entries) == {"b/two"}
    assert registry.get_sample_value("helios_tracked_deployments") == 1
    # The freed slot admits a new deployment under the cap.
    assert not feeder.feed(sample(clock.now, "c", "three"), key=b"c/three").dead
    assert len(runtime.entries) == 2


def test_a_sample_refreshes_the_idle_clock(clock: Clock) -> None:
    runtime, _ = make_runtime(clock, HELIOS_STALE_AFTER="120", HELIOS_IDLE_TTL="600")
    feeder = Feeder(runtime)
    for _ in range(5):
        feeder.feed(sample(clock.now))
        clock.now += 119
        assert runtime.sweep() == []
    assert list(runtime.entries) == ["saleor/saleor-api"]
    assert runtime.metrics.tracked()  # still exported


def test_evicted_deployment_never_keeps_gauges(clock: Clock) -> None:
    runtime, registry = make_runtime(clock, HELIOS_STALE_AFTER="600", HELIOS_IDLE_TTL="120")
    feeder = Feeder(runtime)
    feeder.feed(sample(NOW))
    clock.now += 121
    assert runtime.sweep() == [(0, "saleor/saleor-api")]
    labels = {"namespace": "saleor", "deployment": "saleor-api"}
    assert registry.get_sample_value("helios_recommended_replicas", labels) is None


def test_revoke_forgets_deployments_of_lost_partitions(rt: tuple[Runtime, CollectorRegistry]) -> None:
    runtime, registry = rt
    feeder = Feeder(runtime)
    feeder.feed(sample(NOW, "a", "one"), key=b"a/one", partition=1)
    feeder.feed(sample(NOW, "b", "two"), key=b"b/two", partition=2)
    assert runtime.revoke({1}) == ["a/one"]
    assert (
        registry.get_sample_value("helios_recommended_replicas", {"namespace": "a", "deployment": "one"})
        is None
    )
    assert (
        registry.get_sample_value("helios_recommended_replicas", {"namespace": "b", "deployment": "two"})
        is not None
    )
    assert registry.get_sample_value("helios_tracked_deployments") == 1


def test_outputs_are_finite_after_a_hostile_sequence(rt: tuple[Runtime, CollectorRegistry]) -> None:
    """Extremes that pass validation (0, 1, 2**50 bytes) never make a forecast non-finite."""
    runtime, _ = rt
    feeder = Feeder(runtime)
    for i in range(30):
        extreme: dict[str, object] = {
            "cpu_utilization": float(i % 2),
            "memory_utilization": 1.0,
            "memory_bytes": float(2**50),
            "db_connections": 1_000_000.0 * (i % 2),
        }
        out = feeder.feed(sample_with(T0 - 30 * STEP + i * STEP + 1, extreme)).outputs[0]
        for h in out.forecast.horizons:
            assert h.cpu_utilization is not None
            assert all(
                math.isfinite(x)
                for x in (h.cpu_utilization.point, h.cpu_utilization.lower, h.cpu_utilization.upper)
            )
        assert math.isfinite(out.anomaly.anomaly_score)
        assert 1 <= out.recommendation.recommended_replicas <= runtime.settings.max_replicas


@pytest.mark.parametrize("feature", ["cpu_utilization", "memory_bytes", "db_connections"])
def test_a_boolean_is_not_a_measurement(rt: tuple[Runtime, CollectorRegistry], feature: str) -> None:
    runtime, _ = rt
    dead = only_dead(Feeder(runtime).feed(sample_with(NOW, {feature: True})))
    assert dead.reason == "schema" and feature in dead.detail
