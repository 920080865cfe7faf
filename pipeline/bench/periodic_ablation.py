"""What the periodic-ramp rule buys: replay traces through `helios simulate` with the periodic-load model
(`models.recurrence.PeriodicLoad`) as shipped and with it silenced (its growth always None), and print
Helios' short minutes, replica-hours, actions and ratio to the equal-cost HPA family for both.

Usage: scripts/periodic-ablation [NAME|FILE.csv]..., NAME one of daily_counts_30m,
daily_counts, saleor, saleor_30m (as in scripts/bench-simulate); a CSV is replayed at its own step."""

from __future__ import annotations

import sys
from pathlib import Path

from models import recurrence
from pipeline import simulate as sim

TRACES = {
    "daily_counts": lambda: sim.daily_trace(14, 300),
    "daily_counts_30m": lambda: sim.daily_trace(28, 1800),
    "saleor": lambda: sim.saleor_trace(14, 300, 7),
    "saleor_30m": lambda: sim.saleor_trace(28, 1800, 13),
}


def replay(name: str, silenced: bool) -> str:
    if name in TRACES:
        trace, kind = TRACES[name](), "count"
    else:
        trace = sim.load_trace(Path(name))
        kind = sim.trace_kind(Path(name), trace["value"].to_numpy())
    demand = sim.demand_cores(trace["value"].to_numpy(), kind, 4, 0.70)
    growth = recurrence.PeriodicLoad.growth
    if silenced:
        recurrence.PeriodicLoad.growth = lambda self, t, steps: None  # type: ignore[method-assign]
    try:
        s = sim.simulate(trace, demand).summary()
    finally:
        recurrence.PeriodicLoad.growth = growth  # type: ignore[method-assign]
    k, eq = s["helios"], s["equal_cost"]
    return (
        f"| {Path(name).stem} | {'off' if silenced else 'on'} | {k['under_provisioned_minutes']:.1f} | "
        f"{k['replica_hours']:.1f} | {k['scaling_actions']} | {eq['hpa_under_provisioned_minutes']:.1f} | "
        f"{eq['ratio']} | {s['hpa']['under_provisioned_minutes']:.1f} | {s['hpa']['scaling_actions']} |"
    )


def main() -> int:
    names = sys.argv[1:] or ["daily_counts_30m", "daily_counts"]
    print(
        "| trace | periodic model | Helios short min | RH | actions | equal-cost HPA short min "
        "| Helios ÷ equal-cost | HPA 70 % short min | HPA actions |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        for silenced in (True, False):
            print(replay(name, silenced), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
