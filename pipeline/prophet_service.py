"""The ``prophet`` model: Prophet refit in the background on a deployment's recent history.

Prophet is a batch model (a Stan fit takes seconds), so it never runs on the event loop: a
background task refits watched deployments in a thread every ``refit_seconds`` and ``/predict``
serves the latest fit. History is kept in memory only for the deployments that ask for it (the
configured default and those named in ``model=prophet|auto`` requests, at most ``max_watched``),
so it costs nothing for the rest of the fleet; after a restart it refills from the stream.

``auto`` chooses per deployment by measured recent error: Prophet's rolling mean absolute error on
outcomes that arrived after its fit (1 to ``refit_seconds`` ahead) against the online baseline's
rolling error at the 15-minute horizon. Prophet wins only when it has a fit and a lower error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.features import CPU, MEMORY
from pipeline.api import PredictionPoint, PredictRequest, PredictResponse
from pipeline.serving import BadRequest
from pipeline.stages import DeploymentPipeline, PipelineConfig

log = logging.getLogger(__name__)

#: Prophet needs a few hours to see anything; two days bounds the fit time.
MIN_POINTS = 120
HISTORY_SECONDS = 2 * 86400
#: How often the background task looks for deployments due a (re)fit.
CHECK_SECONDS = 10.0


@dataclass
class _Fitted:
    cpu: Any
    memory: Any | None
    fitted_at: float
    last_t: float
    errors: deque[float] = field(default_factory=lambda: deque(maxlen=60))

    @property
    def mae(self) -> float | None:
        return sum(self.errors) / len(self.errors) if self.errors else None


class ProphetService:
    def __init__(
        self,
        config: PipelineConfig,
        default_key: str,
        *,
        refit_seconds: float = 900.0,
        max_watched: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.refit_seconds = refit_seconds
        self.max_watched = max_watched
        self.clock = clock
        self.history: dict[str, deque[tuple[float, float, float | None]]] = {}
        self.fits: dict[str, _Fitted] = {}
        self.watch(default_key)
        try:
            from models import prophet_model

            self._fit = prophet_model.fit_prophet
            self.available = True
        except ImportError as exc:  # prophet is a dependency; an image without it says so on /models
            log.warning("prophet unavailable: %s", exc)
            self.available = False

    def watch(self, key: str) -> None:
        if key not in self.history and len(self.history) < self.max_watched:
            self.history[key] = deque(maxlen=max(MIN_POINTS, HISTORY_SECONDS // self.config.step_seconds))

    def observe(self, key: str, t: float, values: dict[str, float]) -> None:
        """A closed window of a deployment: keep it if watched, and score the current fit on it."""
        buf = self.history.get(key)
        if buf is None or CPU not in values:
            return
        buf.append((t, values[CPU], values.get(MEMORY)))
        fit = self.fits.get(key)
        if fit is not None and t > fit.last_t:
            steps = max(1, round((t - fit.last_t) / self.config.step_seconds))
            band = fit.cpu.forecast(fit.last_t, steps, self.config.step_seconds)[-1]
            fit.errors.append(abs(band.point - values[CPU]))

    async def run(self) -> None:
        """Refit watched deployments off the event loop: first as soon as they hold enough history,
        then every ``refit_seconds``; one fit at a time, so Prophet never takes both cores."""
        loop = asyncio.get_running_loop()
        while True:
            for key in self.due():
                rows = list(self.history[key])
                try:
                    fitted = await loop.run_in_executor(None, self._fit_rows, rows)
                except Exception as exc:
                    log.warning("prophet fit for %s failed: %s", key, exc)
                    continue
                self.fits[key] = fitted
            await asyncio.sleep(CHECK_SECONDS)

    def due(self) -> list[str]:
        """Watched deployments with enough history whose fit is missing or older than ``refit_seconds``."""
        if not self.available:
            return []
        now = self.clock()
        return [
            key
            for key, buf in self.history.items()
            if len(buf) >= MIN_POINTS
            and (key not in self.fits or now - self.fits[key].fitted_at >= self.refit_seconds)
        ]

    def _fit_rows(self, rows: list[tuple[float, float, float | None]]) -> _Fitted:
        ts = [r[0] for r in rows]
        cpu = self._fit(ts, [r[1] for r in rows], self.config.level)
        mem_rows = [(r[0], r[2]) for r in rows if r[2] is not None]
        memory = (
            self._fit([t for t, _ in mem_rows], [m for _, m in mem_rows], self.config.level)
            if len(mem_rows) >= MIN_POINTS
            else None
        )
        return _Fitted(cpu=cpu, memory=memory, fitted_at=self.clock(), last_t=ts[-1])

    def prefers(self, key: str, live: DeploymentPipeline | None) -> bool:
        self.watch(key)
        fit = self.fits.get(key)
        if fit is None or fit.mae is None:
            return False
        if live is None:
            return True
        step_15m = self.config.horizon_steps.get("15m", 1)
        baseline = live.forecasters[CPU].accuracy().get(step_15m)
        return baseline is None or fit.mae < baseline[0]

    def predict(self, req: PredictRequest, key: str, config: PipelineConfig, now: float) -> PredictResponse:
        self.watch(key)
        if not self.available:
            raise BadRequest("model", "prophet is not installed in this worker", status=409)
        fit = self.fits.get(key)
        if fit is None:
            have = len(self.history.get(key, ()))
            raise BadRequest(
                "model",
                f"prophet has no fit for {key} yet: it refits every {self.refit_seconds:.0f} s once "
                f"{MIN_POINTS} aligned samples are held (this worker holds {have})",
                status=409,
            )
        step = config.step_seconds
        start = math.floor(now / step) * step
        ahead = max(0, round((start - fit.last_t) / step))
        cpu = fit.cpu.forecast(fit.last_t, ahead + req.periods, step)[ahead:]
        mem = (
            None if fit.memory is None else fit.memory.forecast(fit.last_t, ahead + req.periods, step)[ahead:]
        )
        points = [
            PredictionPoint(
                period=i + 1,
                timestamp=datetime.fromtimestamp(start + (i + 1) * step, tz=UTC),
                cpu_utilization=min(1.0, max(0.0, b.point)),
                memory_utilization=None if mem is None else min(1.0, max(0.0, mem[i].point)),
                confidence_lower=min(1.0, max(0.0, b.lower)),
                confidence_upper=min(1.0, max(0.0, b.upper)),
            )
            for i, b in enumerate(cpu)
        ]
        label = "prophet" if req.model == "prophet" else "auto->prophet"
        fitted = datetime.fromtimestamp(fit.fitted_at, tz=UTC).isoformat(timespec="seconds")
        return PredictResponse(
            predictions=points, model_used=f"{label} (fit of {fitted} for {key})", confidence=config.level
        )

    def metrics(self) -> dict[str, float]:
        maes = [f.mae for f in self.fits.values() if f.mae is not None]
        return {
            "fitted_deployments": float(len(self.fits)),
            **({"mae": sum(maes) / len(maes)} if maes else {}),
        }
