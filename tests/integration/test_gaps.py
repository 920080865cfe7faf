"""Reading offset ranges back from the real broker: what a new owner does between a partition's marker and
its consumer's committed offset (agents/gaps.py)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.gaps import fetch_gaps
from pipeline.offsets import Gap
from tests.helpers import run


async def _topic_with_records(bootstrap: str, topic: str, per_partition: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition in (0, 1):
            for i in range(per_partition):
                await producer.send(topic, key=b"k", value=f"{partition}:{i}".encode(), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def test_ranges_of_several_partitions_are_read_in_one_pass(kafka_bootstrap: str, unique: str) -> None:
    topic = f"t-{unique}.gaps"
    run(_topic_with_records(kafka_bootstrap, topic, 20))
    gaps = [Gap(0, 3, 7), Gap(0, 10, 12), Gap(1, 0, 2)]
    found, unfinished = run(fetch_gaps({"bootstrap_servers": kafka_bootstrap}, topic, gaps))
    assert unfinished == set()
    assert {g: [(r.partition, r.offset, r.value) for r in rs] for g, rs in found.items()} == {
        Gap(0, 3, 7): [(0, o, f"0:{o}".encode()) for o in range(3, 7)],
        Gap(0, 10, 12): [(0, 10, b"0:10"), (0, 11, b"0:11")],
        Gap(1, 0, 2): [(1, 0, b"1:0"), (1, 1, b"1:1")],
    }


def test_a_range_past_the_end_is_reported_unfinished_with_what_was_read(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"t-{unique}.gaps"
    run(_topic_with_records(kafka_bootstrap, topic, 5))
    found, unfinished = run(
        fetch_gaps({"bootstrap_servers": kafka_bootstrap}, topic, [Gap(0, 3, 9), Gap(1, 1, 3)], timeout=2.0)
    )
    assert unfinished == {0}
    assert [r.offset for r in found[Gap(0, 3, 9)]] == [3, 4]
    assert [r.offset for r in found[Gap(1, 1, 3)]] == [1, 2]
