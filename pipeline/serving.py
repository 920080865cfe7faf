"""Answers to ``/predict``, ``/detect`` and ``/recommend``: plain functions over the models.

A request names a deployment (or gets ``HELIOS_METRICS_NAMESPACE/HELIOS_METRICS_DEPLOYMENT``).
When this worker holds that deployment's live streaming state, the answer uses it; otherwise a
prior answers (a fresh forecaster; for ``/detect`` the priors of :mod:`models.priors`, which also
weigh in while a live deployment has less than a day of history), and ``model_used`` says which.
Nothing here mutates live state: forecasts peek, detectors only score.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np

from models.anomaly import combine
from models.features import CPU, MEMORY
from models.forecast import Interval
from models.priors import LearnedDetector, Prior, blend, points
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


#: Deployments whose learned normals make the fleet prior: a median, which a sample of this many pins
#: down; the web view computes it on the event loop for every warming-up /detect.
FLEET_SAMPLE = 200


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
    fleet: Iterable[LearnedDetector] = (),
) -> DetectResponse:
    """Score the request against the live state, blended toward priors while it is young.

    ``fleet`` are the detectors of the other deployments this worker owns: their learned normals are
    the prior for counts and sizes (:mod:`models.priors`). The XGBoost part needs a detector state to
    build its features, so an answer from priors alone goes without it; while the live state is young
    the XGBoost part modulates the score in proportion to the live state's weight.
    """
    values = req.metrics.present()
    maturity = max(1, 86400 // config.step_seconds)  # a day of points, as the detector's daily profile
    detector = live.detector if live is not None else None
    young = detector is None or any(points(detector, f) < maturity for f in values)
    prior = Prior()
    if young:
        known = (d for d in fleet if any(points(d, f) >= maturity for f in d.features))
        prior = Prior.from_fleet(itertools.islice(known, FLEET_SAMPLE), maturity)
    stream, prior_weight = blend(detector, prior, values, maturity)
    probability = None
    features = detector.xgb_features(values) if xgb is not None and detector is not None else []
    if xgb is not None and features:  # a River detector has none (see stages.score_batch)
        p = float(xgb.predict_batch(np.asarray([features], dtype=np.float32))[0])
        probability = 0.5 + (1.0 - prior_weight) * (p - 0.5)  # 0.5 leaves the score as it is
    score = combine(stream, probability, config.anomaly_threshold)
    fleet_size = max((n.size for n in prior.fleet.values()), default=0)
    source = f"prior from a fleet of {fleet_size} deployments" if fleet_size else "built-in prior"
    if live is None:
        used = f"{source} (no live state for {key})"
    elif prior_weight > 0:
        used = f"live state of {key}, warming up: blended with a {source}"
    else:
        used = f"live state of {key}"
    return DetectResponse(
        anomaly_score=score.score,
        is_anomaly=score.is_anomaly,
        threshold=config.anomaly_threshold,
        severity=score.severity,
        contributing_features=[
            FeatureContribution(feature=f, contribution=c) for f, c in score.contributions
        ],
        model_used=("streaming+xgboost" if probability is not None else "streaming") + f" ({used})",
        warming_up=prior_weight > 0,
        prior_weight=prior_weight,
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
