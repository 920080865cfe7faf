"""A local gRPC server implementing Cloud Monitoring's ``ListTimeSeries``, for tests.

It serves generated aligned series for a small "cluster" (deployments with pods) and a Cloud
SQL instance, honours the request's interval and alignment period, pages its answer a few
series at a time (``page_size`` overrides the client's), and can fail the next N calls with
UNAVAILABLE. The real ``MetricServiceClient`` talks to it over an insecure channel.
"""

from __future__ import annotations

import math
import re
import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.types import metric_service

SERVICE = "google.monitoring.v3.MetricService"


@dataclass
class FakeDeployment:
    namespace: str
    name: str
    pods: int


def fake_value(metric_type: str, key: str, t: float) -> float:
    """A deterministic value per metric, deployment and aligned time (so tests can recompute it)."""
    phase = (sum(map(ord, key + metric_type)) % 17) / 17
    wave = 0.5 + 0.4 * math.sin(t / 3600 + phase * 6.28)
    if metric_type.endswith("memory/used_bytes"):
        return 300e6 + 100e6 * wave
    if metric_type.endswith("num_backends"):
        return float(round(20 + 10 * wave))
    return round(wave, 6)


@dataclass
class FakeMetricService:
    """The servicer: state the tests configure and inspect."""

    project: str = "test-project"
    deployments: list[FakeDeployment] = field(
        default_factory=lambda: [
            FakeDeployment("saleor", "saleor-api", 3),
            FakeDeployment("saleor", "saleor-worker", 2),
            FakeDeployment("saleor", "dashboard", 1),
        ]
    )
    page_size: int = 1
    fail_next: int = 0
    #: Every request received (the deserialised proto-plus messages).
    requests: list[metric_service.ListTimeSeriesRequest] = field(default_factory=list)
    #: How many calls were answered with UNAVAILABLE.
    failures: int = 0
    #: Only aligned end times <= this (epoch s) exist yet (None: all up to the request end).
    data_until: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _series(self, request: metric_service.ListTimeSeriesRequest) -> list[monitoring_v3.TimeSeries]:
        match = re.search(r'metric\.type = "([^"]+)"', request.filter)
        assert match, f"filter without metric.type: {request.filter}"
        metric_type = match.group(1)
        ns_match = re.search(r"namespace_name = one_of\(([^)]*)\)", request.filter)
        namespaces = re.findall(r'"([^"]+)"', ns_match.group(1)) if ns_match else None
        period = request.aggregation.alignment_period.total_seconds()
        start = request.interval.start_time.timestamp()
        end = request.interval.end_time.timestamp()
        if self.data_until is not None:
            end = min(end, self.data_until)
        first = math.floor(start / period) * period + period
        times = []
        t = first
        while t <= end:
            if t > start:
                times.append(t)
            t += period
        times.reverse()  # Cloud Monitoring answers newest first.
        reducer = request.aggregation.cross_series_reducer
        out = []
        if metric_type.startswith("cloudsql."):
            groups = [("cloudsql", None)]
        else:
            groups = [
                (f"{d.namespace}/{d.name}", d)
                for d in self.deployments
                if namespaces is None or d.namespace in namespaces
            ]
        for key, dep in groups:
            points = []
            for t in times:
                if reducer == monitoring_v3.Aggregation.Reducer.REDUCE_COUNT:
                    assert dep is not None
                    value = monitoring_v3.TypedValue(int64_value=dep.pods)
                else:
                    value = monitoring_v3.TypedValue(double_value=fake_value(metric_type, key, t))
                points.append(
                    monitoring_v3.Point(
                        interval=monitoring_v3.TimeInterval(
                            start_time={"seconds": int(t - period)}, end_time={"seconds": int(t)}
                        ),
                        value=value,
                    )
                )
            series = monitoring_v3.TimeSeries(points=points)
            series.metric.type = metric_type
            if dep is not None:
                series.resource.type = "k8s_container"
                series.resource.labels["namespace_name"] = dep.namespace
                series.metadata.system_labels = {"top_level_controller_name": dep.name}
            else:
                series.resource.type = "cloudsql_database"
            out.append(series)
        return out

    def list_time_series(
        self, request: metric_service.ListTimeSeriesRequest, context: grpc.ServicerContext
    ) -> metric_service.ListTimeSeriesResponse:
        with self._lock:
            self.requests.append(request)
            if self.fail_next > 0:
                self.fail_next -= 1
                self.failures += 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "injected outage")
        series = self._series(request)
        offset = int(request.page_token or 0)
        page = series[offset : offset + self.page_size]
        nxt = offset + self.page_size
        return metric_service.ListTimeSeriesResponse(
            time_series=page, next_page_token=str(nxt) if nxt < len(series) else ""
        )


class FakeMonitoringServer:
    """Runs a :class:`FakeMetricService` on 127.0.0.1 (a free port); use as a context manager."""

    def __init__(self, service: FakeMetricService | None = None) -> None:
        self.service = service or FakeMetricService()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                    self.service.list_time_series,
                    request_deserializer=metric_service.ListTimeSeriesRequest.deserialize,
                    response_serializer=metric_service.ListTimeSeriesResponse.serialize,
                )
            },
        )
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeMonitoringServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait()

    def client(self) -> monitoring_v3.MetricServiceClient:
        """A real client talking to this server with anonymous credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport

        channel = grpc.insecure_channel(self.address)
        # The transport carries the channel; the client then takes no credentials of its own.
        transport = MetricServiceGrpcTransport(channel=channel, credentials=AnonymousCredentials())
        return monitoring_v3.MetricServiceClient(transport=transport)
