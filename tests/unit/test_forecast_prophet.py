"""The Prophet wrapper: a small daily-seasonal fit, and the fallback with too little data."""

from __future__ import annotations

import math

import pytest

from models.forecast import Interval
from models.prophet_model import MAX_HISTORY_SECONDS, fit_prophet

DAY = 86400


def _truth(t: float) -> float:
    return 0.5 + 0.2 * math.sin(2 * math.pi * t / DAY)


def test_fallback_with_little_data() -> None:
    fit = fit_prophet([0.0, 300.0, 600.0], [0.2, 0.3, 0.25], level=0.9)
    assert fit.model is None
    bands = fit.forecast(600.0, 3, 300)
    assert len(bands) == 3
    for b in bands:  # the last value, +- the observed range
        assert (b.point, b.lower, b.upper) == pytest.approx((0.25, 0.15, 0.35))
    empty = fit_prophet([], [], level=0.9)
    assert empty.forecast(0.0, 1, 60) == [Interval(0.0, 0.0, 0.0)]
    with pytest.raises(ValueError, match="level"):
        fit_prophet([0.0], [1.0], level=1.5)


def test_daily_fit_forecasts_the_profile(caplog: pytest.LogCaptureFixture) -> None:
    t0 = 1_700_000_000.0
    step = 300
    # Three days given; only the last two are used, so the first day's offset must not matter.
    ts = [t0 + i * step for i in range(3 * DAY // step)]
    ys = [_truth(t) + (5.0 if t < ts[-1] - MAX_HISTORY_SECONDS else 0.0) for t in ts]
    fit = fit_prophet(ts, ys, level=0.9)
    assert fit.model is not None
    bands = fit.forecast(ts[-1], 12, step)
    assert len(bands) == 12
    for k, b in enumerate(bands, start=1):
        assert b.lower <= b.point <= b.upper
        assert abs(b.point - _truth(ts[-1] + k * step)) < 0.03
    assert not [r for r in caplog.records if r.name.startswith(("cmdstanpy", "prophet"))]
