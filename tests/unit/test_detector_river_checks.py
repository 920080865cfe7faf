"""River's own estimator checks on the streaming detector.

``river.checks.yield_checks`` builds its anomaly-detection datasets from a download (CreditCard) and
scikit-learn, neither of which this project has, so the parameter checks come from it as they are and
the dataset checks are River's same functions run on a stream of Helios' own features.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from river import checks
from river.checks import common

from models.anomaly import StreamingDetector
from models.features import DB_CONNECTIONS, FEATURES

#: River's dataset checks (``river.checks.yield_checks`` lists these for every estimator).
DATASET_CHECKS = [
    common.check_learn_one,
    common.check_pickling,
    common.check_shuffle_features_no_impact,
    common.check_emerging_features,
    common.check_disappearing_features,
    common.check_radically_disappearing_features,
    common.check_predict_one_pure,
    common.check_predict_one_before_any_learn,
    common.check_no_state_aliasing_with_input,
    common.check_clone_is_independent,
]


def _model() -> StreamingDetector:
    return StreamingDetector(season_length=48, warmup=5)


def _parameter_checks() -> Iterator[Callable[..., Any]]:
    """The checks River yields before it needs a dataset (building one imports scikit-learn)."""
    gen = checks.yield_checks(_model())
    while True:
        try:
            check = next(gen)
        except (StopIteration, ModuleNotFoundError):
            return
        if "dataset" in inspect.signature(check).parameters:
            return
        yield check


def _stream(n: int = 400) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        x = {f: rng.uniform(0.2, 0.6) for f in FEATURES}
        x[DB_CONNECTIONS] = 10.0 + 5.0 * rng.random()
        rows.append((x, i % 97 == 0))
    return rows


@pytest.mark.parametrize("check", list(_parameter_checks()), ids=lambda c: c.__name__)
def test_river_parameter_check(check: Callable[..., Any]) -> None:
    check(_model())


def test_river_yields_parameter_checks() -> None:
    names = {c.__name__ for c in _parameter_checks()}
    assert {"check_clone_is_idempotent", "check_get_params_matches_signature", "check_repr"} <= names


@pytest.mark.parametrize("check", DATASET_CHECKS, ids=lambda c: c.__name__)
def test_river_dataset_check(check: Callable[..., Any]) -> None:
    check(_model(), _stream())


def test_river_anomaly_check_scores_anomalies_above_normal_points() -> None:
    """River's ``check_roc_auc`` (which needs scikit-learn), as a rank statistic over the same protocol:
    each point is scored before it is learned, and injected spikes outrank the calm points. Repeats of
    a spike of the same size are by design no longer new (one alarm per kind of event), so the bar is
    River's own (AUC >= 0.5), with the first spike above every calm point."""
    rng = random.Random(1)
    det = _model()
    scored: list[tuple[float, bool]] = []
    for i in range(1500):
        spike = i > 300 and i % 150 == 0
        x = {f: rng.gauss(0.4, 0.02) + (0.5 if spike else 0.0) for f in FEATURES if f != DB_CONNECTIONS}
        scored.append((det.score_one(x), spike))
        det.learn_one(x)
    anomalies = [s for s, y in scored if y]
    normal = [s for s, y in scored if not y]
    wins = sum((a > b) + 0.5 * (a == b) for a in anomalies for b in normal)
    assert wins / (len(anomalies) * len(normal)) >= 0.5
    assert anomalies[0] > max(normal)
