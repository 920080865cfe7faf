"""The agents and services of a worker.

* ``helios-pipeline`` (agent): micro-batches of ``helios.metrics`` -> :meth:`Runtime.process` ->
  the three output topics, the DLQ, the state table's changelog and the gauges.
* partition hook: deployments of partitions that moved away lose their label sets.
* timers: the stale/idle sweeper, the model reloader, the broker probe and the consumption
  watchdog behind ``/ready``, the Prophet refits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import faust
import orjson

from agents.gaps import fetch_gaps
from pipeline.app import Helios
from pipeline.errors import BadSample
from pipeline.kafka_config import kafka_client_kwargs
from pipeline.offsets import MARKER_PREFIX, Gap, OffsetTracker, marker_key, marker_value
from pipeline.runtime import BatchResult, RawRecord

log = logging.getLogger(__name__)

#: Seconds a partition with lag may sit without its next offset to process moving before /ready says so and
#: the watchdog reads it back. A consumed partition moves every batch (well under a second at full load); 30 s
#: left a partition stalled after a takeover for 35-40 s before it was found, 15 s halves that.
STALL_SECONDS = 15.0

#: Longest a part-filled micro-batch waits for one more event before it is processed.
LINGER = 0.05

#: Records processed between two yields to the event loop (~10 ms of work; one XGBoost call each).
#: 48 gave 1 % more throughput and a /health p99 of 158 ms instead of < 100 ms (benchmarks/perf.md).
CHUNK = 16


def _raw(event: Any) -> RawRecord:
    msg = event.message
    return RawRecord(
        key=msg.key, value=msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset
    )


async def _publish(helios: Helios, result: BatchResult) -> None:
    """Send the outputs, wait until Kafka has them, then persist state.

    The order is the delivery guarantee: outputs are acknowledged by Kafka before the state that
    produced them is written, and the batch's input is acknowledged after both (Faust flushes the
    changelog before it commits offsets). A crash anywhere replays the
    batch; replayed records already in the state are recognised by their offset and skipped, so
    state counts every sample once and outputs are at-least-once.
    """
    await helios.output.send(result.emits)
    table = helios.state
    for partition, key, value in result.state_writes:
        # Written to the changelog partition of the record's own partition (co-partitioning), which
        # a batch cannot rely on Faust's "current event" for. The live state is the runtime's objects:
        # the table keeps no second copy of it in memory (~12 KB per deployment), only the markers.
        if value is None:
            table.data.pop(key, None)
            table.send_changelog(partition, key, None, value_serializer="raw")
        else:
            if key.startswith(MARKER_PREFIX):
                table.data[key] = value
            table.send_changelog(partition, key, value)


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
    settings = helios.settings
    runtime = helios.runtime

    def load(key: str) -> dict[str, Any] | None:
        # Restored from the changelog after a restart or a takeover; the runtime holds it from now on.
        # Values restored from the changelog arrive already decoded; bytes are decoded here.
        value = helios.state.data.pop(key, None)
        if value is None or isinstance(value, dict):
            return value
        decoded: dict[str, Any] = orjson.loads(value)
        return decoded

    def process_safely(records: list[RawRecord]) -> BatchResult:
        """A bug must not lose a batch: on an unexpected error, isolate the culprit record by record."""
        try:
            return runtime.process(records, load)
        except Exception:
            log.exception("batch of %d failed; retrying record by record", len(records))
        result = BatchResult()
        for record in records:
            try:
                result.extend(runtime.process([record], load))
            except Exception as exc:
                log.exception("record %s/%d@%d failed", record.topic, record.partition, record.offset)
                dead = runtime.dead_letter(record, BadSample("internal_error", repr(exc)), helios.clock())
                result.extend(BatchResult(emits=[runtime.dlq_emit(dead)], dead=[dead]))
        return result

    readiness = helios.readiness
    readiness.stall_after = STALL_SECONDS
    watchdog = ConsumptionWatchdog(stall_after=STALL_SECONDS, clock=time.monotonic)
    tracker = OffsetTracker()
    samples = runtime.metrics.samples

    def begin(partition: int, first: int | None) -> None:
        """Start tracking a partition at its saved state's marker."""
        marker = marker_value(helios.state.data.get(marker_key(partition)))
        tracker.start(partition, marker)
        delivered = "nothing delivered yet" if first is None else f"first record at offset {first}"
        log.info("partition %d: %s; its saved state goes up to offset %s", partition, delivered, marker)

    async def read_back(gaps: list[Gap], why: str, behind_consumer: bool) -> list[RawRecord]:
        """The records of offset ranges the consumer did not deliver, read straight from Kafka.

        ``behind_consumer``: the consumer has moved past the ranges, so what is not read now is lost (the
        watchdog's ranges lie ahead of it: what is not read now is read when it looks again).
        """
        try:
            found, unfinished = await fetch_gaps(kafka_client_kwargs(settings), settings.topic_metrics, gaps)
        except Exception as exc:  # the broker is away: these samples cannot be processed now
            found, unfinished = {gap: [] for gap in gaps}, {gap.partition for gap in gaps}
            log.error("reading back %d offset ranges failed: %s", len(gaps), exc)
        records = []
        for gap, got in found.items():
            if gap.partition in unfinished and behind_consumer:
                log.error(
                    "offsets %d..%d of partition %d are not in the saved state and could not all be read "
                    "(%d records read)", gap.start, gap.end - 1, gap.partition, len(got),
                )  # fmt: skip
                samples.labels("lost").inc(gap.end - gap.start - len(got))
            elif gap.partition in unfinished:
                log.warning(
                    "read %d records of offsets %d..%d of partition %d; the rest is read on the next try",
                    len(got), gap.start, gap.end - 1, gap.partition,
                )  # fmt: skip
            else:
                log.info(
                    "read back offsets %d..%d of partition %d (%d records) %s",
                    gap.start, gap.end - 1, gap.partition, len(got), why,
                )  # fmt: skip
            samples.labels("recovered").inc(len(got))
            records.extend(got)
        return records

    async def unseen(records: list[RawRecord]) -> list[RawRecord]:
        """The records to process: replays dropped, offsets the consumer skipped read back in."""
        for p in {r.partition for r in records} - tracker.started:
            begin(p, min(r.offset for r in records if r.partition == p))
        fresh = tracker.fresh(records)
        if len(fresh) < len(records):
            samples.labels("replayed").inc(len(records) - len(fresh))
        gaps = tracker.gaps(fresh)
        if not gaps:
            return fresh
        # After a takeover or a restart: the samples since the last state write (the consumer resumes at
        # its committed offset, past them), or records the consumer skipped.
        fresh.extend(await read_back(gaps, "ahead of the consumer's position", behind_consumer=True))
        return sorted(fresh, key=lambda r: (r.partition, r.offset))

    async def handle(records: list[RawRecord]) -> None:
        """Process records end to end: outputs sent, state written, progress recorded. Hold ``busy``."""
        records = await unseen(records)
        result = BatchResult()
        for start in range(0, len(records), CHUNK):
            result.extend(process_safely(records[start : start + CHUNK]))
            # Let the web view and heartbeats in between chunks: /health stays fast under load.
            await asyncio.sleep(0)
        await _publish(helios, result)
        tracker.advance(records)

    #: Partitions of the metrics topic this worker owns now, and those it owned and lost (the hook below).
    owned: set[int] = set()
    moved_away: set[int] = set()

    #: One batch, sweep or partition move at a time. A batch yields between chunks; without this a sweep
    #: could save state holding samples whose outputs are not sent yet, and a partition could move away
    #: halfway through a batch that still holds its records.
    busy = asyncio.Lock()

    @app.agent(helios.metrics_topic, name="helios-pipeline")
    async def pipeline_agent(stream: Any) -> None:
        manual = stream.noack()
        async for batch in micro_batches(manual, settings.batch_size):
            async with busy:
                # A batch can straddle a rebalance: events of partitions this worker no longer owns are
                # left to their new owner (which reads them from its partition marker on), never processed
                # here, so two workers never write one deployment's state.
                await handle([_raw(e) for e in batch if e.message.partition not in moved_away])
            for event in batch:
                await manual.ack(event)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        # aiokafka rebalances eagerly: what we lost is what we had minus what we got back.
        mine = {tp.partition for tp in assigned if tp.topic == settings.topic_metrics}
        async with busy:
            lost = owned - mine
            if lost:
                gone = runtime.revoke(lost)
                log.info("partitions %s moved away; unexported %d deployments", sorted(lost), len(gone))
            tracker.forget(lost)
            owned.clear()
            owned.update(mine)
            moved_away.update(lost)
            moved_away.difference_update(mine)

    @app.timer(interval=min(5.0, settings.stale_after / 4))
    async def sweep() -> None:
        async with busy:
            writes = runtime.save_due() + [(p, k, None) for p, k in runtime.sweep()]
            if writes:
                await _publish(helios, BatchResult(state_writes=writes))

    async def reload_models() -> None:
        await asyncio.get_running_loop().run_in_executor(None, helios.models.reload)
        readiness.models_loaded = helios.models.artifact is not None
        readiness.model_error = helios.models.last_error

    @app.task
    async def load_models() -> None:
        await reload_models()
        while True:
            await asyncio.sleep(settings.model_refresh_interval)
            await reload_models()

    @app.task
    async def refit_prophet() -> None:
        await helios.prophet.run()

    async def progress(tp: Any) -> int | None:
        """The next offset of ``tp`` the agent has to process: where the saved state ends until the
        consumer has delivered something, the consumer's position if there is no saved state either."""
        processed_to = tracker.next.get(tp.partition)
        if processed_to is not None:
            return processed_to
        marker = marker_value(helios.state.data.get(marker_key(tp.partition)))
        return marker if marker is not None else await app.consumer.position(tp)

    async def catch_up(tp: Any, start: int, highwater: int) -> None:
        """Process what Kafka holds of ``tp`` from ``start`` on, read straight from Kafka."""
        p = tp.partition
        async with busy:
            if p not in owned or p in moved_away:
                return
            if p not in tracker.started:
                begin(p, None)
            start = tracker.next.get(p, start)  # the agent may have moved on while we waited
            if start < highwater:
                gaps = [Gap(p, start, highwater)]
                await handle(await read_back(gaps, "the consumer did not deliver", behind_consumer=False))
        # Whatever the consumer delivers again is skipped as replayed and acked, so Faust's committed offset
        # moves on too; resume it in case Faust holds it paused or out of its active set.
        try:
            await app.consumer.seek(tp, start)
            app.consumer.resume_partitions([tp])
        except Exception as exc:  # moved away since: its new owner reads it from the marker
            log.info("could not seek %s back to %d: %s", tp, start, exc)

    @app.timer(interval=5.0)
    async def watch_consumption() -> None:
        # After a rebalance Faust's consumer can stop delivering a partition it was given: aiokafka fetched
        # its records (its position reaches the highwater) but they never reach the agent, or never get
        # fetched at all (faust-streaming #629). The gap check of unseen() finds skipped records only when
        # a later record arrives; this finds the rest: a partition whose next offset to process has not
        # moved for STALL_SECONDS while Kafka holds records past it. Those are read back and processed.
        if app.rebalancing:
            watchdog.reset()
            return
        tps = [tp for tp in app.assignor.assigned_actives() if tp.topic == settings.topic_metrics]
        if not tps:
            return
        try:
            highwaters = await app.consumer.highwaters(*tps)
            positions = {tp: await progress(tp) for tp in tps}
        except Exception as exc:  # a rebalance or an outage under way: look again next time
            log.debug("consumption watchdog skipped: %s", exc)
            return
        for tp in watchdog.observe(positions, highwaters):
            log.warning(
                "%s has lag but has not moved from offset %s for %.0f s; reading it back (%s)",
                tp, positions[tp], STALL_SECONDS, _consumer_state(app, tp, highwaters.get(tp)),
            )  # fmt: skip
            position, highwater = positions[tp], highwaters.get(tp)
            if position is not None and highwater is not None:
                await catch_up(tp, position, highwater)
        readiness.stalled = sorted(f"{tp.topic}[{tp.partition}]" for tp in watchdog.stalled)

    @app.timer(interval=2.0)
    async def probe_broker() -> None:
        readiness.broker_up = await _reachable(settings.kafka_bootstrap)
        helios.metrics.ready.set(1 if readiness.check(app)[0] else 0)


def _consumer_state(app: faust.App, tp: Any, highwater: int | None) -> str:
    """Where aiokafka and Faust stand on a partition, for the stall warning: which layer held it back."""
    consumer: Any = app.consumer  # private structures of both: a diagnostic must never break the watchdog
    try:
        state = consumer._thread._ensure_consumer()._subscription.subscription.assignment.state_value(tp)
        return (
            f"highwater {highwater}, aiokafka position {state._position}{' paused' if state.paused else ''}, "
            f"Faust: last offset read {consumer._read_offset.get(tp)}, "
            f"active {tp in consumer._active_partitions}, paused {tp in consumer._paused_partitions}, "
            f"buffer full {tp in consumer._buffered_partitions}, "
            f"flow {consumer.flow_active}/{app.flow_control.is_active()}, "
            f"generation {app.consumer_generation_id}"
        )
    except Exception as exc:
        return f"highwater {highwater}; consumer state unavailable: {exc!r}"


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


class ConsumptionWatchdog:
    """Finds assigned partitions with lag whose position has not moved for ``stall_after`` seconds, and
    reports them again every ``stall_after`` seconds while they stay so (what was done about them failed)."""

    def __init__(self, stall_after: float, clock: Any) -> None:
        self.stall_after = stall_after
        self.clock = clock
        self._since: dict[Any, tuple[int | None, float]] = {}
        self.stalled: set[Any] = set()

    def reset(self) -> None:
        self._since.clear()
        self.stalled.clear()

    def observe(self, positions: dict[Any, int | None], highwaters: Any) -> list[Any]:
        """Record positions; return the partitions that have not moved for ``stall_after`` seconds since
        they last moved or were last returned."""
        now = self.clock()
        due = []
        for tp, position in positions.items():
            highwater = highwaters.get(tp)
            last = self._since.get(tp)
            caught_up = position is not None and highwater is not None and position >= highwater
            if caught_up or last is None or last[0] != position:
                self._since[tp] = (position, now)
                self.stalled.discard(tp)
            elif now - last[1] >= self.stall_after:
                self._since[tp] = (position, now)
                self.stalled.add(tp)
                due.append(tp)
        for tp in set(self._since) - set(positions):
            del self._since[tp]
            self.stalled.discard(tp)
        return due
