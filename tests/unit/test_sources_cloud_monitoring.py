"""Cloud Monitoring source logic with a stub client: filters, windows, cursor, deduplication."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.cloud import monitoring_v3

from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from pipeline.sources.cloud_monitoring import QUERIES, CloudMonitoringSource, build_filter

T0 = 1_700_000_000.0  # not aligned to the minute on purpose


def series(
    metric_type: str,
    points: list[tuple[float, float]],
    deployment: str | None = "saleor-api",
    namespace: str = "saleor",
    int_values: bool = False,
) -> monitoring_v3.TimeSeries:
    pts = [
        monitoring_v3.Point(
            interval=monitoring_v3.TimeInterval(end_time={"seconds": int(t)}),
            value=monitoring_v3.TypedValue(int64_value=int(v))
            if int_values
            else monitoring_v3.TypedValue(double_value=v),
        )
        for t, v in points
    ]
    s = monitoring_v3.TimeSeries(points=pts)
    s.metric.type = metric_type
    if deployment is not None:
        s.resource.labels["namespace_name"] = namespace
        s.metadata.system_labels = {"top_level_controller_name": deployment}
    return s


class StubClient:
    """Answers every request with the points of ``values`` that fall in its interval."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values
        self.requests: list[Any] = []

    def list_time_series(
        self, request: Any, retry: Any = None, timeout: Any = None
    ) -> list[monitoring_v3.TimeSeries]:
        self.requests.append(request)
        start = request.interval.start_time.timestamp()
        end = request.interval.end_time.timestamp()
        metric = next(q.metric_type for q in QUERIES if f'"{q.metric_type}"' in request.filter)
        times = [t for t in range(int(start) + 60 - int(start) % 60, int(end) + 1, 60) if start < t <= end]
        if metric.startswith("cloudsql"):
            return [series(metric, [(t, self.values[metric]) for t in times], deployment=None)]
        count = metric.endswith("received_bytes_count")
        return [series(metric, [(t, self.values[metric]) for t in times], int_values=count)]


VALUES = {q.metric_type: v for q, v in zip(QUERIES, [0.4, 5e8, 1.3, 3, 0.2, 0.6, 17], strict=True)}


def make(
    clock: list[float], tmp_path: Path | None = None, **kw: Any
) -> tuple[CloudMonitoringSource, StubClient]:
    client = StubClient(VALUES)
    settings = load_settings({"GCP_PROJECT_ID": "shop", "HELIOS_SCORING_INTERVAL": "60"})
    source = CloudMonitoringSource(
        settings,
        client=client,
        lag=0,
        clock=lambda: clock[0],
        cursor_path=tmp_path / "cursor.json" if tmp_path else None,
        **kw,
    )
    return source, client


def test_project_is_required() -> None:
    with pytest.raises(ConfigError, match="GCP_PROJECT_ID"):
        CloudMonitoringSource(load_settings({}))


def test_filters_name_metric_resource_and_scope() -> None:
    by_feature = {q.feature: q for q in QUERIES}
    mem = build_filter(by_feature["memory_bytes"], ["saleor", "shop"], None)
    assert 'metric.labels.memory_type = "non-evictable"' in mem
    assert 'resource.labels.namespace_name = one_of("saleor", "shop")' in mem
    db = build_filter(by_feature["db_connections"], ["saleor"], "p:inst")
    assert 'resource.type = "cloudsql_database"' in db and 'database_id = "p:inst"' in db
    assert "namespace_name" not in db


async def test_one_poll_merges_the_six_features_per_deployment_and_time() -> None:
    clock = [T0]
    source, client = make(clock)
    batch = await source.poll()
    end = (T0 // 60) * 60
    assert [s.timestamp.timestamp() for s in batch.samples] == [end - 120, end - 60, end]
    s = batch.samples[-1]
    assert s.key == "saleor/saleor-api" and s.replicas == 3
    m = s.metrics
    assert (m.cpu_utilization, m.memory_bytes, m.db_cpu, m.db_memory, m.db_connections) == (
        0.4,
        5e8,
        0.2,
        0.6,
        17,
    )
    assert m.memory_utilization == 1.0  # 1.3 clipped: a container past its limit
    agg = client.requests[0].aggregation
    assert agg.alignment_period.total_seconds() == 60
    assert agg.per_series_aligner == monitoring_v3.Aggregation.Aligner.ALIGN_MEAN
    assert list(agg.group_by_fields) == [
        "metadata.system_labels.top_level_controller_name",
        "resource.labels.namespace_name",
    ]


async def test_overlapping_polls_emit_each_point_once_after_commit() -> None:
    clock = [T0]
    source, _ = make(clock)
    first = await source.poll()
    await first.commit()
    clock[0] += 60
    second = await source.poll()
    assert [s.timestamp.timestamp() for s in second.samples] == [(T0 // 60) * 60 + 60]


async def test_an_uncommitted_poll_is_read_again_so_there_is_no_gap() -> None:
    clock = [T0]
    source, _ = make(clock)
    first = await source.poll()  # never committed: Kafka did not take it
    clock[0] += 180
    again = await source.poll()
    stamps = [s.timestamp.timestamp() for s in again.samples]
    assert {s.timestamp.timestamp() for s in first.samples} <= set(stamps)
    assert stamps == sorted(set(stamps))


async def test_after_an_outage_the_window_reaches_back_to_the_cursor(tmp_path: Path) -> None:
    clock = [T0]
    source, _ = make(clock, tmp_path)
    await (await source.poll()).commit()
    clock[0] += 600  # ten minutes without a successful poll
    start, end = source.window()
    assert start == (T0 // 60) * 60 and end == start + 600
    # A restarted source reads the cursor file and continues without duplicates.
    restarted, _ = make(clock, tmp_path)
    batch = await restarted.poll()
    assert len(batch.samples) == 10
    assert batch.samples[0].timestamp.timestamp() == (T0 // 60) * 60 + 60
