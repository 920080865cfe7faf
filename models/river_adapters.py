"""River models behind the product's interfaces: bands for forecasters, sigma scores for detectors.

* :class:`RiverForecaster` wraps any :class:`river.time_series.base.Forecaster` and gives it the verbs
  the forecast stage calls on :class:`models.forecast.OnlineForecaster` (``learn_at``, ``forecast_at``,
  ``forecast_seconds``, ``intervals``, ``accuracy``) with the same conformal band
  (:class:`models.conformal.ConformalBand`).
* :class:`RiverDetector` wraps any River anomaly detector and gives it the verbs of
  :class:`models.anomaly.StreamingDetector` (``score_one -> DetectorScore``, ``score_with_features``,
  ``learn_one``), its raw score normalised into sigma-like units against its own history:
  ``2.326 * (raw - q50) / (q99 - q50)``, with ``q50`` and ``q99`` online estimates of the raw score's
  median and 99th percentile (0 during a warm-up, never negative). Whatever the shape of a model's
  raw scores, 2.326 sigma is then its 1 % tail, as for a Gaussian, and the scale grows linearly beyond;
  so the threshold (2.5 by default), the severity, the gauges and the alerts keep their meaning (a
  plain running z of a skewed raw score flags far more than 1 % of calm points). The one
  exception is ``GaussianScorer``, whose score ``2 |Phi(z) - 0.5|`` is a probability that saturates
  at 1 (a running z of it cannot exceed about 1.6): its score is mapped back to ``|z|`` exactly.
* :class:`SafeHoltWinters` is River's Holt-Winters with its pitfalls fixed.

State: River models hold arbitrary Python objects (deques, nested estimators, random generators), so
they cannot be written as JSON in general, and Helios never pickles. ``to_dict`` therefore saves the
model's *name* (the ``HELIOS_FORECASTER`` / ``HELIOS_DETECTOR`` value) and its settings, and
``from_dict`` builds a fresh model that relearns from the stream after a restart or a takeover (a
detector stays silent for its warm-up again, a forecaster's band starts from its prior).
"""

from __future__ import annotations

import copy
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any, Literal

from river import anomaly, base
from river.time_series import HoltWinters
from river.time_series.base import Forecaster
from river.time_series.holt_winters import Trend

from models.anomaly import DetectorScore, bounded
from models.conformal import ConformalBand
from models.forecast import Interval, apply_plan, plan_seconds

__all__ = ["RiverDetector", "RiverForecaster", "SafeHoltWinters"]

#: Layout version of the adapters' ``to_dict``.
_STATE_VERSION = 1
#: sqrt(pi / 2): mean absolute deviation -> standard deviation for Gaussian noise.
_MAD_TO_SIGMA = 1.2533
_TINY = 1e-12
_NORMAL = NormalDist()
#: The standard normal's 99th percentile: a raw score at its own 99th percentile scores this.
_Z99 = _NORMAL.inv_cdf(0.99)
#: Smoothing constant of the raw score's mean absolute deviation after the warm-up.
_MAD_ALPHA = 0.01


class SafeHoltWinters(HoltWinters):
    """River's additive Holt-Winters with its known pitfalls fixed; the same parameters.

    * River starts the *additive* seasonal terms at ``y / level`` (the multiplicative rule): on a CPU
      series of about 0.4 every forecast of the first season is then about 1.0 too high. Here they
      start at ``y - level``.
    * ``beta=0`` (or ``None``) with a season makes River drop the trend component, which its additive
      seasonal update then reads (``TypeError`` on the first update). Here the trend is kept at
      exactly 0, which is what ``beta=0`` means.
    * A first season whose mean is 0 (an idle service) made River divide by zero while starting; the
      additive start above has no division.
    * Before a season has been seen River's ``forecast`` raises ``IndexError``; here it repeats the
      last value (0 before any).

    ``multiplicative=True`` is refused: it divides by the level, which is 0 on an idle series.

    Examples
    --------
    >>> hw = SafeHoltWinters(alpha=0.3, beta=0.0, gamma=0.5, seasonality=2)
    >>> for y in (0.4, 0.6, 0.4, 0.6):
    ...     hw.learn_one(y)
    >>> [round(v, 6) for v in hw.forecast(2)]  # River's own would crash on beta=0
    [0.4, 0.6]
    """

    def __init__(
        self,
        alpha: float,
        beta: float | None = None,
        gamma: float | None = None,
        seasonality: int = 0,
        multiplicative: bool = False,
    ) -> None:
        if multiplicative:
            raise ValueError(
                "multiplicative=True divides by the level, which is 0 on an idle series: "
                "use the additive form"
            )
        super().__init__(alpha, beta, gamma, seasonality, multiplicative)

    @classmethod
    def _unit_test_params(cls) -> Any:
        yield {"alpha": 0.4}
        yield {"alpha": 0.3, "beta": 0.0, "gamma": 0.5, "seasonality": 3}

    def learn_one(self, y: float, x: dict[str, Any] | None = None) -> None:
        if self._initialized:
            super().learn_one(y, x)
            return
        self._first_values.append(y)
        if len(self._first_values) < max(2, self.seasonality):
            return
        first = self._first_values
        level = statistics.mean(first)
        self.level.append(level)
        if self.trend is None and self.season is not None:
            self.trend = Trend(0.0)  # beta = 0: a trend that stays exactly 0
            self.trend.append(0.0)
        elif self.trend is not None:
            self.trend.append(statistics.mean(b - a for a, b in itertools.pairwise(first)))
        if self.season is not None:
            self.season.extend(v - level for v in first)
        self._initialized = True

    def forecast(self, horizon: int, xs: list[dict[str, Any]] | None = None) -> list[float]:
        if not self._initialized:
            last = self._first_values[-1] if self._first_values else 0.0
            return [float(last)] * horizon
        return list(super().forecast(horizon, xs))


class RiverForecaster:
    """A River forecaster with the forecast stage's verbs and Helios' conformal band.

    Parameters
    ----------
    model
        The River forecaster (learns one value per aligned step, in order).
    spec
        The model's name as given (``HELIOS_FORECASTER``), saved in :meth:`to_dict`.
    step_seconds, level, calibrated_steps
        As for :class:`models.forecast.OnlineForecaster`.
    prior_center, prior_half_width
        The band before any data, as for :class:`models.forecast.OnlineForecaster`.

    Examples
    --------
    >>> from river.time_series import SNARIMAX
    >>> spec = "river.time_series.SNARIMAX(p=1, d=0, q=0)"
    >>> f = RiverForecaster(SNARIMAX(p=1, d=0, q=0), spec, 60, 0.9, (1, 2))
    >>> for i in range(300):
    ...     f.learn_at(60.0 * i, 0.5 + 0.1 * (i % 2))
    >>> band = f.forecast_at([1])[0]
    >>> band.lower < band.point < band.upper, f.n_seen
    (True, 300)
    """

    def __init__(
        self,
        model: Forecaster,
        spec: str,
        step_seconds: int,
        level: float,
        calibrated_steps: Sequence[int],
        prior_center: float = 0.5,
        prior_half_width: float = 1.0,
    ) -> None:
        if not (isinstance(step_seconds, int) and step_seconds > 0):
            raise ValueError(f"step_seconds must be a positive integer, got {step_seconds!r}")
        self.model = model
        self.spec = spec
        self.step_seconds = step_seconds
        self.prior_center = prior_center
        self.band = ConformalBand(
            level, calibrated_steps, step_seconds=step_seconds, prior_half_width=prior_half_width
        )
        self.level = self.band.level
        self.calibrated_steps = self.band.calibrated_steps
        self._t0 = math.nan
        self._t_last = math.nan
        self._y_last = math.nan
        self._n = 0
        self._points: list[float] = []  # the model's forecasts for 1..last calibrated step

    @property
    def n_seen(self) -> int:
        return self._n

    def learn_at(self, t: float, y: float) -> None:
        """Learn ``y`` at epoch seconds ``t``; ignores a stale ``t`` or a non-finite ``y``.

        River forecasters have no notion of a gap: after skipped steps the next value is learned as the
        next step, and the band's forecasts that targeted the gap are dropped.
        """
        t, y = float(t), float(y)
        if not (math.isfinite(t) and math.isfinite(y)) or (self._n and t <= self._t_last):
            return
        if not self._n:
            self._t0 = t
        step = round((t - self._t0) / self.step_seconds)
        self.band.observe(step, y)
        self.model.learn_one(y)
        self._t_last, self._y_last = t, y
        self._n += 1
        self._points = self._predict(self.model, self.calibrated_steps[-1])
        self.band.issue(step, [self._points[h - 1] for h in self.calibrated_steps])

    def _predict(self, model: Forecaster, steps: int) -> list[float]:
        # A model that cannot say yet (NaN, inf) is replaced by the last value: a band still follows.
        fallback = self._y_last if self._n else self.prior_center
        out = [float(v) for v in model.forecast(steps)]
        return [v if math.isfinite(v) else fallback for v in out]

    def forecast_at(
        self, horizons: Sequence[int], current: tuple[float, float] | None = None
    ) -> list[Interval]:
        """Intervals at the given steps ahead, as if ``current=(t, y)`` had just been learned."""
        hs = [int(h) for h in horizons]
        if not hs:
            return []
        if hs[0] <= 0 or any(b <= a for a, b in itertools.pairwise(hs)):
            raise ValueError(f"horizons must be positive and ascending, got {hs}")
        if current is not None and math.isfinite(current[1]):
            model = copy.deepcopy(self.model)  # a throwaway copy (deepcopy, not pickle)
            model.learn_one(float(current[1]))
            points = self._predict(model, hs[-1])
        elif not self._n:
            c, w = self.prior_center, self.band.prior_half_width
            return [Interval(c, c - w, c + w)] * len(hs)
        else:
            points = self._points if len(self._points) >= hs[-1] else self._predict(self.model, hs[-1])
        out = []
        for h in hs:
            p, w = points[h - 1], self.band.half_width(h)
            out.append(Interval(p, p - w, p + w))
        return out

    def intervals(self, steps: int, current: tuple[float, float] | None = None) -> list[Interval]:
        """Intervals for steps ``1..steps``."""
        return self.forecast_at(range(1, int(steps) + 1), current)

    def forecast_seconds(
        self,
        seconds: Sequence[float],
        current: tuple[float, float] | None = None,
        between: Literal["interpolate", "refuse"] = "interpolate",
    ) -> list[Interval]:
        """As :meth:`models.forecast.OnlineForecaster.forecast_seconds`."""
        plan = plan_seconds(seconds, self.step_seconds, between)
        needed = sorted({s for lo, hi, _ in plan for s in (lo, hi) if s > 0})
        now = current[1] if current is not None else (self._y_last if self._n else self.prior_center)
        return apply_plan(plan, dict(zip(needed, self.forecast_at(needed, current), strict=True)), now)

    def accuracy(self) -> dict[int, tuple[float, float]]:
        return self.band.accuracy()

    def to_dict(self) -> dict[str, Any]:
        """The model's name and settings (not its learned state: see the module docstring)."""
        return {
            "v": _STATE_VERSION,
            "river_forecaster": self.spec,
            "step_seconds": self.step_seconds,
            "level": self.level,
            "calibrated_steps": list(self.calibrated_steps),
            "prior_center": self.prior_center,
            "prior_half_width": self.band.prior_half_width,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RiverForecaster:
        """A fresh forecaster of the saved name and settings; it relearns from the stream."""
        from models.spec import build, forecaster_spec

        if d.get("v") != _STATE_VERSION or "river_forecaster" not in d:
            raise ValueError(f"not a River forecaster's state (version {d.get('v')!r})")
        spec = forecaster_spec(d["river_forecaster"])
        return cls(
            build(spec),
            spec.text,
            int(d["step_seconds"]),
            float(d["level"]),
            [int(h) for h in d["calibrated_steps"]],
            float(d["prior_center"]),
            float(d["prior_half_width"]),
        )


class RiverDetector:
    """A River anomaly detector with the anomaly stage's verbs and a score in sigma-like units.

    Parameters
    ----------
    model
        A :class:`river.base.AnomalyDetector` (fed ``{feature: value}`` of the present features) or a
        :class:`river.base.SupervisedAnomalyDetector` such as ``GaussianScorer`` (fed the first
        feature's value as ``y``).
    spec
        The model's name as given (``HELIOS_DETECTOR``), saved in :meth:`to_dict`.
    features
        The features read from each point, in order.
    threshold
        Sigma at which a point is anomalous (as for :class:`models.anomaly.StreamingDetector`).
    warmup
        Points learned before any score is given (0 until then): River detectors and the running
        statistics need a little history.
    alpha
        Smoothing constant of the running mean absolute deviation of the raw score, which sets the step
        of the quantile trackers (``alpha`` times it) and their start at the end of the warm-up.

    A quantile tracker moves by one bounded step per point, so an anomaly barely widens the scale that
    judges the next one.

    Examples
    --------
    >>> from river import anomaly
    >>> det = RiverDetector(anomaly.GaussianScorer(), "river.anomaly.GaussianScorer()", ("cpu_utilization",))
    >>> for i in range(400):
    ...     det.learn_one({"cpu_utilization": 0.4 + 0.02 * (i % 5)})
    >>> det.score_one({"cpu_utilization": 0.42}) < 2.5 <= det.score_detail({"cpu_utilization": 0.99}).sigma
    True
    """

    def __init__(
        self,
        model: base.Estimator,
        spec: str,
        features: Sequence[str],
        threshold: float = 2.5,
        warmup: int = 150,
        alpha: float = 0.05,
    ) -> None:
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        if not features or isinstance(features, str):
            raise ValueError(f"features must be a non-empty sequence of names, got {features!r}")
        if not 0.0 < alpha <= 1.0 or warmup < 0:
            raise ValueError(f"alpha must be in (0, 1] and warmup >= 0, got {alpha!r} and {warmup!r}")
        self.model = model
        self.spec = spec
        self.features = tuple(features)
        self.threshold = float(threshold)
        self.warmup = int(warmup)
        self.alpha = float(alpha)
        self._supervised = isinstance(model, base.SupervisedAnomalyDetector)
        self._gaussian = isinstance(model, anomaly.GaussianScorer)
        self._n = 0
        self._mean = 0.0
        self._mad = 0.0
        self._q50 = 0.0
        self._q99 = 0.0
        self._last: tuple[tuple[tuple[str, float], ...], float] | None = None  # (point, raw score)

    def _point(self, x: Mapping[str, float]) -> dict[str, float]:
        out = {}
        for f in self.features:
            v = x.get(f)
            if v is not None and math.isfinite(float(v)):
                out[f] = float(v)
        return out

    def _raw(self, point: dict[str, float]) -> float:
        key = tuple(point.items())
        if self._last is not None and self._last[0] == key:
            return self._last[1]  # the stream scores a point, then learns it: score it once
        if self._supervised:
            raw = float(self.model.score_one({}, point[self.features[0]]))  # type: ignore[attr-defined]
        else:
            raw = float(self.model.score_one(point))  # type: ignore[attr-defined]
        self._last = (key, raw)
        return raw

    def _sigma(self, raw: float) -> float:
        if self._n < self.warmup or not math.isfinite(raw):
            return 0.0
        if self._gaussian:  # raw = 2 |Phi(z) - 0.5|: z back, capped where float64 runs out
            return _NORMAL.inv_cdf(min(0.5 + raw / 2.0, 1.0 - 1e-15))
        spread = self._q99 - self._q50
        return max(0.0, _Z99 * (raw - self._q50) / spread) if spread > _TINY else 0.0

    def _usable(self, point: dict[str, float]) -> bool:
        return bool(point) and (not self._supervised or self.features[0] in point)

    def score_one(self, x: Mapping[str, float]) -> float:
        """The score of one point in sigma-like units, as River's verb (the model is not changed)."""
        return self.score_detail(x).sigma

    def score_detail(self, x: Mapping[str, float]) -> DetectorScore:
        """Score one point against what was learned so far, with each feature's share."""
        point = self._point(x)
        if not self._usable(point):
            return DetectorScore(0.0, {f: 0.0 for f in point})
        sigma = bounded(self._sigma(self._raw(point)))
        # River gives one score per point: each present feature gets an equal share of it.
        return DetectorScore(sigma, {f: sigma / len(point) for f in point})

    def score_with_features(self, x: Mapping[str, float]) -> tuple[DetectorScore, list[float]]:
        """:meth:`score_detail` and no XGBoost features (the XGBoost model reads Helios' own detector)."""
        return self.score_detail(x), []

    def xgb_features(self, x: Mapping[str, float]) -> list[float]:
        """None: the shipped XGBoost model is trained on Helios' detector's parts."""
        return []

    def xgb_feature_names(self) -> list[str]:
        return []

    def n_learned(self, feature: str) -> int:
        """Points learned with ``feature`` present (the model sees a point whole)."""
        return self._n if feature in self.features else 0

    def learned_normal(self, feature: str) -> tuple[float, float] | None:
        """None: a River model keeps no per-feature level and spread (it is no fleet prior)."""
        return None

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn one point (after :meth:`score_one` on it): the running statistics, then the model."""
        point = self._point(x)
        if not self._usable(point):
            return
        raw = self._raw(point)
        if math.isfinite(raw):
            self._track(raw)
        if self._supervised:
            self.model.learn_one({}, point[self.features[0]])  # type: ignore[attr-defined]
        else:
            self.model.learn_one(point)  # type: ignore[attr-defined]
        self._last = None

    def _track(self, raw: float) -> None:
        self._n += 1
        if self._n <= self.warmup or self._n <= 2:
            # Running mean and mean absolute deviation; at the end, a Gaussian guess of the quantiles.
            w = 1.0 / self._n
            self._mad += w * (abs(raw - self._mean) - self._mad)
            self._mean += w * (raw - self._mean)
            self._q50 = self._mean
            self._q99 = self._mean + _Z99 * _MAD_TO_SIGMA * self._mad
            return
        self._mad += _MAD_ALPHA * (abs(raw - self._q50) - self._mad)
        step = self.alpha * max(self._mad, self._q99 - self._q50, _TINY)
        # Online quantile tracking: at equilibrium a fraction 1 - tau of the points lies above q_tau.
        self._q50 += step * ((1.0 if raw > self._q50 else 0.0) - 0.5)
        self._q99 += step * ((1.0 if raw > self._q99 else 0.0) - 0.01)

    def to_dict(self) -> dict[str, Any]:
        """The model's name and settings (not its learned state: see the module docstring)."""
        return {
            "format": "river",
            "v": _STATE_VERSION,
            "river_detector": self.spec,
            "features": list(self.features),
            "threshold": self.threshold,
            "warmup": self.warmup,
            "alpha": self.alpha,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RiverDetector:
        """A fresh detector of the saved name and settings; it relearns from the stream."""
        from models.spec import build, detector_spec

        if d.get("v") != _STATE_VERSION or "river_detector" not in d:
            raise ValueError(f"not a River detector's state (version {d.get('v')!r})")
        spec = detector_spec(d["river_detector"])
        return cls(
            build(spec),
            spec.text,
            [str(f) for f in d["features"]],
            float(d["threshold"]),
            int(d["warmup"]),
            float(d["alpha"]),
        )
