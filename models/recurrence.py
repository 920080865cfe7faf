"""Load that comes back at the same minute of every hour: cron jobs, hourly imports, report runs.

:class:`RecurringLoad` remembers, for each phase of a period (by default each step of an hour), the load
seen there in each of the last ``periods`` periods. A phase that jumped to at least ``x`` in *every* one
of them is expected to do so again, and :meth:`RecurringLoad.forecast` returns the largest such load
over the next steps, so the replicas can be ready before it arrives instead of a pod start-up after.

Why a model of its own: the forecaster's seasonal profile is daily and coarse (at most
``max_season_bins`` interpolated bins), and its smoothers see a one-step spike as an error to spread over
the band, not as something due at :59. Why "every period": a burst that happened once, or in two of three
hours, is not a schedule, and holding replicas for it costs more than the reactive start-up it saves. What
it does to traces with and without such a schedule is measured in ``benchmarks/simulate.md``.

The load is utilisation x replicas (a pod's worth = 1.0), free of Helios' own scaling: a peak that was
met by more pods shows the same load as one that was not.
"""

from __future__ import annotations

import base64
import math
from array import array
from typing import Any

__all__ = ["PeriodicLoad", "RecurringLoad"]

_STATE_VERSION = 1
#: Seconds from the epoch to the end of year 9999, the latest time a sample can carry.
_LAST_SECOND = 253_402_300_800
#: Log-load codes per unit of natural log: 0.1 % resolution.
_LOG_RESOLUTION = 1000.0


class RecurringLoad:
    """Per-phase memory of the load in the last ``periods`` periods, and what recurs in all of them.

    Parameters
    ----------
    step_seconds
        The aligned step of the samples; phases are steps of the period.
    period_seconds
        The period to look for (an hour by default). A period of fewer than two steps, or not a whole
        number of steps, carries no phase: the model is then inert and forecasts nothing.
    periods
        How many consecutive periods a phase must have shown the load in.
    jump
        ... as a jump of at least this factor over the step before it: the load a reactive autoscaler
        meets a pod start-up late. A level that is merely higher at this hour is the forecaster's job.

    Examples
    --------
    Three hours of a 1-minute series with a spike of 3 pods' worth at :59, then the fourth hour:

    >>> m = RecurringLoad(step_seconds=60)
    >>> for minute in range(3 * 60):
    ...     m.learn_one(minute * 60.0, 3.0 if minute % 60 == 59 else 0.5)
    >>> m.forecast(3 * 3600 + 57 * 60.0, steps=2)  # at :57, looking at :58 and :59
    3.0
    >>> m.forecast(3 * 3600 + 10 * 60.0, steps=2) is None  # at :10: the next steps hold no jump
    True
    >>> RecurringLoad.from_dict(m.to_dict()).forecast(3 * 3600 + 57 * 60.0, steps=2)
    3.0
    """

    __slots__ = (
        "_last_jump",
        "_newest",
        "_run",
        "_values",
        "jump",
        "period_seconds",
        "periods",
        "phases",
        "step_seconds",
    )

    def __init__(
        self, step_seconds: int, period_seconds: int = 3600, periods: int = 3, jump: float = 1.5
    ) -> None:
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
        if not 1 <= periods <= 24:
            raise ValueError(f"periods must be in [1, 24], got {periods!r}")
        if not jump >= 1.0:
            raise ValueError(f"jump must be >= 1, got {jump!r}")
        self.step_seconds = step_seconds
        self.jump = jump
        self.period_seconds = period_seconds
        self.periods = periods
        whole = period_seconds % step_seconds == 0
        self.phases = period_seconds // step_seconds if whole and period_seconds >= 2 * step_seconds else 0
        #: Per phase: the period of its newest value (-1: none yet), and how many consecutive periods up to
        #: that one it has values for (capped at the slots). Periods since the epoch fit 32 bits for any
        #: period of two minutes or more (hours: ~70 million by year 9999), half the bytes of 64.
        self._newest = array(_period_code(period_seconds), [-1]) * self.phases
        self._run = array("B", [0]) * self.phases
        #: Per phase, ``periods + 1`` slots indexed by period modulo that: one more than a forecast reads,
        #: because a jump is judged against the step before it, which is learned first.
        self._values = array("f", [0.0]) * (self.phases * self._slots)
        #: The last step learned that was a recurring jump (-1: none): "on a schedule" for a period after.
        self._last_jump = -1

    @property
    def _slots(self) -> int:
        return self.periods + 1

    def learn_one(self, t: float, load: float) -> None:
        """Note the load of the step starting at ``t`` (seconds since the epoch)."""
        if not self.phases or load != load:  # inert, or NaN
            return
        step = round(t / self.step_seconds)
        phase, period = step % self.phases, step // self.phases
        slot = phase * self._slots + period % self._slots
        newest = self._newest[phase]
        if period == newest:  # the same step again (a re-aligned window): keep the larger
            self._values[slot] = max(self._values[slot], load)
            return
        if period < newest:
            return  # late: the slot already holds a newer period
        if self.expected(step) is not None:  # judged on the periods before, as it was forecast
            self._last_jump = step
        self._run[phase] = min(self._slots, self._run[phase] + 1) if period == newest + 1 else 1
        self._newest[phase] = period
        self._values[slot] = load

    def _seen(self, step: int) -> float | None:
        """The load of an absolute step (``t / step_seconds``) if it is still remembered."""
        phase, period = step % self.phases, step // self.phases
        newest = self._newest[phase]
        if not newest - self._run[phase] < period <= newest:
            return None
        return float(self._values[phase * self._slots + period % self._slots])

    def expected(self, step: int) -> float | None:
        """The load step ``step`` brought in each of the last ``periods`` periods, at least (their
        minimum), if in every one of them it was a jump of ``jump`` x the step before; else None."""
        if not self.phases:
            return None
        low = None
        for back in range(1, self.periods + 1):
            then = step - back * self.phases
            load, before = self._seen(then), self._seen(then - 1)
            if load is None or before is None or load < self.jump * before:
                return None
            low = load if low is None else min(low, load)
        return low

    def forecast(self, t: float, steps: int) -> float | None:
        """The largest recurring load over the ``steps`` steps after the one starting at ``t``."""
        now = round(t / self.step_seconds)
        found = [v for j in range(now + 1, now + 1 + steps) if (v := self.expected(j)) is not None]
        return max(found) if found else None

    def ceiling(self, t: float, steps: int) -> float | None:
        """On a schedule (a recurring jump in the last period or due within ``steps`` steps of the step
        starting at ``t``): the most load the next ``steps`` steps brought in any of the last ``periods``
        periods. None off a schedule, or if a step has not been seen in every one of them.

        What a scheduled spike brings is known, and so is its end: the load went back down after it
        every time. The forecaster's band, widened by the spikes it could not foresee, would otherwise
        keep pods for errors the schedule explains.
        """
        if not self.phases:
            return None
        now = round(t / self.step_seconds)
        recent = self._last_jump >= 0 and now - self._last_jump <= self.phases
        if not recent and all(self.expected(j) is None for j in range(now, now + steps + 1)):
            return None
        most = 0.0
        for j in range(now + 1, now + 1 + steps):
            for back in range(1, self.periods + 1):
                load = self._seen(j - back * self.phases)
                if load is None:
                    return None
                most = max(most, load)
        return most

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        base = max(self._newest, default=-1)
        return {
            "v": _STATE_VERSION,
            "step": self.step_seconds,
            "period": self.period_seconds,
            "periods": self.periods,
            "jump": self.jump,
            # Periods as offsets from the newest one: small numbers instead of ~10^5 each.
            "base": base,
            "newest": [base - p if p >= 0 else -1 for p in self._newest],
            "run": list(self._run),
            "last_jump": self._last_jump,
            "values": base64.b64encode(self._values.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecurringLoad:
        """Restore a model; raises ``ValueError`` naming the field that does not fit."""
        if d.get("v") != _STATE_VERSION:
            raise ValueError(f"recurring-load state version {d.get('v')!r}, expected {_STATE_VERSION}")
        m = cls(int(d["step"]), int(d["period"]), int(d["periods"]), float(d["jump"]))
        if len(d["newest"]) != m.phases or len(d["run"]) != m.phases:
            raise ValueError(f"recurring-load state has {len(d['newest'])} phases, expected {m.phases}")
        base = int(d["base"])
        m._newest = array(m._newest.typecode, [base - int(o) if int(o) >= 0 else -1 for o in d["newest"]])
        m._run = array("B", [min(m._slots, int(r)) for r in d["run"]])
        m._last_jump = int(d["last_jump"])
        raw = base64.b64decode(d["values"])
        if len(raw) != 4 * m.phases * m._slots:
            raise ValueError(f"recurring-load state field 'values' has {len(raw) // 4} values")
        m._values = array("f")
        m._values.frombytes(raw)
        return m


def _period_code(period_seconds: int) -> str:
    """The array type of periods since the epoch: 32 bits when every period up to year 9999 fits."""
    return "i" if _LAST_SECOND // max(1, period_seconds) < 2**31 - 1 else "q"


_Layout = tuple[tuple[int, ...], list[int], list[int]]
_LAYOUTS: dict[tuple[int, tuple[int, ...], int], _Layout] = {}


def _layout(step_seconds: int, periods: tuple[int, ...], max_bins: int) -> _Layout:
    """(periods, bins per period, first bin of each) for a shape, shared by the models of that shape
    (read only: never mutated)."""
    key = (step_seconds, periods, max_bins)
    if key not in _LAYOUTS:
        bins = [min(max_bins, p // step_seconds) if p >= 2 * step_seconds else 0 for p in periods]
        _LAYOUTS[key] = (periods, bins, [sum(bins[:k]) for k in range(len(bins))])
    return _LAYOUTS[key]


class PeriodicLoad:
    """How much the load rose over the coming steps at this time of each of the last ``cycles`` periods.

    A daily (weekly, hourly) ramp comes back at the same time of its period. Per period, the load is kept
    in phase bins (at most ``max_bins`` per period, at least one step wide; a bin holds the largest load
    seen in it) for the last ``cycles`` periods. :meth:`growth` compares, in each of those periods, the bins
    of the coming steps with the bin of the current one: when the load rose by at least ``min_growth`` in
    *every* one of them (the smallest rise of the cycles), that rise is expected again, and the deployment
    can be sized for it a start-up ahead instead of a start-up late.

    Why a ratio and not the load itself: a ramp keeps its shape while the level drifts from day to day
    (a busier Monday, a slow leak), so the rise is what recurs. Why "every cycle": a rise seen once is not
    a schedule, and replicas held for it cost more than the reactive start-up they save. Why a model of its
    own next to the forecaster's daily profile: the forecaster learns per-pod utilisation, which Helios'
    own scaling changes (a ramp met by more pods shows no rise per pod), and the recommender centres its
    bands on the current CPU for that reason; the load here is utilisation x replicas, free of it.

    Loads are stored as 16-bit codes of their logarithm (0.1 % resolution, any magnitude), so the state
    costs ``11`` bytes per bin (sizes in ``benchmarks/memory.md``).

    Parameters
    ----------
    step_seconds
        The aligned step of the samples.
    periods
        The periods to look for, in seconds. A period shorter than two steps is skipped.
    cycles
        How many consecutive periods a rise must have shown in.
    max_bins
        Most phase bins per period.
    min_growth
        The smallest rise (coming load over current load) that counts; smaller ones are noise.

    Examples
    --------
    Four days of a 30-minute series: 1 pod's worth of load, 3 from 09:00 to 17:00. On the fourth day,
    at 08:30 the next step is expected to bring three times the load:

    >>> m = PeriodicLoad(step_seconds=1800)
    >>> day = [3.0 if 18 <= s < 34 else 1.0 for s in range(48)]
    >>> for i in range(3 * 48 + 17):
    ...     m.learn_one(i * 1800.0, day[i % 48])
    >>> round(m.growth(3 * 86400 + 17 * 1800.0, steps=1), 2)   # 08:30: the step after it rose to 3x
    3.0
    >>> m.growth(3 * 86400 + 20 * 1800.0, steps=1) is None   # 10:00: no rise ahead
    True
    >>> PeriodicLoad.from_dict(m.to_dict()).growth(3 * 86400 + 17 * 1800.0, steps=1) == m.growth(
    ...     3 * 86400 + 17 * 1800.0, steps=1)
    True
    """

    __slots__ = (
        "_base",
        "_bins",
        "_newest",
        "_offsets",
        "_run",
        "_value",
        "cycles",
        "max_bins",
        "min_growth",
        "periods",
        "step_seconds",
    )

    def __init__(
        self,
        step_seconds: int,
        periods: tuple[int, ...] = (3600, 86400, 604800),
        cycles: int = 3,
        max_bins: int = 96,
        min_growth: float = 1.1,
    ) -> None:
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
        if not periods or any(p <= 0 for p in periods):
            raise ValueError(f"periods must be positive seconds, got {periods!r}")
        if not 1 <= cycles <= 24:
            raise ValueError(f"cycles must be in [1, 24], got {cycles!r}")
        if max_bins < 2:
            raise ValueError(f"max_bins must be >= 2, got {max_bins!r}")
        if not min_growth > 1.0:
            raise ValueError(f"min_growth must be > 1, got {min_growth!r}")
        self.step_seconds = step_seconds
        self.cycles = cycles
        self.max_bins = max_bins
        self.min_growth = min_growth
        #: The periods, bins per period (0: shorter than two steps, skipped) and each period's first bin:
        #: one shared tuple of each per shape, not three objects per deployment.
        self.periods, self._bins, self._offsets = _layout(
            step_seconds, tuple(int(p) for p in periods), max_bins
        )
        total = sum(self._bins)
        #: Per period, the cycle its counts are relative to (-1: nothing learned yet).
        self._base = array("q", [-1]) * len(self.periods)
        #: Per bin: its newest cycle relative to the base, plus one (0: none yet), and for how many
        #: consecutive cycles up to that one it holds values (capped at the slots).
        self._newest = array("H", [0]) * total
        self._run = array("B", [0]) * total
        #: Per bin, ``cycles + 1`` slots by cycle modulo that: one more than a forecast reads, because the
        #: current cycle's value is being written while the last ``cycles`` are read.
        self._value = array("H", [0]) * (total * (cycles + 1))

    @staticmethod
    def _code(load: float) -> int:
        if not load > 0:
            return 0
        return min(65535, max(1, round(math.log(load) * _LOG_RESOLUTION) + 32768))

    @staticmethod
    def _load(code: int) -> float:
        return 0.0 if code == 0 else math.exp((code - 32768) / _LOG_RESOLUTION)

    def _bin(self, k: int, t: float) -> int:
        """The absolute bin (from the epoch) of period ``k`` holding time ``t``."""
        return int((t + 1e-6) // (self.periods[k] / self._bins[k]))

    def learn_one(self, t: float, load: float) -> None:
        """Note the load of the step starting at ``t`` (seconds since the epoch)."""
        if load != load or load < 0:  # NaN or impossible
            return
        code = self._code(load)
        for k, bins in enumerate(self._bins):
            if not bins:
                continue
            absolute = self._bin(k, t)
            cycle = absolute // bins
            if self._base[k] < 0 or cycle - self._base[k] + 1 > 65535:
                self._reset(k, cycle)
            i = self._offsets[k] + absolute % bins
            rel = cycle - self._base[k] + 1
            slot = i * (self.cycles + 1) + cycle % (self.cycles + 1)
            newest = self._newest[i]
            if rel == newest:
                self._value[slot] = max(self._value[slot], code)
            elif rel > newest:
                self._run[i] = min(self.cycles + 1, self._run[i] + 1) if rel == newest + 1 else 1
                self._newest[i] = rel
                self._value[slot] = code

    def _reset(self, k: int, cycle: int) -> None:
        self._base[k] = cycle
        lo, hi = self._offsets[k], self._offsets[k] + self._bins[k]
        for i in range(lo, hi):
            self._newest[i] = 0
            self._run[i] = 0

    def _seen(self, k: int, absolute: int) -> float | None:
        bins = self._bins[k]
        i = self._offsets[k] + absolute % bins
        rel = absolute // bins - self._base[k] + 1
        newest = self._newest[i]
        if self._base[k] < 0 or not newest - self._run[i] < rel <= newest:
            return None
        return self._load(self._value[i * (self.cycles + 1) + (absolute // bins) % (self.cycles + 1)])

    def _period_growth(self, k: int, t: float, steps: int) -> float | None:
        bins = self._bins[k]
        now = self._bin(k, t)
        # The coming steps, to the end of the last one the decision covers.
        last = self._bin(k, t + (steps + 1) * self.step_seconds - 1)
        ahead = range(max(now + 1, self._bin(k, t + self.step_seconds)), last + 1)
        if not ahead:
            return None
        low = None
        for back in range(1, self.cycles + 1):
            then = self._seen(k, now - back * bins)
            coming = [self._seen(k, b - back * bins) for b in ahead]
            if then is None or not then > 0 or any(c is None for c in coming):
                return None
            rise = max(c for c in coming if c is not None) / then
            low = rise if low is None else min(low, rise)
        return low

    def growth(self, t: float, steps: int) -> float | None:
        """The rise the ``steps`` steps after the one starting at ``t`` brought over it, in every one of the
        last ``cycles`` periods (the largest such rise over the periods), or None below ``min_growth``."""
        found = [g for k, b in enumerate(self._bins) if b and (g := self._period_growth(k, t, steps))]
        best = max(found, default=None)
        return round(best, 6) if best is not None and best >= self.min_growth else None

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "v": _STATE_VERSION,
            "step": self.step_seconds,
            "periods": list(self.periods),
            "cycles": self.cycles,
            "max_bins": self.max_bins,
            "min_growth": self.min_growth,
            "base": list(self._base),
            "newest": base64.b64encode(self._newest.tobytes()).decode("ascii"),
            "run": base64.b64encode(self._run.tobytes()).decode("ascii"),
            "values": base64.b64encode(self._value.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PeriodicLoad:
        """Restore a model; raises ``ValueError`` naming the field that does not fit."""
        if d.get("v") != _STATE_VERSION:
            raise ValueError(f"periodic-load state version {d.get('v')!r}, expected {_STATE_VERSION}")
        m = cls(
            int(d["step"]),
            tuple(int(p) for p in d["periods"]),
            int(d["cycles"]),
            int(d["max_bins"]),
            float(d["min_growth"]),
        )
        base = [int(b) for b in d["base"]]
        if len(base) != len(m.periods):
            raise ValueError(f"periodic-load state field 'base' has {len(base)} periods")
        m._base = array("q", base)
        for name, attr in (("newest", "_newest"), ("run", "_run"), ("values", "_value")):
            restored = array(getattr(m, attr).typecode)
            restored.frombytes(base64.b64decode(d[name]))
            if len(restored) != len(getattr(m, attr)):
                raise ValueError(f"periodic-load state field {name!r} has {len(restored)} values")
            setattr(m, attr, restored)
        return m
