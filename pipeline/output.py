"""The worker's output records, sent to Kafka in batches of records rather than one by one.

Faust's ``Topic.send_soon`` wraps every record in a ``FutureMessage``, queues it in the producer
buffer and resolves one future per record: with three outputs per sample that path took 7-8 % of
the worker's time in a py-spy profile (benchmarks/perf.md). A micro-batch's outputs are known all
at once, so they are written straight into aiokafka batch builders, one per topic and partition,
and each batch is awaited as a whole.

Partitions are chosen exactly as a keyed ``send`` would (aiokafka's default partitioner: murmur2 of
the key), so a deployment's records land where any Kafka client would put them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

log = logging.getLogger(__name__)

#: Bytes per produce batch: a micro-batch of 500 samples writes ~1.6 MB over 3 topics.
MAX_BATCH_BYTES = 512 * 1024

#: Seconds between two attempts to deliver a batch the broker refused or did not acknowledge.
RETRY_BACKOFF = 1.0


class Record(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes: ...
    @property
    def value(self) -> bytes: ...


class BatchSender:
    """Sends records grouped by topic and partition and returns once Kafka has all of them.

    A batch that fails with a retriable error (the broker is away longer than the producer's request
    timeout, a leader moved) is built again and resent until it is delivered: a caller that
    acknowledges its input only after :meth:`send` returned never loses an output. Other errors (a
    record over the broker's size limit) are raised.
    """

    def __init__(self, client_kwargs: dict[str, Any]) -> None:
        self._kwargs = dict(client_kwargs)
        self._producer: AIOKafkaProducer | None = None
        self._stopped = False
        self._partition = DefaultPartitioner()

    async def _started(self) -> AIOKafkaProducer:
        if self._stopped:
            raise RuntimeError("the output producer is stopped: the worker is shutting down")
        if self._producer is None:
            producer = AIOKafkaProducer(
                acks="all",
                # The batches are built here, whole: a linger would only hold back each partition's last one.
                linger_ms=0,
                max_batch_size=MAX_BATCH_BYTES,
                enable_idempotence=False,
                **self._kwargs,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()  # a failed start leaves connections and tasks behind
                raise
            self._producer = producer
        return self._producer

    async def stop(self) -> None:
        """Deliver what is buffered and close; a later :meth:`send` raises (input is not acked)."""
        self._stopped = True
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def send(self, records: Sequence[Record]) -> None:
        """Deliver ``records``. Records of one key keep their order, unless a batch had to be resent."""
        if not records:
            return
        while True:
            try:
                producer = await self._started()
                groups = await self._grouped(producer, records)
                break
            except KafkaError as exc:  # no broker to start with, or no metadata for a topic yet
                if not _retriable(exc):
                    raise
                log.warning(
                    "the output producer cannot reach Kafka (%r); trying again in %.0f s", exc, RETRY_BACKOFF
                )
                await asyncio.sleep(RETRY_BACKOFF)
        todo = [(topic, p, group) for (topic, p), group in groups.items()]
        while True:
            pending = [
                (topic, p, fut, part)
                for topic, p, group in todo
                for fut, part in await self._submit(producer, topic, p, group)
            ]
            results = await asyncio.gather(*(fut for _, _, fut, _ in pending), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if not errors:
                return
            fatal = next((e for e in errors if not _retriable(e)), None)
            if fatal is not None:
                raise fatal
            todo = [
                (topic, p, part)
                for (topic, p, _, part), res in zip(pending, results, strict=True)
                if isinstance(res, BaseException)
            ]
            log.warning(
                "%d output batches were not delivered (%r); sending them again in %.0f s",
                len(todo), errors[0], RETRY_BACKOFF,
            )  # fmt: skip
            await asyncio.sleep(RETRY_BACKOFF)

    async def _grouped(
        self, producer: AIOKafkaProducer, records: Sequence[Record]
    ) -> dict[tuple[str, int], list[Record]]:
        """``records`` by (topic, partition), in their order; a partition as a keyed send would pick it."""
        groups: dict[tuple[str, int], list[Record]] = {}
        partitions: dict[str, list[int]] = {}
        for record in records:
            topic_partitions = partitions.get(record.topic)
            if topic_partitions is None:
                topic_partitions = sorted(await producer.partitions_for(record.topic))
                partitions[record.topic] = topic_partitions
            p = self._partition(record.key, topic_partitions, topic_partitions)
            groups.setdefault((record.topic, p), []).append(record)
        return groups

    async def _submit(
        self, producer: AIOKafkaProducer, topic: str, partition: int, records: list[Record]
    ) -> list[tuple[asyncio.Future[Any], list[Record]]]:
        """Hand ``records`` to the producer in as few batches as fit; (delivery future, its records).

        If the producer refuses a batch (no earlier batch of the partition left within the request
        timeout), the records not handed over yet come back with that error, to be sent again.
        """
        submitted: list[tuple[asyncio.Future[Any], list[Record]]] = []
        batch, first = producer.create_batch(), 0  # records[first:] are in ``batch`` or still to come
        try:
            for i, record in enumerate(records):
                if batch.append(key=record.key, value=record.value, timestamp=None) is not None:
                    continue
                if i > first:  # the batch is full: submit it and start the next one with this record
                    submitted.append(
                        (await producer.send_batch(batch, topic, partition=partition), records[first:i])
                    )
                    batch, first = producer.create_batch(), i
                    if batch.append(key=record.key, value=record.value, timestamp=None) is not None:
                        continue
                # Larger than a whole batch (a refused append closes the batch): this one goes on its own.
                submitted.append(
                    (await producer.send(topic, record.value, key=record.key, partition=partition), [record])
                )
                batch, first = producer.create_batch(), i + 1
            if first < len(records):
                submitted.append(
                    (await producer.send_batch(batch, topic, partition=partition), records[first:])
                )
        except KafkaError as exc:
            refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            refused.set_exception(exc)
            submitted.append((refused, records[first:]))
        return submitted


def _retriable(exc: BaseException) -> bool:
    # aiokafka marks a delivery that timed out (the broker was away for the whole request timeout) as not
    # retriable; for an output that must not be lost it is the case to retry.
    return isinstance(exc, KafkaTimeoutError) or (isinstance(exc, KafkaError) and exc.retriable)
