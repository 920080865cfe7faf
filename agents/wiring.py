"""The agent, the partition hook and the services of a worker, attached to an app by :func:`wire`.

* ``helios-pipeline`` (agent): micro-batches of ``helios.metrics`` -> decode -> :meth:`Runtime.process` ->
  the output topics, the DLQ, the state table's changelog and the gauges (:mod:`agents.processor`).
* partition hook: deployments of partitions that moved away lose their label sets.
* services (:mod:`agents.services`): the stale/idle sweeper, the model reloader, the broker probe and
  the consumption watchdog behind ``/ready``; the Prophet refits run as a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust

from agents.processor import BatchProcessor
from agents.services import BrokerProbe, ConsumptionWatchdogService, ModelReloader, Sweeper
from pipeline.app import Helios
from pipeline.runtime import RawRecord

#: Longest a part-filled micro-batch waits for one more event before it is processed.
LINGER = 0.05


def _raw(event: Any) -> RawRecord:
    msg = event.message
    return RawRecord(
        key=msg.key, value=msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset
    )


async def micro_batches(stream: Any, max_size: int) -> AsyncIterator[list[Any]]:
    """Events in batches: an event joins while more are already queued; a batch is yielded as soon as
    the queue runs dry, it holds ``max_size`` events, or its next event is ``LINGER`` away.

    Faust's ``take_events()`` stalled under load here with a part-filled buffer and its events
    unacked; this keeps no buffer handshake with Faust. The linger matters: a rebalance can clear the
    queue after ``empty()`` said more was coming, and a batch must not wait for new input.
    """
    events = stream.events().__aiter__()
    batch: list[Any] = []
    upcoming: asyncio.Future[Any] | None = None
    try:
        while True:
            if upcoming is None:
                upcoming = asyncio.ensure_future(events.__anext__())
            finished, _ = await asyncio.wait({upcoming}, timeout=LINGER if batch else None)
            if upcoming in finished:
                try:
                    batch.append(upcoming.result())
                except StopAsyncIteration:
                    break
                finally:
                    upcoming = None
                if len(batch) < max_size and not stream.channel.empty():
                    continue
            if batch:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        if upcoming is not None:
            upcoming.cancel()


def wire(app: faust.App, helios: Helios) -> None:
    """Attach the agent, the partition hook and the services to ``app``."""
    settings = helios.settings
    processor = BatchProcessor(helios)

    @app.agent(helios.metrics_topic, name="helios-pipeline")
    async def pipeline_agent(stream: Any) -> None:
        manual = stream.noack()
        async for batch in micro_batches(manual, settings.batch_size):
            await processor.handle_batch([_raw(e) for e in batch])
            for event in batch:
                await manual.ack(event)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        # aiokafka rebalances eagerly: what we lost is what we had minus what we got back.
        await processor.assigned({tp.partition for tp in assigned if tp.topic == settings.topic_metrics})

    @app.task
    async def refit_prophet() -> None:
        await helios.prophet.run()

    readiness = helios.readiness
    for service in (
        Sweeper(processor, interval=min(5.0, settings.stale_after / 4)),
        ModelReloader(helios.models, readiness, interval=settings.model_refresh_interval),
        BrokerProbe(app, settings.kafka_bootstrap, readiness, helios.metrics.ready),
        ConsumptionWatchdogService(app, processor, settings.topic_metrics, readiness),
    ):
        app.service(service)  # type: ignore[arg-type]  # an instance: Faust starts it as it is
