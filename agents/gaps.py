"""Read offsets ranges of the metrics topic straight from Kafka (see :mod:`pipeline.offsets`).

After a takeover or a restart, the samples between a partition's marker and the consumer's committed offset
(and any record Faust's consumer skipped) are read here. One short-lived consumer without a group reads every
range of a batch at once: it never touches the Faust consumer's position, so the stream goes on where it was,
and the records it returns are processed ahead of the records that revealed the ranges.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.offsets import Gap
from pipeline.runtime import RawRecord


async def fetch_gaps(
    client_kwargs: dict[str, Any], topic: str, gaps: Sequence[Gap], timeout: float = 15.0
) -> tuple[dict[Gap, list[RawRecord]], set[int]]:
    """The records of each gap, and the partitions not read to their end within ``timeout`` seconds
    without a record (their gaps may hold fewer records than offsets; so may any gap where Kafka has no
    record at some offsets: transaction markers, retention).

    Gaps of one partition are read in one pass from the first start to the last end.
    """
    found: dict[Gap, list[RawRecord]] = {gap: [] for gap in gaps}
    by_partition: dict[int, list[Gap]] = {}
    for gap in gaps:
        by_partition.setdefault(gap.partition, []).append(gap)
    spans = {p: (min(g.start for g in gs), max(g.end for g in gs)) for p, gs in by_partition.items()}
    consumer = AIOKafkaConsumer(**client_kwargs, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {p: TopicPartition(topic, p) for p in spans}
        consumer.assign(list(tps.values()))
        for p, (start, _) in spans.items():
            consumer.seek(tps[p], start)
        pending = set(spans)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for p in list(pending):
                if await consumer.position(tps[p]) >= spans[p][1]:
                    pending.discard(p)
            if not pending:
                break
            fetched = await consumer.getmany(*(tps[p] for p in pending), timeout_ms=500)
            for tp, records in fetched.items():
                for r in records:
                    deadline = time.monotonic() + timeout
                    for gap in by_partition[tp.partition]:
                        if gap.start <= r.offset < gap.end:
                            found[gap].append(RawRecord(r.key, r.value, topic, tp.partition, r.offset))
        return found, pending
    finally:
        await consumer.stop()
