"""Records that cross Kafka: the contract between Helios' stages and with other teams.

Every record is a pydantic model serialised as JSON (never pickle). Each carries
``schema_version`` so consumers can reject what they do not understand. The JSON
schemas are published in the README (``helios schema`` prints them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

#: Kubernetes names: DNS-1123 labels (namespaces) and subdomains (deployments).
K8S_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"

# strict: a JSON true/false is not a measurement (lax mode would read it as 1.0/0.0); ints still pass.
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]
#: A Saleor API pod never holds a petabyte; anything above is a unit error upstream.
MemoryBytes = Annotated[float, Field(ge=0.0, le=2**50, allow_inf_nan=False, strict=True)]
Connections = Annotated[float, Field(ge=0.0, le=1_000_000, allow_inf_nan=False, strict=True)]
Namespace = Annotated[str, Field(pattern=K8S_NAME, max_length=63)]
Deployment = Annotated[str, Field(pattern=K8S_NAME, max_length=253)]


def _utc(value: datetime) -> datetime:
    """Naive timestamps are read as UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a count")
    return value


#: An integer count: JSON 3 and 3.0 are both integers (as JSON Schema says), true/false are not.
Count = Annotated[int, BeforeValidator(_not_bool)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metrics(_Record):
    """The six features; any may be missing (a source may only know some)."""

    cpu_utilization: Fraction | None = None
    memory_utilization: Fraction | None = None
    memory_bytes: MemoryBytes | None = None
    db_cpu: Fraction | None = None
    db_memory: Fraction | None = None
    db_connections: Connections | None = None

    def present(self) -> dict[str, float]:
        """The features that have a value."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class MetricSample(_Record):
    """One observation of one deployment, as the ingesters put it on ``helios.metrics``.

    The Kafka key is ``namespace/deployment``; ``timestamp`` is event time.
    """

    schema_version: Literal[1] = 1
    namespace: Namespace
    deployment: Deployment
    timestamp: UtcDatetime
    metrics: Metrics
    replicas: Annotated[Count, Field(ge=0, le=10_000)] | None = None
    source: Annotated[str, Field(max_length=64)] | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.deployment}"


class Band(_Record):
    """A point forecast with its prediction interval at the record's nominal level."""

    point: float
    lower: float
    upper: float


class HorizonForecast(_Record):
    horizon: Literal["5m", "15m", "30m", "60m"]
    seconds: int
    timestamp: UtcDatetime
    cpu_utilization: Band | None = None
    memory_utilization: Band | None = None


class ForecastRecord(_Record):
    """What the forecast stage publishes on ``helios.forecasts`` for every sample."""

    schema_version: Literal[1] = 1
    namespace: str
    deployment: str
    timestamp: UtcDatetime
    model: str
    level: float = Field(description="Nominal coverage of every band, e.g. 0.9")
    observed: Metrics
    horizons: list[HorizonForecast]


class FeatureContribution(_Record):
    feature: str
    contribution: float


Severity = Literal["normal", "warning", "critical"]


class AnomalyRecord(_Record):
    """What the anomaly stage publishes on ``helios.anomalies`` for every sample."""

    schema_version: Literal[1] = 1
    namespace: str
    deployment: str
    timestamp: UtcDatetime
    anomaly_score: float
    is_anomaly: bool
    threshold: float
    severity: Severity
    contributing_features: list[FeatureContribution]
    detector: dict[str, float] = Field(
        default_factory=dict, description="The parts the score was combined from (streaming σ, XGBoost p)"
    )


Action = Literal["scale_up", "scale_down", "hold"]
Urgency = Literal["low", "medium", "high", "critical"]


class RecommendationItem(_Record):
    """One recommendation, in the design's ``/recommend`` shape."""

    type: Literal["scaling", "resource", "database"]
    action: str
    target_replicas: int | None = None
    reason: str
    confidence: float = Field(ge=0.0, le=1.0)
    urgency: Urgency
    execute_by: UtcDatetime | None = None


class RecommendationRecord(_Record):
    """What the recommendation stage publishes on ``helios.recommendations``."""

    schema_version: Literal[1] = 1
    namespace: str
    deployment: str
    timestamp: UtcDatetime
    current_replicas: int | None
    recommended_replicas: int
    recommendations: list[RecommendationItem]
    summary: str
    evidence: dict[str, object] = Field(
        default_factory=dict, description="Inputs, forecast, band, rule applied and anomaly context"
    )


class DeadLetter(_Record):
    """A record Helios could not use, with enough to replay or debug it."""

    schema_version: Literal[1] = 1
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: str | None
    value_b64: str = Field(description="The original bytes, base64")
    received_at: UtcDatetime
