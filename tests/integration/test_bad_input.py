"""Bad input on the metrics topic against a real broker and a real `helios worker`.

Each bad record either lands on the DLQ with its reason and its original bytes, or is handled by
the documented rule (``pipeline/align.py``: late samples within the grace are merged into the open
window); the worker never crashes and keeps producing recommendations for the good samples that
follow. State is bounded: an unknown-deployment flood beyond ``HELIOS_MAX_DEPLOYMENTS`` is
dead-lettered as ``deployment_cap``. (The idle TTL is >= 60 s; its rule is unit-tested on
``Runtime`` with an injected clock in ``tests/unit/test_runtime_rules.py``.)
"""

from __future__ import annotations

import base64
import json
import math
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.records import DeadLetter, RecommendationRecord
from tests.conftest import free_port
from tests.helpers import Worker, consume, metric_value, produce, run, topic_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(240)]

KEY = b"saleor/saleor-api"
STEP = 60
CAP = 20


def body(t: Any, namespace: str = "saleor", deployment: str = "saleor-api", **metrics: Any) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "deployment": deployment,
        "timestamp": t,
        "replicas": 3,
        "metrics": metrics or {"cpu_utilization": 0.5, "memory_utilization": 0.5, "db_connections": 20},
    }


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def good_trace(n: int, start: float, seed: int = 5) -> list[bytes]:
    rng = random.Random(seed)
    return [
        enc(
            body(
                start + i * STEP + 1,
                cpu_utilization=min(1.0, max(0.0, 0.5 + 0.2 * math.sin(i / 9) + rng.gauss(0, 0.02))),
                memory_utilization=0.55,
                db_connections=20,
            )
        )
        for i in range(n)
    ]


@pytest.fixture
def worker_env(kafka_bootstrap: str, unique: str, tmp_path: Path) -> dict[str, str]:
    return {
        **topic_env(unique),
        "HELIOS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HELIOS_DATA_DIR": str(tmp_path / "data"),
        "HELIOS_BROKER_SESSION_TIMEOUT": "6",
        "HELIOS_TOPIC_PARTITIONS": "4",
        "HELIOS_MAX_DEPLOYMENTS": str(CAP),
        "HELIOS_SCORING_INTERVAL": str(STEP),
        "HELIOS_LOG_LEVEL": "INFO",
    }


def test_bad_records_are_dead_lettered_or_merged_and_the_worker_keeps_going(
    worker_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = worker_env
    now = float(int(time.time()))
    n = 40
    start = math.floor(now / STEP) * STEP - (n + 10) * STEP
    good = good_trace(n, start)
    t_last1 = start + 19 * STEP + 1  # event time of good[19], the open window after part one

    # (key, value, expected reason or None when the documented rule merges it)
    bad: list[tuple[bytes | None, bytes | None, str | None]] = [
        (KEY, b"\x00\xff\xfe not json at all", "not_json"),
        (KEY, b"", "empty"),
        (KEY, enc(body(now))[:-7], "not_json"),  # truncated
        (KEY, enc(body(now)).replace(b"0.5,", b"NaN,", 1), "not_json"),  # the bare NaN some producers emit
        (KEY, enc(body(now)).replace(b"0.5,", b"Infinity,", 1), "not_json"),
        (KEY, enc(body(now)).replace(b"0.5,", b"1e400,", 1), "not_json"),  # overflows a double
        (KEY, b"[1, 2, 3]", "schema"),
        (KEY, enc(body(now, cpu_utilization="high")), "schema"),  # wrong type
        (KEY, enc({**body(now), "replicas": "three"}), "schema"),  # wrong type
        (KEY, enc({k: v for k, v in body(now).items() if k != "timestamp"}), "schema"),  # missing field
        (KEY, enc({k: v for k, v in body(now).items() if k != "metrics"}), "schema"),  # missing field
        (KEY, enc(body(now, cpu_utilization=-0.2)), "schema"),  # negative utilisation
        (KEY, enc(body(now, cpu_utilization=1.7)), "schema"),  # utilisation > 1
        (KEY, enc(body(now, memory_bytes=1e21)), "schema"),  # absurd byte count
        (KEY, enc(body(now, db_connections=1e12)), "schema"),
        (KEY, enc(body(now, cpu_utilization=1e300)), "schema"),  # huge but finite
        (KEY, enc({**body(now), "metrics": {}}), "no_metrics"),
        (KEY, enc(body(now + 30 * 86400)), "future"),  # far future
        (KEY, enc(body("9999-12-31T23:59:59Z")), "future"),
        (KEY, enc(body(now - 90 * 86400)), "too_old"),  # very old
        (KEY, enc(body(0)), "too_old"),
        (b"saleor/other-api", good[0], "key_mismatch"),  # key does not match namespace/deployment
        (None, good[0], "key_mismatch"),
        (KEY, good[19], "duplicate"),  # exact duplicate of the last good sample
        # Out of order: 30 s before the open window (grace = one interval): merged.
        (
            KEY,
            enc(body(t_last1 - 1 - 30, cpu_utilization=0.9, memory_utilization=0.55, db_connections=20)),
            None,
        ),
        # 3 intervals before the open window: too late.
        (KEY, enc(body(t_last1 - 1 - 3 * STEP, cpu_utilization=0.9)), "too_late"),
    ]

    worker = Worker(env, free_port(), tmp_path / "worker.log").start()
    try:
        metrics_topic = env["HELIOS_TOPIC_METRICS"]
        run(produce(kafka_bootstrap, metrics_topic, [(KEY, v) for v in good[:20]]))
        # The tracked deployment holds its slot before the flood arrives on other partitions.
        run(consume(kafka_bootstrap, env["HELIOS_TOPIC_RECOMMENDATIONS"], lambda o: len(o) >= 20))

        run(produce(kafka_bootstrap, metrics_topic, [(k, v) for k, v, _ in bad]))
        flood = [(f"flood/dep-{i}".encode(), enc(body(now - 10, "flood", f"dep-{i}"))) for i in range(30)]
        run(produce(kafka_bootstrap, metrics_topic, flood))
        run(produce(kafka_bootstrap, metrics_topic, [(KEY, v) for v in good[20:]]))

        expected_reasons = Counter(r for _, _, r in bad if r is not None)
        accepted_flood = CAP - 1
        expected_reasons["deployment_cap"] += len(flood) - accepted_flood
        n_dead = sum(expected_reasons.values())
        dlq = run(consume(kafka_bootstrap, env["HELIOS_TOPIC_DLQ"], lambda o: len(o) >= n_dead, timeout=90))
        # Every good sample, the merged late one and the admitted flood deployments each get a recommendation.
        n_recs = n + 1 + accepted_flood
        recs = run(
            consume(
                kafka_bootstrap, env["HELIOS_TOPIC_RECOMMENDATIONS"], lambda o: len(o) >= n_recs, timeout=90
            )
        )

        dead = [DeadLetter.model_validate_json(m.value) for m in dlq]
        assert Counter(d.reason for d in dead) == expected_reasons, [(d.reason, d.detail) for d in dead]
        # The original bytes travel with each dead letter.
        sent = Counter(v or b"" for _, v, r in bad if r is not None)
        got = Counter(base64.b64decode(d.value_b64) for d in dead if d.reason != "deployment_cap")
        assert got == sent
        capped = [d for d in dead if d.reason == "deployment_cap"]
        assert {base64.b64decode(d.value_b64) for d in capped} <= {v for _, v in flood}
        assert all(d.topic == metrics_topic and d.offset >= 0 for d in dead)
        assert all("HELIOS_MAX_DEPLOYMENTS=20" in d.detail for d in capped)
        schema_details = " ".join(d.detail for d in dead if d.reason == "schema")
        for field in (
            "metrics.cpu_utilization",
            "replicas",
            "timestamp",
            "metrics.memory_bytes",
            "metrics.db_connections",
        ):
            assert field in schema_details

        # The worker kept going: every good sample after the bad ones has its recommendation.
        assert len(recs) == n_recs
        by_key = Counter(m.key for m in recs)
        assert by_key[KEY] == n + 1
        assert sum(c for k, c in by_key.items() if k.startswith(b"flood/")) == accepted_flood
        mine = [RecommendationRecord.model_validate_json(m.value) for m in recs if m.key == KEY]
        windows = [r.timestamp.timestamp() for r in mine]
        assert sorted(set(windows)) == [start + i * STEP for i in range(n)]
        # The merged late sample reported the open window (good[19]'s), not a closed one.
        assert windows.count(start + 19 * STEP) == 2

        assert worker.proc is not None and worker.proc.poll() is None
        assert worker.get("/health")[0] == 200
        text = worker.metrics()
        assert metric_value(text, "helios_tracked_deployments") == CAP
        for reason, count in expected_reasons.items():
            assert metric_value(text, "helios_dead_letters_total", reason=reason) == count
        assert metric_value(text, "helios_samples_total", outcome="processed") == n_recs
        assert (
            metric_value(text, "helios_recommended_replicas", namespace="saleor", deployment="saleor-api")
            is not None
        )
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert "Traceback" not in log and "internal_error" not in log
    finally:
        worker.kill(signal.SIGTERM)
