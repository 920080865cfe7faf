"""Stop signals sent to a real ``helios worker`` at the moments a stop is hard, and the time it took to exit.

The five moments a stop must survive: during start-up, during table recovery, during a rebalance (a second
worker joining), under full load on freshly created topics, and with the broker away. Each ``at_*``
function brings a worker there and returns it; :func:`stop_timed` sends the signal and measures the
exit. Used by ``tests/integration/test_shutdown.py`` (one try per moment) and ``pipeline.bench.shutdown``
(many tries, the figures in ``benchmarks/shutdown.md``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.testing import Ingester, PrivateBroker, Worker, free_port, metric_value, topic_env

MOMENTS = ("startup", "recovery", "rebalance", "load", "broker_away")

#: The target (benchmarks/shutdown.md): a signalled worker is gone this many seconds later.
EXIT_BOUND = 10.0

#: How long a worker is given before it is called hung, its stacks dumped and it is killed.
HANG_CAP = 40.0

PARTITIONS = 4

#: Changelog records put in front of a recovering worker: enough for a recovery of several seconds.
RECOVERY_RECORDS = 150_000


@dataclass
class Stopped:
    """What a signalled worker did: seconds from the signal to its exit (None: still running at the cap)."""

    seconds: float | None
    returncode: int | None
    stacks: str = ""


@dataclass
class Rig:
    """A broker, a scratch directory and what was started on them, for stopping it all at the end."""

    bootstrap: str
    tmp: Path
    workers: list[Worker] = field(default_factory=list)
    ingesters: list[Ingester] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        unique = uuid.uuid4().hex[:10]
        return {
            **topic_env(unique),
            "HELIOS_KAFKA_BOOTSTRAP": self.bootstrap,
            "HELIOS_BROKER_SESSION_TIMEOUT": "6",
            "HELIOS_TOPIC_PARTITIONS": str(PARTITIONS),
            "HELIOS_DATA_DIR": str(self.tmp / f"data-{unique}"),
            "HELIOS_LOG_LEVEL": "INFO",
            **extra,
        }

    def worker(self, env: dict[str, str], name: str) -> Worker:
        w = Worker(env, free_port(), self.tmp / f"{name}-{len(self.workers)}.log")
        self.workers.append(w)
        return w

    def ingest(self, env: dict[str, str], *args: str) -> Ingester:
        ing = Ingester(env, args, self.tmp / f"ingest-{len(self.ingesters)}.log")
        self.ingesters.append(ing)
        return ing

    def burst(self, env: dict[str, str]) -> Ingester:
        """Samples as fast as the ingester makes them, for many deployments: full load for a minute."""
        return self.ingest(env, "--source", "synthetic", "--deployments", "400", "--count", "2000")

    def close(self) -> None:
        for ing in self.ingesters:
            ing.kill()
        for w in self.workers:
            w.kill(signal.SIGKILL)


def processed(worker: Worker) -> float:
    return metric_value(worker.metrics(), "helios_samples_total", outcome="processed") or 0.0


def _spawned(worker: Worker) -> subprocess.Popen[bytes]:
    assert worker.proc is not None
    return worker.proc


def stop_timed(worker: Worker, sig: int = signal.SIGTERM, cap: float = HANG_CAP) -> Stopped:
    """Send ``sig`` and wait for the exit; a worker alive at ``cap`` has its stacks dumped and is killed."""
    proc = _spawned(worker)
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=cap)
        return Stopped(time.monotonic() - sent, code)
    except subprocess.TimeoutExpired:
        stacks = _dump_stacks(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        return Stopped(None, None, stacks)


def _dump_stacks(pid: int) -> str:
    spy = Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "py-spy"
    try:
        out = subprocess.run(
            [str(spy), "dump", "--pid", str(pid)], capture_output=True, timeout=30, text=True
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(no stacks: {exc})"
    return out.stdout + out.stderr


def at_startup(rig: Rig, delay: float) -> Worker:
    """A worker ``delay`` seconds after it was spawned: importing, creating topics, joining, recovering."""
    w = rig.worker(rig.env(), "startup")
    _spawn(w)
    time.sleep(delay)
    return w


def _spawn(w: Worker) -> None:
    """Start the process without waiting for its web view."""
    log = w.log_path.open("ab")
    w.proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "worker"],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, **w.env, "HELIOS_PORT": str(w.port), "HELIOS_BIND": "127.0.0.1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _fill_changelog(env: dict[str, str], bootstrap: str, records: int) -> None:
    """Put ``records`` small records on the state table's changelog, as a long-lived worker leaves it."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"{env['HELIOS_APP_ID']}-helios-state-changelog"

    async def fill() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(topic, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})]
            )
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20)
        await producer.start()
        try:
            value = b'{"filler": "' + b"x" * 120 + b'"}'
            for i in range(records):
                await producer.send(
                    topic, key=f"filler/d-{i}".encode(), value=value, partition=i % PARTITIONS
                )
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(fill())


def _reasons(worker: Worker) -> str:
    status, body = worker.get("/ready")
    return body.decode(errors="replace") if status != 200 else ""


def at_recovery(rig: Rig, records: int = RECOVERY_RECORDS) -> Worker:
    """A worker replaying its state table's changelog (partitions assigned, recovery not finished)."""
    env = rig.env()
    _fill_changelog(env, rig.bootstrap, records)
    w = rig.worker(env, "recovery")
    _spawn(w)
    w.wait_for(
        lambda: "recovering" in (r := _reasons(w)) and "no partitions assigned" not in r,
        90,
        "recovering its table",
    )
    return w


def at_rebalance(rig: Rig, into_join: float) -> tuple[Worker, Worker]:
    """Worker A under load, ``into_join`` s after worker B (same group) began to join. Returns (A, B)."""
    env = rig.env()
    a = rig.worker(env, "rebalance-a").start(timeout=120)
    rig.ingest(env, "--source", "synthetic", "--deployments", "100", "--rate", "400", "--count", "3000")
    a.wait_for(lambda: processed(a) > 500, 90, "processing")
    b = rig.worker({**env, "HELIOS_DATA_DIR": env["HELIOS_DATA_DIR"] + "-b"}, "rebalance-b")
    _spawn(b)
    b.wait_for(lambda: b.get("/health")[0] == 200, 90, "healthy")
    time.sleep(into_join)
    return a, b


def at_load(rig: Rig, after_ready: float) -> tuple[Worker, Callable[[], float]]:
    """A worker on fresh topics ``after_ready`` seconds into a burst that began as it became ready.

    Returns the worker and a reading of its processed count taken just before the signal."""
    env = rig.env()
    w = rig.worker(env, "load").start(timeout=120)
    rig.burst(env)
    time.sleep(after_ready)
    seen = processed(w)
    return w, lambda: seen


def committed_total(bootstrap: str, env: dict[str, str]) -> int:
    """Offsets of the metrics topic the worker's consumer group has committed, over all partitions."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def committed() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(env["HELIOS_APP_ID"])
        finally:
            await admin.close()
        return sum(m.offset for tp, m in offsets.items() if tp.topic == env["HELIOS_TOPIC_METRICS"])

    return asyncio.run(committed())


def at_broker_away(rig: Rig, broker: PrivateBroker, away_for: float) -> Worker:
    """A worker under load whose (private) broker was stopped ``away_for`` seconds ago."""
    env = rig.env(HELIOS_KAFKA_BOOTSTRAP=broker.bootstrap)
    w = rig.worker(env, "broker-away").start(timeout=120)
    rig.ingest(env, "--source", "synthetic", "--deployments", "50", "--rate", "200", "--count", "3000")
    w.wait_for(lambda: processed(w) > 300, 90, "processing")
    broker.stop()
    time.sleep(away_for)
    return w
