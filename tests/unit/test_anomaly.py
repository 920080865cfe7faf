"""StreamingDetector contract: purity, order, missing features, persistence, suppression, combine."""

from __future__ import annotations

import copy
import json
import math
import random
import time

import pytest

from models.anomaly import (
    CRITICAL_FACTOR,
    DetectorScore,
    StreamingDetector,
    combine,
    severity,
    to_unit_interval,
    xgb_feature_names,
)
from models.features import CPU, FEATURES, MEMORY
from pipeline.sources.synthetic import synthetic_trace


def _stream(n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{f: 0.3 + 0.05 * math.sin(i / 20) + rng.gauss(0, 0.01) for f in FEATURES} for i in range(n)]


def _trained(n: int = 400) -> StreamingDetector:
    det = StreamingDetector()
    for x in _stream(n):
        det.score_one(x)
        det.learn_one(x)
    return det


def test_before_any_data_sigma_is_zero() -> None:
    s = StreamingDetector().score_detail({CPU: 0.9, MEMORY: 0.1})
    assert s.sigma == 0.0
    assert s.contributions == {CPU: 0.0, MEMORY: 0.0}


def test_score_one_is_pure_and_does_not_mutate_input() -> None:
    det = _trained()
    before = json.dumps(det.to_dict(), sort_keys=True)
    x = {CPU: 0.95, MEMORY: 0.3}
    x_copy = dict(x)
    first = det.score_one(x)
    second = det.score_one(x)
    assert first == second
    assert x == x_copy
    assert json.dumps(det.to_dict(), sort_keys=True) == before


def test_score_before_learn_order_matters() -> None:
    # A point scored after it was learned looks less surprising: the pipeline must score first.
    det = _trained()
    spike = {CPU: 0.95}
    scored_first = det.score_detail(spike).sigma
    det.learn_one(spike)
    assert scored_first > det.threshold
    assert det.score_detail(spike).sigma < scored_first


def test_missing_features_tolerated() -> None:
    det = _trained()
    assert det.score_detail({}).sigma == 0.0
    partial = det.score_detail({CPU: 0.95, "unknown": 3.0, MEMORY: float("nan")})
    assert set(partial.contributions) == {CPU}
    det.learn_one({CPU: 0.31})  # learning a partial point works too
    row = det.xgb_features({CPU: 0.3})
    assert len(row) == len(xgb_feature_names(FEATURES))
    # columns of features absent from x are NaN (missing for XGBoost)
    assert all(math.isnan(v) for v in row[len(row) // len(FEATURES) :])
    assert not any(math.isnan(v) for v in row[: len(row) // len(FEATURES)])


def test_contributions_sum_to_sigma_and_name_the_culprit() -> None:
    det = _trained()
    x = dict(_stream(401)[-1])
    x[MEMORY] = 0.99
    s = det.score_detail(x)
    assert s.sigma > det.threshold
    assert sum(s.contributions.values()) == pytest.approx(s.sigma)
    assert max(s.contributions, key=lambda k: s.contributions[k]) == MEMORY


def test_spike_fires_once_then_is_suppressed() -> None:
    det = _trained()
    base = _stream(420)[400:]
    sigmas = []
    for i, x in enumerate(base):
        y = dict(x)
        if i in (0, 1, 2):  # a three-point burst is one event: one alarm, not three
            y[CPU] = 0.95
        sigmas.append(det.score_detail(y).sigma)
        det.learn_one(y)
    assert sigmas[0] > det.threshold
    assert all(s < det.threshold for s in sigmas[1:])


def test_anomalies_are_winsorised_when_learning() -> None:
    # After a huge outlier the fast mean must not jump to it: its effect is capped at `threshold` MADs.
    det = _trained()
    normal = {CPU: 0.3}
    z_before = det.explain_one(normal)[CPU]["z_fast"]
    det.learn_one({CPU: 1000.0})
    z_after = det.explain_one(normal)[CPU]["z_fast"]
    assert z_after < z_before + det.threshold + 1.0


def test_round_trip_is_identical_and_compact() -> None:
    det = _trained(500)
    d = det.to_dict()
    text = json.dumps(d, separators=(",", ":"), allow_nan=False)
    assert len(text.encode()) <= 4096
    clone = StreamingDetector.from_dict(json.loads(text))
    for x in _stream(50, seed=3):
        a, b = det.score_detail(x), clone.score_detail(x)
        assert a.sigma == pytest.approx(b.sigma, rel=1e-8, abs=1e-9)
        det.learn_one(x)
        clone.learn_one(x)
    assert clone.to_dict()["params"] == det.to_dict()["params"]


def test_same_arguments_share_one_parameter_object_but_never_state() -> None:
    # Every tracked deployment has a detector: they share one parameter object, not their state.
    a, b = StreamingDetector(), StreamingDetector(features=list(FEATURES))
    assert a.params is b.params
    assert a.params is not StreamingDetector(threshold=3.0).params
    for x in _stream(400):
        a.learn_one(x)
    for x in _stream(400, seed=1):
        b.learn_one(x)
    assert a.to_dict() == _trained(400).to_dict()
    assert a.to_dict()["state"] != b.to_dict()["state"]


def test_from_dict_rejects_bad_state() -> None:
    d = _trained(100).to_dict()
    bad = copy.deepcopy(d)
    bad["format"] = 99
    with pytest.raises(ValueError, match="format"):
        StreamingDetector.from_dict(bad)
    bad = copy.deepcopy(d)
    bad["state"][CPU] = bad["state"][CPU][:-1]
    with pytest.raises(ValueError, match="finite numbers"):
        StreamingDetector.from_dict(bad)
    bad = copy.deepcopy(d)
    bad["state"]["nope"] = bad["state"][CPU]
    with pytest.raises(ValueError, match="unknown feature"):
        StreamingDetector.from_dict(bad)


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"threshold": 0}, "threshold"),
        ({"fast_alpha": 0}, "fast_alpha"),
        ({"slow_alpha": 1.5}, "slow_alpha"),
        ({"fast_alpha": 0.01, "slow_alpha": 0.1}, "slow_alpha"),
        ({"peak_decay": 1.2}, "peak_decay"),
        ({"envelope_decay": 1.0}, "envelope_decay"),
        ({"novelty_unit": 0}, "novelty_unit"),
        ({"warmup": 0}, "warmup"),
        ({"season_length": 1}, "season_length"),
        ({"season_length": -5}, "season_length"),
        ({"season_bins": 1}, "season_bins"),
        ({"season_unit": 0}, "season_unit"),
        ({"season_alpha": 0}, "season_alpha"),
        ({"maturity": -1}, "maturity"),
        ({"features": []}, "features"),
        ({"features": "cpu"}, "features"),
    ],
)
def test_bad_settings_rejected(kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        StreamingDetector(**kw)


def test_severity_rule() -> None:
    t = 2.5
    assert severity(t - 1e-9, t) == "normal"
    assert severity(t, t) == "warning"
    assert severity(CRITICAL_FACTOR * t - 1e-9, t) == "warning"
    assert severity(CRITICAL_FACTOR * t, t) == "critical"


def test_combine_lets_xgboost_modulate_but_not_alarm_alone() -> None:
    s = DetectorScore(2.0, {CPU: 1.5, MEMORY: 0.5})
    alone = combine(s, None, 2.5)
    assert (alone.score, alone.is_anomaly, alone.severity) == (2.0, False, "normal")
    assert alone.contributions == [(CPU, 1.5), (MEMORY, 0.5)]
    high = combine(s, 0.8, 2.5)
    # sigma * (0.5 + p) = 2.0 * 1.3
    assert high.score == pytest.approx(2.6)
    assert high.is_anomaly and high.severity == "warning"
    assert high.parts["xgb_probability"] == 0.8
    assert sum(c for _, c in high.contributions) == pytest.approx(2.6)
    assert [c for _, c in high.contributions] == sorted((c for _, c in high.contributions), reverse=True)
    calm = combine(DetectorScore(0.2, {CPU: 0.2}), 1.0, 2.5)
    assert not calm.is_anomaly  # a confident XGBoost cannot alarm on a calm stream
    assert combine(s, 0.0, 2.5).score == pytest.approx(1.0)


def test_to_unit_interval_monotone_and_bounded() -> None:
    xs = [-1.0, 0.0, 0.1, 1.0, 2.5, 10.0, 1e6]
    ys = [to_unit_interval(x, 2.5) for x in xs]
    assert all(0.0 <= y < 1.0 for y in ys)
    assert ys[1:] == sorted(ys[1:]) and len(set(ys[1:])) == len(ys) - 1
    assert to_unit_interval(2.5, 2.5) == 0.5


def test_per_sample_cost_is_small() -> None:
    det = StreamingDetector(features=(CPU,))
    xs = [{CPU: v[CPU]} for v in _stream(3000)]
    t = time.perf_counter()
    for x in xs:
        det.score_one(x)
        det.learn_one(x)
    per = (time.perf_counter() - t) / len(xs)
    assert per < 200e-6  # generous bound for a shared CI core; typical is ~10 us


def _daily(day: int, i: int, rng: random.Random, odd: bool = False) -> float:
    # a square daily cycle of 96 points: busy from point 24 to 71, quiet otherwise
    busy = 24 <= i < 72
    shape = (0.0 if odd else 1.0) if busy else -1.0
    return 0.5 + 0.3 * shape + rng.gauss(0, 0.01)


def _run_days(det: StreamingDetector, days: int, odd_day: int | None) -> list[list[float]]:
    # on `odd_day` the busy phase only reaches the daily mean: a change of shape inside the usual range
    rng = random.Random(7)
    out = []
    for day in range(days):
        sig = []
        for i in range(96):
            x = {CPU: _daily(day, i, rng, odd=day == odd_day)}
            sig.append(det.score_detail(x).sigma)
            det.learn_one(x)
        out.append(sig)
    return out


def test_daily_profile_sees_a_change_of_shape_inside_the_range() -> None:
    seasonal = _run_days(StreamingDetector(features=(CPU,), season_length=96), 10, odd_day=8)
    plain = _run_days(StreamingDetector(features=(CPU,), season_length=0), 10, odd_day=8)
    t = 2.5
    assert max(seasonal[8]) >= t  # the day without its peak is flagged by the daily profile
    assert max(plain[8]) < t  # ... and only by it: its values stay inside the envelopes
    # normal days after the profile is learned stay quiet, the day after the odd one included
    assert max(max(d) for d in seasonal[3:8]) < t
    assert max(seasonal[9]) < CRITICAL_FACTOR * t


def test_daily_profile_state_is_bounded_and_round_trips() -> None:
    det = StreamingDetector(season_length=96)
    rng = random.Random(1)
    for day in range(4):
        for i in range(96):
            x = {f: _daily(day, i, rng) for f in FEATURES}
            det.score_one(x)
            det.learn_one(x)
    d = det.to_dict()
    # only the primary features carry a profile
    assert len(d["state"][CPU]) == len(d["state"][MEMORY]) == len(d["state"][FEATURES[2]]) + det.season_bins
    text = json.dumps(d, separators=(",", ":"), allow_nan=False)
    assert len(text.encode()) <= 4096
    clone = StreamingDetector.from_dict(json.loads(text))
    for i in range(200):
        x = {f: _daily(5, i, rng) for f in FEATURES}
        assert clone.score_detail(x).sigma == pytest.approx(det.score_detail(x).sigma, rel=1e-8, abs=1e-9)
        det.learn_one(x)
        clone.learn_one(x)


def test_format_1_state_is_upgraded() -> None:
    det = _trained(300)
    d = det.to_dict()
    old = copy.deepcopy(d)
    old["format"] = 1
    # a format-1 state had 19 numbers per feature and no seasonal parameters
    old["state"] = {f: s[:19] for f, s in d["state"].items()}
    for k in [k for k in old["params"] if k.startswith("season_") or k == "maturity"]:
        del old["params"][k]
    up = StreamingDetector.from_dict(old)
    x = _stream(301)[-1]
    # the running statistics survive: a normal point is normal, a spike is still a spike
    assert up.score_detail(x).sigma < up.threshold
    assert up.score_detail({CPU: 0.95}).sigma > up.threshold
    up.learn_one(x)
    assert StreamingDetector.from_dict(up.to_dict()).to_dict() == up.to_dict()


@pytest.mark.parametrize("seed", range(5))
def test_synthetic_workload_calm_is_quiet_and_incident_is_caught(seed: int) -> None:
    # The Saleor-like trace at 60 s: a daily and weekly cycle, flash-sale bursts, and an incident at
    # step 2600 (CPU and DB connections spike, memory climbs, replicas do not move).
    df = synthetic_trace(3000, 60, seed=seed, incident_at=2600)
    det = StreamingDetector(features=FEATURES)
    sigmas = []
    for row in df[list(FEATURES)].itertuples(index=False):
        x = dict(zip(FEATURES, (float(v) for v in row), strict=True))
        sigmas.append(det.score_detail(x).sigma)
        det.learn_one(x)
    incident = df["incident"].to_numpy()
    start = int(incident.argmax())
    calm = [s for i, s in enumerate(sigmas) if i >= 300 and not incident[i]]
    assert sum(s >= det.threshold for s in calm) / len(calm) < 0.01
    assert max(sigmas[start : start + 3]) >= det.threshold


def test_score_with_features_is_score_detail_and_xgb_features_in_one_pass() -> None:
    det = StreamingDetector()
    for i, x in enumerate(_stream(300, seed=9)):
        if i % 7 == 0:
            x = {f: v for f, v in x.items() if f != MEMORY}  # a feature missing now and then
        if i % 50 == 49:
            x = {**x, CPU: 0.95}  # and an outlier
        if i == 10:
            x = {CPU: float("nan")}
        score, row = det.score_with_features(x)
        expected_row = det.xgb_features(x)
        assert score == det.score_detail(x)
        assert [v if v == v else "nan" for v in row] == [v if v == v else "nan" for v in expected_row]
        det.learn_one(x)
