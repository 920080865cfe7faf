"""The worker's services as real mode services: their loops, what they update, how they stop."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agents.services import BrokerProbe, ModelReloader, Periodic, reachable
from pipeline.app import create_app
from pipeline.metrics import HeliosMetrics
from pipeline.model_store import ModelStore
from pipeline.readiness import Readiness
from pipeline.settings import load_settings

ARTIFACTS = Path(__file__).resolve().parents[2] / "models" / "artifacts"


class Counting(Periodic):
    def __init__(self, interval: float, fail_first: bool = False) -> None:
        super().__init__(interval)
        self.ticks = 0
        self.fail_first = fail_first

    async def tick(self) -> None:
        self.ticks += 1
        if self.fail_first and self.ticks == 1:
            raise RuntimeError("first tick fails")


async def test_a_failing_tick_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    service = Counting(0.05, fail_first=True)
    await service.start()
    try:
        await asyncio.sleep(0.4)
    finally:
        await service.stop()
    assert service.ticks >= 3
    assert "Counting failed; trying again in 0 s" in caplog.text


async def test_a_stop_wakes_a_long_sleep_at_once() -> None:
    service = Counting(3600.0)
    await service.start()
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await service.stop()
    assert time.monotonic() - started < 1.0
    assert service.ticks == 0  # like a Faust timer: the first tick is one interval away


async def test_the_model_reloader_loads_at_start_and_reports_readiness(tmp_path: Path) -> None:
    metrics = HeliosMetrics.create(CollectorRegistry())
    loaded = Readiness(model_path=str(ARTIFACTS), broker="b")
    missing = Readiness(model_path=str(tmp_path), broker="b")
    services = [
        ModelReloader(ModelStore(ARTIFACTS, metrics), loaded, interval=3600.0),
        ModelReloader(ModelStore(tmp_path, HeliosMetrics.create(CollectorRegistry())), missing, 3600.0),
    ]
    for s in services:
        await s.start()
    try:
        for _ in range(100):
            if loaded.models_loaded and missing.model_error:
                break
            await asyncio.sleep(0.05)
    finally:
        for s in services:
            await s.stop()
    assert loaded.models_loaded and loaded.model_error is None
    assert not missing.models_loaded and missing.model_error


async def test_reachable_means_a_bootstrap_broker_accepts_a_connection() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert await reachable(f"127.0.0.1:1,127.0.0.1:{port}")
    assert not await reachable(f"127.0.0.1:{port}")
    assert not await reachable("no-port-here")


async def test_the_broker_probe_tick_updates_readiness_and_the_ready_gauge(tmp_path: Path) -> None:
    settings = load_settings({"HELIOS_DATA_DIR": str(tmp_path), "HELIOS_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry)
    helios = app.helios  # type: ignore[attr-defined]
    helios.metrics.ready.set(1)
    helios.readiness.broker_up = True
    await BrokerProbe(app, settings.kafka_bootstrap, helios.readiness, helios.metrics.ready).tick()
    assert helios.readiness.broker_up is False
    assert registry.get_sample_value("helios_ready") == 0.0
