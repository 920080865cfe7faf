"""Replaying CSV traces: NAB mapping, units, rebasing to "now" and pacing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import SourceError
from pipeline.records import MetricSample
from pipeline.sources.replay import ReplaySource, load_trace, parse_speedup

NAB = """timestamp,value
2014-02-14 14:30:00,51.846
2014-02-14 14:35:00,44.508
2014-02-14 14:40:00,41.244
2014-02-14 14:45:00,48.568
"""


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now = now

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def play(source: ReplaySource) -> list[MetricSample]:
    return [s async for batch in source.batches() for s in batch.samples]


@pytest.fixture
def nab(tmp_path: Path) -> Path:
    path = tmp_path / "ec2_cpu_utilization.csv"
    path.write_text(NAB)
    return path


def test_nab_value_in_percent_becomes_a_fraction(nab: Path) -> None:
    df = load_trace(nab)
    assert list(df.columns) == ["timestamp", "cpu_utilization"]
    assert df["cpu_utilization"].tolist() == pytest.approx([0.51846, 0.44508, 0.41244, 0.48568])


def test_nab_value_can_map_to_a_count_feature(nab: Path) -> None:
    df = load_trace(nab, feature="db_connections")
    assert df["db_connections"].iloc[0] == pytest.approx(51.846)  # counts are not rescaled


def test_a_utilisation_above_100_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    path.write_text("timestamp,value\n2020-01-01T00:00:00Z,1500\n")
    with pytest.raises(SourceError, match="neither a fraction nor a percent"):
        load_trace(path)


def test_missing_timestamp_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("time,value\n1,2\n")
    with pytest.raises(SourceError, match="'timestamp' column"):
        load_trace(path)


def test_multi_feature_file_keeps_fractions(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(
        "timestamp,cpu_utilization,memory_bytes,db_connections,replicas\n"
        "2024-01-01T00:01:00Z,0.5,4e8,20,3\n"
        "2024-01-01T00:00:00Z,0.25,3e8,,2\n"
    )
    df = load_trace(path)
    assert df["cpu_utilization"].tolist() == [0.25, 0.5]  # sorted by time, not rescaled


async def test_max_speed_ends_at_now_and_keeps_spacing(nab: Path) -> None:
    t = FakeTime(1_800_000_000.0)
    samples = await play(ReplaySource(nab, "shop", "api", speedup=0, clock=t.clock, sleep=t.sleep))
    stamps = [s.timestamp.timestamp() for s in samples]
    assert stamps == [1_800_000_000.0 - 900, 1_800_000_000.0 - 600, 1_800_000_000.0 - 300, 1_800_000_000.0]
    assert t.now == 1_800_000_000.0  # no pacing
    assert {s.key for s in samples} == {"shop/api"}
    assert samples[0].metrics.cpu_utilization == pytest.approx(0.51846)


async def test_speedup_paces_and_never_stamps_the_future(nab: Path) -> None:
    t = FakeTime(1_800_000_000.0)
    source = ReplaySource(nab, speedup=60, clock=t.clock, sleep=t.sleep)
    emitted: list[tuple[float, float]] = []
    async for batch in source.batches():
        emitted.extend((s.timestamp.timestamp(), t.now) for s in batch.samples)
    # 15 minutes of trace at 60x take 15 s; the last row is stamped at the moment it goes out.
    assert t.now == pytest.approx(1_800_000_015.0)
    assert emitted[-1][0] == pytest.approx(emitted[-1][1])
    assert all(stamp <= wall + 1e-6 for stamp, wall in emitted)


async def test_real_time_replay_stamps_wall_time(nab: Path) -> None:
    t = FakeTime(1_800_000_000.0)
    source = ReplaySource(nab, speedup=1, clock=t.clock, sleep=t.sleep)
    async for batch in source.batches():
        for s in batch.samples:
            assert s.timestamp.timestamp() == pytest.approx(t.now)


async def test_invalid_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "neg.csv"
    path.write_text("timestamp,db_connections\n2024-01-01T00:00:00Z,5\n2024-01-01T00:01:00Z,-3\n")
    source = ReplaySource(path)
    samples = await play(source)
    assert [s.metrics.db_connections for s in samples] == [5.0]
    assert source.skipped == 1


def test_parse_speedup() -> None:
    assert parse_speedup("max") == 0.0
    assert parse_speedup("2.5") == 2.5
    with pytest.raises(ValueError, match="speedup"):
        parse_speedup("-1")
