"""Re-read offsets the Faust consumer skipped, straight from Kafka (see :mod:`pipeline.offsets`).

A short-lived consumer without a group reads ``[start, end)`` of one partition. It never touches the
Faust consumer's position, so the stream goes on where it was; the records it returns are processed
ahead of the record that revealed the gap.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.offsets import Gap
from pipeline.runtime import RawRecord

log = logging.getLogger(__name__)


async def fetch_gap(
    client_kwargs: dict[str, Any], topic: str, gap: Gap, timeout: float = 15.0
) -> list[RawRecord]:
    """The records of ``gap``; fewer when Kafka has none at some offsets (transaction markers, retention).

    Gives up when ``timeout`` seconds pass without a record.
    """
    consumer = AIOKafkaConsumer(**client_kwargs, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, gap.partition)
        consumer.assign([tp])
        consumer.seek(tp, gap.start)
        records: list[RawRecord] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await consumer.position(tp) >= gap.end:
                return records
            fetched = await consumer.getmany(tp, timeout_ms=500, max_records=gap.end - gap.start)
            for r in fetched.get(tp, []):
                deadline = time.monotonic() + timeout
                if gap.start <= r.offset < gap.end:
                    records.append(RawRecord(r.key, r.value, topic, gap.partition, r.offset))
        span = f"{topic}[{gap.partition}] offsets {gap.start}..{gap.end - 1}"
        raise TimeoutError(f"{span}: no record for {timeout:.0f} s after {len(records)}")
    finally:
        await consumer.stop()
