"""The metrics bundle: the exported names are the contract the dashboards, rules and KEDA use."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from pipeline.metrics import HeliosMetrics
from pipeline.records import (
    AnomalyRecord,
    Band,
    FeatureContribution,
    ForecastRecord,
    HorizonForecast,
    Metrics,
    RecommendationItem,
    RecommendationRecord,
)

REPO = Path(__file__).resolve().parents[2]


def generate_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("grafana_generate", REPO / "grafana" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outputs(dep: str) -> tuple[ForecastRecord, AnomalyRecord, RecommendationRecord]:
    band = Band(point=0.5, lower=0.4, upper=0.6)
    fc = ForecastRecord(
        namespace="ns", deployment=dep, timestamp=0, model="baseline", level=0.9,
        observed=Metrics(cpu_utilization=0.5, memory_utilization=0.4, db_connections=3),
        horizons=[
            HorizonForecast(
                horizon="5m", seconds=300, timestamp=300, cpu_utilization=band, memory_utilization=band
            )
        ],
    )  # fmt: skip
    an = AnomalyRecord(
        namespace="ns", deployment=dep, timestamp=0, anomaly_score=3.0, is_anomaly=True, threshold=2.5,
        severity="warning",
        contributing_features=[FeatureContribution(feature="cpu_utilization", contribution=3.0)],
    )  # fmt: skip
    rec = RecommendationRecord(
        namespace="ns", deployment=dep, timestamp=0, current_replicas=2, recommended_replicas=3,
        recommendations=[RecommendationItem(type="scaling", action="scale_up", target_replicas=3, reason="r",
                                            confidence=0.9, urgency="low")], summary="",
    )  # fmt: skip
    return fc, an, rec


def exported_names(registry: CollectorRegistry) -> set[str]:
    return {s.name for family in registry.collect() for s in family.samples}


def test_every_exported_name_is_in_the_dashboards_contract_and_back() -> None:
    registry = CollectorRegistry()
    metrics = HeliosMetrics.create(registry, clock=lambda: 10.0)
    metrics.observe(*outputs("api"), accuracy={"cpu_utilization": {"5m": (0.1, 0.9)}}, now=5.0)
    metrics.inference_duration.labels("stream").observe(0.001)
    metrics.model_info.labels("xgboost", "1.1.0").set(1)
    names = exported_names(registry) - {n for n in exported_names(registry) if n.endswith("_created")}
    contract = generate_module().EXPORTED_METRICS - {"up"}
    assert names == contract


def test_forget_removes_every_series_of_one_deployment_only() -> None:
    registry = CollectorRegistry()
    metrics = HeliosMetrics.create(registry, clock=lambda: 10.0)
    metrics.observe(*outputs("api"), accuracy={}, now=5.0)
    metrics.observe(*outputs("web"), accuracy={}, now=5.0)
    metrics.forget("ns", "api")
    for family in registry.collect():
        for s in family.samples:
            assert s.labels.get("deployment") != "api", s
    assert (
        registry.get_sample_value("helios_anomaly_severity", {"namespace": "ns", "deployment": "web"}) == 1.0
    )
    assert (
        registry.get_sample_value("helios_prediction_age_seconds", {"namespace": "ns", "deployment": "web"})
        == 5.0
    )


def test_counters_exist_at_zero_before_the_first_event() -> None:
    registry = CollectorRegistry()
    HeliosMetrics.create(registry)
    assert registry.get_sample_value("helios_model_reload_failures_total", {"model": "xgboost"}) == 0.0
    assert registry.get_sample_value("helios_dead_letters_total", {"reason": "not_json"}) == 0.0
    assert registry.get_sample_value("helios_samples_total", {"outcome": "replayed"}) == 0.0


def test_a_name_the_per_deployment_collector_exports_cannot_be_registered_twice() -> None:
    # The custom collector describes its families, so the registry's duplicate check sees them too.
    registry = CollectorRegistry()
    Gauge("helios_anomaly_score", "another owner of the name", registry=registry)
    with pytest.raises(ValueError, match=r"Duplicated timeseries in CollectorRegistry.*helios_anomaly_score"):
        HeliosMetrics.create(registry)


def test_a_second_bundle_on_one_registry_fails_on_a_collector_family() -> None:
    registry = CollectorRegistry()
    HeliosMetrics.create(registry)
    # The collector is registered first, so the clash is found on its families.
    with pytest.raises(ValueError, match=r"Duplicated timeseries.*helios_prediction_age_seconds"):
        HeliosMetrics.create(registry)
