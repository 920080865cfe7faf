"""Helpers for the fault-injection tests: a private broker, an ingester process, label-set parsing."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from pipeline.metrics import HeliosMetrics
from pipeline.model_store import ModelStore
from pipeline.records import RecommendationRecord
from pipeline.runtime import RawRecord, Runtime
from pipeline.settings import load_settings

_SERIES = re.compile(r"^helios_recommended_replicas\{([^}]*)\}\s")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def exported(text: str) -> set[str]:
    """``namespace/deployment`` of every ``helios_recommended_replicas`` label set in an exposition."""
    out = set()
    for line in text.splitlines():
        m = _SERIES.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(1)))
            out.add(f"{labels['namespace']}/{labels['deployment']}")
    return out


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the default (murmur2) partitioner of aiokafka, and so Faust, gives ``key``."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


def spread_keys(
    namespace: str, partitions: int, per_partition: int, accept: Callable[[str], bool] = lambda key: True
) -> list[str]:
    """Keys ``accept`` takes, chosen so each partition gets exactly ``per_partition`` of them."""
    chosen: dict[int, list[str]] = {p: [] for p in range(partitions)}
    i = 0
    while any(len(v) < per_partition for v in chosen.values()):
        key = f"{namespace}/svc-{i}"
        bucket = chosen[partition_of(key.encode(), partitions)]
        if len(bucket) < per_partition and accept(key):
            bucket.append(key)
        i += 1
    return [k for p in range(partitions) for k in chosen[p]]


def reference_by_key(
    env: dict[str, str], records: Sequence[tuple[bytes, bytes]]
) -> dict[str, list[RecommendationRecord]]:
    """Recommendations of an uninterrupted in-process run over the same records, per deployment key."""
    settings = load_settings(env)
    metrics = HeliosMetrics.create(CollectorRegistry())
    store = ModelStore(settings.model_path, metrics)
    assert store.reload()
    runtime = Runtime(settings, metrics, store)
    out: dict[str, list[RecommendationRecord]] = {}
    for i, (key, value) in enumerate(records):
        result = runtime.process([RawRecord(key, value, "t", 0, i)], lambda k: None)
        for o in result.outputs:
            out.setdefault(key.decode(), []).append(o.recommendation)
    return out


async def committed_lag(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Records of ``topic`` the consumer group has not committed yet (end offset minus committed offset)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())


def wait_until(
    cond: Callable[[], bool], timeout: float, what: str, on_fail: Callable[[], str] = lambda: ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout} s\n{on_fail()}")


def record_keys(messages: Iterable[Any]) -> set[tuple[bytes, str]]:
    """Distinct (key, window timestamp) of recommendation records read from Kafka."""
    out = set()
    for m in messages:
        rec = RecommendationRecord.model_validate_json(m.value)
        out.add((m.key, rec.timestamp.isoformat()))
    return out
