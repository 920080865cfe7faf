"""Helios' Prometheus metrics: one bundle built against an injected registry.

Label sets follow ownership: :meth:`HeliosMetrics.forget` removes every series of a deployment
when its partition moves to another worker or when it has been silent for ``HELIOS_STALE_AFTER``,
so no worker exports a number it no longer owns and KEDA never acts on a frozen value.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
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


@dataclass(frozen=True, slots=True, eq=False)
class Family:
    """One per-deployment metric: its labels after ``namespace, deployment``.

    Compared and hashed by identity (the families are module constants): :meth:`DeploymentSeries.slot`
    looks one up ~60 times per sample, and a field-wise hash cost ~10 % of :meth:`HeliosMetrics.observe`.
    """

    name: str
    doc: str
    extra: tuple[str, ...] = ()
    counter: bool = False


def _predicted_families() -> dict[str, tuple[Family, Family, Family]]:
    hl = ("horizon",)
    return {
        feature: (
            Family(f"helios_predicted_{short}", f"Predicted {feature} (point forecast)", hl),
            Family(f"helios_predicted_{short}_lower", f"Lower end of the {feature} prediction band", hl),
            Family(f"helios_predicted_{short}_upper", f"Upper end of the {feature} prediction band", hl),
        )
        for feature, short in _PREDICTED.items()
    }


PREDICTED = _predicted_families()
OBSERVED_CPU = Family("helios_observed_cpu", "Observed CPU utilization of the limit (window mean)")
OBSERVED_MEMORY = Family("helios_observed_memory", "Observed memory utilization of the limit")
OBSERVED_FEATURE = Family("helios_observed_feature", "Observed value of each feature", ("feature",))
ANOMALY_SCORE = Family("helios_anomaly_score", "Current anomaly score in sigma units")
ANOMALY_DETECTED = Family("helios_anomaly_detected", "Whether an anomaly is detected (0/1)")
ANOMALY_SEVERITY = Family(
    "helios_anomaly_severity",
    "Declared severity (0 normal, 1 warning, 2 critical), held for HELIOS_ANOMALY_HOLD",
)
ANOMALY_CONTRIBUTION = Family(
    "helios_anomaly_contribution", "Share of the anomaly score by feature", ("feature",)
)
RECOMMENDED_REPLICAS = Family("helios_recommended_replicas", "Recommended replica count")
CURRENT_REPLICAS = Family("helios_current_replicas", "Replica count the last sample reported")
RECOMMENDATIONS = Family("helios_recommendations", "Recommendations published, by action", ("action",), True)
FORECAST_ABS_ERROR = Family(
    "helios_forecast_abs_error", "Rolling mean absolute error of the forecast", ("feature", "horizon")
)
FORECAST_COVERAGE = Family(
    "helios_forecast_coverage", "Rolling share of outcomes inside the prediction band", ("feature", "horizon")
)
FAMILIES = (
    *(f for trio in PREDICTED.values() for f in trio),
    OBSERVED_CPU, OBSERVED_MEMORY, OBSERVED_FEATURE,
    ANOMALY_SCORE, ANOMALY_DETECTED, ANOMALY_SEVERITY, ANOMALY_CONTRIBUTION,
    RECOMMENDED_REPLICAS, CURRENT_REPLICAS, RECOMMENDATIONS,
    FORECAST_ABS_ERROR, FORECAST_COVERAGE,
)  # fmt: skip

_NAN = float("nan")


class DeploymentSeries(Collector):
    """Every per-deployment series, kept as one ``array('d')`` per deployment and rendered at scrape time.

    A ``Gauge`` child per series is an object and a labels lookup per update, and a deployment has
    about 65 series (the figures are in benchmarks/perf.md). Here a deployment is one small array
    (NaN = never set), an update is an index store, and forgetting a deployment is one ``dict.pop``.
    ``helios_prediction_age_seconds`` is computed at scrape time from the last prediction's time.

    Examples
    --------
    >>> series = DeploymentSeries(clock=lambda: 12.0)
    >>> series.update(("ns", "api"), [(series.slot(ANOMALY_SCORE), 3.5)], now=10.0)
    >>> [(s.name, s.labels, s.value) for f in series.collect() for s in f.samples if s.value == 3.5]
    [('helios_anomaly_score', {'namespace': 'ns', 'deployment': 'api'}, 3.5)]
    >>> series.forget(("ns", "api")); series.tracked()
    []
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.rows: dict[DeploymentKey, array[float]] = {}
        #: deployment -> time of its last prediction
        self.last: dict[DeploymentKey, float] = {}
        self._slots: dict[tuple[Family, tuple[str, ...]], int] = {}
        self._by_family: dict[Family, list[tuple[tuple[str, ...], int]]] = {f: [] for f in FAMILIES}
        self._horizon_slots: dict[str, tuple[tuple[str, int, int, int], ...]] = {}
        self._accuracy_slots: dict[tuple[str, str], tuple[int, int]] = {}

    def slot(self, family: Family, *extra: str) -> int:
        """The index of one series (a family and its extra label values) in every deployment's array."""
        key = (family, extra)
        index = self._slots.get(key)
        if index is None:
            index = self._slots[key] = len(self._slots)
            self._by_family[family].append((extra, index))
        return index

    # A slot never moves once given, so the ones every sample asks for are looked up once: a sample
    # publishes ~60 series, and a call per series was most of the update's cost.
    def horizon_slots(self, horizon: str) -> tuple[tuple[str, int, int, int], ...]:
        """(feature, point, lower, upper) slots of one horizon's bands, for every predicted feature."""
        slots = self._horizon_slots.get(horizon)
        if slots is None:
            slots = self._horizon_slots[horizon] = tuple(
                (feature, self.slot(point, horizon), self.slot(lower, horizon), self.slot(upper, horizon))
                for feature, (point, lower, upper) in PREDICTED.items()
            )
        return slots

    def accuracy_slots(self, feature: str, horizon: str) -> tuple[int, int]:
        """The (mean absolute error, coverage) slots of one feature at one horizon."""
        slots = self._accuracy_slots.get((feature, horizon))
        if slots is None:
            slots = self._accuracy_slots[feature, horizon] = (
                self.slot(FORECAST_ABS_ERROR, feature, horizon),
                self.slot(FORECAST_COVERAGE, feature, horizon),
            )
        return slots

    def _row(self, key: DeploymentKey) -> array[float]:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = array("d")
        if len(row) < len(self._slots):
            row.extend([_NAN] * (len(self._slots) - len(row)))
        return row

    def update(
        self, key: DeploymentKey, values: Iterable[tuple[int, float]], now: float,
        increments: Iterable[int] = (),
    ) -> None:  # fmt: skip
        """Set series (slot, value) and add 1 to counter slots of one deployment."""
        row = self._row(key)
        for index, value in values:
            row[index] = value
        for index in increments:
            current = row[index]
            row[index] = 1.0 if current != current else current + 1.0
        self.last[key] = now

    def forget(self, key: DeploymentKey) -> None:
        self.rows.pop(key, None)
        self.last.pop(key, None)

    def tracked(self) -> list[DeploymentKey]:
        return list(self.last)

    def describe(self) -> Iterable[Metric]:
        """The families :meth:`collect` yields, without samples.

        The registry reads the names from here when the collector is registered, so a name another
        collector of the registry already has fails at start-up instead of being exported twice.
        """
        for family in FAMILIES:
            yield _empty(family)
        yield _ages()

    def collect(self) -> Iterable[Metric]:
        rows = list(self.rows.items())
        for family in FAMILIES:
            out = _empty(family)
            slots = list(self._by_family[family])
            for (ns, dep), row in rows:
                size = len(row)
                for extra, index in slots:
                    if index < size:
                        value = row[index]
                        if value == value:  # not NaN: set at least once
                            out.add_metric([ns, dep, *extra], value)
            yield out
        ages = _ages()
        now = self.clock()
        for (ns, dep), at in list(self.last.items()):
            ages.add_metric([ns, dep], max(0.0, now - at))
        yield ages


def _empty(family: Family) -> GaugeMetricFamily | CounterMetricFamily:
    cls = CounterMetricFamily if family.counter else GaugeMetricFamily
    return cls(family.name, family.doc, labels=[*DL, *family.extra])


def _ages() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "helios_prediction_age_seconds",
        "Seconds since this worker last published a prediction for the deployment",
        labels=list(DL),
    )


@dataclass
class HeliosMetrics:
    """Every metric Helios exports. Build it with :meth:`create`."""

    registry: CollectorRegistry
    deployments: DeploymentSeries
    anomaly_threshold: Gauge
    forecast_level: Gauge
    inference_duration: Histogram
    samples: Counter
    dead_letters: Counter
    tracked_deployments: Gauge
    model_reload_failures: Counter
    model_info: Gauge
    ready: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> HeliosMetrics:
        def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(name, doc, list(labels), registry=registry)

        deployments = DeploymentSeries(clock)
        registry.register(deployments)
        m = cls(
            registry=registry,
            deployments=deployments,
            anomaly_threshold=gauge("helios_anomaly_threshold", "Anomaly threshold in sigma units"),
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
        )
        for outcome in OUTCOMES:
            m.samples.labels(outcome)
        for reason in DLQ_REASONS:
            m.dead_letters.labels(reason)
        m.model_reload_failures.labels("xgboost")
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
        series = self.deployments
        slot = series.slot
        values: list[tuple[int, float]] = []
        for h in forecast.horizons:
            for feature, point, lower, upper in series.horizon_slots(h.horizon):
                band = getattr(h, feature)
                if band is not None:
                    values += ((point, band.point), (lower, band.lower), (upper, band.upper))
        observed = forecast.observed
        if observed.cpu_utilization is not None:
            values.append((slot(OBSERVED_CPU), observed.cpu_utilization))
        if observed.memory_utilization is not None:
            values.append((slot(OBSERVED_MEMORY), observed.memory_utilization))
        for feature, value in observed.present().items():
            values.append((slot(OBSERVED_FEATURE, feature), value))
        values += (
            (slot(ANOMALY_SCORE), anomaly.anomaly_score),
            (slot(ANOMALY_DETECTED), 1.0 if anomaly.is_anomaly else 0.0),
            (slot(ANOMALY_SEVERITY), SEVERITY_LEVEL[anomaly.severity]),
            (slot(RECOMMENDED_REPLICAS), recommendation.recommended_replicas),
        )
        for c in anomaly.contributing_features:
            values.append((slot(ANOMALY_CONTRIBUTION, c.feature), c.contribution))
        if recommendation.current_replicas is not None:
            values.append((slot(CURRENT_REPLICAS), recommendation.current_replicas))
        for feature, per_horizon in accuracy.items():
            for horizon, (mae, coverage) in per_horizon.items():
                mae_slot, coverage_slot = series.accuracy_slots(feature, horizon)
                values += ((mae_slot, mae), (coverage_slot, coverage))
        actions = [
            slot(RECOMMENDATIONS, i.action) for i in recommendation.recommendations if i.type == "scaling"
        ]
        series.update((forecast.namespace, forecast.deployment), values, now, actions)

    def forget(self, namespace: str, deployment: str) -> None:
        """Remove every series of one deployment (partition moved away, or silent too long)."""
        self.deployments.forget((namespace, deployment))

    def tracked(self) -> list[DeploymentKey]:
        return self.deployments.tracked()
