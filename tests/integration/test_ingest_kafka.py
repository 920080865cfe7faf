"""The ingest runner on the real broker: records, keys, outages, a crash between produce and commit."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import default_producer, run_ingest
from pipeline.records import MetricSample
from pipeline.settings import Settings, load_settings
from pipeline.sources.base import Batch, Source
from pipeline.sources.cloud_monitoring import CloudMonitoringSource
from pipeline.sources.synthetic import SyntheticSource
from tests.fakes.cloud_monitoring import FakeMonitoringServer
from tests.helpers import consume

pytestmark = pytest.mark.kafka


def settings_for(bootstrap: str, **extra: str) -> Settings:
    return load_settings(
        {
            "HELIOS_KAFKA_BOOTSTRAP": bootstrap,
            "HELIOS_TOPIC_METRICS": f"t-{uuid.uuid4().hex[:10]}.metrics",
            **extra,
        }
    )


# Reading a topic from the start: the suite's one helper (tests/helpers.py).
read_topic = consume


class CrashAfterProduce:
    """Wraps a source: no commit ever happens, as if the process died right after Kafka acked."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.name = inner.name
        self.produced = asyncio.Event()

    async def batches(self) -> AsyncIterator[Batch]:
        async for batch in self.inner.batches():

            async def die() -> None:
                self.produced.set()
                await asyncio.sleep(3600)  # cancelled here: the commit never runs

            yield Batch(batch.samples, die, batch.raw)


async def test_synthetic_run_lands_every_sample_keyed_by_deployment(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap)
    source = SyntheticSource(interval=60, count=120, deployments=3, incident_at=100, batch_size=50)
    stats = await run_ingest(settings, source)
    assert stats.samples == 360 and stats.produce_failures == 0
    records = await read_topic(kafka_bootstrap, settings.topic_metrics, lambda r: len(r) >= 360)
    assert len(records) == 360
    samples = [MetricSample.model_validate_json(r.value) for r in records]
    assert all(r.key.decode() == s.key for r, s in zip(records, samples, strict=True))
    per_key: dict[str, list[float]] = {}
    for r, s in zip(records, samples, strict=True):
        per_key.setdefault(s.key, []).append(s.timestamp.timestamp())
        # Kafka stamps the record itself (create time now), not with the event time.
        assert abs(r.timestamp / 1000 - time.time()) < 120
    assert sorted(per_key) == ["saleor/saleor-api", "saleor/synthetic-0001", "saleor/synthetic-0002"]
    for stamps in per_key.values():
        assert stamps == sorted(stamps) and len(set(stamps)) == 120  # one partition per key keeps order


async def test_unreachable_broker_is_retried_until_it_answers(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap)
    dead = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:9"})  # nothing listens on port 9
    made = 0

    def factory(s: Settings) -> Any:
        nonlocal made
        made += 1
        return default_producer(dead if made <= 2 else s)

    committed = asyncio.Event()
    source = SyntheticSource(interval=60, count=5)

    class Watch:
        name = "watch"

        async def batches(self) -> AsyncIterator[Batch]:
            async for b in source.batches():

                async def commit() -> None:
                    committed.set()

                yield Batch(b.samples, commit)

    stats = await asyncio.wait_for(
        run_ingest(settings, Watch(), producer_factory=factory, backoff_initial=0.05), timeout=60
    )
    assert stats.produce_failures == 2 and made == 3 and committed.is_set()
    records = await read_topic(kafka_bootstrap, settings.topic_metrics, lambda r: len(r) >= 5)
    assert len(records) == 5


async def test_cloud_monitoring_killed_between_produce_and_commit_loses_and_duplicates_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, GCP_PROJECT_ID="test-project")
    clock = [1_700_000_000.0]
    cursor = tmp_path / "cursor.json"

    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    with FakeMonitoringServer() as server:

        def source() -> CloudMonitoringSource:
            return CloudMonitoringSource(
                settings,
                client=server.client(),
                namespaces=["saleor"],
                lag=0,
                cursor_path=cursor,
                clock=lambda: clock[0],
                sleep=no_sleep,
            )

        # Run 1: the first poll reaches Kafka, then the process "dies" before the cursor moves.
        crashing = CrashAfterProduce(source())
        task = asyncio.create_task(run_ingest(settings, crashing))
        await asyncio.wait_for(crashing.produced.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert json.loads(cursor.read_text())["cursor"] == {}  # nothing committed

        # Run 2, a minute later: re-reads the uncommitted window plus the new minute, commits.
        clock[0] += 60
        stop = asyncio.Event()
        second = source()

        class OnePoll:
            name = "one-poll"

            async def batches(self) -> AsyncIterator[Batch]:
                gen = second.batches()
                yield await anext(gen)
                await gen.aclose()

        await run_ingest(settings, OnePoll(), stop=stop)
        assert cursor.exists()

        # Run 3, another minute later: only the new minute.
        clock[0] += 60
        third = source()

        class OneMore:
            name = "one-more"

            async def batches(self) -> AsyncIterator[Batch]:
                gen = third.batches()
                yield await anext(gen)
                await gen.aclose()

        await run_ingest(settings, OneMore())

    records = await read_topic(kafka_bootstrap, settings.topic_metrics, lambda r: len(r) >= 9 + 12 + 3)
    samples = [MetricSample.model_validate_json(r.value) for r in records]
    end = (1_700_000_000 // 60) * 60
    expected = {
        (k, float(t))
        for k in ("saleor/saleor-api", "saleor/saleor-worker", "saleor/dashboard")
        for t in range(int(end) - 120, int(end) + 121, 60)
    }
    seen = [(s.key, s.timestamp.timestamp()) for s in samples]
    assert set(seen) == expected  # no gap
    # Duplicates only from the batch that was produced but never committed (the worker dedups them).
    dupes = {x for x in seen if seen.count(x) > 1}
    assert dupes == {(k, t) for k, t in expected if t <= end}
    assert len(seen) == len(expected) + len(dupes)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
async def test_broker_restart_under_load_loses_nothing(kafka_bootstrap: str) -> None:
    """A private broker (same scripts/kafka-local, own ports) is stopped and restarted mid-run."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    port = _free_port()
    env = {**os.environ, "KAFKA_LOCAL_PORT": str(port), "KAFKA_LOCAL_CONTROLLER_PORT": str(_free_port())}

    def broker(cmd: str) -> None:
        subprocess.run(
            [str(repo / "scripts" / "kafka-local"), cmd],
            env=env,
            check=True,
            stdout=sys.stderr,
            stderr=sys.stderr,
        )

    await asyncio.to_thread(broker, "start")
    try:
        settings = settings_for(f"127.0.0.1:{port}")
        source = SyntheticSource(interval=60, count=1200, rate=100, batch_size=50)
        task = asyncio.create_task(run_ingest(settings, source, backoff_initial=0.2, backoff_max=2.0))
        await asyncio.sleep(3)
        assert not task.done()  # the broker goes away mid-run
        await asyncio.to_thread(broker, "stop")
        await asyncio.sleep(3)
        await asyncio.to_thread(broker, "start")
        stats = await asyncio.wait_for(task, 90)
        records = await read_topic(
            settings.kafka_bootstrap, settings.topic_metrics, lambda r: len(r) >= 1200, 60
        )
        stamps = {MetricSample.model_validate_json(r.value).timestamp for r in records}
        # aiokafka holds and retries the sends across the outage (or the runner re-sends the batch,
        # which may repeat records): either way every sample is there.
        assert len(stamps) == 1200
        assert stats.samples == 1200
    finally:
        await asyncio.to_thread(broker, "stop")
        subprocess.run(
            [str(repo / "scripts" / "kafka-local"), "wipe"],
            env=env,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
