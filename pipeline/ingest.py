"""The ingester: one source, one idempotent Kafka producer, at-least-once delivery.

For every batch a source yields, :func:`run_ingest` produces each record to the metrics
topic (key ``namespace/deployment``, value the sample's JSON), waits until Kafka has
acknowledged all of them (``acks="all"``, idempotent producer), and only then awaits
``batch.commit()``, which acknowledges upstream (Pub/Sub ack, Cloud Monitoring cursor).
A crash anywhere before the commit re-delivers the batch; the worker deduplicates by
(deployment, timestamp), so downstream sees every sample, once.

When Kafka is unreachable (broker restart, network), the batch is retried with exponential
backoff on a fresh producer: the runner never crashes on a broker outage and never commits
a batch that Kafka has not acknowledged. The record timestamp is left to Kafka (event time
is inside the record), so a trace stamped in the past or a skewed clock cannot get a record
refused by the broker's timestamp checks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pipeline.errors import ConfigError, HeliosError
from pipeline.kafka_config import kafka_client_kwargs
from pipeline.settings import Settings, load_settings
from pipeline.sources.base import Batch, Source

log = logging.getLogger(__name__)

SOURCES = ("cloud-monitoring", "pubsub", "replay", "synthetic")


class Producer(Protocol):
    """The part of ``AIOKafkaProducer`` the runner uses (tests substitute a fake)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Awaitable[Any]: ...


def default_producer(settings: Settings) -> Producer:
    """An idempotent producer waiting for all in-sync replicas."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        **kafka_client_kwargs(settings),
        client_id=f"{settings.app_id}-ingest",
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        # Fail a send within 30 s instead of 40 s so an outage is noticed and retried sooner.
        request_timeout_ms=30_000,
    )


@dataclass
class IngestStats:
    """What one run did; returned by :func:`run_ingest`."""

    batches: int = 0
    samples: int = 0
    raw: int = 0
    produce_failures: int = 0
    commit_failures: int = 0


def _produce_errors() -> tuple[type[BaseException], ...]:
    from aiokafka.errors import KafkaError

    # OSError: connection refused while starting; TimeoutError: metadata never arrived.
    return (KafkaError, OSError, TimeoutError)


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


class _Runner:
    def __init__(
        self,
        settings: Settings,
        stop: asyncio.Event,
        producer_factory: Callable[[Settings], Producer],
        backoff_initial: float,
        backoff_max: float,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic_metrics
        self.stop = stop
        self.producer_factory = producer_factory
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.producer: Producer | None = None
        self.stats = IngestStats()

    async def _close_producer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception:
                log.debug("ingest: error while stopping a failed producer", exc_info=True)

    async def _produce(self, batch: Batch) -> None:
        if self.producer is None:
            producer = self.producer_factory(self.settings)
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self.producer = producer
        futures = []
        for sample in batch.samples:
            futures.append(
                await self.producer.send(
                    self.topic, value=sample.model_dump_json().encode(), key=sample.key.encode()
                )
            )
        for raw in batch.raw:
            futures.append(await self.producer.send(self.topic, value=raw.value, key=raw.key))
        await asyncio.gather(*futures)

    async def deliver(self, batch: Batch) -> bool:
        """Produce until Kafka acknowledged the whole batch, then commit; False if stopped first."""
        backoff = self.backoff_initial
        while True:
            try:
                await self._produce(batch)
                break
            except _produce_errors() as exc:
                # Re-sending the whole batch may duplicate records; the worker dedups them.
                self.stats.produce_failures += 1
                log.warning(
                    "ingest: producing %d records to %s failed (%s: %s); retrying in %.1f s",
                    len(batch),
                    self.topic,
                    type(exc).__name__,
                    exc,
                    backoff,
                )
                await self._close_producer()
                if await _wait_or_stop(self.stop, backoff):
                    return False
                backoff = min(backoff * 2, self.backoff_max)
        try:
            await batch.commit()
        except Exception as exc:
            self.stats.commit_failures += 1
            log.warning("ingest: committing a batch upstream failed (%s); it will be redelivered", exc)
        self.stats.batches += 1
        self.stats.samples += len(batch.samples)
        self.stats.raw += len(batch.raw)
        return True


async def run_ingest(
    settings: Settings,
    source: Source,
    *,
    stop: asyncio.Event | None = None,
    producer_factory: Callable[[Settings], Producer] = default_producer,
    backoff_initial: float = 0.5,
    backoff_max: float = 30.0,
) -> IngestStats:
    """Move every batch of ``source`` to ``settings.topic_metrics``; return when it ends or ``stop`` is set.

    A batch is committed upstream only after Kafka acknowledged all its records. Kafka errors
    are retried with exponential backoff (``backoff_initial`` doubling up to ``backoff_max``
    seconds) on a fresh producer; setting ``stop`` abandons the batch in flight uncommitted.
    """
    stop = stop if stop is not None else asyncio.Event()
    runner = _Runner(settings, stop, producer_factory, backoff_initial, backoff_max)
    batches: AsyncIterator[Batch] = source.batches()
    stopper = asyncio.ensure_future(stop.wait())
    started = time.monotonic()
    try:
        while not stop.is_set():
            nxt = asyncio.ensure_future(anext(batches))
            done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
                break
            try:
                batch = nxt.result()
            except StopAsyncIteration:
                break
            if not len(batch):
                await batch.commit()
                continue
            if not await runner.deliver(batch):
                break
    finally:
        stopper.cancel()
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
        await runner._close_producer()
    s = runner.stats
    log.info(
        "ingest from %s done in %.1f s: %d samples, %d raw, %d batches, %d produce retries, %d bad commits",
        getattr(source, "name", "?"),
        time.monotonic() - started,
        s.samples,
        s.raw,
        s.batches,
        s.produce_failures,
        s.commit_failures,
    )
    return s


def _past_instant(text: str) -> float:
    """``--end``'s value: an ISO 8601 time (UTC when it names no offset) as epoch seconds."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``helios ingest``."""
    parser.add_argument("--source", required=True, choices=SOURCES, help="where samples come from")
    parser.add_argument(
        "--namespace", help="namespace of replay/synthetic samples (default HELIOS_METRICS_NAMESPACE)"
    )
    parser.add_argument(
        "--deployment", help="deployment of replay/synthetic samples (default HELIOS_METRICS_DEPLOYMENT)"
    )
    g = parser.add_argument_group("pubsub")
    g.add_argument("--subscription", help="projects/P/subscriptions/S, or S with GCP_PROJECT_ID")
    g = parser.add_argument_group("replay")
    g.add_argument(
        "--file", type=Path, help="CSV trace: timestamp plus feature columns, or NAB timestamp,value"
    )
    g.add_argument("--speedup", default="max", help="pacing over real time, or 'max' (default) for no pacing")
    g.add_argument("--feature", default="cpu_utilization", help="feature a NAB 'value' column stands for")
    g = parser.add_argument_group("synthetic")
    g.add_argument(
        "--rate", type=float, default=0.0, help="samples per second (default 0: as fast as possible)"
    )
    g.add_argument("--count", type=int, help="steps per deployment (default: endless, following the clock)")
    g.add_argument("--incident-at", type=int, help="step index of the injected incident")
    g.add_argument(
        "--end",
        type=_past_instant,
        help="with --count: event time of the last step, ISO 8601 (e.g. 2026-12-01T06:30Z; default now)",
    )
    g.add_argument(
        "--incident-rate",
        type=float,
        help="samples per second during the incident (default: --rate); slower keeps it visible in a demo",
    )
    g.add_argument(
        "--utc-offset",
        type=float,
        default=0.0,
        help="the shop's time zone in hours east of UTC, which sets its daily cycle's phase (default 0)",
    )
    g.add_argument("--deployments", type=int, default=1, help="number of deployments (load tests)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--backfill", type=int, default=120, help="endless stream: steps of history emitted first")
    g = parser.add_argument_group("cloud-monitoring")
    g.add_argument(
        "--namespaces",
        help="comma-separated namespaces to watch, or 'all' (default HELIOS_METRICS_NAMESPACE)",
    )
    g.add_argument(
        "--cloudsql-instance", help="Cloud SQL database_id (project:instance); default: all instances"
    )
    g.add_argument(
        "--lag", type=float, default=120.0, help="seconds Cloud Monitoring needs to settle a point"
    )
    g.add_argument("--cursor-file", type=Path, help="JSON file keeping the poll cursor across restarts")


def build_source(settings: Settings, args: argparse.Namespace) -> Source:
    """The source named by ``args.source``, configured from the settings and the options."""
    namespace = args.namespace or settings.metrics_namespace
    deployment = args.deployment or settings.metrics_deployment
    if args.source == "synthetic":
        from pipeline.sources.synthetic import SyntheticSource

        return SyntheticSource(
            namespace,
            deployment,
            interval=settings.scoring_interval,
            rate=args.rate,
            count=args.count,
            incident_at=args.incident_at,
            deployments=args.deployments,
            seed=args.seed,
            backfill=args.backfill,
            batch_size=settings.batch_size,
            incident_rate=args.incident_rate,
            end=args.end,
            utc_offset=args.utc_offset,
        )
    if args.source == "replay":
        from pipeline.sources.replay import ReplaySource, parse_speedup

        if args.file is None:
            raise ConfigError("--source replay needs --file F.csv")
        return ReplaySource(
            args.file,
            namespace,
            deployment,
            speedup=parse_speedup(str(args.speedup)),
            feature=args.feature,
            batch_size=settings.batch_size,
        )
    if args.source == "pubsub":
        from pipeline.sources.pubsub import PubSubSource

        if not args.subscription:
            raise ConfigError("--source pubsub needs --subscription")
        return PubSubSource(settings, args.subscription, max_messages=min(settings.batch_size, 1000))
    if args.source == "cloud-monitoring":
        from pipeline.sources.cloud_monitoring import CloudMonitoringSource

        namespaces = args.namespaces or settings.metrics_namespace
        return CloudMonitoringSource(
            settings,
            namespaces=None
            if namespaces == "all"
            else [n.strip() for n in namespaces.split(",") if n.strip()],
            cloudsql_instance=args.cloudsql_instance,
            lag=args.lag,
            cursor_path=args.cursor_file,
        )
    raise ConfigError(f"--source must be one of {', '.join(SOURCES)}, got {args.source!r}")


def run(args: argparse.Namespace) -> int:
    """``helios ingest``: run until the source ends or SIGINT/SIGTERM; exit 0, or 2 on bad configuration."""
    try:
        settings = load_settings()
        source = build_source(settings, args)
    except (HeliosError, ValueError) as exc:
        log.error("helios ingest: %s", exc)
        return 2

    async def main() -> IngestStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        return await run_ingest(settings, source, stop=stop)

    try:
        asyncio.run(main())
    except HeliosError as exc:
        log.error("helios ingest: %s", exc)
        return 1
    return 0
