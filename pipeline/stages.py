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
from models.forecast import Interval, OnlineForecaster
from models.recommender import Decision, Recommender, RecommenderState, ScalingInputs
from models.recurrence import PeriodicLoad, RecurringLoad
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

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            step_seconds=settings.scoring_interval,
            grace_seconds=settings.grace_seconds,
            level=settings.risk_level,
            horizon_steps=settings.horizon_steps,
            anomaly_threshold=settings.anomaly_threshold,
            anomaly_hold=settings.anomaly_hold,
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
        """The distinct steps ahead of the published horizons, ascending."""
        return sorted(set(self.horizon_steps.values()))

    def new_forecaster(self) -> OnlineForecaster:
        steps = sorted(set(self.horizon_steps.values()) | {1})
        return OnlineForecaster(step_seconds=self.step_seconds, level=self.level, calibrated_steps=steps)

    def new_recurrence(self) -> RecurringLoad:
        return RecurringLoad(step_seconds=self.step_seconds)

    def new_periodic(self) -> PeriodicLoad:
        return PeriodicLoad(step_seconds=self.step_seconds)

    @property
    def lookahead_steps(self) -> int:
        """Steps ahead whose recurring load a decision covers: the next one, and as many more as a pod's
        start-up spans (at a 60 s step a pod asked for now is ready after the next sample)."""
        return 1 + int(self.recommender.startup_seconds // self.step_seconds)

    def new_detector(self) -> StreamingDetector:
        return StreamingDetector(
            features=FEATURES,
            threshold=self.anomaly_threshold,
            season_length=max(1, 86400 // self.step_seconds),  # the daily profile counts aligned steps
        )


@dataclass(slots=True)
class Prepared:
    """A sample after the streaming parts, waiting for its XGBoost score."""

    sample: MetricSample
    window: AlignedWindow
    closed: AlignedWindow | None
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
    # Window starts and horizons are multiples of the step, shared by every deployment: building the
    # same datetimes again cost ~25 µs per sample.
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
        steps = self.config.published_steps
        bands = {
            name: dict(zip(steps, self.bands(name, steps, (window.start, window.values[name])), strict=True))
            for name in self.forecasters
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
                forecaster.learn_one(closed.start, closed.values[name])
        self.detector.learn_one(closed.values)
        cpu = closed.values.get(CPU)
        if cpu is not None and replicas:
            self.recurrence.learn_one(closed.start, cpu * replicas)
            self.periodic.learn_one(closed.start, cpu * replicas)

    # -- phase 3 ---------------------------------------------------------------------------
    def finish(self, prepared: Prepared, xgb_probability: float | None) -> StageOutput:
        window = prepared.window
        score = self._held(
            window.start, combine(prepared.stream_score, xgb_probability, self.config.anomaly_threshold)
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

    def _held(self, t: float, score: CombinedScore) -> CombinedScore:
        """Hold a detection for ``anomaly_hold`` seconds of event time.

        The detector scores the onset of an incident and then suppresses re-alarms (what NAB rewards),
        so its raw score flickers during a long incident; operators, alert rules with ``for:`` and the
        no-scale-down-during-an-anomaly rule need one incident, not a flicker. The score itself is
        reported as it is; ``is_anomaly`` and ``severity`` are held.
        """
        if score.is_anomaly:
            if t >= self.alarm_until or _SEVERITY_RANK[score.severity] > _SEVERITY_RANK[self.alarm_severity]:
                self.alarm_severity = score.severity
            self.alarm_until = t + self.config.anomaly_hold
            return score
        if t < self.alarm_until:
            return dataclasses.replace(score, is_anomaly=True, severity=self.alarm_severity)
        return score

    def _scaling_inputs(
        self, window: AlignedWindow, bands: dict[str, dict[int, Interval]], score: CombinedScore
    ) -> ScalingInputs:
        def by_seconds(name: str) -> dict[int, Interval]:
            series = bands.get(name)
            if not series:
                return {}
            return {
                steps * self.config.step_seconds: series[steps]
                for steps in self.config.horizon_steps.values()
            }

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
        for label, steps in self.config.horizon_steps.items():
            parts: dict[str, Band] = {}
            for name, series in bands.items():
                iv = series[steps]
                parts[name] = Band(point=iv.point, lower=iv.lower, upper=iv.upper)
            horizons.append(
                HorizonForecast(
                    horizon=label,  # type: ignore[arg-type]
                    seconds=HORIZONS[label],
                    timestamp=_ts(window.start + steps * self.config.step_seconds),
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
        pipe.forecasters = {name: OnlineForecaster.from_dict(fd) for name, fd in d["fc"].items()}
        pipe.detector = StreamingDetector.from_dict(d["det"])
        pipe.recommender_state = RecommenderState.from_dict(d["rec"])
        if "recur" in d:  # state saved before the recurring-load model starts it afresh
            pipe.recurrence = RecurringLoad.from_dict(d["recur"])
        if "periodic" in d:  # state saved before the periodic-load model starts it afresh
            pipe.periodic = PeriodicLoad.from_dict(d["periodic"])
        pipe.replicas = d.get("replicas")
        until, severity = d.get("alarm") or (None, "normal")
        pipe.alarm_until = -math.inf if until is None else float(until)
        pipe.alarm_severity = _SEVERITIES.get(severity, "normal")
        return pipe


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
    """One XGBoost call for a whole micro-batch (a single-row call costs ~300x a row in a batch)."""
    if model is None or not prepared:
        return [None] * len(prepared)
    rows = np.asarray([p.xgb_row for p in prepared], dtype=np.float32)
    return [float(p) for p in model.predict_batch(rows)]
