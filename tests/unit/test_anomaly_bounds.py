"""A near-zero spread must not divide a deviation into an astronomical score (the property test over
adversarial streams is in test_bounded_scores.py)."""

from __future__ import annotations

import math

from models.anomaly import StreamingDetector
from models.features import FEATURES
from tests.helpers import DESIGN_NORMAL

BOUND = 1e6

NORMAL = DESIGN_NORMAL


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
