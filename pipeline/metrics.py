"""Helios' Prometheus metrics: one bundle built against an injected registry.

Label sets follow ownership: :meth:`HeliosMetrics.forget` removes every series of a deployment
when its partition moves to another worker or when it has been silent for ``HELIOS_STALE_AFTER``,
so no worker exports a number it no longer owns and KEDA never acts on a frozen value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.records import AnomalyRecord, ForecastRecord, RecommendationRecord

DeploymentKey = tuple[str, str]
DL = ("namespace", "deployment")

#: Inference latency buckets in seconds: sub-millisecond model calls up to slow HTTP requests.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_PREDICTED = {"cpu_utilization": "cpu", "memory_utilization": "memory"}

SEVERITY_LEVEL = {"normal": 0, "warning": 1, "critical": 2}

#: Counter children created at 0, so rate() and increase() see the first event (a counter that
#: first appears at 1 has no increase), and dashboards have a series before anything went wrong.
OUTCOMES = ("processed", "dead_lettered", "replayed", "recovered", "lost")
DLQ_REASONS = (
    "empty", "not_json", "schema", "key_mismatch", "no_metrics", "future", "too_old",
    "too_late", "duplicate", "deployment_cap", "internal_error",
)  # fmt: skip


class _AgeCollector(Collector):
    """``helios_prediction_age_seconds``, computed at scrape time from the last prediction's time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.last: dict[DeploymentKey, float] = {}

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "helios_prediction_age_seconds",
            "Seconds since this worker last published a prediction for the deployment",
            labels=list(DL),
        )
        now = self.clock()
        for (ns, dep), at in list(self.last.items()):
            family.add_metric([ns, dep], max(0.0, now - at))
        yield family


@dataclass
class HeliosMetrics:
    """Every metric Helios exports. Build it with :meth:`create`."""

    registry: CollectorRegistry
    predicted: dict[str, tuple[Gauge, Gauge, Gauge]]
    observed_cpu: Gauge
    observed_memory: Gauge
    observed_feature: Gauge
    anomaly_score: Gauge
    anomaly_detected: Gauge
    anomaly_severity: Gauge
    anomaly_threshold: Gauge
    anomaly_contribution: Gauge
    recommended_replicas: Gauge
    current_replicas: Gauge
    recommendations: Counter
    forecast_abs_error: Gauge
    forecast_coverage: Gauge
    forecast_level: Gauge
    inference_duration: Histogram
    samples: Counter
    dead_letters: Counter
    tracked_deployments: Gauge
    model_reload_failures: Counter
    model_info: Gauge
    ready: Gauge
    ages: _AgeCollector
    _labelled: list[Gauge | Counter] = field(default_factory=list)

    @classmethod
    def create(cls, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> HeliosMetrics:
        def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(name, doc, list(labels), registry=registry)

        hl = (*DL, "horizon")
        predicted = {
            feature: (
                gauge(f"helios_predicted_{short}", f"Predicted {feature} (point forecast)", hl),
                gauge(f"helios_predicted_{short}_lower", f"Lower end of the {feature} prediction band", hl),
                gauge(f"helios_predicted_{short}_upper", f"Upper end of the {feature} prediction band", hl),
            )
            for feature, short in _PREDICTED.items()
        }
        ages = _AgeCollector(clock)
        registry.register(ages)
        m = cls(
            registry=registry,
            predicted=predicted,
            observed_cpu=gauge(
                "helios_observed_cpu", "Observed CPU utilization of the limit (window mean)", DL
            ),
            observed_memory=gauge("helios_observed_memory", "Observed memory utilization of the limit", DL),
            observed_feature=gauge(
                "helios_observed_feature", "Observed value of each feature", (*DL, "feature")
            ),
            anomaly_score=gauge("helios_anomaly_score", "Current anomaly score in sigma units", DL),
            anomaly_detected=gauge("helios_anomaly_detected", "Whether an anomaly is detected (0/1)", DL),
            anomaly_severity=gauge(
                "helios_anomaly_severity",
                "Declared severity (0 normal, 1 warning, 2 critical), held for HELIOS_ANOMALY_HOLD",
                DL,
            ),
            anomaly_threshold=gauge("helios_anomaly_threshold", "Anomaly threshold in sigma units"),
            anomaly_contribution=gauge(
                "helios_anomaly_contribution", "Share of the anomaly score by feature", (*DL, "feature")
            ),
            recommended_replicas=gauge("helios_recommended_replicas", "Recommended replica count", DL),
            current_replicas=gauge("helios_current_replicas", "Replica count the last sample reported", DL),
            recommendations=Counter(
                "helios_recommendations",
                "Recommendations published, by action",
                [*DL, "action"],
                registry=registry,
            ),
            forecast_abs_error=gauge(
                "helios_forecast_abs_error",
                "Rolling mean absolute error of the forecast",
                (*DL, "feature", "horizon"),
            ),
            forecast_coverage=gauge(
                "helios_forecast_coverage",
                "Rolling share of outcomes inside the prediction band",
                (*DL, "feature", "horizon"),
            ),
            forecast_level=gauge(
                "helios_forecast_interval_level", "Nominal coverage of the prediction bands"
            ),
            inference_duration=Histogram(
                "helios_inference_duration_seconds",
                "Inference latency",
                ["endpoint"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            samples=Counter(
                "helios_samples", "Samples read from the metrics topic", ["outcome"], registry=registry
            ),
            dead_letters=Counter(
                "helios_dead_letters", "Records sent to the dead-letter topic", ["reason"], registry=registry
            ),
            tracked_deployments=gauge(
                "helios_tracked_deployments", "Deployments whose state this worker holds"
            ),
            model_reload_failures=Counter(
                "helios_model_reload_failures",
                "Model artifacts rejected on (re)load",
                ["model"],
                registry=registry,
            ),
            model_info=gauge("helios_model_info", "Loaded model versions (value 1)", ("name", "version")),
            ready=gauge("helios_ready", "Whether the worker is ready (0/1)"),
            ages=ages,
        )
        for outcome in OUTCOMES:
            m.samples.labels(outcome)
        for reason in DLQ_REASONS:
            m.dead_letters.labels(reason)
        m.model_reload_failures.labels("xgboost")
        m._labelled = [
            *(g for trio in predicted.values() for g in trio),
            m.observed_cpu,
            m.observed_memory,
            m.observed_feature,
            m.anomaly_score,
            m.anomaly_detected,
            m.anomaly_severity,
            m.anomaly_contribution,
            m.recommended_replicas,
            m.current_replicas,
            m.recommendations,
            m.forecast_abs_error,
            m.forecast_coverage,
        ]
        return m

    def observe(
        self,
        forecast: ForecastRecord,
        anomaly: AnomalyRecord,
        recommendation: RecommendationRecord,
        accuracy: dict[str, dict[str, tuple[float, float]]],
        now: float,
    ) -> None:
        """Publish one deployment's latest stage outputs.

        ``accuracy`` is feature -> horizon label -> (rolling mean abs error, rolling coverage).
        """
        ns, dep = forecast.namespace, forecast.deployment
        for h in forecast.horizons:
            for feature, (point, lower, upper) in self.predicted.items():
                band = getattr(h, feature)
                if band is not None:
                    point.labels(ns, dep, h.horizon).set(band.point)
                    lower.labels(ns, dep, h.horizon).set(band.lower)
                    upper.labels(ns, dep, h.horizon).set(band.upper)
        observed = forecast.observed
        if observed.cpu_utilization is not None:
            self.observed_cpu.labels(ns, dep).set(observed.cpu_utilization)
        if observed.memory_utilization is not None:
            self.observed_memory.labels(ns, dep).set(observed.memory_utilization)
        for feature, value in observed.present().items():
            self.observed_feature.labels(ns, dep, feature).set(value)
        self.anomaly_score.labels(ns, dep).set(anomaly.anomaly_score)
        self.anomaly_detected.labels(ns, dep).set(1 if anomaly.is_anomaly else 0)
        self.anomaly_severity.labels(ns, dep).set(SEVERITY_LEVEL[anomaly.severity])
        for c in anomaly.contributing_features:
            self.anomaly_contribution.labels(ns, dep, c.feature).set(c.contribution)
        self.recommended_replicas.labels(ns, dep).set(recommendation.recommended_replicas)
        if recommendation.current_replicas is not None:
            self.current_replicas.labels(ns, dep).set(recommendation.current_replicas)
        for item in recommendation.recommendations:
            if item.type == "scaling":
                self.recommendations.labels(ns, dep, item.action).inc()
        for feature, per_horizon in accuracy.items():
            for horizon, (mae, coverage) in per_horizon.items():
                self.forecast_abs_error.labels(ns, dep, feature, horizon).set(mae)
                self.forecast_coverage.labels(ns, dep, feature, horizon).set(coverage)
        self.ages.last[(ns, dep)] = now

    def forget(self, namespace: str, deployment: str) -> None:
        """Remove every series of one deployment (partition moved away, or silent too long)."""
        self.ages.last.pop((namespace, deployment), None)
        for metric in self._labelled:
            # Series of one deployment share its first two label values; the rest vary.
            for labels in list(metric._metrics):
                if labels[:2] == (namespace, deployment):
                    metric.remove(*labels)

    def tracked(self) -> list[DeploymentKey]:
        return list(self.ages.last)
