"""Reference forecasters the online forecaster is judged against: Holt-Winters and seasonal naive.

Both learn a value at an epoch time, ``learn_one(t, y)`` (what
:meth:`models.forecast.OnlineForecaster.learn_at` does), and ``forecast(steps)`` returns point
forecasts only. Time is mapped to a step index
``round((t - t0) / step_seconds)``; skipped steps leave the state as it was.
"""

from __future__ import annotations

import math

__all__ = ["HoltWinters", "SeasonalNaive", "holt_winters_reference"]


class HoltWinters:
    """Additive Holt-Winters with seasonal terms started at 0 and the level at the first value.

    Per step, with season length ``m``::

        level  = alpha * (y - s[t-m]) + (1 - alpha) * (level + trend)
        trend  = beta * (level - level_prev) + (1 - beta) * trend
        s[t]   = gamma * (y - level) + (1 - gamma) * s[t-m]
        yhat(t+h) = level + h * trend + s[t+h-m]      (h <= m; the last learned cycle repeats)

    Parameters
    ----------
    step_seconds
        Spacing of the steps, in seconds.
    season_seconds
        Length of the season (a day); ``m = round(season_seconds / step_seconds)``.
    alpha, beta, gamma
        Smoothing constants of the level, trend and seasonal terms, each in [0, 1].

    Examples
    --------
    >>> hw = HoltWinters(step_seconds=1, season_seconds=2, alpha=0.5, beta=0.0, gamma=0.5)
    >>> for t, y in enumerate([1.0, 3.0, 1.0]):
    ...     hw.learn_one(t, y)
    >>> hw.forecast(2)
    [2.0, 1.25]
    """

    def __init__(
        self,
        step_seconds: int,
        season_seconds: int = 86400,
        alpha: float = 0.2,
        beta: float = 0.001,
        gamma: float = 0.05,
    ) -> None:
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
        m = round(season_seconds / step_seconds)
        if m < 1:
            raise ValueError(f"season_seconds must be at least one step, got {season_seconds!r}")
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        self.step_seconds = step_seconds
        self.season_seconds = season_seconds
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self._m = m
        self._season = [0.0] * m
        self._level = 0.0
        self._trend = 0.0
        self._t0: float | None = None
        self._idx = -1

    @property
    def n_seen(self) -> int:
        return self._idx + 1 if self._t0 is not None else 0

    def learn_one(self, t: float, y: float) -> None:
        if not math.isfinite(y):
            return
        if self._t0 is None:
            self._t0 = t
            self._idx = 0
            self._level = y
            self._season[0] = self.gamma * (y - self._level)
            return
        idx = round((t - self._t0) / self.step_seconds)
        if idx <= self._idx:
            return
        # Skipped steps: roll the level along its trend.
        self._level += (idx - self._idx - 1) * self._trend
        self._idx = idx
        slot = idx % self._m
        prev = self._level
        s_old = self._season[slot]
        self._level = self.alpha * (y - s_old) + (1 - self.alpha) * (prev + self._trend)
        self._trend = self.beta * (self._level - prev) + (1 - self.beta) * self._trend
        self._season[slot] = self.gamma * (y - self._level) + (1 - self.gamma) * s_old

    def forecast(self, steps: int) -> list[float]:
        if self._t0 is None:
            return [0.0] * steps
        m = self._m
        return [
            self._level + h * self._trend + self._season[(self._idx + h) % m] for h in range(1, steps + 1)
        ]


def holt_winters_reference(
    ys: list[float], horizon: int, season: int, alpha: float = 0.2, beta: float = 0.001, gamma: float = 0.05
) -> list[float]:
    """Forecasts ``horizon`` steps ahead made after each of ``ys`` (index i predicts ``ys[i + horizon]``).

    Examples
    --------
    >>> holt_winters_reference([1.0, 3.0, 1.0], horizon=1, season=2, alpha=0.5, beta=0.0, gamma=0.5)
    [1.0, 2.0, 2.0]
    """
    hw = HoltWinters(step_seconds=1, season_seconds=season, alpha=alpha, beta=beta, gamma=gamma)
    out = []
    for i, y in enumerate(ys):
        hw.learn_one(i, y)
        out.append(hw.forecast(horizon)[-1])
    return out


class SeasonalNaive:
    """Forecast each step by the value one season earlier (the last value until a season is seen).

    Examples
    --------
    >>> sn = SeasonalNaive(step_seconds=1, season_seconds=3)
    >>> for t, y in enumerate([1.0, 2.0, 3.0, 4.0]):
    ...     sn.learn_one(t, y)
    >>> sn.forecast(4)
    [2.0, 3.0, 4.0, 2.0]
    """

    def __init__(self, step_seconds: int, season_seconds: int = 86400) -> None:
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
        m = round(season_seconds / step_seconds)
        if m < 1:
            raise ValueError(f"season_seconds must be at least one step, got {season_seconds!r}")
        self.step_seconds = step_seconds
        self.season_seconds = season_seconds
        self._m = m
        self._values: list[float | None] = [None] * m
        self._t0: float | None = None
        self._idx = -1
        self._last = 0.0

    def learn_one(self, t: float, y: float) -> None:
        if not math.isfinite(y):
            return
        if self._t0 is None:
            self._t0 = t
            idx = 0
        else:
            idx = round((t - self._t0) / self.step_seconds)
            if idx <= self._idx:
                return
            for i in range(self._idx + 1, min(idx, self._idx + 1 + self._m)):
                self._values[i % self._m] = None  # missing steps have no value a season later
        self._idx = idx
        self._values[idx % self._m] = y
        self._last = y

    def forecast(self, steps: int) -> list[float]:
        out = []
        for h in range(1, steps + 1):
            v = self._values[(self._idx + h) % self._m] if self._idx + h - self._m >= 0 else None
            out.append(self._last if v is None else v)
        return out
