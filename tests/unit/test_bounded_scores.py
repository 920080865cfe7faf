"""No score is ever non-finite or above MAX_SIGMA (models.anomaly.bounded, _score_from, combine)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from models.anomaly import MAX_SIGMA, DetectorScore, StreamingDetector, combine
from models.features import FEATURES
from pipeline.records import Metrics, MetricSample
from pipeline.settings import load_settings
from pipeline.stages import DeploymentPipeline, PipelineConfig
from tests.helpers import DESIGN_NORMAL

CONFIG = PipelineConfig.from_settings(load_settings({}))
STEP = CONFIG.step_seconds
NORMAL = DESIGN_NORMAL


def _daily(i: int) -> dict[str, float]:
    day = math.sin(2 * math.pi * i * STEP / 86400)
    return {
        "cpu_utilization": 0.4 + 0.15 * day,
        "memory_utilization": 0.6 + 0.05 * day,
        "memory_bytes": 5.0e8,  # constant for three days
        "db_cpu": 0.3 + 0.1 * day,
        "db_memory": 0.55,
        "db_connections": 15 + round(5 * day),
    }


def _sample(i: int, metrics: dict[str, float]) -> MetricSample:
    return MetricSample(
        namespace="saleor",
        deployment="saleor-api",
        timestamp=datetime.fromtimestamp(1_700_000_000 + i * STEP, tz=UTC),
        metrics=Metrics(**metrics),
        replicas=3,
    )


@pytest.mark.slow
def test_a_constant_memory_bytes_stream_then_the_normal_example_scores_finite_and_bounded() -> None:
    pipe = DeploymentPipeline("saleor", "saleor-api", CONFIG)
    n = 3 * 86400 // STEP
    for i in range(n):
        pipe.finish(pipe.prepare(_sample(i, _daily(i))), 0.5)
    out = pipe.finish(pipe.prepare(_sample(n + 1, NORMAL)), 0.9)
    score = out.anomaly.anomaly_score
    assert math.isfinite(score) and 0.0 <= score <= MAX_SIGMA
    contributions = [c.contribution for c in out.anomaly.contributing_features]
    assert all(math.isfinite(c) and 0.0 <= c <= MAX_SIGMA for c in contributions)
    assert sum(contributions) == pytest.approx(score)
    assert all(math.isfinite(v) and abs(v) <= MAX_SIGMA for v in out.anomaly.detector.values())


def _adversarial(rng: random.Random, n: int) -> list[float]:
    """One of: constants, huge or tiny magnitudes, steps, spikes, with NaN and inf sprinkled in."""
    kind = rng.choice(["constant", "huge", "tiny", "step", "spikes", "alternating"])
    scale = 10.0 ** rng.uniform(-300, 300)
    if kind == "constant":
        xs = [rng.choice([0.0, 1.0, -1.0, 5.0e8, scale])] * n
    elif kind == "huge":
        xs = [rng.uniform(-1, 1) * 1e300 for _ in range(n)]
    elif kind == "tiny":
        xs = [rng.gauss(0.0, 1e-300) for _ in range(n)]
    elif kind == "step":
        at = rng.randrange(n)
        xs = [scale if i < at else scale * 10.0 ** rng.uniform(-20, 20) for i in range(n)]
    elif kind == "spikes":
        xs = [scale * (1e15 if rng.random() < 0.01 else 1.0) for _ in range(n)]
    else:
        xs = [scale * (i % 2) for i in range(n)]
    for _ in range(rng.randrange(5)):
        xs[rng.randrange(n)] = rng.choice([math.nan, math.inf, -math.inf])
    return xs


@pytest.mark.parametrize("seed", range(40))
def test_every_score_is_finite_and_bounded_on_adversarial_streams(seed: int) -> None:
    rng = random.Random(seed)
    det = StreamingDetector(features=FEATURES[:2], season_length=rng.choice([0, 24, 288]), warmup=10)
    streams = [_adversarial(rng, 400) for _ in det.features]
    probe = [0.0, 1.0, -1e300, 1e300, 1e-300, 5.0e8]
    for i in range(400):
        x = {f: s[i] for f, s in zip(det.features, streams, strict=True)}
        for point in (x, {f: rng.choice(probe) for f in det.features}):
            score, _row = det.score_with_features(point)
            for s in (score, det.score_detail(point)):
                assert math.isfinite(s.sigma) and 0.0 <= s.sigma <= MAX_SIGMA, (seed, i, point, s)
                assert all(math.isfinite(c) and 0.0 <= c <= MAX_SIGMA for c in s.contributions.values())
            combined = combine(score, rng.choice([None, 0.0, 0.5, 1.0, math.nan]), det.threshold)
            assert math.isfinite(combined.score) and 0.0 <= combined.score <= MAX_SIGMA
            assert all(math.isfinite(c) for _, c in combined.contributions)
        det.learn_one(x)


def test_combine_bounds_what_it_is_given() -> None:
    huge = DetectorScore(4.3e18, {"memory_bytes": 4.3e18, "cpu_utilization": 1.0})
    got = combine(huge, 1.0, 2.5)
    assert got.score == MAX_SIGMA and got.severity == "critical"
    assert got.contributions[0][0] == "memory_bytes"
    assert sum(c for _, c in got.contributions) == pytest.approx(MAX_SIGMA)
    nan = combine(DetectorScore(math.nan, {"cpu_utilization": math.nan}), 0.5, 2.5)
    assert nan.score == 0.0 and not nan.is_anomaly
