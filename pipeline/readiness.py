"""Whether a worker is ready: the state ``/ready`` and ``helios_ready`` report.

The agents' timers update it (models loaded, broker reachable, partitions stalled); the web view reads
it. It lives here, not with the agents, so the web view needs nothing from ``agents/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.faust_adapter import assigned_actives, recovery_completed


@dataclass
class Readiness:
    """Ready = models loaded, broker reachable, partitions assigned, no table recovery, nothing stalled.

    Examples
    --------
    >>> r = Readiness(model_path="models/artifacts", broker="127.0.0.1:9092")
    >>> r.reasons(assigned=True, recovering=False)[1]
    'Kafka broker 127.0.0.1:9092 unreachable'
    >>> r.models_loaded, r.broker_up = True, True
    >>> r.reasons(assigned=True, recovering=False)
    []
    """

    model_path: str
    broker: str
    models_loaded: bool = False
    #: Why the model artifact did not load, if it did not.
    model_error: str | None = None
    broker_up: bool = False
    #: Partitions with lag the consumer has not moved for ``stall_after`` seconds, as ``topic[partition]``.
    stalled: list[str] = field(default_factory=list)
    stall_after: float = 0.0

    def reasons(self, assigned: bool, recovering: bool) -> list[str]:
        """What keeps the worker from being ready; empty when it is."""
        reasons = []
        if not self.models_loaded:
            reasons.append(f"model artifact not loaded from {self.model_path}: {self.model_error}")
        if not self.broker_up:
            reasons.append(f"Kafka broker {self.broker} unreachable")
        if not assigned:
            reasons.append("no partitions assigned yet")
        if recovering:
            reasons.append("rebalancing or recovering tables")
        if self.stalled:
            stalled = ", ".join(self.stalled)
            reasons.append(f"partitions with lag not being consumed for {self.stall_after:.0f} s: {stalled}")
        return reasons

    def check(self, app: Any) -> tuple[bool, list[str]]:
        """Ready or not, and why, with the Faust app's assignment and recovery as they stand."""
        assigned = bool(assigned_actives(app))
        recovering = bool(app.rebalancing or not recovery_completed(app))
        reasons = self.reasons(assigned, recovering)
        return not reasons, reasons
