"""Where the periodic replays' short minutes fall: at jumps, on recurring ramps, or elsewhere.

For each periodic replay of ``scripts/bench-simulate`` (the same traces, demand and simulator), every step
is put in one class, in this order:

* **jump**: demand > ``JUMP`` x the previous step's (``recurring`` when the same phase one day earlier, or
  a step either side of it, was a jump too);
* **ramp**: demand rose by at least ``RISE`` over the last hour, and so did the demand at the same time one
  day earlier (a ramp the past announces);
* **other**.

It prints, per replay, the short minutes of Helios and of the default HPA in each class, the equal-cost
HPA's total, and the rule of Helios' decision one step before each of its short steps (the decision that
had to have the pods ready). Usage: ``python -m pipeline.bench.simulate_diagnosis [--jobs N] [--only NAME]``.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.bench import simulate_results as bench

#: A rise over the last hour that counts as a ramp (both now and one day before).
RISE = 1.1

#: The candidate periodic replays (name, step; 0: the trace's own); a replay is kept when its daily acf
#: makes it periodic, as in the benchmark.
CANDIDATES: tuple[tuple[str, int], ...] = (
    ("grok_asg_anomaly", 0),
    ("grok_asg_anomaly", 60),
    ("grok_asg_anomaly", 1800),
    ("saleor", 0),
    ("saleor_1m", 0),
    ("saleor_30m", 0),
    ("saleor_leak", 0),
    ("daily_counts", 0),
    ("daily_counts_30m", 0),
    ("exchange-2_cpc_results", 0),
    ("exchange-2_cpm_results", 0),
    ("exchange-3_cpm_results", 0),
)


def classify(demand: np.ndarray, step: int) -> np.ndarray:
    """Per step: 'jump', 'jump_recurring', 'ramp' or 'other' (see the module docstring)."""
    n = len(demand)
    hour = max(1, round(3600 / step))
    day = max(1, round(86400 / step))
    prev = np.concatenate([[np.inf], demand[:-1]])
    jump = demand > bench.JUMP * prev
    out = np.full(n, "other", dtype=object)
    for i in range(n):
        if jump[i]:
            then = [j for j in (i - day - 1, i - day, i - day + 1) if 0 <= j < n]
            out[i] = "jump_recurring" if any(jump[j] for j in then) else "jump"
            continue
        a, b = i - hour, i - day
        if b - hour >= 0 and demand[i] >= RISE * demand[a] and demand[b] >= RISE * demand[b - hour]:
            out[i] = "ramp"
    return out


def diagnose(job: tuple[str, str, int]) -> dict[str, Any]:
    r, result = bench.run_replay(job)
    steps = result.steps
    s = r["summary"]
    step_seconds = r["step"]
    kinds = classify(steps["demand"].to_numpy(), step_seconds)
    k_min = steps["helios_under_seconds"].to_numpy() / 60
    h_min = steps["hpa_under_seconds"].to_numpy() / 60
    rules = steps["helios_rule"].shift(1).fillna("").to_numpy()
    split = {}
    for cls in ("jump", "jump_recurring", "ramp", "other"):
        mask = kinds == cls
        split[cls] = (float(k_min[mask].sum()), float(h_min[mask].sum()), int(mask.sum()))
    by_rule: dict[str, float] = {}
    only_helios: dict[str, float] = {}
    for i in np.flatnonzero(k_min > 0):
        key = f"{rules[i]} ({kinds[i]})"
        by_rule[key] = by_rule.get(key, 0.0) + float(k_min[i])
        if h_min[i] == 0:
            only_helios[key] = only_helios.get(key, 0.0) + float(k_min[i])
    return {
        "result": r,
        "split": split,
        "by_rule": by_rule,
        "only_helios": only_helios,
        "equal_cost": s["equal_cost"]["hpa_under_provisioned_minutes"],
    }


def _top(minutes: dict[str, float], k: int) -> list[tuple[str, float]]:
    return sorted(minutes.items(), key=lambda kv: -kv[1])[:k]


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.bench.simulate_diagnosis", description=__doc__)
    ap.add_argument("--shared", type=Path, default=bench.REPO.parent / "shared")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="", help="replay only traces whose name contains this")
    args = ap.parse_args()
    wanted = set(CANDIDATES)
    jobs = [j for j in bench.all_jobs(args.shared) if (j[0], j[2]) in wanted and args.only in j[0]]
    print(
        "| trace | step (min) | Helios short: jump / recurring jump / ramp / other | HPA 70 % short: "
        "jump / recurring jump / ramp / other | equal-cost HPA | steps: jump / rec. / ramp |"
    )
    print("|---|---:|---|---|---:|---|")
    rule_lines = []
    totals = np.zeros((2, 4))
    eq_total = 0.0
    with ProcessPoolExecutor(args.jobs) as pool:
        for d in pool.map(diagnose, jobs):
            r = d["result"]
            if bench.trace_class(r) != "periodic":
                continue
            sp = d["split"]
            order = ("jump", "jump_recurring", "ramp", "other")
            k = " / ".join(f"{sp[c][0]:.0f}" for c in order)
            h = " / ".join(f"{sp[c][1]:.0f}" for c in order)
            n = " / ".join(str(sp[c][2]) for c in order[:3])
            totals += np.array([[sp[c][0] for c in order], [sp[c][1] for c in order]])
            eq_total += d["equal_cost"]
            print(
                f"| {r['name']} | {r['step'] // 60} | {k} | {h} | {d['equal_cost']:.0f} | {n} |", flush=True
            )
            top = ", ".join(f"{rule} {m:.0f}" for rule, m in _top(d["by_rule"], 5))
            only = ", ".join(f"{rule} {m:.0f}" for rule, m in _top(d["only_helios"], 3))
            rule_lines.append(
                f"- {r['name']} ({r['step'] // 60} min): {top}; where the HPA was not short: {only}"
            )
    k_t = " / ".join(f"{v:.0f}" for v in totals[0])
    h_t = " / ".join(f"{v:.0f}" for v in totals[1])
    print(f"| **pooled** | | {k_t} | {h_t} | {eq_total:.0f} | |")
    print("\nRule of the decision one step before each Helios short step (minutes, with the step's class):\n")
    print("\n".join(rule_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
