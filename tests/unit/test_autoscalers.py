"""The HPA and KEDA simulators against the Kubernetes semantics they model."""

from __future__ import annotations

import math

import pytest

from models.autoscalers import (
    HorizontalPodAutoscaler,
    HPASimulator,
    KEDASimulator,
    Pods,
    average_value_replicas,
    cpu_replicas,
)


@pytest.mark.parametrize("demand", [0.3, 1.0, 2.2, 2.9, 3.3, 5.0, 7.7])
@pytest.mark.parametrize("ready", [1, 2, 4, 6])
def test_cpu_replicas_is_the_documented_formula_outside_the_tolerance(demand: float, ready: int) -> None:
    target, capacity = 0.7, 1.0
    ratio = demand / ready / capacity / target
    got = cpu_replicas(demand, ready, ready, capacity, target, tolerance=0.1)
    if abs(ratio - 1) <= 0.1:
        assert got == ready
    else:
        # kube: ceil(usageRatio * readyPods), written independently of the code under test
        assert got == max(1, math.ceil(ratio * ready - 1e-9))


def test_cpu_replicas_counts_starting_pods_as_idle_on_scale_up() -> None:
    # 4 ready pods at 100 %, 2 starting: 4 / 6 = 0.67 of the limit, 0.95 of the target: within tolerance
    assert cpu_replicas(4.0, ready=4, spec=6, capacity=1.0, target=0.7) == 6
    # with more demand the recomputed ratio still asks for more, over all six pods
    assert cpu_replicas(6.0, ready=4, spec=6, capacity=1.0, target=0.7) == math.ceil(6.0 / 0.7)


def test_average_value_replicas() -> None:
    assert average_value_replicas(7.0, 1.0, spec=3) == 7
    assert average_value_replicas(2.0, 1.0, spec=3) == 2
    assert average_value_replicas(10.5, 1.0, spec=10) == 10  # 1.05 within tolerance
    with pytest.raises(ValueError, match="threshold"):
        average_value_replicas(1.0, 0.0, spec=1)


def test_pods_become_ready_after_startup_and_scale_down_drops_starting_pods_first() -> None:
    pods = Pods(startup_seconds=60.0, initial=2)
    pods.scale_to(5, now=100.0)
    assert (pods.spec, pods.ready(159.0), pods.ready(160.0)) == (5, 2, 5)
    pods.scale_to(5, now=120.0)
    pods.scale_to(3, now=130.0)
    assert (pods.spec, pods.ready(131.0)) == (3, 2)
    with pytest.raises(ValueError, match="startup_seconds"):
        Pods(startup_seconds=-1.0)


def test_downscale_stabilisation_keeps_the_highest_recommendation_of_the_window() -> None:
    hpa = HorizontalPodAutoscaler(downscale_stabilization_seconds=300.0)
    assert hpa.decide(0.0, current=2, proposals=[5]) == 5
    assert hpa.decide(100.0, current=5, proposals=[3]) == 5
    assert hpa.decide(250.0, current=5, proposals=[1]) == 5
    # at 301 s the 5 has left the window; 3 (t=100) is the highest left
    assert hpa.decide(301.0, current=5, proposals=[1]) == 3
    assert hpa.decide(401.0, current=3, proposals=[1]) == 1


def test_scale_up_rate_limit_and_bounds() -> None:
    hpa = HorizontalPodAutoscaler(min_replicas=2, max_replicas=30)
    assert hpa.decide(0.0, current=2, proposals=[40]) == 6  # max(2 * 2, 2 + 4)
    assert hpa.decide(15.0, current=10, proposals=[40]) == 20  # max(10 * 2, 10 + 4)
    assert hpa.decide(30.0, current=20, proposals=[40]) == 30
    assert HorizontalPodAutoscaler(min_replicas=2).decide(0.0, current=2, proposals=[1]) == 2
    with pytest.raises(ValueError, match="max_replicas"):
        HorizontalPodAutoscaler(min_replicas=3, max_replicas=2)


def test_hpa_simulator_reacts_one_sync_then_one_startup_later() -> None:
    sim = HPASimulator(target=0.7, startup_seconds=60.0, sync_seconds=15.0, initial_replicas=2)
    ready = []
    for t in range(0, 120, 5):
        demand = 1.0 if t < 20 else 3.0  # jump between syncs at 0 and 15 s: seen at 30 s
        ready.append((t, sim.step(float(t), demand).ready))
    first_ready = next(t for t, r in ready if r > 2)
    assert first_ready == 30 + 60
    assert sim.pods.spec == math.ceil(3.0 / 0.7)
    assert sim.actions == 1


def test_keda_reads_the_metric_only_when_polling_and_takes_the_max_with_the_cpu_floor() -> None:
    sim = KEDASimulator(polling_seconds=30.0, floor_target=0.8, initial_replicas=2, startup_seconds=0.0)
    # without a Helios value the CPU trigger alone acts: 0.5 cores at 80 % need one pod
    assert sim.step(0.0, demand=0.5, recommended=None).spec == 1
    sim2 = KEDASimulator(
        polling_seconds=30.0, floor_target=0.8, initial_replicas=2, startup_seconds=0.0, max_replicas=20
    )
    sim2.step(0.0, demand=0.5, recommended=6)
    assert sim2.pods.spec == 6
    sim2.step(15.0, demand=0.5, recommended=9)  # not polled yet
    assert sim2.pods.spec == 6 and sim2.metric_value == 6
    sim2.step(30.0, demand=0.5, recommended=9)
    assert sim2.pods.spec == 9
    # the CPU trigger wins when it asks for more than Helios
    sim2.step(45.0, demand=9.0, recommended=9)
    assert sim2.pods.spec == math.ceil(9.0 / 0.8)


def test_keda_shadow_mode_ignores_helios() -> None:
    sim = KEDASimulator(floor_target=0.7, shadow=True, initial_replicas=2, startup_seconds=0.0)
    sim.step(0.0, demand=1.2, recommended=8)
    assert sim.pods.spec == 2  # 1.2 / 2 = 0.6 of the limit, 0.86 of target: within tolerance
    sim.step(15.0, demand=3.0, recommended=8)
    assert sim.pods.spec == math.ceil(3.0 / 0.7)


def test_simulators_reject_bad_settings() -> None:
    with pytest.raises(ValueError, match="target"):
        HPASimulator(target=0.0)
    with pytest.raises(ValueError, match="initial_replicas"):
        HPASimulator(initial_replicas=20)
    with pytest.raises(ValueError, match="polling_seconds"):
        KEDASimulator(polling_seconds=0.0)


def test_behavior_policies_limit_each_period_from_its_start() -> None:
    # scaleUp Pods 4 per 30 s: +4, then nothing more until the first move leaves the period
    hpa = HorizontalPodAutoscaler(max_replicas=30, scale_up_policies=[("Pods", 4, 30)])
    assert hpa.decide(0.0, current=1, proposals=[20]) == 5
    assert hpa.decide(15.0, current=5, proposals=[20]) == 5
    assert hpa.decide(31.0, current=5, proposals=[20]) == 9
    # scaleDown Percent 50 per 60 s (no stabilisation): halves, then waits for the period
    down = HorizontalPodAutoscaler(
        downscale_stabilization_seconds=0, scale_down_policies=[("Percent", 50, 60)]
    )
    assert down.decide(0.0, current=8, proposals=[1]) == 4
    assert down.decide(30.0, current=4, proposals=[1]) == 4
    assert down.decide(61.0, current=4, proposals=[1]) == 2
    with pytest.raises(ValueError, match="scale_down_policies"):
        HorizontalPodAutoscaler(scale_down_policies=[("Bytes", 1, 60)])
