"""Contract tests of the online forecaster (models/forecast.py)."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import pytest

from models.forecast import Interval, OnlineForecaster

T0 = 1_700_000_000.0  # a multiple of 300 and 60 seconds
DAY = 86400


def _series(n: int, step: int, seed: int = 0) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = T0 + i * step
        out.append((t, 0.4 + 0.15 * math.sin(2 * math.pi * t / DAY) + 0.03 * rng.standard_normal()))
    return out


def _trained(n: int = 1500, step: int = 300, **kw: object) -> OnlineForecaster:
    f = OnlineForecaster(step_seconds=step, **kw)  # type: ignore[arg-type]
    for t, y in _series(n, step):
        f.learn_at(t, y)
    return f


def test_prior_band_before_any_data() -> None:
    f = OnlineForecaster(step_seconds=60, prior_center=0.5, prior_half_width=1.0)
    bands = f.intervals(288)
    assert len(bands) == 288
    assert all(b == Interval(0.5, -0.5, 1.5) for b in bands)
    assert f.n_seen == 0
    assert f.accuracy() == {h: (0.0, 1.0) for h in (1, 5, 15, 30, 60)}


@pytest.mark.parametrize("step", [60, 300])
def test_json_round_trip_gives_identical_forecasts_and_small_state(step: int) -> None:
    f = _trained(3000, step)
    text = json.dumps(f.to_dict())
    assert len(text) <= 6 * 1024
    g = OnlineForecaster.from_dict(json.loads(text))
    assert g.intervals(288) == f.intervals(288)
    assert g.accuracy() == f.accuracy()
    # ... and they keep agreeing as both learn the same data.
    for t, y in _series(3100, step)[3000:]:
        f.learn_at(t, y)
        g.learn_at(t, y)
    assert g.intervals(60) == f.intervals(60)
    assert g.n_seen == f.n_seen == 3100


def test_to_dict_is_a_snapshot_not_a_view_of_the_live_state() -> None:
    f = _trained(300)
    d = f.to_dict()
    text = json.dumps(d)
    for t, y in _series(400, 300)[300:]:
        f.learn_at(t, y)
    assert json.dumps(d) == text
    assert OnlineForecaster.from_dict(d).n_seen == 300


def test_same_arguments_share_one_parameter_object_but_never_state() -> None:
    # Thousands of forecasters hold one parameter object per set of arguments; what each learns is its own.
    a, b = (
        OnlineForecaster(step_seconds=300),
        OnlineForecaster(step_seconds=300, calibrated_steps=[1, 5, 15, 30, 60]),
    )
    assert a.params is b.params
    assert a.params is not OnlineForecaster(step_seconds=300, level=0.8).params
    for t, y in _series(600, 300):
        a.learn_at(t, y)
        b.learn_at(t, 1.0 - y)
    alone = _trained(600, 300)
    assert a.to_dict() == alone.to_dict()
    assert a.intervals(24) == alone.intervals(24)
    assert b.intervals(24) != a.intervals(24)


def test_reproducible() -> None:
    assert _trained(800).intervals(24) == _trained(800).intervals(24)


def test_inputs_not_mutated() -> None:
    steps = [1, 3, 6, 12]
    cands = [(900.0, True, 0.0), (300.0, False, 1.0)]
    f = OnlineForecaster(step_seconds=300, calibrated_steps=steps, smoothers=cands)
    for t, y in _series(300, 300):
        f.learn_at(t, y)
    assert steps == [1, 3, 6, 12]
    assert cands == [(900.0, True, 0.0), (300.0, False, 1.0)]
    state = f.to_dict()
    kept = copy.deepcopy(state)
    OnlineForecaster.from_dict(state).learn_at(T0 + 300 * 300, 0.9)
    assert state == kept


def test_current_peek_does_not_mutate() -> None:
    f = _trained(600)
    before = json.dumps(f.to_dict())
    t_next = T0 + 600 * 300
    peek = f.intervals(12, current=(t_next, 0.95))
    assert json.dumps(f.to_dict()) == before
    f.learn_at(t_next, 0.95)
    assert peek == f.intervals(12)
    # Forecasting from the open window moved the point towards the surprising value.
    g = _trained(600)
    assert peek[0].point > g.intervals(1)[0].point


def test_cached_weights_are_invisible() -> None:
    """A restored forecaster (nothing cached) keeps forecasting exactly as the one it was saved from."""
    f = _trained(400, 60, calibrated_steps=(1, 5, 15, 30, 60))
    for i, (t, y) in enumerate(_series(300, 60)):
        t += 400 * 60 + (600 if i > 150 else 0)  # and a 10-step gap on the way
        g = OnlineForecaster.from_dict(json.loads(json.dumps(f.to_dict())))
        for m in (f, g):
            m.forecast_at([5, 15, 30, 60])  # fills (or reads) the cache of f first
        steps = [1, 5, 7, 15, 30, 60, 61]
        assert g.forecast_at(steps, current=(t, y)) == f.forecast_at(steps, current=(t, y))
        assert g.forecast_at(steps) == f.forecast_at(steps)
        f.learn_at(t, y)


def test_peek_with_old_time_is_plain_forecast() -> None:
    f = _trained(200)
    assert f.intervals(5, current=(T0, 10.0)) == f.intervals(5)


def test_bands_are_ordered_and_finite_up_to_288_steps() -> None:
    f = _trained(2000, 300, calibrated_steps=(1, 3, 6, 12))
    bands = f.intervals(288)
    assert len(bands) == 288
    for b in bands:
        assert all(math.isfinite(v) for v in (b.point, b.lower, b.upper))
        assert b.lower <= b.point <= b.upper
    widths = [b.upper - b.lower for b in bands]
    assert widths[-1] >= widths[11]  # beyond the last calibrated horizon the band widens


def test_times_not_after_the_last_are_ignored() -> None:
    f = _trained(100)
    state = json.dumps(f.to_dict())
    f.learn_at(T0 + 99 * 300, 5.0)  # same time as the last sample
    f.learn_at(T0, 5.0)  # the past
    f.learn_at(T0 + 100 * 300, float("nan"))  # missing value
    assert json.dumps(f.to_dict()) == state


def test_gaps_are_handled() -> None:
    data = _series(1200, 300)
    f = OnlineForecaster(step_seconds=300, calibrated_steps=(1, 3, 6, 12))
    for i, (t, y) in enumerate(data):
        if 400 <= i < 405 or 800 <= i < 900:  # a 25-minute and an 8-hour outage
            continue
        f.learn_at(t, y)
    assert f.n_seen == 1200 - 105
    nxt = f.intervals(12)
    assert all(math.isfinite(b.point) for b in nxt)
    # Scored forecasts only ever compare a forecast with the value it aimed at: accuracy stays sane.
    for h, (mae, cover) in f.accuracy().items():
        assert 0.0 < mae < 0.1, h
        assert 0.7 <= cover <= 1.0, h
    # A gap puts the next forecast on the right clock: the seasonal shape follows t.
    t_last = data[-1][0]
    expected = 0.4 + 0.15 * math.sin(2 * math.pi * (t_last + 12 * 300) / DAY)
    assert abs(nxt[-1].point - expected) < 0.06


def test_first_day_zero_then_seasonal() -> None:
    step = 300
    f = OnlineForecaster(step_seconds=step, calibrated_steps=(1, 3, 6, 12))
    rng = np.random.default_rng(3)
    n_day = DAY // step
    errs_late = []
    for i in range(6 * n_day):
        t = T0 + i * step
        y = 0.0 if i < n_day else 0.5 + 0.2 * math.sin(2 * math.pi * t / DAY) + 0.02 * rng.standard_normal()
        if i >= 5 * n_day:
            errs_late.append(abs(f.intervals(1)[0].point - y))
        f.learn_at(t, y)
    bands = f.intervals(12)
    assert all(math.isfinite(b.lower) and math.isfinite(b.upper) for b in bands)
    # After the switch the forecaster tracks the new regime: errors near the noise level, far from 0.5.
    assert float(np.mean(errs_late)) < 0.05


def test_flat_series() -> None:
    f = OnlineForecaster(step_seconds=60)
    for i in range(500):
        f.learn_at(T0 + 60 * i, 0.25)
    for b in f.intervals(288):
        assert b.point == pytest.approx(0.25, abs=1e-9)
        assert b.upper - b.lower == pytest.approx(0.0, abs=1e-9)
    assert all(mae == pytest.approx(0.0, abs=1e-9) and cover == 1.0 for mae, cover in f.accuracy().values())
    # The first change after a flat stretch reopens the band instead of leaving it stuck at zero width.
    rng = np.random.default_rng(1)
    for i in range(500, 900):
        f.learn_at(T0 + 60 * i, 0.25 + 0.05 * rng.standard_normal())
    b = f.intervals(1)[0]
    assert b.upper - b.lower > 0.05


def test_accuracy_is_nan_free_and_in_range() -> None:
    f = _trained(1500, calibrated_steps=(1, 3, 6, 12))
    acc = f.accuracy()
    assert set(acc) == {1, 3, 6, 12}
    for mae, cover in acc.values():
        assert math.isfinite(mae) and mae > 0.0
        assert 0.0 <= cover <= 1.0


def _h12_mae_on_day_7(season_seconds: int) -> float:
    step = 300
    f = OnlineForecaster(step_seconds=step, season_seconds=season_seconds, calibrated_steps=(1, 3, 6, 12))
    made: dict[int, float] = {}
    errs = []
    for i in range(7 * DAY // step):
        t = T0 + i * step
        y = 0.5 + 0.2 * math.sin(2 * math.pi * t / DAY)
        if i in made and i >= 6 * DAY // step:
            errs.append(abs(made.pop(i) - y))
        f.learn_at(t, y)
        made[i + 12] = f.intervals(12)[-1].point
    return float(np.mean(errs))


def test_daily_profile_helps_once_seen() -> None:
    # A clean daily sine: on day 7 the 1-hour-ahead forecast is far better with the seasonal profile.
    seasonal, plain = _h12_mae_on_day_7(DAY), _h12_mae_on_day_7(0)
    assert seasonal < 0.5 * plain
    assert seasonal < 0.02


def _profile_at_peak_before_and_after_an_inverted_day(step: int) -> tuple[float, float]:
    f = OnlineForecaster(step_seconds=step, calibrated_steps=(1,))
    before = math.nan
    last_normal = 11 * DAY // step - 1
    for i in range(12 * DAY // step):
        t = i * step
        sign = 1.0 if t < 11 * DAY else -1.0
        f.learn_at(t, 0.5 + sign * 0.2 * math.sin(2 * math.pi * t / DAY))
        if i == last_normal:
            before = f._season_at(DAY / 4)  # the profile itself: the level moves as well
    return before, f._season_at(DAY / 4)


def test_the_profile_learns_at_the_same_rate_per_day_at_every_step_size() -> None:
    # Eleven days of a daily sine, then one day upside down. At 60 s five steps share each of the
    # profile's 288 bins; the profile must still move by the share of a day that season_gamma says,
    # as it does at 300 s and 1800 s, not five times as fast.
    moved = {}
    for step in (60, 300, 1800):
        before, after = _profile_at_peak_before_and_after_an_inverted_day(step)
        assert before > 0.1  # the peak was learnt
        moved[step] = (before - after) / before
    assert 0.05 < moved[300] < 0.5
    assert moved[60] == pytest.approx(moved[300], abs=0.05)
    assert moved[1800] == pytest.approx(moved[300], abs=0.05)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"step_seconds": 0}, "step_seconds"),
        ({"step_seconds": 60, "level": 1.0}, "level"),
        ({"step_seconds": 60, "calibrated_steps": (5, 1)}, "calibrated_steps"),
        ({"step_seconds": 60, "calibrated_steps": ()}, "calibrated_steps"),
        ({"step_seconds": 60, "smoothers": ((-1.0, True, 0.0),)}, "smoothers"),
        ({"step_seconds": 60, "error_half_life": math.inf}, "error_half_life"),
        ({"step_seconds": 60, "season_gamma": 0.0}, "season_gamma"),
        ({"step_seconds": 60, "coverage_lr": 2.0}, "coverage_lr"),
        ({"step_seconds": 60, "max_season_bins": 0}, "max_season_bins"),
        ({"step_seconds": 60, "prior_half_width": 0.0}, "prior_half_width"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        OnlineForecaster(**kwargs)  # type: ignore[arg-type]


def test_from_dict_rejects_other_versions() -> None:
    d = _trained(10).to_dict()
    d["v"] = 99
    with pytest.raises(ValueError, match="version"):
        OnlineForecaster.from_dict(d)


def test_fine_steps_keep_the_profile_bounded() -> None:
    f = OnlineForecaster(step_seconds=10)
    assert len(f.to_dict()["season"]) <= 4 * 288 * 4 // 3 + 4  # base64 of at most 288 float32


def test_score_before_learn_order() -> None:
    # The forecast for a step is fixed before that step's value is learned: a huge value at t
    # cannot have influenced what was forecast for t.
    f = _trained(300)
    before = f.intervals(1)[0]
    g = OnlineForecaster.from_dict(f.to_dict())
    g.learn_at(T0 + 300 * 300, 100.0)
    assert f.intervals(1)[0] == before
    assert g.intervals(1)[0].point > before.point


@pytest.mark.parametrize("step", [60, 300, 1800])
def test_smoothing_memory_is_the_same_in_seconds_at_every_step(step: int) -> None:
    p = OnlineForecaster(step_seconds=step).params
    hour = 3600 / step  # steps in an hour
    for (a, _, _), (h, _, _) in zip(p.candidates, p.smoothers, strict=True):
        # A half-life of 0 is the last value at any step.
        assert a == 1.0 if h == 0 else math.isclose((1 - a) ** hour, 2 ** (-3600 / h), rel_tol=1e-9)
    assert any(h == 0 for h, _, _ in p.smoothers) and any(h > 3600 for h, _, _ in p.smoothers)
    for alpha, hl in ((p.error_alpha, p.error_half_life), (p.spread_alpha, p.spread_half_life)):
        if 2 ** (-step / hl) > 1 - 1 / p.min_outcomes:  # the half-life holds enough outcomes
            assert math.isclose((1 - alpha) ** hour, 2 ** (-3600 / hl), rel_tol=1e-9)
        else:  # a half-life of a few outcomes: the average weighs min_outcomes of them
            assert alpha == 1 / p.min_outcomes
    if step == 1800:  # the defaults' error averages hold too few 30-minute outcomes in their half-life
        assert p.error_alpha == 1 / p.min_outcomes


def _after_a_level_shift(step: int, **kw: Any) -> float:
    # The same process in time at any step: 0.2 for 12 h, then 0.6; the forecast 2 h after the shift.
    f = OnlineForecaster(step_seconds=step, season_seconds=0, calibrated_steps=(1,), **kw)
    for i in range(round(14 * 3600 / step)):  # 2 h of 0.6: 7200 / step updates
        t = i * step
        f.learn_at(T0 + t, 0.2 if t < 12 * 3600 else 0.6)
    return f.forecast(1)[0]


def test_a_60s_and_a_30min_series_of_the_same_process_forecast_alike() -> None:
    one = {"smoothers": ((3600.0, False, 0.0),)}
    # One smoother with a 1-hour half-life: 2 h after a 0.4 shift a quarter of it is left, at any step.
    assert _after_a_level_shift(60, **one) == pytest.approx(0.5, abs=1e-3)
    assert _after_a_level_shift(1800, **one) == pytest.approx(0.5, abs=1e-3)
    # The defaults (a combination of smoothers) follow the shift alike at both steps.
    fine, coarse = _after_a_level_shift(60), _after_a_level_shift(1800)
    assert abs(fine - coarse) < 0.05 and min(fine, coarse) > 0.5
