"""Readiness: the state the agents update and /ready reads, checked against a real (unstarted) Faust app."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from pipeline.app import create_app
from pipeline.readiness import Readiness
from pipeline.settings import load_settings


def test_a_fresh_worker_is_not_ready_and_says_why(tmp_path: Path) -> None:
    settings = load_settings({"HELIOS_DATA_DIR": str(tmp_path), "HELIOS_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    app = create_app(settings, registry=CollectorRegistry())
    readiness: Readiness = app.helios.readiness  # type: ignore[attr-defined]
    ready, reasons = readiness.check(app)
    assert not ready
    assert reasons[:3] == [
        f"model artifact not loaded from {settings.model_path}: None",
        "Kafka broker 127.0.0.1:1 unreachable",
        "no partitions assigned yet",
    ]
    readiness.models_loaded = readiness.broker_up = True
    assert "Kafka broker 127.0.0.1:1 unreachable" not in readiness.check(app)[1]


def test_stalled_partitions_are_named_with_the_stall_time() -> None:
    readiness = Readiness(model_path="m", broker="b", models_loaded=True, broker_up=True)
    readiness.stalled, readiness.stall_after = ["t[0]", "t[3]"], 15.0
    assert readiness.reasons(assigned=True, recovering=False) == [
        "partitions with lag not being consumed for 15 s: t[0], t[3]"
    ]
    assert readiness.reasons(assigned=False, recovering=True)[:2] == [
        "no partitions assigned yet",
        "rebalancing or recovering tables",
    ]
