"""The ingest runner: produce, wait for Kafka's acks, only then commit upstream; retry outages."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from pipeline.errors import ConfigError
from pipeline.ingest import add_arguments, build_source, run_ingest
from pipeline.kafka_config import kafka_client_kwargs
from pipeline.records import Metrics, MetricSample
from pipeline.settings import Settings, load_settings
from pipeline.sources.base import Batch, RawRecord
from pipeline.sources.replay import ReplaySource
from pipeline.sources.synthetic import SyntheticSource


def sample(i: int, deployment: str = "saleor-api") -> MetricSample:
    return MetricSample(
        namespace="saleor",
        deployment=deployment,
        timestamp=datetime.fromtimestamp(1_700_000_000 + 60 * i, UTC),
        metrics=Metrics(cpu_utilization=0.5),
    )


class Journal:
    """Shared log of what producers and sources did, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []


class FakeProducer:
    def __init__(self, journal: Journal, fail_sends: int = 0, fail_start: int = 0) -> None:
        self.journal = journal
        self.fail_sends = fail_sends
        self.fail_start = fail_start

    async def start(self) -> None:
        if self.fail_start:
            raise KafkaConnectionError("broker down")
        self.journal.events.append(("start", None))

    async def stop(self) -> None:
        self.journal.events.append(("stop", None))

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_sends:
            fut.set_exception(KafkaTimeoutError())
        else:
            self.journal.events.append(("acked", (topic, key, value)))
            fut.set_result(None)
        return fut


class Factory:
    """Hands out producers; the first ``failing`` ones fail (an outage that then ends)."""

    def __init__(self, journal: Journal, failing: int = 0, mode: str = "send") -> None:
        self.journal = journal
        self.failing = failing
        self.mode = mode
        self.made = 0

    def __call__(self, settings: Settings) -> FakeProducer:
        self.made += 1
        bad = self.made <= self.failing
        return FakeProducer(
            self.journal, fail_sends=bad and self.mode == "send", fail_start=bad and self.mode == "start"
        )


class ListSource:
    name = "list"

    def __init__(self, journal: Journal, batches: list[Batch]) -> None:
        self.journal = journal
        self._batches = batches

    async def batches(self) -> AsyncIterator[Batch]:
        for i, b in enumerate(self._batches):

            async def commit(i: int = i) -> None:
                self.journal.events.append(("commit", i))

            yield Batch(b.samples, commit, b.raw)


@pytest.fixture
def settings() -> Settings:
    return load_settings({})


async def test_commit_comes_after_every_record_of_its_batch_was_acked(settings: Settings) -> None:
    j = Journal()
    source = ListSource(
        j, [Batch([sample(0), sample(1)]), Batch([sample(2)], raw=[RawRecord(b"k", b"not json")])]
    )
    stats = await run_ingest(settings, source, producer_factory=Factory(j))
    kinds = [e[0] for e in j.events]
    assert kinds == ["start", "acked", "acked", "commit", "acked", "acked", "commit", "stop"]
    topic, key, value = j.events[1][1]
    assert topic == "helios.metrics" and key == b"saleor/saleor-api"
    assert MetricSample.model_validate_json(value) == sample(0)
    assert j.events[5][1] == ("helios.metrics", b"k", b"not json")
    assert (stats.samples, stats.raw, stats.batches, stats.produce_failures) == (3, 1, 2, 0)


@pytest.mark.parametrize("mode", ["send", "start"])
async def test_an_outage_is_retried_and_nothing_commits_before_the_acks(
    settings: Settings, mode: str
) -> None:
    j = Journal()
    factory = Factory(j, failing=3, mode=mode)
    source = ListSource(j, [Batch([sample(0)])])
    stats = await run_ingest(settings, source, producer_factory=factory, backoff_initial=0.001)
    assert stats.produce_failures == 3
    assert factory.made == 4  # a fresh producer after each failure
    kinds = [e[0] for e in j.events]
    assert kinds.index("commit") > kinds.index("acked")
    assert kinds.count("commit") == 1


async def test_stop_during_an_outage_abandons_the_batch_uncommitted(settings: Settings) -> None:
    j = Journal()
    stop = asyncio.Event()
    source = ListSource(j, [Batch([sample(0)])])
    task = asyncio.create_task(
        run_ingest(
            settings, source, stop=stop, producer_factory=Factory(j, failing=10**6), backoff_initial=0.01
        )
    )
    await asyncio.sleep(0.1)
    stop.set()
    stats = await asyncio.wait_for(task, 5)
    assert stats.produce_failures >= 2
    assert ("commit", 0) not in j.events and stats.batches == 0


async def test_stop_while_waiting_for_the_source_returns_promptly(settings: Settings) -> None:
    j = Journal()
    stop = asyncio.Event()

    class Idle:
        name = "idle"

        async def batches(self) -> AsyncIterator[Batch]:
            await asyncio.sleep(3600)
            yield Batch([])

    task = asyncio.create_task(run_ingest(settings, Idle(), stop=stop, producer_factory=Factory(j)))
    await asyncio.sleep(0.05)
    stop.set()
    stats = await asyncio.wait_for(task, 2)
    assert stats.batches == 0


async def test_a_failed_upstream_commit_is_counted_not_fatal(settings: Settings) -> None:
    j = Journal()

    async def broken() -> None:
        raise RuntimeError("ack failed")

    class One:
        name = "one"

        async def batches(self) -> AsyncIterator[Batch]:
            yield Batch([sample(0)], broken)
            yield Batch([sample(1)])

    stats = await run_ingest(settings, One(), producer_factory=Factory(j))
    assert stats.commit_failures == 1 and stats.samples == 2


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_build_source_per_kind(settings: Settings, tmp_path: Path) -> None:
    synthetic = build_source(settings, parse("--source", "synthetic", "--count", "5", "--incident-at", "3"))
    assert isinstance(synthetic, SyntheticSource) and synthetic.count == 5 and synthetic.incident_at == 3
    csv = tmp_path / "t.csv"
    csv.write_text("timestamp,value\n2024-01-01T00:00:00Z,0.5\n")
    replay = build_source(settings, parse("--source", "replay", "--file", str(csv), "--speedup", "10"))
    assert isinstance(replay, ReplaySource) and replay.speedup == 10
    with pytest.raises(ConfigError, match="--file"):
        build_source(settings, parse("--source", "replay"))
    with pytest.raises(ConfigError, match="GCP_PROJECT_ID"):
        build_source(settings, parse("--source", "cloud-monitoring"))
    with pytest.raises(ConfigError, match="GCP_PROJECT_ID"):
        build_source(settings, parse("--source", "pubsub", "--subscription", "helios"))


def test_kafka_kwargs_plaintext_and_sasl() -> None:
    plain = kafka_client_kwargs(load_settings({"HELIOS_KAFKA_BOOTSTRAP": "k:9092"}))
    assert plain == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    sasl = kafka_client_kwargs(
        load_settings(
            {
                "HELIOS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "HELIOS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "HELIOS_KAFKA_SASL_USERNAME": "helios",
                "HELIOS_KAFKA_SASL_PASSWORD": "s3cret",
            }
        )
    )
    assert sasl["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (sasl["sasl_plain_username"], sasl["sasl_plain_password"]) == ("helios", "s3cret")
    assert "ssl_context" not in sasl


def test_kafka_kwargs_ssl_checks_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HELIOS_KAFKA_SSL_CAFILE"):
        kafka_client_kwargs(
            load_settings(
                {"HELIOS_KAFKA_SECURITY_PROTOCOL": "SSL", "HELIOS_KAFKA_SSL_CAFILE": str(tmp_path / "no.pem")}
            )
        )
    with pytest.raises(ConfigError, match="go together"):
        kafka_client_kwargs(
            load_settings(
                {"HELIOS_KAFKA_SECURITY_PROTOCOL": "SSL", "HELIOS_KAFKA_SSL_CERTFILE": str(tmp_path)}
            )
        )
    kwargs = kafka_client_kwargs(load_settings({"HELIOS_KAFKA_SECURITY_PROTOCOL": "SSL"}))
    assert kwargs["security_protocol"] == "SSL" and kwargs["ssl_context"] is not None
