"""The offset tracker: replays are dropped, skipped offsets are found, markers round-trip."""

from __future__ import annotations

import orjson

from pipeline.offsets import Gap, OffsetTracker, marker_key, marker_value
from pipeline.runtime import RawRecord


def recs(partition: int, *offsets: int) -> list[RawRecord]:
    return [RawRecord(b"ns/d", b"{}", "metrics", partition, o) for o in offsets]


def test_a_record_past_the_marker_reveals_the_skipped_offsets() -> None:
    t = OffsetTracker()
    t.start(2, 40)
    assert t.gaps(recs(2, 41, 42)) == [Gap(2, 40, 41)]


def test_gaps_inside_a_batch_and_per_partition() -> None:
    t = OffsetTracker()
    t.start(0, 5)
    t.start(1, 0)
    batch = recs(0, 5, 6, 9) + recs(1, 0, 3)
    assert t.gaps(batch) == [Gap(0, 7, 9), Gap(1, 1, 3)]


def test_an_unknown_partition_accepts_its_first_record_and_tracks_from_there() -> None:
    t = OffsetTracker()
    t.start(0, None)
    assert t.gaps(recs(0, 100, 101)) == []
    t.advance(recs(0, 100, 101))
    assert t.gaps(recs(0, 103)) == [Gap(0, 102, 103)]


def test_replays_are_not_fresh_and_do_not_move_the_marker_back() -> None:
    t = OffsetTracker()
    t.start(0, 10)
    batch = recs(0, 7, 8, 9, 10, 11)
    assert [r.offset for r in t.fresh(batch)] == [10, 11]
    assert t.gaps(batch) == []
    assert t.advance(recs(0, 7)) == {}
    assert t.next[0] == 10


def test_forgotten_partitions_are_looked_up_again() -> None:
    t = OffsetTracker()
    t.start(0, 10)
    t.forget([0])
    assert 0 not in t.started and 0 not in t.next
    assert t.gaps(recs(0, 50)) == []


def test_marker_values_from_our_bytes_and_from_the_restored_changelog() -> None:
    assert marker_key(7) == "~next-offset/7"
    assert marker_value(orjson.dumps({"next": 12})) == 12
    assert marker_value({"next": 12}) == 12
    assert marker_value(None) is None
    assert marker_value({"pipe": {}}) is None
