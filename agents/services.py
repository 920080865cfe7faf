"""The worker's long-running helpers, each a :class:`mode.Service` with its own timer and state.

* :class:`Sweeper`: saves the state that is due and drops deployments silent for too long;
* :class:`ModelReloader`: loads the model artifact at start-up and reloads it every
  ``HELIOS_MODEL_REFRESH_INTERVAL``;
* :class:`BrokerProbe`: whether a bootstrap broker accepts connections, and ``helios_ready``;
* :class:`ConsumptionWatchdogService`: finds partitions with lag the consumer stopped delivering and
  reads them back (:class:`ConsumptionWatchdog` holds what it has seen).

They are registered with ``app.service``, so Faust starts them once table recovery has finished and
stops them with the app. Each loop sleeps first, like a Faust timer, and through ``self.sleep`` so
a stop wakes it at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from mode import Service

from agents.processor import BatchProcessor
from pipeline.faust_adapter import assigned_actives, consumer_state
from pipeline.model_store import ModelStore
from pipeline.readiness import Readiness

log = logging.getLogger(__name__)

#: Seconds a partition with lag may sit without its next offset to process moving before /ready says so
#: and the watchdog reads it back. A consumed partition moves every batch; a takeover that left a
#: partition undelivered is found within two watchdog periods of this.
STALL_SECONDS = 15.0

#: Seconds between two looks of the consumption watchdog.
WATCH_INTERVAL = 5.0

#: Seconds between two broker probes.
PROBE_INTERVAL = 2.0


class Periodic(Service):
    """Runs :meth:`tick` every ``interval`` seconds until stopped: first after one interval (like a
    Faust timer) or at once with ``tick_at_start``. A tick that fails is logged; the next one runs."""

    tick_at_start = False

    def __init__(self, interval: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interval = interval

    async def tick(self) -> None:
        raise NotImplementedError

    @Service.task
    async def _ticking(self) -> None:
        if self.tick_at_start:
            await self._tick_logged()
        while not self.should_stop:
            await self.sleep(self.interval)
            if not self.should_stop:
                await self._tick_logged()

    async def _tick_logged(self) -> None:
        try:
            await self.tick()
        except Exception:
            log.exception("%s failed; trying again in %.0f s", type(self).__name__, self.interval)


class Sweeper(Periodic):
    """The state that is due goes to the changelog, deployments silent for too long go."""

    def __init__(self, processor: BatchProcessor, interval: float, **kwargs: Any) -> None:
        super().__init__(interval, **kwargs)
        self.processor = processor

    async def tick(self) -> None:
        await self.processor.sweep()


class ModelReloader(Periodic):
    """Loads the model artifact at start and again every ``interval`` seconds (off the event loop)."""

    tick_at_start = True

    def __init__(self, models: ModelStore, readiness: Readiness, interval: float, **kwargs: Any) -> None:
        super().__init__(interval, **kwargs)
        self.models = models
        self.readiness = readiness

    async def tick(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.models.reload)
        self.readiness.models_loaded = self.models.artifact is not None
        self.readiness.model_error = self.models.last_error


class BrokerProbe(Periodic):
    """Whether any bootstrap broker accepts a TCP connection, and the ``helios_ready`` gauge with it."""

    def __init__(
        self, app: Any, bootstrap: str, readiness: Readiness, ready_gauge: Any, **kwargs: Any
    ) -> None:
        super().__init__(PROBE_INTERVAL, **kwargs)
        self.faust_app = app
        self.bootstrap = bootstrap
        self.readiness = readiness
        self.ready_gauge = ready_gauge

    async def tick(self) -> None:
        self.readiness.broker_up = await reachable(self.bootstrap)
        self.ready_gauge.set(1 if self.readiness.check(self.faust_app)[0] else 0)


async def reachable(bootstrap: str) -> bool:
    """True if any bootstrap broker accepts a TCP connection within a second."""
    for hostport in bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=1.0)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False


class ConsumptionWatchdog:
    """Finds assigned partitions with lag whose position has not moved for ``stall_after`` seconds, and
    reports them again every ``stall_after`` seconds while they stay so (what was done about them failed)."""

    def __init__(self, stall_after: float, clock: Callable[[], float]) -> None:
        self.stall_after = stall_after
        self.clock = clock
        self._since: dict[Any, tuple[int | None, float]] = {}
        self.stalled: set[Any] = set()

    def reset(self) -> None:
        self._since.clear()
        self.stalled.clear()

    def observe(self, positions: dict[Any, int | None], highwaters: Any) -> list[Any]:
        """Record positions; return the partitions that have not moved for ``stall_after`` seconds since
        they last moved or were last returned."""
        now = self.clock()
        due = []
        for tp, position in positions.items():
            highwater = highwaters.get(tp)
            last = self._since.get(tp)
            caught_up = position is not None and highwater is not None and position >= highwater
            if caught_up or last is None or last[0] != position:
                self._since[tp] = (position, now)
                self.stalled.discard(tp)
            elif now - last[1] >= self.stall_after:
                self._since[tp] = (position, now)
                self.stalled.add(tp)
                due.append(tp)
        for tp in set(self._since) - set(positions):
            del self._since[tp]
            self.stalled.discard(tp)
        return due


class ConsumptionWatchdogService(Periodic):
    """Reads back partitions the consumer stopped delivering.

    After a rebalance Faust's consumer can stop delivering a partition it was given: aiokafka fetched
    its records (its position reaches the highwater) but they never reach the agent, or never get
    fetched at all (faust-streaming #629). The gap check of :meth:`BatchProcessor.unseen` finds skipped
    records only when a later record arrives; this finds the rest: a partition whose next offset to
    process has not moved for ``STALL_SECONDS`` while Kafka holds records past it.
    """

    def __init__(
        self, app: Any, processor: BatchProcessor, topic: str, readiness: Readiness, **kwargs: Any
    ) -> None:
        super().__init__(WATCH_INTERVAL, **kwargs)
        self.faust_app = app
        self.processor = processor
        self.topic = topic
        self.readiness = readiness
        self.watchdog = ConsumptionWatchdog(stall_after=STALL_SECONDS, clock=time.monotonic)
        readiness.stall_after = STALL_SECONDS

    async def tick(self) -> None:
        app = self.faust_app
        if app.rebalancing:
            self.watchdog.reset()
            return
        tps = [tp for tp in assigned_actives(app) if tp.topic == self.topic]
        if not tps:
            return
        try:
            highwaters = await app.consumer.highwaters(*tps)
            positions = {tp: await self.processor.progress(tp, app.consumer.position) for tp in tps}
        except Exception as exc:  # a rebalance or an outage under way: look again next time
            log.debug("consumption watchdog skipped: %s", exc)
            return
        for tp in self.watchdog.observe(positions, highwaters):
            log.warning(
                "%s has lag but has not moved from offset %s for %.0f s; reading it back (%s)",
                tp, positions[tp], STALL_SECONDS, consumer_state(app, tp, highwaters.get(tp)),
            )  # fmt: skip
            position, highwater = positions[tp], highwaters.get(tp)
            if position is not None and highwater is not None:
                await self.catch_up(tp, position, highwater)
        self.readiness.stalled = sorted(f"{tp.topic}[{tp.partition}]" for tp in self.watchdog.stalled)

    async def catch_up(self, tp: Any, position: int, highwater: int) -> None:
        start = await self.processor.catch_up(tp.partition, position, highwater)
        if start is None:
            return
        # Whatever the consumer delivers again is skipped as replayed and acked, so Faust's committed offset
        # moves on too; resume it in case Faust holds it paused or out of its active set.
        consumer = self.faust_app.consumer
        try:
            await consumer.seek(tp, start)
            consumer.resume_partitions([tp])
        except Exception as exc:  # moved away since: its new owner reads it from the marker
            log.info("could not seek %s back to %d: %s", tp, start, exc)
