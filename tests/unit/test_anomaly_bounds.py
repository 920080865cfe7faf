"""The detector's scores are finite and bounded whatever the stream: constants, steps, huge and tiny
magnitudes. A near-zero spread must not divide a deviation into an astronomical score."""

from __future__ import annotations

import math
import random

import pytest

from models.anomaly import StreamingDetector
from models.features import FEATURES

BOUND = 1e6

NORMAL = {
    "cpu_utilization": 0.45,
    "memory_utilization": 0.62,
    "memory_bytes": 536870912.0,
    "db_cpu": 0.30,
    "db_memory": 0.55,
    "db_connections": 15.0,
}


def test_a_feature_constant_for_three_days_scores_its_first_change_finitely() -> None:
    det = StreamingDetector(features=FEATURES)
    calm = dict(NORMAL, memory_bytes=5.0e8)
    for _ in range(3 * 1440):
        det.learn_one(calm)
    score = det.score_detail(NORMAL)
    sigma = score.sigma
    assert math.isfinite(sigma)
    assert sigma <= BOUND
    # still an unmistakable change: the only feature that moved carries the whole score
    assert sigma > det.threshold
    assert max(score.contributions, key=score.contributions.__getitem__) == "memory_bytes"


def _stream(rng: random.Random, n: int) -> list[float]:
    kind = rng.choice(["constant", "step", "huge", "tiny", "spiky", "zero-then-burst"])
    scale = 10.0 ** rng.uniform(-12, 12)
    if kind == "constant":
        return [scale] * n
    if kind == "step":
        return [scale if i < n // 2 else scale * rng.uniform(0.0, 1e6) for i in range(n)]
    if kind == "huge":
        return [rng.choice([1.0, -1.0]) * 10.0 ** rng.uniform(100, 149) for _ in range(n)]
    if kind == "tiny":
        return [rng.uniform(-1, 1) * 1e-300 for _ in range(n)]
    if kind == "spiky":
        return [scale * (1e9 if rng.random() < 0.01 else 1.0) for _ in range(n)]
    return [0.0 if i < n - 5 else 10.0 ** rng.uniform(0, 149) for i in range(n)]


@pytest.mark.parametrize("seed", range(40))
def test_every_score_is_finite_and_bounded_on_adversarial_streams(seed: int) -> None:
    rng = random.Random(seed)
    det = StreamingDetector(features=("x",), season_length=48, warmup=5)
    values = _stream(rng, 300)
    values += [math.nan, math.inf, -math.inf, 1e308, -1e308]  # treated as missing
    for v in values:
        x = {"x": v}
        sigma = det.score_detail(x).sigma
        assert math.isfinite(sigma), (seed, v)
        assert 0.0 <= sigma <= BOUND, (seed, v, sigma)
        det.learn_one(x)
