"""Shared pieces of ``make bench``: the sample generator, Kafka helpers, RSS and percentiles.

Imported by :mod:`pipeline.bench.perf`, :mod:`pipeline.bench.inproc` and :mod:`pipeline.bench.passthrough`;
not used by the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

NAMESPACE = "bench"
GIB = float(2**30)


def deployment_name(i: int) -> str:
    return f"svc-{i:05d}"


@dataclass(frozen=True, slots=True)
class Sample:
    key: bytes
    value: bytes
    #: Start of the scoring window the sample falls in: its recommendation carries this timestamp.
    window: int


def make_samples(
    deployments: int,
    steps: int,
    step_seconds: int,
    *,
    seed: int = 7,
    end: float | None = None,
    first_deployment: int = 0,
) -> list[Sample]:
    """``deployments x steps`` MetricSample records in arrival order (step-major), ending before now.

    Each deployment has its own daily CPU cycle (base, amplitude, phase), AR(1) noise and a fixed
    scrape offset inside the interval, so event times are realistic (not on the window edge) and every
    sample of a deployment falls in its own window. The last window starts two intervals before ``end``.
    """
    rng = np.random.default_rng(seed + first_deployment)
    end = time.time() if end is None else end
    last = math.floor(end / step_seconds) * step_seconds - 2 * step_seconds
    windows = last - step_seconds * np.arange(steps - 1, -1, -1)
    base = rng.uniform(0.15, 0.6, deployments)
    amp = rng.uniform(0.05, 0.25, deployments)
    phase = rng.uniform(0, 2 * np.pi, deployments)
    offset = rng.uniform(1, 0.8 * step_seconds, deployments)
    mem_base = rng.uniform(0.3, 0.6, deployments)
    noise = np.zeros(deployments)
    out: list[Sample] = []
    names = [deployment_name(first_deployment + d) for d in range(deployments)]
    keys = [f"{NAMESPACE}/{n}".encode() for n in names]
    for w in windows:
        noise = 0.8 * noise + rng.normal(0, 0.03, deployments)
        t = w + offset
        cpu = np.clip(base + amp * np.sin(2 * np.pi * (t % 86400) / 86400 + phase) + noise, 0.01, 0.99)
        mem = np.clip(mem_base + 0.2 * cpu + rng.normal(0, 0.01, deployments), 0.01, 0.99)
        db_cpu = np.clip(0.1 + 0.5 * cpu + rng.normal(0, 0.02, deployments), 0.0, 1.0)
        conns = np.maximum(0.0, 10 + 40 * cpu + rng.normal(0, 2, deployments))
        replicas = np.clip(np.ceil(cpu * 10), 2, 10).astype(int)
        for d in range(deployments):
            value = orjson.dumps(
                {
                    "namespace": NAMESPACE,
                    "deployment": names[d],
                    "timestamp": float(round(t[d], 3)),
                    "replicas": int(replicas[d]),
                    "source": "bench",
                    "metrics": {
                        "cpu_utilization": float(cpu[d]),
                        "memory_utilization": float(mem[d]),
                        "memory_bytes": float(mem[d] * GIB),
                        "db_cpu": float(db_cpu[d]),
                        "db_memory": 0.45,
                        "db_connections": float(round(conns[d])),
                    },
                }
            )
            out.append(Sample(keys[d], value, int(w)))
    return out


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        todo = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if todo:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(todo)
            # A consumer that starts before the new partitions have leaders stalls for seconds on
            # NotLeaderForPartition retries, which would read as the process under test being slow.
            await asyncio.sleep(2.0)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> int:
    """Delete every topic whose name starts with ``prefix`` (the bench's own topics only)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
        return len(mine)
    finally:
        await admin.close()


async def produce_all(bootstrap: str, topic: str, samples: Sequence[Sample]) -> float:
    """Pre-produce as fast as the client goes; returns the seconds it took."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for s in samples:
            pending.append(await producer.send(topic, key=s.key, value=s.value))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


class OutputCounter:
    """Reads a topic from the start and records (consume time, records so far) after every fetch."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.marks: list[tuple[float, int]] = []
        self.count = 0
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 2**20,
        )
        await self.consumer.start()
        # Prime the fetch positions now, so the first outputs are not read late.
        await self.consumer.getmany(timeout_ms=500)

    async def run_until(
        self,
        target: int,
        timeout: float,
        on_records: Callable[[list[object], float], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> bool:
        assert self.consumer is not None
        deadline = time.monotonic() + timeout
        while self.count < target and time.monotonic() < deadline:
            if stop is not None and stop():
                return False
            batch = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
            now = time.time()
            got = 0
            for msgs in batch.values():
                got += len(msgs)
                if on_records is not None:
                    on_records(list(msgs), now)
            if got:
                self.count += got
                self.marks.append((now, self.count))
        return self.count >= target

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()


def sustained_rate(marks: Sequence[tuple[float, int]], total: int, lo: float = 0.1, hi: float = 0.9) -> float:
    """Records per second between the consumption of the ``lo`` and ``hi`` fractions of ``total``.

    Leaves out start-up (group join, first fetches) and the tail, which is what "sustained" means.
    """
    t_lo = next((t for t, c in marks if c >= lo * total), None)
    c_lo = next((c for t, c in marks if c >= lo * total), None)
    t_hi = next((t for t, c in marks if c >= hi * total), None)
    c_hi = next((c for t, c in marks if c >= hi * total), None)
    if t_lo is None or t_hi is None or c_lo is None or c_hi is None or t_hi <= t_lo:
        return float("nan")
    return (c_hi - c_lo) / (t_hi - t_lo)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used, from /proc/<pid>/stat."""
    import os

    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def loadavg() -> tuple[float, float, float]:
    with open("/proc/loadavg") as fh:
        a, b, c = fh.read().split()[:3]
    return float(a), float(b), float(c)
