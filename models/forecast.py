"""Online point forecasts with calibrated prediction intervals, one sample at a time.

:class:`OnlineForecaster` is what the forecast stage keeps per deployment and feature:

* **Point forecast.** A few exponential smoothers -- different half-lives, in seconds, some on the
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
(:meth:`OnlineForecaster.to_dict`), float arrays as base64 float32; its size does not depend on
``step_seconds`` (``benchmarks/memory.md`` has the figures).

The worker keeps two forecasters per tracked deployment, so their resident size matters: the
parameters and everything derived from them live in one :class:`ForecasterParams` shared by every
forecaster built with the same arguments, and the learned state in flat ``array`` buffers (a Python
float in a list costs 32 bytes, in an ``array('d')`` 8), the small ones of doubles packed into one
array at offsets the parameters hold (each array object has a header of its own).
"""

from __future__ import annotations

import base64
import functools
import itertools
import math
import operator
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from river.time_series.base import Forecaster

from models.params import arguments, given, reads_params, shared

__all__ = [
    "ForecasterParams",
    "Interval",
    "OnlineForecaster",
    "apply_plan",
    "averaging",
    "calibrated_steps_for",
    "half_life",
    "interpolate_interval",
    "per_step",
    "plan_seconds",
    "track_quantile",
]

_NAN = float("nan")
_TINY = 1e-12
#: Version of :meth:`OnlineForecaster.to_dict`; bump when the layout changes (and migrate the old one).
#: 2: the smoothing constants are half-lives in seconds (``smoothers``, ``error_half_life``,
#: ``spread_half_life``) where 1 had per-step constants (``candidates``, ``error_alpha``, ``spread_alpha``).
_STATE_VERSION = 2


@dataclass(frozen=True, slots=True)
class Interval:
    """A point forecast and its prediction interval at the forecaster's nominal level."""

    point: float
    lower: float
    upper: float


def track_quantile(q: float, miss: bool, spread: float, target: float, lr: float, floor: float) -> float:
    """One step of online quantile tracking (Angelopoulos et al. 2023; ACI of Gibbs & Candes 2021).

    Widen after a miss, narrow a little after a hit, so the long-run miss rate goes to ``target``;
    steps are ``lr`` times the current width (scale-free on bursty series), floored by ``floor`` times
    the recent error ``spread`` so a band that collapsed on a flat stretch can reopen. Shared by
    :class:`OnlineForecaster` and :class:`models.conformal.ConformalBand`.

    Examples
    --------
    >>> track_quantile(1.0, True, 1.0, 0.1, 0.05, 0.1), track_quantile(1.0, False, 1.0, 0.1, 0.05, 0.1)
    (1.045, 0.995)
    """
    low = floor * spread
    step = lr * (low if low > q else q)
    q = q + step * ((1.0 if miss else 0.0) - target)
    return q if q > 0.0 else 0.0


def per_step(half_life: float, step_seconds: float) -> float:
    """The per-step smoothing constant of an exponential average with the given half-life in seconds.

    ``1 - 2 ** (-step / half_life)``: after ``half_life`` seconds a value's weight has halved, whatever
    the step, so one half-life gives the same memory in time at 60 s and at 30-minute steps. A half-life
    of 0 is no memory (constant 1).

    Examples
    --------
    >>> round(per_step(932.0, 300), 4), round(per_step(932.0, 60), 4), per_step(0.0, 60)
    (0.2, 0.0436, 1.0)
    """
    if half_life <= 0.0:
        return 1.0
    return 1.0 - 2.0 ** (-step_seconds / half_life)


def averaging(half_life: float, step_seconds: float, min_outcomes: int) -> float:
    """The per-step constant of an error average: half-life ``half_life`` seconds, but never fewer
    than about ``min_outcomes`` outcomes weighed (constant at most ``1 / min_outcomes``).

    At coarse steps a half-life in time holds only a few outcomes, and an average of a few absolute
    errors is too noisy to weigh smoothers by (the weights raise error ratios to a high power).

    Examples
    --------
    >>> round(averaging(10293.0, 60, 50), 4), round(averaging(10293.0, 1800, 50), 4)
    (0.004, 0.02)
    """
    return min(per_step(half_life, step_seconds), 1.0 / min_outcomes)


def half_life(alpha: float, step_seconds: float) -> float:
    """Inverse of :func:`per_step`: the half-life in seconds of a per-step constant ``alpha`` in (0, 1].

    Examples
    --------
    >>> round(half_life(0.2, 300), 1), half_life(1.0, 300)
    (931.9, 0.0)
    """
    if alpha >= 1.0:
        return 0.0
    return step_seconds * math.log(2.0) / -math.log1p(-alpha)


def interpolate_interval(a: Interval, b: Interval, f: float) -> Interval:
    """``(1 - f) * a + f * b`` field by field: a forecast between two steps (``0 <= f <= 1``).

    Examples
    --------
    >>> interpolate_interval(Interval(1.0, 0.0, 2.0), Interval(3.0, 1.0, 5.0), 0.5)
    Interval(point=2.0, lower=0.5, upper=3.5)
    """
    g = 1.0 - f
    return Interval(g * a.point + f * b.point, g * a.lower + f * b.lower, g * a.upper + f * b.upper)


def calibrated_steps_for(step_seconds: int, horizons_seconds: Sequence[float]) -> tuple[int, ...]:
    """The steps to calibrate so every horizon (in seconds) is a calibrated step or lies between two.

    One step is always calibrated; a horizon between steps calibrates both neighbours (the shorter one
    is at least one step), so :meth:`OnlineForecaster.forecast_seconds` interpolates between
    calibrated bands only.

    Examples
    --------
    >>> calibrated_steps_for(300, [300, 900, 1800, 3600])
    (1, 3, 6, 12)
    >>> calibrated_steps_for(1800, [300, 900, 1800, 3600])
    (1, 2)
    >>> calibrated_steps_for(420, [900])
    (1, 2, 3)
    """
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
    steps = {1}
    for sec in horizons_seconds:
        if not (math.isfinite(sec) and sec > 0):
            raise ValueError(f"horizons must be positive seconds, got {sec!r}")
        r = sec / step_seconds
        steps.add(max(1, math.floor(r + 1e-9)))
        steps.add(max(1, math.ceil(r - 1e-9)))
    return tuple(sorted(steps))


#: How a horizon between two steps is served: ``(lower step, upper step, fraction of the way up)``.
Plan = list[tuple[int, int, float]]


def plan_seconds(seconds: Sequence[float], step_seconds: int, between: str = "interpolate") -> Plan:
    """Map horizons in seconds onto steps: whole steps as they are, others between two steps.

    With ``between="refuse"`` a horizon that is not a whole number of steps raises a ``ValueError``
    naming it; with ``"interpolate"`` it is served by its two neighbouring steps (step 0 being now).

    Examples
    --------
    >>> plan_seconds([300, 450, 900], 300)
    [(1, 1, 0.0), (1, 2, 0.5), (3, 3, 0.0)]
    >>> plan_seconds([60], 300)
    [(0, 1, 0.2)]
    """
    if between not in ("interpolate", "refuse"):
        raise ValueError(f"between must be 'interpolate' or 'refuse', got {between!r}")
    plan: Plan = []
    for sec in seconds:
        if not (math.isfinite(sec) and sec > 0):
            raise ValueError(f"horizons must be positive seconds, got {sec!r}")
        r = sec / step_seconds
        k = round(r)
        if abs(r - k) <= 1e-9 * max(1.0, r):
            plan.append((k, k, 0.0))
            continue
        if between == "refuse":
            raise ValueError(
                f"horizon {sec:g} s is not a whole number of {step_seconds} s steps ({r:.4g} steps)"
            )
        lo = math.floor(r)
        plan.append((lo, lo + 1, r - lo))
    if any(b[0] < a[0] for a, b in itertools.pairwise(plan)):
        raise ValueError(f"horizons must be ascending, got {list(seconds)}")
    return plan


@functools.lru_cache(maxsize=256)
def _plan(seconds: tuple[float, ...], step_seconds: int, between: str) -> Plan:
    # The stream asks for the same published horizons at every sample.
    return plan_seconds(seconds, step_seconds, between)


def apply_plan(plan: Plan, bands: dict[int, Interval], now: float) -> list[Interval]:
    """The intervals a :func:`plan_seconds` plan asks for, from the bands at whole steps.

    Step 0 is ``now`` (the last value, a band of zero width).
    """
    got = dict(bands)
    got[0] = Interval(now, now, now)
    return [got[lo] if lo == hi else interpolate_interval(got[lo], got[hi], f) for lo, hi, f in plan]


def _f32(values: array) -> str:
    return base64.b64encode(values.tobytes()).decode("ascii")


def _from_f32(text: str, size: int, name: str) -> array:
    raw = base64.b64decode(text)
    if len(raw) != 4 * size:
        raise ValueError(f"state field {name!r} has {len(raw) / 4:g} values, expected {size}")
    out = _filled("f", 0.0, size)
    memoryview(out).cast("B")[:] = raw  # frombytes() would over-allocate
    return out


def _filled(typecode: str, value: float, size: int) -> array:
    """An array of ``size`` copies of ``value``, allocated to exactly that size."""
    return array(typecode, [value]) * size


def _doubles(values: Sequence[float], size: int, name: str) -> array:
    if len(values) != size:
        raise ValueError(f"forecaster state field {name!r} has {len(values)} values, expected {size}")
    return array("d", [float(x) for x in values])  # from a list: allocated to exactly its size


@dataclass(frozen=True, slots=True)
class ForecasterParams:
    """The arguments of an :class:`OnlineForecaster` with their defaults, validated, and what is derived
    from them.

    The one declaration of the forecaster's parameters: its constructor, attributes, clone and saved
    form are derived from these fields (see :mod:`models.params`). Immutable and shared: forecasters
    built with the same arguments hold the same object, so a forecaster itself only holds what it
    learned. The fields are the constructor's arguments (documented there); the derived ones follow.
    """

    step_seconds: int
    season_seconds: int = 86400
    level: float = 0.9
    calibrated_steps: tuple[int, ...] = (1, 5, 15, 30, 60)
    smoothers: tuple[tuple[float, bool, float], ...] = (
        (932.0, True, 0.0),
        (932.0, False, 1.0),
        (4054.0, True, 1.0),
        (0.0, False, 0.0),
        (4054.0, False, 1.0),
    )
    season_gamma: float = 0.1
    season_level_seconds: float = 28800.0
    season_prior: float = 1.0
    max_season_bins: int = 288
    clip: float = 5.0
    error_half_life: float = 10293.0
    weight_power: float = 20.0
    coverage_lr: float = 0.05
    max_pending: int = 12
    width_clip: float = 3.0
    spread_half_life: float = 20690.0
    min_outcomes: int = 50
    symmetric: bool = True
    step_floor: float = 0.1
    prior_center: float = 0.5
    prior_half_width: float = 1.0
    #: The smoothers as per-step ``(alpha, seasonal, clip)``: their half-lives at ``step_seconds``.
    candidates: tuple[tuple[float, bool, float], ...] = field(init=False)
    #: Per-step smoothing constants of the error averages and of the spread (from their half-lives, at
    #: most ``1 / min_outcomes``).
    error_alpha: float = field(init=False)
    spread_alpha: float = field(init=False)
    #: Per-step smoothing constant of the level the seasonal deviations are measured against.
    season_alpha: float = field(init=False)
    #: Bins of the seasonal profile (0: no profile) and the seconds each covers.
    bins: int = field(init=False)
    bin_seconds: float = field(init=False)
    #: The share of a bin's width one step covers (1 unless several steps share a bin): each step's update
    #: of the profile is scaled by it, so ``season_gamma`` is a rate per cycle at every step size.
    season_share: float = field(init=False)
    #: Values per pending slot: k candidate forecasts, combined point, band below, above.
    width: int = field(init=False)
    #: Per calibrated horizon: every stride-th forecast is kept, in a ring of length slots from offset.
    strides: tuple[int, ...] = field(init=False)
    lengths: tuple[int, ...] = field(init=False)
    offsets: tuple[int, ...] = field(init=False)
    #: Pending slots in all (the ring holds ``slots * width`` values).
    slots: int = field(init=False)
    #: |error| / mean|error| has its ``level`` quantile at -ln(1 - level) for Laplace errors: a fair start.
    initial_q: float = field(init=False)
    #: Per candidate: is it a level of the seasonally adjusted series?
    seasonal: tuple[bool, ...] = field(init=False)
    #: Per calibrated horizon ``j``: ``(j, h, stride, offset, length)``, for the hot loops.
    rings: tuple[tuple[int, int, int, int, int], ...] = field(init=False)
    #: Where each learned array of doubles starts in the forecaster's one packed ``array('d')`` (see
    #: ``_PACKED``), and that array's length: one object instead of nine, each with its own header.
    at_levels: int = field(init=False)
    at_cand_mae: int = field(init=False)
    at_mae: int = field(init=False)
    at_spread: int = field(init=False)
    at_lo: int = field(init=False)
    at_up: int = field(init=False)
    at_cover: int = field(init=False)
    at_count: int = field(init=False)
    at_wts: int = field(init=False)
    packed_size: int = field(init=False)

    def __post_init__(self) -> None:
        self._validate()
        derive = functools.partial(object.__setattr__, self)  # the documented way into a frozen dataclass
        # Kept as validated: the saved form holds these, so a restored forecaster is built alike.
        derive("calibrated_steps", tuple(int(h) for h in self.calibrated_steps))
        derive("smoothers", tuple((float(a), bool(s), float(c)) for a, s, c in self.smoothers))
        for name, kind in _COERCED:
            derive(name, kind(getattr(self, name)))
        self._derive(derive)

    def _validate(self) -> None:
        if not (isinstance(self.step_seconds, int) and self.step_seconds > 0):
            raise ValueError(f"step_seconds must be a positive integer, got {self.step_seconds!r}")
        if not (isinstance(self.season_seconds, int) and self.season_seconds >= 0):
            raise ValueError(f"season_seconds must be a non-negative integer, got {self.season_seconds!r}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level!r}")
        steps = tuple(int(h) for h in self.calibrated_steps)
        if not steps or any(h < 1 for h in steps) or list(steps) != sorted(set(steps)) or steps[-1] > 1440:
            raise ValueError(
                "calibrated_steps must be strictly increasing integers in [1, 1440], "
                f"got {self.calibrated_steps!r}"
            )
        smoothers = tuple((float(a), bool(s), float(c)) for a, s, c in self.smoothers)
        if not smoothers or any(not (0.0 <= a < math.inf and c >= 0.0) for a, _, c in smoothers):
            raise ValueError(
                "smoothers must be non-empty (half-life in seconds >= 0, seasonal, clip >= 0) triples, "
                f"got {self.smoothers!r}"
            )
        for name in ("error_half_life", "spread_half_life"):
            value = getattr(self, name)
            if not 0.0 <= value < math.inf:
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
        for name in ("season_gamma", "coverage_lr"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        self._validate_scalars()

    def _validate_scalars(self) -> None:
        for name, top in (("max_season_bins", 2016), ("max_pending", 1440), ("min_outcomes", 100000)):
            if not 1 <= getattr(self, name) <= top:
                raise ValueError(f"{name} must be in [1, {top}], got {getattr(self, name)!r}")
        if not self.season_level_seconds > 0.0:
            raise ValueError(f"season_level_seconds must be positive, got {self.season_level_seconds!r}")
        if not self.season_prior >= 0.0:
            raise ValueError(f"season_prior must be non-negative, got {self.season_prior!r}")
        if not (self.width_clip > 1.0 and self.step_floor >= 0.0):
            raise ValueError(
                f"width_clip must exceed 1 and step_floor be >= 0, got {self.width_clip!r} "
                f"and {self.step_floor!r}"
            )
        if not self.clip > 0.0:
            raise ValueError(f"clip must be positive, got {self.clip!r}")
        if not self.weight_power >= 0.0:
            raise ValueError(f"weight_power must be non-negative, got {self.weight_power!r}")
        w, c = self.prior_half_width, self.prior_center
        if not (w > 0.0 and math.isfinite(w) and math.isfinite(c)):
            raise ValueError(f"prior_half_width must be positive and finite, got {w!r} (prior_center {c!r})")

    def _derive(self, derive: Callable[[str, Any], None]) -> None:
        step = self.step_seconds
        derive("candidates", tuple((per_step(h, step), s, c) for h, s, c in self.smoothers))
        derive("error_alpha", averaging(self.error_half_life, step, self.min_outcomes))
        derive("spread_alpha", averaging(self.spread_half_life, step, self.min_outcomes))
        derive("season_alpha", min(1.0, self.step_seconds / self.season_level_seconds))
        # A season shorter than two steps carries no shape: disable it.
        per_season = self.season_seconds / self.step_seconds if self.season_seconds else 0.0
        bins = min(self.max_season_bins, round(per_season)) if per_season >= 2 else 0
        derive("bins", bins)
        derive("bin_seconds", self.season_seconds / bins if bins else 0.0)
        derive("season_share", min(1.0, self.step_seconds * bins / self.season_seconds) if bins else 0.0)
        derive("width", len(self.candidates) + 3)
        # Horizon h keeps every stride-th forecast it issues, so at most max_pending wait for their
        # outcome: the state stays small for long horizons, which still get h / stride scores per h steps.
        strides, lengths, offsets, total = [], [], [], 0
        for h in self.calibrated_steps:
            stride = -(-h // self.max_pending)
            strides.append(stride)
            lengths.append(-(-h // stride))
            offsets.append(total)
            total += lengths[-1]
        derive("strides", tuple(strides))
        derive("lengths", tuple(lengths))
        derive("offsets", tuple(offsets))
        derive("slots", total)
        derive("initial_q", -math.log(1.0 - self.level))
        derive("seasonal", tuple(seasonal for _, seasonal, _ in self.candidates))
        derive("rings", tuple(zip(itertools.count(), self.calibrated_steps, strides, offsets, lengths)))
        at = 0
        for buffer in _PACKED:
            derive(f"at_{buffer.key}", at)
            at += buffer.length(self)
        derive("packed_size", at)

    def to_dict(self) -> dict[str, Any]:
        """The constructor's arguments, JSON-safe (the ``params`` of :meth:`OnlineForecaster.to_dict`)."""
        return arguments(self)


if TYPE_CHECKING:
    # To the type checker a forecaster has its parameters' attributes, which reads_params installs.
    _ForecasterAttributes = ForecasterParams
else:

    class _ForecasterAttributes:
        __slots__ = ()


#: The arguments the validated parameters hold converted (the others are kept as given).
_COERCED: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    *((name, float) for name in ("level", "season_gamma", "season_level_seconds", "season_prior", "clip")),
    *((name, float) for name in ("error_half_life", "weight_power", "coverage_lr", "width_clip")),
    ("spread_half_life", float),
    *((name, float) for name in ("step_floor", "prior_center", "prior_half_width")),
    ("max_season_bins", int),
    ("max_pending", int),
    ("min_outcomes", int),
    ("symmetric", bool),
)


@dataclass(frozen=True, slots=True)
class _Number:
    """A number of a forecaster's learned state, saved under ``key`` (attribute ``_<key>``).

    Saved as it is, or, if ``optional``, a non-finite value as ``null`` (NaN before the first sample).
    """

    key: str
    initial: float
    kind: Callable[[Any], float] = float
    optional: bool = False

    def save(self, value: float, p: ForecasterParams) -> float | None:
        return value if not self.optional or math.isfinite(value) else None

    def load(self, saved: Any, p: ForecasterParams) -> float:
        return _NAN if self.optional and saved is None else self.kind(saved)

    def new(self, p: ForecasterParams) -> float:
        return self.initial


#: How a buffer is saved: a JSON list, base64 float32, or rows of one value per candidate.
Encoding = Literal["list", "f32", "rows"]


@dataclass(frozen=True, slots=True)
class _Buffer:
    """A flat ``array`` of a forecaster's learned state, saved under ``key``, of ``size`` values: one per
    candidate, per calibrated horizon, per both, per profile bin, or the pending ring.

    Held as attribute ``_<key>``, or, if ``packed``, as doubles from offset ``params.at_<key>`` of the
    forecaster's one ``_packed`` array (a ``"q"`` buffer's whole numbers are exact there up to 2 ** 53).
    """

    key: str
    typecode: str
    initial: float
    size: Literal["candidates", "horizons", "horizons x candidates", "bins", "pending"]
    encoding: Encoding = "list"
    packed: bool = False

    def span(self, p: ForecasterParams) -> slice:
        """Where a packed buffer lies in the forecaster's ``_packed`` array."""
        at: int = getattr(p, f"at_{self.key}")
        return slice(at, at + self.length(p))

    def length(self, p: ForecasterParams) -> int:
        match self.size:
            case "candidates":
                return len(p.candidates)
            case "horizons":
                return len(p.calibrated_steps)
            case "horizons x candidates":
                return len(p.calibrated_steps) * len(p.candidates)
            case "bins":
                return p.bins
            case "pending":
                return p.slots * p.width

    def new(self, p: ForecasterParams) -> array:
        return _filled(self.typecode, self.initial, self.length(p))

    def save(self, value: array, p: ForecasterParams) -> Any:
        if self.encoding == "f32":
            return _f32(value)
        if self.encoding == "rows":
            k = len(p.candidates)
            return [value[i : i + k].tolist() for i in range(0, len(value), k)]
        if self.typecode == "q":
            return [int(x) for x in value]  # as saved before it was packed into doubles
        return value.tolist()

    def load(self, saved: Any, p: ForecasterParams) -> array:
        size = self.length(p)
        if self.encoding == "f32":
            return _from_f32(saved, size, self.key)
        if self.encoding == "rows":
            k, nh = len(p.candidates), len(p.calibrated_steps)
            if len(saved) != nh:
                raise ValueError(f"forecaster state field {self.key!r} has {len(saved)} rows, expected {nh}")
            saved = [x for row in saved for x in _doubles(row, k, self.key)]
        if len(saved) != size:
            raise ValueError(f"forecaster state field {self.key!r} has {len(saved)} values, expected {size}")
        kind = int if self.typecode == "q" else float
        return array(self.typecode, [kind(x) for x in saved])  # from a list: allocated to exactly its size


#: The learned state of an :class:`OnlineForecaster`, in the order of its saved form: its attributes,
#: their initial values and how each is saved come from here.
_STATE: tuple[_Number | _Buffer, ...] = (
    _Number("n", 0, int),
    _Number("step", 0, int),
    _Number("t_last", _NAN, optional=True),
    _Number("y_last", _NAN, optional=True),
    _Number("first_t", _NAN, optional=True),
    _Buffer("levels", "d", 0.0, "candidates", packed=True),
    _Number("season_level", 0.0),
    _Number("scale", 0.0),  # recent mean absolute one-step error of the season level, for clipping
    _Buffer("season", "f", 0.0, "bins", "f32"),
    _Number("season_mean", 0.0),
    # Row j: the candidates' errors at calibrated horizon j.
    _Buffer("cand_mae", "d", 0.0, "horizons x candidates", "rows", packed=True),
    _Buffer("mae", "d", 0.0, "horizons", packed=True),
    _Buffer("spread", "d", 0.0, "horizons", packed=True),
    _Buffer("lo", "d", 0.0, "horizons", packed=True),
    _Buffer("up", "d", 0.0, "horizons", packed=True),
    _Buffer("cover", "d", 1.0, "horizons", packed=True),
    _Buffer("count", "q", 0, "horizons", packed=True),
    _Buffer("pending", "f", _NAN, "pending", "f32"),
)
#: Not state (to_dict leaves it out): row j caches _weights(j); NaN first marks a stale row.
_CACHE = _Buffer("wts", "d", _NAN, "horizons x candidates", packed=True)
#: The buffers held in ``_packed``, in its order; the others are attributes of their own.
_PACKED = tuple(f for f in (*_STATE, _CACHE) if isinstance(f, _Buffer) and f.packed)
#: The learned state held as attributes of their own: the numbers, the profile and the pending ring.
_OWN = tuple(f for f in _STATE if not (isinstance(f, _Buffer) and f.packed))


@functools.lru_cache(maxsize=64)
def _initial_state(p: ForecasterParams) -> tuple[tuple[str, float | array], ...]:
    """``(attribute, initial value)`` of a new forecaster's state; the arrays are templates to copy."""
    packed = array("d", [x for f in _PACKED for x in f.new(p)])  # from a list: sized exactly
    return (*((f"_{f.key}", f.new(p)) for f in _OWN), ("_packed", packed))


@reads_params(ForecasterParams)
class OnlineForecaster(_ForecasterAttributes, Forecaster):
    """Combination of robust exponential smoothers with conformal intervals, learned online.

    A River forecaster (:class:`river.time_series.base.Forecaster`): :meth:`learn_one` takes ``(y, x=None)``
    and learns the step after the last one, :meth:`forecast` returns point forecasts, and the parameters
    are read the River way (``clone()``, ``_get_params()``). The product's richer verbs take time in
    seconds and return :class:`Interval` bands: :meth:`learn_at` (a value at an epoch time),
    :meth:`intervals`, :meth:`forecast_at` (given steps) and :meth:`forecast_seconds` (given seconds
    ahead, interpolating between steps or refusing, never rounding).

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
    smoothers
        The smoothers combined, as ``(half_life, seasonal, clip)``: a level exponentially smoothed with a
        half-life of ``half_life`` seconds (the per-step constant follows from ``step_seconds``, see
        :func:`per_step`, so the memory in time is the same at every step size), on the seasonally
        adjusted series if ``seasonal``, its updates Huberised at ``clip`` times the recent one-step
        error (0: not clipped).
    season_gamma
        Learning rate of the seasonal profile per cycle once ``1 / season_gamma - season_prior`` cycles
        are seen; before that it is ``1 / (season_prior + 1 + cycles)``, a running mean shrunk towards 0,
        so the profile helps after one day without copying one noisy day. A rate per cycle, not per
        step: when several steps share a bin each one's update is scaled by its share of the bin.
    season_level_seconds
        Time constant of the level the seasonal deviations are measured against; much shorter than the
        season, or the level would absorb the daily shape itself.
    season_prior
        Weight, in cycles, of the profile's starting value 0 (see ``season_gamma``).
    max_season_bins
        Resolution cap of the seasonal profile; with finer steps several steps share a bin.
    clip
        Huber bound (times the recent one-step error) of the updates of the seasonal profile and level.
    error_half_life
        Half-life in seconds of the per-horizon error averages (weights, ``accuracy()``) and of the
        one-step error scale the clipping uses.
    weight_power
        Candidate ``k`` gets weight proportional to ``mae_k ** -weight_power`` (large: close to picking
        the best smoother at that horizon, but smooth).
    coverage_lr
        Relative step of the conformal quantile tracker; before ``1 / coverage_lr`` scored forecasts the
        half-width is ``-ln(1 - level)`` times the mean absolute error (exact for Laplace errors). Per
        scored forecast, not per second: the tracker's miss rate converges in the number of outcomes.
    max_pending
        At most this many forecasts wait per calibrated horizon (every ``ceil(h / max_pending)``-th
        forecast is kept for scoring), which bounds the state for long horizons.
    width_clip, spread_half_life
        The tracker's step has a floor of ``step_floor`` times a spread: the exponentially weighted
        (half-life ``spread_half_life`` seconds) absolute error, each error capped at ``width_clip``
        times the spread.
    min_outcomes
        The error and spread averages weigh at least about this many outcomes, whatever their half-life
        (see :func:`averaging`): at 30-minute steps a half-life of hours is only a few outcomes. The
        default is what the half-lives give at 5-minute steps, the step they were chosen at.
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
    >>> f.intervals(1)[0]  # before any data: the documented wide prior band
    Interval(point=0.5, lower=-0.5, upper=1.5)
    >>> for i in range(2000):
    ...     t = 1_700_000_000 + 300 * i
    ...     f.learn_at(t, 0.5 + 0.2 * math.sin(2 * math.pi * t / 86400) + 0.02 * ((i * 7919) % 11 - 5) / 5)
    >>> f.n_seen
    2000
    >>> band = f.intervals(6)[-1]
    >>> band.lower < band.point < band.upper
    True
    >>> f.forecast(6)[-1] == band.point  # the River verb: points only
    True
    >>> f2 = OnlineForecaster.from_dict(f.to_dict())
    >>> f2.intervals(12) == f.intervals(12)
    True
    >>> f2.params is f.params, f2.level  # one shared parameter object per set of arguments
    (True, 0.9)
    >>> f.clone()._get_params() == f._get_params() and f.clone().n_seen == 0
    True
    """

    __slots__ = ("params", "_packed", *(f"_{f.key}" for f in _OWN))
    # The types of the state's attributes, for the type checker (the unit tests keep them equal to
    # _STATE and _CACHE, from which the slots, the initial values and the saved form come).
    params: ForecasterParams
    _n: int
    _step: int
    _t_last: float
    _y_last: float
    _first_t: float
    _season_level: float
    _scale: float
    _season: array
    _season_mean: float
    _pending: array
    _packed: array

    def __init__(
        self,
        step_seconds: int,
        season_seconds: int = 86400,
        level: float = 0.9,
        calibrated_steps: Sequence[int] = (1, 5, 15, 30, 60),
        smoothers: Sequence[tuple[float, bool, float]] = (
            (932.0, True, 0.0),
            (932.0, False, 1.0),
            (4054.0, True, 1.0),
            (0.0, False, 0.0),
            (4054.0, False, 1.0),
        ),
        season_gamma: float = 0.1,
        season_level_seconds: float = 28800.0,
        season_prior: float = 1.0,
        max_season_bins: int = 288,
        clip: float = 5.0,
        error_half_life: float = 10293.0,
        weight_power: float = 20.0,
        coverage_lr: float = 0.05,
        max_pending: int = 12,
        width_clip: float = 3.0,
        spread_half_life: float = 20690.0,
        min_outcomes: int = 50,
        symmetric: bool = True,
        step_floor: float = 0.1,
        prior_center: float = 0.5,
        prior_half_width: float = 1.0,
    ) -> None:
        # The signature is River's (and the type checker's) view of ForecasterParams, kept equal to it by
        # the unit tests; taken first thing, locals() is exactly the arguments.
        self.params = shared(ForecasterParams, given(locals()))
        for name, value in _initial_state(self.params):
            setattr(self, name, value[:] if isinstance(value, array) else value)

    # ------------------------------------------------------------------ helpers
    # The hot paths below spell out min/max as comparisons (``b if b < a else a`` is ``min(a, b)``, NaN
    # and signed zeros included) and keep every floating-point operation in its original order: the
    # outputs are bit-identical to the plain formulation, only cheaper.
    def _season_at(self, t: float) -> float:
        p = self.params
        b = p.bins
        if not b:
            return 0.0
        pos = (t % p.season_seconds) / p.bin_seconds - 0.5
        i = math.floor(pos)
        frac = pos - i
        s = self._season
        return (1.0 - frac) * s[i % b] + frac * s[(i + 1) % b] - self._season_mean

    def _season_learn(self, t: float, dev: float, gamma: float) -> None:
        p = self.params
        pos = (t % p.season_seconds) / p.bin_seconds - 0.5
        i = math.floor(pos)
        frac = pos - i  # finite: t is
        s = self._season
        b = p.bins
        mean = self._season_mean
        total = 0.0
        w = 1.0 - frac
        if w > 0.0:
            j = i % b
            old = s[j]
            s[j] = old + gamma * w * (dev - (old - mean))
            total += s[j] - old  # the float32 value actually stored
        if frac > 0.0:
            j = (i + 1) % b
            old = s[j]
            s[j] = old + gamma * frac * (dev - (old - mean))
            total += s[j] - old
        self._season_mean = mean + total / b

    def _levels(self) -> list[float]:
        """The candidates' levels as a list: read once by a caller that forecasts several horizons."""
        p = self.params
        return self._packed[p.at_levels : p.at_levels + len(p.seasonal)].tolist()

    def _candidate_points(self, t_target: float, levels: list[float]) -> list[float]:
        """Each candidate's point at ``t_target``, from ``levels`` (:meth:`_levels`)."""
        p = self.params
        b = p.bins
        if b:  # _season_at(t_target), inlined
            pos = (t_target % p.season_seconds) / p.bin_seconds - 0.5
            i = math.floor(pos)
            frac = pos - i
            season = self._season
            s = (1.0 - frac) * season[i % b] + frac * season[(i + 1) % b] - self._season_mean
        else:
            s = 0.0
        return [lv + s if seasonal else lv for lv, seasonal in zip(levels, p.seasonal, strict=True)]

    def _weights(self, j: int) -> Sequence[float]:
        """The combination weights at calibrated horizon ``j``, cached until that horizon is scored."""
        p = self.params
        k = len(p.candidates)
        state = self._packed
        row = p.at_wts + j * k
        first = state[row]
        if first == first:  # NaN marks a stale row
            return state[row : row + k]
        if state[p.at_count + j] == 0:
            out = [1.0 / k] * k
        else:
            errors = p.at_cand_mae + j * k
            maes = state[errors : errors + k].tolist()  # a list: each read of an array makes a float
            floor = max(_TINY, 1e-6 * max(maes))
            best = min(maes) + floor
            # Relative to the best candidate, so a large weight_power cannot overflow.
            power = p.weight_power
            raw = [(best / (m + floor)) ** power for m in maes]
            total = sum(raw)
            out = [r / total for r in raw]
        state[row : row + k] = array("d", out)
        return out

    def _band_calibrated(self, j: int) -> tuple[float, float]:
        """(below, above): how far under and over the point the band reaches at calibrated horizon j."""
        p = self.params
        state, count = self._packed, p.at_count
        if state[count + j] > 0:
            return state[p.at_lo + j], state[p.at_up + j]
        # No outcome yet at this horizon: borrow from the nearest shorter horizon that has one.
        h = p.calibrated_steps[j]
        for i in range(j - 1, -1, -1):
            if state[count + i] > 0:
                f = math.sqrt(h / p.calibrated_steps[i])
                return state[p.at_lo + i] * f, state[p.at_up + i] * f
        # No outcome at all yet: twice the one-step error scale grown like sqrt(h), or the prior.
        w = p.initial_q * 2.0 * self._scale * math.sqrt(h) if self._n >= 2 else p.prior_half_width
        return w, w

    # ------------------------------------------------------------------ verbs
    @property
    def n_seen(self) -> int:
        """Number of samples learned."""
        return self._n

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        """Arguments for River's estimator checks (``step_seconds`` has no default)."""
        yield {"step_seconds": 300}
        yield {"step_seconds": 60, "season_seconds": 0, "calibrated_steps": (1, 3), "symmetric": False}

    def learn_one(self, y: float, x: dict[str, Any] | None = None) -> None:
        """River's verb: learn ``y`` as the value of the step after the last learned one.

        The first value is taken to be at epoch 0 (midnight UTC, for the daily profile). The exogenous
        ``x`` is accepted and ignored: the forecaster is univariate. Use :meth:`learn_at` when the
        time of the value is known.
        """
        self.learn_at(0.0 if self._n == 0 else self._t_last + self.params.step_seconds, y)

    def learn_at(self, t: float, y: float) -> None:
        """Learn the value ``y`` observed at the aligned step starting at epoch seconds ``t``.

        A ``t`` not after the last learned one, and a non-finite ``y``, are ignored. Steps skipped
        (``t`` several steps after the last one) are treated as missing: forecasts that targeted them
        are not scored and the smoothers carry on from their last state.
        """
        t = float(t)
        if self._observe(t, float(y)):
            self._issue(t)

    def _observe(self, t: float, y: float) -> bool:
        """:meth:`learn_one` short of issuing the forecasts to be scored later; False if ignored."""
        if not (math.isfinite(t) and math.isfinite(y)):
            return False
        if self._n == 0:
            self._first_t = t
            s_t = self._season_at(t)
            p = self.params
            levels = array("d", [y - s_t if seasonal else y for seasonal in p.seasonal])
            self._packed[p.at_levels : p.at_levels + len(levels)] = levels
            self._season_level = y
        else:
            if t <= self._t_last:
                return False
            steps = round((t - self._t_last) / self.params.step_seconds)
            if steps > 1:
                self._skip(steps - 1)
            self._step += 1
            self._score(y)
            self._update(t, y)
        self._t_last = t
        self._y_last = y
        self._n += 1
        return True

    def _skip(self, skipped: int) -> None:
        # Forecasts made at, and aimed at, the missing steps can never be scored.
        p = self.params
        if skipped >= p.calibrated_steps[-1]:
            self._pending = _filled("f", _NAN, p.slots * p.width)
            self._step += skipped
            return
        pending = self._pending
        for _ in range(skipped):
            self._step += 1
            for j in range(len(p.calibrated_steps)):
                base = self._base(j, self._step)
                if base is not None:
                    for c in range(p.width):
                        pending[base + c] = _NAN

    def _base(self, j: int, origin: int) -> int | None:
        """Offset in the pending ring of the forecast issued at step ``origin`` for horizon ``j``."""
        p = self.params
        stride = p.strides[j]
        if origin % stride:
            return None
        return (p.offsets[j] + (origin // stride) % p.lengths[j]) * p.width

    def _score(self, y: float) -> None:
        p = self.params
        a = p.error_alpha
        k = len(p.candidates)
        width = p.width
        step = self._step
        pending, st = self._pending, self._packed
        lr, sa, symmetric, floor = p.coverage_lr, p.spread_alpha, p.symmetric, p.step_floor
        for j, h, stride, offset, length in p.rings:
            origin = step - h  # as _base(j, step - h)
            if origin % stride:
                continue
            base = (offset + (origin // stride) % length) * width
            point = pending[base + k]
            if point != point:  # NaN: never issued, or lost to a gap
                continue
            lo, up, count = p.at_lo + j, p.at_up + j, p.at_count + j
            n = st[count] + 1  # a whole number held as a double: exact, and it divides as the int did
            inv = 1.0 / n
            w = inv if inv > a else a  # running mean until 1/a samples: no start-up bias
            row = p.at_cand_mae + j * k
            for c in range(k):
                old = st[row + c]  # each read of an array makes a float: read once
                st[row + c] = old + w * (abs(y - pending[base + c]) - old)
            st[p.at_wts + j * k] = _NAN  # the weights at this horizon are stale
            resid = y - point
            err = abs(resid)
            below, above = pending[base + k + 1], pending[base + k + 2]
            spread = st[p.at_spread + j]
            mae = st[p.at_mae + j]
            # Float32 storage of the issued band must not turn a value on its edge into a miss.
            covered = -below * (1.0 + 1e-6) - _TINY <= resid <= above * (1.0 + 1e-6) + _TINY
            if n * lr <= 1.0:
                # Too few outcomes to track a quantile: the Laplace rule on the running mean error.
                st[lo] = st[up] = p.initial_q * (mae + (err - mae) / n)
            elif symmetric:
                st[up] = st[lo] = track_quantile(st[up], not covered, spread, 1.0 - p.level, lr, floor)
            else:
                # Conformal quantile tracking of each tail at (1 - level) / 2: CPU errors are skewed
                # (spikes go up), so the band is as wide as each side needs rather than twice the larger.
                tail = (1.0 - p.level) / 2.0
                st[up] = track_quantile(st[up], resid > above * (1.0 + 1e-6) + _TINY, spread, tail, lr, floor)
                st[lo] = track_quantile(
                    st[lo], -resid > below * (1.0 + 1e-6) + _TINY, spread, tail, lr, floor
                )
            cover = st[p.at_cover + j]
            st[p.at_cover + j] = cover + w * ((1.0 if covered else 0.0) - cover)
            st[p.at_mae + j] = mae + w * (err - mae)
            # The spread ignores the excess of spikes, so one outlier does not inflate the step for days.
            if spread > _TINY and n * sa > 1.0:
                cap = p.width_clip * spread
                capped = cap if cap < err else err
            else:
                capped = err
            st[p.at_spread + j] = spread + (inv if inv > sa else sa) * (capped - spread)
            st[count] = n

    def _update(self, t: float, y: float) -> None:
        p = self.params
        s_t = self._season_at(t)
        season_level = self._season_level
        err = y - s_t - season_level
        inv = 1.0 / self._n
        ea = p.error_alpha
        scale = self._scale
        scale += (inv if inv > ea else ea) * (abs(err) - scale)
        self._scale = scale
        # _clipped(e, clip), spelt out: Huberised at clip times the (updated) scale after two samples.
        clipping = self._n > 2
        levels, at = self._packed, p.at_levels
        for c, (alpha, seasonal, clip) in enumerate(p.candidates):
            e = y - (levels[at + c] + (s_t if seasonal else 0.0))
            if clip > 0.0:
                bound = clip * scale
                if clipping and bound > 0.0:
                    e = e if e < bound else bound
                    e = e if e > -bound else -bound
            levels[at + c] += alpha * e
        bound = p.clip * scale
        clip_season = clipping and bound > 0.0
        if clip_season:
            err = err if err < bound else bound
            err = err if err > -bound else -bound
        season_level += p.season_alpha * err
        self._season_level = season_level
        if p.bins:
            # The profile starts at 0 and is shrunk towards 0 (constant gamma, no running-mean start): on
            # noisy CPU series one day's deviations are mostly noise, and a first day at 0 stays harmless.
            cycles = math.floor((t - self._first_t) / p.season_seconds)
            g = 1.0 / (p.season_prior + 1.0 + cycles)
            gamma = (g if g > p.season_gamma else p.season_gamma) * p.season_share
            dev = y - season_level
            if clip_season:
                dev = dev if dev < bound else bound
                dev = dev if dev > -bound else -bound
            self._season_learn(t, dev, gamma)

    def _issue(self, t: float) -> None:
        p = self.params
        k = len(p.candidates)
        width = p.width
        step = self._step
        sec = p.step_seconds
        pending = self._pending
        levels = self._levels()
        for j, h, stride, offset, length in p.rings:
            if step % stride:  # as _base(j, step)
                continue
            base = (offset + (step // stride) % length) * width
            cands = self._candidate_points(t + h * sec, levels)
            for c in range(k):
                pending[base + c] = cands[c]
            pending[base + k] = sum(map(operator.mul, self._weights(j), cands))
            pending[base + k + 1], pending[base + k + 2] = self._band_calibrated(j)

    def forecast(self, horizon: int, xs: list[dict[str, Any]] | None = None) -> list[float]:
        """River's verb: point forecasts for steps ``1..horizon`` after the last learned step.

        ``xs`` (exogenous features) is accepted and ignored. The bands are :meth:`intervals`.
        """
        return [band.point for band in self.forecast_at(range(1, int(horizon) + 1))]

    def forecast_seconds(
        self,
        seconds: Sequence[float],
        current: tuple[float, float] | None = None,
        between: Literal["interpolate", "refuse"] = "interpolate",
    ) -> list[Interval]:
        """Intervals at the given seconds ahead (ascending) of the last learned step.

        A horizon that is a whole number of steps is :meth:`forecast_at` that step. One that falls
        between steps ``k`` and ``k + 1`` is, with ``between="interpolate"``, the linear interpolation of
        their intervals (step 0 being the last learned value, a band of zero width), or with
        ``between="refuse"`` a ``ValueError`` naming the horizon: never silently rounded.

        Examples
        --------
        >>> f = OnlineForecaster(step_seconds=300)
        >>> for i in range(100):
        ...     f.learn_at(i * 300.0, 0.5)
        >>> f.forecast_seconds([300, 900]) == f.forecast_at([1, 3])
        True
        >>> mid = f.forecast_seconds([450])[0]
        >>> mid == interpolate_interval(*f.forecast_at([1, 2]), 0.5)
        True
        >>> f.forecast_seconds([450], between="refuse")
        Traceback (most recent call last):
        ...
        ValueError: horizon 450 s is not a whole number of 300 s steps (1.5 steps)
        """
        plan = _plan(tuple(seconds), self.params.step_seconds, between)
        if all(lo == hi for lo, hi, _ in plan):  # whole steps: exactly forecast_at
            return self.forecast_at([lo for lo, _, _ in plan], current)
        if current is not None:
            model = self._clone()
            model._observe(float(current[0]), float(current[1]))
        else:
            model = self
        needed = sorted({s for lo, hi, _ in plan for s in (lo, hi) if s > 0})
        y = model._y_last if model._n else model.params.prior_center
        return apply_plan(plan, dict(zip(needed, model.forecast_at(needed), strict=True)), y)

    def intervals(self, steps: int, current: tuple[float, float] | None = None) -> list[Interval]:
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
        ...     f.learn_at(i * 300.0, 0.5)
        >>> f.forecast_at([1, 6]) == [f.intervals(6)[0], f.intervals(6)[5]]
        True
        """
        if current is not None:
            # A throwaway copy that learned `current`: it never scores, so it need not issue forecasts.
            clone = self._clone()
            clone._observe(float(current[0]), float(current[1]))
            return clone.forecast_at(horizons)
        hs = [int(h) for h in horizons]
        if not hs:
            return []
        if any(b <= a for a, b in itertools.pairwise(hs)) or hs[0] <= 0:
            raise ValueError(f"horizons must be positive and ascending, got {hs}")
        p = self.params
        if self._n == 0:
            c, w = p.prior_center, p.prior_half_width
            return [Interval(c, c - w, c + w)] * len(hs)
        cal = p.calibrated_steps
        first, last = cal[0], cal[-1]
        top = len(cal) - 1
        t_last, sec = self._t_last, p.step_seconds
        weights: list[Sequence[float] | None] = [None] * len(cal)  # _weights(j), fetched once
        band = self._band_calibrated
        levels = self._levels()
        mul = operator.mul
        out: list[Interval] = []
        j = 0
        for h in hs:
            while j < top and cal[j + 1] <= h:
                j += 1
            if h <= first or h >= last:
                # Outside the calibrated range the band grows (or shrinks) like sqrt(h).
                edge = 0 if h <= first else top
                f = math.sqrt(h / cal[edge])
                wts = weights[edge]
                if wts is None:
                    wts = weights[edge] = self._weights(edge)
                below, above = band(edge)
                below, above = below * f, above * f
            else:
                f = (h - cal[j]) / (cal[j + 1] - cal[j])
                g = 1 - f
                wa, wb = weights[j], weights[j + 1]
                if wa is None:
                    wa = weights[j] = self._weights(j)
                if wb is None:
                    wb = weights[j + 1] = self._weights(j + 1)
                if f == 0.0 and math.isfinite(sum(wb)):
                    # At calibrated horizon j, g * a + f * b is a exactly: 1.0 * a is a, f * b is a zero
                    # when b is finite, and a weight is never -0.0 (r / total with r >= +0.0, or 1 / k).
                    wts = wa
                else:
                    wts = [g * a + f * b for a, b in zip(wa, wb, strict=True)]
                lo0, up0 = band(j)
                lo1, up1 = band(j + 1)
                below = g * lo0 + f * lo1
                above = g * up0 + f * up1
            point = sum(map(mul, wts, self._candidate_points(t_last + h * sec, levels)))
            out.append(Interval(point, point - below, point + above))
        return out

    def _clone(self) -> OnlineForecaster:
        # A copy whose learning cannot touch this one: the parameters are shared, every array copied.
        # Spelt out rather than looped over _STATE: the stream clones twice a sample (forecast_seconds
        # with the open window) and a loop of setattr costs twice as much; the unit tests check that it
        # copies every slot.
        other = object.__new__(OnlineForecaster)
        other.params = self.params
        other._n = self._n
        other._step = self._step
        other._t_last = self._t_last
        other._y_last = self._y_last
        other._first_t = self._first_t
        other._season_level = self._season_level
        other._scale = self._scale
        other._season_mean = self._season_mean
        other._season = self._season[:]
        other._pending = self._pending[:]
        other._packed = self._packed[:]
        return other

    def accuracy(self) -> dict[int, tuple[float, float]]:
        """Per calibrated horizon: (recent mean absolute error, recent interval coverage in [0, 1]).

        Both are exponentially weighted (half-life ``error_half_life`` seconds). A horizon with no scored
        forecast yet reports ``(0.0, 1.0)``.
        """
        p, st = self.params, self._packed
        return {
            h: ((st[p.at_mae + j], st[p.at_cover + j]) if st[p.at_count + j] else (0.0, 1.0))
            for j, h in enumerate(p.calibrated_steps)
        }

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (parameters and learned state); float arrays are base64 float32."""

        p = self.params
        saved = {f.key: f.save(self._held(f), p) for f in _STATE}
        return {"v": _STATE_VERSION, "params": p.to_dict(), **saved}

    def _held(self, f: _Number | _Buffer) -> Any:
        """The value of one part of the state, from its own attribute or from ``_packed``."""
        if isinstance(f, _Buffer) and f.packed:
            return self._packed[f.span(self.params)]
        return getattr(self, f"_{f.key}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OnlineForecaster:
        """Rebuild a forecaster from :meth:`to_dict` output; it forecasts exactly as the original."""
        if d.get("v") == 1:
            d = _migrate_v1(d)
        if d.get("v") != _STATE_VERSION:
            raise ValueError(
                f"unsupported forecaster state version {d.get('v')!r}, expected {_STATE_VERSION} (or 1)"
            )
        m = cls(**d["params"])
        for f in _STATE:
            if isinstance(f, _Buffer) and f.packed:
                m._packed[f.span(m.params)] = array("d", f.load(d[f.key], m.params))
            else:
                setattr(m, f"_{f.key}", f.load(d[f.key], m.params))
        return m


def _migrate_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A version-1 state as version 2: its per-step constants as half-lives at its own step.

    The learned state is kept as it is; the per-step constants derived back from the half-lives equal
    the saved ones to about 1e-15, so the forecaster carries on as it would have.
    """
    params = dict(d["params"])
    step = float(params["step_seconds"])
    cands = params.pop("candidates")
    params["smoothers"] = [[half_life(float(a), step), bool(s), float(c)] for a, s, c in cands]
    params["error_half_life"] = half_life(float(params.pop("error_alpha")), step)
    params["spread_half_life"] = half_life(float(params.pop("spread_alpha")), step)
    params["min_outcomes"] = 1  # no floor: the saved constants are kept as they were
    return {**d, "v": _STATE_VERSION, "params": params}
