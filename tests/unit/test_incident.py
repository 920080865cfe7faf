"""A detection stays on while the measured state stays outside its normal band (models.incident, stages)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.anomaly import xgb_feature_names
from models.artifacts import load_latest
from models.features import FEATURES
from models.incident import IncidentTracker
from models.xgb import XGBAnomalyModel
from pipeline.errors import ConfigError
from pipeline.records import Metrics, MetricSample
from pipeline.settings import load_settings
from pipeline.stages import DeploymentPipeline, PipelineConfig, score_batch

CONFIG = PipelineConfig.from_settings(load_settings({}))
STEP = CONFIG.step_seconds
DAYS3 = 3 * 86400 // STEP
T0 = 1_700_000_000
HOLD_STEPS = math.ceil(CONFIG.anomaly_hold / STEP)


def cycle(i: int) -> dict[str, float]:
    """A daily cycle with a little deterministic jitter."""
    day = math.sin(2 * math.pi * i * STEP / 86400)
    jitter = 0.01 * math.sin(i * 1.7)
    return {
        "cpu_utilization": 0.40 + 0.15 * day + jitter,
        "memory_utilization": 0.60 + 0.05 * day + jitter / 2,
        "memory_bytes": 5.2e8 + 2.0e7 * day,
        "db_cpu": 0.30 + 0.10 * day + jitter,
        "db_memory": 0.55 + 0.02 * day,
        "db_connections": round(15 + 5 * day + 2 * math.sin(i * 0.9)),
    }


@pytest.fixture(scope="module")
def xgb() -> XGBAnomalyModel:
    shipped = Path(__file__).resolve().parents[2] / "models" / "artifacts"
    return load_latest(shipped, expected_features=xgb_feature_names(FEATURES)).model


@pytest.fixture(scope="module")
def warm(xgb: XGBAnomalyModel) -> dict:
    """A deployment's state after three days of the daily cycle at 60 s (saved, so each test restores it)."""
    pipe = DeploymentPipeline("saleor", "saleor-api", CONFIG)
    for i in range(DAYS3):
        step(pipe, xgb, i, cycle(i))
    return pipe.to_dict()


def step(pipe: DeploymentPipeline, xgb: XGBAnomalyModel, i: int, metrics: dict[str, float]) -> bool:
    sample = MetricSample(
        namespace="saleor",
        deployment="saleor-api",
        timestamp=datetime.fromtimestamp(T0 + i * STEP, tz=UTC),
        metrics=Metrics(**metrics),
        replicas=3,
    )
    prepared = pipe.prepare(sample)
    (p,) = score_batch(xgb, [prepared])
    return pipe.finish(prepared, p).anomaly.is_anomaly


def _restore(state: dict) -> DeploymentPipeline:
    return DeploymentPipeline.from_dict(state, CONFIG)


@pytest.mark.slow
def test_a_continuing_incident_stays_declared_and_clears_when_it_ends(
    warm: dict, xgb: XGBAnomalyModel
) -> None:
    pipe = _restore(warm)
    flags = []
    for k in range(30):  # 30 minutes: CPU pinned, ten times the usual connections
        i = DAYS3 + k
        normal = cycle(i)
        flags.append(step(pipe, xgb, i, {**normal, "cpu_utilization": 0.97, "db_connections": 10 * 15}))
        if k == 15:  # a restart in the middle of the incident keeps it
            pipe = _restore(pipe.to_dict())
            assert pipe.incident.active
    assert all(flags), flags
    assert set(pipe.incident.bands) >= {"cpu_utilization"}
    after = [step(pipe, xgb, DAYS3 + 30 + k, cycle(DAYS3 + 30 + k)) for k in range(60)]
    cleared = after.index(False)
    assert cleared <= HOLD_STEPS + 1, after
    assert not any(after[cleared:]), after
    assert not pipe.incident.active


@pytest.mark.slow
def test_a_permanent_level_shift_becomes_normal_after_the_adapt_period(
    warm: dict, xgb: XGBAnomalyModel
) -> None:
    pipe = _restore(warm)
    flags = []
    for k in range(3 * 3600 // STEP):
        i = DAYS3 + k
        flags.append(step(pipe, xgb, i, {**cycle(i), "cpu_utilization": cycle(i)["cpu_utilization"] + 0.35}))
    adapt_steps = int(CONFIG.anomaly_adapt // STEP)
    assert all(flags[:adapt_steps]), flags.index(False)
    # the new normal: off from the adapt period on (give the short hold its few steps)
    assert not any(flags[adapt_steps + HOLD_STEPS + 1 :]), [k for k, f in enumerate(flags) if f][-5:]


def test_the_tracker_ignores_features_inside_their_band_and_missing_values() -> None:
    tracker = IncidentTracker(adapt_seconds=600, width=2.5)
    normals = {"cpu_utilization": (0.4, 0.05), "db_cpu": (0.3, 0.05)}
    # a detection whose features are inside their bands (a change of pattern) opens no incident
    assert not tracker.detected(0.0, {"cpu_utilization": 0.45, "db_cpu": 0.3}, list(normals), normals)
    assert tracker.detected(60.0, {"cpu_utilization": 0.45, "db_cpu": 0.9}, list(normals), normals)
    assert set(tracker.bands) == {"db_cpu"}
    assert tracker.holds(120.0, {"cpu_utilization": 0.9, "db_cpu": 0.95})
    assert tracker.holds(180.0, {"cpu_utilization": 0.45})  # db_cpu missing: says nothing
    assert not tracker.holds(240.0, {"db_cpu": 0.31})
    # a constant series has no spread: the band is at least 1 % of its level either side
    tracker.detected(300.0, {"memory_bytes": 5.1e8}, ["memory_bytes"], {"memory_bytes": (5.0e8, 0.0)})
    assert tracker.bands["memory_bytes"] == (4.95e8, 5.05e8)
    assert tracker.holds(360.0, {"memory_bytes": 5.1e8}) and not tracker.holds(
        420.0, {"memory_bytes": 5.04e8}
    )
    with pytest.raises(ValueError, match="adapt_seconds"):
        IncidentTracker(adapt_seconds=-1)


def test_old_state_without_an_incident_still_loads(warm: dict) -> None:
    old = {k: v for k, v in warm.items() if k != "incident"}
    pipe = DeploymentPipeline.from_dict(old, CONFIG)
    assert not pipe.incident.active
    assert pipe.detector.to_dict() == DeploymentPipeline.from_dict(warm, CONFIG).detector.to_dict()


def test_helios_anomaly_adapt_is_validated_by_name() -> None:
    assert load_settings({}).anomaly_adapt == 3600.0
    assert load_settings({"HELIOS_ANOMALY_ADAPT": "0"}).anomaly_adapt == 0.0
    for bad in ("-1", "1e9", "soon"):
        with pytest.raises(ConfigError, match="HELIOS_ANOMALY_ADAPT"):
            load_settings({"HELIOS_ANOMALY_ADAPT": bad})
