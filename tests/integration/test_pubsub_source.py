"""The Pub/Sub source against Google's emulator and the real broker: ack only after Kafka's ack."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import pubsub_v1

from pipeline.ingest import run_ingest
from pipeline.records import Metrics, MetricSample
from pipeline.settings import Settings, load_settings
from pipeline.sources.base import Batch, Source
from pipeline.sources.pubsub import PubSubSource
from tests.helpers import consume
from tests.integration.pubsub_fixture import pubsub_emulator  # noqa: F401 - the session fixture

pytestmark = [pytest.mark.pubsub, pytest.mark.kafka]

ACK_DEADLINE = 10  # the smallest Pub/Sub allows


def make_subscription(emulator: str) -> tuple[pubsub_v1.PublisherClient, str, str]:
    name = uuid.uuid4().hex[:12]
    topic = f"projects/test/topics/metrics-{name}"
    subscription = f"projects/test/subscriptions/helios-{name}"
    publisher = pubsub_v1.PublisherClient()
    publisher.create_topic(name=topic)
    with pubsub_v1.SubscriberClient() as sub:
        sub.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=ACK_DEADLINE)
    return publisher, topic, subscription


def sample(i: int) -> MetricSample:
    return MetricSample(
        namespace="saleor",
        deployment="saleor-api",
        timestamp=datetime.fromtimestamp(1_700_000_000 + 60 * i, UTC),
        metrics=Metrics(cpu_utilization=round(0.3 + i / 100, 4), db_connections=float(i)),
    )


def publish(publisher: pubsub_v1.PublisherClient, topic: str, payloads: list[bytes]) -> None:
    for f in [publisher.publish(topic, p) for p in payloads]:
        f.result(timeout=10)


def settings_for(bootstrap: str) -> Settings:
    return load_settings(
        {"HELIOS_KAFKA_BOOTSTRAP": bootstrap, "HELIOS_TOPIC_METRICS": f"t-{uuid.uuid4().hex[:10]}.metrics"}
    )


# Reading a topic from the start: the suite's one helper (tests/helpers.py).
read_until = consume


def source_for(settings: Settings, subscription: str) -> PubSubSource:
    return PubSubSource(settings, subscription, pull_timeout=1.0, idle_sleep=0.05, max_messages=4)


async def test_valid_and_invalid_messages_all_reach_kafka(pubsub_emulator: str, kafka_bootstrap: str) -> None:  # noqa: F811
    publisher, topic, subscription = make_subscription(pubsub_emulator)
    valid = [sample(i) for i in range(10)]
    publish(publisher, topic, [s.model_dump_json().encode() for s in valid] + [b"{oops", b'{"namespace": 3}'])
    settings = settings_for(kafka_bootstrap)
    stop = asyncio.Event()
    task = asyncio.create_task(run_ingest(settings, source_for(settings, subscription), stop=stop))
    records = await read_until(kafka_bootstrap, settings.topic_metrics, lambda r: len(r) >= 12, 30)
    stop.set()
    stats = await asyncio.wait_for(task, 10)
    values = [r.value for r in records]
    assert len(records) == 12
    assert b"{oops" in values and b'{"namespace": 3}' in values  # forwarded for the worker's DLQ
    got = {MetricSample.model_validate_json(v) for v in values if v.startswith(b'{"schema_version"')}
    assert got == {s.model_copy(update={"source": "pubsub"}) for s in valid}
    assert {r.key for r in records if r.value.startswith(b'{"schema_version"')} == {b"saleor/saleor-api"}
    assert (stats.samples, stats.raw) == (10, 2)


class CrashAfterProduce:
    """The process dies after Kafka acknowledged the first batch and before Pub/Sub is acked."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.name = inner.name
        self.produced = asyncio.Event()
        self.first: list[MetricSample] = []

    async def batches(self) -> AsyncIterator[Batch]:
        async for batch in self.inner.batches():
            self.first = batch.samples

            async def die() -> None:
                self.produced.set()
                await asyncio.sleep(3600)

            yield Batch(batch.samples, die, batch.raw)


@pytest.mark.slow
async def test_killed_between_produce_and_ack_loses_nothing(
    pubsub_emulator: str,  # noqa: F811
    kafka_bootstrap: str,
) -> None:
    publisher, topic, subscription = make_subscription(pubsub_emulator)
    valid = [sample(i) for i in range(8)]
    publish(publisher, topic, [s.model_dump_json().encode() for s in valid])
    settings = settings_for(kafka_bootstrap)

    crashing = CrashAfterProduce(source_for(settings, subscription))
    task = asyncio.create_task(run_ingest(settings, crashing))
    await asyncio.wait_for(crashing.produced.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert crashing.first  # this batch is in Kafka but was never acknowledged to Pub/Sub

    stop = asyncio.Event()
    task = asyncio.create_task(run_ingest(settings, source_for(settings, subscription), stop=stop))
    expected = {(s.key, s.timestamp) for s in valid}

    def complete(records: list[Any]) -> bool:
        # Every sample, plus the crashed batch a second time (redelivered, since never acked).
        return len(records) >= len(valid) + len(crashing.first)

    # The unacknowledged batch comes back once its ack deadline has passed.
    records = await read_until(kafka_bootstrap, settings.topic_metrics, complete, 3 * ACK_DEADLINE)
    await asyncio.sleep(1.0)  # let the restarted runner ack what it produced
    stop.set()
    stats = await asyncio.wait_for(task, 10)
    samples = [MetricSample.model_validate_json(r.value) for r in records]
    assert {(s.key, s.timestamp) for s in samples} == expected  # nothing lost
    first = {(s.key, s.timestamp) for s in crashing.first}
    redelivered = [x for x in ((s.key, s.timestamp) for s in samples) if x in first]
    assert len(redelivered) == 2 * len(first)  # produced twice: once before the crash, once after
    assert stats.samples == len(valid)  # the restarted run took them all and acknowledged them

    # Acknowledged for good: past another ack deadline nothing is redelivered.
    with pubsub_v1.SubscriberClient() as sub:
        deadline = time.monotonic() + ACK_DEADLINE + 2
        leftovers = 0
        while time.monotonic() < deadline:
            resp = sub.pull(request={"subscription": subscription, "max_messages": 10}, timeout=3)
            leftovers += len(resp.received_messages)
    assert leftovers == 0
