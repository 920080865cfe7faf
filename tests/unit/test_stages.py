"""The per-deployment stages: score before learn, held anomalies, state round trip."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from models.anomaly import CombinedScore
from pipeline.errors import ConfigError
from pipeline.records import Metrics, MetricSample
from pipeline.settings import load_settings
from pipeline.stages import DeploymentPipeline, PipelineConfig

CONFIG = PipelineConfig.from_settings(load_settings({"HELIOS_ANOMALY_HOLD": "180"}))
STEP = CONFIG.step_seconds


def sample(i: int, cpu: float) -> MetricSample:
    return MetricSample(
        namespace="saleor",
        deployment="saleor-api",
        timestamp=datetime.fromtimestamp(1_700_000_000 + i * STEP, tz=UTC),
        metrics=Metrics(cpu_utilization=cpu, memory_utilization=0.5),
        replicas=3,
    )


def run(pipe: DeploymentPipeline, i: int, cpu: float) -> tuple[float, bool]:
    out = pipe.finish(pipe.prepare(sample(i, cpu)), None)
    return out.anomaly.anomaly_score, out.anomaly.is_anomaly


def test_a_window_is_learned_only_after_it_was_scored() -> None:
    pipe = DeploymentPipeline("saleor", "saleor-api", CONFIG)
    for i in range(50):
        run(pipe, i, 0.4 + 0.01 * math.sin(i))
    assert pipe.forecasters["cpu_utilization"].n_seen == 49  # windows 0..48 closed; 49 still open
    pipe.prepare(sample(50, 0.41))
    assert pipe.forecasters["cpu_utilization"].n_seen == 50  # 49 learned on close; 50 scored, not learned
    pipe.prepare(sample(51, 0.41))
    assert pipe.forecasters["cpu_utilization"].n_seen == 51


def test_a_detection_is_held_for_the_hold_period_of_event_time() -> None:
    pipe = DeploymentPipeline("saleor", "saleor-api", CONFIG)
    base = CombinedScore(0.1, False, "normal", [], {})
    hit = CombinedScore(9.0, True, "critical", [], {})
    t0 = 1_700_000_000.0
    assert pipe._held(t0, hit).is_anomaly
    held = pipe._held(t0 + 120, base)
    assert held.is_anomaly and held.severity == "critical" and held.score == 0.1
    assert not pipe._held(t0 + 181, base).is_anomaly


def test_state_round_trip_gives_identical_outputs() -> None:
    pipe = DeploymentPipeline("saleor", "saleor-api", CONFIG)
    for i in range(120):
        run(pipe, i, 0.4 + 0.1 * math.sin(i / 10))
    copy = DeploymentPipeline.from_dict(pipe.to_dict(), CONFIG)
    a = pipe.finish(pipe.prepare(sample(120, 0.5)), None)
    b = copy.finish(copy.prepare(sample(120, 0.5)), None)
    assert a.recommendation.recommended_replicas == b.recommendation.recommended_replicas
    for ha, hb in zip(a.forecast.horizons, b.forecast.horizons, strict=True):
        assert ha.cpu_utilization is not None and hb.cpu_utilization is not None
        assert math.isclose(ha.cpu_utilization.upper, hb.cpu_utilization.upper, rel_tol=1e-4, abs_tol=1e-6)
    assert math.isclose(a.anomaly.anomaly_score, b.anomaly.anomaly_score, rel_tol=1e-4, abs_tol=1e-6)


def test_the_pipeline_learns_recurring_load_from_closed_windows_and_keeps_it() -> None:
    pipe = DeploymentPipeline("saleor", "saleor-api", CONFIG)
    per_hour = 3600 // STEP
    spike = per_hour - 1  # the last step of every hour: 3 replicas at 95 % is 2.85 pods' worth
    first = 1_700_000_000 // STEP
    offset = -first % per_hour  # start on the hour, so ``i % per_hour`` is the phase
    outs = []
    for i in range(offset, offset + 4 * per_hour + 1):  # one more step closes the fourth hour's spike
        out = pipe.finish(pipe.prepare(sample(i, 0.95 if (i - offset) % per_hour == spike else 0.2)), None)
        outs.append(out.recommendation)
    # Before the fourth hour's spike, the three before it are recalled: 2.85 / 0.8 -> 4 replicas, asked
    # for two steps ahead (at a 60 s step a pod asked for at the step before would be ready too late).
    assert CONFIG.lookahead_steps == 2
    early, before = outs[3 * per_hour + spike - 2], outs[3 * per_hour + spike - 1]
    assert early.evidence["rule"] == "recurring_peak" and early.recommended_replicas == 4
    assert outs[3 * per_hour + spike - 3].recommended_replicas == 1  # 3 pods at 20 % need 1
    assert before.recommended_replicas == 4 and before.evidence["needs"]["recurring"] == 4
    # Not in the first hours, when nothing had recurred yet.
    assert all(r.evidence["needs"]["recurring"] == 0 for r in outs[: 2 * per_hour])
    copy = DeploymentPipeline.from_dict(pipe.to_dict(), CONFIG)
    t = STEP * (first + offset + 4 * per_hour + spike - 1)  # as the fifth hour's spike comes up
    assert copy.recurrence.forecast(t, 1) == pipe.recurrence.forecast(t, 1) == pytest.approx(2.85, rel=1e-6)
    legacy = {k: v for k, v in pipe.to_dict().items() if k != "recur"}  # saved before the model existed
    assert DeploymentPipeline.from_dict(legacy, CONFIG).recurrence.forecast(t, 1) is None


RIVER_HW = "river.time_series.HoltWinters(alpha=0.3, beta=0.01, gamma=0.1, seasonality=6)"
RIVER_CONFIG = PipelineConfig.from_settings(
    load_settings(
        {
            "HELIOS_FORECASTER": RIVER_HW,
            "HELIOS_DETECTOR": "river.anomaly.GaussianScorer()",
        }
    )
)


def test_river_models_named_in_the_settings_run_the_stages() -> None:
    from models.river_adapters import RiverDetector, RiverForecaster

    pipe = DeploymentPipeline("saleor", "saleor-api", RIVER_CONFIG)
    assert isinstance(pipe.detector, RiverDetector)
    assert all(isinstance(f, RiverForecaster) for f in pipe.forecasters.values())
    for i in range(400):
        out = pipe.finish(pipe.prepare(sample(i, 0.4 + 0.05 * math.sin(i / 9))), None)
    band = out.forecast.horizons[0].cpu_utilization
    assert band is not None and band.lower < band.point < band.upper
    assert out.anomaly.anomaly_score < 2.5
    spike = pipe.finish(pipe.prepare(sample(400, 0.95)), None)
    assert spike.anomaly.is_anomaly and spike.anomaly.anomaly_score >= 2.5


def test_a_river_detector_gets_no_xgboost_probability() -> None:
    from pathlib import Path

    from models.anomaly import xgb_feature_names
    from models.artifacts import load_latest
    from models.features import FEATURES
    from pipeline.stages import score_batch

    xgb = load_latest(
        Path(__file__).resolve().parents[2] / "models" / "artifacts",
        expected_features=xgb_feature_names(FEATURES),
    )
    helios = DeploymentPipeline("saleor", "a", CONFIG)
    river = DeploymentPipeline("saleor", "b", RIVER_CONFIG)
    for i in range(30):
        batch = [helios.prepare(sample(i, 0.4)), river.prepare(sample(i, 0.4))]
        helios_p, river_p = score_batch(xgb.model, batch)
        helios.finish(batch[0], helios_p)
        river.finish(batch[1], river_p)
    assert isinstance(helios_p, float) and river_p is None


def test_state_saved_under_another_model_name_starts_afresh() -> None:
    from models.river_adapters import RiverForecaster

    helios = DeploymentPipeline("saleor", "saleor-api", CONFIG)
    for i in range(30):
        run(helios, i, 0.4)
    moved = DeploymentPipeline.from_dict(helios.to_dict(), RIVER_CONFIG)
    assert isinstance(moved.forecasters["cpu_utilization"], RiverForecaster)
    assert moved.forecasters["cpu_utilization"].n_seen == 0
    back = DeploymentPipeline.from_dict(helios.to_dict(), CONFIG)
    assert back.forecasters["cpu_utilization"].n_seen == 29
    river = DeploymentPipeline("saleor", "saleor-api", RIVER_CONFIG)
    again = DeploymentPipeline.from_dict(river.to_dict(), RIVER_CONFIG)
    assert again.detector.to_dict() == river.detector.to_dict()


def test_horizons_between_steps_are_interpolated_and_labelled_with_their_own_time() -> None:
    from models.forecast import Interval, interpolate_interval

    config = PipelineConfig.from_settings(load_settings({"HELIOS_SCORING_INTERVAL": "1800"}))
    pipe = DeploymentPipeline("saleor", "saleor-api", config)
    t0 = 1_700_000_000 // 1800 * 1800
    for i in range(100):
        s = MetricSample(
            namespace="saleor",
            deployment="saleor-api",
            timestamp=datetime.fromtimestamp(t0 + 1800 * i, tz=UTC),
            metrics=Metrics(cpu_utilization=0.4 + 0.1 * math.sin(i / 4), memory_utilization=0.5),
            replicas=3,
        )
        prepared = pipe.prepare(s)
    out = pipe.finish(prepared, None)
    by_label = {h.horizon: h for h in out.forecast.horizons}
    start = prepared.window.start
    assert [by_label[k].timestamp.timestamp() - start for k in ("5m", "15m", "30m", "60m")] == [
        300,
        900,
        1800,
        3600,
    ]
    cpu = prepared.window.values["cpu_utilization"]
    one, two = pipe.forecasters["cpu_utilization"].forecast_at([1, 2], current=(start, cpu))
    now = Interval(cpu, cpu, cpu)
    five = by_label["5m"].cpu_utilization
    assert five is not None
    want = interpolate_interval(now, one, 300 / 1800)
    assert (five.point, five.lower, five.upper) == pytest.approx((want.point, want.lower, want.upper))
    sixty = by_label["60m"].cpu_utilization
    assert sixty is not None and (sixty.point, sixty.lower, sixty.upper) == pytest.approx(
        (two.point, two.lower, two.upper)
    )


def test_the_risk_level_sets_the_band_level_and_the_sizing_quantile_together() -> None:
    configs = {
        r: PipelineConfig.from_settings(load_settings({"HELIOS_RISK_LEVEL": r})) for r in ("0.9", "0.95")
    }
    for r, config in configs.items():
        assert config.new_forecaster().level == float(r)
        assert config.recommender.band_level == float(r)
    assert configs["0.9"].recommender.quantile == pytest.approx(0.8)
    assert configs["0.95"].recommender.quantile == pytest.approx(0.9)
    # The same stream sized at the higher risk level asks for at least as many replicas, and its
    # evidence names the quantile it sized on.
    decisions = {}
    for r, config in configs.items():
        pipe = DeploymentPipeline("saleor", "saleor-api", config)
        for i in range(200):
            out = pipe.finish(pipe.prepare(sample(i, 0.55 + 0.15 * math.sin(i / 3))), None)
        decisions[r] = out.decision
    assert decisions["0.9"].evidence["sizing_quantile"] == pytest.approx(0.8)
    assert decisions["0.95"].evidence["sizing_quantile"] == pytest.approx(0.9)
    assert decisions["0.95"].evidence["band_level"] == 0.95


def test_a_risk_level_the_sizing_quantile_cannot_follow_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="HELIOS_RISK_LEVEL"):
        load_settings({"HELIOS_RISK_LEVEL": "0.7"})
