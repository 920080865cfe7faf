"""``/detect`` on a fresh worker, through the real web view of a real ``helios worker`` process."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.anomaly import CRITICAL_FACTOR
from pipeline.api import DetectResponse
from tests.conftest import free_port
from tests.helpers import DESIGN_ANOMALOUS, DESIGN_NORMAL, Worker, topic_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

NORMAL = DESIGN_NORMAL
ANOMALOUS = DESIGN_ANOMALOUS


def test_a_fresh_worker_judges_the_designs_examples_on_priors(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    env = {
        **topic_env(unique),
        "HELIOS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HELIOS_DATA_DIR": str(tmp_path / "data"),
        "HELIOS_TOPIC_PARTITIONS": "2",
    }
    worker = Worker(env, free_port(), tmp_path / "worker.log").start()
    try:
        status, data = worker.post("/detect", {"metrics": NORMAL})
        assert status == 200, data
        normal = DetectResponse.model_validate(data)
        assert not normal.is_anomaly and normal.severity == "normal", normal
        assert normal.warming_up and normal.prior_weight == 1.0
        assert "prior" in (normal.model_used or "")
        status, data = worker.post("/detect", {"metrics": ANOMALOUS, "deployment": "never-seen"})
        assert status == 200, data
        anomalous = DetectResponse.model_validate(data)
        assert anomalous.severity == "critical" and anomalous.warming_up, anomalous
        assert anomalous.anomaly_score >= CRITICAL_FACTOR * anomalous.threshold
    finally:
        worker.terminate()
