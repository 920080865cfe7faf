"""The classification of scaling actions (`pipeline.bench.simulate_actions`) on synthetic replays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import simulate as sim
from pipeline.bench import simulate_actions as sa


def _trace(values: list[float], step: int) -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame(
        {"timestamp": [start + pd.Timedelta(seconds=step * i) for i in range(len(values))], "value": values}
    )


def test_a_down_move_split_after_a_saturated_step_is_told_from_a_descent() -> None:
    starts = np.array([0.0, 1800.0, 3600.0, 5400.0])
    demand = np.array([2.5, 0.1, 0.1, 0.1])
    ready = {"helios": np.array([1, 4, 1, 1])}
    # Up to 4 at the burst; 4 -> 2 -> 1 thirty seconds apart after it; then 1 -> ... nothing.
    changes = [("helios", 0.0, 1, 4), ("helios", 2085.0, 4, 2), ("helios", 2115.0, 2, 1)]
    counts = sa.classify_changes(changes, starts, demand, ready)["helios"]
    assert counts == {"move": 2, "split_saturated": 1}
    # The same fall over two steps is a descent, not a split.
    later = [("helios", 0.0, 1, 4), ("helios", 2085.0, 4, 2), ("helios", 3900.0, 2, 1)]
    assert sa.classify_changes(later, starts, demand, ready)["helios"] == {"move": 2, "descent": 1}


def test_one_step_bursts_at_30_min_cost_helios_one_split_per_burst_from_idle() -> None:
    # Idle load with one-step bursts of 1.5-3 cores on 6 % of the steps: both workloads sit at 1 pod, so
    # every burst saturates it. The CPU trigger takes the count up at once while Helios publishes its
    # floor from the capped reading; after the burst that value, read one poll later, goes one poll
    # after the CPU trigger's: Helios' extra actions over the HPA are those splits.
    rng = np.random.default_rng(5)
    n = 7 * 48
    demand = 0.05 * np.exp(rng.normal(0, 0.3, n))
    on = rng.random(n) < 0.06
    demand[on] = rng.uniform(1.5, 3.0, int(on.sum()))
    res = sim.simulate(_trace(list(demand), 1800), demand, sweep=())
    steps = res.steps
    assert sum(1 for c in res.changes if c[0] == "hpa") == res.hpa.actions
    assert sum(1 for c in res.changes if c[0] == "helios") == res.helios.actions
    starts = pd.to_datetime(steps["timestamp"]).map(lambda x: x.timestamp()).to_numpy(dtype=float)
    ready = {"hpa": steps["hpa_replicas"].to_numpy(), "helios": steps["helios_replicas"].to_numpy()}
    counts = sa.classify_changes(res.changes, starts, steps["demand"].to_numpy(), ready)
    h, k = counts["hpa"], counts["helios"]
    assert res.helios.actions > res.hpa.actions
    assert h["split_saturated"] == 0
    assert k["split_saturated"] >= int(on.sum()) // 2
    assert res.helios.actions - k["split_saturated"] - k["descent"] <= res.hpa.actions
    assert res.helios.under_seconds <= res.hpa.under_seconds


def test_the_report_counts_helios_without_its_saturated_splits() -> None:
    from collections import Counter

    summary = {
        who: {"under_provisioned_minutes": 3.0, "replica_hours": 10.0, "scaling_actions": n}
        for who, n in (("hpa", 4), ("helios", 7))
    }
    counts = {"hpa": Counter(move=4), "helios": Counter(move=4, split_saturated=2, descent=1)}
    lines = sa.report([{"name": "x", "step": 1800, "summary": summary, "counts": counts}])
    row = lines[2].split(" | ")
    assert row[4:6] == ["4", "7"]
    assert row[-1] == "5 |"
    assert lines[-1].startswith("| **all** |") and lines[-1].endswith("| 5 |")
