"""``/detect`` on a fresh worker, through the real web view of a real ``helios worker`` process."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.anomaly import CRITICAL_FACTOR
from pipeline.api import DetectResponse
from tests.conftest import free_port
from tests.helpers import Worker, topic_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

NORMAL = {
    "cpu_utilization": 0.45,
    "memory_utilization": 0.62,
    "memory_bytes": 536870912,
    "db_cpu": 0.30,
    "db_memory": 0.55,
    "db_connections": 15,
}
ANOMALOUS = {
    "cpu_utilization": 0.95,
    "memory_utilization": 0.88,
    "memory_bytes": 1073741824,
    "db_cpu": 0.85,
    "db_memory": 0.75,
    "db_connections": 150,
}


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
