"""Replay the shared traces at 1-min, 5-min and 30-min steps, the ad-exchange series and synthetic Saleor
workloads through `helios simulate` (the HPA at 70 %, the HPA family at CPU targets 0.40-0.95, and Helios
through the project's KEDA ScaledObject) and write the per-trace table to benchmarks/simulate-results.md.
Usage: scripts/bench-simulate [--shared DIR] [--out FILE] [--jobs N] [--only NAME] (it runs
``python -m pipeline.bench.simulate_results`` with the project's venv)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]

JUMP = 1.5
#: A trace is "periodic" when its demand one day apart correlates at least this much.
PERIODIC_ACF = 0.5
#: Synthetic Saleor workloads: name -> (days, step seconds, seed, incident start step, incident steps).
#: Daily and weekly cycles and flash sales are the generator's; "leak" adds a day-long incident whose CPU
#: is not load and whose memory leaks (the replay scales on CPU only).
SYNTHETIC: dict[str, tuple[float, int, int, int | None, int]] = {
    "saleor": (14, 300, 7, None, 15),
    "saleor_1m": (7, 60, 11, None, 15),
    "saleor_30m": (28, 1800, 13, None, 15),
    "saleor_leak": (14, 300, 17, 9 * 288, 288),
}
METHOD = """\
Every trace is replayed three ways on the same demand: the reference HPA at 70 % (the default), the same
HPA at CPU targets 40 %, 45 %, ..., 95 % (the family), and Helios through the project's ScaledObject.
'equal-cost HPA' is the family's short minutes read at Helios' replica-hours (the best target within that
budget, interpolated; 'out of range' when Helios spends less than the 95 % target or more than the 40 %
one). Class: 'calm' = the shared EC2/RDS CPU series; otherwise 'periodic' when the demand one day apart
correlates >= {acf} (column 'daily acf'), else 'bursty'. 'HPA short at jumps' = the default HPA's short
minutes in steps whose demand is > {jump}x the previous step's; 'beyond max' = minutes whose demand exceeds
10 replicas x 0.8 (nobody avoids them). 'met' = Helios short no longer than the equal-cost HPA plus one
step, and no more scaling actions than the default HPA."""
#: Synthetic strongly daily request counts (`pipeline.simulate.daily_trace`): name -> (days, step seconds).
DAILY: dict[str, tuple[float, int]] = {"daily_counts": (14, 300), "daily_counts_30m": (28, 1800)}
#: Steps the shared 5-minute series are also replayed at.
RESAMPLED = (60, 1800)


def daily_acf(demand: np.ndarray, step: int) -> float:
    """Correlation of the demand with itself one day later (nan under two days)."""
    lag = 86400 // step
    if len(demand) < 2 * lag or lag < 1:
        return math.nan
    a, b = demand[:-lag], demand[lag:]
    if a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def run_replay(job: tuple[str, str, int]) -> tuple[dict[str, Any], Any]:
    """One replay of the benchmark: its row's figures, and the simulation's whole result."""
    from pipeline import simulate as sim

    name, path, step = job
    started = time.time()
    if name in DAILY:
        trace, kind = sim.daily_trace(*DAILY[name]), "count"
    elif name in SYNTHETIC:
        days, own, seed, at, length = SYNTHETIC[name]
        trace = sim.saleor_trace(days, own, seed, incident_at=at, incident_length=length)
        kind = "count"
    else:
        trace = sim.load_trace(Path(path))
        kind = sim.trace_kind(Path(path), trace["value"].to_numpy())
        if step:
            trace = sim.resample(trace, step)
    demand = sim.demand_cores(trace["value"].to_numpy(), kind, 4, 0.70)
    result = sim.simulate(trace, demand)
    s = result.summary()
    step_seconds = int(s["config"]["trace_step_seconds"])
    steps = result.steps
    jump = steps["demand"] > JUMP * steps["demand"].shift(1)
    return {
        "name": name,
        "step": step_seconds,
        "kind": kind,
        "summary": s,
        "acf": daily_acf(demand, step_seconds),
        "beyond_min": float((steps["demand"] > 10 * 0.8).sum() * step_seconds / 60),
        "hpa_jump_min": float(steps.loc[jump, "hpa_under_seconds"].sum() / 60),
        "seconds": time.time() - started,
    }, result


def one(job: tuple[str, str, int]) -> dict[str, Any]:
    return run_replay(job)[0]


def all_jobs(shared: Path) -> list[tuple[str, str, int]]:
    """Every replay of the benchmark: (name, path, step seconds; 0: the trace's own)."""
    data = shared / "nab" / "data"
    cloudwatch = sorted((data / "realAWSCloudwatch").glob("*.csv"))
    jobs = [(p.stem, str(p), 0) for p in cloudwatch]
    jobs += [(p.stem, str(p), step) for step in RESAMPLED for p in cloudwatch]
    jobs += [(p.stem, str(p), 0) for p in sorted((data / "realAdExchange").glob("*.csv"))]
    jobs += [(name, "", 0) for name in [*SYNTHETIC, *DAILY]]
    return jobs


def trace_class(r: dict[str, Any]) -> str:
    from pipeline import simulate as sim

    if r["name"].startswith(sim.CALM_TRACES):
        return "calm"
    return "periodic" if r["acf"] >= PERIODIC_ACF else "bursty"


def meets_equal_cost_targets(summary: dict[str, Any]) -> bool:
    """The per-trace targets: Helios short no longer than the equal-cost HPA plus one step, and no more
    scaling actions than the default HPA."""
    h, k, eq = summary["hpa"], summary["helios"], summary["equal_cost"]
    slack = summary["config"]["trace_step_seconds"] / 60
    return bool(
        k["under_provisioned_minutes"] <= eq["hpa_under_provisioned_minutes"] + slack
        and k["scaling_actions"] <= h["scaling_actions"]
    )


def row(r: dict[str, Any]) -> tuple[str, bool | None]:
    """A table row and whether the trace meets the per-trace targets (None: nobody is ever short)."""
    s = r["summary"]
    h, k, eq = s["hpa"], s["helios"], s["equal_cost"]
    hs, ks, es = (
        h["under_provisioned_minutes"],
        k["under_provisioned_minutes"],
        eq["hpa_under_provisioned_minutes"],
    )
    ok = meets_equal_cost_targets(s)
    never = not (hs or ks or es)
    default_ratio = f"{ks / hs:.2f}" if hs else "n/a"
    eq_ratio = "n/a" if eq["ratio"] is None else f"{eq['ratio']:.2f}"
    rng = "" if eq["within_range"] else " (out of range)"
    acf = "" if math.isnan(r["acf"]) else f"{r['acf']:.2f}"
    verdict = "n/a (never short)" if never else ("yes" if ok else "no")
    return (
        f"| {r['name']} | {r['step'] // 60} | {trace_class(r)} | {acf} | {hs:.1f} "
        f"| {h['replica_hours']:.1f} | {h['scaling_actions']} | {ks:.1f} | {k['replica_hours']:.1f} "
        f"| {k['scaling_actions']} | {default_ratio} | {k['replica_hours'] / h['replica_hours']:.3f} "
        f"| {es:.1f}{rng} | {eq_ratio} | {r['hpa_jump_min']:.0f} | {r['beyond_min']:.0f} | {verdict} |",
        None if never else ok,
    )


def pooled(results: list[dict[str, Any]]) -> list[str]:
    """Pooled ratios per step size and class: Helios' short minutes over the equal-cost family's, and over
    the default HPA's with the replica-hour ratio."""
    lines = []
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for r in results:
        step = r["step"] // 60
        for cls in (trace_class(r), "periodic + bursty" if trace_class(r) != "calm" else None, "all"):
            if cls is not None:
                groups.setdefault((step, cls), []).append(r)
                groups.setdefault((math.inf, cls), []).append(r)
    order = {"calm": 0, "periodic": 1, "bursty": 2, "periodic + bursty": 3, "all": 4}
    for (step, cls), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        label = "every step" if step == math.inf else f"{step:.0f} min"
        ks = sum(r["summary"]["helios"]["under_provisioned_minutes"] for r in rs)
        es = sum(r["summary"]["equal_cost"]["hpa_under_provisioned_minutes"] for r in rs)
        hs = sum(r["summary"]["hpa"]["under_provisioned_minutes"] for r in rs)
        krh = sum(r["summary"]["helios"]["replica_hours"] for r in rs)
        hrh = sum(r["summary"]["hpa"]["replica_hours"] for r in rs)
        ka = sum(r["summary"]["helios"]["scaling_actions"] for r in rs)
        ha = sum(r["summary"]["hpa"]["scaling_actions"] for r in rs)
        eq = f"{ks / es:.2f}" if es else "n/a"
        dflt = f"{ks / hs:.2f}" if hs else "n/a"
        lines.append(
            f"| {label} | {cls} | {len(rs)} | {ks:.0f} | {es:.0f} | **{eq}** | {hs:.0f} | {dflt} "
            f"| {krh / hrh:.3f} | {ka / ha if ha else float('nan'):.2f} |"
        )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench-simulate", description=__doc__)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "simulate-results.md")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="", help="replay only traces whose name contains this (a quick look)")
    args = ap.parse_args()
    jobs = [j for j in all_jobs(args.shared) if args.only in j[0]]
    # Longest first, so the two workers finish together.
    jobs.sort(key=lambda j: 0 if j[2] == 60 or j[0].startswith("exchange") else 1)
    started = time.time()
    results = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for r in pool.map(one, jobs):
            results.append(r)
            print(row(r)[0], f"{r['seconds']:.0f} s", flush=True)
    results.sort(key=lambda r: (r["step"], r["name"]))
    rows, verdicts = zip(*(row(r) for r in results), strict=True)
    counted = [v for v in verdicts if v is not None]
    text = "\n".join(
        [
            "# `helios simulate` results (generated by `scripts/bench-simulate`)",
            "",
            f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {time.time() - started:.0f} s "
            f"({args.jobs} processes). Set-up and method: `benchmarks/simulate.md`.",
            "",
            METHOD.format(acf=PERIODIC_ACF, jump=JUMP),
            "",
            "| trace | step (min) | class | daily acf | HPA 70 % short min | RH | actions | Helios short min "
            "| RH | actions | ÷ HPA 70 % | RH ratio | equal-cost HPA short min | **Helios ÷ equal-cost** "
            "| HPA short at jumps | beyond max | met |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            *rows,
            "",
            f"**Per-trace targets met on {sum(counted)} of the {len(counted)} replays where anyone is ever "
            "short.**",
            "",
            "Pooled (sums over the traces of each group):",
            "",
            "| step | class | traces | Helios short min | equal-cost HPA short min | Helios ÷ equal-cost "
            "| HPA 70 % short min | Helios ÷ HPA 70 % | RH ÷ HPA 70 % | actions ÷ HPA 70 % |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *pooled(results),
            "",
        ]
    )
    args.out.write_text(text)
    print(f"met {sum(counted)}/{len(counted)}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
