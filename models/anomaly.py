"""Streaming anomaly detector: robust running statistics, learned envelopes and one alarm per event.

For every feature the detector keeps a handful of numbers (23 floats, plus ``season_bins`` with a
daily profile):

* exponentially weighted means and mean absolute deviations at a fast and a slow time scale, giving the
  *level surprise* ``|x - mean| / (1.2533 * mad)`` (1.2533 = sqrt(pi/2) turns a mean absolute deviation
  into a standard deviation for Gaussian noise), clipped so one outlier cannot dominate;
* an *anomaly likelihood* layer in the spirit of Numenta's: a short average of the level surprise is
  compared with the long-run mean and spread of the surprise itself, which puts noisy and quiet series
  on one scale (``z``);
* *envelopes*: slowly decaying running minimum and maximum of three signals -- the value, its fast
  moving average (level shifts) and the fast moving average of ``|x_t - x_{t-1}|`` (volatility). A point
  that leaves an envelope is new behaviour; its *novelty* is the excursion as a fraction of the envelope
  width;
* a coarse *daily profile* (``season_bins`` bins over ``season_length`` points, linearly interpolated)
  of the primary features: the fast moving average of the value's residual from that profile also has
  an envelope, so a day whose shape changes *inside* the usual range is new behaviour too. Its novelty is
  weighted by how much of the series' variation the profile explains (``1 - residual MAD / MAD``, at
  least 0), which keeps it silent on series without a daily cycle;
* the decayed *peak* of recent raw scores: a point only scores what it adds above that peak, so an event
  raises one alarm rather than a train of them (NAB, and an on-call human, penalise repeated alarms).

The raw score of a feature is ``novelty * n / (n + maturity) + likelihood_weight * max(0, z -
likelihood_floor)`` in sigma-equivalents, where ``novelty`` is the largest of the envelope novelties in
units of ``novelty_unit`` (``season_unit`` for the seasonal one): one sigma is an excursion of that
fraction of the envelope width, or one sigma of the likelihood ``z`` above its floor. The reported sigma
is its excess over the decayed peak, never negative.

Points that score at or above the threshold are winsorised before they update the running means and
deviations, so an anomaly does not teach the detector that it is normal; the envelopes do absorb the new
extreme, which together with the peak is what makes the score fire once per event.
"""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from river import base as river_base

from models.features import CPU, FEATURES, MEMORY
from models.params import arguments, given, reads_params, shared

# Layout of one feature's state, an array('d') (8 bytes a number); kept flat so a step costs a few
# dozen float operations.
_N, _PREV, _MF, _DF, _MS, _DS, _SM, _LM, _LV, _K, _FM, _FD = range(12)
_VLO, _VHI, _MLO, _MHI, _DLO, _DHI, _PEAK = range(12, 19)
# seasonal residual: its moving average, that average's envelope, its mean absolute value; then the bins
_RS, _RLO, _RHI, _RD = range(19, 23)
_STATE_LEN = 23
_STATE_FORMAT = 2
_OLD_STATE_LEN = 19  # format 1: no seasonal part

#: sqrt(pi / 2): mean absolute deviation -> standard deviation for Gaussian noise.
_MAD_TO_SIGMA = 1.2533
_TINY = 1e-12
#: The narrowest envelope width, as a fraction of the series' magnitude plus an absolute least.
_RELATIVE_WIDTH = 1e-3
_LEAST_WIDTH = 1e-9
#: Largest magnitude of a value the detector takes (see ``_values``).
_LARGEST = 1e150

Severity = Literal["normal", "warning", "critical"]


@dataclass(frozen=True)
class DetectorScore:
    """The detector's verdict on one point.

    Attributes
    ----------
    sigma
        The score in sigma-equivalents: the largest per-feature score (0 before any data).
    contributions
        Each scored feature's share of ``sigma``; the shares are proportional to the per-feature scores
        and **sum to** ``sigma`` (all zero when ``sigma`` is zero).
    """

    sigma: float
    contributions: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CombinedScore:
    """Streaming sigma combined with the XGBoost probability (see :func:`combine`)."""

    score: float
    is_anomaly: bool
    severity: Severity
    contributions: list[tuple[str, float]]
    parts: dict[str, float]


def _new_state(v: float, length: int) -> array:
    s = [0.0] * _STATE_LEN + [v] * (length - _STATE_LEN)
    s[_PREV] = s[_MF] = s[_MS] = s[_FM] = v
    s[_VLO] = s[_VHI] = s[_MLO] = s[_MHI] = v
    return array("d", s)  # 8 bytes a number rather than a list's 32; from a list: sized exactly


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """The arguments of a :class:`StreamingDetector` with their defaults (documented there), validated.

    The one declaration of the detector's parameters: its constructor, attributes, clone and saved
    form are derived from these fields (see :mod:`models.params`). Immutable and shared: detectors built
    with the same arguments hold the same object, so a detector itself only holds its per-feature state.
    The values are kept as given (they are saved as given), except that ``threshold`` becomes a float
    and the counts ints.
    """

    features: tuple[str, ...] = FEATURES
    threshold: float = 2.5
    fast_alpha: float = 0.1
    slow_alpha: float = 0.01
    trend_alpha: float = 0.03
    short_alpha: float = 0.3
    long_alpha: float = 0.001
    envelope_decay: float = 1e-5
    peak_decay: float = 0.98
    novelty_unit: float = 0.008
    likelihood_weight: float = 1.25
    likelihood_floor: float = 3.0
    surprise_clip: float = 10.0
    warmup: int = 50
    season_length: int = 1440
    season_features: tuple[str, ...] = (CPU, MEMORY)
    season_bins: int = 24
    season_alpha: float = 0.2
    season_smooth: float = 0.03
    season_unit: float = 0.03
    season_floor: float = 0.05
    maturity: float = 200.0
    #: Bins actually used (a profile cannot be finer than one point per bin).
    bins: int = field(init=False)

    def __post_init__(self) -> None:
        self._validate()
        derive = functools.partial(object.__setattr__, self)  # the documented way into a frozen dataclass
        derive("threshold", float(self.threshold))
        for name in ("warmup", "season_length", "season_bins"):
            derive(name, int(getattr(self, name)))
        derive("bins", min(self.season_bins, self.season_length))

    def _validate(self) -> None:
        features = self.features
        if isinstance(features, str) or not features or len(set(features)) != len(features):
            raise ValueError(f"features must be a non-empty sequence of distinct names, got {features!r}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold!r}")
        for name in _UNIT_RATES:
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        if not self.slow_alpha < self.fast_alpha:
            raise ValueError(
                f"slow_alpha ({self.slow_alpha}) must be smaller than fast_alpha ({self.fast_alpha})"
            )
        if not 0.0 <= self.envelope_decay < 1.0:
            raise ValueError(f"envelope_decay must be in [0, 1), got {self.envelope_decay!r}")
        for name in ("novelty_unit", "surprise_clip", "season_unit"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for name, least in (("likelihood_weight", 0), ("warmup", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)!r}")
        if self.season_length < 0 or self.season_length == 1:
            raise ValueError(f"season_length must be 0 (off) or >= 2, got {self.season_length!r}")
        for name, least in (("season_bins", 2), ("maturity", 0), ("season_floor", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)!r}")
        if isinstance(self.season_features, str):
            raise ValueError(f"season_features must be a sequence of names, got {self.season_features!r}")

    def to_dict(self) -> dict[str, Any]:
        """The constructor's arguments, JSON-safe (the ``params`` of :meth:`StreamingDetector.to_dict`)."""
        return arguments(self)


if TYPE_CHECKING:
    # To the type checker a detector has its parameters' attributes, which reads_params installs.
    _DetectorAttributes = DetectorParams
else:

    class _DetectorAttributes:
        __slots__ = ()


#: Parameters that are rates in (0, 1].
_UNIT_RATES = (
    "fast_alpha",
    "slow_alpha",
    "trend_alpha",
    "short_alpha",
    "long_alpha",
    "peak_decay",
    "season_alpha",
    "season_smooth",
)


@reads_params(DetectorParams)
class StreamingDetector(_DetectorAttributes, river_base.AnomalyDetector):
    """Per-feature streaming anomaly scorer with compact JSON state.

    A River anomaly detector: :meth:`score_one` returns the score as a float (sigma-equivalents) and
    :meth:`learn_one` learns a point, so River's tooling (``clone``, ``_get_params``, its estimator
    checks, its evaluation loops) works on it. The product reads the richer :meth:`score_detail`
    (per-feature contributions) and :meth:`score_with_features` (with the XGBoost row).

    Parameters
    ----------
    features
        Feature names scored; others in ``x`` are ignored, missing ones are skipped (so are values that
        are not finite or beyond +-1e150).
    threshold
        sigma at or above which a point is anomalous (also the winsorising level for learning).
    fast_alpha, slow_alpha
        Smoothing factors of the fast and slow running mean/deviation (0 < slow < fast <= 1).
    trend_alpha
        Smoothing factor of the moving average and moving volatility whose envelopes are tracked.
    short_alpha
        Smoothing of the level surprise before the likelihood layer (1 = none).
    long_alpha
        Smoothing of the long-run mean and variance of the surprise (about 1 / memory in points).
    envelope_decay
        Fraction of the distance to the centre by which an envelope edge relaxes per point, so that
        extremes seen long ago are slowly forgotten.
    peak_decay
        Per-point decay of the remembered peak score (closer to 1 = longer re-alarm suppression).
    novelty_unit
        Envelope excursion (as a fraction of envelope width) that counts as one sigma.
    likelihood_weight, likelihood_floor
        Weight of the likelihood ``z`` above ``likelihood_floor`` in the raw score.
    surprise_clip
        Clip of the level surprise (sigma) and of the deviation used to update the means.
    warmup
        Points seen before any score is produced (the envelopes need a few points of history).
    season_length
        Points per day (``86400 / sampling interval``; 1440 = the pipeline's default 60 s interval);
        0 switches the daily profile off. The phase is the count of learned points, so the caller
        must learn one point per interval (the aligner's closed windows).
    season_features
        Features that get a daily profile (the primary ones; the profile dominates the state size).
    season_bins
        Bins of the daily profile (at most ``season_length``).
    season_alpha
        Fraction of a bin's distance to the day's value learned per day.
    season_smooth
        Smoothing factor of the moving average of the residual from the profile.
    season_unit
        Excursion of that average beyond its envelope, as a fraction of the envelope width, counting
        as one sigma (the envelope width is at least ``season_floor`` of the value envelope's width).
    season_floor
        Lower bound of the residual envelope's width as a fraction of the value envelope's width.
    maturity
        Envelope novelty is weighted by ``n / (n + maturity)`` after ``n`` points: a young envelope is
        breached often (the first day of a daily cycle is all new extremes), an old one rarely.

    Examples
    --------
    >>> det = StreamingDetector(features=["cpu_utilization"])
    >>> det.score_one({"cpu_utilization": 0.5})
    0.0
    >>> for i in range(300):
    ...     x = {"cpu_utilization": 0.5 + 0.01 * ((i * 7) % 5)}
    ...     _ = det.score_one(x)
    ...     det.learn_one(x)
    >>> det.score_one({"cpu_utilization": 0.52})
    0.0
    >>> spike = det.score_detail({"cpu_utilization": 0.95})
    >>> spike.sigma > det.threshold, severity(spike.sigma, det.threshold)
    (True, 'critical')
    >>> StreamingDetector(features=["cpu_utilization"]).params is det.params  # shared, never copied
    True
    >>> det.clone().threshold, "threshold" in det._get_params()  # River's parameter protocol
    (2.5, True)
    """

    __slots__ = ("_state", "params")

    def __init__(
        self,
        features: Sequence[str] = FEATURES,
        threshold: float = 2.5,
        *,
        fast_alpha: float = 0.1,
        slow_alpha: float = 0.01,
        trend_alpha: float = 0.03,
        short_alpha: float = 0.3,
        long_alpha: float = 0.001,
        envelope_decay: float = 1e-5,
        peak_decay: float = 0.98,
        novelty_unit: float = 0.008,
        likelihood_weight: float = 1.25,
        likelihood_floor: float = 3.0,
        surprise_clip: float = 10.0,
        warmup: int = 50,
        season_length: int = 1440,
        season_features: Sequence[str] = (CPU, MEMORY),
        season_bins: int = 24,
        season_alpha: float = 0.2,
        season_smooth: float = 0.03,
        season_unit: float = 0.03,
        season_floor: float = 0.05,
        maturity: float = 200.0,
    ) -> None:
        # The signature is River's (and the type checker's) view of DetectorParams, kept equal to it by
        # the unit tests; taken first thing, locals() is exactly the arguments.
        self.params = shared(DetectorParams, given(locals()))
        self._state: dict[str, array] = {}

    def _state_len(self, feature: str) -> int:
        p = self.params
        seasonal = p.season_length and feature in p.season_features
        return _STATE_LEN + p.bins if seasonal else _STATE_LEN

    def _season(self, s: array) -> tuple[int, int, float, float]:
        """(bin, next bin, weight of the next bin, interpolated profile) at the current point's phase."""
        length, bins = self.params.season_length, self.params.bins
        # bin b covers phases [b, b + 1) * length / bins; its value sits at the bin's centre
        u = (s[_N] % length) * bins / length - 0.5 + 0.5 * bins / length
        lo = math.floor(u)
        w = u - lo
        i0 = lo % bins
        i1 = (i0 + 1) % bins
        return i0, i1, w, s[_STATE_LEN + i0] * (1.0 - w) + s[_STATE_LEN + i1] * w

    # -- core step ------------------------------------------------------------------------------

    def _parts(self, s: array, v: float) -> tuple[float, float, float, list[float]]:
        """(level surprise, raw score, sigma, explanatory parts) of ``v`` against ``s`` (left unchanged)."""
        p = self.params
        clip = p.surprise_clip
        vlo, vhi = s[_VLO], s[_VHI]  # each read of an array makes a float: read once
        # No width is narrower than a thousandth of the series' magnitude: a series that has been
        # constant has no spread to divide by, and its first change must score large, not infinite.
        least = _RELATIVE_WIDTH * abs(s[_MS]) + _LEAST_WIDTH
        vw = vhi - vlo
        if vw < least:
            vw = least
        floor = 0.01 * vw + _TINY  # a flat series has zero deviation; measure against 1 % of its range
        zf = min(clip, abs(v - s[_MF]) / (_MAD_TO_SIGMA * s[_DF] + floor))
        zs = min(clip, abs(v - s[_MS]) / (_MAD_TO_SIGMA * s[_DS] + floor))
        raw = zf if zf > zs else zs
        sm = s[_SM]
        sm += p.short_alpha * (raw - sm)
        n = s[_N]
        z = (sm - s[_LM]) / math.sqrt(s[_LV] + 1e-6) if s[_K] > p.warmup else 0.0
        if n > p.warmup:
            fm = s[_FM]
            fm += p.trend_alpha * (v - fm)
            fd = s[_FD]
            fd += p.trend_alpha * (abs(v - s[_PREV]) - fd)
            nv = max(0.0, v - vhi, vlo - v) / vw
            lo, hi = s[_MLO], s[_MHI]
            w = hi - lo
            nm = max(0.0, fm - hi, lo - fm) / (w if w > least else least)
            lo, hi = s[_DLO], s[_DHI]
            w = hi - lo
            least_step = _RELATIVE_WIDTH * vw  # steps are measured against the value's own range
            nd = max(0.0, fd - hi, lo - fd) / (w if w > least_step else least_step)
        else:
            nv = nm = nd = 0.0
        novelty = _bounded(max(nv, nm, nd)) / p.novelty_unit
        if len(s) > _STATE_LEN and n >= 2 * p.season_length:
            rs = s[_RS]
            rs += p.season_smooth * (v - self._season(s)[3] - rs)
            lo, hi = s[_RLO], s[_RHI]
            w = max(hi - lo, p.season_floor * vw)
            # weight: the share of the series' variation the daily profile explains
            explained = 1.0 - s[_RD] / (s[_DS] + _TINY)
            if explained > 0.0:
                ns = explained * _bounded(max(0.0, rs - hi, lo - rs) / w)
                novelty = max(novelty, ns / p.season_unit)
        # A young envelope is breached often (the i.i.d. record rate is 1/n): trust it as it matures.
        novelty *= n / (n + p.maturity)
        score = novelty + p.likelihood_weight * max(0.0, z - p.likelihood_floor)
        peak = s[_PEAK]
        sigma = score - peak if score > peak else 0.0
        return raw, score, sigma, [sigma, nv, nm, nd, z, zf, zs]

    def _learn(self, s: array, v: float, surprise: float, score: float, sigma: float) -> None:
        p = self.params
        # Winsorise anomalous points: the running means and deviations move as if the point were at
        # most `threshold` deviations away, so an anomaly does not become the new normal at once.
        limit = p.threshold if sigma >= p.threshold else p.surprise_clip
        n = s[_N]
        warm = n > p.warmup
        for m_i, d_i, a in ((_MF, _DF, p.fast_alpha), (_MS, _DS, p.slow_alpha)):
            mean, dev = s[m_i], s[d_i]  # each read of an array makes a float: read once
            d = v - mean
            if warm:
                bound = limit * _MAD_TO_SIGMA * dev
                d = min(bound, max(-bound, d))
            s[m_i] = mean + a * d
            s[d_i] = dev + a * (abs(d) - dev)
        fm = s[_FM]
        fm += p.trend_alpha * (v - fm)
        fd = s[_FD]
        fd += p.trend_alpha * (abs(v - s[_PREV]) - fd)
        s[_FM], s[_FD] = fm, fd
        e = p.envelope_decay
        if n == 0:
            s[_MLO] = s[_MHI] = fm
            s[_DLO] = s[_DHI] = fd
        else:
            # The value envelope relaxes toward the slow mean, the derived ones toward their own centre.
            centre = s[_MS]
            hi, lo = s[_VHI], s[_VLO]
            s[_VHI] = max(v, hi - e * (hi - centre))
            s[_VLO] = min(v, lo + e * (centre - lo))
            for lo_i, hi_i, x in ((_MLO, _MHI, fm), (_DLO, _DHI, fd)):
                hi, lo = s[hi_i], s[lo_i]
                c = 0.5 * (hi + lo)
                s[hi_i] = max(x, hi - e * (hi - c))
                s[lo_i] = min(x, lo + e * (c - lo))
        s[_PEAK] = max(s[_PEAK] * p.peak_decay, score)
        if len(s) > _STATE_LEN:
            self._learn_season(s, v, sigma)
        s[_PREV] = v
        n += 1
        s[_N] = n
        if n > p.warmup:
            # The likelihood layer learns the distribution of the level surprise itself.
            sm, k, lm, lv = s[_SM], s[_K] + 1, s[_LM], s[_LV]
            s[_SM] = sm + p.short_alpha * (surprise - sm)
            s[_K] = k
            d = surprise - lm
            if k > 1.0 / p.long_alpha:
                s[_LM] = lm + p.long_alpha * d
                s[_LV] = (1.0 - p.long_alpha) * (lv + p.long_alpha * d * d)
            else:
                s[_LM] = lm + d / k
                s[_LV] = lv + (d * d - lv) / k

    def _learn_season(self, s: array, v: float, sigma: float) -> None:
        p = self.params
        length, bins, n = p.season_length, p.bins, s[_N]
        if n < length:
            # First day: each bin is the plain mean of its points.
            phase = n % length
            b = int(phase * bins / length)
            k = phase - math.ceil(b * length / bins) + 1
            s[_STATE_LEN + b] += (v - s[_STATE_LEN + b]) / max(k, 1.0)
            return
        i0, i1, w, pred = self._season(s)
        r = v - pred
        if n >= 2 * length:
            rs = s[_RS]
            rs += p.season_smooth * (r - rs)
            if n == 2 * length:
                s[_RLO] = s[_RHI] = rs
            else:
                e = p.envelope_decay
                hi, lo = s[_RHI], s[_RLO]
                c = 0.5 * (hi + lo)
                s[_RHI] = max(rs, hi - e * (hi - c))
                s[_RLO] = min(rs, lo + e * (c - lo))
            s[_RS] = rs
        if n >= 1.5 * length:
            # half a day after the first one the profile is worth comparing with the plain deviation
            cap = p.surprise_clip * _MAD_TO_SIGMA * s[_DS]
            s[_RD] += p.slow_alpha * (min(abs(r), cap) - s[_RD])
        else:
            s[_RD] = s[_DS]
        if sigma >= p.threshold:
            # winsorised like the means: an anomalous day must not become the profile
            cap = p.threshold * _MAD_TO_SIGMA * s[_DS]
            r = min(cap, max(-cap, r))
        a = p.season_alpha * bins / length  # per point, so that a bin moves season_alpha per day
        s[_STATE_LEN + i0] += a * (1.0 - w) * r
        s[_STATE_LEN + i1] += a * w * r

    # -- River verbs ---------------------------------------------------------------------------

    def _values(self, x: Mapping[str, float]) -> list[tuple[str, float]]:
        out = []
        for f in self.params.features:
            v = x.get(f)
            if v is None:
                continue
            v = float(v)
            # Beyond 1e150 a difference of two values could overflow: such a value is missing, as NaN is.
            if -_LARGEST <= v <= _LARGEST:
                out.append((f, v))
        return out

    def score_one(self, x: Mapping[str, float]) -> float:  # type: ignore[override]  # River: dict[Hashable, Any]
        """The score of one point in sigma-equivalents (River's verb); does not change the detector."""
        return self.score_detail(x).sigma

    def score_detail(self, x: Mapping[str, float]) -> DetectorScore:
        """Score one point against the state learned so far, with each feature's contribution."""
        per: dict[str, float] = {}
        for f, v in self._values(x):
            s = self._state.get(f)
            per[f] = 0.0 if s is None else self._parts(s, v)[2]
        return _score_from(per)

    def learn_one(self, x: Mapping[str, float]) -> None:  # type: ignore[override]  # River: dict[Hashable, Any]
        """Update the state with one point (call after :meth:`score_one` on the same point)."""
        for f, v in self._values(x):
            s = self._state.get(f)
            if s is None:
                s = self._state[f] = _new_state(v, self._state_len(f))
                self._learn(s, v, 0.0, 0.0, 0.0)
                continue
            surprise, score, sigma, _ = self._parts(s, v)
            self._learn(s, v, surprise, score, sigma)

    def explain_one(self, x: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """Per-feature parts behind the score: sigma, three novelties, likelihood z, fast/slow surprise."""
        out = {}
        for f, v in self._values(x):
            s = self._state.get(f)
            if s is not None:
                out[f] = dict(zip(_PART_NAMES, self._parts(s, v)[3], strict=True))
        return out

    def xgb_features(self, x: Mapping[str, float]) -> list[float]:
        """The fixed-length vector the XGBoost model sees for ``x``, from the state before learning.

        For each feature of :attr:`features`, in order, the parts named by :func:`xgb_feature_names`;
        NaN for a feature that is missing from ``x`` or not yet seen (XGBoost treats NaN as missing).
        """
        row: list[float] = []
        vals = dict(self._values(x))
        for f in self.params.features:
            s = self._state.get(f)
            if s is None or f not in vals:
                row.extend([math.nan] * len(_PART_NAMES))
            else:
                row.extend(self._parts(s, vals[f])[3])
        return row

    def score_with_features(self, x: Mapping[str, float]) -> tuple[DetectorScore, list[float]]:
        """:meth:`score_detail` and :meth:`xgb_features` of one point, each feature's parts computed once.

        The stream needs both for every sample; computing them apart did the detector's work twice.

        Examples
        --------
        >>> det = StreamingDetector(features=("cpu_utilization",), warmup=2)
        >>> for v in (0.40, 0.42, 0.41, 0.43, 0.40):
        ...     det.learn_one({"cpu_utilization": v})
        >>> x = {"cpu_utilization": 0.95}
        >>> det.score_with_features(x) == (det.score_detail(x), det.xgb_features(x))
        True
        """
        per: dict[str, float] = {}
        parts: dict[str, list[float]] = {}
        for f, v in self._values(x):
            s = self._state.get(f)
            if s is None:
                per[f] = 0.0
            else:
                _, _, per[f], parts[f] = self._parts(s, v)
        missing = [math.nan] * len(_PART_NAMES)
        row: list[float] = []
        for f in self.params.features:
            row.extend(parts.get(f, missing))
        return _score_from(per), row

    def xgb_feature_names(self) -> list[str]:
        """Column names matching :meth:`xgb_features`: ``<feature>:<part>``."""
        return xgb_feature_names(self.params.features)

    def n_learned(self, feature: str) -> int:
        """Points learned for ``feature`` (0 if never seen)."""
        s = self._state.get(feature)
        return 0 if s is None else int(s[_N])

    def learned_normal(self, feature: str) -> tuple[float, float] | None:
        """(level, spread) learned for ``feature``: the slow mean and the slow deviation as a sigma."""
        s = self._state.get(feature)
        if s is None:
            return None
        return float(s[_MS]), _MAD_TO_SIGMA * float(s[_DS])

    # -- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state and hyperparameters (sizes in ``benchmarks/memory.md``)."""
        return {
            "format": _STATE_FORMAT,
            "params": self.params.to_dict(),
            # 12 significant digits keep the state compact; a restored detector's scores then differ from
            # the original's only in the last digits (a test bounds the difference).
            "state": {f: [float(f"{v:.12g}") for v in s] for f, s in self._state.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StreamingDetector:
        """Rebuild a detector saved by :meth:`to_dict`; rejects unknown formats and malformed state.

        Format 1 (before the daily profile) is upgraded: its running statistics are kept and the
        profile starts flat at the slow mean, to be learned over the next days.
        """
        fmt = d.get("format")
        if fmt not in (1, _STATE_FORMAT):
            raise ValueError(f"detector state format must be 1 or {_STATE_FORMAT}, got {fmt!r}")
        params = dict(d["params"])
        det = cls(**params)
        for f, s in dict(d.get("state", {})).items():
            if f not in det.params.features:
                raise ValueError(f"state for unknown feature {f!r}; features are {det.params.features}")
            want = _OLD_STATE_LEN if fmt == 1 else det._state_len(f)
            if len(s) != want or not all(isinstance(v, int | float) and math.isfinite(v) for v in s):
                raise ValueError(f"state of {f!r} must be {want} finite numbers")
            state = [float(v) for v in s]
            if fmt == 1:
                ms, ds = state[_MS], state[_DS]
                state += [0.0, 0.0, 0.0, ds] + [ms] * (det._state_len(f) - _STATE_LEN)
            det._state[f] = array("d", state)
        return det


#: Envelope widths beyond which an excursion counts logarithmically (see :func:`_bounded`).
_LINEAR_WIDTHS = 10.0


def _bounded(ratio: float) -> float:
    """An excursion in envelope widths, linear up to ``_LINEAR_WIDTHS`` and logarithmic beyond.

    Normal data stays far inside the linear part, so the ranking NAB sees is unchanged; a series that
    had no spread at all (a constant) scores large on its first change rather than astronomically, and
    an overflowed ratio (infinite) maps to a finite score.

    >>> _bounded(2.0), round(_bounded(100.0), 3), _bounded(math.inf) < 1e4
    (2.0, 33.026, True)
    """
    if ratio <= _LINEAR_WIDTHS:
        return ratio
    log = math.log(ratio) if ratio < math.inf else 710.0  # log of the largest double
    return _LINEAR_WIDTHS * (1.0 + log - math.log(_LINEAR_WIDTHS))


_PART_NAMES = (
    "sigma",
    "novelty_value",
    "novelty_level",
    "novelty_volatility",
    "likelihood_z",
    "z_fast",
    "z_slow",
)


def xgb_feature_names(features: Sequence[str] = FEATURES) -> list[str]:
    """Column names of :meth:`StreamingDetector.xgb_features` for ``features``."""
    return [f"{f}:{p}" for f in features for p in _PART_NAMES]


#: The largest score ever reported, in sigma. A score beyond it says nothing more (the threshold is
#: a few sigma), and a detector whose spread collapsed could otherwise report 1e18 or overflow.
MAX_SIGMA = 1e6


def bounded(sigma: float) -> float:
    """``sigma`` clipped to ``[0, MAX_SIGMA]``; NaN (an undefined score: 0/0, inf - inf) counts as 0.

    Every score the detector and :func:`combine` report passes through here, so none is ever
    non-finite or above ``MAX_SIGMA``; below it (all that matters for a threshold of a few sigma, and
    for NAB's ranking of scores) it is the identity.

    Examples
    --------
    >>> bounded(3.5), bounded(-1.0), bounded(float("inf")), bounded(float("nan")), bounded(4.3e18)
    (3.5, 0.0, 1000000.0, 0.0, 1000000.0)
    """
    if sigma != sigma:  # NaN
        return 0.0
    return min(MAX_SIGMA, max(0.0, sigma))


def _score_from(per: Mapping[str, float]) -> DetectorScore:
    per = {f: bounded(v) for f, v in per.items()}
    sigma = max(per.values(), default=0.0)
    total = sum(per.values())
    if total <= 0.0:
        return DetectorScore(sigma, {f: 0.0 for f in per})
    return DetectorScore(sigma, {f: sigma * v / total for f, v in per.items()})


#: Multiple of the threshold at which a score is critical.
CRITICAL_FACTOR = 1.6


def severity(score: float, threshold: float) -> Severity:
    """``critical`` at ``score >= 1.6 * threshold``, ``warning`` at ``score >= threshold``, else ``normal``.

    Examples
    --------
    >>> severity(2.0, 2.5), severity(2.5, 2.5), severity(4.0, 2.5)
    ('normal', 'warning', 'critical')
    """
    if score >= CRITICAL_FACTOR * threshold:
        return "critical"
    if score >= threshold:
        return "warning"
    return "normal"


#: XGBoost probability that counts as one threshold's worth of evidence (see :func:`combine`).
#: ``sigma * (XGB_NEUTRAL_WEIGHT + p)``: an undecided XGBoost (p = 0.5) leaves the score as it is.
XGB_NEUTRAL_WEIGHT = 0.5


def combine(stream: DetectorScore, xgb_probability: float | None, threshold: float) -> CombinedScore:
    """Combine the streaming sigma with the XGBoost probability into one score in sigma units.

    XGBoost modulates the streaming score rather than alarming on its own: the combined score is
    ``sigma * (0.5 + p)``, so ``p = 0.5`` leaves it unchanged, a confident "normal" (``p = 0``) halves
    it and a confident "anomaly" (``p = 1``) raises it by half; the result is :func:`bounded` (at most
    ``MAX_SIGMA``, never NaN). Why not let either alarm alone: the
    offline model's leave-files-out AUC is 0.62 and on the synthetic Saleor workload it put
    ``p >= 0.5`` on half of the calm points, so on its own it would make ``helios_anomaly_detected``
    flap. Feature contributions are the streaming ones scaled to sum to the combined score, sorted
    by size (largest first).

    Examples
    --------
    >>> s = DetectorScore(3.0, {"cpu_utilization": 2.0, "memory_utilization": 1.0})
    >>> c = combine(s, 0.5, 2.5)
    >>> c.score, c.is_anomaly, c.severity, c.contributions[0]
    (3.0, True, 'warning', ('cpu_utilization', 2.0))
    >>> combine(s, 0.0, 2.5).score, combine(s, 1.0, 2.5).severity
    (1.5, 'critical')
    >>> combine(DetectorScore(0.0, {}), 0.9, 2.5).score
    0.0
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    sigma = bounded(stream.sigma)
    parts = {"stream_sigma": sigma}
    score = sigma
    if xgb_probability is not None and math.isfinite(xgb_probability):
        p = min(1.0, max(0.0, float(xgb_probability)))
        parts["xgb_probability"] = p
        score = bounded(sigma * (XGB_NEUTRAL_WEIGHT + p))
    shares = {f: bounded(c) for f, c in stream.contributions.items()}
    total = sum(shares.values())
    if total > 0:
        contributions = [(f, score * c / total) for f, c in shares.items()]
    else:
        contributions = [(f, 0.0) for f in shares]
    contributions.sort(key=lambda fc: (-fc[1], fc[0]))
    return CombinedScore(score, score >= threshold, severity(score, threshold), contributions, parts)


def to_unit_interval(score_sigma: float, threshold: float) -> float:
    """Monotone map of a sigma score onto [0, 1): ``s / (s + threshold)``, 0.5 at the threshold.

    Strictly increasing for ``s >= 0`` (negative scores map to 0), so ranking -- all NAB's threshold sweep
    looks at -- is preserved, and it never saturates to exactly 1 for finite scores.

    Examples
    --------
    >>> to_unit_interval(0.0, 2.5), to_unit_interval(2.5, 2.5), to_unit_interval(7.5, 2.5)
    (0.0, 0.5, 0.75)
    """
    if score_sigma <= 0.0:
        return 0.0
    return score_sigma / (score_sigma + threshold)
