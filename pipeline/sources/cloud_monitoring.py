"""Cloud Monitoring source: polls ``list_time_series`` every scoring interval.

What is read (project ``GCP_PROJECT_ID``), each aligned to ``HELIOS_SCORING_INTERVAL``
with ``ALIGN_MEAN`` per series:

==================  ========================================================  ======================
feature             metric type                                               across series
==================  ========================================================  ======================
cpu_utilization     kubernetes.io/container/cpu/limit_utilization             mean per deployment
memory_bytes        kubernetes.io/container/memory/used_bytes (*)             mean per deployment
memory_utilization  kubernetes.io/container/memory/limit_utilization (*)      mean per deployment
replicas            kubernetes.io/pod/network/received_bytes_count            pods per deployment
db_cpu              cloudsql.googleapis.com/database/cpu/utilization          mean over instances
db_memory           cloudsql.googleapis.com/database/memory/utilization       mean over instances
db_connections      cloudsql.googleapis.com/database/postgresql/num_backends  sum over databases
==================  ========================================================  ======================

(*) ``memory_type = "non-evictable"`` only: evictable page cache is not pressure.

A deployment is ``resource.labels.namespace_name`` / ``metadata.system_labels.top_level_controller_name``
(the Deployment behind the ReplicaSet behind the pod). Container metrics are averaged over the
deployment's containers (sidecars included); ``replicas`` counts the pods that reported
network traffic in the interval. Cloud SQL metrics are per instance, not per deployment: they
are attached to the configured deployment (``HELIOS_METRICS_NAMESPACE`` /
``HELIOS_METRICS_DEPLOYMENT``), from the instance named by ``cloudsql_instance`` or, if none is
named, combined over all instances of the project. Utilisations are clipped to [0, 1] (a
container can briefly run past its limit).

Every point is stamped with the end of its alignment period. Polls overlap (each reads
``lookback`` seconds, and back to the oldest cursor after an outage) and only points newer
than the per-deployment cursor are emitted; the cursor advances when the runner commits the
batch, i.e. after Kafka acknowledged it, and is optionally kept in a JSON file across
restarts. So: no duplicates across polls, and no gap after a failed poll or a crash.
The newest ``lag`` seconds are not read yet, since Cloud Monitoring is still filling them in.

Transient errors (UNAVAILABLE, DEADLINE_EXCEEDED) are retried with exponential backoff; the
client's pager follows page tokens, so every page is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from pydantic import ValidationError

from models.features import CPU, DB_CONNECTIONS, DB_CPU, DB_MEMORY, MEMORY, MEMORY_BYTES, UTILISATION_FEATURES
from pipeline.errors import ConfigError, SourceError
from pipeline.records import Metrics, MetricSample
from pipeline.settings import Settings
from pipeline.sources.base import Batch

log = logging.getLogger(__name__)

REPLICAS = "replicas"
CONTROLLER_LABEL = "metadata.system_labels.top_level_controller_name"
NAMESPACE_LABEL = "resource.labels.namespace_name"


@dataclass(frozen=True)
class MetricQuery:
    """One ``list_time_series`` call: which metric, how it is reduced, what it feeds."""

    feature: str
    metric_type: str
    resource_type: str
    reducer: str
    aligner: str = "ALIGN_MEAN"
    extra_filter: str = ""
    per_deployment: bool = True


QUERIES: tuple[MetricQuery, ...] = (
    MetricQuery(CPU, "kubernetes.io/container/cpu/limit_utilization", "k8s_container", "REDUCE_MEAN"),
    MetricQuery(
        MEMORY_BYTES,
        "kubernetes.io/container/memory/used_bytes",
        "k8s_container",
        "REDUCE_MEAN",
        extra_filter='metric.labels.memory_type = "non-evictable"',
    ),
    MetricQuery(
        MEMORY,
        "kubernetes.io/container/memory/limit_utilization",
        "k8s_container",
        "REDUCE_MEAN",
        extra_filter='metric.labels.memory_type = "non-evictable"',
    ),
    MetricQuery(
        REPLICAS,
        "kubernetes.io/pod/network/received_bytes_count",
        "k8s_pod",
        "REDUCE_COUNT",
        aligner="ALIGN_RATE",
    ),
    MetricQuery(
        DB_CPU,
        "cloudsql.googleapis.com/database/cpu/utilization",
        "cloudsql_database",
        "REDUCE_MEAN",
        per_deployment=False,
    ),
    MetricQuery(
        DB_MEMORY,
        "cloudsql.googleapis.com/database/memory/utilization",
        "cloudsql_database",
        "REDUCE_MEAN",
        per_deployment=False,
    ),
    MetricQuery(
        DB_CONNECTIONS,
        "cloudsql.googleapis.com/database/postgresql/num_backends",
        "cloudsql_database",
        "REDUCE_SUM",
        per_deployment=False,
    ),
)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_filter(query: MetricQuery, namespaces: list[str] | None, cloudsql_instance: str | None) -> str:
    """The monitoring filter of one query.

    >>> q = QUERIES[0]
    >>> build_filter(q, ["saleor"], None)
    'metric.type = "kubernetes.io/container/cpu/limit_utilization" AND resource.type = "k8s_container" \
AND resource.labels.namespace_name = one_of("saleor")'
    """
    parts = [f"metric.type = {_quote(query.metric_type)}", f"resource.type = {_quote(query.resource_type)}"]
    if query.extra_filter:
        parts.append(query.extra_filter)
    if query.per_deployment and namespaces:
        parts.append(f"resource.labels.namespace_name = one_of({', '.join(_quote(n) for n in namespaces)})")
    if not query.per_deployment and cloudsql_instance:
        parts.append(f"resource.labels.database_id = {_quote(cloudsql_instance)}")
    return " AND ".join(parts)


def _label(mapping: Any, name: str) -> str | None:
    if mapping is None:
        return None
    try:
        value = mapping[name]
    except (KeyError, TypeError):
        return None
    # system_labels is a protobuf Struct: its values may arrive as plain str or Value.
    if hasattr(value, "string_value"):
        value = value.string_value
    return str(value) if value not in (None, "") else None


def _point_value(point: Any) -> float | None:
    value = point.value
    pb = type(value).pb(value) if hasattr(type(value), "pb") else value
    kind = pb.WhichOneof("value")
    if kind == "double_value":
        out = float(pb.double_value)
    elif kind == "int64_value":
        out = float(pb.int64_value)
    else:
        return None
    return out if math.isfinite(out) else None


def _epoch(ts: Any) -> float:
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    return float(ts.seconds) + ts.nanos / 1e9


class CloudMonitoringSource:
    """Polls Cloud Monitoring for the six features of every deployment.

    Parameters
    ----------
    settings
        ``GCP_PROJECT_ID`` (required), ``HELIOS_SCORING_INTERVAL`` (alignment and poll
        period), ``HELIOS_METRICS_NAMESPACE``/``HELIOS_METRICS_DEPLOYMENT`` (who gets the
        Cloud SQL metrics).
    client
        A ``monitoring_v3.MetricServiceClient`` (built with default credentials if omitted).
    namespaces
        Namespaces to read container metrics from; ``None`` reads all.
    cloudsql_instance
        ``project:instance`` of the Cloud SQL instance; ``None`` combines all.
    lag
        Seconds at the recent end not read yet (Cloud Monitoring settles points late).
    lookback
        Seconds each poll reads (overlapping polls; default three intervals).
    backfill
        The most a poll reads back after an outage (older points are given up).
    cursor_path
        JSON file keeping the cursor across restarts (``None``: in memory only).
    retry_initial, retry_maximum, retry_timeout
        Backoff of transient-error retries, in seconds (first wait, longest wait, give-up).
    call_timeout
        Timeout of one RPC.
    """

    name = "cloud-monitoring"

    def __init__(
        self,
        settings: Settings,
        *,
        client: Any | None = None,
        namespaces: list[str] | None = None,
        cloudsql_instance: str | None = None,
        lag: float = 120.0,
        lookback: float | None = None,
        backfill: float = 3600.0,
        cursor_path: Path | None = None,
        page_size: int = 1000,
        retry_initial: float = 1.0,
        retry_maximum: float = 30.0,
        retry_timeout: float = 120.0,
        call_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not settings.gcp_project_id:
            raise ConfigError(
                "GCP_PROJECT_ID is not set: the cloud-monitoring source needs the project to poll"
            )
        interval = float(settings.scoring_interval)
        lookback = 3 * interval if lookback is None else lookback
        if lag < 0:
            raise ValueError(f"lag must be >= 0, got {lag}")
        if lookback < interval:
            raise ValueError(f"lookback must be at least one interval ({interval} s), got {lookback}")
        if backfill < lookback:
            raise ValueError(f"backfill must be >= lookback ({lookback} s), got {backfill}")
        if not 1 <= page_size <= 100_000:
            raise ValueError(f"page_size must be in 1..100000, got {page_size}")
        self.project = settings.gcp_project_id
        self.interval = interval
        self.namespace = settings.metrics_namespace
        self.deployment = settings.metrics_deployment
        self.namespaces = namespaces
        self.cloudsql_instance = cloudsql_instance
        self.lag = lag
        self.lookback = lookback
        self.backfill = backfill
        self.cursor_path = cursor_path
        self.page_size = page_size
        self.call_timeout = call_timeout
        self.retry = gretry.Retry(
            initial=retry_initial,
            maximum=retry_maximum,
            multiplier=2.0,
            predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded),
            timeout=retry_timeout,
        )
        self._client = client
        self._clock = clock
        self._sleep = sleep
        #: Committed: per ``namespace/deployment``, the newest emitted aligned end time (epoch s).
        #: Start of the oldest window read since the last commit: a poll whose batch never
        #: reached Kafka must be read again, even before any cursor exists (kept in the file
        #: too, so a process killed before its first commit is covered after a restart).
        self._uncommitted_from: float | None = None
        self.cursor: dict[str, float] = self._load_cursor()
        self.failed_polls = 0

    # -- cursor ---------------------------------------------------------------------------
    def _load_cursor(self) -> dict[str, float]:
        if self.cursor_path is None or not self.cursor_path.exists():
            return {}
        try:
            data = json.loads(self.cursor_path.read_text())
            pending = data.get("uncommitted_from")
            self._uncommitted_from = float(pending) if pending is not None else None
            return {str(k): float(v) for k, v in data["cursor"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # A broken cursor costs a backfill (duplicates the worker drops), never a crash.
            log.warning(
                "cloud-monitoring cursor %s unreadable (%s); starting with a backfill", self.cursor_path, exc
            )
            return {}

    def _save_cursor(self) -> None:
        if self.cursor_path is None:
            return
        self.cursor_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cursor_path.with_suffix(self.cursor_path.suffix + ".tmp")
        state = {"project": self.project, "cursor": self.cursor, "uncommitted_from": self._uncommitted_from}
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, self.cursor_path)

    def commit_cursor(self, advanced: dict[str, float]) -> None:
        """Advance the cursor to the newest committed time per deployment and persist it."""
        for key, t in advanced.items():
            self.cursor[key] = max(t, self.cursor.get(key, -math.inf))
        horizon = self._clock() - self.backfill - self.lag - self.interval
        # Deployments silent for longer than the backfill can no longer be re-read anyway.
        self.cursor = {k: v for k, v in self.cursor.items() if v >= horizon}
        self._uncommitted_from = None
        self._save_cursor()

    # -- reading --------------------------------------------------------------------------
    def _metric_client(self) -> Any:
        if self._client is None:
            from google.cloud import monitoring_v3

            self._client = monitoring_v3.MetricServiceClient()
        return self._client

    def window(self) -> tuple[float, float]:
        """Start and end (epoch s, aligned) of the next poll."""
        end = math.floor((self._clock() - self.lag) / self.interval) * self.interval
        start = end - self.lookback
        if self.cursor:
            start = min(start, min(self.cursor.values()))
        if self._uncommitted_from is not None:
            start = min(start, self._uncommitted_from)
        start = max(start, end - self.backfill)
        return start, end

    def _request(self, query: MetricQuery, start: float, end: float) -> Any:
        from google.cloud import monitoring_v3
        from google.protobuf import duration_pb2, timestamp_pb2

        aggregation = monitoring_v3.Aggregation(
            alignment_period=duration_pb2.Duration(seconds=int(self.interval)),
            per_series_aligner=getattr(monitoring_v3.Aggregation.Aligner, query.aligner),
            cross_series_reducer=getattr(monitoring_v3.Aggregation.Reducer, query.reducer),
            group_by_fields=[CONTROLLER_LABEL, NAMESPACE_LABEL] if query.per_deployment else [],
        )
        return monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self.project}",
            filter=build_filter(query, self.namespaces, self.cloudsql_instance),
            interval=monitoring_v3.TimeInterval(
                start_time=timestamp_pb2.Timestamp(seconds=int(start)),
                end_time=timestamp_pb2.Timestamp(seconds=int(end)),
            ),
            aggregation=aggregation,
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
            page_size=self.page_size,
        )

    def _list(self, query: MetricQuery, start: float, end: float) -> list[Any]:
        pager = self._metric_client().list_time_series(
            request=self._request(query, start, end), retry=self.retry, timeout=self.call_timeout
        )
        # Iterating the pager fetches every page (it follows next_page_token with the same retry).
        return list(pager)

    def _key_of(self, query: MetricQuery, series: Any) -> str | None:
        if not query.per_deployment:
            return f"{self.namespace}/{self.deployment}"
        namespace = _label(series.resource.labels, "namespace_name")
        controller = _label(series.metadata.system_labels, "top_level_controller_name")
        if not namespace or not controller:
            return None
        return f"{namespace}/{controller}"

    def collect(self, start: float, end: float) -> dict[tuple[str, float], dict[str, float]]:
        """Read every query for ``(start, end]``: ``{(key, aligned end time): {feature: value}}``."""
        rows: dict[tuple[str, float], dict[str, float]] = {}
        for query in QUERIES:
            for series in self._list(query, start, end):
                key = self._key_of(query, series)
                if key is None:
                    continue
                for point in series.points:
                    t = _epoch(point.interval.end_time)
                    value = _point_value(point)
                    if value is None or not start < t <= end:
                        continue
                    if query.feature in UTILISATION_FEATURES:
                        value = min(max(value, 0.0), 1.0)
                    rows.setdefault((key, t), {})[query.feature] = value
        return rows

    def to_samples(self, rows: dict[tuple[str, float], dict[str, float]]) -> list[MetricSample]:
        """Samples newer than the cursor, oldest first."""
        out: list[MetricSample] = []
        for (key, t), values in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if t <= self.cursor.get(key, -math.inf):
                continue
            features = {k: v for k, v in values.items() if k != REPLICAS}
            if not features:
                continue
            namespace, deployment = key.split("/", 1)
            replicas = values.get(REPLICAS)
            try:
                out.append(
                    MetricSample(
                        namespace=namespace,
                        deployment=deployment,
                        timestamp=datetime.fromtimestamp(t, UTC),
                        metrics=Metrics(**features),
                        replicas=round(replicas) if replicas is not None else None,
                        source="cloud-monitoring",
                    )
                )
            except ValidationError as exc:
                log.warning("cloud-monitoring: %s at %s skipped: %s", key, t, exc.errors()[0]["msg"])
        return out

    async def poll(self) -> Batch:
        """One poll: the samples newer than the cursor, and a commit that advances it."""
        start, end = self.window()
        if self._uncommitted_from is None or start < self._uncommitted_from:
            self._uncommitted_from = start
            self._save_cursor()
        rows = await asyncio.to_thread(self.collect, start, end)
        samples = self.to_samples(rows)
        advanced: dict[str, float] = {}
        for s in samples:
            advanced[s.key] = max(advanced.get(s.key, -math.inf), s.timestamp.timestamp())

        async def commit() -> None:
            self.commit_cursor(advanced)

        log.info("cloud-monitoring poll (%s, %s]: %d new samples", _iso(start), _iso(end), len(samples))
        return Batch(samples, commit)

    async def batches(self) -> AsyncIterator[Batch]:
        log.info("cloud-monitoring source polling project %s every %.0f s", self.project, self.interval)
        while True:
            try:
                yield await self.poll()
            except (gexc.PermissionDenied, gexc.Unauthenticated, gexc.InvalidArgument, gexc.NotFound) as exc:
                raise SourceError(f"cloud-monitoring: project {self.project}: {exc}") from exc
            except gexc.GoogleAPIError as exc:
                # Retries exhausted: skip this poll; the next one re-reads from the cursor.
                self.failed_polls += 1
                log.error("cloud-monitoring poll failed after retries (%s); trying again next interval", exc)
            now = self._clock()
            next_poll = (math.floor((now - self.lag) / self.interval) + 1) * self.interval + self.lag
            await self._sleep(max(0.0, next_poll - now))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()
