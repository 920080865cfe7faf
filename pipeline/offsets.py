"""Which metrics offsets a worker has processed, per partition, and where a new owner must start reading.

The state table carries, next to the deployments' state and written with it, a *marker* per partition:
the offset from which the input must be read again for the saved state to miss nothing (the first sample
not yet in a deployment's saved state, see ``HELIOS_SNAPSHOT_EVERY``). A worker that takes a partition
over, or restarts, starts there: records before it are skipped, and records between it and the
consumer's committed offset are read straight from Kafka (:mod:`agents.gaps`).

The same check catches records the consumer skipped: Faust's stream drops *and acks* an event it reads
while flow control is suspended or whose consumer generation is stale (``faust/streams.py``, the
``skipped_value`` path). Around a rebalance that was the first record of a partition just taken over:
never processed, its offset committed, nothing downstream saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # the runtime writes the markers: it imports this module
    from pipeline.runtime import RawRecord

#: Table keys of the markers. Kubernetes names never contain "~", so no deployment key collides.
MARKER_PREFIX = "~next-offset/"


def marker_key(partition: int) -> str:
    """The state-table key of a partition's marker.

    Examples
    --------
    >>> marker_key(3)
    '~next-offset/3'
    """
    return f"{MARKER_PREFIX}{partition}"


def marker_value(value: Any) -> int | None:
    """The next offset from a stored marker (bytes we wrote or the dict the changelog restored)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | str):
        value = orjson.loads(value)
    try:
        return int(value["next"])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets ``[start, end)`` of ``partition`` not processed yet and not delivered by the consumer."""

    partition: int
    start: int
    end: int


class OffsetTracker:
    """The next offset to process for each partition this worker owns.

    Examples
    --------
    >>> from pipeline.runtime import RawRecord
    >>> t = OffsetTracker()
    >>> t.start(0, 10)
    >>> recs = [RawRecord(b"k", b"v", "m", 0, o) for o in (9, 10, 12)]
    >>> t.gaps(recs)
    [Gap(partition=0, start=11, end=12)]
    >>> [r.offset for r in t.fresh(recs)]
    [10, 12]
    >>> t.advance(recs)
    {0: 13}
    """

    def __init__(self) -> None:
        #: partition -> next offset to process; absent = not known yet (fresh partition, no marker)
        self.next: dict[int, int] = {}
        #: partitions whose starting point has been looked up since they were assigned
        self.started: set[int] = set()

    def start(self, partition: int, next_offset: int | None) -> None:
        """Begin tracking a partition at its durable marker (None: accept whatever comes first)."""
        self.started.add(partition)
        if next_offset is not None:
            self.next[partition] = next_offset

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions moved away: their marker is the new owner's business now."""
        for p in partitions:
            self.next.pop(p, None)
            self.started.discard(p)

    def gaps(self, records: Sequence[RawRecord]) -> list[Gap]:
        """Offset ranges missing before records of this batch (records are in offset order per partition)."""
        expected = dict(self.next)
        found = []
        for r in records:
            want = expected.get(r.partition)
            if want is not None and r.offset > want:
                found.append(Gap(r.partition, want, r.offset))
            if want is None or r.offset + 1 > want:
                expected[r.partition] = r.offset + 1
        return found

    def fresh(self, records: Sequence[RawRecord]) -> list[RawRecord]:
        """The records not processed before (a replay after a crash or a rebalance delivers them again)."""
        return [r for r in records if r.offset >= self.next.get(r.partition, -1)]

    def advance(self, records: Iterable[RawRecord]) -> dict[int, int]:
        """Mark records processed; returns the new next offset of each partition they touched."""
        moved: dict[int, int] = {}
        for r in records:
            if r.offset + 1 > self.next.get(r.partition, -1):
                self.next[r.partition] = moved[r.partition] = r.offset + 1
        return moved
