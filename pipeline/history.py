"""The status page's memory: a bounded ring of recent stage outputs per deployment.

One row per scoring window, in two small numpy matrices, so a deployment's history is two allocations
and not a dict per point: utilisations, forecasts and the anomaly score as one byte each, replica counts
as one byte (two when ``HELIOS_MAX_REPLICAS`` exceeds 254). The row of window ``t`` sits at
``(t / step) mod capacity``, so a missed window is a row marked absent and no timestamp is stored.

What one byte holds:

* a utilisation (CPU, memory, a forecast's point or band end) in steps of 1/250 (0.4 %), 0 to 1.016;
* the anomaly score in steps of threshold / 50, up to 5.08 x the threshold (higher scores are shown
  at that ceiling: the chart is about the score against its threshold);
* flags: present, declared anomaly, severity, the action and the non-scaling advice types.

A forecast is stored in the row of the window it was made in; :meth:`DeploymentHistory.to_json` shifts
each horizon onto the window it forecasts, so forecast and outcome line up on one time axis.
The latest recommendation (the bytes already sent to Kafka) and, zlib-compressed, the last two episodes
of each kind of decision that did something (scale up during an anomaly, other scale-ups, scale down,
resource or database advice; an episode keeps the decision that started it) are kept for the audit
table, so an incident's scale-up stays listed however many routine decisions follow it.
The ring is not persisted: a restarted worker, or a new owner after a rebalance, starts it empty.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

if TYPE_CHECKING:
    from pipeline.settings import Settings
    from pipeline.stages import StageOutput

#: One byte per fraction: q = round(v * FRACTION_SCALE).
FRACTION_SCALE = 250
#: Quanta of the anomaly threshold: the score is stored in steps of threshold / SCORE_STEPS.
SCORE_STEPS = 50
MISSING = 255
_TOP = 254

CPU_COL, MEM_COL, SCORE_COL, FLAGS_COL = 0, 1, 2, 3
_FIRST_FORECAST_COL = 4
FEATURES = ("cpu_utilization", "memory_utilization")
PARTS = ("point", "lower", "upper")

PRESENT, ANOMALY = 1, 2
_SEVERITY_SHIFT, _ACTION_SHIFT = 2, 4
RESOURCE_ADVICE, DATABASE_ADVICE = 64, 128
_SEVERITY_CODE = {"normal": 0, "warning": 1, "critical": 2}
_SEVERITY_NAME = ("normal", "warning", "critical", "critical")
_ACTION_CODE = {"hold": 0, "scale_up": 1, "scale_down": 2}
_ACTION_NAME = ("hold", "scale_up", "scale_down", "hold")
_ABSENT_BAND = (MISSING, MISSING, MISSING)
_ADVICE_KIND, _ANOMALY_UP_KIND = 3, 4
_SERIES = ("cpu_utilization", "memory_utilization", "anomaly_score", "is_anomaly", "severity", "action")
_REPLICAS = ("current", "recommended", "reactive_hpa")


def _frac(v: float | None) -> int:
    if v is None or v != v:  # absent, or NaN
        return MISSING
    q = int(v * FRACTION_SCALE + 0.5)
    return 0 if q < 0 else (q if q < _TOP else _TOP)


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """Shape of every deployment's ring, derived once from the settings."""

    capacity: int
    step_seconds: int
    #: (label, steps ahead) of the published horizons, in the forecast records' order.
    horizons: tuple[tuple[str, int], ...]
    threshold: float
    replica_dtype: Any = np.uint8
    #: Episodes kept per kind of decision that did something (see :meth:`DeploymentHistory._keep`).
    decisions: int = 2
    #: Derived: the score's quantum, and the replica matrix's "absent" value (its dtype's largest).
    score_unit: float = field(init=False)
    replica_missing: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "score_unit", self.threshold / SCORE_STEPS)
        object.__setattr__(self, "replica_missing", int(np.iinfo(self.replica_dtype).max))

    @classmethod
    def from_settings(cls, settings: Settings) -> HistoryConfig:
        return cls(
            capacity=int(settings.history // settings.scoring_interval),
            step_seconds=settings.scoring_interval,
            horizons=tuple(settings.horizon_steps.items()),
            threshold=settings.anomaly_threshold,
            replica_dtype=np.uint8 if settings.max_replicas <= _TOP else np.uint16,
        )

    @property
    def columns(self) -> int:
        return _FIRST_FORECAST_COL + len(self.horizons) * len(FEATURES) * len(PARTS)

    def new(self) -> DeploymentHistory | None:
        """A fresh ring, or None when ``HELIOS_HISTORY`` is 0."""
        return DeploymentHistory(self) if self.capacity > 0 else None


class DeploymentHistory:
    """The ring of one deployment (see the module docstring)."""

    __slots__ = ("_kind", "_last", "_latest", "_notable", "_q", "_r", "config")

    def __init__(self, config: HistoryConfig) -> None:
        self.config = config
        self._q = np.full((config.capacity, config.columns), MISSING, dtype=np.uint8)
        self._q[:, FLAGS_COL] = 0  # no row present yet
        self._r = np.full((config.capacity, 3), config.replica_missing, dtype=config.replica_dtype)
        #: Slot (window start / step) of the newest row, None before the first.
        self._last: int | None = None
        self._latest: bytes | None = None
        #: (kind, zlib-compressed record) of the decisions that did something (see :meth:`_keep`).
        self._notable: list[tuple[int, bytes]] = []
        self._kind = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the two matrices (what the ring adds besides a few small objects)."""
        return int(self._q.nbytes + self._r.nbytes)

    def record(self, start: float, out: StageOutput, recommendation: bytes) -> None:
        """Note one stage output for window ``start``; ``recommendation`` is its record as sent."""
        cfg = self.config
        slot = int(start // cfg.step_seconds)
        last = self._last
        if last is None or slot > last:
            if last is not None and slot - last > 1:
                self._clear(last + 1, slot)
            self._last = slot
        elif slot <= last - cfg.capacity:
            return  # older than the ring reaches
        decision, anomaly, rec = out.decision, out.anomaly, out.recommendation
        action = _ACTION_CODE.get(decision.action, 0)
        adv = 0
        for item in rec.recommendations:
            if item.type != "scaling":
                adv |= RESOURCE_ADVICE if item.type == "resource" else DATABASE_ADVICE
        flags = PRESENT | (ANOMALY if anomaly.is_anomaly else 0) | adv
        flags |= _SEVERITY_CODE.get(anomaly.severity, 0) << _SEVERITY_SHIFT | action << _ACTION_SHIFT
        observed = out.forecast.observed
        score = anomaly.anomaly_score
        row = [
            _frac(observed.cpu_utilization),
            _frac(observed.memory_utilization),
            MISSING if score != score else min(_TOP, max(0, int(score / cfg.score_unit + 0.5))),
            flags,
        ]
        for horizon in out.forecast.horizons:
            for band in (horizon.cpu_utilization, horizon.memory_utilization):
                if band is None:
                    row += _ABSENT_BAND
                else:
                    row += (_frac(band.point), _frac(band.lower), _frac(band.upper))
        i = slot % cfg.capacity
        self._q[i] = row
        missing = cfg.replica_missing
        reactive = (decision.evidence.get("needs") or {}).get("reactive_floor")
        current = rec.current_replicas
        self._r[i] = (
            missing if current is None else min(missing - 1, current),
            min(missing - 1, decision.target_replicas),
            missing if reactive is None else min(missing - 1, int(reactive)),
        )
        self._latest = recommendation
        kind = action or (_ADVICE_KIND if adv else 0)
        if kind == _ACTION_CODE["scale_up"] and anomaly.is_anomaly:
            # Scale-ups during an anomaly are what an SRE audits after an incident: routine ones later
            # in the day must not push them out.
            kind = _ANOMALY_UP_KIND
        if kind:
            self._keep(kind, recommendation)
        self._kind = kind

    def _keep(self, kind: int, recommendation: bytes) -> None:
        """Keep the decision that starts an episode (the same kind window after window: the one that says
        why it started), and of each kind the last ``decisions`` episodes."""
        if self._kind == kind:
            return
        mine = [i for i, (k, _) in enumerate(self._notable) if k == kind]
        self._notable.append((kind, zlib.compress(recommendation, 1)))
        if len(mine) >= self.config.decisions:
            del self._notable[mine[0]]

    def _clear(self, first: int, end: int) -> None:
        """Mark the rows of slots ``first`` .. ``end - 1`` absent (windows nothing arrived in)."""
        cap = self.config.capacity
        rows = slice(None) if end - first >= cap else np.arange(first, end) % cap
        self._q[rows] = MISSING
        self._q[rows, FLAGS_COL] = 0
        self._r[rows] = self.config.replica_missing

    # -- reading --------------------------------------------------------------------------------
    def latest(self) -> dict[str, Any] | None:
        """The newest row as scalars (for the index page), or None before the first sample."""
        if self._last is None:
            return None
        i = self._last % self.config.capacity
        q, r = self._q[i], self._r[i]
        flags = int(q[FLAGS_COL])
        missing = self.config.replica_missing
        return {
            "t": self._last * self.config.step_seconds,
            "cpu": None if q[CPU_COL] == MISSING else int(q[CPU_COL]) / FRACTION_SCALE,
            "severity": _SEVERITY_NAME[(flags >> _SEVERITY_SHIFT) & 3],
            "is_anomaly": bool(flags & ANOMALY),
            "replicas": None if r[0] == missing else int(r[0]),
            "recommended": None if r[1] == missing else int(r[1]),
        }

    def recommendations(self) -> list[Any]:
        """The latest recommendation and the last ones that did something, newest first."""
        raws = {zlib.decompress(z) for _, z in self._notable}
        if self._latest is not None:
            raws.add(self._latest)
        records = [orjson.loads(raw) for raw in raws]
        return sorted(records, key=lambda r: str(r.get("timestamp", "")), reverse=True)

    def to_json(self, window: float | None = None) -> dict[str, Any]:
        """The ring (or its last ``window`` seconds) as the history endpoint's arrays.

        All arrays share the time axis ``t`` (window starts, epoch seconds): the windows held, then as
        many future windows as the longest horizon reaches, where only forecasts have values.
        """
        cfg = self.config
        step = cfg.step_seconds
        if self._last is None:
            empty: list[Any] = []
            return {
                "t": empty,
                "series": {name: empty for name in _SERIES},
                "forecast": {
                    label: {"seconds": steps * step, **{f: {p: empty for p in PARTS} for f in FEATURES}}
                    for label, steps in cfg.horizons
                },
                "replicas": {name: empty for name in _REPLICAS},
                "score_ceiling": _TOP * cfg.score_unit,
            }
        n = cfg.capacity if window is None else max(1, min(cfg.capacity, int(window // step)))
        first = self._last - n + 1
        idx = np.arange(first, self._last + 1) % cfg.capacity
        q, r = self._q[idx], self._r[idx]
        ahead = max((steps for _, steps in cfg.horizons), default=0)
        pad: list[Any] = [None] * ahead
        flags = q[:, FLAGS_COL].astype(np.int64)
        present = (flags & PRESENT) != 0
        sev = (flags >> _SEVERITY_SHIFT) & 3
        act = (flags >> _ACTION_SHIFT) & 3
        series = {
            "cpu_utilization": _fractions(q[:, CPU_COL]) + pad,
            "memory_utilization": _fractions(q[:, MEM_COL]) + pad,
            "anomaly_score": _scaled(q[:, SCORE_COL], cfg.score_unit) + pad,
            "is_anomaly": [bool(f & ANOMALY) if p else None for f, p in zip(flags, present, strict=True)]
            + pad,
            "severity": [_SEVERITY_NAME[s] if p else None for s, p in zip(sev, present, strict=True)] + pad,
            "action": [_ACTION_NAME[a] if p else None for a, p in zip(act, present, strict=True)] + pad,
        }
        forecast: dict[str, Any] = {}
        col = _FIRST_FORECAST_COL
        for label, steps in cfg.horizons:
            lead: list[float | None] = [None] * steps
            tail: list[float | None] = [None] * (ahead - steps)
            per_feature: dict[str, dict[str, list[float | None]]] = {}
            for feature in FEATURES:
                per_feature[feature] = {
                    part: lead + _fractions(q[:, col + k]) + tail for k, part in enumerate(PARTS)
                }
                col += len(PARTS)
            forecast[label] = {"seconds": steps * step, **per_feature}
        missing = cfg.replica_missing
        replicas = {
            name: [None if v == missing else int(v) for v in r[:, k]] + pad
            for k, name in enumerate(_REPLICAS)
        }
        return {
            "t": [(first + k) * step for k in range(n + ahead)],
            "series": series,
            "forecast": forecast,
            "replicas": replicas,
            "score_ceiling": _TOP * cfg.score_unit,
        }


def _fractions(column: Sequence[int] | np.ndarray) -> list[float | None]:
    return [None if v == MISSING else v / FRACTION_SCALE for v in np.asarray(column).tolist()]


def _scaled(column: np.ndarray, unit: float) -> list[float | None]:
    return [None if v == MISSING else round(v * unit, 4) for v in column.tolist()]
