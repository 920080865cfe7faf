"""``/detect`` on the first day: priors for unknown and young deployments (pipeline.serving.detect)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from models.anomaly import CRITICAL_FACTOR, StreamingDetector, xgb_feature_names
from models.artifacts import load_latest
from models.features import FEATURES
from models.priors import Prior, points
from models.xgb import XGBAnomalyModel
from pipeline import serving
from pipeline.api import DetectRequest, DetectResponse, MetricsIn
from pipeline.openapi import openapi_spec
from pipeline.settings import load_settings
from pipeline.stages import DeploymentPipeline, PipelineConfig
from tests.helpers import DESIGN_ANOMALOUS, DESIGN_NORMAL

SETTINGS = load_settings({})
CONFIG = PipelineConfig.from_settings(SETTINGS)
THRESHOLD = CONFIG.anomaly_threshold
DAY = 86400 // CONFIG.step_seconds
KEY = "saleor/saleor-api"

NORMAL = DESIGN_NORMAL
ANOMALOUS = DESIGN_ANOMALOUS


@pytest.fixture(scope="module")
def xgb() -> XGBAnomalyModel:
    """The shipped model, as a fresh worker loads it."""
    shipped = Path(__file__).resolve().parents[2] / "models" / "artifacts"
    return load_latest(shipped, expected_features=xgb_feature_names(FEATURES)).model


def detect(
    metrics: dict[str, float],
    xgb: XGBAnomalyModel | None,
    live: DeploymentPipeline | None = None,
    fleet: tuple[StreamingDetector, ...] = (),
) -> DetectResponse:
    req = DetectRequest(metrics=MetricsIn(**metrics))
    return serving.detect(req, live, CONFIG, xgb, KEY, fleet)


def _history(seed: int, n: int, centre: dict[str, float], noise: float = 0.05) -> StreamingDetector:
    """A detector that has learned ``n`` points around ``centre`` (each feature +- ``noise`` of it)."""
    rng = random.Random(seed)
    det = CONFIG.new_detector()
    for _ in range(n):
        det.learn_one({f: v * (1.0 + rng.uniform(-noise, noise)) for f, v in centre.items()})
    return det


def test_a_fresh_worker_calls_the_designs_normal_example_normal(xgb: XGBAnomalyModel) -> None:
    got = detect(NORMAL, xgb)
    assert not got.is_anomaly and got.severity == "normal"
    assert got.warming_up and got.prior_weight == 1.0
    assert "built-in prior" in (got.model_used or "")
    assert sum(c.contribution for c in got.contributing_features) == pytest.approx(got.anomaly_score)


def test_a_fresh_worker_calls_the_designs_anomalous_example_critical(xgb: XGBAnomalyModel) -> None:
    got = detect(ANOMALOUS, xgb)
    assert got.is_anomaly and got.severity == "critical"
    assert got.anomaly_score >= CRITICAL_FACTOR * THRESHOLD
    assert got.contributing_features[0].feature == "cpu_utilization"  # the least headroom


@pytest.mark.parametrize(
    ("metrics", "severity"),
    [
        ({"cpu_utilization": 0.05, "memory_utilization": 0.1, "db_cpu": 0.02}, "normal"),  # idle
        ({"cpu_utilization": 0.5, "memory_utilization": 0.5, "db_memory": 0.5}, "normal"),  # half
        ({"cpu_utilization": 0.7, "db_cpu": 0.7}, "normal"),
        ({"memory_utilization": 0.85}, "warning"),  # under a sixth of the limit left
        ({"cpu_utilization": 0.3, "db_cpu": 0.99}, "critical"),  # the database saturated alone
        ({"db_memory": 1.0}, "critical"),
        ({"db_connections": 10_000, "memory_bytes": 8e9}, "normal"),  # no fleet: nothing says what is normal
    ],
)
def test_the_built_in_prior_judges_utilisations_by_their_headroom(
    metrics: dict[str, float], severity: str
) -> None:
    got = detect(metrics, None)
    assert got.severity == severity, got
    assert got.warming_up


def test_counts_and_sizes_are_judged_against_the_fleet_this_worker_watches(xgb: XGBAnomalyModel) -> None:
    fleet = tuple(
        _history(k, DAY + 10, {**NORMAL, "db_connections": c, "memory_bytes": b})
        for k, (c, b) in enumerate([(12, 4.0e8), (15, 5.4e8), (20, 6.0e8), (18, 5.0e8)])
    )
    young = _history(99, DAY // 2, NORMAL)  # half a day: not part of the fleet prior
    prior = Prior.from_fleet((*fleet, young), DAY)
    assert prior.fleet["db_connections"].size == 4
    for metrics, severity in [
        (NORMAL, "normal"),
        (ANOMALOUS, "critical"),
        ({"db_connections": 22}, "normal"),  # within the fleet's spread of levels
        ({"db_connections": 30}, "normal"),  # twice the fleet's level: one sigma
        ({"db_connections": 150}, "warning"),  # ten times: 3.2 doublings
        ({"db_connections": 400}, "critical"),  # over sixteen times
        ({"memory_bytes": 1.6e10}, "critical"),  # sixteen times the fleet's level
        ({"cpu_utilization": 0.6}, "normal"),  # hotter than its siblings, not near its limit
        ({"memory_bytes": 3.0e8, "db_connections": 2}, "normal"),  # low is not saturation
    ]:
        got = detect(metrics, xgb, fleet=fleet)
        assert got.severity == severity, (metrics, got)
        assert "fleet of 4 deployments" in (got.model_used or "")


def test_a_young_live_deployment_is_blended_toward_the_prior(xgb: XGBAnomalyModel) -> None:
    # Two hours of a steady workload at 60 s: the live detector alone has seen too little to know
    # that memory at 0.62 (instead of 0.5) is ordinary.
    pipe = DeploymentPipeline("saleor", "saleor-api", CONFIG)
    pipe.detector = _history(1, 120, {**NORMAL, "memory_utilization": 0.5, "db_memory": 0.45}, noise=0.02)
    alone = pipe.detector.score_detail(NORMAL).sigma
    got = detect(NORMAL, xgb, live=pipe)
    assert got.severity != "critical" and not got.is_anomaly, (alone, got)
    assert got.warming_up and got.prior_weight == pytest.approx(1 - 120 / DAY)
    assert "warming up" in (got.model_used or "")
    assert detect(ANOMALOUS, xgb, live=pipe).severity == "critical"


def test_a_mature_live_deployment_is_answered_by_its_own_state(xgb: XGBAnomalyModel) -> None:
    pipe = DeploymentPipeline("saleor", "saleor-api", CONFIG)
    pipe.detector = _history(2, DAY, NORMAL)
    assert min(points(pipe.detector, f) for f in NORMAL) == DAY
    got = detect(NORMAL, xgb, live=pipe)
    assert not got.warming_up and got.prior_weight == 0.0
    assert got.model_used == f"streaming+xgboost (live state of {KEY})"
    stream = pipe.detector.score_detail(NORMAL)
    assert got.anomaly_score <= stream.sigma * 1.5 + 1e-12  # sigma * (0.5 + p), p <= 1


def test_the_new_fields_are_documented_in_the_openapi_contract() -> None:
    spec = openapi_spec(SETTINGS)
    props = spec["components"]["schemas"]["DetectResponse"]["properties"]
    assert "prior" in props["warming_up"]["description"]
    assert props["prior_weight"]["maximum"] == 1.0
