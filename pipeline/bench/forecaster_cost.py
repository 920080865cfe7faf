"""Per-call cost of the default forecaster: learning one sample, and the stage's forecast call.

Step 60 s (production's), the published horizons, 5,000 samples of warm-up, best of 5 runs. Run it on
two checkouts back to back to compare (the numbers in benchmarks/river.md were taken that way).

Usage: .venv/bin/python -m pipeline.bench.forecaster_cost
"""

from __future__ import annotations

import math
import timeit
from typing import Any

from models.forecast import OnlineForecaster


def main() -> int:
    f = OnlineForecaster(step_seconds=60, level=0.9, calibrated_steps=(1, 5, 15, 30, 60))
    # Before the River verbs, learn_one(t, y) was what learn_at(t, y) is now.
    learn: Any = getattr(f, "learn_at", None) or f.learn_one
    ys = [
        0.5 + 0.2 * math.sin(2 * math.pi * i / 1440) + 0.03 * ((i * 7919) % 13 - 6) / 6 for i in range(20000)
    ]
    for i in range(5000):
        learn(i * 60.0, ys[i])
    state = f.to_dict()

    def run_learn() -> None:
        g = OnlineForecaster.from_dict(state)
        g_learn: Any = getattr(g, "learn_at", None) or g.learn_one
        for i in range(5000, 15000):
            g_learn(i * 60.0, ys[i])

    best_learn = min(timeit.repeat(run_learn, number=1, repeat=5)) / 10000
    cur = (15000 * 60.0, 0.55)
    best_at = (
        min(timeit.repeat(lambda: f.forecast_at([5, 15, 30, 60], current=cur), number=2000, repeat=5)) / 2000
    )
    print(f"learn {best_learn * 1e6:.2f} us/sample (from_dict amortised over 10,000)")
    print(f"forecast_at([5, 15, 30, 60], current) {best_at * 1e6:.2f} us/call")
    if hasattr(f, "forecast_seconds"):
        seconds = [300, 900, 1800, 3600]
        best_s = (
            min(timeit.repeat(lambda: f.forecast_seconds(seconds, current=cur), number=2000, repeat=5)) / 2000
        )
        print(f"forecast_seconds([300, 900, 1800, 3600], current) {best_s * 1e6:.2f} us/call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
