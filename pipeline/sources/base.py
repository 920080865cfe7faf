"""The contract between an ingester source and the runner that puts its samples on Kafka.

A source yields :class:`Batch` es. The runner (:mod:`pipeline.ingest`) produces every record
of a batch, waits until Kafka acknowledged all of them, and only then awaits
``batch.commit()``: the source acknowledges its upstream (Pub/Sub ack, Cloud Monitoring
cursor advance) there. A crash between produce and commit therefore re-delivers the batch
(at-least-once); the worker deduplicates by (deployment, timestamp).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pipeline.records import MetricSample


async def _nothing_to_commit() -> None:
    return None


@dataclass(frozen=True)
class RawRecord:
    """Bytes a source could not parse, forwarded as they are so the worker dead-letters them."""

    key: bytes | None
    value: bytes
    why: str = ""


@dataclass(frozen=True)
class Batch:
    """Samples to produce, and what to call once Kafka acknowledged all of them.

    ``raw`` carries upstream messages that are not valid samples: the runner forwards their
    bytes unchanged to the metrics topic, where the worker's dead-letter path records the
    reason, instead of dropping them here without trace.
    """

    samples: list[MetricSample]
    commit: Callable[[], Awaitable[None]] = _nothing_to_commit
    raw: list[RawRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples) + len(self.raw)


@runtime_checkable
class Source(Protocol):
    """Anything that yields batches of samples; ``name`` goes into logs and ``MetricSample.source``."""

    name: str

    def batches(self) -> AsyncIterator[Batch]:
        """Yield batches until the source is exhausted (replay) or forever (live sources)."""
        ...
