"""A synthetic Saleor-like workload: for demos, tests, the simulator and load tests.

The model of the shop, one step per scoring interval:

* request rate = base x daily cycle (low at 04:00 in the shop's time zone, UTC unless
  ``utc_offset`` says otherwise; peak mid-afternoon and evening)
  x weekly cycle (quieter weekends) x slowly wandering AR(1) noise x occasional bursts
  (flash sales: +30..90 % for 3..8 steps, decaying);
* replicas follow the request rate like an HPA targeting 60 % CPU: up at once (one step
  late), down only after five quiet steps (the HPA's stabilisation window);
* CPU utilisation = load per replica / capacity; memory grows with CPU around a per-pod
  baseline; PostgreSQL backends = a connection pool per replica plus busy connections;
  Cloud SQL CPU follows the request rate;
* an incident at step ``incident_at`` lasts ``incident_length`` (15) steps: CPU and DB
  connections spike and memory climbs steadily, while the replica count does not move
  (the incident is not load, so the HPA misreads it; that is what Helios should flag).

:func:`synthetic_trace` is the pure generator (a DataFrame, seeded, reproducible);
:class:`SyntheticSource` lays its steps out in event time so a run ends at about "now" (or at a
given past ``end``, so a test sees the same time of day whenever it runs; an endless stream that follows
the clock gets the same with a ``utc_offset`` chosen for the hour it starts) and emits them at ``--rate``
samples per second.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from models.features import CPU, DB_CONNECTIONS, DB_CPU, DB_MEMORY, FEATURES, MEMORY, MEMORY_BYTES
from pipeline.records import Metrics, MetricSample
from pipeline.sources.base import Batch

log = logging.getLogger(__name__)

#: A Monday at midnight UTC: the default origin, so seasonality is reproducible.
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
_MIB = 2**20
#: Time zones span UTC-12 to UTC+14; ±14 h covers them all.
MAX_UTC_OFFSET = 14.0


def _check_utc_offset(utc_offset: float) -> None:
    if not -MAX_UTC_OFFSET <= utc_offset <= MAX_UTC_OFFSET:
        raise ValueError(f"utc_offset must be within ±{MAX_UTC_OFFSET:g} hours, got {utc_offset}")


class SaleorWorkload:
    """Step-by-step generator of one deployment's metrics (the state behind :func:`synthetic_trace`).

    Parameters
    ----------
    step_seconds
        Event-time distance between steps.
    seed
        Seeds the noise, the bursts and everything random.
    incident_at
        Step index at which the incident starts (``None``: no incident).
    start
        Event time of step 0 (sets the phase of the daily and weekly cycles).
    incident_length
        Steps the incident lasts.
    base_rps
        Mean request rate at the daily mean; other deployments of a load test scale it.
    min_replicas, max_replicas
        Bounds of the HPA-like replica count.
    utc_offset
        The shop's time zone, in hours east of UTC: its daily and weekly cycles follow local time,
        so a shop at ``+9`` peaks nine hours before one at ``0`` on the same event times.
    """

    def __init__(
        self,
        step_seconds: float = 60.0,
        seed: int = 0,
        incident_at: int | None = None,
        start: datetime = DEFAULT_START,
        incident_length: int = 15,
        base_rps: float = 120.0,
        min_replicas: int = 2,
        max_replicas: int = 10,
        utc_offset: float = 0.0,
    ) -> None:
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds}")
        if incident_at is not None and incident_at < 0:
            raise ValueError(f"incident_at must be a step index >= 0, got {incident_at}")
        if incident_length < 1:
            raise ValueError(f"incident_length must be >= 1, got {incident_length}")
        if base_rps <= 0:
            raise ValueError(f"base_rps must be positive, got {base_rps}")
        if not 1 <= min_replicas <= max_replicas:
            raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {min_replicas}, {max_replicas}")
        _check_utc_offset(utc_offset)
        self.step_seconds = step_seconds
        self.seed = seed
        self.incident_at = incident_at
        self.start = start if start.tzinfo else start.replace(tzinfo=UTC)
        self.incident_length = incident_length
        self.base_rps = base_rps
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self._local = timedelta(hours=utc_offset)
        self._rng = np.random.default_rng(seed)
        self._step = 0
        self._noise = 0.0
        self._burst = 0.0
        self._desired: list[int] = []
        self._replicas = min_replicas
        #: Requests per second one pod serves at 100 % of its CPU limit.
        self._capacity = 50.0
        self._mem_baseline = 380 * _MIB * float(self._rng.uniform(0.9, 1.1))
        self._mem_limit = 1024 * _MIB

    def _seasonality(self, when: datetime) -> float:
        when = when + self._local
        hour = when.hour + when.minute / 60 + when.second / 3600
        # Two humps (lunch break and evening) on a night-time trough at about 04:00 local time.
        daily = (
            0.35
            + 0.55 * math.exp(-(((hour - 13.0) / 3.5) ** 2))
            + 0.75 * math.exp(-(((hour - 20.0) / 2.8) ** 2))
            + 0.15 * math.exp(-(((hour - 9.0) / 2.0) ** 2))
        )
        weekday = when.weekday() + hour / 24
        # Saturday and Sunday are ~20 % quieter, with smooth edges at midnight.
        weekend = 1 / (1 + math.exp(-4 * (weekday - 5.0))) - 1 / (1 + math.exp(-4 * (weekday - 7.0)))
        return daily * (1.0 - 0.2 * weekend)

    def step(self) -> dict[str, float | int | bool | datetime]:
        """Advance one step and return its row (timestamp, the six features, replicas, incident)."""
        i = self._step
        self._step += 1
        when = self.start + timedelta(seconds=i * self.step_seconds)
        rng = self._rng

        self._noise = 0.85 * self._noise + float(rng.normal(0.0, 0.04))
        if self._burst > 0.02:
            self._burst *= float(rng.uniform(0.6, 0.85))
        else:
            self._burst = 0.0
            if rng.random() < 0.012:
                self._burst = float(rng.uniform(0.3, 0.9))
        load = self.base_rps * self._seasonality(when) * math.exp(self._noise) * (1.0 + self._burst)

        # HPA: the previous step's load decides (metrics lag); scale-down waits five steps.
        target = max(1, math.ceil(load / (self._capacity * 0.6)))
        self._desired.append(min(max(target, self.min_replicas), self.max_replicas))
        self._desired = self._desired[-6:]
        lagged = self._desired[:-1] or self._desired
        up = lagged[-1]
        self._replicas = up if up > self._replicas else max(max(lagged[-5:]), up)
        replicas = self._replicas

        cpu = load / (replicas * self._capacity) + float(rng.normal(0.0, 0.012))
        incident = (
            self.incident_at is not None and self.incident_at <= i < self.incident_at + self.incident_length
        )
        k = i - self.incident_at if (incident and self.incident_at is not None) else -1
        ramp = min(1.0, (k + 1) / 3) if incident else 0.0
        cpu += 0.5 * ramp
        cpu = min(max(cpu, 0.01), 1.0)

        mem = self._mem_baseline + 220 * _MIB * cpu + float(rng.normal(0.0, 6 * _MIB))
        if incident:
            # A leak: memory climbs steadily for the whole incident.
            mem += (k + 1) / self.incident_length * 420 * _MIB
        mem = min(max(mem, 64 * _MIB), self._mem_limit)

        connections = 4 * replicas + 0.12 * load + float(rng.normal(0.0, 1.5))
        db_cpu = 0.06 + 0.0032 * load + float(rng.normal(0.0, 0.01))
        if incident:
            connections = connections * (1.0 + 1.6 * ramp) + 10 * ramp
            db_cpu += 0.35 * ramp
        db_memory = 0.42 + 0.0008 * load + 0.01 * math.sin(i / 50) + float(rng.normal(0.0, 0.004))

        return {
            "timestamp": when,
            CPU: round(cpu, 6),
            MEMORY: round(mem / self._mem_limit, 6),
            MEMORY_BYTES: float(round(mem)),
            DB_CPU: round(min(max(db_cpu, 0.0), 1.0), 6),
            DB_MEMORY: round(min(max(db_memory, 0.0), 1.0), 6),
            DB_CONNECTIONS: float(max(0, round(connections))),
            "replicas": replicas,
            "incident": incident,
        }

    def __iter__(self) -> Iterator[dict[str, float | int | bool | datetime]]:
        while True:
            yield self.step()


def synthetic_trace(
    n_steps: int,
    step_seconds: float = 60.0,
    seed: int = 0,
    incident_at: int | None = None,
    *,
    start: datetime = DEFAULT_START,
    incident_length: int = 15,
    base_rps: float = 120.0,
) -> pd.DataFrame:
    """A reproducible Saleor-like trace: one row per step.

    Columns: ``timestamp`` (UTC), the six features of :data:`models.features.FEATURES`,
    ``replicas`` and ``incident`` (True during the injected incident).

    Examples
    --------
    >>> df = synthetic_trace(240, 60, seed=1, incident_at=200)
    >>> len(df), bool(df["incident"].sum() == 15)
    (240, True)
    >>> bool(df.loc[df.incident, "cpu_utilization"].mean() > df.loc[:199, "cpu_utilization"].mean())
    True
    """
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    gen = SaleorWorkload(
        step_seconds, seed, incident_at, start=start, incident_length=incident_length, base_rps=base_rps
    )
    rows = [gen.step() for _ in range(n_steps)]
    columns = ["timestamp", *FEATURES, "replicas", "incident"]
    df = pd.DataFrame(rows, columns=columns)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


def deployment_names(first: str, count: int) -> list[str]:
    """``first``, then ``synthetic-0001`` ... for a load test over ``count`` deployments."""
    if count < 1:
        raise ValueError(f"deployments must be >= 1, got {count}")
    return [first] + [f"synthetic-{i:04d}" for i in range(1, count)]


def row_to_sample(
    row: dict[str, float | int | bool | datetime], namespace: str, deployment: str
) -> MetricSample:
    """One generated row as the record the ingester puts on Kafka."""
    metrics = Metrics(**{f: float(row[f]) for f in FEATURES})  # type: ignore[arg-type]
    when = row["timestamp"]
    assert isinstance(when, datetime)
    return MetricSample(
        namespace=namespace,
        deployment=deployment,
        timestamp=when,
        metrics=metrics,
        replicas=int(row["replicas"]),  # type: ignore[arg-type]
        source="synthetic",
    )


class SyntheticSource:
    """Emits :class:`SaleorWorkload` steps for one or more deployments.

    Parameters
    ----------
    namespace, deployment
        The first (watched) deployment; it alone gets the incident.
    interval
        Event-time step in seconds (``HELIOS_SCORING_INTERVAL``).
    rate
        Samples per second to emit (wall clock); ``0`` = as fast as possible.
    count
        Steps per deployment, or ``None`` for an endless stream.
    incident_at
        Step index of the incident (``None``: none).
    deployments
        How many deployments (``saleor-api``, then ``synthetic-0001`` ...).
    seed
        Seed of the first deployment; the others use ``seed + i``.
    backfill
        Endless stream only: steps before "now" to emit first (so the models have history).
    end
        With a ``count`` only: event time (epoch seconds, not in the future) of the last step instead
        of now, so the feed's time of day, and with it the daily cycle, does not depend on when it runs.
    batch_size
        Most samples per batch.
    utc_offset
        The shop's time zone (hours east of UTC), which sets the phase of its daily cycle: see
        :class:`SaleorWorkload`.

    Event times: with a known ``count`` the steps are laid out so the last one is at about
    now, or ``end`` (start = end - count x interval); with an endless stream they start ``backfill``
    steps in the past and then follow the wall clock (a step is emitted once its event
    time has come), so no sample ever carries a future timestamp.
    """

    name = "synthetic"

    def __init__(
        self,
        namespace: str = "saleor",
        deployment: str = "saleor-api",
        *,
        interval: float = 60.0,
        rate: float = 0.0,
        count: int | None = None,
        incident_at: int | None = None,
        deployments: int = 1,
        seed: int = 0,
        backfill: int = 120,
        batch_size: int = 500,
        incident_rate: float | None = None,
        incident_length: int = 15,
        end: float | None = None,
        utc_offset: float = 0.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        if rate < 0:
            raise ValueError(f"rate must be >= 0 (0 = as fast as possible), got {rate}")
        if count is not None and count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if backfill < 0:
            raise ValueError(f"backfill must be >= 0, got {backfill}")
        if incident_rate is not None and incident_rate <= 0:
            raise ValueError(f"incident_rate must be positive, got {incident_rate}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _check_utc_offset(utc_offset)
        if end is not None and count is None:
            raise ValueError("end needs a count: an endless stream follows the clock")
        if end is not None and end > clock():
            raise ValueError(f"end must not be in the future (no sample carries a future time), got {end}")
        self.namespace = namespace
        self.deployment = deployment
        self.interval = interval
        self.rate = rate
        self.count = count
        self.incident_at = incident_at
        self.deployments = deployments
        self.seed = seed
        self.backfill = backfill
        self.batch_size = batch_size
        self.incident_rate = incident_rate
        self.incident_length = incident_length
        self.end = end
        self.utc_offset = utc_offset
        self.names = deployment_names(deployment, deployments)
        self._clock = clock
        self._sleep = sleep

    def _start(self) -> float:
        now = self._clock() if self.end is None else self.end
        steps = self.count if self.count is not None else self.backfill
        # Aligned to the interval so windows downstream see whole steps.
        return (math.floor(now / self.interval) - steps) * self.interval

    def _rate_at(self, step: int) -> float:
        """Pacing at one step: ``incident_rate`` while the incident lasts (so a demo can see it)."""
        if (
            self.incident_rate is not None
            and self.incident_at is not None
            and self.incident_at <= step < self.incident_at + self.incident_length
        ):
            return self.incident_rate
        return self.rate

    async def batches(self) -> AsyncIterator[Batch]:
        start = self._start()
        origin = datetime.fromtimestamp(start + self.interval, UTC)
        gens = [
            SaleorWorkload(
                self.interval,
                seed=self.seed + i,
                incident_at=self.incident_at if i == 0 else None,
                incident_length=self.incident_length,
                start=origin,
                base_rps=120.0 * (0.5 + ((i * 7919) % 100) / 66) if i else 120.0,
                utc_offset=self.utc_offset,
            )
            for i in range(len(self.names))
        ]
        due = self._clock()
        emitted = 0
        pending: list[MetricSample] = []
        step = 0
        while self.count is None or step < self.count:
            event_time = start + (step + 1) * self.interval
            wait_event = event_time - self._clock()
            if wait_event > 0:
                # Caught up with the wall clock: never emit a future timestamp.
                if pending:
                    yield Batch(pending)
                    pending = []
                await self._sleep(wait_event)
            rate = self._rate_at(step)
            for gen, name in zip(gens, self.names, strict=True):
                if rate > 0:
                    wait_rate = due - self._clock()
                    due = max(due, self._clock() - 1.0) + 1.0 / rate
                    if wait_rate > 0:
                        if pending:
                            yield Batch(pending)
                            pending = []
                        await self._sleep(wait_rate)
                pending.append(row_to_sample(gen.step(), self.namespace, name))
                emitted += 1
                if len(pending) >= self.batch_size:
                    yield Batch(pending)
                    pending = []
            step += 1
        if pending:
            yield Batch(pending)
        log.info("synthetic source done: %d samples for %d deployments", emitted, len(self.names))
