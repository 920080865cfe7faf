"""The ceiling of ``make bench``: the least a Python stream processor on aiokafka can do per sample.

Consumes JSON samples, parses each with orjson and produces a small JSON record per sample, with the
same producer durability as the worker (acks=all) and committing offsets as a consumer group does.
Exits after ``--count`` records (or on SIGTERM).

    python -m pipeline.bench.passthrough --bootstrap 127.0.0.1:9092 --input IN --output OUT --group G \
        --count N
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def passed_through(value: bytes) -> bytes:
    """The per-sample work of the ceiling: parse the sample, write a small JSON record."""
    sample = orjson.loads(value)
    return orjson.dumps(
        {
            "key": f"{sample['namespace']}/{sample['deployment']}",
            "timestamp": sample["timestamp"],
            "cpu": sample["metrics"].get("cpu_utilization"),
        }
    )


async def passthrough(bootstrap: str, source: str, sink: str, group: str, count: int, batch: int) -> int:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_partition_fetch_bytes=4 * 2**20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < count:
            fetched = await consumer.getmany(timeout_ms=500, max_records=batch)
            for msgs in fetched.values():
                for msg in msgs:
                    await producer.send(sink, key=msg.key, value=passed_through(msg.value))
                done += len(msgs)
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    return done


def passthrough_arguments(doc: str) -> argparse.ArgumentParser:
    """The flags every passthrough process takes (this one and the Faust floor): broker, topics, group."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    for flag in ("--bootstrap", "--input", "--output", "--group"):
        p.add_argument(flag, required=True)
    return p


def main() -> None:
    p = passthrough_arguments(__doc__)
    p.add_argument("--count", type=int, required=True)
    p.add_argument(
        "--batch", type=int, default=500, help="records per getmany (the worker's HELIOS_BATCH_SIZE)"
    )
    a = p.parse_args()
    asyncio.run(passthrough(a.bootstrap, a.input, a.output, a.group, a.count, a.batch))


if __name__ == "__main__":
    main()
