"""Online point forecasts with calibrated prediction intervals, one sample at a time.

:class:`OnlineForecaster` is what the forecast stage keeps per deployment and feature:

* **Point forecast.** A few exponential smoothers -- different smoothing constants, some on the
  seasonally adjusted series (an additive daily profile of at most ``max_season_bins`` bins,
  interpolated between bins), some Huberised so that CPU spikes do not drag them -- combined with
  weights ``mae_k ** -weight_power`` from each smoother's recent absolute error *at each calibrated
  horizon* (short horizons typically favour the fast smoothers, long ones the slow, seasonal ones).
* **Interval.** Conformal quantile tracking (the online form of adaptive conformal inference, Gibbs &
  Candes 2021; Angelopoulos et al. 2023) of the absolute error at each calibrated horizon, with steps
  proportional to the current width so it is scale-free; the long-run miss rate goes to ``1 - level``
  whatever the error distribution.

Every forecast for a calibrated horizon waits in a small ring until its target step arrives and is
then scored (score, then learn): that drives both the weights and the interval. The state is JSON
(:meth:`OnlineForecaster.to_dict`), float arrays as base64 float32: about 4.8 KB with the defaults,
whatever ``step_seconds`` is.
"""

from __future__ import annotations

import base64
import copy
import itertools
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Interval", "OnlineForecaster"]

_NAN = float("nan")
_TINY = 1e-12
#: Version of :meth:`OnlineForecaster.to_dict`; bump when the layout changes.
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Interval:
    """A point forecast and its prediction interval at the forecaster's nominal level."""

    point: float
    lower: float
    upper: float


def _f32(values: array) -> str:
    return base64.b64encode(values.tobytes()).decode("ascii")


def _from_f32(text: str, size: int, name: str) -> array:
    out = array("f")
    out.frombytes(base64.b64decode(text))
    if len(out) != size:
        raise ValueError(f"state field {name!r} has {len(out)} values, expected {size}")
    return out


class OnlineForecaster:
    """Combination of robust exponential smoothers with conformal intervals, learned online.

    Parameters
    ----------
    step_seconds
        Spacing of the aligned steps fed to :meth:`learn_one`, in seconds.
    season_seconds
        Length of the seasonal cycle (a day). Use 0 to disable the seasonal profile.
    level
        Nominal coverage of the intervals, in (0, 1).
    calibrated_steps
        Horizons (in steps) whose forecast errors are tracked: the combination weights and the interval
        widths are learned for these; other horizons interpolate between them (weights and half-widths
        linearly in the horizon) and beyond the last one the half-width grows like the square root of
        the horizon.
    candidates
        The smoothers combined, as ``(alpha, seasonal, clip)``: a level smoothed with ``alpha``, on the
        seasonally adjusted series if ``seasonal``, its updates Huberised at ``clip`` times the recent
        one-step error (0: not clipped).
    season_gamma
        Learning rate of the seasonal profile once ``1 / season_gamma - season_prior`` cycles are seen;
        before that it is ``1 / (season_prior + 1 + cycles)``, a running mean shrunk towards 0, so the
        profile helps after one day without copying one noisy day.
    season_level_seconds
        Time constant of the level the seasonal deviations are measured against; much shorter than the
        season, or the level would absorb the daily shape itself.
    season_prior
        Weight, in cycles, of the profile's starting value 0 (see ``season_gamma``).
    max_season_bins
        Resolution cap of the seasonal profile; with finer steps several steps share a bin.
    clip
        Huber bound (times the recent one-step error) of the updates of the seasonal profile and level.
    error_alpha
        Smoothing constant of the per-horizon error averages (weights, ``accuracy()``).
    weight_power
        Candidate ``k`` gets weight proportional to ``mae_k ** -weight_power`` (large: close to picking
        the best smoother at that horizon, but smooth).
    coverage_lr
        Relative step of the conformal quantile tracker; before ``1 / coverage_lr`` scored forecasts the
        half-width is ``-ln(1 - level)`` times the mean absolute error (exact for Laplace errors).
    max_pending
        At most this many forecasts wait per calibrated horizon (every ``ceil(h / max_pending)``-th
        forecast is kept for scoring), which bounds the state for long horizons.
    width_clip, spread_alpha
        The tracker's step has a floor of ``step_floor`` times a spread: the exponentially weighted
        (``spread_alpha``) absolute error, each error capped at ``width_clip`` times the spread.
    symmetric
        Track one quantile of ``|error|`` (default) or, if False, each tail at ``(1 - level) / 2``.
    step_floor
        See ``width_clip``: lets a band that collapsed on a flat stretch reopen.
    prior_center, prior_half_width
        Before any data every step gets ``prior_center +- prior_half_width`` (the defaults cover any
        utilisation fraction); after one sample the band is the last value ``+- prior_half_width``.

    Examples
    --------
    >>> import math
    >>> f = OnlineForecaster(step_seconds=300, calibrated_steps=(1, 6))
    >>> f.forecast(1)[0]  # before any data: the documented wide prior band
    Interval(point=0.5, lower=-0.5, upper=1.5)
    >>> for i in range(2000):
    ...     t = 1_700_000_000 + 300 * i
    ...     f.learn_one(t, 0.5 + 0.2 * math.sin(2 * math.pi * t / 86400) + 0.02 * ((i * 7919) % 11 - 5) / 5)
    >>> f.n_seen
    2000
    >>> band = f.forecast(6)[-1]
    >>> band.lower < band.point < band.upper
    True
    >>> f2 = OnlineForecaster.from_dict(f.to_dict())
    >>> f2.forecast(12) == f.forecast(12)
    True
    """

    def __init__(
        self,
        step_seconds: int,
        season_seconds: int = 86400,
        level: float = 0.9,
        calibrated_steps: Sequence[int] = (1, 5, 15, 30, 60),
        candidates: Sequence[tuple[float, bool, float]] = (
            (0.2, True, 0.0),
            (0.2, False, 1.0),
            (0.05, True, 1.0),
            (0.6, False, 0.0),
        ),
        season_gamma: float = 0.1,
        season_level_seconds: float = 28800.0,
        season_prior: float = 1.0,
        max_season_bins: int = 288,
        clip: float = 5.0,
        error_alpha: float = 0.02,
        weight_power: float = 20.0,
        coverage_lr: float = 0.05,
        max_pending: int = 12,
        width_clip: float = 3.0,
        spread_alpha: float = 0.01,
        symmetric: bool = True,
        step_floor: float = 0.1,
        prior_center: float = 0.5,
        prior_half_width: float = 1.0,
    ) -> None:
        if not (isinstance(step_seconds, int) and step_seconds > 0):
            raise ValueError(f"step_seconds must be a positive integer, got {step_seconds!r}")
        if not (isinstance(season_seconds, int) and season_seconds >= 0):
            raise ValueError(f"season_seconds must be a non-negative integer, got {season_seconds!r}")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        steps = tuple(int(h) for h in calibrated_steps)
        if not steps or any(h < 1 for h in steps) or list(steps) != sorted(set(steps)) or steps[-1] > 1440:
            raise ValueError(
                "calibrated_steps must be strictly increasing integers in [1, 1440], "
                f"got {calibrated_steps!r}"
            )
        cands = tuple((float(a), bool(s), float(c)) for a, s, c in candidates)
        if not cands or any(not (0.0 < a <= 1.0 and c >= 0.0) for a, _, c in cands):
            raise ValueError(
                "candidates must be non-empty (alpha in (0, 1], seasonal, clip >= 0) triples, "
                f"got {candidates!r}"
            )
        for name, value in (
            ("season_gamma", season_gamma),
            ("error_alpha", error_alpha),
            ("coverage_lr", coverage_lr),
            ("spread_alpha", spread_alpha),
        ):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        if not 1 <= max_season_bins <= 2016:
            raise ValueError(f"max_season_bins must be in [1, 2016], got {max_season_bins!r}")
        if not 1 <= max_pending <= 1440:
            raise ValueError(f"max_pending must be in [1, 1440], got {max_pending!r}")
        if not season_level_seconds > 0.0:
            raise ValueError(f"season_level_seconds must be positive, got {season_level_seconds!r}")
        if not season_prior >= 0.0:
            raise ValueError(f"season_prior must be non-negative, got {season_prior!r}")
        if not (width_clip > 1.0 and step_floor >= 0.0):
            raise ValueError(
                f"width_clip must exceed 1 and step_floor be >= 0, got {width_clip!r} and {step_floor!r}"
            )
        if not clip > 0.0:
            raise ValueError(f"clip must be positive, got {clip!r}")
        if not weight_power >= 0.0:
            raise ValueError(f"weight_power must be non-negative, got {weight_power!r}")
        if not (prior_half_width > 0.0 and math.isfinite(prior_half_width) and math.isfinite(prior_center)):
            raise ValueError(
                f"prior_half_width must be positive and finite, got {prior_half_width!r} "
                f"(prior_center {prior_center!r})"
            )
        self.step_seconds = step_seconds
        self.season_seconds = season_seconds
        self.level = float(level)
        self.calibrated_steps = steps
        self.candidates = cands
        self.season_gamma = float(season_gamma)
        self.season_level_seconds = float(season_level_seconds)
        self.season_prior = float(season_prior)
        self._season_alpha = min(1.0, step_seconds / self.season_level_seconds)
        self.max_season_bins = int(max_season_bins)
        self.clip = float(clip)
        self.error_alpha = float(error_alpha)
        self.weight_power = float(weight_power)
        self.coverage_lr = float(coverage_lr)
        self.max_pending = int(max_pending)
        self.width_clip = float(width_clip)
        self.spread_alpha = float(spread_alpha)
        self.symmetric = bool(symmetric)
        self.step_floor = float(step_floor)
        self.prior_center = float(prior_center)
        self.prior_half_width = float(prior_half_width)

        # A season shorter than two steps carries no shape: disable it.
        per_season = season_seconds / step_seconds if season_seconds else 0.0
        self._bins = min(self.max_season_bins, round(per_season)) if per_season >= 2 else 0
        self._bin_seconds = season_seconds / self._bins if self._bins else 0.0
        k = len(cands)
        self._width = k + 3  # per pending slot: k candidate forecasts, combined point, band below, above
        # Horizon h keeps every stride-th forecast it issues, so at most max_pending wait for their
        # outcome: the state stays small for long horizons, which still get h / stride scores per h steps.
        strides, lengths, offsets, total = [], [], [], 0
        for h in steps:
            stride = -(-h // max_pending)
            strides.append(stride)
            lengths.append(-(-h // stride))
            offsets.append(total)
            total += lengths[-1]
        self._strides = tuple(strides)
        self._lengths = tuple(lengths)
        self._offsets = tuple(offsets)
        self._slots = total

        self._n = 0
        self._step = 0
        self._t_last = _NAN
        self._y_last = _NAN
        self._first_t = _NAN
        self._levels = [0.0] * k
        self._season_level = 0.0
        self._scale = 0.0  # recent mean absolute one-step error of the season level, for clipping
        self._season = array("f", bytes(4 * self._bins))
        self._season_mean = 0.0
        nh = len(steps)
        self._cand_mae = [[0.0] * k for _ in range(nh)]
        self._mae = [0.0] * nh
        self._lo = [0.0] * nh
        self._up = [0.0] * nh
        self._spread = [0.0] * nh
        self._cover = [1.0] * nh
        self._count = [0] * nh
        self._pending = array("f", [_NAN]) * (self._slots * self._width)

    # ------------------------------------------------------------------ helpers
    def _initial_q(self) -> float:
        # |error| / mean|error| has its `level` quantile at -ln(1 - level) for Laplace errors: a fair start.
        return -math.log(1.0 - self.level)

    def _season_at(self, t: float) -> float:
        if not self._bins:
            return 0.0
        pos = (t % self.season_seconds) / self._bin_seconds - 0.5
        i = math.floor(pos)
        frac = pos - i
        s = self._season
        b = self._bins
        return (1.0 - frac) * s[i % b] + frac * s[(i + 1) % b] - self._season_mean

    def _season_learn(self, t: float, dev: float, gamma: float) -> None:
        pos = (t % self.season_seconds) / self._bin_seconds - 0.5
        i = math.floor(pos)
        frac = pos - i
        s = self._season
        b = self._bins
        total = 0.0
        for j, w in ((i % b, 1.0 - frac), ((i + 1) % b, frac)):
            if w <= 0.0:
                continue
            old = s[j]
            s[j] = old + gamma * w * (dev - (old - self._season_mean))
            total += s[j] - old  # the float32 value actually stored
        self._season_mean += total / b

    def _clipped(self, err: float, clip: float) -> float:
        bound = clip * self._scale
        if self._n > 2 and bound > 0.0:
            return max(-bound, min(bound, err))
        return err

    def _candidate_points(self, t_target: float) -> list[float]:
        s = self._season_at(t_target) if self._bins else 0.0
        return [
            lv + s if seasonal else lv
            for lv, (_, seasonal, _) in zip(self._levels, self.candidates, strict=True)
        ]

    def _weights(self, j: int) -> list[float]:
        maes = self._cand_mae[j]
        if self._count[j] == 0:
            return [1.0 / len(maes)] * len(maes)
        floor = max(_TINY, 1e-6 * max(maes))
        best = min(maes) + floor
        # Relative to the best candidate, so a large weight_power cannot overflow.
        raw = [(best / (m + floor)) ** self.weight_power for m in maes]
        total = sum(raw)
        return [r / total for r in raw]

    def _band_calibrated(self, j: int) -> tuple[float, float]:
        """(below, above): how far under and over the point the band reaches at calibrated horizon j."""
        if self._count[j] > 0:
            return self._lo[j], self._up[j]
        # No outcome yet at this horizon: borrow from the nearest shorter horizon that has one.
        h = self.calibrated_steps[j]
        for i in range(j - 1, -1, -1):
            if self._count[i] > 0:
                f = math.sqrt(h / self.calibrated_steps[i])
                return self._lo[i] * f, self._up[i] * f
        # No outcome at all yet: twice the one-step error scale grown like sqrt(h), or the prior.
        w = self._initial_q() * 2.0 * self._scale * math.sqrt(h) if self._n >= 2 else self.prior_half_width
        return w, w

    # ------------------------------------------------------------------ verbs
    @property
    def n_seen(self) -> int:
        """Number of samples learned."""
        return self._n

    def learn_one(self, t: float, y: float) -> None:
        """Learn the value ``y`` observed at the aligned step starting at epoch seconds ``t``.

        A ``t`` not after the last learned one, and a non-finite ``y``, are ignored. Steps skipped
        (``t`` several steps after the last one) are treated as missing: forecasts that targeted them
        are not scored and the smoothers carry on from their last state.
        """
        t = float(t)
        y = float(y)
        if not (math.isfinite(t) and math.isfinite(y)):
            return
        if self._n == 0:
            self._first_t = t
            self._levels = [y - self._season_at(t) if seasonal else y for _, seasonal, _ in self.candidates]
            self._season_level = y
        else:
            if t <= self._t_last:
                return
            skipped = max(1, round((t - self._t_last) / self.step_seconds)) - 1
            if skipped:
                self._skip(skipped)
            self._step += 1
            self._score(y)
            self._update(t, y)
        self._t_last = t
        self._y_last = y
        self._n += 1
        self._issue(t)

    def _skip(self, skipped: int) -> None:
        # Forecasts made at, and aimed at, the missing steps can never be scored.
        if skipped >= self.calibrated_steps[-1]:
            self._pending = array("f", [_NAN]) * (self._slots * self._width)
            self._step += skipped
            return
        for _ in range(skipped):
            self._step += 1
            for j in range(len(self.calibrated_steps)):
                base = self._base(j, self._step)
                if base is not None:
                    for c in range(self._width):
                        self._pending[base + c] = _NAN

    def _base(self, j: int, origin: int) -> int | None:
        """Offset in the pending ring of the forecast issued at step ``origin`` for horizon ``j``."""
        stride = self._strides[j]
        if origin % stride:
            return None
        return (self._offsets[j] + (origin // stride) % self._lengths[j]) * self._width

    def _score(self, y: float) -> None:
        a = self.error_alpha
        k = len(self.candidates)
        for j, h in enumerate(self.calibrated_steps):
            base = self._base(j, self._step - h)
            if base is None:
                continue
            point = self._pending[base + k]
            if math.isnan(point):
                continue
            n = self._count[j] + 1
            w = max(a, 1.0 / n)  # running mean until 1/a samples: no start-up bias
            maes = self._cand_mae[j]
            for c in range(k):
                maes[c] += w * (abs(y - self._pending[base + c]) - maes[c])
            resid = y - point
            err = abs(resid)
            below, above = self._pending[base + k + 1], self._pending[base + k + 2]
            spread = self._spread[j]
            # Float32 storage of the issued band must not turn a value on its edge into a miss.
            covered = -below * (1.0 + 1e-6) - _TINY <= resid <= above * (1.0 + 1e-6) + _TINY
            if n * self.coverage_lr <= 1.0:
                # Too few outcomes to track a quantile: the Laplace rule on the running mean error.
                self._lo[j] = self._up[j] = self._initial_q() * (self._mae[j] + (err - self._mae[j]) / n)
            elif self.symmetric:
                self._up[j] = self._lo[j] = self._track(self._up[j], not covered, spread, 1.0 - self.level)
            else:
                # Conformal quantile tracking of each tail at (1 - level) / 2: CPU errors are skewed
                # (spikes go up), so the band is as wide as each side needs rather than twice the larger.
                tail = (1.0 - self.level) / 2.0
                self._up[j] = self._track(self._up[j], resid > above * (1.0 + 1e-6) + _TINY, spread, tail)
                self._lo[j] = self._track(self._lo[j], -resid > below * (1.0 + 1e-6) + _TINY, spread, tail)
            self._cover[j] += w * ((1.0 if covered else 0.0) - self._cover[j])
            self._mae[j] += w * (err - self._mae[j])
            # The spread ignores the excess of spikes, so one outlier does not inflate the step for days.
            capped = (
                min(err, self.width_clip * spread) if spread > _TINY and n * self.spread_alpha > 1.0 else err
            )
            self._spread[j] = spread + max(self.spread_alpha, 1.0 / n) * (capped - spread)
            self._count[j] = n

    def _track(self, q: float, miss: bool, spread: float, target: float) -> float:
        """One step of online quantile tracking (Angelopoulos et al. 2023; ACI of Gibbs & Candes 2021).

        Widen after a miss, narrow a little after a hit, so the long-run miss rate goes to ``target``;
        steps are proportional to the current width (scale-free on bursty series), floored by a fraction
        of the recent error so a band that collapsed on a flat stretch can reopen.
        """
        step = self.coverage_lr * max(q, self.step_floor * spread)
        return max(0.0, q + step * ((1.0 if miss else 0.0) - target))

    def _update(self, t: float, y: float) -> None:
        s_t = self._season_at(t)
        err = y - s_t - self._season_level
        n = self._n
        self._scale += max(self.error_alpha, 1.0 / n) * (abs(err) - self._scale)
        for c, (alpha, seasonal, clip) in enumerate(self.candidates):
            e = y - (self._levels[c] + (s_t if seasonal else 0.0))
            self._levels[c] += alpha * (self._clipped(e, clip) if clip > 0.0 else e)
        self._season_level += self._season_alpha * self._clipped(err, self.clip)
        if self._bins:
            # The profile starts at 0 and is shrunk towards 0 (constant gamma, no running-mean start): on
            # noisy CPU series one day's deviations are mostly noise, and a first day at 0 stays harmless.
            cycles = math.floor((t - self._first_t) / self.season_seconds)
            gamma = max(self.season_gamma, 1.0 / (self.season_prior + 1.0 + cycles))
            self._season_learn(t, self._clipped(y - self._season_level, self.clip), gamma)

    def _issue(self, t: float) -> None:
        k = len(self.candidates)
        for j, h in enumerate(self.calibrated_steps):
            base = self._base(j, self._step)
            if base is None:
                continue
            cands = self._candidate_points(t + h * self.step_seconds)
            weights = self._weights(j)
            for c in range(k):
                self._pending[base + c] = cands[c]
            self._pending[base + k] = sum(w * v for w, v in zip(weights, cands, strict=True))
            self._pending[base + k + 1], self._pending[base + k + 2] = self._band_calibrated(j)

    def forecast(self, steps: int, current: tuple[float, float] | None = None) -> list[Interval]:
        """Intervals for steps ``1..steps`` after the last learned step.

        With ``current=(t, y)`` the forecast is made as if ``(t, y)`` had just been learned, without
        changing this forecaster. Before any data every step gets the prior band
        ``prior_center +- prior_half_width``.
        """
        return self.forecast_at(range(1, int(steps) + 1), current)

    def forecast_at(
        self, horizons: Sequence[int], current: tuple[float, float] | None = None
    ) -> list[Interval]:
        """Intervals at the given steps ahead only (ascending), as :meth:`forecast` would give them.

        The stream publishes four horizons out of sixty steps, so it asks for just those.

        Examples
        --------
        >>> f = OnlineForecaster(step_seconds=300)
        >>> for i in range(100):
        ...     f.learn_one(i * 300.0, 0.5)
        >>> f.forecast_at([1, 6]) == [f.forecast(6)[0], f.forecast(6)[5]]
        True
        """
        if current is not None:
            clone = self._clone()
            clone.learn_one(*current)
            return clone.forecast_at(horizons)
        hs = [int(h) for h in horizons]
        if not hs:
            return []
        if any(b <= a for a, b in itertools.pairwise(hs)) or hs[0] <= 0:
            raise ValueError(f"horizons must be positive and ascending, got {hs}")
        if self._n == 0:
            c, w = self.prior_center, self.prior_half_width
            return [Interval(c, c - w, c + w)] * len(hs)
        cal = self.calibrated_steps
        bands = [self._band_calibrated(j) for j in range(len(cal))]
        weights = [self._weights(j) for j in range(len(cal))]
        out: list[Interval] = []
        j = 0
        for h in hs:
            while j < len(cal) - 1 and cal[j + 1] <= h:
                j += 1
            if h <= cal[0] or h >= cal[-1]:
                # Outside the calibrated range the band grows (or shrinks) like sqrt(h).
                edge = 0 if h <= cal[0] else -1
                f = math.sqrt(h / cal[edge])
                wts, below, above = weights[edge], bands[edge][0] * f, bands[edge][1] * f
            else:
                f = (h - cal[j]) / (cal[j + 1] - cal[j])
                wts = [(1 - f) * a + f * b for a, b in zip(weights[j], weights[j + 1], strict=True)]
                below = (1 - f) * bands[j][0] + f * bands[j + 1][0]
                above = (1 - f) * bands[j][1] + f * bands[j + 1][1]
            cands = self._candidate_points(self._t_last + h * self.step_seconds)
            point = sum(w * v for w, v in zip(wts, cands, strict=True))
            out.append(Interval(point, point - below, point + above))
        return out

    def _clone(self) -> OnlineForecaster:
        # A copy whose learning cannot touch this one: every mutable container is copied.
        other = copy.copy(self)
        other._levels = list(self._levels)
        other._season = array("f", self._season)
        other._cand_mae = [list(row) for row in self._cand_mae]
        for name in ("_mae", "_spread", "_lo", "_up", "_cover", "_count"):
            setattr(other, name, list(getattr(self, name)))
        other._pending = array("f", self._pending)
        return other

    def accuracy(self) -> dict[int, tuple[float, float]]:
        """Per calibrated horizon: (recent mean absolute error, recent interval coverage in [0, 1]).

        Both are exponentially weighted (``error_alpha``). A horizon with no scored forecast yet
        reports ``(0.0, 1.0)``.
        """
        return {
            h: ((self._mae[j], self._cover[j]) if self._count[j] else (0.0, 1.0))
            for j, h in enumerate(self.calibrated_steps)
        }

    # ------------------------------------------------------------------ persistence
    def _params(self) -> dict[str, Any]:
        return {
            "step_seconds": self.step_seconds,
            "season_seconds": self.season_seconds,
            "level": self.level,
            "calibrated_steps": list(self.calibrated_steps),
            "candidates": [[a, s, c] for a, s, c in self.candidates],
            "season_gamma": self.season_gamma,
            "season_level_seconds": self.season_level_seconds,
            "season_prior": self.season_prior,
            "max_season_bins": self.max_season_bins,
            "clip": self.clip,
            "error_alpha": self.error_alpha,
            "weight_power": self.weight_power,
            "coverage_lr": self.coverage_lr,
            "max_pending": self.max_pending,
            "width_clip": self.width_clip,
            "spread_alpha": self.spread_alpha,
            "symmetric": self.symmetric,
            "step_floor": self.step_floor,
            "prior_center": self.prior_center,
            "prior_half_width": self.prior_half_width,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (parameters and learned state); float arrays are base64 float32."""

        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "v": _STATE_VERSION,
            "params": self._params(),
            "n": self._n,
            "step": self._step,
            "t_last": num(self._t_last),
            "y_last": num(self._y_last),
            "first_t": num(self._first_t),
            "levels": self._levels,
            "season_level": self._season_level,
            "scale": self._scale,
            "season": _f32(self._season),
            "season_mean": self._season_mean,
            "cand_mae": self._cand_mae,
            "mae": self._mae,
            "spread": self._spread,
            "lo": self._lo,
            "up": self._up,
            "cover": self._cover,
            "count": self._count,
            "pending": _f32(self._pending),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OnlineForecaster:
        """Rebuild a forecaster from :meth:`to_dict` output; it forecasts exactly as the original."""
        if d.get("v") != _STATE_VERSION:
            raise ValueError(
                f"unsupported forecaster state version {d.get('v')!r}, expected {_STATE_VERSION}"
            )
        p = dict(d["params"])
        p["candidates"] = [tuple(c) for c in p["candidates"]]
        m = cls(**p)

        def num(x: float | None) -> float:
            return _NAN if x is None else float(x)

        m._n = int(d["n"])
        m._step = int(d["step"])
        m._t_last = num(d["t_last"])
        m._y_last = num(d["y_last"])
        m._first_t = num(d["first_t"])
        m._levels = [float(x) for x in d["levels"]]
        m._season_level = float(d["season_level"])
        m._scale = float(d["scale"])
        m._season = _from_f32(d["season"], m._bins, "season")
        m._season_mean = float(d["season_mean"])
        m._cand_mae = [[float(x) for x in row] for row in d["cand_mae"]]
        m._mae = [float(x) for x in d["mae"]]
        m._spread = [float(x) for x in d["spread"]]
        m._lo = [float(x) for x in d["lo"]]
        m._up = [float(x) for x in d["up"]]
        m._cover = [float(x) for x in d["cover"]]
        m._count = [int(x) for x in d["count"]]
        m._pending = _from_f32(d["pending"], m._slots * m._width, "pending")
        if len(m._levels) != len(m.candidates) or len(m._mae) != len(m.calibrated_steps):
            raise ValueError("forecaster state does not match its parameters")
        return m
