"""Reactive autoscalers as Kubernetes runs them, for replaying a demand trace against them.

Two controllers share one model of the pods they manage:

* :class:`HPASimulator` — the ``autoscaling/v2`` HorizontalPodAutoscaler on CPU utilisation: a sync every
  ``sync_seconds``, the replica calculator's tolerance band and its treatment of not-yet-ready pods,
  the scale-up rate limits of the default behaviour (``max(100 %, 4 pods)`` per period), a scale-down
  stabilisation window (the maximum of the recommendations made within it), ``min``/``max`` bounds,
  and a start-up delay before a new pod is ready and counts as capacity.
* :class:`KEDASimulator` — Helios driving the same HPA through KEDA's ScaledObject: KEDA reads
  ``helios_recommended_replicas`` every ``polling_seconds`` and exposes it as an external metric with
  ``AverageValue`` target ``threshold`` (so the HPA asks for ``ceil(value / threshold)``), next to a
  CPU ``Utilization`` trigger acting as a floor; the HPA takes the maximum over its metrics. KEDA's
  own ``cooldownPeriod`` governs only scaling to zero, so scale-down damping between non-zero counts
  is the HPA's stabilisation window, which the ScaledObject sets through
  ``advanced.horizontalPodAutoscalerConfig.behavior`` (``cooldown_seconds`` here).

The replica calculator follows ``pkg/controller/podautoscaler/replica_calculator.go``: with ready pods
at average utilisation ``u``, ``ratio = u / target``; within ``1 ± tolerance`` nothing changes; when the
ratio asks for more pods while some pods are still starting, those are counted at 0 % and the ratio is
recomputed (which damps scale-up during start-up); the new count is ``ceil(ratio * pods)``. With demand
``D`` cores and ``capacity`` cores per pod that count is ``ceil(D / (capacity * target))``.

Utilisation here is demand over ready capacity and may exceed 1 (the HPA measures against requests;
queued work shows as utilisation above the request).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HPASimulator",
    "HorizontalPodAutoscaler",
    "KEDASimulator",
    "Pods",
    "Policy",
    "average_value_replicas",
    "cpu_replicas",
]


def cpu_replicas(
    demand: float, ready: int, spec: int, capacity: float, target: float, tolerance: float = 0.1
) -> int:
    """Replicas the HPA's replica calculator asks for on a CPU ``Utilization`` metric.

    Parameters
    ----------
    demand
        CPU demand in cores across the deployment.
    ready
        Pods that are ready (their usage is measured).
    spec
        Pods the deployment currently asks for (ready plus starting).
    capacity
        Cores per pod the utilisation is measured against (the request).
    target
        Target average utilisation (0.7 for 70 %).
    tolerance
        The HPA's ``--horizontal-pod-autoscaler-tolerance``.

    Examples
    --------
    >>> cpu_replicas(3.0, ready=4, spec=4, capacity=1.0, target=0.7)   # 75 % is within 10 % of 70 %
    4
    >>> cpu_replicas(3.6, ready=4, spec=4, capacity=1.0, target=0.7)   # 90 %: ceil(3.6 / 0.7)
    6
    >>> cpu_replicas(3.6, ready=4, spec=6, capacity=1.0, target=0.7)   # two pods starting count as 0 %
    6
    >>> cpu_replicas(0.5, ready=4, spec=4, capacity=1.0, target=0.7)
    1
    """
    if spec <= 0:
        return spec
    if ready <= 0:
        # Nothing is measured: the HPA keeps the current count.
        return spec
    ratio = demand / (ready * capacity) / target
    unready = spec - ready
    if unready <= 0 or ratio <= 1.0:
        if abs(1.0 - ratio) <= tolerance:
            return spec
        return max(1, math.ceil(round(ratio * ready, 9)))
    # Scale-up with pods still starting: those count as 0 % and the ratio is recomputed over all pods.
    new_ratio = demand / (spec * capacity) / target
    if abs(1.0 - new_ratio) <= tolerance or new_ratio < 1.0:
        return spec
    new = math.ceil(round(new_ratio * spec, 9))
    return max(new, spec)


def average_value_replicas(value: float, threshold: float, spec: int, tolerance: float = 0.1) -> int:
    """Replicas the HPA asks for on an external metric with an ``AverageValue`` target.

    ``ceil(value / threshold)``, unless ``value / (threshold * spec)`` is within the tolerance of 1.

    Examples
    --------
    >>> average_value_replicas(6.0, threshold=1.0, spec=4)
    6
    >>> average_value_replicas(10.0, threshold=1.0, spec=11)   # 10/11 is within 10 % of 1
    11
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if spec > 0 and abs(1.0 - value / (threshold * spec)) <= tolerance:
        return spec
    return math.ceil(round(value / threshold, 9))


@dataclass
class Pods:
    """The pods of one deployment: each becomes ready ``startup_seconds`` after it is created.

    Scale-down removes the youngest pods first (not-ready pods go before ready ones, as the
    ReplicaSet controller does).

    Examples
    --------
    >>> pods = Pods(startup_seconds=60.0, initial=2)
    >>> pods.scale_to(4, now=0.0)
    >>> pods.spec, pods.ready(30.0), pods.ready(60.0)
    (4, 2, 4)
    """

    startup_seconds: float = 60.0
    initial: int = 1
    _ready_at: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.startup_seconds < 0:
            raise ValueError(f"startup_seconds must be >= 0, got {self.startup_seconds}")
        if self.initial < 0:
            raise ValueError(f"initial must be >= 0, got {self.initial}")
        if not self._ready_at:
            self._ready_at = [-math.inf] * self.initial

    @property
    def spec(self) -> int:
        return len(self._ready_at)

    def ready(self, now: float) -> int:
        return sum(1 for t in self._ready_at if t <= now)

    def scale_to(self, replicas: int, now: float) -> None:
        if replicas > self.spec:
            self._ready_at.extend([now + self.startup_seconds] * (replicas - self.spec))
        elif replicas < self.spec:
            self._ready_at.sort()
            del self._ready_at[replicas:]


#: One HPA scaling policy: ``(type, value, period_seconds)`` with type ``"Pods"`` or ``"Percent"``.
Policy = tuple[str, float, float]


class HorizontalPodAutoscaler:
    """The HPA controller's behaviour: max over metrics, stabilisation, rate-limit policies, bounds.

    Follows ``normalizeDesiredReplicasWithBehaviors`` of the HPA controller: the recommendation is
    stabilised (scale down only to the highest recommendation of the down-window, up only to the lowest of
    the up-window), then limited by the direction's policies, each counted from the replicas at the start
    of its period (the scaling events within ``periodSeconds`` are remembered), then bounded.

    Parameters
    ----------
    min_replicas, max_replicas
        The HPA's bounds.
    downscale_stabilization_seconds
        Scale down to the maximum of the recommendations made within this window (default 300 s).
    upscale_stabilization_seconds
        Scale up to the minimum of the recommendations made within this window (default 0).
    scale_up_percent, scale_up_pods, period_seconds
        The default scale-up policies (``Percent`` and ``Pods`` per ``period_seconds``), used when
        ``scale_up_policies`` is ``None``.
    scale_up_policies, scale_down_policies
        ``behavior.scaleUp.policies`` / ``behavior.scaleDown.policies`` as ``(type, value, period)``;
        ``None``: Kubernetes' defaults (scale-down: 100 % per 15 s, i.e. unlimited).
    scale_up_select, scale_down_select
        ``selectPolicy``: ``"Max"`` (the policy allowing the largest change), ``"Min"`` or ``"Disabled"``.

    Examples
    --------
    >>> hpa = HorizontalPodAutoscaler(min_replicas=1, max_replicas=10)
    >>> hpa.decide(0.0, current=4, proposals=[6])
    6
    >>> hpa.decide(15.0, current=6, proposals=[2])   # within 300 s of asking for 6
    6
    >>> hpa.decide(315.0, current=6, proposals=[2])
    2
    >>> slow = HorizontalPodAutoscaler(downscale_stabilization_seconds=0,
    ...                                scale_down_policies=[("Pods", 2, 60)])
    >>> slow.decide(0.0, current=8, proposals=[1]), slow.decide(30.0, current=6, proposals=[1])
    (6, 6)
    >>> slow.decide(61.0, current=6, proposals=[1])
    4
    """

    def __init__(
        self,
        min_replicas: int = 1,
        max_replicas: int = 10,
        downscale_stabilization_seconds: float = 300.0,
        upscale_stabilization_seconds: float = 0.0,
        scale_up_percent: float = 100.0,
        scale_up_pods: int = 4,
        period_seconds: float = 15.0,
        scale_up_policies: list[Policy] | None = None,
        scale_down_policies: list[Policy] | None = None,
        scale_up_select: str = "Max",
        scale_down_select: str = "Max",
    ) -> None:
        if min_replicas < 1:
            raise ValueError(f"min_replicas must be >= 1, got {min_replicas}")
        if max_replicas < min_replicas:
            raise ValueError(f"max_replicas ({max_replicas}) must be >= min_replicas ({min_replicas})")
        if downscale_stabilization_seconds < 0:
            raise ValueError(
                f"downscale_stabilization_seconds must be >= 0, got {downscale_stabilization_seconds}"
            )
        if upscale_stabilization_seconds < 0:
            raise ValueError(
                f"upscale_stabilization_seconds must be >= 0, got {upscale_stabilization_seconds}"
            )
        if scale_up_percent <= 0 or scale_up_pods < 1:
            raise ValueError(
                f"scale_up_percent (> 0) and scale_up_pods (>= 1): got {scale_up_percent}, {scale_up_pods}"
            )
        if period_seconds <= 0:
            raise ValueError(f"period_seconds must be positive, got {period_seconds}")
        for name, sel in (("scale_up_select", scale_up_select), ("scale_down_select", scale_down_select)):
            if sel not in ("Max", "Min", "Disabled"):
                raise ValueError(f"{name} must be Max, Min or Disabled, got {sel!r}")
        if scale_up_policies is None:
            scale_up_policies = [
                ("Percent", scale_up_percent, period_seconds),
                ("Pods", scale_up_pods, period_seconds),
            ]
        if scale_down_policies is None:
            scale_down_policies = [("Percent", 100.0, 15.0)]
        for name, policies in (
            ("scale_up_policies", scale_up_policies),
            ("scale_down_policies", scale_down_policies),
        ):
            if not policies:
                raise ValueError(f"{name} must not be empty")
            for kind, value, period in policies:
                if kind not in ("Pods", "Percent") or value <= 0 or period <= 0:
                    raise ValueError(
                        f"{name}: expected (Pods|Percent, value > 0, period > 0), got {(kind, value, period)}"
                    )
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.downscale_stabilization_seconds = downscale_stabilization_seconds
        self.upscale_stabilization_seconds = upscale_stabilization_seconds
        self.scale_up_percent = scale_up_percent
        self.scale_up_pods = scale_up_pods
        self.period_seconds = period_seconds
        self.scale_up_policies = list(scale_up_policies)
        self.scale_down_policies = list(scale_down_policies)
        self.scale_up_select = scale_up_select
        self.scale_down_select = scale_down_select
        self._recommendations: deque[tuple[float, int]] = deque()
        self._up_events: deque[tuple[float, int]] = deque()
        self._down_events: deque[tuple[float, int]] = deque()

    @staticmethod
    def _changed_within(events: deque[tuple[float, int]], now: float, period: float) -> int:
        return sum(n for t, n in events if t > now - period)

    def _up_limit(self, now: float, current: int) -> int:
        if self.scale_up_select == "Disabled":
            return current
        limits = []
        for kind, value, period in self.scale_up_policies:
            start = current - self._changed_within(self._up_events, now, period)
            limits.append(start + int(value) if kind == "Pods" else math.ceil(start * (1 + value / 100)))
        return max(limits) if self.scale_up_select == "Max" else min(limits)

    def _down_limit(self, now: float, current: int) -> int:
        if self.scale_down_select == "Disabled":
            return current
        limits = []
        for kind, value, period in self.scale_down_policies:
            start = current + self._changed_within(self._down_events, now, period)
            limits.append(start - int(value) if kind == "Pods" else int(start * (1 - value / 100)))
        # "Max" is the policy that allows the largest change, i.e. the lowest count.
        return min(limits) if self.scale_down_select == "Max" else max(limits)

    def decide(self, now: float, current: int, proposals: list[int]) -> int:
        """The replica count the HPA sets at ``now`` given each metric's proposal."""
        desired = max(proposals) if proposals else current
        # stabilizeRecommendationWithBehaviors: the lowest recommendation of the up-window and the highest
        # of the down-window bound where the count may move from ``current``.
        up = desired
        down = desired
        for t, r in self._recommendations:
            if t > now - self.upscale_stabilization_seconds:
                up = min(up, r)
            if t > now - self.downscale_stabilization_seconds:
                down = max(down, r)
        self._recommendations.append((now, desired))
        horizon = max(self.downscale_stabilization_seconds, self.upscale_stabilization_seconds)
        while self._recommendations and self._recommendations[0][0] <= now - horizon:
            self._recommendations.popleft()
        stabilised = current
        if stabilised < up:
            stabilised = up
        if stabilised > down:
            stabilised = down
        if stabilised > current:
            stabilised = min(stabilised, max(current, self._up_limit(now, current)))
        elif stabilised < current:
            stabilised = max(stabilised, min(current, self._down_limit(now, current)))
        new = min(self.max_replicas, max(self.min_replicas, stabilised))
        if new > current:
            self._up_events.append((now, new - current))
        elif new < current:
            self._down_events.append((now, current - new))
        longest = max(p for _, _, p in self.scale_up_policies + self.scale_down_policies)
        for events in (self._up_events, self._down_events):
            while events and events[0][0] <= now - longest:
                events.popleft()
        return new


@dataclass
class StepResult:
    """What a simulated controller did at one tick."""

    spec: int
    ready: int
    scaled: bool


class HPASimulator:
    """A deployment under a CPU-utilisation HPA, advanced one tick at a time.

    Parameters
    ----------
    target
        CPU utilisation target (``averageUtilization`` / 100).
    capacity
        Cores per pod (the CPU request utilisation is measured against).
    tolerance, sync_seconds, startup_seconds, downscale_stabilization_seconds, min_replicas, max_replicas
        As in Kubernetes (defaults 0.1, 15 s, 60 s, 300 s, 1, 10).
    initial_replicas
        Ready pods at the start.
    upscale_stabilization_seconds, scale_up_policies, scale_down_policies
        ``behavior`` of the HPA (see :class:`HorizontalPodAutoscaler`; defaults: Kubernetes').

    Examples
    --------
    >>> sim = HPASimulator(initial_replicas=2)
    >>> [sim.step(t, demand=2.5).ready for t in (0.0, 15.0, 60.0)]   # asks for 4 at t=0, ready at 60 s
    [2, 2, 4]
    >>> sim.actions
    1
    """

    def __init__(
        self,
        target: float = 0.70,
        capacity: float = 1.0,
        tolerance: float = 0.1,
        sync_seconds: float = 15.0,
        startup_seconds: float = 60.0,
        downscale_stabilization_seconds: float = 300.0,
        min_replicas: int = 1,
        max_replicas: int = 10,
        initial_replicas: int = 1,
        upscale_stabilization_seconds: float = 0.0,
        scale_up_policies: list[Policy] | None = None,
        scale_down_policies: list[Policy] | None = None,
    ) -> None:
        if not 0 < target <= 1.5:
            raise ValueError(f"target must be in (0, 1.5], got {target}")
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if not 0 <= tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
        if sync_seconds <= 0:
            raise ValueError(f"sync_seconds must be positive, got {sync_seconds}")
        if not min_replicas <= initial_replicas <= max_replicas:
            raise ValueError(
                f"initial_replicas ({initial_replicas}) must lie in [{min_replicas}, {max_replicas}]"
            )
        self.target = target
        self.capacity = capacity
        self.tolerance = tolerance
        self.sync_seconds = sync_seconds
        self.startup_seconds = startup_seconds
        self.downscale_stabilization_seconds = downscale_stabilization_seconds
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.initial_replicas = initial_replicas
        self.pods = Pods(startup_seconds=startup_seconds, initial=initial_replicas)
        self.hpa = HorizontalPodAutoscaler(
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            downscale_stabilization_seconds=downscale_stabilization_seconds,
            upscale_stabilization_seconds=upscale_stabilization_seconds,
            period_seconds=sync_seconds,
            scale_up_policies=scale_up_policies,
            scale_down_policies=scale_down_policies,
        )
        self.actions = 0
        self._next_sync: float | None = None

    def _proposals(self, now: float, demand: float) -> list[int]:
        ready = self.pods.ready(now)
        return [cpu_replicas(demand, ready, self.pods.spec, self.capacity, self.target, self.tolerance)]

    def step(self, now: float, demand: float) -> StepResult:
        """Advance to ``now`` with ``demand`` cores; the controller syncs when its period is due."""
        scaled = False
        if self._next_sync is None or now >= self._next_sync:
            self._next_sync = now + self.sync_seconds
            current = self.pods.spec
            new = self.hpa.decide(now, current, self._proposals(now, demand))
            if new != current:
                self.pods.scale_to(new, now)
                self.actions += 1
                scaled = True
        return StepResult(spec=self.pods.spec, ready=self.pods.ready(now), scaled=scaled)


class KEDASimulator(HPASimulator):
    """A deployment scaled by KEDA on ``helios_recommended_replicas`` with a CPU floor trigger.

    Parameters
    ----------
    polling_seconds
        KEDA's ``pollingInterval``: how often the Prometheus value is re-read.
    threshold
        The Prometheus trigger's ``AverageValue`` threshold (1: the value is a replica count).
    floor_target
        Target of the CPU ``Utilization`` trigger that keeps scaling reactive when Helios is silent
        or behind; ``None`` leaves the Prometheus trigger alone.
    cooldown_seconds
        Scale-down stabilisation of the HPA KEDA creates.
    shadow
        Report what Helios asks for but let only the CPU trigger act (the workload then behaves as
        a CPU HPA at ``floor_target``).
    **kwargs
        As for :class:`HPASimulator` (``target`` is unused here).

    Examples
    --------
    >>> sim = KEDASimulator(initial_replicas=2, floor_target=0.8)
    >>> sim.step(0.0, demand=1.0, recommended=5).spec
    5
    >>> sim.step(15.0, demand=1.0, recommended=2).spec     # KEDA has not re-read the value yet
    5
    """

    def __init__(
        self,
        polling_seconds: float = 30.0,
        threshold: float = 1.0,
        floor_target: float | None = 0.80,
        cooldown_seconds: float = 300.0,
        shadow: bool = False,
        **kwargs: Any,
    ) -> None:
        if polling_seconds <= 0:
            raise ValueError(f"polling_seconds must be positive, got {polling_seconds}")
        if threshold <= 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        if floor_target is not None and not 0 < floor_target <= 1.5:
            raise ValueError(f"floor_target must be in (0, 1.5] or None, got {floor_target}")
        kwargs.setdefault("downscale_stabilization_seconds", cooldown_seconds)
        super().__init__(**kwargs)
        self.polling_seconds = polling_seconds
        self.threshold = threshold
        self.floor_target = floor_target
        self.cooldown_seconds = cooldown_seconds
        self.shadow = shadow
        self._next_poll: float | None = None
        self._value: float | None = None

    @property
    def metric_value(self) -> float | None:
        """The value KEDA last read from Prometheus (``None`` before the first read or when absent)."""
        return self._value

    def step(self, now: float, demand: float, recommended: float | None = None) -> StepResult:
        """Advance to ``now``; ``recommended`` is what Prometheus holds for Helios' gauge at ``now``."""
        if self._next_poll is None or now >= self._next_poll:
            self._next_poll = now + self.polling_seconds
            self._value = recommended
        return super().step(now, demand)

    def _proposals(self, now: float, demand: float) -> list[int]:
        spec = self.pods.spec
        out = []
        if self.floor_target is not None:
            ready = self.pods.ready(now)
            out.append(cpu_replicas(demand, ready, spec, self.capacity, self.floor_target, self.tolerance))
        if self._value is not None and not self.shadow:
            out.append(average_value_replicas(self._value, self.threshold, spec, self.tolerance))
        return out
