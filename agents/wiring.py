"""The agents and services of a worker.

* ``helios-pipeline`` (agent): micro-batches of ``helios.metrics`` -> :meth:`Runtime.process` ->
  the three output topics, the DLQ, the state table's changelog and the gauges.
* partition hook: deployments of partitions that moved away lose their label sets.
* timers: the stale/idle sweeper, the model reloader, the broker probe behind ``/ready``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import faust
import orjson

from pipeline.errors import BadSample
from pipeline.runtime import BatchResult, RawRecord

if TYPE_CHECKING:
    from pipeline.app import Helios

log = logging.getLogger(__name__)


def _raw(event: Any) -> RawRecord:
    msg = event.message
    return RawRecord(
        key=msg.key, value=msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset
    )


async def _publish(helios: Helios, result: BatchResult) -> None:
    """Send the outputs, wait until Kafka has them, then persist state.

    The order is the delivery guarantee: outputs are durable before the state that produced them,
    and Faust flushes the producer again before it commits offsets. A crash anywhere replays the
    batch; replayed records already in the state are recognised by their offset and skipped, so
    state counts every sample once and outputs are at-least-once.
    """
    topics = helios.output_topics | {helios.settings.topic_dlq: helios.dlq_topic}
    for emit in result.emits:
        topics[emit.topic].send_soon(key=emit.key, value=emit.value)
    if result.emits and result.state_writes:
        await helios.app.producer.flush()
    table = helios.state
    for partition, key, value in result.state_writes:
        # Written to the changelog partition of the record's own partition (co-partitioning), which
        # a batch cannot rely on Faust's "current event" for.
        if value is None:
            table.data.pop(key, None)
            table.send_changelog(partition, key, None, value_serializer="raw")
        else:
            table.data[key] = value
            table.send_changelog(partition, key, value)


def wire(app: faust.App, helios: Helios) -> None:
    settings = helios.settings
    runtime = helios.runtime

    def load(key: str) -> dict[str, Any] | None:
        # Values we wrote are bytes; values restored from the changelog arrive already decoded.
        value = helios.state.data.get(key)
        if value is None or isinstance(value, dict):
            return value
        decoded: dict[str, Any] = orjson.loads(value)
        return decoded

    @app.agent(helios.metrics_topic, name="helios-pipeline")
    async def pipeline_agent(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within):
            records = [_raw(e) for e in events]
            try:
                result = runtime.process(records, load)
            except Exception:
                log.exception("batch of %d failed; retrying record by record", len(records))
                result = BatchResult()
                for record in records:
                    try:
                        one = runtime.process([record], load)
                    except Exception as exc:
                        log.exception("record %s/%d@%d failed", record.topic, record.partition, record.offset)
                        dead = runtime.dead_letter(
                            record, BadSample("internal_error", repr(exc)), helios.clock()
                        )
                        one = BatchResult(dead=[dead])
                        one.emits.append(runtime.dlq_emit(dead))
                    result.emits += one.emits
                    result.state_writes += one.state_writes
            await _publish(helios, result)

    owned: set[int] = set()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        # aiokafka rebalances eagerly: what we lost is what we had minus what we got back.
        mine = {tp.partition for tp in assigned if tp.topic == settings.topic_metrics}
        lost = owned - mine
        if lost:
            gone = runtime.revoke(lost)
            log.info("partitions %s moved away; unexported %d deployments", sorted(lost), len(gone))
        owned.clear()
        owned.update(mine)

    @app.timer(interval=min(5.0, settings.stale_after / 4))
    async def sweep() -> None:
        tombstones = runtime.sweep()
        if tombstones:
            await _publish(helios, BatchResult(state_writes=[(p, k, None) for p, k in tombstones]))

    @app.task
    async def load_models() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, helios.models.reload)
        helios.models_loaded = helios.models.artifact is not None
        while True:
            await asyncio.sleep(settings.model_refresh_interval)
            await loop.run_in_executor(None, helios.models.reload)
            helios.models_loaded = helios.models.artifact is not None

    @app.task
    async def refit_prophet() -> None:
        await helios.prophet.run()

    @app.timer(interval=2.0)
    async def probe_broker() -> None:
        helios.broker_up = await _reachable(settings.kafka_bootstrap)
        helios.metrics.ready.set(1 if is_ready(app, helios)[0] else 0)


async def _reachable(bootstrap: str) -> bool:
    """True if any bootstrap broker accepts a TCP connection within a second."""
    for hostport in bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=1.0)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False


def is_ready(app: faust.App, helios: Helios) -> tuple[bool, list[str]]:
    """Ready = models loaded, broker reachable, partitions assigned, no table recovery running."""
    reasons = []
    if not helios.models_loaded:
        reasons.append(
            f"model artifact not loaded from {helios.settings.model_path}: {helios.models.last_error}"
        )
    if not helios.broker_up:
        reasons.append(f"Kafka broker {helios.settings.kafka_bootstrap} unreachable")
    try:
        assigned = app.assignor.assigned_actives()
    except Exception:
        assigned = set()
    if not assigned:
        reasons.append("no partitions assigned yet")
    if app.rebalancing or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
        reasons.append("rebalancing or recovering tables")
    return not reasons, reasons
