"""With two workers, /predict, /detect and the status page for a deployment the other worker owns are answered
by the owner."""

from __future__ import annotations

import json
import math
import random
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.helpers import Worker, consume, metric_value, produce, run, topic_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DEPLOYMENTS = [f"app-{i}" for i in range(8)]


def samples(n: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(5)
    step = 60
    start = math.floor(time.time() / step) * step - (n + 2) * step
    out = []
    for i in range(n):
        for dep in DEPLOYMENTS:
            body = {
                "namespace": "shop",
                "deployment": dep,
                "timestamp": start + i * step,
                "replicas": 2,
                "metrics": {"cpu_utilization": 0.4 + rng.gauss(0, 0.02), "memory_utilization": 0.5},
            }
            out.append((f"shop/{dep}".encode(), json.dumps(body).encode()))
    return out


def exported(worker: Worker) -> set[str]:
    text = worker.metrics()
    return {
        d for d in DEPLOYMENTS if metric_value(text, "helios_recommended_replicas", deployment=d) is not None
    }


def test_requests_for_another_workers_deployment_are_answered_by_the_owner(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    env = {
        **topic_env(unique),
        "HELIOS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HELIOS_TOPIC_PARTITIONS": "4",
        "HELIOS_BROKER_SESSION_TIMEOUT": "6",
    }
    a = Worker({**env, "HELIOS_DATA_DIR": str(tmp_path / "a")}, free_port(), tmp_path / "a.log").start()
    b = Worker({**env, "HELIOS_DATA_DIR": str(tmp_path / "b")}, free_port(), tmp_path / "b.log")
    try:
        b.start()
        records = samples(30)
        run(produce(kafka_bootstrap, env["HELIOS_TOPIC_METRICS"], records))
        run(consume(kafka_bootstrap, env["HELIOS_TOPIC_RECOMMENDATIONS"], lambda o: len(o) >= len(records)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(exported(a) | exported(b)) < len(DEPLOYMENTS):
            time.sleep(1)
        on_a, on_b = exported(a), exported(b)
        assert on_a and on_b, (on_a, on_b)  # the partitions are shared
        assert not on_a & on_b  # and no deployment is exported twice
        for dep in DEPLOYMENTS:
            for body in (
                {"metrics": {"cpu_utilization": 0.45}, "periods": 3, "namespace": "shop", "deployment": dep},
            ):
                status, data = a.post("/predict", body)
                assert status == 200, data
                assert f"live state of shop/{dep}" in data["model_used"], (dep, data["model_used"])
            status, data = a.post(
                "/detect", {"metrics": {"cpu_utilization": 0.45}, "namespace": "shop", "deployment": dep}
            )
            assert status == 200, data
            assert f"live state of shop/{dep}" in data["model_used"]
            # The status page's history and page too: from the owner, whichever worker is asked.
            status, body = a.get(f"/deployments/shop/{dep}/history?window=1h")
            assert status == 200, body[:200]
            history = json.loads(body)
            assert history["deployment"] == dep and any(
                c is not None for c in history["series"]["cpu_utilization"]
            )
            status, body = a.get(f"/deployments/shop/{dep}")
            assert status == 200 and b"data-history=" in body, body[:200]
        status, _ = a.get("/deployments/shop/no-such-app/history")
        assert status == 404
    finally:
        a.kill(signal.SIGTERM)
        b.kill(signal.SIGTERM)
