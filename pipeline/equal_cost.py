"""Helios judged at equal cost: against the HPA whose CPU target is retuned to spend the same replica-hours.

An HPA at a lower CPU target holds more headroom and is short less often, for more replica-hours; at a
higher target the reverse. Comparing Helios with the HPA at one target mixes two things, where the
spending is placed (foresight) and how much is spent (headroom). Running the same reactive HPA at a sweep
of targets gives its cost-shortfall curve; reading that curve at Helios' replica-hours gives what a plain
HPA achieves for the same money, and the ratio of Helios' short minutes to it is the gain of foresight.

The curve is made non-increasing in replica-hours before it is read (the running minimum from the
cheapest target up): an operator with a budget picks the best target within it, so the yardstick is the
best the family does for at most that cost. Between two targets it is interpolated linearly; outside the
swept range it is clamped to the nearest end and ``within_range`` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.autoscalers import HPASimulator

__all__ = ["HPA_SWEEP", "CurvePoint", "at_equal_cost", "hpa_family", "plot_equal_cost", "run_hpa"]

#: The CPU targets of the HPA family: 40 % to 95 % in steps of 5 %.
HPA_SWEEP: tuple[float, ...] = tuple(round(0.40 + 0.05 * i, 2) for i in range(12))


@dataclass(frozen=True)
class CurvePoint:
    """The HPA at one CPU target: what it spent and how long it was short."""

    target: float
    replica_hours: float
    under_provisioned_minutes: float
    scaling_actions: int

    def as_dict(self) -> dict[str, float]:
        return {
            "target": self.target,
            "replica_hours": round(self.replica_hours, 3),
            "under_provisioned_minutes": round(self.under_provisioned_minutes, 2),
            "scaling_actions": self.scaling_actions,
        }


def run_hpa(
    ts: np.ndarray,
    demand: np.ndarray,
    target: float,
    *,
    step_seconds: float,
    tick: float,
    threshold: float,
    **hpa_kwargs: Any,
) -> CurvePoint:
    """Replay ``demand`` (cores per step starting at ``ts``) through an HPA at ``target``, scored as
    :func:`pipeline.simulate.simulate` scores it (short: demand per ready replica above ``threshold``)."""
    hpa = HPASimulator(target=target, **hpa_kwargs)
    capacity = hpa.capacity
    n_ticks = max(1, round(step_seconds / tick))
    replica_seconds = under = 0.0
    for t0, d in zip(ts, demand, strict=True):
        for j in range(n_ticks):
            r = hpa.step(float(t0) + j * tick, float(d))
            replica_seconds += r.spec * tick
            if (d > 0) if r.ready <= 0 else d / (r.ready * capacity) > threshold:
                under += tick
    return CurvePoint(target, replica_seconds / 3600, under / 60, hpa.actions)


def hpa_family(
    ts: np.ndarray, demand: np.ndarray, targets: Sequence[float] = HPA_SWEEP, **kwargs: Any
) -> list[CurvePoint]:
    """:func:`run_hpa` at every target of the sweep."""
    return [run_hpa(ts, demand, t, **kwargs) for t in targets]


def at_equal_cost(curve: Sequence[CurvePoint], replica_hours: float, short_minutes: float) -> dict[str, Any]:
    """The family's short minutes at ``replica_hours`` and the ratio of ``short_minutes`` to them.

    Examples
    --------
    The 70 % target spends more than the 90 % one and is short longer, so the family's best at 10 h is
    the 40 minutes it has at 8 h; at 15 h it is halfway between that and 10 minutes at 20 h:

    >>> curve = [CurvePoint(0.5, 20.0, 10.0, 5), CurvePoint(0.7, 10.0, 50.0, 4),
    ...          CurvePoint(0.9, 8.0, 40.0, 3)]
    >>> r = at_equal_cost(curve, replica_hours=15.0, short_minutes=15.0)
    >>> r["hpa_under_provisioned_minutes"], r["ratio"], r["within_range"]
    (25.0, 0.6, True)
    """
    pts = sorted(curve, key=lambda p: p.replica_hours)
    if not pts:
        raise ValueError("the curve needs at least one point")
    xs = np.array([p.replica_hours for p in pts])
    ys = np.minimum.accumulate(np.array([p.under_provisioned_minutes for p in pts]))
    hpa_short = float(np.interp(replica_hours, xs, ys))
    if hpa_short > 0:
        ratio: float | None = round(short_minutes / hpa_short, 4)
    else:
        ratio = None if short_minutes > 0 else 1.0
    return {
        "curve": [p.as_dict() for p in curve],
        "replica_hours": round(replica_hours, 3),
        "hpa_under_provisioned_minutes": round(hpa_short, 2),
        "helios_under_provisioned_minutes": round(short_minutes, 2),
        "ratio": ratio,
        "within_range": bool(xs[0] <= replica_hours <= xs[-1]),
    }


def plot_equal_cost(summary: dict[str, Any], path: Path, title: str) -> None:
    """The HPA family's cost-shortfall curve with Helios' point and the HPA at its configured target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eq = summary["equal_cost"]
    curve = sorted(eq["curve"], key=lambda p: p["replica_hours"])
    fig, ax = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
    xs = [p["replica_hours"] for p in curve]
    ys = [p["under_provisioned_minutes"] for p in curve]
    ax.plot(xs, ys, "o-", color="tab:blue", label="HPA at CPU target (the family)")
    for p in curve:
        ax.annotate(f"{p['target']:.0%}", (p["replica_hours"], p["under_provisioned_minutes"]), fontsize=7)
    hpa = summary["hpa"]
    ax.plot(
        [hpa["replica_hours"]],
        [hpa["under_provisioned_minutes"]],
        "s",
        color="tab:purple",
        ms=9,
        label=f"HPA at {summary['config']['hpa_target']:.0%} (default)",
    )
    ax.plot(
        [eq["replica_hours"]],
        [eq["hpa_under_provisioned_minutes"]],
        "x",
        color="tab:blue",
        ms=10,
        label="HPA family at Helios' replica-hours",
    )
    ratio = "n/a" if eq["ratio"] is None else f"{eq['ratio']:.2f}"
    ax.plot(
        [eq["replica_hours"]],
        [eq["helios_under_provisioned_minutes"]],
        "*",
        color="tab:green",
        ms=15,
        label=f"Helios ({ratio} x the HPA at equal cost)",
    )
    ax.set_xlabel("replica-hours")
    ax.set_ylabel("under-provisioned minutes")
    ax.set_title(f"{title}: cost-shortfall at equal replica-hours")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
