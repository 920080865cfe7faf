"""The ``prophet`` model of the design's ``/predict``: a small Prophet fit on recent history.

Prophet is a batch model, so it is refitted from the recent samples (at most ``MAX_HISTORY_SECONDS``)
rather than updated online; :func:`fit_prophet` blocks for a second or so and is meant to run in a
thread executor. Only daily seasonality is modelled (two days of history cannot support more), and
Prophet's and cmdstanpy's logging is silenced.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.forecast import Interval

__all__ = ["MAX_HISTORY_SECONDS", "ProphetFit", "fit_prophet"]

#: History used for a fit: two days, enough for a daily profile and fast to fit.
MAX_HISTORY_SECONDS = 2 * 86400
#: Fewer samples than this and Prophet's fit is meaningless; the fit falls back to the last value.
MIN_SAMPLES = 12


def _silence() -> None:
    # A handler of our own stops cmdstanpy installing its INFO console handler on first use, and keeps
    # Python's last-resort handler from printing prophet's "plotly failed" error at import.
    for name in ("prophet", "cmdstanpy", "prophet.plot"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
        logger.setLevel(logging.CRITICAL)
        logger.propagate = False


@dataclass(frozen=True)
class ProphetFit:
    """A fitted Prophet model (or, with too little data, a flat fallback band).

    Attributes
    ----------
    level
        Nominal coverage of the intervals.
    model
        The fitted ``prophet.Prophet``, or ``None`` for the fallback.
    last_value, spread
        The fallback: ``last_value +- spread``.
    """

    level: float
    model: Any
    last_value: float
    spread: float

    def forecast(self, t_from: float, steps: int, step_seconds: int) -> list[Interval]:
        """Intervals at ``t_from + k * step_seconds`` for ``k = 1..steps`` (epoch seconds)."""
        if steps <= 0:
            return []
        if self.model is None:
            v, w = self.last_value, self.spread
            return [Interval(v, v - w, v + w)] * steps
        times = t_from + step_seconds * np.arange(1, steps + 1, dtype=float)
        future = pd.DataFrame({"ds": pd.to_datetime(times, unit="s")})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas deprecations inside prophet, not ours to fix
            pred = self.model.predict(future)
        return [
            Interval(float(p), float(lo), float(hi))
            for p, lo, hi in zip(pred["yhat"], pred["yhat_lower"], pred["yhat_upper"], strict=True)
        ]


def fit_prophet(ts: Sequence[float], ys: Sequence[float], level: float = 0.9) -> ProphetFit:
    """Fit Prophet (daily seasonality, interval width ``level``) on the last two days of ``(ts, ys)``.

    ``ts`` are epoch seconds. Non-finite values are dropped. With fewer than ``MIN_SAMPLES`` usable
    samples no Prophet model is fitted and the result forecasts the last value with a band of the
    observed range (or 0 without data).

    Examples
    --------
    >>> fit = fit_prophet([0.0, 60.0], [0.4, 0.5])
    >>> fit.model is None, fit.forecast(0.0, 2, 60)[0]
    (True, Interval(point=0.5, lower=0.4, upper=0.6))
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    pairs = [
        (float(t), float(y)) for t, y in zip(ts, ys, strict=True) if math.isfinite(t) and math.isfinite(y)
    ]
    pairs.sort()
    if pairs:
        t_end = pairs[-1][0]
        pairs = [p for p in pairs if p[0] > t_end - MAX_HISTORY_SECONDS]
    values = [y for _, y in pairs]
    if len(pairs) < MIN_SAMPLES:
        last = values[-1] if values else 0.0
        spread = (max(values) - min(values)) if len(values) > 1 else abs(last)
        return ProphetFit(level=level, model=None, last_value=last, spread=spread)
    _silence()
    from prophet import Prophet  # imported lazily: it is slow to import and only this path needs it

    _silence()  # again: cmdstanpy configures its logger when first imported

    frame = pd.DataFrame({"ds": pd.to_datetime([t for t, _ in pairs], unit="s"), "y": values})
    days = (pairs[-1][0] - pairs[0][0]) / 86400
    model = Prophet(
        daily_seasonality=days >= 1.0,
        weekly_seasonality=False,
        yearly_seasonality=False,
        interval_width=level,
        uncertainty_samples=200,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas deprecations inside prophet, not ours to fix
        model.fit(frame, algorithm="LBFGS", iter=2000)
    return ProphetFit(level=level, model=model, last_value=values[-1], spread=0.0)
