"""A conformal prediction band for any point forecaster, learned online.

:class:`ConformalBand` gives a model that only makes point forecasts (a River forecaster, say) the
band :class:`models.forecast.OnlineForecaster` gives its own: per calibrated horizon, the absolute
error of the forecasts issued ``h`` steps earlier drives an online quantile tracker
(:func:`models.forecast.track_quantile`, the same function and the same defaults), started with the
Laplace rule ``-ln(1 - level)`` times the running mean absolute error until ``1 / coverage_lr``
forecasts were scored; the tracker's step is floored by a fraction of the recent (capped) error so a
band that collapsed on a flat stretch reopens. Between calibrated horizons the half-width is
interpolated linearly, beyond the last it grows like the square root of the horizon -- again as the
online forecaster does.

Score, then learn: :meth:`ConformalBand.observe` scores the forecasts that targeted a step before
:meth:`ConformalBand.issue` files the ones made after learning it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from models.forecast import averaging, track_quantile

__all__ = ["ConformalBand"]


class ConformalBand:
    """Symmetric conformal half-widths at the calibrated horizons of a point forecaster.

    Parameters
    ----------
    level
        Nominal coverage, in (0, 1).
    calibrated_steps
        Strictly increasing horizons, in steps, whose errors are tracked.
    step_seconds
        Seconds between steps: the half-lives below become per-step constants at this step
        (:func:`models.forecast.averaging`), so the band's memory in time is the same at every step.
    coverage_lr, width_clip, spread_half_life, step_floor, error_half_life, min_outcomes, prior_half_width
        As for :class:`models.forecast.OnlineForecaster` (same defaults).

    Examples
    --------
    >>> band = ConformalBand(level=0.9, calibrated_steps=(1, 2))
    >>> for step in range(400):
    ...     y = float(step % 2)  # the forecast below is always off by 0.5
    ...     band.observe(step, y)
    ...     band.issue(step, [0.5, 0.5])
    >>> mae, coverage = band.accuracy()[1]
    >>> round(mae, 6), 0.85 < coverage < 0.95, 0.45 < band.half_width(1) < 0.55
    (0.5, True, True)
    """

    def __init__(
        self,
        level: float,
        calibrated_steps: Sequence[int],
        step_seconds: int = 300,
        coverage_lr: float = 0.05,
        width_clip: float = 3.0,
        spread_half_life: float = 20690.0,
        step_floor: float = 0.1,
        error_half_life: float = 10293.0,
        min_outcomes: int = 50,
        prior_half_width: float = 1.0,
    ) -> None:
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        steps = tuple(int(h) for h in calibrated_steps)
        if not steps or steps[0] < 1 or list(steps) != sorted(set(steps)):
            raise ValueError(f"calibrated_steps must be strictly increasing positive integers, got {steps!r}")
        if not (isinstance(step_seconds, int) and step_seconds > 0):
            raise ValueError(f"step_seconds must be a positive integer, got {step_seconds!r}")
        for name, value in (("spread_half_life", spread_half_life), ("error_half_life", error_half_life)):
            if not 0.0 <= value < math.inf:
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
        if not (isinstance(min_outcomes, int) and min_outcomes >= 1):
            raise ValueError(f"min_outcomes must be a positive integer, got {min_outcomes!r}")
        self.level = float(level)
        self.step_seconds = step_seconds
        self.calibrated_steps = steps
        self.coverage_lr = coverage_lr
        self.width_clip = width_clip
        self.spread_half_life = spread_half_life
        self.step_floor = step_floor
        self.error_half_life = error_half_life
        self.min_outcomes = min_outcomes
        self.spread_alpha = averaging(spread_half_life, step_seconds, min_outcomes)
        self.error_alpha = averaging(error_half_life, step_seconds, min_outcomes)
        self.prior_half_width = prior_half_width
        n = len(steps)
        self._q = [0.0] * n
        self._mae = [0.0] * n
        self._spread = [0.0] * n
        self._cover = [1.0] * n
        self._count = [0] * n
        #: per horizon: (target step, point, half-width issued with it), oldest first
        self._pending: list[deque[tuple[int, float, float]]] = [deque() for _ in steps]

    def observe(self, step: int, y: float) -> None:
        """Score the forecasts that targeted ``step`` (an index of the aligned steps) on its value."""
        a, sa, lr = self.error_alpha, self.spread_alpha, self.coverage_lr
        initial_q = -math.log(1.0 - self.level)
        for j, pending in enumerate(self._pending):
            while pending and pending[0][0] < step:  # lost to a gap
                pending.popleft()
            if not pending or pending[0][0] != step:
                continue
            _, point, half = pending.popleft()
            err = abs(y - point)
            n = self._count[j] + 1
            inv = 1.0 / n
            w = max(inv, a)
            covered = err <= half * (1.0 + 1e-9)
            mae, spread = self._mae[j], self._spread[j]
            if n * lr <= 1.0:
                self._q[j] = initial_q * (mae + (err - mae) / n)
            else:
                self._q[j] = track_quantile(
                    self._q[j], not covered, spread, 1.0 - self.level, lr, self.step_floor
                )
            self._cover[j] += w * ((1.0 if covered else 0.0) - self._cover[j])
            self._mae[j] = mae + w * (err - mae)
            capped = min(err, self.width_clip * spread) if spread > 0.0 and n * sa > 1.0 else err
            self._spread[j] = spread + max(inv, sa) * (capped - spread)
            self._count[j] = n

    def issue(self, step: int, points: Sequence[float]) -> None:
        """File the point forecasts made at ``step`` for each calibrated horizon, with today's band."""
        for j, (h, point) in enumerate(zip(self.calibrated_steps, points, strict=True)):
            if math.isfinite(point):
                self._pending[j].append((step + h, float(point), self._calibrated(j)))

    def _calibrated(self, j: int) -> float:
        if self._count[j]:
            return self._q[j]
        # No outcome yet at this horizon: borrow from the nearest shorter one that has one.
        h = self.calibrated_steps[j]
        for i in range(j - 1, -1, -1):
            if self._count[i]:
                return self._q[i] * math.sqrt(h / self.calibrated_steps[i])
        return self.prior_half_width

    def half_width(self, h: int) -> float:
        """The half-width at ``h`` steps ahead: interpolated between calibrated horizons, else sqrt(h)."""
        cal = self.calibrated_steps
        if h <= cal[0]:
            return self._calibrated(0) * math.sqrt(h / cal[0])
        if h >= cal[-1]:
            return self._calibrated(len(cal) - 1) * math.sqrt(h / cal[-1])
        j = max(i for i, c in enumerate(cal) if c <= h)
        f = (h - cal[j]) / (cal[j + 1] - cal[j])
        return (1.0 - f) * self._calibrated(j) + f * self._calibrated(j + 1)

    def accuracy(self) -> dict[int, tuple[float, float]]:
        """Per calibrated horizon: (recent mean absolute error, recent coverage); ``(0, 1)`` before any."""
        return {
            h: ((self._mae[j], self._cover[j]) if self._count[j] else (0.0, 1.0))
            for j, h in enumerate(self.calibrated_steps)
        }

    def params(self) -> dict[str, Any]:
        """The constructor's arguments."""
        return {
            "level": self.level,
            "calibrated_steps": list(self.calibrated_steps),
            "step_seconds": self.step_seconds,
            "coverage_lr": self.coverage_lr,
            "width_clip": self.width_clip,
            "spread_half_life": self.spread_half_life,
            "step_floor": self.step_floor,
            "error_half_life": self.error_half_life,
            "min_outcomes": self.min_outcomes,
            "prior_half_width": self.prior_half_width,
        }
