"""What a worker knows about the partitions it processes, and the one way records are processed.

:class:`BatchProcessor` holds the state the agent, the partition hook, the sweeper and the consumption
watchdog share: the offsets processed per partition (:class:`OffsetTracker`), the partitions owned and
those moved away, and the ``busy`` lock that keeps a batch, a sweep and a partition move from
interleaving. Records are processed end to end by :meth:`BatchProcessor.handle`: replays dropped,
skipped offsets read back, the runtime, the outputs sent, the state written, the progress recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from agents.gaps import fetch_gaps
from pipeline.app import Helios
from pipeline.errors import BadSample
from pipeline.faust_adapter import table_store
from pipeline.kafka_config import kafka_client_kwargs
from pipeline.offsets import MARKER_PREFIX, Gap, OffsetTracker, marker_key, marker_value
from pipeline.runtime import BatchResult, RawRecord

log = logging.getLogger(__name__)

#: Records processed between two yields to the event loop (one XGBoost call each): a larger chunk lets
#: /health wait behind it, a smaller one pays the call's fixed cost more often (benchmarks/perf.md).
CHUNK = 16

#: Reads offset ranges straight from Kafka: (client kwargs, topic, gaps) -> (records per gap, unfinished).
Fetch = Callable[..., Coroutine[Any, Any, tuple[dict[Gap, list[RawRecord]], set[int]]]]

#: The consumer's position on a partition (``app.consumer.position``).
Position = Callable[[Any], Coroutine[Any, Any, int | None]]


async def publish(helios: Helios, result: BatchResult) -> None:
    """Send the outputs, wait until Kafka has them, then persist state.

    The order is the delivery guarantee: outputs are acknowledged by Kafka before the state that
    produced them is written, and the batch's input is acknowledged after both (Faust flushes the
    changelog before it commits offsets). A crash anywhere replays the
    batch; replayed records already in the state are recognised by their offset and skipped, so
    state counts every sample once and outputs are at-least-once.
    """
    await helios.output.send(result.emits)
    table = helios.state
    data = table_store(table)
    for partition, key, value in result.state_writes:
        # Written to the changelog partition of the record's own partition (co-partitioning), which
        # a batch cannot rely on Faust's "current event" for. The live state is the runtime's objects:
        # the table keeps no second copy of it in memory, only the markers.
        if value is None:
            data.pop(key, None)
            table.send_changelog(partition, key, None, value_serializer="raw")
        else:
            if key.startswith(MARKER_PREFIX):
                data[key] = value
            table.send_changelog(partition, key, value)


class BatchProcessor:
    """The partitions a worker processes and how their records are processed (see the module docstring)."""

    def __init__(self, helios: Helios, fetch: Fetch = fetch_gaps) -> None:
        self.helios = helios
        self.runtime = helios.runtime
        self.tracker = OffsetTracker()
        #: Partitions of the metrics topic this worker owns now, and those it owned and lost.
        self.owned: set[int] = set()
        self.moved_away: set[int] = set()
        #: One batch, sweep or partition move at a time. A batch yields between chunks; without this a
        #: sweep could save state holding samples whose outputs are not sent yet, and a partition could
        #: move away halfway through a batch that still holds its records.
        self.busy = asyncio.Lock()
        self._fetch = fetch
        self._samples = helios.runtime.metrics.samples

    def load(self, key: str) -> dict[str, Any] | None:
        """A deployment's state restored from the changelog; the runtime holds it from now on.

        Values restored from the changelog arrive already decoded; bytes are decoded here.
        """
        value = table_store(self.helios.state).pop(key, None)
        if value is None or isinstance(value, dict):
            return value
        decoded: dict[str, Any] = orjson.loads(value)
        return decoded

    def process_safely(self, records: list[RawRecord]) -> BatchResult:
        """A bug must not lose a batch: on an unexpected error, isolate the culprit record by record."""
        runtime = self.runtime
        try:
            return runtime.process(records, self.load)
        except Exception:
            log.exception("batch of %d failed; retrying record by record", len(records))
        result = BatchResult()
        for record in records:
            try:
                result.extend(runtime.process([record], self.load))
            except Exception as exc:
                log.exception("record %s/%d@%d failed", record.topic, record.partition, record.offset)
                dead = runtime.dead_letter(
                    record, BadSample("internal_error", repr(exc)), self.helios.clock()
                )
                result.extend(BatchResult(emits=[runtime.dlq_emit(dead)], dead=[dead]))
        return result

    def marker(self, partition: int) -> int | None:
        """Where the saved state of ``partition`` ends (its next offset to process), if it has any."""
        return marker_value(table_store(self.helios.state).get(marker_key(partition)))

    def begin(self, partition: int, first: int | None) -> None:
        """Start tracking a partition at its saved state's marker."""
        marker = self.marker(partition)
        self.tracker.start(partition, marker)
        delivered = "nothing delivered yet" if first is None else f"first record at offset {first}"
        log.info("partition %d: %s; its saved state goes up to offset %s", partition, delivered, marker)

    async def read_back(self, gaps: list[Gap], why: str, behind_consumer: bool) -> list[RawRecord]:
        """The records of offset ranges the consumer did not deliver, read straight from Kafka.

        ``behind_consumer``: the consumer has moved past the ranges, so what is not read now is lost (the
        watchdog's ranges lie ahead of it: what is not read now is read when it looks again).
        """
        settings = self.helios.settings
        try:
            found, unfinished = await self._fetch(kafka_client_kwargs(settings), settings.topic_metrics, gaps)
        except Exception as exc:  # the broker is away: these samples cannot be processed now
            found, unfinished = {gap: [] for gap in gaps}, {gap.partition for gap in gaps}
            log.error("reading back %d offset ranges failed: %s", len(gaps), exc)
        records = []
        for gap, got in found.items():
            self._report_read_back(gap, got, why, gap.partition in unfinished, behind_consumer)
            records.extend(got)
        return records

    def _report_read_back(
        self, gap: Gap, got: list[RawRecord], why: str, unfinished: bool, behind_consumer: bool
    ) -> None:
        if unfinished and behind_consumer:
            log.error(
                "offsets %d..%d of partition %d are not in the saved state and could not all be read "
                "(%d records read)", gap.start, gap.end - 1, gap.partition, len(got),
            )  # fmt: skip
            self._samples.labels("lost").inc(gap.end - gap.start - len(got))
        elif unfinished:
            log.warning(
                "read %d records of offsets %d..%d of partition %d; the rest is read on the next try",
                len(got), gap.start, gap.end - 1, gap.partition,
            )  # fmt: skip
        else:
            log.info(
                "read back offsets %d..%d of partition %d (%d records) %s",
                gap.start, gap.end - 1, gap.partition, len(got), why,
            )  # fmt: skip
        self._samples.labels("recovered").inc(len(got))

    async def unseen(self, records: list[RawRecord]) -> list[RawRecord]:
        """The records to process: replays dropped, offsets the consumer skipped read back in."""
        tracker = self.tracker
        for p in {r.partition for r in records} - tracker.started:
            self.begin(p, min(r.offset for r in records if r.partition == p))
        fresh = tracker.fresh(records)
        if len(fresh) < len(records):
            self._samples.labels("replayed").inc(len(records) - len(fresh))
        gaps = tracker.gaps(fresh)
        if not gaps:
            return fresh
        # After a takeover or a restart: the samples since the last state write (the consumer resumes at
        # its committed offset, past them), or records the consumer skipped.
        fresh.extend(await self.read_back(gaps, "ahead of the consumer's position", behind_consumer=True))
        return sorted(fresh, key=lambda r: (r.partition, r.offset))

    async def handle(self, records: list[RawRecord]) -> None:
        """Process records end to end: outputs sent, state written, progress recorded. Hold ``busy``."""
        records = await self.unseen(records)
        result = BatchResult()
        for start in range(0, len(records), CHUNK):
            result.extend(self.process_safely(records[start : start + CHUNK]))
            # Let the web view and heartbeats in between chunks: /health stays fast under load.
            await asyncio.sleep(0)
        await publish(self.helios, result)
        self.tracker.advance(records)

    async def handle_batch(self, records: list[RawRecord]) -> None:
        """One micro-batch of the agent. A batch can straddle a rebalance: records of partitions this
        worker no longer owns are left to their new owner (which reads them from its partition marker on),
        never processed here, so two workers never write one deployment's state."""
        async with self.busy:
            await self.handle([r for r in records if r.partition not in self.moved_away])

    async def assigned(self, mine: set[int]) -> None:
        """The metrics partitions of a new assignment: those lost are unexported and forgotten."""
        async with self.busy:
            lost = self.owned - mine
            if lost:
                gone = self.runtime.revoke(lost)
                log.info("partitions %s moved away; unexported %d deployments", sorted(lost), len(gone))
            self.tracker.forget(lost)
            self.owned.clear()
            self.owned.update(mine)
            self.moved_away.update(lost)
            self.moved_away.difference_update(mine)

    async def sweep(self) -> None:
        """Save the state that is due and drop deployments silent for too long."""
        async with self.busy:
            writes = self.runtime.save_due() + [(p, k, None) for p, k in self.runtime.sweep()]
            if writes:
                await publish(self.helios, BatchResult(state_writes=writes))

    async def progress(
        self, tp: Any, position: Callable[[Any], Coroutine[Any, Any, int | None]]
    ) -> int | None:
        """The next offset of ``tp`` the agent has to process: where the saved state ends until the
        consumer has delivered something, the consumer's ``position`` if there is no saved state either."""
        processed_to = self.tracker.next.get(tp.partition)
        if processed_to is not None:
            return processed_to
        marker = self.marker(tp.partition)
        return marker if marker is not None else await position(tp)

    async def catch_up(self, partition: int, start: int, highwater: int) -> int | None:
        """Process what Kafka holds of ``partition`` from ``start`` on, read straight from Kafka.

        Returns the offset to seek the consumer back to, or None if the partition moved away."""
        async with self.busy:
            if partition not in self.owned or partition in self.moved_away:
                return None
            if partition not in self.tracker.started:
                self.begin(partition, None)
            start = self.tracker.next.get(partition, start)  # the agent may have moved on while we waited
            if start < highwater:
                gaps = [Gap(partition, start, highwater)]
                await self.handle(await self.read_back(gaps, "the consumer did not deliver", False))
        return start
