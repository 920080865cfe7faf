"""The per-deployment stages: score before learn, held anomalies, state round trip."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from models.anomaly import CombinedScore
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
