"""Answers to ``/predict``, ``/detect`` and ``/recommend``: plain functions over the models.

A request names a deployment (or gets ``HELIOS_METRICS_NAMESPACE/HELIOS_METRICS_DEPLOYMENT``).
When this worker holds that deployment's live streaming state, the answer uses it; otherwise a
prior (a fresh forecaster and a detector warmed on the synthetic Saleor workload) answers, and
``model_used`` says which. Nothing here mutates live state: forecasts peek, detectors only score.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime

import numpy as np

from models.anomaly import StreamingDetector, combine
from models.features import CPU, FEATURES, MEMORY
from models.forecast import Interval
from models.recommender import RecommenderState, ScalingInputs
from models.xgb import XGBAnomalyModel
from pipeline.api import (
    DetectRequest,
    DetectResponse,
    PredictionPoint,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
)
from pipeline.errors import HeliosError
from pipeline.records import FeatureContribution
from pipeline.stages import DeploymentPipeline, PipelineConfig, advice_items

#: Horizon that ``/recommend``'s single ``predicted_metrics`` value is taken to be at.
RECOMMEND_HORIZON_SECONDS = 900


class BadRequest(HeliosError, ValueError):
    """A request that validates but cannot be answered; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str, status: int = 422) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.status = status


@functools.cache
def prior_detector(threshold: float) -> StreamingDetector:
    """A detector that has seen two days of the synthetic Saleor workload (used without live state)."""
    from pipeline.sources.synthetic import synthetic_trace

    detector = StreamingDetector(features=FEATURES, threshold=threshold, season_length=86400 // 300)
    frame = synthetic_trace(n_steps=2 * 86400 // 300, step_seconds=300, seed=7, incident_at=None)
    for row in frame[list(f for f in FEATURES if f in frame.columns)].itertuples(index=False):
        detector.learn_one({k: float(v) for k, v in row._asdict().items() if not math.isnan(v)})
    return detector


def _window_start(now: float, step: int) -> float:
    return math.floor(now / step) * step


def predict(
    req: PredictRequest, live: DeploymentPipeline | None, config: PipelineConfig, now: float, key: str
) -> PredictResponse:
    if req.model != "baseline" and req.model != "auto":
        raise BadRequest("model", f"{req.model} is served through the prophet service", status=409)
    step = config.step_seconds
    t = _window_start(now, step)
    cpu_now = req.metrics.cpu_utilization
    mem_now = req.metrics.memory_utilization
    label = req.model if req.model == "baseline" else "auto->baseline"
    if live is not None:
        pipe, used = live, f"{label} (live state of {key})"
    else:
        if cpu_now is None:
            raise BadRequest(
                "metrics.cpu_utilization", f"required: no live state for {key} on this worker", status=409
            )
        namespace, _, deployment = key.partition("/")
        pipe, used = (
            DeploymentPipeline(namespace, deployment, config),
            f"{label} (prior: no live state for {key})",
        )
    steps = list(range(1, req.periods + 1))
    cpu = pipe.bands(CPU, steps, None if cpu_now is None else (t, cpu_now))
    mem = (
        pipe.bands(MEMORY, steps, None if mem_now is None else (t, mem_now))
        if mem_now is not None or live is not None
        else None
    )
    predictions = [
        PredictionPoint(
            period=i + 1,
            timestamp=datetime.fromtimestamp(t + (i + 1) * step, tz=UTC),
            cpu_utilization=_clip(band.point),
            memory_utilization=None if mem is None else _clip(mem[i].point),
            confidence_lower=_clip(band.lower),
            confidence_upper=_clip(band.upper),
        )
        for i, band in enumerate(cpu)
    ]
    return PredictResponse(predictions=predictions, model_used=used, confidence=config.level)


def _clip(x: float) -> float:
    """Utilisations are fractions of a limit: a band below 0 or above 1 says nothing more."""
    return min(1.0, max(0.0, float(x)))


def detect(
    req: DetectRequest,
    live: DeploymentPipeline | None,
    config: PipelineConfig,
    xgb: XGBAnomalyModel | None,
    key: str,
) -> DetectResponse:
    values = req.metrics.present()
    detector = live.detector if live is not None else prior_detector(config.anomaly_threshold)
    stream = detector.score_one(values)
    probability = None
    features = detector.xgb_features(values) if xgb is not None else []
    if xgb is not None and features:  # a River detector has none (see stages.score_batch)
        probability = float(xgb.predict_batch(np.asarray([features], dtype=np.float32))[0])
    score = combine(stream, probability, config.anomaly_threshold)
    return DetectResponse(
        anomaly_score=score.score,
        is_anomaly=score.is_anomaly,
        threshold=config.anomaly_threshold,
        severity=score.severity,
        contributing_features=[
            FeatureContribution(feature=f, contribution=c) for f, c in score.contributions
        ],
        model_used=("streaming+xgboost" if probability is not None else "streaming")
        + (f" (live state of {key})" if live is not None else f" (prior: no live state for {key})"),
    )


def recommend(req: RecommendRequest, config: PipelineConfig, now: float) -> RecommendResponse:
    def band(value: float | None) -> dict[int, Interval]:
        return {} if value is None else {RECOMMEND_HORIZON_SECONDS: Interval(value, value, value)}

    threshold = config.anomaly_threshold
    inputs = ScalingInputs(
        now=now,
        current_replicas=req.current_replicas,
        cpu_now=req.current_metrics.cpu_utilization,
        memory_now=req.current_metrics.memory_utilization,
        cpu_forecast=band(req.predicted_metrics.cpu_utilization),
        memory_forecast=band(req.predicted_metrics.memory_utilization),
        anomaly_score=req.anomaly_score,
        is_anomaly=req.anomaly_score >= threshold,
        db_cpu=req.current_metrics.db_cpu,
        db_connections=req.current_metrics.db_connections,
    )
    decision = config.recommender.recommend(RecommenderState(), inputs)
    return RecommendResponse(recommendations=advice_items(decision), summary=decision.summary)
