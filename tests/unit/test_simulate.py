"""``helios simulate``: the demand model, the scoring, the outputs, and that it runs the stream's code."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import simulate as sim
from pipeline import stages
from pipeline.records import Metrics, MetricSample
from pipeline.settings import load_settings


def _trace(values: list[float], step: int = 300) -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame(
        {"timestamp": [start + pd.Timedelta(seconds=step * i) for i in range(len(values))], "value": values}
    )


def _fixed(n: int) -> sim.HeliosStep:
    return sim.HeliosStep(n, None, None, None, "hold", "stub")


def test_trace_kind_and_demand_model(tmp_path: Path) -> None:
    assert sim.trace_kind(Path("ec2_cpu_utilization_x.csv"), np.array([1.0, 55.0])) == "percent"
    assert sim.trace_kind(Path("rds_cpu_utilization_x.csv"), np.array([0.1, 0.5])) == "fraction"
    assert sim.trace_kind(Path("elb_request_count_x.csv"), np.array([1.0, 55.0])) == "count"
    assert sim.demand_cores(np.array([0.25, 0.5]), "fraction", 4, 0.7).tolist() == [1.0, 2.0]
    counts = np.random.default_rng(0).gamma(2.0, 30.0, size=500)
    d = sim.demand_cores(counts, "count", 6, 0.7)
    assert float(np.percentile(d, 95)) == pytest.approx(6 * 0.7)
    with pytest.raises(ValueError, match="kind"):
        sim.demand_cores(counts, "bytes", 4, 0.7)


def test_steady_demand_matching_the_replicas_is_never_under_provisioned() -> None:
    tr = _trace([50.0] * 12)
    d = sim.demand_cores(tr["value"].to_numpy(), "percent", 4, 0.7)  # 2 cores
    res = sim.simulate(tr, d, helios=lambda t, r, u: _fixed(3))
    assert res.hpa.under_seconds == 0 and res.helios.under_seconds == 0
    # HPA: ceil(2 / 0.7) = 3 pods for 12 steps of 5 min; Helios: 3 pods as well
    assert res.hpa.replica_seconds == pytest.approx(3 * 12 * 300)
    assert res.helios.replica_seconds == pytest.approx(3 * 12 * 300)
    assert res.summary()["ratios"]["under_provisioned"] == 1.0


def test_a_jump_costs_the_hpa_one_sync_plus_a_startup_and_an_oracle_nothing() -> None:
    values = [1.0] * 6 + [4.0] * 6  # cores (fraction x base 1)
    tr = _trace(values)
    d = np.asarray(values)

    def oracle(t: float, replicas: int, u: float) -> sim.HeliosStep:
        i = int((t - tr["timestamp"].iloc[0].timestamp()) // 300)
        nxt = values[min(i + 1, len(values) - 1)]
        return _fixed(math.ceil(max(values[i], nxt) / 0.8))

    res = sim.simulate(tr, d, helios=oracle, startup=60.0, publish_delay=0.0)
    # HPA sees the jump at its sync at the step start and has pods ready 60 s later: 4 ticks of 15 s short
    assert res.hpa.under_seconds == pytest.approx(60.0)
    assert res.helios.under_seconds == 0.0
    per_step = res.steps
    assert per_step["hpa_under_seconds"].sum() == pytest.approx(res.hpa.under_seconds)
    assert {
        "timestamp",
        "demand",
        "capacity_per_replica",
        "hpa_replicas",
        "helios_replicas",
        "forecast",
        "forecast_upper",
    } <= set(per_step.columns)


def test_demand_above_max_replicas_is_under_provisioned_for_both() -> None:
    tr = _trace([30.0] * 4)
    res = sim.simulate(tr, np.full(4, 30.0), helios=lambda t, r, u: _fixed(10), max_replicas=10)
    assert res.hpa.under_seconds == pytest.approx(4 * 300)
    assert res.helios.under_seconds == pytest.approx(4 * 300)


def test_shadow_mode_lets_only_the_cpu_trigger_scale() -> None:
    tr = _trace([1.0] * 8)
    res = sim.simulate(tr, np.ones(8), helios=lambda t, r, u: _fixed(9), shadow=True, publish_delay=0.0)
    assert res.steps["helios_recommended"].eq(9).all()
    assert res.steps["helios_replicas"].max() == math.ceil(1.0 / 0.7)
    assert res.helios.replica_seconds == pytest.approx(res.hpa.replica_seconds)


def _write_trace(path: Path, n: int = 72, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    level = 40 + 25 * np.sin(np.arange(n) / 10) + rng.normal(0, 3, n)
    pd.DataFrame(
        {
            "timestamp": pd.to_datetime(t0 + 300 * np.arange(n), unit="s").strftime("%Y-%m-%d %H:%M:%S"),
            "value": np.clip(level, 0, 100),
        }
    ).to_csv(path, index=False)
    return path


def test_cli_writes_csv_summary_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = _write_trace(tmp_path / "ec2_cpu_utilization_test.csv")
    parser = argparse.ArgumentParser()
    sim.add_arguments(parser)
    assert sim.run(parser.parse_args(["--trace", str(trace), "--out", str(tmp_path / "out")])) == 0
    out = tmp_path / "out"
    steps = pd.read_csv(out / "ec2_cpu_utilization_test.csv")
    assert len(steps) == 72
    summary = json.loads((out / "ec2_cpu_utilization_test.summary.json").read_text())
    assert summary["kind"] == "percent"
    assert summary["hpa"]["under_provisioned_minutes"] == pytest.approx(steps["hpa_under_seconds"].sum() / 60)
    assert (out / "ec2_cpu_utilization_test.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "ec2_cpu_utilization_test.equal-cost.png").read_bytes()[:4] == b"\x89PNG"
    assert len(summary["equal_cost"]["curve"]) == 12
    assert "under-provisioned minutes" in capsys.readouterr().out
    # forecasts were issued by the pipeline and are in cores, around the demand
    f = steps["forecast"].dropna()
    assert len(f) > 60 and float((f - steps.loc[f.index, "demand"]).abs().median()) < 1.0


def test_simulate_and_the_stream_stages_make_the_same_decisions(tmp_path: Path) -> None:
    # Imported at module level: if the stage wiring cannot be imported this file fails, it does not skip.
    trace = sim.load_trace(_write_trace(tmp_path / "ec2_cpu_utilization_same.csv", n=60))
    demand = sim.demand_cores(trace["value"].to_numpy(), "percent", 4, 0.7)
    res = sim.simulate(trace, demand)
    # Replay what the simulated workload reported through a pipeline built the way the worker builds it.
    settings = load_settings({}, HELIOS_SCORING_INTERVAL=300)
    pipe = stages.DeploymentPipeline("saleor", "saleor-api", stages.PipelineConfig.from_settings(settings))
    for (_, row), d in zip(res.steps.iterrows(), demand, strict=True):
        replicas = int(row["helios_replicas"])
        sample = MetricSample(
            namespace="saleor",
            deployment="saleor-api",
            timestamp=row["timestamp"],
            metrics=Metrics(cpu_utilization=min(1.0, d / replicas)),
            replicas=replicas,
        )
        prepared = pipe.prepare(sample)
        out = pipe.finish(prepared, None)
        assert out.recommendation.recommended_replicas == row["helios_recommended"]
        assert out.decision.action == row["helios_action"]


def _scaled_object(path: Path, cpu: str = "72", extra: str = "") -> Path:
    path.write_text(
        f"""apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: x}}
spec:
  scaleTargetRef: {{name: api}}
  minReplicaCount: 2
  maxReplicaCount: 7
  pollingInterval: 60
  cooldownPeriod: 120
{extra}  triggers:
    - type: prometheus
      metricType: AverageValue
      metadata:
        query: max(helios_recommended_replicas{{deployment="api"}})
        threshold: "1"
    - type: cpu
      metricType: Utilization
      metadata: {{value: "{cpu}"}}
"""
    )
    return path


def test_the_scaled_object_drives_the_simulated_keda(tmp_path: Path) -> None:
    so = sim.ScaledObjectSpec.from_manifest(_scaled_object(tmp_path / "so.yaml"))
    assert (so.min_replicas, so.max_replicas, so.polling_seconds) == (2, 7, 60.0)
    assert so.cpu_target == pytest.approx(0.72) and so.downscale_stabilization_seconds == 300
    tr = _trace([1.0] * 6)
    # Helios asks for 9: the manifest's maxReplicaCount 7 caps it; its minReplicaCount 2 holds the HPA
    res = sim.simulate(
        tr, np.full(6, 0.2), helios=lambda t, r, u: _fixed(9), scaled_object=so, publish_delay=0
    )
    assert res.steps["helios_replicas"].iloc[-1] == 7
    assert res.steps["hpa_replicas"].min() == 2
    assert res.config["scaled_object"]["polling_seconds"] == 60.0
    # polled every 60 s: a value published at 0 s is acted on at 0 s, one changed at 15 s only at 60 s
    calls = iter([3, 6] + [6] * 10)
    res = sim.simulate(
        tr, np.full(6, 0.2), helios=lambda t, r, u: _fixed(next(calls)), scaled_object=so, publish_delay=0
    )
    assert res.steps["helios_recommended"].tolist()[:2] == [3, 6]


def test_a_scaled_object_the_simulator_cannot_model_is_rejected(tmp_path: Path) -> None:
    bad = _scaled_object(tmp_path / "so.yaml")
    bad.write_text(bad.read_text().replace("helios_recommended_replicas", "up"))
    with pytest.raises(ValueError, match="helios_recommended_replicas"):
        sim.ScaledObjectSpec.from_manifest(bad)
    zero = _scaled_object(tmp_path / "z.yaml")
    zero.write_text(zero.read_text().replace("minReplicaCount: 2", "minReplicaCount: 0"))
    with pytest.raises(ValueError, match="minReplicaCount"):
        sim.ScaledObjectSpec.from_manifest(zero)


def test_the_cpu_trigger_catches_what_is_under_provisioned() -> None:
    # 4 pods at 85 %: under-provisioned (> 80 %). A trigger at 80 % sees 85/80 = 1.06, inside the HPA's 10 %
    # tolerance, and waits for Helios; at 72 % it acts on the next sync.
    d = np.array([2.8, 3.4, 3.4, 3.4])  # starts on ceil(2.8 / 0.7) = 4 pods
    tr = _trace(d.tolist())
    slow = sim.simulate(tr, d, helios=lambda t, r, u: _fixed(1), floor_target=0.80)
    fast = sim.simulate(tr, d, helios=lambda t, r, u: _fixed(1), floor_target=0.72)
    assert slow.helios.under_seconds == pytest.approx(3 * 300)
    assert fast.helios.under_seconds == pytest.approx(60.0)  # one start-up


def test_the_hpa_family_at_equal_cost_is_read_off_the_same_simulator(tmp_path: Path) -> None:
    trace = sim.load_trace(_write_trace(tmp_path / "ec2_cpu_utilization_eq.csv", n=120))
    demand = sim.demand_cores(trace["value"].to_numpy(), "percent", 4, 0.7)
    res = sim.simulate(trace, demand, sweep=(0.5, 0.7, 0.9))
    eq = res.summary()["equal_cost"]
    by_target = {p["target"]: p for p in eq["curve"]}
    # The family's 70 % member is the reference HPA itself.
    assert by_target[0.7]["replica_hours"] == pytest.approx(res.hpa.replica_seconds / 3600, abs=1e-3)
    assert by_target[0.7]["under_provisioned_minutes"] == pytest.approx(res.hpa.under_seconds / 60)
    assert by_target[0.7]["scaling_actions"] == res.hpa.actions
    # Less headroom costs less and is short at least as long.
    assert by_target[0.5]["replica_hours"] > by_target[0.7]["replica_hours"] > by_target[0.9]["replica_hours"]
    assert by_target[0.5]["under_provisioned_minutes"] <= by_target[0.9]["under_provisioned_minutes"]
    assert eq["replica_hours"] == pytest.approx(res.helios.replica_seconds / 3600, abs=1e-3)
    if eq["hpa_under_provisioned_minutes"]:
        assert eq["ratio"] == pytest.approx(
            eq["helios_under_provisioned_minutes"] / eq["hpa_under_provisioned_minutes"], abs=1e-3
        )
    assert "equal_cost" not in sim.simulate(trace, demand, sweep=()).summary()


def test_equal_cost_reads_the_best_of_the_family_within_the_budget() -> None:
    from pipeline.equal_cost import CurvePoint, at_equal_cost

    curve = [CurvePoint(0.4, 30.0, 0.0, 9), CurvePoint(0.7, 20.0, 60.0, 5), CurvePoint(0.95, 10.0, 100.0, 2)]
    assert at_equal_cost(curve, 15.0, 40.0)["hpa_under_provisioned_minutes"] == 80.0
    assert at_equal_cost(curve, 15.0, 40.0)["ratio"] == 0.5
    clamped = at_equal_cost(curve, 5.0, 40.0)  # cheaper than the cheapest target: its shortfall, flagged
    assert (clamped["hpa_under_provisioned_minutes"], clamped["within_range"]) == (100.0, False)
    never_short = at_equal_cost(curve, 30.0, 0.0)
    assert never_short["ratio"] == 1.0
    assert at_equal_cost(curve, 30.0, 3.0)["ratio"] is None


def test_a_bad_hpa_sweep_is_refused_naming_the_flag() -> None:
    parser = argparse.ArgumentParser()
    sim.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--hpa-sweep", "0.5,1.5"])
    assert parser.parse_args(["--out", "x", "--hpa-sweep", "0.5,0.6"]).hpa_sweep == (0.5, 0.6)


def test_helios_scales_before_each_daily_ramp_once_it_has_recurred() -> None:
    trace = sim.daily_trace(7, 1800)
    demand = sim.demand_cores(trace["value"].to_numpy(), "count", 4, 0.7)
    res = sim.simulate(trace, demand, sweep=())
    steps = res.steps
    per_day = 48
    rose = 0
    for day in range(3, 7):  # after three days the ramp has come in every one of the last three
        ramp = range(day * per_day + 16, day * per_day + 20)  # 08:00-10:00
        for i in ramp:
            need = math.ceil(round(steps.loc[i, "demand"] / 0.8, 9))
            if need > steps.loc[i - 1, "helios_replicas"]:
                rose += 1
                # Ready when the step's demand arrives: raised the step before, not after.
                assert steps.loc[i, "helios_replicas"] >= need, (day, i)
                assert steps.loc[i - 1, "helios_recommended"] >= need, (day, i)
        assert steps.loc[list(ramp), "helios_under_seconds"].sum() == 0
        assert "periodic_ramp" in set(steps.loc[[i - 1 for i in ramp], "helios_rule"])
    assert rose >= 4
    # The HPA, reacting, is short at those ramps; Helios releases the replicas after them.
    late = [i for d in range(3, 7) for i in range(d * per_day + 16, d * per_day + 20)]
    assert steps.loc[late, "hpa_under_seconds"].sum() > 0
    night = [d * per_day + 2 * 2 for d in range(4, 7)]  # 02:00, long after the evening fall
    assert (steps.loc[night, "helios_replicas"] <= steps.loc[night, "hpa_replicas"] + 1).all()


def _bursts(days: float, step: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Steady load (1.2 cores, 5 % noise) with one-step bursts of 3-5x at random, 6 % of the steps."""
    rng = np.random.default_rng(seed)
    n = int(days * 86400 // step)
    demand = 1.2 * np.exp(rng.normal(0, 0.05, n))
    on = rng.random(n) < 0.06
    demand[on] *= rng.uniform(3, 5, int(on.sum()))
    return _trace(list(demand), step), demand


def test_the_cooldown_holds_a_bursts_replicas_instead_of_asking_again() -> None:
    # Bursts that come back within a few steps: a short cooldown releases the replicas after each one
    # and asks for them again at the next, two actions per burst more than holding them.
    trace, demand = _bursts(3, 300, seed=5)
    so = sim.ScaledObjectSpec.from_manifest()

    def run(environ: dict[str, str]) -> dict[str, float]:
        helios = sim.make_helios(300, 60.0, 0.8, so.max_replicas, environ)
        summary = sim.simulate(trace, demand, scaled_object=so, helios=helios, sweep=()).summary()
        return dict(summary["helios"])

    default, short = run({}), run({"HELIOS_COOLDOWN_SECONDS": "300"})
    assert load_settings({}).cooldown_seconds > so.downscale_stabilization_seconds
    assert default["scaling_actions"] < short["scaling_actions"]
    assert default["under_provisioned_minutes"] <= short["under_provisioned_minutes"]


def test_the_scaled_object_scales_up_a_jump_as_fast_as_the_default_hpa() -> None:
    # From 1 pod's worth of load to 11 at once: the HPA's default scale-up (double or 4 pods per 15 s)
    # reaches the ten-pod maximum in two actions; a 4-pods-per-30-s limit took three, the last 30 s late.
    demand = np.array([0.5] * 12 + [7.5] * 12)
    trace = _trace(list(demand))
    so = sim.ScaledObjectSpec.from_manifest()
    tight = dataclasses.replace(so, scale_up_policies=(("Pods", 4.0, 30.0),))
    project = sim.simulate(trace, demand, scaled_object=so, sweep=()).summary()
    limited = sim.simulate(trace, demand, scaled_object=tight, sweep=()).summary()
    assert project["helios"]["scaling_actions"] < limited["helios"]["scaling_actions"]
    assert project["helios"]["under_provisioned_minutes"] < limited["helios"]["under_provisioned_minutes"]
    assert project["helios"]["under_provisioned_minutes"] <= project["hpa"]["under_provisioned_minutes"]


def test_after_a_burst_the_count_comes_down_in_one_move_at_long_steps() -> None:
    # At 30-min steps the band, per pod and widened by each burst, would walk the count down one move
    # per decision after it (4 -> 3 -> 2) where the HPA drops in one, if each scale-down were sized on
    # the count it starts from. Going straight to where that descent ends leaves few decreases of the
    # recommendation that follow another one.
    decreases = chained = 0
    for seed in (5, 6, 7):
        trace, demand = _bursts(7, 1800, seed)
        res = sim.simulate(trace, demand, sweep=())
        rec = res.steps["helios_recommended"].to_numpy()
        moves = np.sign(np.diff(rec))
        moves = moves[moves != 0]
        decreases += int((moves < 0).sum())
        chained += int(((moves[1:] < 0) & (moves[:-1] < 0)).sum())
        summary = res.summary()
        assert summary["helios"]["under_provisioned_minutes"] <= summary["hpa"]["under_provisioned_minutes"]
    assert decreases > 0
    assert chained < decreases / 4, (chained, decreases)
