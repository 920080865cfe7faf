"""Tumbling-window alignment of raw samples into one feature vector per interval.

Why not Faust's windowed tables: they window on the Kafka message timestamp and expire windows
against wall-clock time, so a replayed trace (event time far from now) or a late sample is
silently dropped. This aligner windows on the sample's own event time, keeps only the open
window per deployment (a few hundred bytes in the changelog), and applies the documented rules:

* samples of the open window are averaged per feature, in any order;
* an exact duplicate (same timestamp and same set of features) is rejected as ``duplicate``;
* a sample for an already closed window is merged into the open window when it is at most
  ``grace_seconds`` older than the open window's start, otherwise rejected as ``too_late``;
* a sample of a later window closes the open window, whose mean vector the models then learn.
"""

from __future__ import annotations

import functools
import math
from array import array
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import BadSample

#: Duplicate keys remembered per open window (one source emits one sample per window; a few are merged).
_MAX_SEEN = 64


@functools.lru_cache(maxsize=256)
def _shared(names: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple object per list of feature names: every deployment's aligner holds the same few."""
    return names


@dataclass(slots=True)
class AlignedWindow:
    """The mean of the samples in one window; ``values`` carries missing features forward."""

    start: float
    values: dict[str, float]
    samples: int


@dataclass(slots=True)
class TumblingAligner:
    """Event-time tumbling windows of ``step_seconds`` for one deployment.

    >>> a = TumblingAligner(step_seconds=60, grace_seconds=60)
    >>> a.add(120.0, {"cpu_utilization": 0.4}).current.values
    {'cpu_utilization': 0.4}
    >>> a.add(150.0, {"cpu_utilization": 0.6}).current.values["cpu_utilization"]
    0.5
    >>> step = a.add(185.0, {"cpu_utilization": 0.9})
    >>> step.closed.start, step.closed.values, step.current.start
    (120, {'cpu_utilization': 0.5}, 180)
    """

    step_seconds: int
    grace_seconds: float
    window_start: float | None = None
    # One aligner per tracked deployment: the open window's sums and sample counts sit in arrays beside
    # a shared tuple of the features' names, in the order they came (8 bytes a value, where a dict of
    # floats costs about 70).
    names: tuple[str, ...] = ()
    sums: array[float] = field(default_factory=lambda: array("d"))
    counts: array[int] = field(default_factory=lambda: array("q"))
    seen: list[str] = field(default_factory=list)
    #: The last closed window's means, carried forward for missing features: a shared tuple of their
    #: names and an array of the values, in the window's order (a dict and its floats cost ~3 times as
    #: much, per deployment).
    last_names: tuple[str, ...] = ()
    last_values: array[float] = field(default_factory=lambda: array("d"))

    @property
    def last(self) -> dict[str, float]:
        """The last closed window's means by feature."""
        return dict(zip(self.last_names, self.last_values.tolist(), strict=True))

    def window_of(self, t: float) -> float:
        return math.floor(t / self.step_seconds) * self.step_seconds

    def add(self, t: float, values: dict[str, float]) -> AlignStep:
        """Merge one sample; raises :class:`BadSample` for duplicates and too-late samples."""
        window = self.window_of(t)
        closed: AlignedWindow | None = None
        if self.window_start is None:
            self.window_start = window
        elif window > self.window_start:
            closed = self._close()
            self.window_start = window
        elif window < self.window_start:
            lateness = self.window_start - t
            if lateness > self.grace_seconds:
                raise BadSample(
                    "too_late",
                    f"sample at {t:.0f} is {lateness:.0f} s before the open window "
                    f"(grace {self.grace_seconds:.0f} s)",
                )
        dedup = f"{t:.3f}|{','.join(sorted(values))}"
        if dedup in self.seen:
            raise BadSample(
                "duplicate", f"a sample with timestamp {t:.0f} and the same features was already merged"
            )
        self.seen.append(dedup)
        if len(self.seen) > _MAX_SEEN:
            del self.seen[0]
        names = self.names
        new = [name for name in values if name not in names]
        if new:
            names = self.names = _shared((*names, *new))
            self.sums.fromlist([0.0] * len(new))
            self.counts.fromlist([0] * len(new))
        sums, counts = self.sums, self.counts
        for name, value in values.items():
            i = names.index(name)
            sums[i] += value
            counts[i] += 1
        return AlignStep(closed=closed, current=self.current())

    def current(self) -> AlignedWindow:
        """The open window so far, missing features carried forward from earlier windows."""
        assert self.window_start is not None
        # The arrays are as long as their names by construction: no zip(strict=True) on this path.
        values = dict(zip(self.last_names, self.last_values.tolist(), strict=False))
        counts = self.counts.tolist()
        for name, total, count in zip(self.names, self.sums.tolist(), counts, strict=False):
            values[name] = total / count
        return AlignedWindow(self.window_start, values, max(counts, default=0))

    def _close(self) -> AlignedWindow:
        done = self.current()
        self.last_names = _shared(tuple(done.values))
        self.last_values = array("d", list(done.values.values()))
        self.names = ()
        del self.sums[:], self.counts[:]
        self.seen.clear()
        return done

    def to_dict(self) -> dict[str, Any]:
        return {
            "w": self.window_start,
            "s": dict(zip(self.names, self.sums, strict=True)),
            "c": dict(zip(self.names, self.counts, strict=True)),
            "seen": list(self.seen),
            "last": self.last,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, step_seconds: int, grace_seconds: float) -> TumblingAligner:
        sums = dict(d.get("s", {}))
        counts = d.get("c", {})
        last = dict(d.get("last", {}))
        return cls(
            step_seconds=step_seconds,
            grace_seconds=grace_seconds,
            window_start=d.get("w"),
            names=_shared(tuple(sums)),
            sums=array("d", list(sums.values())),
            counts=array("q", [int(counts[name]) for name in sums]),
            seen=list(d.get("seen", [])),
            last_names=_shared(tuple(last)),
            last_values=array("d", [float(v) for v in last.values()]),
        )


@dataclass(slots=True)
class AlignStep:
    """What one sample did: possibly closed the previous window, and the open window now."""

    closed: AlignedWindow | None
    current: AlignedWindow
