"""Helios' forecaster as a River estimator: River's own checks, the River verbs, horizons in seconds."""

from __future__ import annotations

import math

import pytest
from river import checks, evaluate, metrics

from models.forecast import Interval, OnlineForecaster, interpolate_interval
from models.river_adapters import SafeHoltWinters

T0 = 1_700_000_000.0


def _river_checks() -> list[tuple[str, object, object]]:
    out = []
    for cls in (OnlineForecaster, SafeHoltWinters):
        for i, params in enumerate(cls._unit_test_params()):
            model = cls(**params)
            for check in checks.yield_checks(model):
                if check.__name__ not in model._unit_test_skips():
                    out.append((f"{cls.__name__}[{i}]-{check.__name__}", model, check))
    return out


CHECKS = _river_checks()


def test_river_runs_its_forecaster_checks_on_both_models() -> None:
    names = {name.split("-", 1)[1] for name, _, _ in CHECKS}
    # River's forecaster protocol checks, not only the generic ones.
    assert {"check_learn_one", "check_forecast", "check_clone_is_idempotent"} <= names
    assert {name.split("-", 1)[0] for name, _, _ in CHECKS} == {
        "OnlineForecaster[0]",
        "OnlineForecaster[1]",
        "SafeHoltWinters[0]",
        "SafeHoltWinters[1]",
    }


@pytest.mark.parametrize(("model", "check"), [(m, c) for _, m, c in CHECKS], ids=[n for n, _, _ in CHECKS])
def test_river_estimator_check(model: object, check: object) -> None:
    check(model.clone())  # type: ignore[attr-defined,operator]


def _series(i: int) -> float:
    return 0.5 + 0.2 * math.sin(2 * math.pi * i / 288) + 0.03 * ((i * 7919) % 13 - 6) / 6


def test_learn_one_is_learn_at_the_next_step_and_forecast_is_the_points() -> None:
    river_way = OnlineForecaster(step_seconds=300)
    helios_way = OnlineForecaster(step_seconds=300)
    for i in range(700):
        river_way.learn_one(_series(i), {"ignored": 1.0})
        helios_way.learn_at(300.0 * i, _series(i))
    assert river_way.to_dict() == helios_way.to_dict()
    assert river_way.forecast(12) == [band.point for band in helios_way.intervals(12)]
    assert river_way.forecast(3, xs=[{}, {}, {}]) == river_way.forecast(3)


def test_clone_has_the_parameters_and_none_of_the_state() -> None:
    f = OnlineForecaster(step_seconds=60, level=0.8, calibrated_steps=(1, 4))
    for i in range(50):
        f.learn_one(_series(i))
    g = f.clone()
    assert g._get_params() == f._get_params() and g._get_params()["level"] == 0.8
    assert g.n_seen == 0 and f.n_seen == 50
    assert f.clone({"level": 0.95}).level == 0.95


def test_rivers_own_evaluation_runs_on_it() -> None:
    dataset = [({}, _series(i)) for i in range(600)]
    result = evaluate.evaluate(dataset, OnlineForecaster(step_seconds=300), metrics.MAE(), horizon=3)
    per_step = [m.get() for m in result.metrics]
    assert len(per_step) == 3 and all(0.0 < e < 0.1 for e in per_step), per_step  # wave 0.2, noise 0.03


def _trained(step: int = 300, n: int = 600) -> OnlineForecaster:
    f = OnlineForecaster(step_seconds=step, calibrated_steps=(1, 2, 3, 6))
    for i in range(n):
        f.learn_at(T0 + step * i, _series(i))
    return f


def test_whole_step_horizons_in_seconds_are_exactly_forecast_at() -> None:
    f = _trained()
    cur = (T0 + 600 * 300, 0.61)
    assert f.forecast_seconds([300, 900, 1800], current=cur) == f.forecast_at([1, 3, 6], current=cur)


def test_a_horizon_between_steps_is_interpolated_between_its_neighbours() -> None:
    f = _trained()
    one, two = f.forecast_at([1, 2])
    got = f.forecast_seconds([450, 540])
    assert got == [interpolate_interval(one, two, 0.5), interpolate_interval(one, two, 0.8)]
    assert one.lower < got[0].lower or two.lower < got[0].lower  # really between, not a copy of one
    # Shorter than one step: between the last value (a band of zero width) and step 1.
    short = f.forecast_seconds([60])[0]
    last = _series(599)
    assert short == interpolate_interval(Interval(last, last, last), one, 0.2)


def test_a_horizon_between_steps_is_refused_when_asked_to() -> None:
    f = _trained()
    with pytest.raises(ValueError, match=r"horizon 450 s is not a whole number of 300 s steps"):
        f.forecast_seconds([300, 450], between="refuse")
    assert f.forecast_seconds([300, 600], between="refuse") == f.forecast_at([1, 2])
    with pytest.raises(ValueError, match="between must be"):
        f.forecast_seconds([300], between="round")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive seconds"):
        f.forecast_seconds([0])
    with pytest.raises(ValueError, match="ascending"):
        f.forecast_seconds([900, 300])


def test_forecast_seconds_with_current_does_not_change_the_forecaster() -> None:
    f = _trained()
    before = f.to_dict()
    peek = f.forecast_seconds([450, 900], current=(T0 + 600 * 300, 0.9))
    assert f.to_dict() == before
    f.learn_at(T0 + 600 * 300, 0.9)
    assert peek == f.forecast_seconds([450, 900])


def test_conformal_band_defaults_are_the_forecasters() -> None:
    """ConformalBand documents "same defaults" as OnlineForecaster: a River model's band must not drift
    from Helios' own when one of them changes (both are written out in their signatures)."""
    import inspect

    from models.conformal import ConformalBand
    from models.forecast import OnlineForecaster

    band = inspect.signature(ConformalBand).parameters
    own = inspect.signature(OnlineForecaster).parameters
    empty = inspect.Parameter.empty
    shared = [
        n for n, p in band.items() if n in own and empty is not p.default and empty is not own[n].default
    ]
    assert {"error_half_life", "spread_half_life", "min_outcomes", "coverage_lr"} <= set(shared)
    assert {n: band[n].default for n in shared} == {n: own[n].default for n in shared}
