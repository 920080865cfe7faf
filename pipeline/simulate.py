"""``helios simulate``: replay a trace through Helios and against a Kubernetes HPA on the same demand.

The demand model: a CPU-utilisation trace (fraction, or percent / 100) times ``--base-replicas``
gives demand in cores; any other trace (request counts, bytes) is scaled so that its 95th percentile
equals ``base_replicas * hpa_target``. Demand is held constant over each trace step (a CloudWatch point is
the average of its period) and the controllers advance in ``tick`` steps (15 s, the HPA's sync period).

Two workloads run on that demand:

* **HPA** — :class:`models.autoscalers.HPASimulator` at ``--hpa-target`` (70 %);
* **Helios** — every trace step becomes a :class:`pipeline.records.MetricSample` carrying the Helios
  workload's ready replicas and its CPU utilisation ``demand / (ready * capacity)`` (capped at 1, the
  record's range) and goes through :class:`pipeline.stages.DeploymentPipeline` — the code the stream runs.
  Its ``recommended_replicas`` reaches Prometheus ``--publish-delay`` seconds later (a scrape) and KEDA
  (:class:`models.autoscalers.KEDASimulator`) acts on it as the project's ScaledObject says
  (``k8s/keda/scaledobject-saleor.yaml``, read by :meth:`ScaledObjectSpec.from_manifest`, so the simulation
  and the manifest cannot drift): its query and threshold, polling interval, CPU trigger, bounds and HPA
  ``behavior``. With ``--shadow`` Helios only reports: the workload
  is driven by the CPU trigger at the HPA's target and the Helios columns show what it would have asked.

Scored per policy: under-provisioned minutes (time with demand per ready replica above the scale-up
threshold, or no ready replica while there is demand), replica-hours (pods requested, ready or starting:
they are paid for either way) and scaling actions (changes of the replica count).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.autoscalers import HPASimulator, KEDASimulator, Policy
from models.features import CPU
from pipeline.equal_cost import HPA_SWEEP, CurvePoint, at_equal_cost, hpa_family, plot_equal_cost

#: Filename fragments that mark a utilisation trace (the rest are counts).
_UTILISATION_HINTS = ("cpu", "utiliz", "utilis")
#: The project's ScaledObject: the simulated Helios workload is scaled by exactly this manifest.
DEFAULT_SCALED_OBJECT = Path(__file__).resolve().parents[1] / "k8s" / "keda" / "scaledobject-saleor.yaml"
#: The gauge the simulated Prometheus holds; the ScaledObject's query must read it.
RECOMMENDED_METRIC = "helios_recommended_replicas"


@dataclass(frozen=True)
class ScaledObjectSpec:
    """What the simulator takes from a KEDA ScaledObject (``keda.sh/v1alpha1``).

    ``cooldown_seconds`` is KEDA's ``cooldownPeriod``: it only governs scaling to zero, so with
    ``minReplicaCount >= 1`` it has no effect here; scale-down damping between non-zero counts is the HPA
    ``behavior`` (``downscale_stabilization_seconds`` and the policies).
    """

    query: str
    threshold: float
    polling_seconds: float
    cooldown_seconds: float
    cpu_target: float | None
    min_replicas: int
    max_replicas: int
    downscale_stabilization_seconds: float = 300.0
    upscale_stabilization_seconds: float = 0.0
    scale_up_policies: tuple[Policy, ...] | None = None
    scale_down_policies: tuple[Policy, ...] | None = None
    source: str = ""

    @classmethod
    def from_manifest(cls, path: Path = DEFAULT_SCALED_OBJECT) -> ScaledObjectSpec:
        """Read the ScaledObject in ``path`` (the first document of that kind).

        Raises ``ValueError`` naming the field when the manifest is not one the simulator can model:
        no Prometheus trigger on ``helios_recommended_replicas``, a non-``AverageValue`` metric type, or a
        CPU trigger that is not ``Utilization``.
        """
        import yaml

        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if isinstance(d, dict)]
        scaled = next((d for d in docs if d.get("kind") == "ScaledObject"), None)
        if scaled is None:
            raise ValueError(f"{path}: no ScaledObject")
        spec = scaled.get("spec") or {}
        triggers = spec.get("triggers") or []
        prom = [t for t in triggers if t.get("type") == "prometheus"]
        if len(prom) != 1:
            raise ValueError(f"{path}: spec.triggers needs exactly one prometheus trigger, got {len(prom)}")
        meta = prom[0].get("metadata") or {}
        query = str(meta.get("query", ""))
        if RECOMMENDED_METRIC not in query:
            raise ValueError(
                f"{path}: the prometheus trigger's query must read {RECOMMENDED_METRIC}: {query!r}"
            )
        if prom[0].get("metricType", "AverageValue") != "AverageValue":
            raise ValueError(f"{path}: the prometheus trigger's metricType must be AverageValue")
        cpu = [t for t in triggers if t.get("type") == "cpu"]
        cpu_target = None
        if cpu:
            if cpu[0].get("metricType", "Utilization") != "Utilization":
                raise ValueError(f"{path}: the cpu trigger's metricType must be Utilization")
            cpu_target = float(cpu[0]["metadata"]["value"]) / 100.0
        hpa_config = (spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}
        behavior = hpa_config.get("behavior") or {}

        def policies(rules: dict[str, Any]) -> tuple[Policy, ...] | None:
            if not rules.get("policies"):
                return None
            if rules.get("selectPolicy", "Max") != "Max":
                raise ValueError(f"{path}: only selectPolicy Max is modelled")
            return tuple(
                (str(p["type"]), float(p["value"]), float(p["periodSeconds"])) for p in rules["policies"]
            )

        min_replicas = int(spec.get("minReplicaCount", 0))
        if min_replicas < 1:
            raise ValueError(f"{path}: minReplicaCount {min_replicas}: scaling to zero is not modelled")
        down = behavior.get("scaleDown") or {}
        up = behavior.get("scaleUp") or {}
        return cls(
            query=query,
            threshold=float(meta["threshold"]),
            polling_seconds=float(spec.get("pollingInterval", 30)),
            cooldown_seconds=float(spec.get("cooldownPeriod", 300)),
            cpu_target=cpu_target,
            min_replicas=min_replicas,
            max_replicas=int(spec.get("maxReplicaCount", 100)),
            downscale_stabilization_seconds=float(down.get("stabilizationWindowSeconds", 300)),
            upscale_stabilization_seconds=float(up.get("stabilizationWindowSeconds", 0)),
            scale_up_policies=policies(up),
            scale_down_policies=policies(down),
            source=str(path),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "query": self.query,
            "threshold": self.threshold,
            "polling_seconds": self.polling_seconds,
            "cooldown_seconds": self.cooldown_seconds,
            "cpu_target": self.cpu_target,
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "downscale_stabilization_seconds": self.downscale_stabilization_seconds,
            "upscale_stabilization_seconds": self.upscale_stabilization_seconds,
            "scale_up_policies": None
            if self.scale_up_policies is None
            else [list(p) for p in self.scale_up_policies],
            "scale_down_policies": None
            if self.scale_down_policies is None
            else [list(p) for p in self.scale_down_policies],
        }


@dataclass
class Totals:
    """The score of one policy over a run."""

    under_seconds: float = 0.0
    replica_seconds: float = 0.0
    actions: int = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "under_provisioned_minutes": round(self.under_seconds / 60, 2),
            "replica_hours": round(self.replica_seconds / 3600, 3),
            "scaling_actions": self.actions,
        }


@dataclass
class SimResult:
    steps: pd.DataFrame
    hpa: Totals
    helios: Totals
    config: dict[str, Any] = field(default_factory=dict)
    #: The HPA at each target of the sweep, on the same demand (empty: no sweep was run).
    family: list[CurvePoint] = field(default_factory=list)
    #: Every change of either workload's replica count: (``"hpa"`` or ``"helios"``, time, from, to).
    changes: list[tuple[str, float, int, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        h, k = self.hpa.as_dict(), self.helios.as_dict()

        def ratio(a: float, b: float) -> float | None:
            if b == 0:
                return None if a else 1.0
            return round(a / b, 4)

        out: dict[str, Any] = {
            "config": self.config,
            "hpa": h,
            "helios": k,
            "ratios": {
                "under_provisioned": ratio(k["under_provisioned_minutes"], h["under_provisioned_minutes"]),
                "replica_hours": ratio(k["replica_hours"], h["replica_hours"]),
                "scaling_actions": ratio(k["scaling_actions"], h["scaling_actions"]),
            },
        }
        if self.family:
            out["equal_cost"] = at_equal_cost(
                self.family, self.helios.replica_seconds / 3600, self.helios.under_seconds / 60
            )
        return out


# -- traces and demand ---------------------------------------------------------------------------------
def load_trace(path: Path) -> pd.DataFrame:
    """A ``timestamp,value`` CSV (NAB layout) as a frame with UTC timestamps, sorted, NaNs dropped."""
    df = pd.read_csv(path)
    if "timestamp" not in df.columns:
        raise ValueError(f"{path}: expected a 'timestamp' column, got {list(df.columns)}")
    value_col = "value" if "value" in df.columns else next((c for c in df.columns if c != "timestamp"), None)
    if value_col is None:
        raise ValueError(f"{path}: no value column")
    out = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(df["timestamp"], utc=True),
            "value": pd.to_numeric(df[value_col], errors="coerce"),
        }
    )
    out = out.dropna().sort_values("timestamp").drop_duplicates("timestamp").reset_index(drop=True)
    if len(out) < 3:
        raise ValueError(f"{path}: need at least 3 rows, got {len(out)}")
    return out


def resample(trace: pd.DataFrame, step_seconds: int) -> pd.DataFrame:
    """``trace`` at another step: the mean over each longer step, or each value held over the shorter
    steps it spans (a CloudWatch point is the average of its period, so holding it is all that is known).

    >>> t = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=4, freq="5min", tz="UTC"),
    ...                   "value": [1.0, 3.0, 5.0, 7.0]})
    >>> resample(t, 600)["value"].tolist()
    [2.0, 6.0]
    >>> resample(t, 150)["value"].tolist()
    [1.0, 1.0, 3.0, 3.0, 5.0, 5.0, 7.0, 7.0]
    """
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds}")
    series = trace.set_index("timestamp")["value"]
    own = float(np.median(series.index.to_series().diff().dt.total_seconds().dropna()))
    rule = pd.Timedelta(seconds=step_seconds)
    if step_seconds >= own:
        out = series.resample(rule).mean().dropna()
    else:
        end = series.index[-1] + pd.Timedelta(seconds=own) - rule
        grid = pd.date_range(series.index[0], end, freq=rule)
        out = series.reindex(series.index.union(grid)).ffill().reindex(grid)
    return pd.DataFrame({"timestamp": out.index, "value": out.to_numpy()}).reset_index(drop=True)


def trace_kind(path: Path, values: np.ndarray) -> str:
    """``fraction``, ``percent`` or ``count``: utilisation traces are named so (``cpu``, ``utilization``)."""
    name = path.name.lower()
    if any(h in name for h in _UTILISATION_HINTS) and float(np.min(values)) >= 0:
        return "fraction" if float(np.max(values)) <= 1.0 else "percent"
    return "count"


def demand_cores(values: np.ndarray, kind: str, base_replicas: int, hpa_target: float) -> np.ndarray:
    """Demand in cores under the benchmark's demand model (the module docstring).

    Examples
    --------
    >>> demand_cores(np.array([50.0, 100.0]), "percent", 4, 0.7).tolist()
    [2.0, 4.0]
    >>> d = demand_cores(np.arange(101.0), "count", 4, 0.7)
    >>> round(float(np.percentile(d, 95)), 6)
    2.8
    """
    v = np.clip(np.asarray(values, dtype=float), 0.0, None)
    if kind == "fraction":
        return v * base_replicas
    if kind == "percent":
        return v / 100.0 * base_replicas
    if kind != "count":
        raise ValueError(f"kind must be fraction, percent or count, got {kind!r}")
    p95 = float(np.percentile(v, 95))
    if p95 <= 0:
        p95 = float(np.max(v)) or 1.0
    return v * (base_replicas * hpa_target / p95)


def trace_with_demand(
    path: Path | None,
    *,
    synthetic_days: float = 14.0,
    kind: str = "auto",
    base_replicas: int = 4,
    hpa_target: float = 0.70,
) -> tuple[pd.DataFrame, str, np.ndarray]:
    """A trace (``path``, or the synthetic Saleor workload when None), its kind and its demand in cores."""
    if path is None:
        trace, kind = saleor_trace(synthetic_days), "count"
    else:
        trace = load_trace(path)
        kind = trace_kind(path, trace["value"].to_numpy()) if kind == "auto" else kind
    return trace, kind, demand_cores(trace["value"].to_numpy(), kind, base_replicas, hpa_target)


# -- the targets against the HPA on the same demand ------------------------------------------------------
#: Traces whose name starts so are "calm" (the NAB EC2/RDS CPU series); every other is "volatile".
CALM_TRACES = ("ec2_cpu", "rds_cpu")
#: Helios may use at most this many times the HPA's replica-hours.
MAX_REPLICA_HOURS = 1.05


def shortfall_limit(name: str) -> float:
    """The share of the HPA's under-provisioned minutes Helios may have on trace ``name``.

    >>> shortfall_limit("ec2_cpu_utilization_5f5533"), shortfall_limit("elb_request_count_8c0756")
    (0.65, 0.5)
    """
    return 0.65 if name.startswith(CALM_TRACES) else 0.5


def meets_targets(name: str, policy: dict[str, Any], hpa: dict[str, Any]) -> bool:
    """True when ``policy``'s totals (a :meth:`SimResult.summary` side) meet the targets against ``hpa``'s:
    replica-hours within ``MAX_REPLICA_HOURS`` x, no more scaling actions, and under-provisioned minutes
    within :func:`shortfall_limit` of the HPA's (none, where the HPA has none)."""
    short, hpa_short = policy["under_provisioned_minutes"], hpa["under_provisioned_minutes"]
    return (
        policy["replica_hours"] <= MAX_REPLICA_HOURS * hpa["replica_hours"]
        and policy["scaling_actions"] <= hpa["scaling_actions"]
        and (short <= shortfall_limit(name) * hpa_short if hpa_short else short == 0)
    )


def saleor_trace(
    days: float = 14.0,
    step_seconds: int = 300,
    seed: int = 7,
    incident_at: int | None = None,
    incident_length: int = 15,
) -> pd.DataFrame:
    """The synthetic Saleor workload as a ``timestamp,value`` trace of its CPU demand (pod-cores).

    The value is ``cpu_utilization * replicas`` of :func:`pipeline.sources.synthetic.synthetic_trace`,
    i.e. load independent of that generator's own replica count; it is a count-like trace here. An
    incident (``incident_at``, a step index) adds CPU that is not load, with its memory leak.
    """
    from pipeline.sources.synthetic import synthetic_trace

    n = int(days * 86400 // step_seconds)
    df = synthetic_trace(
        n, float(step_seconds), seed=seed, incident_at=incident_at, incident_length=incident_length
    )
    return pd.DataFrame({"timestamp": df["timestamp"], "value": df[CPU] * df["replicas"]})


def daily_trace(days: float = 14.0, step_seconds: int = 1800, seed: int = 3) -> pd.DataFrame:
    """A strongly daily request-count trace: a quiet night, a ramp from 08:00 to 10:00 to three times the
    night's level, a plateau and a fall from 18:00 to 21:00, with 5 % log-normal noise per step.

    >>> t = daily_trace(2, 1800)
    >>> len(t), round(float(t["value"].iloc[30] / t["value"].iloc[4]), 1)   # 15:00 over 02:00, noisy
    (96, 2.9)
    """
    rng = np.random.default_rng(seed)
    n = int(days * 86400 // step_seconds)
    hours = (np.arange(n) * step_seconds % 86400) / 3600
    shape = 1 + 2 * np.clip(np.minimum((hours - 8) / 2, (21 - hours) / 3), 0, 1)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "timestamp": start + pd.to_timedelta(np.arange(n) * step_seconds, unit="s"),
            "value": 1000 * shape * np.exp(rng.normal(0, 0.05, n)),
        }
    )


# -- Helios, one call per step -------------------------------------------------------------------------
@dataclass(frozen=True)
class HeliosStep:
    """What Helios published for one sample."""

    recommended: int
    forecast: float | None  # CPU utilisation point at the first horizon
    forecast_lower: float | None
    forecast_upper: float | None
    action: str
    rule: str


def make_helios(
    step_seconds: int,
    startup_seconds: float,
    cpu_scale_up: float,
    max_replicas: int,
    environ: Mapping[str, str] | None = None,
) -> Callable[[float, int, float], HeliosStep]:
    """A function ``(t, ready_replicas, cpu_utilisation) -> HeliosStep`` running the stream's stages.

    ``environ``: further ``HELIOS_*`` settings, as the worker reads them (default: none, the defaults).
    """
    from pipeline.records import Metrics, MetricSample
    from pipeline.settings import load_settings
    from pipeline.stages import DeploymentPipeline, PipelineConfig, score_batch

    settings = load_settings(
        dict(environ or {}),
        HELIOS_SCORING_INTERVAL=step_seconds,
        HELIOS_POD_STARTUP_SECONDS=startup_seconds,
        HELIOS_CPU_SCALE_UP=cpu_scale_up,
        HELIOS_MAX_REPLICAS=max_replicas,
    )
    pipe = DeploymentPipeline("sim", "workload", PipelineConfig.from_settings(settings))

    def step(t: float, replicas: int, cpu: float) -> HeliosStep:
        sample = MetricSample(
            namespace="sim",
            deployment="workload",
            timestamp=datetime.fromtimestamp(t, tz=UTC),
            metrics=Metrics(cpu_utilization=min(1.0, max(0.0, cpu))),
            replicas=replicas,
            source="simulate",
        )
        prepared = pipe.prepare(sample)
        out = pipe.finish(prepared, score_batch(None, [prepared])[0])
        first = out.forecast.horizons[0].cpu_utilization if out.forecast.horizons else None
        return HeliosStep(
            recommended=out.recommendation.recommended_replicas,
            forecast=None if first is None else first.point,
            forecast_lower=None if first is None else first.lower,
            forecast_upper=None if first is None else first.upper,
            action=out.decision.action,
            rule=str(out.decision.evidence.get("rule", "")),
        )

    return step


# -- the replay ----------------------------------------------------------------------------------------
@dataclass
class _Replay:
    """Both workloads between two trace steps: the controllers tick, Prometheus publishes late."""

    hpa: HPASimulator
    keda: KEDASimulator
    tick: float
    n_ticks: int
    capacity: float
    threshold: float
    tot_h: Totals = field(default_factory=Totals)
    tot_k: Totals = field(default_factory=Totals)
    #: (visible from, value) awaiting Prometheus
    published: list[tuple[float, int]] = field(default_factory=list)
    visible: int | None = None
    #: (workload, time, from, to) of every change of a replica count
    changes: list[tuple[str, float, int, int]] = field(default_factory=list)

    def advance(self, t0: float, d: float) -> tuple[float, float]:
        """Run the ticks of the step starting at ``t0`` at demand ``d``; the seconds each was short."""
        under_h = under_k = 0.0
        for j in range(self.n_ticks):
            t = t0 + j * self.tick
            while self.published and self.published[0][0] <= t:
                self.visible = self.published.pop(0)[1]
            before_h, before_k = self.hpa.pods.spec, self.keda.pods.spec
            rh = self.hpa.step(t, d)
            rk = self.keda.step(t, d, self.visible)
            for res, tot in ((rh, self.tot_h), (rk, self.tot_k)):
                tot.replica_seconds += res.spec * self.tick
            if rh.scaled:
                self.changes.append(("hpa", t, before_h, rh.spec))
            if rk.scaled:
                self.changes.append(("helios", t, before_k, rk.spec))
            if _under(d, rh.ready, self.capacity, self.threshold):
                under_h += self.tick
            if _under(d, rk.ready, self.capacity, self.threshold):
                under_k += self.tick
        self.tot_h.under_seconds += under_h
        self.tot_k.under_seconds += under_k
        return under_h, under_k


def _pod_settings(
    capacity: float, startup: float, min_replicas: int, max_replicas: int, initial: int
) -> dict[str, Any]:
    """What both workloads share: pod capacity, start-up time, bounds and the starting count."""
    return dict(
        capacity=capacity,
        startup_seconds=startup,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        initial_replicas=initial,
    )


def _keda(so: ScaledObjectSpec, floor: float | None, shadow: bool, common: dict[str, Any]) -> KEDASimulator:
    """The Helios workload's scaler, configured as the ScaledObject says."""
    return KEDASimulator(
        polling_seconds=so.polling_seconds,
        threshold=so.threshold,
        floor_target=floor,
        cooldown_seconds=so.downscale_stabilization_seconds,
        shadow=shadow,
        upscale_stabilization_seconds=so.upscale_stabilization_seconds,
        scale_up_policies=None if so.scale_up_policies is None else list(so.scale_up_policies),
        scale_down_policies=None if so.scale_down_policies is None else list(so.scale_down_policies),
        **common,
    )


def _step_row(
    timestamp: pd.Timestamp,
    d: float,
    capacity: float,
    hpa_ready: int,
    helios_ready: int,
    hs: HeliosStep,
    prev_fc: tuple[float | None, ...],
) -> dict[str, Any]:
    """One output row, before the under-provisioned seconds of the step are known."""
    return {
        "timestamp": timestamp.isoformat(),
        "demand": round(float(d), 6),
        "capacity_per_replica": capacity,
        "hpa_replicas": hpa_ready,
        "helios_replicas": helios_ready,
        "helios_recommended": hs.recommended,
        # the forecast issued one step earlier for this step, in cores at the replicas it was made for
        "forecast": prev_fc[0],
        "forecast_lower": prev_fc[1],
        "forecast_upper": prev_fc[2],
        "helios_action": hs.action,
        "helios_rule": hs.rule,
    }


def simulate(
    trace: pd.DataFrame,
    demand: np.ndarray,
    *,
    base_replicas: int = 4,
    capacity: float = 1.0,
    hpa_target: float = 0.70,
    startup: float = 60.0,
    shadow: bool = False,
    floor_target: float | None = None,
    cpu_scale_up: float = 0.80,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    tick: float = 15.0,
    publish_delay: float = 15.0,
    helios: Callable[[float, int, float], HeliosStep] | None = None,
    scaled_object: ScaledObjectSpec | None = None,
    sweep: Sequence[float] = HPA_SWEEP,
) -> SimResult:
    """Run both policies over ``demand`` (cores per trace step) and score them.

    Helios' workload is scaled as ``scaled_object`` says (default: the project's ScaledObject): its
    polling interval, threshold, CPU trigger (``floor_target`` overrides it; with ``shadow`` the HPA's
    target), bounds (``min_replicas``/``max_replicas`` override them, for both policies) and HPA behavior.
    The HPA is also run at each CPU target of ``sweep`` (none: ``()``), the yardstick at equal cost
    (:mod:`pipeline.equal_cost`).
    """
    so = scaled_object if scaled_object is not None else ScaledObjectSpec.from_manifest()
    min_replicas = so.min_replicas if min_replicas is None else min_replicas
    max_replicas = so.max_replicas if max_replicas is None else max_replicas
    ts = trace["timestamp"].map(lambda x: x.timestamp()).to_numpy(dtype=float)
    step_seconds = round(float(np.median(np.diff(ts))))
    if step_seconds <= 0:
        raise ValueError("trace timestamps must increase")
    if helios is None:
        helios = make_helios(step_seconds, startup, cpu_scale_up, max_replicas)
    floor = floor_target if floor_target is not None else (hpa_target if shadow else so.cpu_target)
    initial = min(max_replicas, max(min_replicas, math.ceil(round(demand[0] / (capacity * hpa_target), 9))))
    common = _pod_settings(capacity, startup, min_replicas, max_replicas, initial)
    hpa = HPASimulator(target=hpa_target, **common)
    keda = _keda(so, floor, shadow, common)
    replay = _Replay(hpa, keda, tick, max(1, round(step_seconds / tick)), capacity, cpu_scale_up)
    rows = []
    prev_fc: tuple[float | None, ...] = (None, None, None)
    for i, (t0, d) in enumerate(zip(ts, demand, strict=True)):
        ready_k = keda.pods.ready(t0)
        hs = helios(float(t0), ready_k, d / (max(ready_k, 1) * capacity))
        replay.published.append((t0 + publish_delay, hs.recommended))
        row = _step_row(trace["timestamp"].iloc[i], d, capacity, hpa.pods.ready(t0), ready_k, hs, prev_fc)
        row["hpa_under_seconds"], row["helios_under_seconds"] = replay.advance(t0, d)
        rows.append(row)
        scale = ready_k * capacity
        prev_fc = tuple(
            None if v is None else round(v * scale, 6)
            for v in (hs.forecast, hs.forecast_lower, hs.forecast_upper)
        )
    replay.tot_h.actions, replay.tot_k.actions = hpa.actions, keda.actions
    config = {
        "base_replicas": base_replicas,
        "capacity": capacity,
        "hpa_target": hpa_target,
        "startup_seconds": startup,
        "shadow": shadow,
        "floor_target": floor,
        "cpu_scale_up": cpu_scale_up,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "tick_seconds": tick,
        "publish_delay_seconds": publish_delay,
        "trace_step_seconds": step_seconds,
        "scaled_object": so.as_dict(),
    }
    family = hpa_family(
        ts, demand, sweep, step_seconds=step_seconds, tick=tick, threshold=cpu_scale_up, **common
    )
    return SimResult(pd.DataFrame(rows), replay.tot_h, replay.tot_k, config, family, replay.changes)


def _under(demand: float, ready: int, capacity: float, threshold: float) -> bool:
    if ready <= 0:
        return demand > 0
    return demand / (ready * capacity) > threshold


# -- outputs -------------------------------------------------------------------------------------------
def plot(result: SimResult, path: Path, title: str) -> None:
    """Demand, forecast band and the ready capacity of both policies; the second panel zooms on the day
    where the HPA was short for longest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = result.steps
    t = pd.to_datetime(df["timestamp"])
    thr = float(result.config["cpu_scale_up"])
    fig, axes = plt.subplots(2, 1, figsize=(14, 8), constrained_layout=True)
    day = pd.Series(df["hpa_under_seconds"].to_numpy(), index=t).resample("1D").sum()
    busiest = day.idxmax() if len(day) else t.iloc[0]
    zoom = (t >= busiest) & (t < busiest + pd.Timedelta(days=1))
    for ax, mask, label in (
        (axes[0], slice(None), "whole trace"),
        (axes[1], zoom, f"zoom: {busiest:%Y-%m-%d}"),
    ):
        _plot_panel(ax, df, t, mask, thr, f"{title} — {label}")
    s = result.summary()
    axes[0].legend(loc="upper left", fontsize=8, ncol=3)
    axes[1].text(
        0.01,
        0.97,
        "under-provisioned min  HPA {:.0f}  Helios {:.0f}   replica-h  HPA {:.1f}  Helios {:.1f}   actions  "
        "HPA {}  Helios {}".format(
            s["hpa"]["under_provisioned_minutes"],
            s["helios"]["under_provisioned_minutes"],
            s["hpa"]["replica_hours"],
            s["helios"]["replica_hours"],
            s["hpa"]["scaling_actions"],
            s["helios"]["scaling_actions"],
        ),
        transform=axes[1].transAxes,
        va="top",
        fontsize=9,
        bbox={"facecolor": "white", "alpha": 0.8},
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_panel(ax: Any, df: pd.DataFrame, t: pd.Series, mask: Any, thr: float, title: str) -> None:
    """One panel of :func:`plot`: demand, forecast band, both policies' capacity, and when each was short."""
    cap = df["capacity_per_replica"]
    tt = t[mask]
    ax.fill_between(
        tt,
        df["forecast_lower"][mask],
        df["forecast_upper"][mask],
        step="post",
        alpha=0.25,
        color="tab:orange",
        label="forecast band for this step (issued one step earlier)",
    )
    ax.step(tt, df["demand"][mask], where="post", color="black", lw=1.0, label="demand (cores)")
    ax.step(
        tt,
        df["hpa_replicas"][mask] * cap[mask] * thr,
        where="post",
        color="tab:blue",
        lw=2.6,
        alpha=0.6,
        label=f"HPA: ready replicas x capacity x {thr:.0%}",
    )
    ax.step(
        tt,
        df["helios_replicas"][mask] * cap[mask] * thr,
        where="post",
        color="tab:green",
        lw=1.2,
        label=f"Helios: ready replicas x capacity x {thr:.0%}",
    )
    short_h = df["hpa_under_seconds"][mask] > 0
    short_k = df["helios_under_seconds"][mask] > 0
    ymax = float(max(df["demand"][mask].max(), 1.0))
    ax.scatter(
        tt[short_h],
        [ymax * 1.04] * int(short_h.sum()),
        marker="|",
        color="tab:blue",
        s=40,
        label="HPA under-provisioned",
    )
    ax.scatter(
        tt[short_k],
        [ymax * 1.08] * int(short_k.sum()),
        marker="|",
        color="tab:green",
        s=40,
        label="Helios under-provisioned",
    )
    ax.set_ylim(0, ymax * 1.12)
    ax.set_ylabel("cores")
    ax.set_title(title)
    ax.grid(alpha=0.3)


def format_table(name: str, summary: dict[str, Any]) -> str:
    h, k, r = summary["hpa"], summary["helios"], summary["ratios"]

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    lines = [
        f"{name}",
        f"  {'':28s}{'HPA':>10s}{'Helios':>10s}{'ratio':>8s}",
        f"  {'under-provisioned minutes':28s}{h['under_provisioned_minutes']:>10.1f}"
        f"{k['under_provisioned_minutes']:>10.1f}{f(r['under_provisioned']):>8s}",
        f"  {'replica-hours':28s}{h['replica_hours']:>10.1f}{k['replica_hours']:>10.1f}"
        f"{f(r['replica_hours']):>8s}",
        f"  {'scaling actions':28s}{h['scaling_actions']:>10d}{k['scaling_actions']:>10d}"
        f"{f(r['scaling_actions']):>8s}",
    ]
    eq = summary.get("equal_cost")
    if eq is not None:
        targets = [p["target"] for p in eq["curve"]]
        outside = "" if eq["within_range"] else " (outside the swept range)"
        lines.append(
            f"  at equal cost ({eq['replica_hours']:.1f} replica-hours, the HPA at CPU targets "
            f"{min(targets):.0%}-{max(targets):.0%}): HPA family short "
            f"{eq['hpa_under_provisioned_minutes']:.1f} min, "
            f"Helios {eq['helios_under_provisioned_minutes']:.1f} min, ratio {f(eq['ratio'])}{outside}"
        )
    return "\n".join(lines)


# -- CLI -----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", type=Path, help="timestamp,value CSV (NAB layout)")
    parser.add_argument(
        "--synthetic-days",
        type=float,
        default=None,
        help="instead of --trace: that many days of the synthetic Saleor workload",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (CSV, summary.json, PNG)")
    parser.add_argument("--base-replicas", type=int, default=4)
    parser.add_argument("--capacity", type=float, default=1.0, help="cores per replica")
    parser.add_argument("--hpa-target", type=float, default=0.70)
    parser.add_argument("--startup", type=float, default=60.0, help="pod start-up delay, seconds")
    parser.add_argument("--shadow", action="store_true", help="Helios only reports; the CPU trigger scales")
    parser.add_argument(
        "--floor-target",
        type=float,
        default=None,
        help="override the ScaledObject's CPU trigger target (fraction)",
    )
    parser.add_argument("--kind", choices=["auto", "fraction", "percent", "count"], default="auto")
    parser.add_argument(
        "--max-replicas", type=int, default=None, help="default: the ScaledObject's maxReplicaCount"
    )
    parser.add_argument(
        "--scaled-object",
        type=Path,
        default=DEFAULT_SCALED_OBJECT,
        help="the KEDA ScaledObject scaling Helios' workload (default: k8s/keda/scaledobject-saleor.yaml)",
    )
    parser.add_argument(
        "--publish-delay",
        type=float,
        default=15.0,
        help="seconds from Helios' decision to Prometheus holding it",
    )
    parser.add_argument(
        "--hpa-sweep",
        type=_targets,
        default=HPA_SWEEP,
        help="CPU targets of the HPA family Helios is compared with at equal cost (default 0.40,...,0.95; "
        "empty: no sweep)",
    )


def _targets(text: str) -> tuple[float, ...]:
    try:
        targets = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hpa-sweep: comma-separated fractions, got {text!r}") from None
    if any(not 0 < t <= 1 for t in targets):
        raise argparse.ArgumentTypeError(f"--hpa-sweep: every target must be in (0, 1], got {text!r}")
    return targets


def run(args: argparse.Namespace) -> int:
    if (args.trace is None) == (args.synthetic_days is None):
        raise SystemExit("give exactly one of --trace and --synthetic-days")
    if args.base_replicas < 1 or args.capacity <= 0 or not 0 < args.hpa_target <= 1:
        raise SystemExit("--base-replicas >= 1, --capacity > 0 and 0 < --hpa-target <= 1 are required")
    name = "saleor_synthetic" if args.trace is None else args.trace.stem
    trace, kind, demand = trace_with_demand(
        args.trace,
        synthetic_days=args.synthetic_days,
        kind=args.kind,
        base_replicas=args.base_replicas,
        hpa_target=args.hpa_target,
    )
    result = simulate(
        trace,
        demand,
        base_replicas=args.base_replicas,
        capacity=args.capacity,
        hpa_target=args.hpa_target,
        startup=args.startup,
        shadow=args.shadow,
        floor_target=args.floor_target,
        max_replicas=args.max_replicas,
        publish_delay=args.publish_delay,
        scaled_object=ScaledObjectSpec.from_manifest(args.scaled_object),
        sweep=args.hpa_sweep,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    result.steps.to_csv(args.out / f"{name}.csv", index=False)
    summary = result.summary()
    summary["trace"] = name
    summary["kind"] = kind
    (args.out / f"{name}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(result, args.out / f"{name}.png", name)
    if "equal_cost" in summary:
        plot_equal_cost(summary, args.out / f"{name}.equal-cost.png", name)
    print(format_table(f"{name} ({kind})", summary))
    return 0
