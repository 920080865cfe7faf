"""The streaming core against a real Kafka broker and a real `helios worker` process."""

from __future__ import annotations

import json
import math
import random
import signal
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.api import (
    DetectResponse,
    HealthResponse,
    ModelsResponse,
    PredictResponse,
    ReadyResponse,
    RecommendResponse,
)
from pipeline.metrics import HeliosMetrics
from pipeline.model_store import ModelStore
from pipeline.records import AnomalyRecord, DeadLetter, ForecastRecord, RecommendationRecord
from pipeline.runtime import RawRecord, Runtime
from pipeline.settings import load_settings
from tests.conftest import free_port
from tests.helpers import Worker, consume, metric_value, produce, run, topic_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KEY = b"saleor/saleor-api"


def sample(t: float, i: int, rng: random.Random) -> bytes:
    cpu = 0.45 + 0.15 * math.sin(2 * math.pi * i / 240) + rng.gauss(0, 0.02)
    return json.dumps(
        {
            "namespace": "saleor",
            "deployment": "saleor-api",
            "timestamp": t,
            "replicas": 3,
            "metrics": {
                "cpu_utilization": min(1.0, max(0.0, cpu)),
                "memory_utilization": 0.55 + rng.gauss(0, 0.01),
                "memory_bytes": 6e8,
                "db_cpu": 0.3,
                "db_memory": 0.5,
                "db_connections": 20 + rng.randint(-2, 2),
            },
        }
    ).encode()


def trace(n: int, seed: int = 1, step: int = 60) -> list[bytes]:
    rng = random.Random(seed)
    start = math.floor(time.time() / step) * step - (n + 5) * step
    return [sample(start + i * step, i, rng) for i in range(n)]


@pytest.fixture
def worker_env(kafka_bootstrap: str, unique: str, tmp_path: Path) -> dict[str, str]:
    return {
        **topic_env(unique),
        "HELIOS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HELIOS_DATA_DIR": str(tmp_path / "data"),
        "HELIOS_BROKER_SESSION_TIMEOUT": "6",
        "HELIOS_TOPIC_PARTITIONS": "4",
        "HELIOS_LOG_LEVEL": "INFO",
    }


def test_samples_flow_to_all_outputs_gauges_and_dlq(
    worker_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = worker_env
    worker = Worker(env, free_port(), tmp_path / "worker.log").start()
    try:
        good = trace(40)
        bad = [
            (KEY, b"\x00\xffnot json"),
            (KEY, json.dumps({"namespace": "saleor", "deployment": "saleor-api"}).encode()),
            (KEY, sample(time.time(), 0, random.Random(0)).replace(b'"replicas": 3', b'"replicas": "three"')),
            (
                KEY,
                json.dumps(
                    {
                        "namespace": "saleor",
                        "deployment": "saleor-api",
                        "timestamp": time.time(),
                        "metrics": {"cpu_utilization": 1.7},
                    }
                ).encode(),
            ),
            (
                KEY,
                json.dumps(
                    {
                        "namespace": "saleor",
                        "deployment": "saleor-api",
                        "timestamp": time.time() + 86400,
                        "metrics": {"cpu_utilization": 0.5},
                    }
                ).encode(),
            ),
            (b"other/key", good[0]),
        ]
        records = [(KEY, v) for v in good[:20]] + bad + [(KEY, v) for v in good[20:]]
        run(produce(kafka_bootstrap, env["HELIOS_TOPIC_METRICS"], records))

        recs = run(consume(kafka_bootstrap, env["HELIOS_TOPIC_RECOMMENDATIONS"], lambda o: len(o) >= 40))
        fcs = run(consume(kafka_bootstrap, env["HELIOS_TOPIC_FORECASTS"], lambda o: len(o) >= 40))
        ans = run(consume(kafka_bootstrap, env["HELIOS_TOPIC_ANOMALIES"], lambda o: len(o) >= 40))
        dlq = run(consume(kafka_bootstrap, env["HELIOS_TOPIC_DLQ"], lambda o: len(o) >= len(bad)))
        assert len(recs) == len(fcs) == len(ans) == 40
        last = RecommendationRecord.model_validate_json(recs[-1].value)
        assert (last.namespace, last.deployment) == ("saleor", "saleor-api")
        assert 1 <= last.recommended_replicas <= 10
        forecast = ForecastRecord.model_validate_json(fcs[-1].value)
        assert [h.horizon for h in forecast.horizons] == ["5m", "15m", "30m", "60m"]
        for h in forecast.horizons:
            assert h.cpu_utilization is not None
            assert h.cpu_utilization.lower <= h.cpu_utilization.point <= h.cpu_utilization.upper
        AnomalyRecord.model_validate_json(ans[-1].value)
        assert all(m.key == KEY for m in recs)

        dead = [DeadLetter.model_validate_json(m.value) for m in dlq]
        assert sorted(d.reason for d in dead) == sorted(
            ["not_json", "schema", "schema", "schema", "future", "key_mismatch"]
        )
        first = next(d for d in dead if d.reason == "not_json")
        import base64

        assert base64.b64decode(first.value_b64) == b"\x00\xffnot json"
        assert first.topic == env["HELIOS_TOPIC_METRICS"] and first.offset >= 0
        too_high = next(d for d in dead if "cpu_utilization" in d.detail)
        assert "less than or equal to 1" in too_high.detail

        text = worker.metrics()
        labels = {"namespace": "saleor", "deployment": "saleor-api"}
        for horizon in ("5m", "15m", "30m", "60m"):
            assert metric_value(text, "helios_predicted_cpu", horizon=horizon, **labels) is not None
            assert metric_value(text, "helios_predicted_memory", horizon=horizon, **labels) is not None
        assert metric_value(text, "helios_anomaly_score", **labels) is not None
        assert metric_value(text, "helios_anomaly_detected", **labels) in (0.0, 1.0)
        assert metric_value(text, "helios_recommended_replicas", **labels) == last.recommended_replicas
        assert metric_value(text, "helios_observed_cpu", **labels) is not None
        assert metric_value(text, "helios_prediction_age_seconds", **labels) < 60
        assert metric_value(text, "helios_dead_letters_total", reason="schema") == 3
        assert 'helios_inference_duration_seconds_bucket{endpoint="stream"' in text

        # The design's testing plan, against the running worker.
        status, body = worker.get("/health")
        assert status == 200 and HealthResponse.model_validate_json(body).status == "healthy"
        status, body = worker.get("/ready")
        assert status == 200 and ReadyResponse.model_validate_json(body).ready
        status, body = worker.get("/models")
        assert {m.name for m in ModelsResponse.model_validate_json(body).models} >= {"baseline", "xgboost"}
        status, data = worker.post("/predict", {"metrics": {"cpu_utilization": 0.5}, "periods": 6})
        assert status == 200, data
        pred = PredictResponse.model_validate(data)
        assert len(pred.predictions) == 6 and "live state of saleor/saleor-api" in pred.model_used
        status, data = worker.post("/detect", {"metrics": {"cpu_utilization": 0.95}})
        assert status == 200, data
        assert DetectResponse.model_validate(data).threshold == 2.5
        status, data = worker.post(
            "/recommend",
            {
                "namespace": "saleor",
                "deployment": "saleor-api",
                "current_replicas": 2,
                "current_metrics": {"cpu_utilization": 0.75, "memory_utilization": 0.6},
                "predicted_metrics": {"cpu_utilization": 0.85, "memory_utilization": 0.65},
                "anomaly_score": 1.2,
            },
        )
        assert status == 200, data
        assert RecommendResponse.model_validate(data).recommendations
        status, data = worker.post("/predict", {"metrics": {"cpu_utilization": 0.5}, "periods": 0})
        assert status == 422 and data["details"][0]["field"] == "periods"
        assert worker.request("POST", "/predict", raw=b"{nope")[0] == 400
        assert worker.get("/no-such-route")[0] == 404
    finally:
        worker.kill(signal.SIGTERM)


def reference_records(env: dict[str, str], values: list[bytes]) -> list[RecommendationRecord]:
    """The same input through the same code in-process, never interrupted."""
    settings = load_settings(env)
    metrics = HeliosMetrics.create(CollectorRegistry())
    store = ModelStore(settings.model_path, metrics)
    assert store.reload()
    runtime = Runtime(settings, metrics, store)
    out = []
    for i, v in enumerate(values):
        result = runtime.process([RawRecord(KEY, v, "t", 0, i)], lambda k: None)
        out += [o.recommendation for o in result.outputs]
    return out


def test_sigkill_mid_stream_recovers_tables_and_loses_nothing(
    worker_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = worker_env
    values = trace(150, seed=3)
    port = free_port()
    worker = Worker(env, port, tmp_path / "worker.log").start()
    run(produce(kafka_bootstrap, env["HELIOS_TOPIC_METRICS"], [(KEY, v) for v in values[:100]]))
    run(consume(kafka_bootstrap, env["HELIOS_TOPIC_RECOMMENDATIONS"], lambda o: len(o) >= 100))
    worker.kill(signal.SIGKILL)

    restarted = Worker(env, port, tmp_path / "worker2.log").start()
    try:
        run(produce(kafka_bootstrap, env["HELIOS_TOPIC_METRICS"], [(KEY, v) for v in values[100:]]))
        recs = run(
            consume(
                kafka_bootstrap,
                env["HELIOS_TOPIC_RECOMMENDATIONS"],
                # Replayed samples (those after the last state write) are recommended again: count windows.
                lambda o: (
                    len({RecommendationRecord.model_validate_json(m.value).timestamp for m in o}) >= 150
                ),
                timeout=90,
            )
        )
        got = [RecommendationRecord.model_validate_json(m.value) for m in recs]
        # Nothing lost: every sample's window has a recommendation (replays may repeat some).
        expected = reference_records(env, values)
        missing = [i for i, ref in enumerate(expected) if ref.timestamp not in {r.timestamp for r in got}]
        assert len({r.timestamp for r in got}) == 150, f"no recommendation for samples {missing}"
        last_by_ts = {r.timestamp: r for r in got}
        for ref in expected[100:]:
            live = last_by_ts[ref.timestamp]
            assert live.recommended_replicas == ref.recommended_replicas
            live_band = live.evidence["forecast"]
            ref_band = ref.evidence["forecast"]
            assert live_band.keys() == ref_band.keys()
            for h in ref_band:
                assert live_band[h]["upper"] == pytest.approx(ref_band[h]["upper"], rel=1e-3, abs=1e-4)
        text = restarted.metrics()
        assert (
            metric_value(text, "helios_recommended_replicas", namespace="saleor", deployment="saleor-api")
            == expected[-1].recommended_replicas
        )
    finally:
        restarted.kill(signal.SIGTERM)
