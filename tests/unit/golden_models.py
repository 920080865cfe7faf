"""A seeded run of the detector and the forecaster, reduced to digests of every output bit.

``test_golden_models.py`` compares a fresh run with ``golden_models.json``, which was written by the
models as they stood before their parameters were declared once (commit b961780): a refactoring of
how the models are built, cloned or saved must not change one bit of what they compute or save.
Regenerate only for an intended change of outputs::

    .venv/bin/python -m tests.unit.golden_models --write
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

from models.anomaly import StreamingDetector
from models.features import CPU, FEATURES, MEMORY
from models.forecast import OnlineForecaster

GOLDEN = Path(__file__).with_name("golden_models.json")
T0 = 1_700_000_000.0


class _Digest:
    """sha256 over the exact bits of floats (``float.hex``) and the JSON of saved states."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.count = 0

    def add(self, value: Any) -> None:
        self._h.update(json.dumps(_exact(value), sort_keys=False).encode())
        self.count += 1

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _exact(value: Any) -> Any:
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {name: _exact(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


def _sample(rng: random.Random, i: int, step: int) -> dict[str, float]:
    t = T0 + i * step
    day = math.sin(2 * math.pi * t / 86400)
    x = {f: 0.3 + 0.05 * j + 0.1 * day + 0.02 * rng.gauss(0, 1) for j, f in enumerate(FEATURES)}
    if i % 97 == 50:
        x[CPU] += 0.6  # a spike
    if 400 <= i < 460:
        x[MEMORY] += 0.25  # a level shift
    if i % 53 == 7:
        x[FEATURES[-1]] = math.nan  # a missing value
    return x


def _saved(state: dict[str, Any], saved: _Digest) -> dict[str, Any]:
    """``state`` after a trip through JSON, its digest added to ``saved``."""
    saved.add(state)
    loaded: dict[str, Any] = json.loads(json.dumps(state))
    return loaded


def _result(outputs: _Digest, saved: _Digest, clone_state: dict[str, Any]) -> dict[str, Any]:
    saved.add(clone_state)
    return {"outputs": outputs.hexdigest(), "saved": saved.hexdigest(), "steps": outputs.count}


def _detector_run(det: StreamingDetector, n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    scores, saved = _Digest(), _Digest()
    for i in range(n):
        x = _sample(rng, i, 300)
        score, row = det.score_with_features(x)
        scores.add([score, row, det.score_one(x), det.explain_one(x)])
        det.learn_one(x)
        if i % 250 == 249:
            det = StreamingDetector.from_dict(_saved(det.to_dict(), saved))
    return _result(scores, saved, det.clone().to_dict())


def _forecaster_run(f: OnlineForecaster, n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    step = f.params.step_seconds
    outputs, saved = _Digest(), _Digest()
    t = T0
    for i in range(n):
        t += step * (3 if i % 211 == 100 else 1)  # a gap now and then
        y = _sample(rng, i, step)[CPU]
        f.learn_at(t, y)
        outputs.add(
            [
                f.forecast_at([1, 5, 15, 60]),
                f.forecast_seconds([step * 0.5, step * 2.5, step * 7]),
                f.forecast_at([2, 6], current=(t + step, y * 1.01)),
                f.accuracy(),
            ]
        )
        if i % 300 == 299:
            f = OnlineForecaster.from_dict(_saved(f.to_dict(), saved))
    return _result(outputs, saved, f.clone().to_dict())


def run() -> dict[str, Any]:
    """Digests of the seeded runs (a few seconds)."""
    return {
        "detector_default": _detector_run(StreamingDetector(season_length=288, warmup=20), 1200, 1),
        "detector_tuned": _detector_run(
            StreamingDetector(
                features=list(FEATURES[:3]), threshold=3, season_length=0, maturity=0.0, envelope_decay=0.0
            ),
            600,
            2,
        ),
        "forecaster_default": _forecaster_run(OnlineForecaster(step_seconds=300), 1200, 3),
        "forecaster_tuned": _forecaster_run(
            OnlineForecaster(
                step_seconds=60,
                season_seconds=3600,
                calibrated_steps=[1, 3, 30],
                smoothers=[[120.0, True, 2.0], (400.0, False, 0.0)],
                symmetric=False,
                max_pending=5,
                max_season_bins=20,
            ),
            900,
            4,
        ),
    }


if __name__ == "__main__":
    result = run()
    if sys.argv[1:] == ["--write"]:
        GOLDEN.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
