"""The Faust application factory: ``create_app(settings) -> faust.App``, no import-time side effects.

Everything a worker needs is built here from one :class:`Settings` and handed down: the metrics
bundle on an injected registry, the model store, the per-worker :class:`Runtime`, the topics,
the state table with its changelog and the web views; the agents are attached by the ``wire`` the
composition root hands in.
"""

from __future__ import annotations

import gc
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from pipeline import status_page, web
from pipeline.kafka_config import kafka_client_kwargs
from pipeline.logs import quiet_client_loggers
from pipeline.metrics import HeliosMetrics
from pipeline.model_store import ModelStore
from pipeline.output import BatchSender
from pipeline.prophet_service import ProphetService
from pipeline.readiness import Readiness
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.shutdown import StopDeadline
from pipeline.stages import online_models
from pipeline.topics import ensure_topics

log = logging.getLogger(__name__)

STATE_TABLE = "helios-state"

#: Linger of Faust's producer, which writes the state table's changelog (the outputs go through
#: pipeline.output). Without one, every record leaves in its own produce request, a socket write each;
#: a long one holds back every batch's flush, which waits it out (figures in benchmarks/perf.md).
PRODUCER_LINGER_MS = 5


@dataclass
class Helios:
    """What the agents and views share; one per app (``app.helios``)."""

    settings: Settings
    app: HeliosApp
    registry: CollectorRegistry
    metrics: HeliosMetrics
    models: ModelStore
    runtime: Runtime
    metrics_topic: Any
    #: Sends the output and dead-letter records (the state table's changelog goes through Faust).
    output: BatchSender
    state: Any
    prophet: ProphetService
    clock: Callable[[], float]
    #: Updated by the agents' services, read by /ready.
    readiness: Readiness

    def online_model_metrics(self) -> dict[str, dict[str, float]]:
        """Live accuracy of the online models over the deployments this worker holds (for /models)."""
        errors, coverage = [], []
        for entry in self.runtime.entries.values():
            for forecaster in entry.pipeline.forecasters.values():
                for mae, cov in forecaster.accuracy().values():
                    errors.append(mae)
                    coverage.append(cov)
        baseline = {"deployments": float(len(self.runtime.entries))}
        if errors:
            baseline |= {"mae": sum(errors) / len(errors), "coverage": sum(coverage) / len(coverage)}
        return {"baseline": baseline, "prophet": self.prophet.metrics()}


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def _credentials(settings: Settings) -> Any:
    kwargs = kafka_client_kwargs(settings)
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kwargs["sasl_plain_username"],
            password=kwargs["sasl_plain_password"],
            mechanism=kwargs["sasl_mechanism"],
            ssl_context=kwargs.get("ssl_context"),
        )
    if protocol == "SSL":
        return faust.SSLCredentials(kwargs["ssl_context"])
    return None


def tune_gc() -> None:
    """Collect cycles rarely, and never scan what start-up built.

    Everything built so far (modules, models, settings) lives as long as the process: ``gc.freeze``
    keeps it out of the cyclic collector's passes. A sample allocates a few hundred short-lived,
    acyclic objects, and at CPython's default threshold (700 allocations) the young collections and
    the full ones they trigger cost ~20 % of a sample's CPU at 1,000 deployments, more with more
    (``pipeline.bench.inproc`` measures with this setting, like the worker), and a full pass
    over thousands of deployments' state stalled the web view.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class HeliosApp(faust.App):
    """A Faust app that creates its topics (with the configured partition count) before it subscribes."""

    helios: Helios

    async def on_first_start(self) -> None:
        await super().on_first_start()
        tune_gc()
        # Faust's worker has set logging up by now; rate-limit the Kafka client's retry storms.
        quiet_client_loggers(self.helios.settings.log_level)
        await ensure_topics(self.helios.settings)

    async def on_stop(self) -> None:
        await super().on_stop()  # stops the consumer first: no batch is published after this
        await self.helios.output.stop()


class HeliosWorker(faust.Worker):
    """Faust's worker with a stop deadline: whatever holds the stop up, the process ends in time."""

    def __init__(self, app: faust.App, deadline: StopDeadline, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.deadline = deadline

    async def on_stop(self) -> None:
        # The first thing a stop does, whether a signal or a crash asked for it.
        self.deadline.arm()
        await super().on_stop()


def _faust_app(settings: Settings) -> HeliosApp:
    """The Faust app with Helios's broker, topic, web and delivery settings; no agents yet."""
    return HeliosApp(
        settings.app_id,
        broker=_broker_urls(settings.kafka_bootstrap),
        broker_credentials=_credentials(settings),
        store="memory://",
        autodiscover=False,
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replicas,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=PRODUCER_LINGER_MS,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout / 3),
        table_cleanup_interval=30.0,
        web_enabled=True,
        web_port=settings.port,
        web_bind=settings.bind,
        web_host=socket.gethostname() if settings.bind in ("0.0.0.0", "::") else settings.bind,  # noqa: S104  # nosec B104
        web_transport="tcp://",
        web_application_options=web.application_options(settings),
        logging_config=None,
        loghandlers=[],
    )


def create_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
    wire: Callable[[faust.App, Helios], None] | None = None,
) -> faust.App:
    """Build a worker. Nothing connects until the app is started.

    ``wire`` attaches the agents and the worker's services: the composition root (the CLI's ``worker``
    command) passes :func:`agents.wire`; ``pipeline`` itself never imports ``agents``.
    """
    registry = CollectorRegistry() if registry is None else registry
    app = _faust_app(settings)
    metrics = HeliosMetrics.create(registry, clock=clock)
    metrics.anomaly_threshold.set(settings.anomaly_threshold)
    metrics.forecast_level.set(settings.risk_level)
    models = ModelStore(settings.model_path, metrics, clock=clock)
    runtime = Runtime(settings, metrics, models, clock=clock)
    models.online = online_models(runtime.config)
    prophet = ProphetService(
        runtime.config, f"{settings.metrics_namespace}/{settings.metrics_deployment}", clock=clock
    )
    runtime.on_window_closed = prophet.observe
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    helios = Helios(
        settings=settings,
        app=app,
        registry=registry,
        metrics=metrics,
        models=models,
        runtime=runtime,
        metrics_topic=app.topic(settings.topic_metrics, **raw),
        output=BatchSender(kafka_client_kwargs(settings)),
        state=app.Table(
            STATE_TABLE,
            default=None,
            partitions=settings.topic_partitions,
            schema=faust.Schema(key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw"),
            help="Per-deployment aligner, forecasters, detector and recommender state (JSON)",
        ),
        prophet=prophet,
        clock=clock,
        readiness=Readiness(model_path=str(settings.model_path), broker=settings.kafka_bootstrap),
    )
    app.helios = helios
    if wire is not None:
        wire(app, helios)
    web.blueprint.register(app)
    status_page.blueprint.register(app)
    return app
