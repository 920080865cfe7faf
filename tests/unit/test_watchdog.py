"""The consumption watchdog: a partition with lag whose position does not move is reported, and again
every ``stall_after`` while it stays so."""

from __future__ import annotations

from agents.services import ConsumptionWatchdog


def test_stall_is_reported_until_the_position_moves() -> None:
    now = [0.0]
    dog = ConsumptionWatchdog(stall_after=30.0, clock=lambda: now[0])
    hw = {"p0": 100, "p1": 50}
    assert dog.observe({"p0": 10, "p1": 50}, hw) == []
    now[0] = 20.0
    assert dog.observe({"p0": 10, "p1": 50}, hw) == []
    now[0] = 31.0
    assert dog.observe({"p0": 10, "p1": 50}, hw) == ["p0"]  # p1 is caught up: no lag, no stall
    assert dog.stalled == {"p0"}
    now[0] = 40.0
    assert dog.observe({"p0": 10, "p1": 50}, hw) == []  # not again before another stall_after
    assert dog.stalled == {"p0"}
    now[0] = 61.0
    assert dog.observe({"p0": 10, "p1": 50}, hw) == ["p0"]  # still stalled: what was done failed
    assert dog.observe({"p0": 11, "p1": 50}, hw) == []
    assert dog.stalled == set()
    assert dog.observe({"p1": 50}, hw) == [] and dog.stalled == set()  # p0 moved away


def test_a_partition_never_read_counts_as_not_moving() -> None:
    now = [0.0]
    dog = ConsumptionWatchdog(stall_after=5.0, clock=lambda: now[0])
    dog.observe({"p0": None}, {"p0": 10})
    now[0] = 6.0
    assert dog.observe({"p0": None}, {"p0": 10}) == ["p0"]
