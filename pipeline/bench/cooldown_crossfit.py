"""Choose ``HELIOS_COOLDOWN_SECONDS`` by cross-fitting: replay two halves of a panel of shared 5-min traces
through `helios simulate` at each candidate cooldown, pick the candidate that meets the per-trace targets
(short no longer than the equal-cost HPA plus one step, no more actions than the default HPA) on most
traces of one half (ties: the lower pooled ratio to the equal-cost HPA), and score it on the other half.

Usage: scripts/cooldown-crossfit [--shared DIR] [--cooldowns 300,600,900] [--jobs N]
(24 replays, about 6 min with 2 processes)."""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: The two halves: chosen before the first run, each with a calm CPU series, a bursty disk series and
#: a periodic one, so that neither half is all one kind.
HALVES: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("ec2_cpu_utilization_77c1ca", "ec2_disk_write_bytes_1ef3de", "saleor", "ec2_cpu_utilization_fe7f93"),
    (
        "ec2_disk_write_bytes_c0d644",
        "ec2_network_in_5abac7",
        "grok_asg_anomaly",
        "ec2_cpu_utilization_ac20cd",
    ),
)


def one(job: tuple[str, str, float]) -> dict[str, Any]:
    from pipeline import simulate as sim
    from pipeline.bench.simulate_results import meets_equal_cost_targets

    shared, name, cooldown = job
    if name == "saleor":
        trace, kind = sim.saleor_trace(14, 300, 7), "count"
    else:
        path = Path(shared) / f"{name}.csv"
        trace = sim.load_trace(path)
        kind = sim.trace_kind(path, trace["value"].to_numpy())
    demand = sim.demand_cores(trace["value"].to_numpy(), kind, 4, 0.70)
    so = sim.ScaledObjectSpec.from_manifest()
    helios = sim.make_helios(300, 60.0, 0.8, so.max_replicas, {"HELIOS_COOLDOWN_SECONDS": str(cooldown)})
    s = sim.simulate(trace, demand, scaled_object=so, helios=helios).summary()
    h, k, eq = s["hpa"], s["helios"], s["equal_cost"]
    met = meets_equal_cost_targets(s)
    return {
        "name": name,
        "cooldown": cooldown,
        "met": met,
        "short": k["under_provisioned_minutes"],
        "eq": eq["hpa_under_provisioned_minutes"],
        "actions": k["scaling_actions"],
        "hpa_actions": h["scaling_actions"],
        "rh": k["replica_hours"] / h["replica_hours"],
    }


def score(rows: list[dict[str, Any]], names: tuple[str, ...], cooldown: float) -> tuple[int, float]:
    """Traces meeting both targets, and the pooled ratio to the equal-cost HPA, on ``names``."""
    mine = [r for r in rows if r["name"] in names and r["cooldown"] == cooldown]
    eq = sum(r["eq"] for r in mine)
    return sum(r["met"] for r in mine), (sum(r["short"] for r in mine) / eq if eq else 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cooldown-crossfit", description=__doc__)
    parser.add_argument(
        "--shared", default=str(REPO.parent / "shared" / "nab" / "data" / "realAWSCloudwatch")
    )
    parser.add_argument("--cooldowns", default="300,600,900")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    cooldowns = [float(c) for c in args.cooldowns.split(",")]
    jobs = [(args.shared, n, c) for c in cooldowns for half in HALVES for n in half]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(one, jobs))
    print(
        "| cooldown s | trace | met | Helios short min | equal-cost HPA | actions | HPA actions | RH ratio |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['cooldown']:.0f} | {r['name']} | {'yes' if r['met'] else 'no'} | {r['short']:.1f} | "
            f"{r['eq']:.1f} | {r['actions']} | {r['hpa_actions']} | {r['rh']:.3f} |"
        )
    print()
    for chosen_on, scored_on in ((0, 1), (1, 0)):
        best = max(
            cooldowns,
            key=lambda c: (score(rows, HALVES[chosen_on], c)[0], -score(rows, HALVES[chosen_on], c)[1]),
        )
        met_in, ratio_in = score(rows, HALVES[chosen_on], best)
        met_out, ratio_out = score(rows, HALVES[scored_on], best)
        base_out = score(rows, HALVES[scored_on], cooldowns[0])
        print(
            f"chosen on half {chosen_on + 1}: {best:.0f} s, in-sample {met_in}/{len(HALVES[chosen_on])} met "
            f"(ratio {ratio_in:.3f}); held-out half {scored_on + 1}: {met_out}/{len(HALVES[scored_on])} met "
            f"(ratio {ratio_out:.3f}; at {cooldowns[0]:.0f} s: {base_out[0]} met, ratio {base_out[1]:.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
