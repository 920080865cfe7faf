"""The recurring-load model: what came at a phase in every one of the last periods, and only that."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from models.recurrence import PeriodicLoad, RecurringLoad

HOUR = 3600


def hours(m: RecurringLoad, n: int, spikes: dict[int, float], base: float = 0.5, start: int = 0) -> None:
    for minute in range(start * 60, (start + n) * 60):
        m.learn_one(minute * 60.0, spikes.get(minute % 60, base))


def test_a_spike_in_every_one_of_the_last_hours_is_expected_again() -> None:
    m = RecurringLoad(step_seconds=60, periods=3)
    hours(m, 3, {59: 3.0})
    assert m.forecast(3 * HOUR + 58 * 60.0, steps=1) == 3.0  # at :58, the next step is :59
    assert m.forecast(3 * HOUR + 57 * 60.0, steps=1) is None  # :58 brought the base load
    assert m.forecast(3 * HOUR + 57 * 60.0, steps=2) == 3.0  # two steps ahead reaches :59


def test_a_level_that_is_only_higher_at_this_time_is_not_a_jump() -> None:
    # A slow hourly swell (0.5 -> 1.0 over the hour, +4 % a step): higher load at :59 every hour, but
    # no step jumps 1.5x over the one before it. The forecaster's bands cover that.
    m = RecurringLoad(step_seconds=60, periods=3)
    for minute in range(3 * 60):
        m.learn_one(minute * 60.0, 0.5 + 0.5 * (minute % 60) / 59)
    assert all(m.forecast(3 * HOUR + k * 60.0, steps=2) is None for k in range(60))
    with pytest.raises(ValueError, match="jump"):
        RecurringLoad(step_seconds=60, jump=0.5)


def test_the_smallest_of_the_periods_is_what_is_expected() -> None:
    m = RecurringLoad(step_seconds=60, periods=3)
    for hour, peak in enumerate((4.0, 2.5, 3.0)):
        hours(m, 1, {10: peak}, start=hour)
    assert m.forecast(3 * HOUR + 9 * 60.0, steps=1) == 2.5


def test_a_spike_missing_from_one_period_is_not_a_schedule() -> None:
    m = RecurringLoad(step_seconds=60, periods=3)
    hours(m, 1, {30: 3.0})
    hours(m, 1, {}, start=1)  # the second hour had no spike
    hours(m, 1, {30: 3.0}, start=2)
    assert m.forecast(3 * HOUR + 29 * 60.0, steps=1) is None


def test_a_gap_in_the_samples_restarts_the_count() -> None:
    m = RecurringLoad(step_seconds=60, periods=3)
    hours(m, 2, {20: 3.0})
    hours(m, 2, {20: 3.0}, start=3)  # hour 2 never reported
    assert m.forecast(5 * HOUR + 19 * 60.0, steps=1) is None  # only two consecutive hours before hour 5
    hours(m, 1, {20: 3.0}, start=5)
    assert m.forecast(6 * HOUR + 19 * 60.0, steps=1) == 3.0


def test_nothing_is_expected_before_the_periods_are_seen_or_when_the_period_has_no_phases() -> None:
    m = RecurringLoad(step_seconds=60, periods=3)
    hours(m, 2, {59: 3.0})
    assert m.forecast(2 * HOUR + 58 * 60.0, steps=1) is None
    inert = RecurringLoad(step_seconds=7200)  # a step longer than the period
    inert.learn_one(0.0, 1.0)
    assert inert.phases == 0 and inert.forecast(0.0, steps=3) is None
    with pytest.raises(ValueError, match="periods"):
        RecurringLoad(step_seconds=60, periods=0)


def test_noise_without_a_schedule_rarely_recurs_in_all_periods() -> None:
    # Bursts at random minutes (5 % of steps): a phase needs one in each of 3 hours, about 1 in 8,000.
    rng = random.Random(3)
    m = RecurringLoad(step_seconds=60, periods=3)
    fired = 0
    for minute in range(48 * 60):
        t = minute * 60.0
        expected = m.forecast(t, steps=1)
        fired += expected is not None and expected > 1.0
        m.learn_one(t + 60.0, 3.0 if rng.random() < 0.05 else 0.5)
    assert fired <= 3


def test_state_round_trips_and_rejects_what_does_not_fit() -> None:
    m = RecurringLoad(step_seconds=300, periods=3)
    for step in range(12 * 5):
        m.learn_one(1_700_000_100 + step * 300.0, float(step % 12))
    copy = RecurringLoad.from_dict(m.to_dict())
    for step in range(12 * 5, 12 * 6):
        t = 1_700_000_100 + step * 300.0
        assert copy.forecast(t, steps=1) == m.forecast(t, steps=1)
        assert copy.ceiling(t, steps=2) == m.ceiling(t, steps=2)
    bad = m.to_dict() | {"run": [0]}
    with pytest.raises(ValueError, match="phases"):
        RecurringLoad.from_dict(bad)


@pytest.mark.parametrize(("step", "period"), [(60, HOUR), (1, 2)])
def test_periods_are_held_up_to_the_last_second_a_sample_can_carry(step: int, period: int) -> None:
    from datetime import UTC, datetime

    last = datetime(9999, 12, 31, 23, 59, tzinfo=UTC).timestamp()
    m = RecurringLoad(step_seconds=step, period_seconds=period, periods=1, jump=2.0)
    phases = period // step
    for k in range(2 * phases):  # two periods ending at the last minute of year 9999
        m.learn_one(last - (2 * phases - 1 - k) * step, 3.0 if k % phases == phases - 1 else 1.0)
    assert m.forecast(last - step, steps=1) == 3.0  # a period ago the last phase jumped to 3
    copy = RecurringLoad.from_dict(m.to_dict())
    assert copy._newest == m._newest and copy.forecast(last - step, steps=1) == 3.0


def test_on_a_schedule_the_ceiling_is_the_most_the_next_steps_brought_and_elsewhere_none() -> None:
    m = RecurringLoad(step_seconds=60, periods=3)
    spike = {59: 3.0, 0: 2.0}  # a spike at :59 that lasts into :00
    learned = 0

    def ceiling_at(minute: int, steps: int) -> float | None:
        nonlocal learned  # every window before the one open at ``minute`` has closed and been learned
        for k in range(learned, minute):
            m.learn_one(k * 60.0, spike.get(k % 60, 0.5))
        learned = minute
        return m.ceiling(minute * 60.0, steps)

    assert ceiling_at(3 * 60 + 58, steps=1) == 3.0  # :59 is due
    assert ceiling_at(3 * 60 + 59, steps=1) == 2.0  # during it: :00 brought at most 2
    assert ceiling_at(4 * 60, steps=2) == 0.5  # after it: back to the base load every hour
    off = RecurringLoad(step_seconds=60, periods=3)
    hours(off, 3, {})  # no jump anywhere: no schedule
    assert off.ceiling(3 * HOUR, steps=2) is None


# -- PeriodicLoad ----------------------------------------------------------------------------------
def _days(model: PeriodicLoad, days: int, shape: list[float], step: int = 1800) -> None:
    for i in range(days * len(shape)):
        model.learn_one(i * float(step), shape[i % len(shape)])


DAY = [3.0 if 18 <= s < 34 else 1.0 for s in range(48)]  # 30-min steps: busy 09:00-17:00


def test_a_daily_rise_is_expected_only_after_it_came_in_every_one_of_the_last_cycles() -> None:
    m = PeriodicLoad(step_seconds=1800)
    _days(m, 2, DAY)
    assert m.growth(2 * 86400 + 17 * 1800.0, steps=1) is None  # two days: not yet three
    _days(m, 3, DAY)
    assert m.growth(3 * 86400 + 17 * 1800.0, steps=1) == pytest.approx(3.0, rel=2e-3)
    assert m.growth(3 * 86400 + 33 * 1800.0, steps=1) is None  # 16:30: the load falls next


def test_a_rise_missing_from_one_cycle_is_not_a_schedule() -> None:
    m = PeriodicLoad(step_seconds=1800)
    flat = [1.0] * 48
    for day, shape in enumerate((DAY, flat, DAY)):
        for s, v in enumerate(shape):
            m.learn_one((day * 48 + s) * 1800.0, v)
    assert m.growth(3 * 86400 + 17 * 1800.0, steps=1) is None


def test_the_smallest_rise_of_the_cycles_is_expected_and_noise_is_not() -> None:
    m = PeriodicLoad(step_seconds=1800)
    for day, top in enumerate((3.0, 2.0, 4.0)):
        for s in range(48):
            m.learn_one((day * 48 + s) * 1800.0, top if 18 <= s < 34 else 1.0)
    assert m.growth(3 * 86400 + 17 * 1800.0, steps=1) == pytest.approx(2.0, rel=2e-3)
    rng = np.random.default_rng(0)
    noisy = PeriodicLoad(step_seconds=300)
    for i in range(4 * 288):
        noisy.learn_one(i * 300.0, float(rng.normal(1.0, 0.02)))
    assert all(noisy.growth(4 * 86400 + j * 300.0, steps=1) is None for j in range(288))


def test_periodic_load_state_round_trips_and_refuses_another_layout() -> None:
    m = PeriodicLoad(step_seconds=1800)
    _days(m, 4, DAY)
    d = json.loads(json.dumps(m.to_dict()))
    copy = PeriodicLoad.from_dict(d)
    for j in range(48):
        t = 4 * 86400 + j * 1800.0
        assert copy.growth(t, 1) == m.growth(t, 1)
    with pytest.raises(ValueError, match="version"):
        PeriodicLoad.from_dict({**d, "v": 99})
    with pytest.raises(ValueError, match="values"):
        PeriodicLoad.from_dict({**d, "values": ""})
    # Loads are kept to 0.1 %, whatever their magnitude.
    for load in (1e-4, 0.37, 3.0, 250.0, 1e6):
        assert PeriodicLoad._load(PeriodicLoad._code(load)) == pytest.approx(load, rel=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"step_seconds": 0}, "step_seconds"),
        ({"step_seconds": 60, "periods": ()}, "periods"),
        ({"step_seconds": 60, "cycles": 0}, "cycles"),
        ({"step_seconds": 60, "max_bins": 1}, "max_bins"),
        ({"step_seconds": 60, "min_growth": 1.0}, "min_growth"),
    ],
)
def test_periodic_load_refuses_impossible_parameters_by_name(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        PeriodicLoad(**kwargs)


def test_a_period_shorter_than_two_steps_is_skipped() -> None:
    m = PeriodicLoad(step_seconds=3600, periods=(3600, 86400))
    assert m._bins == [0, 24]
    _days(m, 4, [3.0 if 9 <= h < 17 else 1.0 for h in range(24)], step=3600)
    assert m.growth(4 * 86400 + 8 * 3600.0, steps=1) == pytest.approx(3.0, rel=2e-3)
