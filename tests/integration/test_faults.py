"""Faults against the real broker: a worker killed while another runs, a broker outage, a corrupt model.

Each test starts real ``helios worker`` (and ``helios ingest``) processes on topics of its own and
kills them in ``finally``. The broker-outage test runs a private broker on free ports so stopping it
disturbs no other test.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.artifacts import sha256_file
from pipeline.api import ModelsResponse, ReadyResponse
from pipeline.records import RecommendationRecord
from pipeline.runtime import first_write_after
from pipeline.testing import Ingester, PrivateBroker
from tests.conftest import free_port
from tests.helpers import Worker, consume, metric_value, produce, run, topic_env
from tests.integration.fault_helpers import (
    committed_lag,
    exported,
    partition_of,
    record_keys,
    reference_by_key,
    spread_keys,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4
STEP = 60


def _sample(key: str, t: float, i: int, rng: random.Random, base: float) -> bytes:
    namespace, deployment = key.split("/")
    cpu = base + 0.15 * math.sin(2 * math.pi * i / 30) + rng.gauss(0, 0.02)
    return json.dumps(
        {
            "namespace": namespace,
            "deployment": deployment,
            "timestamp": t,
            "replicas": 3,
            "metrics": {
                "cpu_utilization": min(1.0, max(0.0, cpu)),
                "memory_utilization": 0.5 + rng.gauss(0, 0.01),
                "memory_bytes": 6e8,
                "db_cpu": 0.3,
                "db_memory": 0.5,
                "db_connections": 20 + rng.randint(-2, 2),
            },
        }
    ).encode()


def _traces(keys: list[str], steps: int) -> list[list[tuple[bytes, bytes]]]:
    """Step-major records (all deployments at step 0, then step 1, ...), ending just before now."""
    start = math.floor(time.time() / STEP) * STEP - (steps + 5) * STEP
    rngs = {k: random.Random(n) for n, k in enumerate(keys)}
    bases = {k: 0.3 + 0.05 * n for n, k in enumerate(keys)}
    return [
        [(k.encode(), _sample(k, start + i * STEP, i, rngs[k], bases[k])) for k in keys] for i in range(steps)
    ]


def _last_by_window(messages: list) -> dict[tuple[str, str], RecommendationRecord]:
    """The last recommendation per (deployment, window); replays after a crash may repeat one."""
    out = {}
    for m in messages:
        rec = RecommendationRecord.model_validate_json(m.value)
        out[(m.key.decode(), rec.timestamp.isoformat())] = rec
    return out


def _assert_matches_reference(
    live: dict[tuple[str, str], RecommendationRecord],
    reference: dict[str, list[RecommendationRecord]],
    keys: list[str],
) -> None:
    for key in keys:
        for ref in reference[key]:
            got = live[(key, ref.timestamp.isoformat())]
            assert got.recommended_replicas == ref.recommended_replicas, (key, ref.timestamp)
            live_band: dict[str, Any] = got.evidence["forecast"]  # type: ignore[assignment]
            ref_band: dict[str, Any] = ref.evidence["forecast"]  # type: ignore[assignment]
            assert live_band.keys() == ref_band.keys()
            for h in ref_band:
                assert live_band[h]["upper"] == pytest.approx(ref_band[h]["upper"], rel=1e-3, abs=1e-4), (
                    key,
                    h,
                )


def _all_committed(bootstrap: str, env: dict[str, str]) -> bool:
    lag = committed_lag(bootstrap, env["HELIOS_APP_ID"], env["HELIOS_TOPIC_METRICS"], PARTITIONS)
    return bool(run(lag) == 0)


@pytest.fixture
def shared_env(kafka_bootstrap: str, unique: str) -> dict[str, str]:
    return {
        **topic_env(unique),
        "HELIOS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HELIOS_BROKER_SESSION_TIMEOUT": "6",
        "HELIOS_TOPIC_PARTITIONS": str(PARTITIONS),
        "HELIOS_LOG_LEVEL": "INFO",
    }


def test_survivor_takes_over_partitions_state_and_gauges(
    shared_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = shared_env
    keys = spread_keys("shop", PARTITIONS, 2)
    steps = _traces(keys, 80)
    phases = (steps[:40], steps[40:70], steps[70:])
    flat = [r for step in steps for r in step]
    reference = reference_by_key(env, flat)
    recs_topic = env["HELIOS_TOPIC_RECOMMENDATIONS"]

    def windows_seen(n_steps: int) -> list:
        want = len(keys) * n_steps
        return run(consume(kafka_bootstrap, recs_topic, lambda o: len(record_keys(o)) >= want, timeout=90))

    port_b = free_port()
    a = Worker({**env, "HELIOS_DATA_DIR": str(tmp_path / "a")}, free_port(), tmp_path / "a.log")
    b = Worker({**env, "HELIOS_DATA_DIR": str(tmp_path / "b")}, port_b, tmp_path / "b.log")
    b2 = Worker({**env, "HELIOS_DATA_DIR": str(tmp_path / "b")}, port_b, tmp_path / "b2.log")
    try:
        a.start(wait_ready=False)
        b.start(wait_ready=False)
        for w in (a, b):
            w.wait_for(lambda w=w: w.get("/ready")[0] == 200, 90, "ready")

        # Phase 1: both workers own two partitions each and export what they own, nothing else.
        run(produce(kafka_bootstrap, env["HELIOS_TOPIC_METRICS"], [r for step in phases[0] for r in step]))
        assert len(record_keys(windows_seen(40))) == len(keys) * 40
        wait_until(lambda: exported(a.metrics()) | exported(b.metrics()) == set(keys), 30, "all 8 exported")
        on_a, on_b = exported(a.metrics()), exported(b.metrics())
        assert on_a and on_b and not on_a & on_b, (on_a, on_b)
        moved = sorted(on_b)
        # B has committed its offsets: A cannot rebuild B's deployments by replaying their whole history,
        # it must continue from the state B left in the changelog.
        wait_until(lambda: _all_committed(kafka_bootstrap, env), 30, "offsets committed")

        # Phase 2: B dies without leaving; after the session timeout A owns every partition.
        b.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        run(produce(kafka_bootstrap, env["HELIOS_TOPIC_METRICS"], [r for step in phases[1] for r in step]))
        wait_until(
            lambda: exported(a.metrics()) == set(keys),
            60,
            "survivor exports all 8",
            lambda: f"A exports {sorted(exported(a.metrics()))}, B exported {moved}\n{a.tail(30)}",
        )
        takeover = time.monotonic() - killed_at
        messages = windows_seen(70)
        assert len(record_keys(messages)) == len(keys) * 70  # nothing lost
        live = _last_by_window(messages)
        # The moved deployments continued from their changelog state, not from scratch: the survivor's
        # recommendations and bands equal an uninterrupted run's.
        _assert_matches_reference(live, {k: reference[k][:70] for k in keys}, keys)
        text = a.metrics()
        for key in moved:
            ns, dep = key.split("/")
            assert metric_value(text, "helios_recommended_replicas", namespace=ns, deployment=dep) == (
                reference[key][69].recommended_replicas
            )
        assert metric_value(text, "helios_tracked_deployments") == len(keys)

        # Phase 3: B comes back; after the rebalance each deployment is exported by its owner only.
        b2.start()
        wait_until(
            lambda: exported(a.metrics()) != set(keys), 60, "A unexports the partitions it lost", a.tail
        )
        run(produce(kafka_bootstrap, env["HELIOS_TOPIC_METRICS"], [r for step in phases[2] for r in step]))
        messages = windows_seen(80)
        assert len(record_keys(messages)) == len(keys) * 80
        wait_until(
            lambda: exported(a.metrics()) | exported(b2.metrics()) == set(keys), 30, "all exported again"
        )
        on_a, on_b = exported(a.metrics()), exported(b2.metrics())
        assert on_a and on_b and not on_a & on_b, (on_a, on_b)
        parts_a = {partition_of(k.encode(), PARTITIONS) for k in on_a}
        parts_b = {partition_of(k.encode(), PARTITIONS) for k in on_b}
        assert not parts_a & parts_b
        assert metric_value(a.metrics(), "helios_tracked_deployments") == len(on_a)
        _assert_matches_reference(_last_by_window(messages), reference, keys)
        text = a.metrics()
        print(
            f"takeover after SIGKILL: {takeover:.1f} s; moved {moved}; after restart A={sorted(on_a)} "
            f"B={sorted(on_b)}; {len(messages) - len(record_keys(messages))} duplicate recommendations; "
            f"A processed "
            f"{metric_value(text, 'helios_samples_total', outcome='processed')}, skipped as replayed "
            f"{metric_value(text, 'helios_samples_total', outcome='replayed')}"
        )
    finally:
        for w in (a, b, b2):
            w.kill(signal.SIGKILL)


def test_a_worker_taking_over_catches_up_from_the_saved_state_without_new_input(
    shared_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The samples a killed worker processed after its last state write are in no saved state, and its
    committed offsets are past them. A later sample reveals them to the new owner; with none coming, the
    consumption watchdog must find them (the saved state ends before the highwater) and read them back."""
    every, n = 1000, 20
    env = {**shared_env, "HELIOS_SNAPSHOT_EVERY": str(every), "HELIOS_SNAPSHOT_MAX_AGE": "3600"}
    # Deployments whose state is written once, 5 to 15 samples in: each has samples after it (even if a
    # rebalance on the first worker restarts its count), which only the new owner can still apply.
    keys = spread_keys("shop", PARTITIONS, 2, lambda key: 5 <= first_write_after(key, every) <= 15)
    flat = [r for step in _traces(keys, n) for r in step]
    reference = reference_by_key(env, flat)
    recs_topic = env["HELIOS_TOPIC_RECOMMENDATIONS"]
    first = Worker({**env, "HELIOS_DATA_DIR": str(tmp_path / "a")}, free_port(), tmp_path / "a.log")
    second = Worker({**env, "HELIOS_DATA_DIR": str(tmp_path / "b")}, free_port(), tmp_path / "b.log")
    try:
        first.start()
        run(produce(kafka_bootstrap, env["HELIOS_TOPIC_METRICS"], flat))
        want = len(keys) * n
        run(consume(kafka_bootstrap, recs_topic, lambda o: len(record_keys(o)) >= want, timeout=90))
        wait_until(lambda: _all_committed(kafka_bootstrap, env), 30, "offsets committed")
        first.kill(signal.SIGKILL)

        second.start()
        wait_until(
            lambda: exported(second.metrics()) == set(keys),
            60,
            "the new worker exports all 8 without new input",
            lambda: f"exported {sorted(exported(second.metrics()))}\n{second.tail(30)}",
        )
        text = second.metrics()
        recovered = metric_value(text, "helios_samples_total", outcome="recovered")
        assert recovered is not None and 0 < recovered < len(flat)
        assert not metric_value(text, "helios_samples_total", outcome="lost")
        # It continued from the saved state: its last recommendations are an uninterrupted run's.
        for key in keys:
            ns, dep = key.split("/")
            assert metric_value(text, "helios_recommended_replicas", namespace=ns, deployment=dep) == (
                reference[key][-1].recommended_replicas
            ), key
    finally:
        for w in (first, second):
            w.kill(signal.SIGKILL)


def test_broker_outage_under_load_reports_not_ready_and_loses_nothing(unique: str, tmp_path: Path) -> None:
    broker = PrivateBroker(tmp_path / "kafka")
    count = 1500
    broker.start()
    env = {
        **topic_env(unique),
        "HELIOS_KAFKA_BOOTSTRAP": broker.bootstrap,
        "HELIOS_BROKER_SESSION_TIMEOUT": "6",
        "HELIOS_TOPIC_PARTITIONS": str(PARTITIONS),
        "HELIOS_DATA_DIR": str(tmp_path / "data"),
        "HELIOS_LOG_LEVEL": "INFO",
    }
    worker = Worker(env, free_port(), tmp_path / "worker.log")
    ingester = None
    try:
        worker.start()
        pid = worker.proc.pid if worker.proc else None
        ingester = Ingester(
            env, ["--source", "synthetic", "--rate", "50", "--count", str(count)], tmp_path / "ingest.log"
        )

        def processed() -> float:
            return metric_value(worker.metrics(), "helios_samples_total", outcome="processed") or 0.0

        wait_until(lambda: processed() >= 200, 60, "200 samples processed", worker.tail)
        broker.stop()
        stopped = time.monotonic()
        during: list[tuple[int, ReadyResponse]] = []
        while time.monotonic() - stopped < 12:
            status, body = worker.get("/ready")
            during.append((status, ReadyResponse.model_validate_json(body)))
            time.sleep(0.5)
        broker.start()
        outage = time.monotonic() - stopped
        restarted = time.monotonic()
        wait_until(lambda: worker.get("/ready")[0] == 200, 90, "ready after the outage", worker.tail)
        back = time.monotonic() - restarted

        not_ready = [r for s, r in during if s == 503]
        assert not_ready, f"/ready never reported the outage: {[(s, r.reasons) for s, r in during]}"
        assert all(not r.ready for r in not_ready)
        reasons = [reason for r in not_ready for reason in r.reasons]
        assert any("broker" in reason.lower() for reason in reasons), reasons

        assert ingester.wait(timeout=120) == 0, ingester.log()[-3000:]
        assert worker.proc is not None and worker.proc.poll() is None and worker.proc.pid == pid
        messages = run(
            consume(
                broker.bootstrap,
                env["HELIOS_TOPIC_RECOMMENDATIONS"],
                lambda o: len(record_keys(o)) >= count,
                timeout=120,
            )
        )
        windows = record_keys(messages)
        assert len(windows) == count, f"{count - len(windows)} samples without a recommendation"
        print(
            f"outage {outage:.1f} s, ready again {back:.1f} s after restart, "
            f"{len(messages) - len(windows)} duplicate recommendations, "
            f"{sum(1 for s, _ in during if s == 503)}/{len(during)} probes not ready"
        )
    finally:
        if ingester is not None:
            ingester.kill()
        worker.kill(signal.SIGKILL)
        broker.stop()


@pytest.fixture
def model_worker(shared_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Worker, Path]]:
    models = tmp_path / "models"
    shutil.copytree(Path(__file__).resolve().parents[2] / "models" / "artifacts", models)
    env = {
        **shared_env,
        "HELIOS_MODEL_PATH": str(models),
        "HELIOS_MODEL_REFRESH_INTERVAL": "2",
        "HELIOS_DATA_DIR": str(tmp_path / "data"),
    }
    worker = Worker(env, free_port(), tmp_path / "worker.log")
    try:
        worker.start()
        yield worker, models / "xgboost"
    finally:
        worker.kill(signal.SIGKILL)


def _xgb_version(worker: Worker) -> str:
    status, body = worker.get("/models")
    assert status == 200
    return next(m.version for m in ModelsResponse.model_validate_json(body).models if m.name == "xgboost")


def _failures(worker: Worker) -> float:
    return metric_value(worker.metrics(), "helios_model_reload_failures_total", model="xgboost") or 0.0


def _assert_old_serves(worker: Worker, version: str) -> None:
    assert _xgb_version(worker) == version
    status, data = worker.post("/detect", {"metrics": {"cpu_utilization": 0.95}})
    assert status == 200, data
    assert worker.get("/ready")[0] == 200


def _publish_broken(root: Path, serving: str, version: str, fault: str) -> Path:
    """Publish ``version`` next to the served one, broken in the way ``fault`` names."""
    new = root / version
    staging = root.parent / f"staging-{version}"
    shutil.copytree(root / serving, staging)
    meta = json.loads((staging / "metadata.json").read_text())
    meta["version"] = version
    if fault == "corrupt_model":
        # The checksum matches the garbage, so only XGBoost's own loader can refuse it.
        (staging / "model.ubj").write_bytes(b"{not ubjson" * 500)
        meta["model_sha256"] = sha256_file(staging / "model.ubj")
    else:
        meta["model_sha256"] = "0" * 64
    (staging / "metadata.json").write_text(json.dumps(meta))
    staging.rename(new)  # appears at once, as a finished upload would
    return new


def test_new_broken_model_version_is_rejected_counted_and_logged(model_worker: tuple[Worker, Path]) -> None:
    worker, root = model_worker
    (serving,) = [p.name for p in root.iterdir()]
    assert _xgb_version(worker) == serving
    for version, fault, says in (
        ("98.0.0", "corrupt_model", "cannot load the model"),
        ("99.0.0", "checksum_mismatch", "checksum mismatch"),
    ):
        before = _failures(worker)
        _publish_broken(root, serving, version, fault)
        worker.wait_for(lambda before=before: _failures(worker) > before, 15, f"{fault} counted")
        _assert_old_serves(worker, serving)
        rejected = [
            line for line in worker.log_path.read_text().splitlines() if f"xgboost {version} rejected" in line
        ]
        assert rejected and says in rejected[0], rejected
        time.sleep(4)  # two more refresh intervals: a rejected version is counted once, not on every refresh
        assert _failures(worker) == before + 1
        _assert_old_serves(worker, serving)
