"""An incident stays declared while the measured state stays outside the band that was normal before it.

The streaming detector scores the *onset* of an anomaly and then damps repeats (NAB rewards exactly
that), so its raw detections stop while an incident continues: CPU pinned at 97 % for half an hour is
new only in its first minutes. Operators, alert rules and the no-scale-down-during-an-anomaly rule need
the incident, not its onset. :class:`IncidentTracker` gives them that:

* at a detection, each contributing feature whose value is outside its normal band -- the slow level
  ``+- width`` slow spreads the detector had learned *before* the onset (at least ``min_relative_width``
  of the level either side) -- is captured with that band;
* the incident stays declared while any captured feature's value is outside its captured band, and
  ends at the first step where all are back inside;
* a level shift that persists for ``adapt_seconds`` after the onset is the new normal: the incident ends
  then even if the values never came back.

A detection whose features are all inside their bands (a change of pattern rather than of level) opens
no incident: the pipeline's short hold covers it. The tracker is pure: time is the caller's event time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class IncidentTracker:
    """Tracks one deployment's current incident: its onset and the pre-onset bands of its features.

    Parameters
    ----------
    adapt_seconds
        After this long from the onset a persisting shift is the new normal and the incident ends.
    width
        Half-width of the normal band in spreads (the pipeline passes its anomaly threshold, so
        "outside the band" means what "anomalous" means for the level).
    min_relative_width
        Lower bound of the half-width as a fraction of ``|level|``: a series that was constant has no
        spread, and a change under this fraction of its level is not a change of state.

    Examples
    --------
    >>> tracker = IncidentTracker(adapt_seconds=3600, width=2.5)
    >>> normals = {"cpu_utilization": (0.40, 0.05)}  # level, spread before the onset
    >>> tracker.detected(0.0, {"cpu_utilization": 0.97}, ["cpu_utilization"], normals)
    True
    >>> tracker.bands
    {'cpu_utilization': (0.275, 0.525)}
    >>> tracker.holds(600.0, {"cpu_utilization": 0.96}), tracker.holds(660.0, {"cpu_utilization": 0.45})
    (True, False)
    >>> tracker.detected(700.0, {"cpu_utilization": 0.8}, ["cpu_utilization"], normals)
    True
    >>> tracker.holds(4299.0, {"cpu_utilization": 0.8}), tracker.holds(4300.0, {"cpu_utilization": 0.8})
    (True, False)
    """

    __slots__ = ("adapt_seconds", "bands", "min_relative_width", "onset", "width")

    def __init__(
        self, adapt_seconds: float = 3600.0, width: float = 2.5, min_relative_width: float = 0.01
    ) -> None:
        if not adapt_seconds >= 0:
            raise ValueError(f"adapt_seconds must be >= 0, got {adapt_seconds!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        if not min_relative_width >= 0:
            raise ValueError(f"min_relative_width must be >= 0, got {min_relative_width!r}")
        self.adapt_seconds = float(adapt_seconds)
        self.width = float(width)
        self.min_relative_width = float(min_relative_width)
        #: Event time of the current incident's onset (None: no incident).
        self.onset: float | None = None
        #: Captured feature -> (low, high) of its pre-onset normal band.
        self.bands: dict[str, tuple[float, float]] = {}

    @property
    def active(self) -> bool:
        return self.onset is not None

    def band(self, level: float, spread: float) -> tuple[float, float]:
        """The normal band around ``level``: ``+- max(width * spread, min_relative_width * |level|)``."""
        half = max(self.width * spread, self.min_relative_width * abs(level))
        return level - half, level + half

    def detected(
        self,
        t: float,
        values: Mapping[str, float],
        features: list[str],
        normals: Mapping[str, tuple[float, float]],
    ) -> bool:
        """A detection at ``t``: capture the contributing ``features`` that left their bands.

        ``normals`` are each feature's (level, spread) from the detector's slow statistics, taken before
        the detector learned the point. During an incident, further features join it (with their bands
        from now) but the onset stays. Returns whether an incident is active.
        """
        for f in features:
            if f in self.bands or f not in normals or f not in values:
                continue
            lo, hi = self.band(*normals[f])
            v = values[f]
            if math.isfinite(lo) and math.isfinite(hi) and not lo <= v <= hi:
                self.bands[f] = (lo, hi)
        if self.bands and self.onset is None:
            self.onset = t
        return self.active

    def holds(self, t: float, values: Mapping[str, float]) -> bool:
        """Whether the incident is still on at ``t`` with these ``values``; ends it when it is not.

        A captured feature missing from ``values`` says nothing either way: with none of them present
        the incident stays as it is (until ``adapt_seconds``).
        """
        if self.onset is None:
            return False
        seen = [(values[f], lo, hi) for f, (lo, hi) in self.bands.items() if f in values]
        outside = not seen or any(not lo <= v <= hi for v, lo, hi in seen)
        if not outside or t - self.onset >= self.adapt_seconds:
            self.clear()
            return False
        return True

    def clear(self) -> None:
        self.onset = None
        self.bands = {}

    def to_dict(self) -> dict[str, Any]:
        """The incident (parameters come from the settings, not the state)."""
        return {"onset": self.onset, "bands": {f: [lo, hi] for f, (lo, hi) in self.bands.items()}}

    def load(self, d: Mapping[str, Any]) -> None:
        """Restore what :meth:`to_dict` saved; malformed state is dropped (no incident) rather than raised.

        Examples
        --------
        >>> a = IncidentTracker()
        >>> _ = a.detected(5.0, {"db_cpu": 0.9}, ["db_cpu"], {"db_cpu": (0.3, 0.05)})
        >>> b = IncidentTracker()
        >>> b.load(a.to_dict())
        >>> b.onset, b.bands == a.bands
        (5.0, True)
        >>> b.load({"onset": "soon"}); b.active
        False
        """
        self.clear()
        onset, bands = d.get("onset"), d.get("bands")
        if not isinstance(onset, int | float) or not isinstance(bands, dict) or not bands:
            return
        try:
            parsed = {str(f): (float(lo), float(hi)) for f, (lo, hi) in bands.items()}
        except (TypeError, ValueError):
            return
        self.onset, self.bands = float(onset), parsed
