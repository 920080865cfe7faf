"""The worker's batched output path against the real broker (pipeline/output.py): every record arrives once,
on the partition a keyed send puts it on, in order per key, and a record larger than a batch still goes."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from pipeline.output import MAX_BATCH_BYTES, BatchSender
from tests.helpers import run


@dataclass(frozen=True)
class Out:
    topic: str
    key: bytes
    value: bytes


async def _create(bootstrap: str, topics: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                   for t in topics])  # fmt: skip
    finally:
        await admin.close()


async def _read(bootstrap: str, topic: str, n: int) -> list[tuple[int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[tuple[int, bytes, bytes]] = []
    try:
        while len(got) < n:
            batches = await consumer.getmany(timeout_ms=10_000)
            if not batches:
                break
            for records in batches.values():
                got += [(r.partition, r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return got


async def _keyed_partitions(bootstrap: str, topic: str, keys: list[bytes]) -> dict[bytes, int]:
    """Where aiokafka's own keyed send puts each key."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return {k: (await producer.send_and_wait(topic, b"probe", key=k)).partition for k in keys}
    finally:
        await producer.stop()


async def _send_all(bootstrap: str, records: list[Out]) -> None:
    sender = BatchSender({"bootstrap_servers": bootstrap})
    try:
        await sender.send(records)
    finally:
        await sender.stop()


def test_records_arrive_once_in_order_on_their_keys_partitions(kafka_bootstrap: str, unique: str) -> None:
    topics = [f"t-{unique}.forecasts", f"t-{unique}.recommendations"]
    probe = f"t-{unique}.probe"
    run(_create(kafka_bootstrap, [*topics, probe], 4))
    keys = [f"ns/deploy-{i}".encode() for i in range(40)]
    # ~2 MB per topic: several batches per partition, so batches follow one another in order.
    records = [Out(t, k, f"{k.decode()}:{step}:".encode() + b"x" * 1_500)
               for step in range(30) for k in keys for t in topics]  # fmt: skip
    run(_send_all(kafka_bootstrap, records))
    expected = run(_keyed_partitions(kafka_bootstrap, probe, keys))
    for topic in topics:
        got = run(_read(kafka_bootstrap, topic, len(keys) * 30))
        assert len(got) == len(keys) * 30
        assert {(k, p) for p, k, _ in got} == {(k, expected[k]) for k in keys}
        for k in keys:
            steps = [int(v.split(b":")[1]) for _, key, v in got if key == k]
            assert steps == list(range(30))


def test_a_record_larger_than_a_batch_is_sent_on_its_own(kafka_bootstrap: str, unique: str) -> None:
    topic = f"t-{unique}.big"
    run(_create(kafka_bootstrap, [topic], 1))
    big = b"y" * (MAX_BATCH_BYTES + 1_000)
    records = [Out(topic, b"a", b"small-1"), Out(topic, b"a", big), Out(topic, b"a", b"small-2")]
    run(_send_all(kafka_bootstrap, records))
    got = run(_read(kafka_bootstrap, topic, 3))
    assert [v for _, _, v in got] == [b"small-1", big, b"small-2"]


def test_a_stopped_sender_refuses_to_send(kafka_bootstrap: str) -> None:
    sender = BatchSender({"bootstrap_servers": kafka_bootstrap})
    run(sender.stop())
    try:
        run(sender.send([Out("t", b"k", b"v")]))
    except RuntimeError as exc:
        assert "stopped" in str(exc)
    else:
        raise AssertionError("a stopped sender sent")


def test_a_record_over_the_request_limit_raises_instead_of_being_retried(
    kafka_bootstrap: str, unique: str
) -> None:
    topic = f"t-{unique}.huge"
    run(_create(kafka_bootstrap, [topic], 1))
    huge = Out(topic, b"a", b"z" * 2_000_000)  # over the producer's 1 MB request limit: never deliverable
    try:
        run(_send_all(kafka_bootstrap, [Out(topic, b"a", b"small"), huge]))
    except MessageSizeTooLargeError:
        pass
    else:
        raise AssertionError("a record no broker accepts was reported delivered")
