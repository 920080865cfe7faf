"""The synthetic Saleor workload: shape of the trace, the incident, event times and pacing."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from models.features import FEATURES
from pipeline.records import MetricSample
from pipeline.sources.synthetic import SaleorWorkload, SyntheticSource, deployment_names, synthetic_trace


class FakeTime:
    """A clock that only moves when the source sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def collect(source: SyntheticSource) -> list[list[MetricSample]]:
    return [batch.samples async for batch in source.batches()]


def test_trace_is_reproducible_and_seed_dependent() -> None:
    a = synthetic_trace(500, 60, seed=3)
    b = synthetic_trace(500, 60, seed=3)
    c = synthetic_trace(500, 60, seed=4)
    assert a.equals(b)
    assert not np.allclose(a["cpu_utilization"], c["cpu_utilization"])


def test_trace_rows_are_valid_samples() -> None:
    df = synthetic_trace(2 * 1440, 60, seed=0, incident_at=1000)
    assert list(df.columns) == ["timestamp", *FEATURES, "replicas", "incident"]
    for feature in ("cpu_utilization", "memory_utilization", "db_cpu", "db_memory"):
        assert df[feature].between(0, 1).all(), feature
    assert (df["replicas"] >= 2).all() and (df["replicas"] <= 10).all()
    assert df["timestamp"].diff().dropna().dt.total_seconds().eq(60).all()


def test_daily_seasonality_night_is_quieter_than_evening() -> None:
    df = synthetic_trace(7 * 1440, 60, seed=5)
    hour = df["timestamp"].dt.hour
    # The HPA absorbs load into replicas, so the cycle shows in replicas and DB connections.
    assert df.loc[hour.between(2, 5), "replicas"].mean() < df.loc[hour.between(18, 21), "replicas"].mean() - 1
    assert (
        df.loc[hour.between(2, 5), "db_connections"].mean()
        < 0.7 * df.loc[hour.between(18, 21), "db_connections"].mean()
    )


def test_weekends_are_quieter() -> None:
    df = synthetic_trace(14 * 1440, 60, seed=2)
    weekend = df["timestamp"].dt.day_of_week >= 5
    assert df.loc[weekend, "db_cpu"].mean() < df.loc[~weekend, "db_cpu"].mean()


def test_incident_spikes_cpu_connections_and_climbs_memory() -> None:
    df = synthetic_trace(600, 60, seed=7, incident_at=400)
    assert df["incident"].sum() == 15
    assert df.index[df["incident"]].tolist() == list(range(400, 415))
    before = df.iloc[340:400]
    during = df.iloc[403:415]
    assert (
        during["cpu_utilization"].mean()
        > before["cpu_utilization"].mean() + 4 * before["cpu_utilization"].std()
    )
    assert during["db_connections"].mean() > 1.8 * before["db_connections"].mean()
    mem = df["memory_bytes"].iloc[400:415].to_numpy()
    assert np.polyfit(np.arange(15), mem, 1)[0] > 0  # climbs through the incident
    assert mem[-1] > before["memory_bytes"].max()
    after = df.iloc[420:480]
    assert after["cpu_utilization"].mean() < during["cpu_utilization"].mean() - 0.2


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_steps"):
        synthetic_trace(-1)
    with pytest.raises(ValueError, match="step_seconds"):
        synthetic_trace(10, 0)
    with pytest.raises(ValueError, match="rate"):
        SyntheticSource(rate=-1)
    with pytest.raises(ValueError, match="deployments"):
        deployment_names("saleor-api", 0)


async def test_counted_run_ends_at_about_now_with_no_future_stamp() -> None:
    t = FakeTime(1_700_000_030.0)
    source = SyntheticSource(interval=60, count=100, incident_at=50, clock=t.clock, sleep=t.sleep)
    samples = [s for batch in await collect(source) for s in batch]
    assert len(samples) == 100
    stamps = [s.timestamp.timestamp() for s in samples]
    assert stamps == sorted(stamps)
    assert max(stamps) <= 1_700_000_030.0
    assert 1_700_000_030.0 - max(stamps) < 60
    assert stamps[0] == pytest.approx(max(stamps) - 99 * 60)
    assert all(s.key == "saleor/saleor-api" and s.replicas for s in samples)
    assert samples[55].metrics.cpu_utilization > samples[45].metrics.cpu_utilization  # the incident


async def test_a_given_end_fixes_the_time_of_day_whenever_it_runs() -> None:
    end = datetime(2026, 12, 1, 6, 30, tzinfo=UTC).timestamp()
    runs = []
    for now in (end + 3_600.0, end + 5 * 86_400.0 + 1_234.0):
        t = FakeTime(now)
        source = SyntheticSource(interval=60, count=30, end=end, clock=t.clock, sleep=t.sleep)
        runs.append(
            [(s.timestamp.timestamp(), s.metrics.cpu_utilization) for b in await collect(source) for s in b]
        )
    assert runs[0] == runs[1]  # same event times, same values, a day or five later
    assert runs[0][-1][0] == end and runs[0][0][0] == end - 29 * 60


def test_an_end_in_the_future_or_without_a_count_is_refused() -> None:
    t = FakeTime(1_700_000_000.0)
    with pytest.raises(ValueError, match="end must not be in the future"):
        SyntheticSource(count=10, end=1_700_000_060.0, clock=t.clock)
    with pytest.raises(ValueError, match="end needs a count"):
        SyntheticSource(end=1_600_000_000.0, clock=t.clock)


async def test_rate_paces_emission() -> None:
    t = FakeTime(1_700_000_000.0)
    source = SyntheticSource(interval=60, count=50, rate=10, clock=t.clock, sleep=t.sleep)
    batches = await collect(source)
    assert sum(len(b) for b in batches) == 50
    # 50 samples at 10/s take 4.9 s of (fake) wall time: the first goes out at once.
    assert t.now - 1_700_000_000.0 == pytest.approx(4.9)


async def test_several_deployments_names_and_batching() -> None:
    t = FakeTime(1_700_000_000.0)
    source = SyntheticSource(interval=60, count=20, deployments=3, batch_size=7, clock=t.clock, sleep=t.sleep)
    batches = await collect(source)
    assert all(len(b) <= 7 for b in batches)
    keys = [s.key for b in batches for s in b]
    assert (
        keys.count("saleor/saleor-api")
        == keys.count("saleor/synthetic-0001")
        == keys.count("saleor/synthetic-0002")
        == 20
    )


async def test_endless_stream_follows_the_wall_clock() -> None:
    t = FakeTime(1_700_000_000.0)
    source = SyntheticSource(interval=60, count=None, backfill=10, clock=t.clock, sleep=t.sleep)
    gen = source.batches()
    seen: list[MetricSample] = []
    while len(seen) < 15:
        seen.extend((await anext(gen)).samples)
    await gen.aclose()
    for s in seen:
        # Emitted only once its event time had come.
        assert s.timestamp <= datetime.fromtimestamp(t.now, UTC)
    # Ten backfilled steps end at the last whole minute; the 5 live ones waited for their minute each.
    assert t.now == (1_700_000_000 // 60) * 60 + 5 * 60
    assert max(s.timestamp.timestamp() for s in seen) == t.now


async def test_a_time_zone_moves_the_daily_cycle_with_local_time() -> None:
    # The same feed nine hours later in event time, in a shop nine hours west: the same local times,
    # so the same values step by step; in UTC's own zone the values differ.
    end = datetime(2026, 12, 1, 6, 30, tzinfo=UTC).timestamp()
    runs = {}
    for shift, offset in ((0.0, 0.0), (9 * 3600.0, -9.0), (9 * 3600.0, 0.0)):
        t = FakeTime(end + shift + 60.0)
        source = SyntheticSource(
            interval=60, count=600, end=end + shift, utc_offset=offset, clock=t.clock, sleep=t.sleep
        )
        runs[shift, offset] = [s.metrics.cpu_utilization for b in await collect(source) for s in b]
    assert runs[0.0, 0.0] == runs[9 * 3600.0, -9.0]
    assert runs[0.0, 0.0] != runs[9 * 3600.0, 0.0]


def test_a_time_zone_beyond_any_on_earth_is_refused() -> None:
    with pytest.raises(ValueError, match="utc_offset must be within"):
        SyntheticSource(utc_offset=14.5)
    with pytest.raises(ValueError, match="utc_offset must be within"):
        SaleorWorkload(utc_offset=-15)
