"""Request and response shapes of the worker's web view, exactly as the design names them.

``/openapi.json`` is generated from these models, so the docs and the fuzzer see the same contract.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.records import (
    Connections,
    Count,
    Deployment,
    FeatureContribution,
    Fraction,
    MemoryBytes,
    Namespace,
    RecommendationItem,
    Severity,
    UtcDatetime,
)

ModelName = Literal["baseline", "prophet", "auto"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricsIn(_Body):
    """The six features in a request: any subset, at least one, no nulls (absent means unknown)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    cpu_utilization: Fraction = None  # type: ignore[assignment]
    memory_utilization: Fraction = None  # type: ignore[assignment]
    memory_bytes: MemoryBytes = None  # type: ignore[assignment]
    db_cpu: Fraction = None  # type: ignore[assignment]
    db_memory: Fraction = None  # type: ignore[assignment]
    db_connections: Connections = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _some(self) -> MetricsIn:
        if not self.present():
            raise ValueError("give at least one of the six features")
        return self

    def present(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class PredictRequest(_Body):
    metrics: MetricsIn
    periods: Count = Field(
        12, ge=1, le=10_000, description="Steps of HELIOS_SCORING_INTERVAL (at most HELIOS_MAX_PERIODS)"
    )
    model: ModelName = "baseline"
    namespace: Namespace | None = None
    deployment: Deployment | None = None


class PredictionPoint(BaseModel):
    period: int
    timestamp: UtcDatetime
    cpu_utilization: float
    memory_utilization: float | None
    confidence_lower: float = Field(description="Lower end of the CPU band at `confidence`")
    confidence_upper: float = Field(description="Upper end of the CPU band at `confidence`")


class PredictResponse(BaseModel):
    predictions: list[PredictionPoint]
    model_used: str = Field(description="Model name and whether live deployment state or a prior was used")
    confidence: float = Field(ge=0.0, le=1.0, description="Nominal coverage of the bands (calibrated online)")


class DetectRequest(_Body):
    metrics: MetricsIn
    namespace: Namespace | None = None
    deployment: Deployment | None = None


class DetectResponse(BaseModel):
    anomaly_score: float
    is_anomaly: bool
    threshold: float
    severity: Severity
    contributing_features: list[FeatureContribution]
    model_used: str | None = None
    warming_up: bool = Field(
        False,
        description="True while the answer leans on priors: no live state for the deployment on any "
        "worker, or a feature with less than a day of history. Utilisations are then judged by their "
        "headroom (one sigma per halving of 1 - u), counts and sizes against the other deployments "
        "this worker watches",
    )
    prior_weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="The priors' share in the most prior-dependent feature's score: 1 = priors only, "
        "0 = live state only (it falls linearly over the first day of a feature's history)",
    )


class CurrentMetrics(_Body):
    cpu_utilization: Fraction | None = None
    memory_utilization: Fraction | None = None
    db_cpu: Fraction | None = None
    db_connections: Connections | None = None


class RecommendRequest(_Body):
    namespace: Namespace
    deployment: Deployment
    current_replicas: Count = Field(ge=0, le=10_000)
    current_metrics: CurrentMetrics
    predicted_metrics: CurrentMetrics
    anomaly_score: float = Field(0.0, ge=0.0, le=1e6, allow_inf_nan=False, strict=True)


class RecommendResponse(BaseModel):
    recommendations: list[RecommendationItem]
    summary: str


class HealthResponse(BaseModel):
    status: Literal["healthy"]
    timestamp: UtcDatetime


class ReadyResponse(BaseModel):
    ready: bool
    models_loaded: list[str]
    reasons: list[str] = Field(default_factory=list, description="Why the worker is not ready, if it is not")


class ModelInfo(BaseModel):
    name: str
    version: str
    loaded_at: UtcDatetime | None
    metrics: dict[str, float]
    #: The online models' class path and constructor parameters (HELIOS_FORECASTER, HELIOS_DETECTOR).
    model_class: str | None = None
    params: dict[str, Any] | None = None


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ErrorDetail(BaseModel):
    field: str | None
    problem: str


class ErrorResponse(BaseModel):
    error: str
    details: list[ErrorDetail] = Field(default_factory=list)


# -- the status page's history (GET /deployments/{namespace}/{deployment}/history) -------------------

Values = list[float | None]


#: The resolution the ring keeps utilisations at (pipeline/history.py), stated in the schema.
_FRACTION = (
    "Utilisation as a fraction, kept at a resolution of 1/250: within 0.002 of the value recorded, "
    "which is first clipped to [0, 1.016]"
)
#: A band end is its point plus its distance from the point, each rounded (pipeline/history.py).
_BAND_END = (
    "Utilisation as a fraction, kept as the point plus the end's distance from it, each at a resolution "
    "of 1/250: within 0.004 of the value recorded, which is first clipped to [0, 1.016]"
)


class HistorySeries(BaseModel):
    """What was observed and decided in each window of ``t`` (null: no sample, or a future window)."""

    cpu_utilization: Values = Field(description=_FRACTION)
    memory_utilization: Values = Field(description=_FRACTION)
    anomaly_score: Values = Field(
        description="σ, kept at a resolution of threshold / 50 (within threshold / 100 of the score), at "
        "most `score_ceiling` (higher scores are shown there)"
    )
    is_anomaly: list[bool | None] = Field(description="Declared anomaly (held for HELIOS_ANOMALY_HOLD)")
    severity: list[Severity | None]
    action: list[Literal["hold", "scale_up", "scale_down"] | None]


class BandHistory(BaseModel):
    """A forecast band: the point at the utilisations' resolution, each end within one step of it."""

    point: Values = Field(description=_FRACTION)
    lower: Values = Field(description=_BAND_END)
    upper: Values = Field(description=_BAND_END)


class HorizonHistory(BaseModel):
    """One horizon's forecasts, each at the window it forecasts (made `seconds` earlier)."""

    seconds: int
    cpu_utilization: BandHistory
    memory_utilization: BandHistory


class ReplicaHistory(BaseModel):
    current: list[int | None]
    recommended: list[int | None]
    reactive_hpa: list[int | None] = Field(description="What a reactive HPA at the same target asks for")


class HorizonAccuracy(BaseModel):
    mae: float = Field(description="Recent mean absolute error (exponentially weighted)")
    coverage: float = Field(description="Recent share of outcomes inside the band")


class HistoryResponse(BaseModel):
    """A deployment's recent windows from its in-memory ring (``HELIOS_HISTORY``); all arrays share `t`."""

    namespace: str
    deployment: str
    generated_at: UtcDatetime
    step_seconds: int
    level: float = Field(description="Nominal coverage of the bands")
    threshold: float = Field(description="Anomaly threshold (σ)")
    score_ceiling: float
    cpu_scale_up: float
    memory_warning: float
    t: list[int] = Field(description="Window starts, epoch seconds; the last ones are future windows")
    series: HistorySeries
    forecast: dict[str, HorizonHistory]
    replicas: ReplicaHistory
    recommendations: list[dict[str, Any]] = Field(
        description="RecommendationRecord: the latest, then the last that scaled or advised, newest first"
    )
    accuracy: dict[str, dict[str, HorizonAccuracy]]
    models: list[ModelInfo]
