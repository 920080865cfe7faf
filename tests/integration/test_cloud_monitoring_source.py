"""The Cloud Monitoring source through the real google-cloud-monitoring client and a local gRPC server."""

from __future__ import annotations

import asyncio

import pytest
from google.cloud import monitoring_v3

from models.features import FEATURES
from pipeline.records import MetricSample
from pipeline.settings import load_settings
from pipeline.sources.cloud_monitoring import QUERIES, CloudMonitoringSource
from tests.fakes.cloud_monitoring import FakeDeployment, FakeMetricService, FakeMonitoringServer, fake_value

T0 = 1_700_000_030.0
END = (T0 // 60) * 60


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now = now

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def server() -> FakeMonitoringServer:
    with FakeMonitoringServer() as srv:
        yield srv


def make(server: FakeMonitoringServer, t: FakeTime, **kw: object) -> CloudMonitoringSource:
    settings = load_settings({"GCP_PROJECT_ID": "test-project"})
    return CloudMonitoringSource(
        settings,
        client=server.client(),
        namespaces=["saleor"],
        lag=0,
        clock=t.clock,
        sleep=t.sleep,
        retry_initial=0.01,
        retry_maximum=0.05,
        **kw,  # type: ignore[arg-type]
    )


async def test_every_page_is_read_and_values_map_to_their_features(server: FakeMonitoringServer) -> None:
    t = FakeTime(T0)
    batch = await make(server, t).poll()
    svc = server.service
    # Three deployments at one series per page: every container query took three pages.
    tokens = [r.page_token for r in svc.requests if "k8s_container" in r.filter]
    assert sorted(tokens) == sorted(["", "1", "2"] * 3)
    assert {s.key for s in batch.samples} == {"saleor/saleor-api", "saleor/saleor-worker", "saleor/dashboard"}
    assert len(batch.samples) == 9  # three deployments x three minutes of lookback
    by_feature = {q.feature: q.metric_type for q in QUERIES}
    for s in batch.samples:
        t_end = s.timestamp.timestamp()
        assert END - 120 <= t_end <= END and t_end % 60 == 0
        expected_replicas = next(d.pods for d in svc.deployments if d.name == s.deployment)
        assert s.replicas == expected_replicas
        got = s.metrics.present()
        for feature in ("cpu_utilization", "memory_utilization", "memory_bytes"):
            assert got[feature] == pytest.approx(fake_value(by_feature[feature], s.key, t_end))
        if s.deployment == "saleor-api":
            # Cloud SQL metrics land on the configured deployment only.
            assert set(got) == set(FEATURES)
            assert got["db_connections"] == fake_value(by_feature["db_connections"], "cloudsql", t_end)
        else:
            assert "db_cpu" not in got


async def test_aggregation_asks_for_one_aligned_interval_per_deployment(server: FakeMonitoringServer) -> None:
    await make(server, FakeTime(T0)).poll()
    cpu = next(r for r in server.service.requests if "cpu/limit_utilization" in r.filter)
    assert cpu.name == "projects/test-project"
    assert cpu.aggregation.alignment_period.total_seconds() == 60
    assert cpu.aggregation.cross_series_reducer == monitoring_v3.Aggregation.Reducer.REDUCE_MEAN
    assert "metadata.system_labels.top_level_controller_name" in cpu.aggregation.group_by_fields
    count = next(r for r in server.service.requests if "received_bytes_count" in r.filter)
    assert count.aggregation.cross_series_reducer == monitoring_v3.Aggregation.Reducer.REDUCE_COUNT


async def test_unavailable_is_retried_with_backoff(server: FakeMonitoringServer) -> None:
    server.service.fail_next = 3
    batch = await make(server, FakeTime(T0)).poll()
    assert server.service.failures == 3
    assert len(batch.samples) == 9


async def test_polls_every_interval_without_duplicates(server: FakeMonitoringServer) -> None:
    t = FakeTime(T0)
    source = make(server, t)
    seen: list[MetricSample] = []
    gen = source.batches()
    for _ in range(4):
        batch = await anext(gen)
        seen.extend(batch.samples)
        await batch.commit()
    await gen.aclose()
    keys = [(s.key, s.timestamp) for s in seen]
    assert len(keys) == len(set(keys))
    stamps = sorted({s.timestamp.timestamp() for s in seen})
    assert stamps == [END - 120 + 60 * i for i in range(6)]  # 3 at start, then one new minute per poll


async def test_an_outage_longer_than_the_retries_skips_a_poll_then_catches_up(
    server: FakeMonitoringServer,
) -> None:
    t = FakeTime(T0)
    source = make(server, t, retry_timeout=0.2)
    gen = source.batches()
    first = await anext(gen)
    await first.commit()
    server.service.fail_next = 10**6  # down for good ...
    poll = asyncio.ensure_future(anext(gen))
    while source.failed_polls < 2:
        await asyncio.sleep(0.05)
    server.service.fail_next = 0  # ... and back
    batch = await asyncio.wait_for(poll, 10)
    await gen.aclose()
    stamps = sorted({s.timestamp.timestamp() for s in batch.samples})
    # The minutes of the failed polls are read now: no gap.
    assert stamps[0] == END + 60 and stamps == [END + 60 * (i + 1) for i in range(len(stamps))]
    assert len(stamps) >= 3


async def test_other_namespaces_are_filtered_out() -> None:
    service = FakeMetricService(
        deployments=[FakeDeployment("saleor", "saleor-api", 2), FakeDeployment("kube-system", "coredns", 2)]
    )
    with FakeMonitoringServer(service) as srv:
        batch = await make(srv, FakeTime(T0)).poll()
    assert {s.namespace for s in batch.samples} == {"saleor"}
