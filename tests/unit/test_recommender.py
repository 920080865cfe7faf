"""The scaling policy: its rules, one at a time, and its contract with the records."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re

import pytest

from models.forecast import Interval
from models.recommender import Recommender, RecommenderState, ScalingInputs
from pipeline.stages import advice_items


def inputs(
    now: float = 0.0,
    replicas: int | None = 4,
    cpu: float | None = 0.5,
    bands: dict[int, tuple[float, float, float]] | None = None,
    memory: float | None = 0.4,
    memory_bands: dict[int, tuple[float, float, float]] | None = None,
    anomaly: bool = False,
    db_cpu: float | None = None,
    db_connections: float | None = None,
) -> ScalingInputs:
    bands = bands if bands is not None else {300: (cpu or 0.0, cpu or 0.0, cpu or 0.0)}
    return ScalingInputs(
        now=now,
        current_replicas=replicas,
        cpu_now=cpu,
        memory_now=memory,
        cpu_forecast={h: Interval(*b) for h, b in bands.items()},
        memory_forecast={h: Interval(*b) for h, b in (memory_bands or {}).items()},
        anomaly_score=4.0 if anomaly else 0.3,
        is_anomaly=anomaly,
        db_cpu=db_cpu,
        db_connections=db_connections,
    )


def test_scale_up_on_the_upper_band_with_a_reason_naming_the_numbers() -> None:
    rec = Recommender(quantile=None, center_on_current=False)
    d = rec.recommend(
        RecommenderState(), inputs(cpu=0.6, bands={300: (0.7, 0.6, 0.85), 900: (0.6, 0.4, 0.8)})
    )
    assert d.action == "scale_up"
    assert d.target_replicas == math.ceil(4 * 0.85 / 0.80)
    item = d.advice[0]
    assert item.type == "scaling" and item.target_replicas == d.target_replicas
    assert "Predicted CPU 85%" in item.reason and "threshold 80%" in item.reason
    assert item.execute_by == pytest.approx(300 - 60)  # crossing at 5 min minus the 60 s start-up
    assert d.evidence["rule"] == "scale_up_on_upper_band"
    assert d.evidence["needs"]["reactive_floor"] == math.ceil(4 * 0.6 / 0.8)


def test_the_evidence_carries_the_ingested_metrics_decimals_and_decides_on_every_digit() -> None:
    # A band of many digits whose upper end is just past the threshold: the decision uses it exactly,
    # the evidence shows it at six decimals, as the inputs come.
    x = inputs(cpu=0.123456789, bands={300: (0.7000000123, 0.6000000456, 0.8000000789)})
    d = Recommender(quantile=None, center_on_current=False).recommend(RecommenderState(), x)
    assert d.action == "scale_up"
    assert d.evidence["forecast"]["300"] == {"point": 0.7, "lower": 0.6, "upper": 0.8}
    assert d.evidence["inputs"]["cpu_now"] == 0.123457


def test_the_point_forecast_alone_does_not_trigger_a_scale_up() -> None:
    # point below the threshold, upper above: the band decides
    d = Recommender(quantile=None, center_on_current=False).recommend(
        RecommenderState(), inputs(cpu=0.5, bands={300: (0.75, 0.65, 0.95)})
    )
    assert d.target_replicas == math.ceil(4 * 0.95 / 0.8)


def test_by_default_the_band_is_centred_on_the_current_cpu() -> None:
    # The same band: its upper half-width 0.2 above the current 50 % is 70 %, which 4 pods carry.
    x = inputs(cpu=0.5, bands={300: (0.75, 0.65, 0.95)})
    d = Recommender(quantile=None).recommend(RecommenderState(), x)
    assert (d.action, d.target_replicas) == ("hold", 4)
    assert d.evidence["sizing_centre"] == "current_cpu"
    assert d.evidence["forecast"]["300"]["point"] == 0.75  # the forecast as issued
    # 65 % now: 0.65 + 0.2 = 85 % on 4 pods needs a fifth
    hot = Recommender(quantile=None).recommend(
        RecommenderState(), inputs(cpu=0.65, bands={300: (0.75, 0.65, 0.95)})
    )
    assert (hot.action, hot.target_replicas) == ("scale_up", math.ceil(4 * 0.85 / 0.8))
    assert "Predicted CPU 85%" in hot.advice[0].reason


def test_a_point_forecast_lagging_a_scale_up_does_not_hold_the_pods() -> None:
    # Just scaled 1 -> 5 pods for a burst that has ended: 5 % each now, but the per-pod forecast still
    # remembers the single pod's load. Sized on that band, 5 x 0.8 = 4 pod-cores would keep all five;
    # centred on the current CPU its width (0.1) leaves 5 x 0.15 = 0.75 pod-cores: one pod.
    x = inputs(replicas=5, cpu=0.05, bands={300: (0.7, 0.6, 0.8), 900: (0.6, 0.5, 0.7)})
    state = RecommenderState(target=5, changed_at=-1000.0, direction="up")
    assert Recommender(quantile=None).recommend(state, x).target_replicas == 1
    stale = RecommenderState(target=5, changed_at=-1000.0, direction="up")
    assert Recommender(quantile=None, center_on_current=False).recommend(stale, x).target_replicas == 5


@pytest.mark.parametrize("quantile", [0.6, 0.8, 0.9, 0.95])
def test_the_sizing_quantile_is_read_from_the_band_as_a_normal(quantile: float) -> None:
    from statistics import NormalDist

    # a 90 % band 0.5 +- 0.2 is N(0.5, 0.2 / 1.645): its q-quantile, independently computed
    sigma = 0.2 / NormalDist().inv_cdf(0.95)
    q = NormalDist(0.5, sigma).inv_cdf(quantile)
    rec = Recommender(quantile=quantile, max_replicas=1000, center_on_current=False)
    d = rec.recommend(RecommenderState(), inputs(replicas=100, cpu=0.1, bands={300: (0.5, 0.3, 0.7)}))
    assert d.evidence["needs"]["predicted"] == math.ceil(100 * q / 0.8)
    # centred on the current 10 %: the same half-width above 0.1
    rec = Recommender(quantile=quantile, max_replicas=1000)
    d = rec.recommend(RecommenderState(), inputs(replicas=100, cpu=0.1, bands={300: (0.5, 0.3, 0.7)}))
    q = NormalDist(0.1, sigma).inv_cdf(quantile)
    assert d.evidence["needs"]["predicted"] == math.ceil(100 * q / 0.8)


@pytest.mark.parametrize(
    ("replicas", "cpu", "upper"),
    list(itertools.product([1, 2, 3, 5, 8], [0.05, 0.3, 0.79, 0.81, 0.95, 1.0], [0.0, 0.2, 0.9])),
)
def test_never_below_the_reactive_autoscaler(replicas: int, cpu: float, upper: float) -> None:
    rec = Recommender(max_replicas=100, cooldown_seconds=0.0)
    d = rec.recommend(
        RecommenderState(), inputs(replicas=replicas, cpu=cpu, bands={300: (upper, 0.0, upper)})
    )
    reactive = math.ceil(round(replicas * cpu / 0.8, 9))
    assert d.target_replicas >= max(1, reactive)


def test_no_scale_down_during_an_anomaly_but_afterwards() -> None:
    rec = Recommender(cooldown_seconds=0.0)
    state = RecommenderState(target=6, changed_at=-10_000.0, direction="up")
    quiet = {300: (0.1, 0.05, 0.15), 900: (0.1, 0.05, 0.15)}
    d = rec.recommend(state, inputs(replicas=6, cpu=0.1, bands=quiet, anomaly=True))
    assert (d.action, d.target_replicas, d.evidence["rule"]) == ("hold", 6, "no_scale_down_during_anomaly")
    d = rec.recommend(state, inputs(now=60.0, replicas=6, cpu=0.1, bands=quiet, anomaly=False))
    assert d.action == "scale_down" and d.target_replicas < 6


def test_cooldown_blocks_scale_down_but_not_scale_up() -> None:
    rec = Recommender(cooldown_seconds=300.0)
    state = RecommenderState()
    up = rec.recommend(state, inputs(now=0.0, replicas=2, cpu=0.9, bands={300: (0.9, 0.8, 1.0)}))
    assert up.action == "scale_up" and state.changed_at == 0.0
    n = up.target_replicas
    low = {300: (0.1, 0.05, 0.15)}
    held = rec.recommend(state, inputs(now=200.0, replicas=n, cpu=0.1, bands=low))
    assert (held.target_replicas, held.evidence["rule"]) == (n, "cooldown")
    higher = rec.recommend(state, inputs(now=210.0, replicas=n, cpu=0.95, bands={300: (1.0, 0.9, 1.0)}))
    assert higher.target_replicas > n
    after = rec.recommend(
        state, inputs(now=210.0 + 301.0, replicas=higher.target_replicas, cpu=0.1, bands=low)
    )
    assert after.action == "scale_down"


def test_hysteresis_does_not_flap_on_a_load_hovering_at_the_threshold() -> None:
    rec = Recommender(cooldown_seconds=0.0)
    state = RecommenderState()
    targets = []
    for i in range(40):
        cpu_load = 3.1 + (0.15 if i % 2 else -0.15)  # cores, around 4 pods x 0.8
        replicas = state.target or 4
        u = cpu_load / replicas
        d = rec.recommend(
            state, inputs(now=60.0 * i, replicas=replicas, cpu=u, bands={300: (u, u - 0.02, u + 0.02)})
        )
        targets.append(d.target_replicas)
    changes = sum(1 for a, b in itertools.pairwise(targets) if a != b)
    assert changes <= 1


def test_bounds_and_capping_is_reported() -> None:
    rec = Recommender(min_replicas=2, max_replicas=5)
    d = rec.recommend(RecommenderState(), inputs(replicas=5, cpu=1.0, bands={300: (1.0, 0.9, 1.0)}))
    assert d.target_replicas == 5 and d.evidence["capped_at_max"] is True
    assert "max_replicas 5" in d.advice[0].reason
    d = Recommender(min_replicas=2, cooldown_seconds=0).recommend(
        RecommenderState(), inputs(replicas=4, cpu=0.01, bands={300: (0.01, 0.0, 0.02)})
    )
    assert d.target_replicas == 2


def test_memory_crossing_within_the_horizon_gives_a_resource_advice() -> None:
    x = inputs(memory=0.6, memory_bands={300: (0.7, 0.65, 0.75), 1800: (0.88, 0.8, 0.95)})
    d = Recommender().recommend(RecommenderState(), x)
    res = [a for a in d.advice if a.type == "resource"]
    assert len(res) == 1
    assert "88%" in res[0].reason and "85%" in res[0].reason
    assert res[0].execute_by == pytest.approx(1800 - 60)
    d = Recommender().recommend(RecommenderState(), inputs(memory=0.6, memory_bands={1800: (0.7, 0.6, 0.9)}))
    assert not [a for a in d.advice if a.type == "resource"]


def test_saturated_database_withholds_the_predictive_scale_up_and_says_so() -> None:
    x = inputs(cpu=0.6, bands={300: (0.9, 0.8, 1.0)}, db_cpu=0.95)
    d = Recommender().recommend(RecommenderState(), x)
    assert d.target_replicas == 4  # reactive floor ceil(4 * 0.6 / 0.8) = 3, held at current
    db = [a for a in d.advice if a.type == "database"]
    assert len(db) == 1 and "will not help" in db[0].reason and "95%" in db[0].reason
    assert d.evidence["rule"] == "database_bottleneck"
    d = Recommender(db_connections_limit=100).recommend(
        RecommenderState(), inputs(cpu=0.3, db_connections=120.0)
    )
    assert any(a.type == "database" and "120" in a.reason for a in d.advice)


def test_unknown_replicas_holds_the_previous_recommendation() -> None:
    d = Recommender().recommend(RecommenderState(target=3), inputs(replicas=None, cpu=0.9))
    assert (d.action, d.target_replicas, d.evidence["rule"]) == ("hold", 3, "unknown_replicas")


def test_advice_maps_to_records_and_evidence_and_state_are_small_json() -> None:
    state = RecommenderState()
    x = inputs(cpu=0.9, bands={300: (0.9, 0.8, 1.0)}, memory=0.9, db_cpu=0.95, db_connections=10.0)
    d = Recommender().recommend(state, x)
    # The stream's own mapping to records (validated by pydantic on the way).
    items = advice_items(d)
    assert [i.type for i in items] == [a.type for a in d.advice]
    json.dumps(d.evidence)
    blob = json.dumps(state.to_dict())
    assert len(blob) < 1024
    assert RecommenderState.from_dict(json.loads(blob)) == state


def test_recommend_does_not_mutate_its_inputs() -> None:
    x = inputs(cpu=0.9, bands={300: (0.9, 0.8, 1.0)})
    before = (dict(x.cpu_forecast), x.cpu_now, x.current_replicas)
    Recommender().recommend(RecommenderState(), x)
    assert (dict(x.cpu_forecast), x.cpu_now, x.current_replicas) == before


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"cpu_scale_up": 0.0}, "cpu_scale_up"),
        ({"cpu_scale_down": 0.9}, "cpu_scale_down"),
        ({"min_replicas": 0}, "min_replicas"),
        ({"max_replicas": 0}, "max_replicas"),
        ({"cooldown_seconds": -1}, "cooldown_seconds"),
        ({"band_level": 1.0}, "band_level"),
        ({"scale_down_horizon": 60}, "scale_down_horizon"),
        ({"quantile": 0.3}, "quantile"),
        ({"db_connections_limit": 0}, "db_connections_limit"),
    ],
)
def test_bad_settings_are_rejected_naming_the_parameter(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Recommender(**kwargs)  # type: ignore[arg-type]


def test_a_zero_width_band_crossing_at_15_minutes_scales_up_now() -> None:
    # /recommend-style inputs: point = lower = upper. 2 replicas at 75 %, 85 % predicted in 900 s:
    # 2 x 0.85 = 1.7 pod-cores need ceil(1.7 / 0.80) = 3 replicas. (It used to answer "hold".)
    x = inputs(replicas=2, cpu=0.75, bands={300: (0.78, 0.78, 0.78), 900: (0.85, 0.85, 0.85)})
    d = Recommender().recommend(RecommenderState(), x)
    assert d.action == "scale_up"
    assert d.target_replicas >= 3
    item = d.advice[0]
    assert "85%" in item.reason and "80%" in item.reason
    assert item.execute_by == pytest.approx(900 - 60)  # the crossing minus the start-up lead


def test_a_crossing_only_the_band_expects_far_ahead_does_not_scale_up() -> None:
    # the point stays under the threshold at 15 min; only the wide band's upper end crosses there
    x = inputs(replicas=4, cpu=0.5, bands={300: (0.5, 0.45, 0.55), 900: (0.6, 0.3, 0.9)})
    d = Recommender().recommend(RecommenderState(), x)
    assert d.action == "hold" and d.target_replicas == 4


def test_load_recurring_at_this_time_of_the_hour_scales_up_before_it_and_blocks_the_scale_down() -> None:
    rec = Recommender()
    quiet = inputs(replicas=1, cpu=0.2, bands={300: (0.2, 0.15, 0.25), 900: (0.2, 0.15, 0.25)})
    state = RecommenderState()
    assert rec.recommend(state, quiet).target_replicas == 1
    due = dataclasses.replace(quiet, now=600.0, recurring_load=2.83)
    d = rec.recommend(state, due)
    assert d.action == "scale_up" and d.target_replicas == math.ceil(2.83 / 0.8)
    assert d.evidence["rule"] == "recurring_peak" and d.evidence["needs"]["recurring"] == 4
    assert "283%" in d.advice[0].reason and "threshold 80%" in d.advice[0].reason
    assert d.advice[0].execute_by == 600.0
    # While it is still due, the quiet forecast does not take the pods away.
    held = rec.recommend(state, dataclasses.replace(due, now=1200.0))
    assert held.target_replicas == 4 and held.evidence["rule"] == "within_hysteresis"
    # Once nothing recurs ahead, the usual scale-down applies.
    after = rec.recommend(state, dataclasses.replace(quiet, now=1800.0))
    assert after.target_replicas == 1 and after.evidence["rule"] == "scale_down_below_margin"


def test_on_a_schedule_its_ceiling_caps_the_band_but_never_the_reactive_floor() -> None:
    # Right after a scheduled spike: the band, widened by the spikes, asks for 2 pods; every one of the
    # last hours went back to 0.2 pods' worth here, so 1 pod.
    wide = inputs(replicas=1, cpu=0.2, bands={300: (0.2, 0.0, 1.4), 900: (0.2, 0.0, 1.4)})
    assert Recommender().recommend(RecommenderState(), wide).target_replicas > 1
    capped = Recommender().recommend(RecommenderState(), dataclasses.replace(wide, recurring_ceiling=0.2))
    assert capped.target_replicas == 1
    # During the spike itself the current load still rules: 4 pods at 71 % stay 4.
    busy = inputs(replicas=4, cpu=0.71, bands={300: (0.71, 0.3, 1.0)})
    d = Recommender().recommend(RecommenderState(), dataclasses.replace(busy, recurring_ceiling=0.2))
    assert d.target_replicas == 4 and d.evidence["needs"]["reactive_floor"] == 4


def test_a_step_longer_than_the_start_up_is_sized_on_the_next_steps_band() -> None:
    # At a 30-minute step the nearest band is one step (1800 s) ahead, beyond the 300 s scale-up horizon:
    # the pods asked for now are all there is until the next decision's are ready, 1860 s from now.
    x = ScalingInputs(
        now=0.0,
        current_replicas=2,
        cpu_now=0.6,
        memory_now=None,
        cpu_forecast={1800: Interval(0.6, 0.3, 1.0), 3600: Interval(0.6, 0.2, 1.2)},
        memory_forecast={},
    )
    half_hourly = Recommender(step_seconds=1800).recommend(RecommenderState(), x)
    # 0.6 + 0.4 * z(0.8) / z(0.95) = 0.805 per pod on 2 pods: ceil(2 * 0.805 / 0.8) = 3
    assert (half_hourly.target_replicas, half_hourly.evidence["rule"]) == (3, "scale_up_on_upper_band")
    minutely = Recommender(step_seconds=60).recommend(RecommenderState(), x)
    assert (minutely.target_replicas, minutely.evidence["rule"]) == (2, "within_hysteresis")


def test_the_step_must_be_positive() -> None:
    with pytest.raises(ValueError, match="step_seconds"):
        Recommender(step_seconds=0)


def test_a_recurring_ramp_is_sized_a_start_up_ahead_on_the_band_and_holds_off_scale_down() -> None:
    def inputs(growth: float | None, cpu: float = 0.5) -> ScalingInputs:
        return ScalingInputs(
            now=1000.0,
            current_replicas=2,
            cpu_now=cpu,
            memory_now=None,
            cpu_forecast={300: Interval(0.5, 0.4, 0.6), 900: Interval(0.5, 0.35, 0.65)},
            memory_forecast={},
            periodic_growth=growth,
        )

    ramp = Recommender().recommend(RecommenderState(), inputs(2.0))
    # centre 0.5 x 2.0 = 1.0, + 0.1 x z(0.8) / z(0.95) = 1.051 per pod on 2 pods: ceil(2 x 1.051 / 0.8) = 3
    assert (ramp.action, ramp.target_replicas, ramp.evidence["rule"]) == ("scale_up", 3, "periodic_ramp")
    assert "rose 2.00x" in ramp.advice[0].reason
    assert ramp.advice[0].execute_by == 1000.0 + 300 - 60
    assert Recommender().recommend(RecommenderState(), inputs(None)).target_replicas == 2
    # At 4 pods, 20 % each, no ramp lets it go down; a ramp due next keeps them.
    calm = dataclasses.replace(inputs(None, 0.2), current_replicas=4)
    assert Recommender().recommend(RecommenderState(), calm).action == "scale_down"
    due = dataclasses.replace(calm, periodic_growth=4.0)
    assert Recommender().recommend(RecommenderState(), due).target_replicas >= 4


@pytest.mark.parametrize("half_width", [0.05, 0.1, 0.2, 0.3])
def test_a_scale_down_goes_in_one_move_to_where_further_decisions_would_hold(half_width: float) -> None:
    # After a burst: 9 pods carry 1.5 cores (17 % each) and the band, per pod, is still wide. The same
    # load and band on fewer pods leave less headroom in cores, so the count the first decision picks is
    # where the next decisions at that load would stop, not one pod on the way down to it.
    load = 1.5
    rec = Recommender(cooldown_seconds=0.0)
    state = RecommenderState(target=9, changed_at=-10_000.0, direction="up")

    def at(n: int, now: float) -> ScalingInputs:
        cpu = load / n
        band = (cpu, max(0.0, cpu - half_width), cpu + half_width)
        return inputs(now=now, replicas=n, cpu=cpu, bands={300: band, 900: band})

    first = rec.recommend(state, at(9, 0.0))
    assert first.action == "scale_down"
    n = first.target_replicas
    # The reason states the CPU on n pods, under the threshold it names.
    on_n = re.search(rf"on {n} replicas \((\d+)%\)", first.advice[0].reason)
    assert on_n is not None, first.advice[0].reason
    assert int(on_n.group(1)) <= 100 * rec.cpu_scale_up
    again = rec.recommend(state, at(n, 1_800.0))
    assert again.action == "hold" and again.target_replicas == n
    # ... and n keeps the sizing quantile under the threshold on n pods; one pod fewer would not keep it
    # under the scale-down margin.
    q = load / n + half_width * rec._q_frac
    assert q <= rec.cpu_scale_up
    if n > rec.min_replicas:
        q1 = load / (n - 1) + half_width * rec._q_frac
        assert q1 > rec.cpu_scale_up * rec.scale_down_margin
