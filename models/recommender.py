"""The scaling policy: from forecast bands, the replica count and the anomaly context to a decision.

The rule, in the order it is applied (each :class:`Decision` names the rule in ``evidence["rule"]``):

1. **Target utilisation.** Helios sizes the deployment so that an *upper quantile* of the CPU forecast,
   spread over the new replica count, stays at or below ``cpu_scale_up`` (0.80):
   ``need(h) = ceil(replicas * q(h) / cpu_scale_up)``. ``q`` is read from the forecaster's band at the
   stated risk level ``quantile``: the band (nominal two-sided level ``band_level``) is taken as a normal
   interval and ``q = point + (upper - point) * z(quantile) / z(0.5 + band_level / 2)``. The default
   ``quantile=0.8`` accepts a 20 % chance per horizon that CPU ends above the threshold after scaling
   (then the reactive CPU trigger still catches it); ``quantile=None`` sizes on the band's upper end
   itself (the 95 % quantile of a 90 % band), which costs more replica-hours than a reactive HPA
   (measured in ``benchmarks/simulate.md``).
   With ``center_on_current`` (the default) each band is first moved to centre on the *current* CPU,
   keeping its half-widths: ``q = cpu_now + (upper - point) * z(quantile) / z(...)``. The forecaster
   learns per-pod utilisation, which every scaling action shifts (1 -> 5 pods divides it by five), and
   its point lags such shifts for several steps, so it sized on load that had already gone (or not yet
   been seen). The current CPU is measured at the current count, free of that feedback; the band's
   calibrated width still sets the headroom (wide band, more headroom), and the point forecast still
   drives the anticipation of rule 3.
2. **Reactive floor.** Never below what a reactive autoscaler at the same target asks for now:
   ``ceil(replicas * cpu_now / cpu_scale_up)``. Prediction can only add headroom.
3. **Scale up at once** to the largest need over the horizons up to ``scale_up_horizon`` seconds, or up
   to the next decision plus a pod start-up (``step_seconds + startup_seconds``) when that is longer: a
   decision must cover the time until the next one's pods can be ready, so at a 30-minute step it sizes
   on the next step's band. Up-scaling has no cooldown. A crossing the
   *point* forecast expects at any horizon up to ``scale_down_horizon`` is also acted on now
   (``need = ceil(replicas * point / cpu_scale_up)``): with a zero-width band, as ``/recommend`` may send,
   2 replicas with 85 % predicted in 15 min scale up to 3. So is load that came at the same minute in
   each of the last hours (``recurring_load``, :mod:`models.recurrence`): ``ceil(load / cpu_scale_up)``
   replicas, rule ``recurring_peak``, and no scale-down below that ahead of it. So is a ramp that came at
   this time of each of the last days (weeks, hours) (``periodic_growth``, the load's rise over the
   coming steps, :class:`models.recurrence.PeriodicLoad`): each band is centred on ``cpu_now * growth``
   instead of ``cpu_now`` and sized at the quantile, rule ``periodic_ramp``; after the ramp the growth is
   gone and the usual scale-down releases the replicas. On such a schedule the
   band-driven needs are capped at what the coming steps brought in those hours (``recurring_ceiling``),
   never below the reactive floor: the band, widened by spikes the forecaster could not foresee, would
   otherwise keep pods for errors the schedule explains.
4. **Scale down with hysteresis.** Only when the need over the longer ``scale_down_horizon`` — computed
   against ``scale_down_margin * cpu_scale_up``, so a count is only dropped when the load would still sit
   well below the threshold — is below the current recommendation, ``cooldown_seconds`` have passed since
   the last change, and no anomaly is under way (never scale down during an anomaly). When both the
   current and the predicted upper CPU are below ``cpu_scale_down`` the margin is not applied.
   A scale-down goes in one move to the count where the next decision at the same load and band would
   stop: the band is per pod, so on fewer pods the same load sits higher but its headroom in cores is
   smaller, and a need computed on the current count alone walks the count down one move per decision
   (9 -> 4 -> 3) where a reactive HPA drops in one.
5. **Bounds.** ``min_replicas <= target <= max_replicas``; a need above the maximum is reported.
6. **Database guard.** When the database CPU is at ``db_cpu_saturation`` or the connections at
   ``db_connections_limit``, more API replicas will not help: the forecast-driven scale-up is withheld
   (the reactive floor still holds) and a ``database`` advice says so.
7. **Memory.** When memory is at ``memory_warning`` now or its point forecast crosses it within the
   forecast horizon (a leak), a ``resource`` advice asks for a higher limit or a look at the leak.

``execute_by`` is the first horizon whose upper band crosses the threshold at the *current* count, minus
``startup_seconds`` (a new pod needs that long to be ready); never earlier than ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

from models.forecast import Interval

__all__ = ["Advice", "Decision", "Interval", "Recommender", "RecommenderState", "ScalingInputs"]

ActionName = Literal["scale_up", "scale_down", "hold"]
UrgencyName = Literal["low", "medium", "high", "critical"]


@dataclass
class ScalingInputs:
    """What the recommendation stage knows about one deployment at ``now``."""

    now: float
    current_replicas: int | None
    cpu_now: float | None
    memory_now: float | None
    cpu_forecast: Mapping[int, Interval]
    memory_forecast: Mapping[int, Interval]
    anomaly_score: float = 0.0
    is_anomaly: bool = False
    db_cpu: float | None = None
    db_connections: float | None = None
    #: Load (utilisation x replicas) that every one of the last few hours brought within the next
    #: decisions and the start-up lead (``models.recurrence.RecurringLoad``); None: nothing recurs.
    recurring_load: float | None = None
    #: On such a schedule (a recurring jump in the last hour or coming up): the most load the next steps
    #: brought in any of those hours; None off a schedule.
    recurring_ceiling: float | None = None
    #: How much the load rose over the next decisions and the start-up lead at this time of each of the
    #: last few days (weeks, hours) (``models.recurrence.PeriodicLoad``); None: no rise recurs.
    periodic_growth: float | None = None


@dataclass
class RecommenderState:
    """The policy's memory for one deployment (cooldown and hysteresis); small and JSON-safe.

    Examples
    --------
    >>> s = RecommenderState(target=3, changed_at=1.0e9, direction="up")
    >>> RecommenderState.from_dict(s.to_dict()) == s
    True
    """

    target: int | None = None
    changed_at: float | None = None
    direction: Literal["up", "down"] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "changed_at": self.changed_at, "direction": self.direction}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecommenderState:
        target = d.get("target")
        changed_at = d.get("changed_at")
        direction = d.get("direction")
        if direction not in (None, "up", "down"):
            raise ValueError(f"direction must be 'up', 'down' or None, got {direction!r}")
        return cls(
            target=None if target is None else int(target),
            changed_at=None if changed_at is None else float(changed_at),
            direction=direction,
        )


@dataclass(frozen=True)
class Advice:
    """One recommendation item (maps 1:1 to ``pipeline.records.RecommendationItem``)."""

    type: Literal["scaling", "resource", "database"]
    action: str
    target_replicas: int | None
    reason: str
    confidence: float
    urgency: UrgencyName
    execute_by: float | None


@dataclass(frozen=True)
class Decision:
    """The policy's answer: the replica count to publish, the advice items and the audit trail."""

    action: ActionName
    target_replicas: int
    advice: list[Advice]
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


#: Decimals of the evidence's measured and forecast values: those the ingested metrics carry. A
#: forecast's further digits say nothing, and every copy of a record pays for them (the recommendations
#: topic, the status page's kept decisions).
EVIDENCE_DECIMALS = 6


def _shown(x: float | None) -> float | None:
    """``x`` at the evidence's decimals (None and non-finite values as they are)."""
    return round(x, EVIDENCE_DECIMALS) if x is not None and math.isfinite(x) else x


@dataclass(frozen=True)
class _Needs:
    """The replicas each rule of :meth:`Recommender.recommend` asks for."""

    floor: int
    up: int
    up_band: Interval | None
    up_h: int | None
    down: int
    recurring: int
    ramp: int
    from_recurrence: bool
    from_ramp: bool


class Recommender:
    """Turns forecasts with bands into scale-up / scale-down / hold decisions (see the module docstring).

    Parameters
    ----------
    cpu_scale_up
        Per-pod CPU utilisation the upper band must stay under (``HELIOS_CPU_SCALE_UP``).
    cpu_scale_down
        Below this utilisation (now and predicted) scale-down skips the hysteresis margin
        (``HELIOS_CPU_SCALE_DOWN``).
    memory_warning
        Memory utilisation that triggers a ``resource`` advice (``HELIOS_MEMORY_WARNING``).
    min_replicas, max_replicas
        Bounds of the recommendation.
    cooldown_seconds
        No scale-down within this long of the last change (up or down): the replicas a burst brought
        are held through the decisions after it rather than released and asked for again.
    startup_seconds
        Pod start-up lead time subtracted from the predicted crossing for ``execute_by``.
    db_cpu_saturation
        Database CPU fraction at which the database is the bottleneck.
    db_connections_limit
        Connections at which the database is saturated (``None``: not checked).
    band_level
        Nominal two-sided level of the bands the forecaster hands over (for confidences).
    scale_up_horizon
        Horizons up to this many seconds ahead drive scale-up; at least ``step_seconds +
        startup_seconds`` (the next decision's pods are ready no sooner).
    scale_down_horizon
        Horizons up to this many seconds ahead (at least the scale-up one) must all allow a scale-down.
    scale_down_margin
        Scale down only to a count whose predicted upper CPU stays below ``margin * cpu_scale_up``.
    quantile
        The stated risk level: the one-sided forecast quantile the deployment is sized on
        (``None``: the band's upper end).
    center_on_current
        Size on the bands moved to centre on the current CPU (their half-widths kept); ``False``: on the
        bands as forecast.
    step_seconds
        Seconds between decisions (the aligned step): with a step longer than ``scale_up_horizon`` a
        decision covers the whole next step, sized on that step's band.

    Examples
    --------
    >>> rec = Recommender()
    >>> state = RecommenderState()
    >>> band = {300: Interval(0.70, 0.60, 0.80), 900: Interval(0.72, 0.60, 0.84)}
    >>> x = ScalingInputs(now=0.0, current_replicas=4, cpu_now=0.78, memory_now=0.5,
    ...                   cpu_forecast=band, memory_forecast={})
    >>> d = rec.recommend(state, x)
    >>> d.action, d.target_replicas   # 0.78 + 0.10 * z(0.8) / z(0.95) = 0.831: ceil(4 * 0.831 / 0.80)
    ('scale_up', 5)
    >>> d.advice[0].reason
    'Predicted CPU 83% (80th percentile, 5m ahead) exceeds threshold 80%'
    >>> d.advice[0].execute_by             # crossing in 300 s minus 60 s start-up
    240.0
    >>> Recommender(center_on_current=False).recommend(RecommenderState(), x).target_replicas
    4
    """

    def __init__(
        self,
        cpu_scale_up: float = 0.80,
        cpu_scale_down: float = 0.20,
        memory_warning: float = 0.85,
        min_replicas: int = 1,
        max_replicas: int = 10,
        cooldown_seconds: float = 900.0,
        startup_seconds: float = 60.0,
        db_cpu_saturation: float = 0.9,
        db_connections_limit: float | None = None,
        band_level: float = 0.9,
        scale_up_horizon: float = 300.0,
        scale_down_horizon: float = 900.0,
        scale_down_margin: float = 0.9,
        quantile: float | None = 0.8,
        center_on_current: bool = True,
        step_seconds: float = 60.0,
    ) -> None:
        if not 0 < cpu_scale_up <= 1:
            raise ValueError(f"cpu_scale_up must be in (0, 1], got {cpu_scale_up}")
        if not 0 <= cpu_scale_down < cpu_scale_up:
            raise ValueError(f"cpu_scale_down must be in [0, cpu_scale_up), got {cpu_scale_down}")
        if not 0 < memory_warning <= 1:
            raise ValueError(f"memory_warning must be in (0, 1], got {memory_warning}")
        if min_replicas < 1:
            raise ValueError(f"min_replicas must be >= 1, got {min_replicas}")
        if max_replicas < min_replicas:
            raise ValueError(f"max_replicas ({max_replicas}) must be >= min_replicas ({min_replicas})")
        if cooldown_seconds < 0:
            raise ValueError(f"cooldown_seconds must be >= 0, got {cooldown_seconds}")
        if startup_seconds < 0:
            raise ValueError(f"startup_seconds must be >= 0, got {startup_seconds}")
        if not 0 < db_cpu_saturation <= 1:
            raise ValueError(f"db_cpu_saturation must be in (0, 1], got {db_cpu_saturation}")
        if db_connections_limit is not None and db_connections_limit <= 0:
            raise ValueError(f"db_connections_limit must be positive or None, got {db_connections_limit}")
        if not 0 < band_level < 1:
            raise ValueError(f"band_level must be in (0, 1), got {band_level}")
        if scale_up_horizon <= 0:
            raise ValueError(f"scale_up_horizon must be positive, got {scale_up_horizon}")
        if scale_down_horizon < scale_up_horizon:
            raise ValueError(
                f"scale_down_horizon ({scale_down_horizon}) must be >= scale_up_horizon ({scale_up_horizon})"
            )
        if quantile is not None and not 0.5 <= quantile < 1:
            raise ValueError(f"quantile must be in [0.5, 1) or None, got {quantile}")
        if not 0 < scale_down_margin <= 1:
            raise ValueError(f"scale_down_margin must be in (0, 1], got {scale_down_margin}")
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds}")
        self.cpu_scale_up = cpu_scale_up
        self.cpu_scale_down = cpu_scale_down
        self.memory_warning = memory_warning
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.cooldown_seconds = cooldown_seconds
        self.startup_seconds = startup_seconds
        self.db_cpu_saturation = db_cpu_saturation
        self.db_connections_limit = db_connections_limit
        self.band_level = band_level
        self.scale_up_horizon = scale_up_horizon
        self.scale_down_horizon = scale_down_horizon
        self.scale_down_margin = scale_down_margin
        self.quantile = quantile
        self.center_on_current = center_on_current
        self.step_seconds = step_seconds
        # What one decision must cover: until the next decision's pods can be ready. When the step is
        # longer than the scale-up horizon, that is the whole next step and its band.
        self.up_horizon = max(scale_up_horizon, step_seconds + startup_seconds)
        self.down_horizon = max(scale_down_horizon, self.up_horizon)
        self._z = NormalDist().inv_cdf(0.5 + band_level / 2)
        # Where the sizing quantile sits between the point (0) and the band's upper end (1).
        self._q_frac = 1.0 if quantile is None else NormalDist().inv_cdf(quantile) / self._z

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _centred(band: Interval, cpu_now: float) -> Interval:
        """``band`` moved to centre on ``cpu_now``, its half-widths kept."""
        return Interval(cpu_now, cpu_now - (band.point - band.lower), cpu_now + (band.upper - band.point))

    def _bounded(self, n: int) -> int:
        return min(self.max_replicas, max(self.min_replicas, n))

    def _need(self, replicas: int, utilisation: float, target: float) -> int:
        # Rounding first keeps 4 * 0.8 / 0.8 from becoming 4.000000001 and asking for a fifth pod.
        return math.ceil(round(replicas * max(utilisation, 0.0) / target, 9))

    def _q(self, band: Interval, scale: float = 1.0) -> float:
        """The sizing quantile of a band: its upper end, or the ``quantile`` read from it as a normal.

        With ``scale`` the centre is for ``scale`` times the pods' share of the load (on ``n`` pods
        instead of ``replicas``: ``replicas / n``); the half-width, per pod, stays.
        """
        return band.point * scale + (band.upper - band.point) * self._q_frac

    def _band_name(self) -> str:
        if self.quantile is None:
            return f"upper end of the {100 * self.band_level:.0f}% band"
        return f"{100 * self.quantile:.0f}th percentile"

    def _p_above(self, band: Interval, threshold: float) -> float:
        """Probability that the value exceeds ``threshold``, reading the band as a normal interval."""
        sigma = (band.upper - band.lower) / (2 * self._z)
        if not sigma > 0:
            return 1.0 if band.point > threshold else 0.0
        return 1.0 - NormalDist(band.point, sigma).cdf(threshold)

    @staticmethod
    def _usable(forecast: Mapping[int, Interval], limit: float) -> list[tuple[int, Interval]]:
        return sorted(
            (h, b)
            for h, b in forecast.items()
            if 0 < h <= limit and _finite(b.point) and _finite(b.lower) and _finite(b.upper)
        )

    def _ramp_need(
        self,
        replicas: int,
        cpu_now: float | None,
        bands: list[tuple[int, Interval]],
        growth: float | None,
    ) -> tuple[int, Interval | None, int | None]:
        """The replicas for a ramp that recurs at this time of the period: each scale-up band centred on
        the current CPU times the rise the period brought (its half-widths kept), sized at the quantile."""
        if growth is None or cpu_now is None or not _finite(growth) or growth <= 1.0:
            return 0, None, None
        best: tuple[int, Interval | None, int | None] = (0, None, None)
        for h, b in bands:
            centre = max(cpu_now * growth, b.point)
            moved = Interval(centre, centre - (b.point - b.lower), centre + (b.upper - b.point))
            n = self._need(replicas, self._q(moved), self.cpu_scale_up)
            if n > best[0]:
                best = (n, moved, h)
        return best

    def _urgency(self, seconds_left: float, saturated: bool, anomaly: bool) -> UrgencyName:
        if saturated:
            return "critical"
        if seconds_left <= self.startup_seconds + 300 or anomaly:
            return "high"
        if seconds_left <= 900:
            return "medium"
        return "low"

    # -- the policy --------------------------------------------------------------------------------
    def recommend(self, state: RecommenderState, x: ScalingInputs) -> Decision:
        """Decide for one deployment at ``x.now``; updates ``state`` (cooldown, hysteresis) in place."""
        replicas = x.current_replicas
        cpu_now = x.cpu_now if _finite(x.cpu_now) else None
        up_bands = self._usable(x.cpu_forecast, self.up_horizon)
        down_bands = self._usable(x.cpu_forecast, self.down_horizon)
        # The point forecasts as issued: rule 3's anticipation and the evidence use them.
        forecast_bands = down_bands
        centred = self.center_on_current and cpu_now is not None
        if centred and cpu_now is not None:
            up_bands = [(h, self._centred(b, cpu_now)) for h, b in up_bands]
            down_bands = [(h, self._centred(b, cpu_now)) for h, b in down_bands]
        db_saturated, db_reason = self._database(x)
        evidence = self._evidence(state, x, cpu_now, centred, forecast_bands)
        if replicas is None or replicas <= 0:
            return self._unknown_replicas(state, x, evidence, db_saturated, db_reason)

        previous = state.target if state.target is not None else replicas
        needs = self._needs(x, replicas, cpu_now, previous, up_bands, down_bands, forecast_bands)
        evidence["needs"] = {
            "reactive_floor": needs.floor,
            "predicted": needs.up,
            "scale_down": needs.down,
            "recurring": needs.recurring,
            "periodic_ramp": needs.ramp,
        }
        evidence["recurring_load"] = _shown(x.recurring_load)
        evidence["periodic_growth"] = _shown(x.periodic_growth)

        cooling = state.changed_at is not None and x.now - state.changed_at < self.cooldown_seconds
        target, rule = self._choose(previous, needs, db_saturated, cooling, x.is_anomaly)
        capped = target > self.max_replicas
        target = self._bounded(target)
        evidence["rule"] = rule
        evidence["capped_at_max"] = capped

        if target != previous:
            state.changed_at = x.now
            state.direction = "up" if target > previous else "down"
        state.target = target

        action: ActionName = (
            "scale_up" if target > replicas else "scale_down" if target < replicas else "hold"
        )
        advice = [
            self._scaling_advice(
                x, down_bands, action, target, replicas, cpu_now, rule, needs.up_band, needs.up_h, capped
            )
        ]
        advice.extend(self._memory(x))
        if db_saturated:
            advice.append(self._db_advice(db_reason, target))
        summary = {
            "scale_up": f"Scale up to {target} replicas before the predicted load increase",
            "scale_down": f"Scale down to {target} replicas: predicted load stays low",
            "hold": f"Hold at {target} replicas",
        }[action]
        if db_saturated:
            summary += "; the database is the bottleneck"
        return Decision(action, target, advice, summary, evidence)

    def _evidence(
        self,
        state: RecommenderState,
        x: ScalingInputs,
        cpu_now: float | None,
        centred: bool,
        forecast_bands: list[tuple[int, Interval]],
    ) -> dict[str, Any]:
        """What a decision is based on, before the needs and the rule are known."""
        return {
            "inputs": {
                "current_replicas": x.current_replicas,
                "cpu_now": _shown(cpu_now),
                "memory_now": _shown(x.memory_now),
                "db_cpu": _shown(x.db_cpu),
                "db_connections": _shown(x.db_connections),
            },
            "thresholds": {
                "cpu_scale_up": self.cpu_scale_up,
                "cpu_scale_down": self.cpu_scale_down,
                "memory_warning": self.memory_warning,
                "scale_down_margin": self.scale_down_margin,
            },
            "band_level": self.band_level,
            "sizing_quantile": 0.5 + self.band_level / 2 if self.quantile is None else self.quantile,
            "sizing_centre": "current_cpu" if centred else "point_forecast",
            "forecast": {
                str(h): {"point": _shown(b.point), "lower": _shown(b.lower), "upper": _shown(b.upper)}
                for h, b in forecast_bands
            },
            "anomaly": {"score": _shown(x.anomaly_score), "is_anomaly": x.is_anomaly},
            "previous": state.to_dict(),
        }

    def _unknown_replicas(
        self,
        state: RecommenderState,
        x: ScalingInputs,
        evidence: dict[str, Any],
        db_saturated: bool,
        db_reason: str,
    ) -> Decision:
        """Without a replica count there is nothing to size against: hold the last recommendation."""
        held = self._bounded(state.target if state.target is not None else self.min_replicas)
        reason = "Current replica count unknown: holding the last recommendation"
        evidence["rule"] = "unknown_replicas"
        advice = [Advice("scaling", "hold", held, reason, 0.5, "low", None)]
        advice.extend(self._memory(x))
        if db_saturated:
            advice.append(self._db_advice(db_reason, held))
        if state.target is None:
            state.target = held
        return Decision("hold", held, advice, reason, evidence)

    def _needs(
        self,
        x: ScalingInputs,
        replicas: int,
        cpu_now: float | None,
        previous: int,
        up_bands: list[tuple[int, Interval]],
        down_bands: list[tuple[int, Interval]],
        forecast_bands: list[tuple[int, Interval]],
    ) -> _Needs:
        """The replicas each rule asks for, and the band and horizon behind the scale-up need."""
        thr = self.cpu_scale_up
        floor = self._need(replicas, cpu_now, thr) if cpu_now is not None else self.min_replicas
        up_need, up_band, up_h = floor, None, None
        for h, b in up_bands:
            n = self._need(replicas, self._q(b), thr)
            if n > up_need or (up_band is None and n >= up_need):
                up_need, up_band, up_h = max(n, up_need), b, h
        # A crossing the point forecast itself expects within the scale-down horizon is acted on now: it
        # is more likely than not, and waiting for it to enter the short horizon would only leave less
        # lead time. (A /recommend call with a zero-width band at 15 min is such a case.)
        for h, b in forecast_bands:
            if b.point > thr:
                n = self._need(replicas, b.point, thr)
                if n > up_need:
                    up_need, up_band, up_h = n, b, h
        # Load due at this minute of the hour, as in each of the last hours: have its replicas ready.
        load = x.recurring_load
        recurring = self._need(1, load, thr) if load is not None and _finite(load) else 0
        ceiling = x.recurring_ceiling
        # On a schedule its peaks and their ends are known: no headroom for their own forecast error.
        scheduled = self._need(1, ceiling, thr) if ceiling is not None and _finite(ceiling) else None
        if scheduled is not None:
            up_need = min(up_need, max(floor, scheduled))
        ramp, ramp_band, ramp_h = self._ramp_need(replicas, cpu_now, up_bands, x.periodic_growth)
        if scheduled is not None:  # the schedule knows its peaks: no band headroom on a ramp to them
            ramp = min(ramp, max(floor, scheduled))
        from_recurrence = recurring > up_need and recurring >= ramp
        from_ramp = not from_recurrence and ramp > up_need
        if from_recurrence:
            up_need, up_band, up_h = recurring, None, None
        elif from_ramp:
            up_need, up_band, up_h = ramp, ramp_band, ramp_h
        down_need = self._down_need(replicas, cpu_now, previous, down_bands, scheduled)
        down_need = max(down_need, floor, recurring, ramp)
        return _Needs(floor, up_need, up_band, up_h, down_need, recurring, ramp, from_recurrence, from_ramp)

    def _down_need(
        self,
        replicas: int,
        cpu_now: float | None,
        previous: int,
        down_bands: list[tuple[int, Interval]],
        scheduled: int | None,
    ) -> int:
        """The replicas the scale-down horizon needs: at the threshold when deeply idle, else with margin."""
        thr = self.cpu_scale_up
        deep_idle = (cpu_now is not None and cpu_now < self.cpu_scale_down) and all(
            self._q(b) < self.cpu_scale_down for _, b in down_bands
        )
        down_target = thr if deep_idle else thr * self.scale_down_margin

        def need_at(n: int) -> int:
            # On n pods the same load is spread over n (per-pod centre x replicas / n) while the band's
            # half-widths, per pod, stay: the headroom in cores shrinks with the count.
            scale = replicas / n
            need = self._need(n, cpu_now * scale, down_target) if cpu_now is not None else previous
            for _, b in down_bands:
                need = max(need, self._need(n, self._q(b, scale), down_target))
            return need

        # Go straight to where repeated scale-downs at this load and band would end: one pod fewer
        # leaves less headroom in cores, so a need computed on the current count alone walks the
        # count down one move per decision where a reactive HPA drops in one.
        down_need = need_at(replicas)
        while 1 <= down_need < replicas:
            lower = need_at(down_need)
            if lower >= down_need:
                break
            down_need = lower
        if scheduled is not None:
            down_need = min(down_need, scheduled)
        return down_need

    def _choose(
        self, previous: int, needs: _Needs, db_saturated: bool, cooling: bool, anomaly: bool
    ) -> tuple[int, str]:
        """The target (before bounds) and the rule that set it."""
        predictive_up = needs.up if not db_saturated else needs.floor
        target = previous
        if predictive_up > previous:
            target = predictive_up
            if predictive_up == needs.floor and needs.floor > previous:
                rule = "reactive_floor"
            else:
                rule = (
                    "recurring_peak"
                    if needs.from_recurrence
                    else "periodic_ramp"
                    if needs.from_ramp
                    else "scale_up_on_upper_band"
                )
        elif needs.down < previous:
            if anomaly:
                rule = "no_scale_down_during_anomaly"
            elif cooling:
                rule = "cooldown"
            else:
                target = needs.down
                rule = "scale_down_below_margin"
        else:
            rule = "within_hysteresis"
        if db_saturated and needs.up > previous and target == previous:
            rule = "database_bottleneck"
        return target, rule

    def _scaling_advice(
        self,
        x: ScalingInputs,
        bands: list[tuple[int, Interval]],
        action: ActionName,
        target: int,
        replicas: int,
        cpu_now: float | None,
        rule: str,
        up_band: Interval | None,
        up_h: int | None,
        capped: bool,
    ) -> Advice:
        thr = self.cpu_scale_up
        if action == "scale_up":
            return self._scale_up_advice(x, target, replicas, cpu_now, rule, up_band, up_h, capped)
        if action == "scale_down":
            uppers = [self._q(b) for _, b in bands]
            top = max(uppers) if uppers else (cpu_now or 0.0)
            # On ``target`` pods the load per pod grows by replicas / target; the band's per-pod
            # half-width does not (as in the scale-down need).
            scale = replicas / target
            afters = [self._q(b, scale) for _, b in bands]
            after = max(afters) if afters else top * scale
            reason = (
                f"Predicted CPU at most {_pct(top)} ({self._band_name()}, next "
                f"{self.down_horizon / 60:.0f}m) stays below threshold {_pct(thr)} "
                f"on {target} replicas ({_pct(after)})"
            )
            return Advice("scaling", "scale_down", target, reason, 0.8, "low", x.now)
        return self._hold_advice(x, bands, target, cpu_now, rule, capped)

    def _scale_up_advice(
        self,
        x: ScalingInputs,
        target: int,
        replicas: int,
        cpu_now: float | None,
        rule: str,
        up_band: Interval | None,
        up_h: int | None,
        capped: bool,
    ) -> Advice:
        thr = self.cpu_scale_up
        level = self._band_name()
        saturated = cpu_now is not None and cpu_now > thr
        if rule == "periodic_ramp" and up_band is not None and up_h is not None:
            reason = (
                f"Load rose {x.periodic_growth or 1.0:.2f}x at this time in each of the last periods: "
                f"predicted CPU {_pct(self._q(up_band))} ({level}, {up_h // 60}m ahead) on "
                f"{replicas} replicas; {target} keep it under threshold {_pct(thr)}"
            )
            confidence, when = 0.9, max(x.now, x.now + up_h - self.startup_seconds)
        elif rule == "recurring_peak":
            reason = (
                f"Load of {_pct(x.recurring_load or 0.0)} of one pod's CPU came at this time in each of "
                f"the last hours: {target} replicas keep it under threshold {_pct(thr)}"
            )
            confidence, when = 0.9, x.now
        elif saturated and (up_band is None or rule == "reactive_floor"):
            reason = f"Current CPU {_pct(cpu_now or 0.0)} exceeds threshold {_pct(thr)}"
            confidence, when = 0.99, x.now
        elif up_band is not None and up_h is not None:
            reason = (
                f"Predicted CPU {_pct(self._q(up_band))} ({level}, {up_h // 60}m ahead) "
                f"exceeds threshold {_pct(thr)}"
            )
            if self._q(up_band) <= thr:
                reason = (
                    f"Predicted CPU {_pct(self._q(up_band))} ({level}, {up_h // 60}m ahead) "
                    f"would exceed threshold {_pct(thr)} on fewer replicas"
                )
            confidence = max(self._p_above(up_band, thr * replicas / max(target - 1, 1)), 0.5)
            confidence = min(confidence, 0.99)
            when = x.now if saturated else max(x.now, x.now + up_h - self.startup_seconds)
        else:
            reason = f"Reactive floor: current CPU needs {target} replicas at {_pct(thr)}"
            confidence, when = 0.9, x.now
        if capped:
            reason += f" (capped at max_replicas {self.max_replicas})"
        urgency = self._urgency(when - x.now + self.startup_seconds, saturated, x.is_anomaly)
        return Advice("scaling", "scale_up", target, reason, round(confidence, 3), urgency, when)

    def _hold_advice(
        self,
        x: ScalingInputs,
        bands: list[tuple[int, Interval]],
        target: int,
        cpu_now: float | None,
        rule: str,
        capped: bool,
    ) -> Advice:
        crossing = None
        for h, b in bands:
            if self._q(b) > self.cpu_scale_up:
                crossing = (h, b)
                break
        explanations = {
            "no_scale_down_during_anomaly": (
                f"Anomaly under way ({x.anomaly_score:.1f} sigma): not scaling down"
            ),
            "cooldown": f"Within the {self.cooldown_seconds:.0f} s cooldown of the last change",
            "database_bottleneck": "Database saturated: more API replicas will not help",
        }
        if capped:
            reason = (
                f"CPU needs more than the {self.max_replicas} replicas allowed: "
                f"holding at max_replicas {self.max_replicas}"
            )
        elif rule in explanations:
            reason = explanations[rule]
        elif crossing is not None:
            peak = _pct(self._q(crossing[1]))
            reason = f"Predicted CPU {peak} in {crossing[0] // 60}m: {target} replicas cover it"
        elif cpu_now is not None:
            reason = f"CPU {_pct(cpu_now)} and its forecast are within the thresholds"
        else:
            reason = "No CPU reading: holding"
        hold_by = None if crossing is None else max(x.now, x.now + crossing[0] - self.startup_seconds)
        return Advice("scaling", "hold", target, reason, 0.7, "low", hold_by)

    def _memory(self, x: ScalingInputs) -> list[Advice]:
        warn = self.memory_warning
        if _finite(x.memory_now) and (x.memory_now or 0.0) >= warn:
            reason = f"Memory {_pct(x.memory_now or 0.0)} is at or above the warning level {_pct(warn)}"
            return [Advice("resource", "increase_memory_limit", None, reason, 0.95, "high", x.now)]
        for h, b in self._usable(x.memory_forecast, math.inf):
            if b.point >= warn:
                reason = (
                    f"Predicted memory {_pct(b.point)} in {h // 60}m crosses the warning level {_pct(warn)}: "
                    "raise the memory limit or look for a leak"
                )
                conf = min(0.99, max(0.5, self._p_above(b, warn)))
                urgency: UrgencyName = "high" if h <= 900 else "medium"
                return [
                    Advice(
                        "resource",
                        "increase_memory_limit",
                        None,
                        reason,
                        round(conf, 3),
                        urgency,
                        max(x.now, x.now + h - self.startup_seconds),
                    )
                ]
        return []

    def _database(self, x: ScalingInputs) -> tuple[bool, str]:
        if _finite(x.db_cpu) and (x.db_cpu or 0.0) >= self.db_cpu_saturation:
            return (
                True,
                f"Database CPU {_pct(x.db_cpu or 0.0)} is at saturation {_pct(self.db_cpu_saturation)}",
            )
        limit = self.db_connections_limit
        if limit is not None and _finite(x.db_connections) and (x.db_connections or 0.0) >= limit:
            return True, f"Database connections {x.db_connections:.0f} reach the limit {limit:.0f}"
        return False, ""

    def _db_advice(self, reason: str, target: int) -> Advice:
        return Advice(
            "database",
            "investigate_database",
            target,
            f"{reason}: more API replicas will not help; scale or tune the database instead",
            0.9,
            "high",
            None,
        )
