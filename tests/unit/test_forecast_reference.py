"""Holt-Winters and seasonal-naive references against hand-computed values."""

from __future__ import annotations

import pytest

from models.reference import HoltWinters, SeasonalNaive, holt_winters_reference


def test_holt_winters_hand_computed_with_trend() -> None:
    # m = 2, alpha = beta = gamma = 0.5, level starts at the first value, trend and seasonals at 0:
    # t0: L=2, T=0, s0=0
    # t1: L=.5*(4-0)+.5*(2+0)=3, T=.5*(3-2)+.5*0=.5, s1=.5*(4-3)+.5*0=.5
    # t2: L=.5*(3-0)+.5*(3+.5)=3.25, T=.5*(.25)+.5*.5=.375, s0=.5*(3-3.25)+.5*0=-.125
    # t3: L=.5*(5-.5)+.5*(3.25+.375)=4.0625, T=.5*(.8125)+.5*.375=.59375, s1=.5*(5-4.0625)+.5*.5=.71875
    hw = HoltWinters(step_seconds=60, season_seconds=120, alpha=0.5, beta=0.5, gamma=0.5)
    for i, y in enumerate([2.0, 4.0, 3.0, 5.0]):
        hw.learn_one(1000.0 + 60 * i, y)
    assert hw.forecast(3) == pytest.approx(
        [4.0625 + 0.59375 - 0.125, 4.0625 + 2 * 0.59375 + 0.71875, 4.0625 + 3 * 0.59375 - 0.125]
    )


def test_holt_winters_defaults_and_rejects_bad_settings() -> None:
    hw = HoltWinters(step_seconds=300)
    assert (hw.alpha, hw.beta, hw.gamma) == (0.2, 0.001, 0.05)
    assert hw.forecast(2) == [0.0, 0.0]  # nothing learned yet
    with pytest.raises(ValueError, match="alpha"):
        HoltWinters(step_seconds=300, alpha=1.5)
    with pytest.raises(ValueError, match="step_seconds"):
        HoltWinters(step_seconds=0)


def test_holt_winters_flat_series_and_gap() -> None:
    hw = HoltWinters(step_seconds=300)
    for i in range(600):
        if 100 <= i < 110:
            continue
        hw.learn_one(300.0 * i, 7.0)
    assert hw.forecast(288) == pytest.approx([7.0] * 288)


def test_holt_winters_reference_function_matches_class() -> None:
    ys = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0]
    got = holt_winters_reference(ys, horizon=2, season=3, alpha=0.3, beta=0.1, gamma=0.2)
    hw = HoltWinters(step_seconds=1, season_seconds=3, alpha=0.3, beta=0.1, gamma=0.2)
    want = []
    for i, y in enumerate(ys):
        hw.learn_one(i, y)
        want.append(hw.forecast(2)[-1])
    assert got == want


def test_seasonal_naive() -> None:
    sn = SeasonalNaive(step_seconds=60, season_seconds=180)
    assert sn.forecast(1) == [0.0]
    sn.learn_one(0.0, 1.0)
    assert sn.forecast(2) == [1.0, 1.0]  # no full season yet: the last value
    for i, y in enumerate([2.0, 3.0, 4.0], start=1):
        sn.learn_one(60.0 * i, y)
    assert sn.forecast(4) == [2.0, 3.0, 4.0, 2.0]
    # A skipped step has no value a season later: fall back to the last value there.
    sn.learn_one(60.0 * 6, 7.0)
    assert sn.forecast(3) == [7.0, 7.0, 7.0]
