"""The 90% band covers about 90% on synthetic series that played no part in choosing the settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.forecast import OnlineForecaster

STEP = 300
DAY = 86400


def _synthetic(seed: int, days: int = 10) -> list[tuple[float, float]]:
    """Two daily harmonics, a weekly drift, AR(1) noise with heteroscedastic bursts and rare spikes."""
    rng = np.random.default_rng(seed)
    n = days * DAY // STEP
    t0 = 1_650_000_000.0
    out, ar = [], 0.0
    for i in range(n):
        t = t0 + i * STEP
        phase = 2 * math.pi * t / DAY
        base = 0.35 + 0.12 * math.sin(phase) + 0.05 * math.cos(2 * phase) + 0.03 * math.sin(phase / 7)
        vol = 0.015 if (i // 500) % 3 else 0.04  # calm and busy stretches
        ar = 0.7 * ar + vol * rng.standard_t(5)
        spike = 0.3 * rng.random() if rng.random() < 0.005 else 0.0
        out.append((t, base + ar + spike))
    return out


@pytest.mark.parametrize("seed", [11, 12])
@pytest.mark.parametrize("horizon", [1, 6])
def test_ninety_percent_band_covers_85_to_95_percent(seed: int, horizon: int) -> None:
    data = _synthetic(seed)
    f = OnlineForecaster(step_seconds=STEP, level=0.9, calibrated_steps=(1, 3, 6, 12))
    made: dict[int, tuple[float, float]] = {}
    hits = []
    for i, (t, y) in enumerate(data):
        band = made.pop(i, None)
        if band is not None:
            hits.append(band[0] <= y <= band[1])
        f.learn_at(t, y)
        b = f.intervals(horizon)[-1]
        made[i + horizon] = (b.lower, b.upper)
    coverage = float(np.mean(hits))
    assert 0.85 <= coverage <= 0.95, coverage
    # The band is informative, not a wall: narrower than the series' own 5-95% range.
    ys = np.array([y for _, y in data])
    last = f.intervals(horizon)[-1]
    assert last.upper - last.lower < np.quantile(ys, 0.95) - np.quantile(ys, 0.05)
    # The forecaster's own rolling coverage agrees.
    assert 0.8 <= f.accuracy()[horizon][1] <= 1.0
