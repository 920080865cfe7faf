"""scripts/periodic-diagnosis: the step classes it splits short minutes into."""

from __future__ import annotations

import numpy as np

from pipeline.bench.simulate_diagnosis import classify


def test_steps_are_split_into_jumps_recurring_jumps_and_announced_ramps() -> None:
    step = 3600  # hourly: an hour is one step, a day 24
    day = np.array([1.0] * 8 + [1.3, 1.7, 2.2] + [2.2] * 13)  # a ramp 08:00-10:00 each day
    demand = np.tile(day, 3)
    demand[30] *= 2.0  # a jump on day 2 only
    demand[[40, 64]] *= 2.0  # a jump at the same hour on days 2 and 3
    kinds = classify(demand, step)
    assert kinds[30] == "jump"
    assert kinds[40] == "jump"  # nothing the day before it
    assert kinds[64] == "jump_recurring"
    # Day 1's ramp has no day before it; days 2 and 3 are announced by the day before.
    assert set(kinds[8:11]) == {"other"}
    assert list(kinds[32:35]) == ["ramp"] * 3
    assert list(kinds[56:59]) == ["ramp"] * 3
    assert kinds[50] == "other"
