"""Where Helios' scaling actions beyond the default HPA's come from, per replay of the benchmark.

Every change of either workload's replica count (``SimResult.changes``, at the controllers' 15 s ticks)
is put in one class, the same way for both workloads, in this order:

* **split after a saturated step**: a scale-down within ``SPLIT_SECONDS`` of another scale-down, after a
  step whose demand exceeded the workload's ready capacity (the CPU reading Helios gets is capped at
  100 %). Through the ScaledObject the CPU trigger takes the count to Y at once while Helios publishes its
  reactive floor X < Y from the capped reading; after the burst the HPA's stabilisation window lets Y go
  first and Helios' value, read one poll later, one poll after it: Y -> X -> Z, two actions where a
  single trigger makes one;
* **split, other**: any other change within ``SPLIT_SECONDS`` of a change in the same direction (e.g. a
  scale-up by the CPU trigger at once and to Helios' larger value when KEDA has read it);
* **descent**: a scale-down that follows another scale-down at an earlier step, with no scale-up between;
* **move**: every other change (one per rise or fall of the load).

It prints, per replay, each class for the default HPA and for Helios and the difference, and the bound
the splits put on the actions target: Helios' actions without its saturated splits. Usage:
``python -m pipeline.bench.simulate_actions [--jobs N] [--only NAME] [--step SECONDS]`` (default: the
30-min replays).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.bench import simulate_results as bench

#: Two changes this close are one decision split in two: KEDA's poll (30 s) after the publish delay.
SPLIT_SECONDS = 60.0

CLASSES = ("split_saturated", "split_other", "descent", "move")


def classify_changes(
    changes: list[tuple[str, float, int, int]],
    step_starts: np.ndarray,
    demand: np.ndarray,
    ready: dict[str, np.ndarray],
    capacity: float = 1.0,
) -> dict[str, Counter[str]]:
    """Per workload (``"hpa"``, ``"helios"``): how many of its changes fall in each class.

    ``step_starts`` are the steps' start times, ``demand`` their demand in cores and ``ready[who]`` the
    workload's ready replicas at each step's start (the simulation's per-step table).
    """
    out: dict[str, Counter[str]] = {who: Counter() for who in ready}
    last: dict[str, tuple[float, int]] = {}  # who -> (time, direction) of its previous change
    last_down_step: dict[str, int | None] = {}
    for who, t, before, after in changes:
        direction = 1 if after > before else -1
        i = int(np.searchsorted(step_starts, t, side="right") - 1)
        prev = last.get(who)
        if prev is not None and prev[1] == direction and t - prev[0] <= SPLIT_SECONDS:
            saturated = i >= 1 and demand[i - 1] > ready[who][i - 1] * capacity
            cls = "split_saturated" if direction < 0 and saturated else "split_other"
        elif direction < 0 and last_down_step.get(who) is not None and last_down_step[who] != i:
            cls = "descent"
        else:
            cls = "move"
        out[who][cls] += 1
        last[who] = (t, direction)
        last_down_step[who] = i if direction < 0 else None
    return out


def diagnose(job: tuple[str, str, int]) -> dict[str, Any]:
    """One replay of the benchmark, its changes classified."""
    r, result = bench.run_replay(job)
    steps = result.steps
    starts = pd.to_datetime(steps["timestamp"]).map(lambda x: x.timestamp()).to_numpy(dtype=float)
    ready = {
        "hpa": steps["hpa_replicas"].to_numpy(),
        "helios": steps["helios_replicas"].to_numpy(),
    }
    counts = classify_changes(result.changes, starts, steps["demand"].to_numpy(), ready)
    return {"name": r["name"], "step": r["step"], "summary": r["summary"], "counts": counts}


def report(results: list[dict[str, Any]]) -> list[str]:
    """The per-replay table: each class for the default HPA / Helios, and Helios without its splits."""
    lines = [
        "| replay | step (min) | HPA 70 % short min / RH | Helios short min / RH "
        "| HPA 70 % actions | Helios actions | "
        + " | ".join(f"{c}: HPA / Helios" for c in CLASSES)
        + " | Helios without saturated splits |",
        "|---|---:|---|---|---:|---:|" + "---|" * len(CLASSES) + "---:|",
    ]
    totals: dict[str, Counter[str]] = {"hpa": Counter(), "helios": Counter()}
    for r in sorted(results, key=lambda r: (r["step"], r["name"])):
        h, k = r["counts"]["hpa"], r["counts"]["helios"]
        for who, c in (("hpa", h), ("helios", k)):
            totals[who].update(c)
        cells = " | ".join(f"{h[c]} / {k[c]}" for c in CLASSES)
        hs, ks = sum(h.values()), sum(k.values())
        short = " | ".join(
            f"{r['summary'][who]['under_provisioned_minutes']:.1f} / {r['summary'][who]['replica_hours']:.1f}"
            for who in ("hpa", "helios")
        )
        lines.append(
            f"| {r['name']} | {r['step'] // 60} | {short} | {hs} | {ks} | {cells} "
            f"| {ks - k['split_saturated']} |"
        )
    h, k = totals["hpa"], totals["helios"]
    cells = " | ".join(f"{h[c]} / {k[c]}" for c in CLASSES)
    hs, ks = sum(h.values()), sum(k.values())
    lines.append(f"| **all** | | | | {hs} | {ks} | {cells} | {ks - k['split_saturated']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=bench.REPO.parent / "shared")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", action="append", default=None, help="replay only this trace name")
    parser.add_argument("--step", type=int, default=1800, help="replays at this step (seconds)")
    args = parser.parse_args(argv)
    jobs = [j for j in bench.all_jobs(args.shared) if args.only is None or j[0] in args.only]
    jobs = [j for j in jobs if j[2] == args.step or (j[2] == 0 and _own_step(j) == args.step)]
    if not jobs:
        print("no replay matches", file=sys.stderr)
        return 2
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(diagnose, jobs))
    print("\n".join(report(results)))
    return 0


def _own_step(job: tuple[str, str, int]) -> int:
    """The step of a replay at its trace's own step: the synthetic ones say so, the files are 5-min
    (the shared CloudWatch series) or 60-min (the ad-exchange ones)."""
    name, path, _ = job
    if name in bench.SYNTHETIC:
        return bench.SYNTHETIC[name][1]
    if name in bench.DAILY:
        return bench.DAILY[name][1]
    return 3600 if "realAdExchange" in path else 300


if __name__ == "__main__":
    raise SystemExit(main())
