"""The three stages of one deployment — forecast, anomaly score, recommendation — as plain code.

The Faust agent, ``helios simulate`` and the web view all call :class:`DeploymentPipeline`, so a
decision is made by one implementation wherever it is made. A sample travels in two phases so
the XGBoost part can be scored in one batch across deployments:

1. :meth:`DeploymentPipeline.prepare` aligns the sample (learning the window it closes, if any,
   *after* that window was scored), forecasts from the open window and scores it with the
   streaming detector: nothing here has learned the open window yet (score before learn);
2. the caller scores every prepared sample's XGBoost features in one batch;
3. :meth:`DeploymentPipeline.finish` combines the scores, recommends and builds the records.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.anomaly import CombinedScore, DetectorScore, Severity, StreamingDetector, combine
from models.features import CPU, DB_CONNECTIONS, DB_CPU, FEATURES, FORECAST_FEATURES, HORIZONS, MEMORY
from models.forecast import Interval, OnlineForecaster, calibrated_steps_for
from models.incident import IncidentTracker
from models.priors import learned_normal
from models.recommender import Decision, Recommender, RecommenderState, ScalingInputs
from models.recurrence import PeriodicLoad, RecurringLoad
from models.river_adapters import RiverDetector, RiverForecaster
from models.spec import (
    ModelSpec,
    describe,
    make_detector,
    make_forecaster,
    parse_spec,
    restore_detector,
    restore_forecaster,
)
from models.xgb import XGBAnomalyModel
from pipeline.align import AlignedWindow, TumblingAligner
from pipeline.records import (
    AnomalyRecord,
    Band,
    FeatureContribution,
    ForecastRecord,
    HorizonForecast,
    Metrics,
    MetricSample,
    RecommendationItem,
    RecommendationRecord,
)
from pipeline.settings import Settings

#: The models a stage may hold: Helios' own, or a River model behind its adapter.
Forecaster = OnlineForecaster | RiverForecaster
Detector = StreamingDetector | RiverDetector

_SEVERITY_RANK = {"normal": 0, "warning": 1, "critical": 2}
_SEVERITIES: dict[str, Severity] = {"normal": "normal", "warning": "warning", "critical": "critical"}

#: Bumped whenever the persisted layout changes; older state is dropped and relearned.
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """The per-deployment model parameters, derived once from :class:`Settings`."""

    step_seconds: int
    grace_seconds: float
    level: float
    horizon_steps: dict[str, int]
    anomaly_threshold: float
    recommender: Recommender
    #: Event-time seconds an anomaly stays declared after its last detection.
    anomaly_hold: float = 300.0
    #: Event-time seconds after an incident's onset at which a persisting shift is the new normal.
    anomaly_adapt: float = 3600.0
    #: The online models by name (``HELIOS_FORECASTER``, ``HELIOS_DETECTOR``; see models/spec.py).
    forecaster: ModelSpec = dataclasses.field(default_factory=lambda: parse_spec("helios"))
    detector: ModelSpec = dataclasses.field(default_factory=lambda: parse_spec("helios"))

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            step_seconds=settings.scoring_interval,
            grace_seconds=settings.grace_seconds,
            level=settings.risk_level,
            horizon_steps=settings.horizon_steps,
            anomaly_threshold=settings.anomaly_threshold,
            anomaly_hold=settings.anomaly_hold,
            anomaly_adapt=settings.anomaly_adapt,
            forecaster=parse_spec(settings.forecaster),
            detector=parse_spec(settings.detector),
            recommender=Recommender(
                cpu_scale_up=settings.cpu_scale_up,
                cpu_scale_down=settings.cpu_scale_down,
                memory_warning=settings.memory_warning,
                min_replicas=settings.min_replicas,
                max_replicas=settings.max_replicas,
                cooldown_seconds=settings.cooldown_seconds,
                startup_seconds=settings.startup_seconds,
                band_level=settings.risk_level,
                quantile=settings.sizing_quantile,
                step_seconds=settings.scoring_interval,
            ),
        )

    @property
    def published_steps(self) -> list[int]:
        """The distinct steps ahead of the published horizons (to the nearest step), ascending."""
        return sorted(set(self.horizon_steps.values()))

    @property
    def published_seconds(self) -> list[int]:
        """The distinct seconds ahead of the published horizons, ascending (what is forecast)."""
        return sorted(set(HORIZONS.values()))

    def new_forecaster(self) -> Forecaster:
        # A horizon between two steps is interpolated between them: both are calibrated.
        steps = calibrated_steps_for(self.step_seconds, self.published_seconds)
        model: Forecaster = make_forecaster(self.forecaster, self.step_seconds, self.level, steps)
        return model

    def new_recurrence(self) -> RecurringLoad:
        return RecurringLoad(step_seconds=self.step_seconds)

    def new_periodic(self) -> PeriodicLoad:
        return PeriodicLoad(step_seconds=self.step_seconds)

    @property
    def lookahead_steps(self) -> int:
        """Steps ahead whose recurring load a decision covers: the next one, and as many more as a pod's
        start-up spans (at a 60 s step a pod asked for now is ready after the next sample)."""
        return 1 + int(self.recommender.startup_seconds // self.step_seconds)

    def new_detector(self) -> Detector:
        # The daily profile of Helios' own detector counts aligned steps.
        model: Detector = make_detector(
            self.detector, FEATURES, self.anomaly_threshold, max(1, 86400 // self.step_seconds)
        )
        return model


@dataclass(slots=True)
class Prepared:
    """A sample after the streaming parts, waiting for its XGBoost score."""

    sample: MetricSample
    window: AlignedWindow
    closed: AlignedWindow | None
    #: feature -> seconds ahead -> band
    bands: dict[str, dict[int, Interval]]
    stream_score: DetectorScore
    xgb_row: list[float]


@dataclass(frozen=True, slots=True)
class StageOutput:
    forecast: ForecastRecord
    anomaly: AnomalyRecord
    recommendation: RecommendationRecord
    decision: Decision


@functools.lru_cache(maxsize=4096)
def _ts(seconds: float) -> datetime:
    # Window starts and horizons are multiples of the step, shared by every deployment: each datetime
    # is built once, not again for every deployment and sample.
    return datetime.fromtimestamp(seconds, tz=UTC)


class DeploymentPipeline:
    """All the state of one deployment and the stages that use it."""

    def __init__(self, namespace: str, deployment: str, config: PipelineConfig) -> None:
        self.namespace = namespace
        self.deployment = deployment
        self.config = config
        self.aligner = TumblingAligner(config.step_seconds, config.grace_seconds)
        self.forecasters = {name: config.new_forecaster() for name in FORECAST_FEATURES}
        self.detector = config.new_detector()
        self.recommender_state = RecommenderState()
        self.recurrence = config.new_recurrence()
        self.periodic = config.new_periodic()
        self.replicas: int | None = None
        #: Until when (event time) the last detected anomaly is held, and at which severity.
        self.alarm_until = -math.inf
        self.alarm_severity: Severity = "normal"
        #: The incident a detection opened, held while its features stay outside their normal bands.
        self.incident = IncidentTracker(config.anomaly_adapt, width=config.anomaly_threshold)

    # -- phase 1 ---------------------------------------------------------------------------
    def prepare(self, sample: MetricSample) -> Prepared:
        """Align, learn the window this sample closes, forecast and score the open window.

        Raises :class:`pipeline.errors.BadSample` (duplicate, too late) without changing state.
        """
        t = sample.timestamp.timestamp()
        step = self.aligner.add(t, sample.metrics.present())
        closed_replicas = self.replicas  # the count the closed window's samples reported
        if sample.replicas is not None:
            self.replicas = sample.replicas
        if step.closed is not None:
            self._learn(step.closed, closed_replicas)
        window = step.current
        ahead = self.config.published_seconds
        bands = {
            name: dict(
                zip(
                    ahead,
                    forecaster.forecast_seconds(ahead, (window.start, window.values[name])),
                    strict=True,
                )
            )
            for name, forecaster in self.forecasters.items()
            if name in window.values
        }
        stream_score, xgb_row = self.detector.score_with_features(window.values)
        return Prepared(sample, window, step.closed, bands, stream_score, xgb_row)

    def bands(self, name: str, steps: Sequence[int], current: tuple[float, float] | None) -> list[Interval]:
        """Bands of ``name`` at ``steps`` ahead, peeking at the open window's ``current`` value.

        Per-pod utilisation is forecast as it is. Forecasting deployment-wide load instead (utilisation
        x replicas, to keep Helios' own scaling out of the series) was tried in ``helios simulate`` and
        left more under-provisioned minutes in total (benchmarks/simulate.md), so it is not used.
        """
        return self.forecasters[name].forecast_at(steps, current=current)

    def _learn(self, closed: AlignedWindow, replicas: int | None) -> None:
        for name, forecaster in self.forecasters.items():
            if name in closed.values:
                forecaster.learn_at(closed.start, closed.values[name])
        self.detector.learn_one(closed.values)
        cpu = closed.values.get(CPU)
        if cpu is not None and replicas:
            self.recurrence.learn_one(closed.start, cpu * replicas)
            self.periodic.learn_one(closed.start, cpu * replicas)

    # -- phase 3 ---------------------------------------------------------------------------
    def finish(self, prepared: Prepared, xgb_probability: float | None) -> StageOutput:
        window = prepared.window
        score = self._held(
            window.start,
            combine(prepared.stream_score, xgb_probability, self.config.anomaly_threshold),
            window.values,
        )
        decision = self.config.recommender.recommend(
            self.recommender_state, self._scaling_inputs(window, prepared.bands, score)
        )
        return StageOutput(
            forecast=self._forecast_record(window, prepared.bands),
            anomaly=self._anomaly_record(window, score),
            recommendation=self._recommendation_record(window, decision),
            decision=decision,
        )

    def _held(self, t: float, score: CombinedScore, values: dict[str, float] | None = None) -> CombinedScore:
        """Hold a detection while its incident lasts, and at least ``anomaly_hold`` seconds of event time.

        The detector scores the onset of an incident and then suppresses re-alarms (what NAB rewards),
        so its raw score flickers and then falls silent during a long incident; operators, alert rules
        with ``for:`` and the no-scale-down-during-an-anomaly rule need one incident, not a flicker. A
        detection is held for ``anomaly_hold`` seconds, and beyond that while the ``values`` of the
        features that contributed stay outside the band that was normal before the onset, for at most
        ``anomaly_adapt`` seconds from it (:class:`models.incident.IncidentTracker`). The score itself
        is reported as it is; ``is_anomaly`` and ``severity`` are held.
        """
        if score.is_anomaly:
            if t >= self.alarm_until or _SEVERITY_RANK[score.severity] > _SEVERITY_RANK[self.alarm_severity]:
                self.alarm_severity = score.severity
            self.alarm_until = t + self.config.anomaly_hold
            if values is not None:
                # the detector has not learned this window yet: its slow statistics are pre-onset
                features = [f for f, c in score.contributions if c > 0]
                normals = {f: n for f in features if (n := learned_normal(self.detector, f)) is not None}
                self.incident.detected(t, values, features, normals)
            return score
        if t < self.alarm_until or (values is not None and self.incident.holds(t, values)):
            return dataclasses.replace(score, is_anomaly=True, severity=self.alarm_severity)
        return score

    def _scaling_inputs(
        self, window: AlignedWindow, bands: dict[str, dict[int, Interval]], score: CombinedScore
    ) -> ScalingInputs:
        def by_seconds(name: str) -> dict[int, Interval]:
            return bands.get(name) or {}

        values = window.values
        return ScalingInputs(
            now=window.start,
            current_replicas=self.replicas,
            cpu_now=values.get(CPU),
            memory_now=values.get(MEMORY),
            cpu_forecast=by_seconds(CPU),
            memory_forecast=by_seconds(MEMORY),
            anomaly_score=score.score,
            is_anomaly=score.is_anomaly,
            db_cpu=values.get(DB_CPU),
            db_connections=values.get(DB_CONNECTIONS),
            recurring_load=self.recurrence.forecast(window.start, self.config.lookahead_steps),
            recurring_ceiling=self.recurrence.ceiling(window.start, self.config.lookahead_steps),
            periodic_growth=self.periodic.growth(window.start, self.config.lookahead_steps),
        )

    def _forecast_record(
        self, window: AlignedWindow, bands: dict[str, dict[int, Interval]]
    ) -> ForecastRecord:
        horizons = []
        for label, seconds in HORIZONS.items():
            parts: dict[str, Band] = {}
            for name, series in bands.items():
                iv = series[seconds]
                parts[name] = Band(point=iv.point, lower=iv.lower, upper=iv.upper)
            horizons.append(
                HorizonForecast(
                    horizon=label,  # type: ignore[arg-type]
                    seconds=seconds,
                    timestamp=_ts(window.start + seconds),
                    **parts,
                )
            )
        return ForecastRecord(
            namespace=self.namespace,
            deployment=self.deployment,
            timestamp=_ts(window.start),
            model="baseline",
            level=self.config.level,
            observed=Metrics(**{k: v for k, v in window.values.items() if k in FEATURES}),
            horizons=horizons,
        )

    def _anomaly_record(self, window: AlignedWindow, score: CombinedScore) -> AnomalyRecord:
        return AnomalyRecord(
            namespace=self.namespace,
            deployment=self.deployment,
            timestamp=_ts(window.start),
            anomaly_score=score.score,
            is_anomaly=score.is_anomaly,
            threshold=self.config.anomaly_threshold,
            severity=score.severity,
            contributing_features=[
                FeatureContribution(feature=f, contribution=c) for f, c in score.contributions
            ],
            detector=dict(score.parts),
        )

    def _recommendation_record(self, window: AlignedWindow, decision: Decision) -> RecommendationRecord:
        return RecommendationRecord(
            namespace=self.namespace,
            deployment=self.deployment,
            timestamp=_ts(window.start),
            current_replicas=self.replicas,
            recommended_replicas=decision.target_replicas,
            recommendations=advice_items(decision),
            summary=decision.summary,
            evidence=decision.evidence,
        )

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "ns": self.namespace,
            "dep": self.deployment,
            "align": self.aligner.to_dict(),
            "fc": {name: f.to_dict() for name, f in self.forecasters.items()},
            "det": self.detector.to_dict(),
            "rec": self.recommender_state.to_dict(),
            "recur": self.recurrence.to_dict(),
            "periodic": self.periodic.to_dict(),
            "replicas": self.replicas,
            "alarm": [self.alarm_until if math.isfinite(self.alarm_until) else None, self.alarm_severity],
            "incident": self.incident.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: PipelineConfig) -> DeploymentPipeline:
        """Restore a pipeline; state of another layout version starts afresh (it is relearned)."""
        pipe = cls(d["ns"], d["dep"], config)
        if d.get("v") != STATE_VERSION:
            return pipe
        pipe.aligner = TumblingAligner.from_dict(
            d["align"], step_seconds=config.step_seconds, grace_seconds=config.grace_seconds
        )
        # A model saved under another HELIOS_FORECASTER / HELIOS_DETECTOR starts afresh.
        pipe.forecasters.update(
            {
                name: restore_forecaster(fd)
                for name, fd in d["fc"].items()
                if _saved_by(fd, "river_forecaster", config.forecaster)
            }
        )
        if _saved_by(d["det"], "river_detector", config.detector):
            pipe.detector = restore_detector(d["det"])
        pipe.recommender_state = RecommenderState.from_dict(d["rec"])
        if "recur" in d:  # state saved before the recurring-load model starts it afresh
            pipe.recurrence = RecurringLoad.from_dict(d["recur"])
        if "periodic" in d:  # state saved before the periodic-load model starts it afresh
            pipe.periodic = PeriodicLoad.from_dict(d["periodic"])
        pipe.replicas = d.get("replicas")
        until, severity = d.get("alarm") or (None, "normal")
        pipe.alarm_until = -math.inf if until is None else float(until)
        pipe.alarm_severity = _SEVERITIES.get(severity, "normal")
        if isinstance(d.get("incident"), dict):  # state saved before the incident tracker has none
            pipe.incident.load(d["incident"])
        return pipe


def online_models(config: PipelineConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """What ``/models`` reports of the online models: ``baseline`` (the forecaster) and ``detector``,
    each as (class path, constructor parameters)."""
    return {"baseline": describe(config.new_forecaster()), "detector": describe(config.new_detector())}


def _saved_by(state: dict[str, Any], key: str, spec: ModelSpec) -> bool:
    """Whether a model's state was saved by the model ``spec`` names (a River model records its name)."""
    saved = state.get(key)
    return spec.is_helios if saved is None else saved == spec.text


def advice_items(decision: Decision) -> list[RecommendationItem]:
    """The recommender's advice as the records' (and ``/recommend``'s) items."""
    return [
        RecommendationItem(
            type=a.type,
            action=a.action,
            target_replicas=a.target_replicas,
            reason=a.reason,
            confidence=a.confidence,
            urgency=a.urgency,
            execute_by=None if a.execute_by is None else _ts(a.execute_by),
        )
        for a in decision.advice
    ]


def score_batch(model: XGBAnomalyModel | None, prepared: Sequence[Prepared]) -> list[float | None]:
    """One XGBoost call for a whole micro-batch (a call's fixed cost is far above a row's)."""
    if model is None or not prepared:
        return [None] * len(prepared)
    # A River detector gives no XGBoost features (an empty row): its samples get no probability.
    scored = [i for i, p in enumerate(prepared) if p.xgb_row]
    out: list[float | None] = [None] * len(prepared)
    if scored:
        rows = np.asarray([prepared[i].xgb_row for i in scored], dtype=np.float32)
        for i, probability in zip(scored, model.predict_batch(rows), strict=True):
            out[i] = float(probability)
    return out
