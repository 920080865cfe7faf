"""One settings object, parsed once at start-up and passed down.

Sources, highest first: environment variables (the design's names), files named by
``<VAR>_FILE`` for secrets, the ConfigMap's ``config.yaml`` named by ``HELIOS_CONFIG_FILE``,
then the defaults below. Nothing else in Helios reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.durations import parse_duration
from pipeline.errors import ConfigError

#: Where the trained default model ships inside the package.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "artifacts"

#: config.yaml path (section, key) -> environment variable it stands for.
_CONFIG_FILE_KEYS: dict[tuple[str, str], str] = {
    ("service", "port"): "HELIOS_PORT",
    ("service", "log_level"): "HELIOS_LOG_LEVEL",
    ("scoring", "interval_seconds"): "HELIOS_SCORING_INTERVAL",
    ("scoring", "namespace"): "HELIOS_METRICS_NAMESPACE",
    ("scoring", "deployment"): "HELIOS_METRICS_DEPLOYMENT",
    ("thresholds", "cpu_scale_up"): "HELIOS_CPU_SCALE_UP",
    ("thresholds", "cpu_scale_down"): "HELIOS_CPU_SCALE_DOWN",
    ("thresholds", "memory_warning"): "HELIOS_MEMORY_WARNING",
    ("thresholds", "anomaly_sigma"): "HELIOS_ANOMALY_THRESHOLD",
    ("scaling", "min_replicas"): "HELIOS_MIN_REPLICAS",
    ("scaling", "max_replicas"): "HELIOS_MAX_REPLICAS",
    ("scaling", "cooldown_seconds"): "HELIOS_COOLDOWN_SECONDS",
}

_SECRET_VARS = ("HELIOS_KAFKA_SASL_PASSWORD", "HELIOS_API_TOKEN")


def _env(name: str, *more: str) -> Any:
    return Field(validation_alias=AliasChoices(name, *more))


class Settings(BaseModel):
    """Every knob of the worker and the ingester. Field aliases are the environment variables."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    # Service
    port: int = Field(8080, ge=1, le=65535, validation_alias="HELIOS_PORT")
    # Every interface: in a pod the kubelet and Prometheus reach the worker on the pod IP.
    bind: str = Field("0.0.0.0", min_length=1, validation_alias="HELIOS_BIND")  # noqa: S104  # nosec B104
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias="HELIOS_LOG_LEVEL"
    )
    api_token: SecretStr | None = Field(None, validation_alias="HELIOS_API_TOKEN")
    max_body_bytes: int = Field(65536, ge=1024, le=16 * 2**20, validation_alias="HELIOS_MAX_BODY_BYTES")
    max_periods: int = Field(288, ge=1, le=10_000, validation_alias="HELIOS_MAX_PERIODS")
    #: How far back the status page's per-deployment ring reaches (a duration: ``6h``, ``90m``, seconds).
    history: float = Field(6 * 3600.0, ge=0.0, le=7 * 86400.0, validation_alias="HELIOS_HISTORY")

    # Models
    model_path: Path = Field(DEFAULT_MODEL_PATH, validation_alias="HELIOS_MODEL_PATH")
    model_refresh_interval: float = Field(
        3600.0, ge=1.0, le=7 * 86400, validation_alias="HELIOS_MODEL_REFRESH_INTERVAL"
    )
    #: The online models by name (models/spec.py): ``helios`` or a River class path with literal arguments.
    forecaster: str = Field("helios", min_length=1, max_length=2000, validation_alias="HELIOS_FORECASTER")
    detector: str = Field("helios", min_length=1, max_length=2000, validation_alias="HELIOS_DETECTOR")

    # What is watched
    metrics_namespace: str = Field("saleor", min_length=1, validation_alias="HELIOS_METRICS_NAMESPACE")
    metrics_deployment: str = Field("saleor-api", min_length=1, validation_alias="HELIOS_METRICS_DEPLOYMENT")
    gcp_project_id: str | None = Field(None, validation_alias="GCP_PROJECT_ID")
    scoring_interval: int = Field(60, ge=1, le=3600, validation_alias="HELIOS_SCORING_INTERVAL")

    # Thresholds
    cpu_scale_up: float = Field(0.80, gt=0.0, le=1.0, validation_alias="HELIOS_CPU_SCALE_UP")
    cpu_scale_down: float = Field(0.20, ge=0.0, lt=1.0, validation_alias="HELIOS_CPU_SCALE_DOWN")
    memory_warning: float = Field(0.85, gt=0.0, le=1.0, validation_alias="HELIOS_MEMORY_WARNING")
    anomaly_threshold: float = Field(2.5, gt=0.0, le=100.0, validation_alias="HELIOS_ANOMALY_THRESHOLD")
    anomaly_hold: float = Field(300.0, ge=0.0, le=86400.0, validation_alias="HELIOS_ANOMALY_HOLD")
    #: Seconds after an incident's onset at which a persisting level shift becomes the new normal.
    anomaly_adapt: float = Field(3600.0, ge=0.0, le=7 * 86400.0, validation_alias="HELIOS_ANOMALY_ADAPT")

    # Scaling policy
    min_replicas: int = Field(1, ge=1, le=10_000, validation_alias="HELIOS_MIN_REPLICAS")
    max_replicas: int = Field(10, ge=1, le=10_000, validation_alias="HELIOS_MAX_REPLICAS")
    #: No scale-down within this long of the last change. Longer than KEDA's 300 s window: a burst's
    #: replicas are held through the steps after it instead of released and asked for again (the
    #: default was chosen by cross-fitting, benchmarks/simulate.md).
    cooldown_seconds: float = Field(900.0, ge=0.0, le=86400.0, validation_alias="HELIOS_COOLDOWN_SECONDS")
    startup_seconds: float = Field(60.0, ge=0.0, le=3600.0, validation_alias="HELIOS_POD_STARTUP_SECONDS")
    #: The bands' nominal two-sided coverage and, through :attr:`sizing_quantile`, the recommender's.
    risk_level: float = Field(0.9, ge=0.75, lt=1.0, validation_alias="HELIOS_RISK_LEVEL")

    # Stream hygiene
    stale_after: float = Field(600.0, ge=1.0, le=7 * 86400, validation_alias="HELIOS_STALE_AFTER")
    late_grace: float | None = Field(None, ge=0.0, le=86400.0, validation_alias="HELIOS_LATE_GRACE")
    max_future_skew: float = Field(300.0, ge=0.0, le=86400.0, validation_alias="HELIOS_MAX_FUTURE_SKEW")
    max_sample_age: float = Field(
        31 * 86400.0, ge=60.0, le=10 * 365 * 86400.0, validation_alias="HELIOS_MAX_SAMPLE_AGE"
    )
    max_deployments: int = Field(20_000, ge=1, le=10_000_000, validation_alias="HELIOS_MAX_DEPLOYMENTS")
    idle_ttl: float = Field(86400.0, ge=60.0, le=365 * 86400.0, validation_alias="HELIOS_IDLE_TTL")
    #: A deployment's state goes to the changelog after this many samples, or ``snapshot_max_age`` seconds
    #: after the first unsaved one; in between, a crash or a takeover replays the input since the last write.
    snapshot_every: int = Field(10, ge=1, le=10_000, validation_alias="HELIOS_SNAPSHOT_EVERY")
    snapshot_max_age: float = Field(300.0, ge=1.0, le=86400.0, validation_alias="HELIOS_SNAPSHOT_MAX_AGE")

    # Kafka
    app_id: str = Field("helios", pattern=r"^[A-Za-z0-9._-]+$", validation_alias="HELIOS_APP_ID")
    kafka_bootstrap: str = Field("127.0.0.1:9092", min_length=3, validation_alias="HELIOS_KAFKA_BOOTSTRAP")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias="HELIOS_KAFKA_SECURITY_PROTOCOL"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias="HELIOS_KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str | None = Field(None, validation_alias="HELIOS_KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias="HELIOS_KAFKA_SASL_PASSWORD")
    kafka_ssl_cafile: Path | None = Field(None, validation_alias="HELIOS_KAFKA_SSL_CAFILE")
    kafka_ssl_certfile: Path | None = Field(None, validation_alias="HELIOS_KAFKA_SSL_CERTFILE")
    kafka_ssl_keyfile: Path | None = Field(None, validation_alias="HELIOS_KAFKA_SSL_KEYFILE")
    topic_partitions: int = Field(8, ge=1, le=10_000, validation_alias="HELIOS_TOPIC_PARTITIONS")
    topic_replicas: int = Field(1, ge=1, le=7, validation_alias="HELIOS_TOPIC_REPLICAS")
    topic_metrics: str = Field(
        "helios.metrics", pattern=r"^[A-Za-z0-9._-]+$", validation_alias="HELIOS_TOPIC_METRICS"
    )
    topic_forecasts: str = Field(
        "helios.forecasts", pattern=r"^[A-Za-z0-9._-]+$", validation_alias="HELIOS_TOPIC_FORECASTS"
    )
    topic_anomalies: str = Field(
        "helios.anomalies", pattern=r"^[A-Za-z0-9._-]+$", validation_alias="HELIOS_TOPIC_ANOMALIES"
    )
    topic_recommendations: str = Field(
        "helios.recommendations",
        pattern=r"^[A-Za-z0-9._-]+$",
        validation_alias="HELIOS_TOPIC_RECOMMENDATIONS",
    )
    topic_dlq: str = Field("helios.dlq", pattern=r"^[A-Za-z0-9._-]+$", validation_alias="HELIOS_TOPIC_DLQ")
    data_dir: Path = Field(Path(".helios-data"), validation_alias="HELIOS_DATA_DIR")
    broker_session_timeout: float = Field(
        30.0, ge=6.0, le=300.0, validation_alias="HELIOS_BROKER_SESSION_TIMEOUT"
    )
    batch_size: int = Field(500, ge=1, le=100_000, validation_alias="HELIOS_BATCH_SIZE")
    #: Seconds from a stop signal to the worker's exit at the latest (pipeline/shutdown.py). Below the
    #: pod's terminationGracePeriodSeconds, so Kubernetes never has to kill it.
    shutdown_timeout: float = Field(8.0, ge=1.0, le=600.0, validation_alias="HELIOS_SHUTDOWN_TIMEOUT")

    @field_validator("forecaster")
    @classmethod
    def _forecaster_spec(cls, value: str) -> str:
        from models.spec import forecaster_spec

        return forecaster_spec(value).text

    @field_validator("detector")
    @classmethod
    def _detector_spec(cls, value: str) -> str:
        from models.spec import detector_spec

        return detector_spec(value).text

    @field_validator("history", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value.strip() if isinstance(value, str) else value)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.history and self.history < self.scoring_interval:
            raise ValueError(
                f"HELIOS_HISTORY ({self.history:g} s) must be 0 (no history) or at least "
                f"HELIOS_SCORING_INTERVAL ({self.scoring_interval} s)"
            )
        if self.cpu_scale_down >= self.cpu_scale_up:
            raise ValueError(
                f"HELIOS_CPU_SCALE_DOWN ({self.cpu_scale_down}) must be below "
                f"HELIOS_CPU_SCALE_UP ({self.cpu_scale_up})"
            )
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"HELIOS_MIN_REPLICAS ({self.min_replicas}) must not exceed "
                f"HELIOS_MAX_REPLICAS ({self.max_replicas})"
            )
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "HELIOS_KAFKA_SECURITY_PROTOCOL is "
                f"{self.kafka_security_protocol}: set HELIOS_KAFKA_SASL_MECHANISM, "
                "HELIOS_KAFKA_SASL_USERNAME and HELIOS_KAFKA_SASL_PASSWORD"
            )
        return self

    @property
    def grace_seconds(self) -> float:
        """How late a sample may be and still be merged into its window (default: one interval)."""
        return float(self.scoring_interval) if self.late_grace is None else self.late_grace

    @property
    def sizing_quantile(self) -> float:
        """The one-sided forecast quantile the recommender sizes on: ``2 * risk_level - 1``.

        A deployment then runs above the threshold after scaling with twice the chance that an outcome
        falls outside the band (0.9 -> the 80th percentile, 0.95 -> the 90th).

        >>> load_settings({"HELIOS_RISK_LEVEL": "0.95"}).sizing_quantile
        0.9
        """
        return round(2 * self.risk_level - 1, 9)

    @property
    def horizon_steps(self) -> dict[str, int]:
        """Published horizons to the nearest aligned step (at least one): the steps whose accuracy the
        gauges report. The forecasts themselves are made at the horizons' seconds (see
        :meth:`models.forecast.OnlineForecaster.forecast_seconds`)."""
        from models.features import HORIZONS

        return {label: max(1, round(sec / self.scoring_interval)) for label, sec in HORIZONS.items()}


def _from_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"HELIOS_CONFIG_FILE={path}: cannot read it ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"HELIOS_CONFIG_FILE={path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"HELIOS_CONFIG_FILE={path}: expected a mapping of sections, got {type(data).__name__}"
        )
    out: dict[str, Any] = {}
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"HELIOS_CONFIG_FILE={path}: section {section!r} must be a mapping")
        for key, value in values.items():
            var = _CONFIG_FILE_KEYS.get((section, key))
            if var is None:
                raise ConfigError(f"HELIOS_CONFIG_FILE={path}: unknown setting {section}.{key}")
            out[var] = value
    return out


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from an environment (``os.environ`` by default).

    Raises :class:`ConfigError` naming the variable when a value is missing or out of range.

    >>> s = load_settings({"HELIOS_SCORING_INTERVAL": "30"})
    >>> s.scoring_interval, s.port
    (30, 8080)
    >>> load_settings({"HELIOS_CPU_SCALE_UP": "1.5"})
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: HELIOS_CPU_SCALE_UP=1.5: Input should be less than or equal to 1
    """
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    config_file = env.get("HELIOS_CONFIG_FILE")
    if config_file:
        values.update(_from_config_file(Path(config_file)))
    for var in _SECRET_VARS:
        file_var = f"{var}_FILE"
        if env.get(file_var) and var not in env:
            try:
                env[var] = Path(env[file_var]).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{file_var}={env[file_var]}: cannot read it ({exc.strerror})") from exc
    values.update({k: v for k, v in env.items() if k.startswith("HELIOS_") or k == "GCP_PROJECT_ID"})
    values.pop("HELIOS_CONFIG_FILE", None)
    for var in _SECRET_VARS:
        values.pop(f"{var}_FILE", None)
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, values)) from None


def _describe(exc: ValidationError, values: Mapping[str, Any]) -> str:
    parts = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        name = str(loc[0]) if loc else ""
        field = Settings.model_fields.get(name)
        alias = field.validation_alias if field is not None else None
        var = alias if isinstance(alias, str) else name
        msg = err["msg"].removeprefix("Value error, ")
        if var and var in values and "SECRET" not in var and "PASSWORD" not in var and "TOKEN" not in var:
            parts.append(f"{var}={values[var]}: {msg}")
        elif var:
            parts.append(f"{var}: {msg}")
        else:
            parts.append(msg)
    return "; ".join(parts)
