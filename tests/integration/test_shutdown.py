"""A signalled worker exits within 10 s at each moment a stop is hard (issue 16), and commits what it did.

One try per moment here; ``python -m pipeline.bench.shutdown`` runs 20 and ``benchmarks/shutdown.md`` has the
figures.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.bench.shutdown_moments import (
    EXIT_BOUND,
    Rig,
    Stopped,
    at_broker_away,
    at_load,
    at_rebalance,
    at_recovery,
    at_startup,
    committed_total,
    stop_timed,
)
from pipeline.testing import PrivateBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def rig(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(kafka_bootstrap, tmp_path)
    try:
        yield rig
    finally:
        rig.close()


def _assert_exited(stopped: Stopped, what: str, tail: str) -> None:
    assert stopped.seconds is not None, f"{what}: still running; stacks:\n{stopped.stacks}\n{tail}"
    assert stopped.seconds <= EXIT_BOUND, f"{what}: exited after {stopped.seconds:.1f} s\n{tail}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stops_during_start_up(rig: Rig, sig: int) -> None:
    worker = at_startup(rig, delay=3.0)
    _assert_exited(stop_timed(worker, sig), "start-up", worker.tail())


def test_stops_during_table_recovery(rig: Rig) -> None:
    worker = at_recovery(rig)
    _assert_exited(stop_timed(worker, signal.SIGTERM), "recovery", worker.tail())


def test_both_stop_during_a_rebalance(rig: Rig) -> None:
    first, joining = at_rebalance(rig, into_join=4.0)
    _assert_exited(stop_timed(first, signal.SIGTERM), "worker being rebalanced", first.tail())
    _assert_exited(stop_timed(joining, signal.SIGINT), "joining worker", joining.tail())


def test_stops_under_full_load_and_commits_what_it_processed(rig: Rig) -> None:
    worker, processed_before = at_load(rig, after_ready=3.0)
    _assert_exited(stop_timed(worker, signal.SIGTERM), "full load", worker.tail())
    seen = processed_before()
    assert seen > 0, "the worker processed nothing before the signal: the moment was not under load"
    committed = committed_total(rig.bootstrap, worker.env)
    # Processed means outputs delivered and acknowledged: its offsets must have been committed on the stop.
    assert committed >= seen, f"{committed} offsets committed, {seen:.0f} samples processed before the signal"


def test_stops_with_the_broker_away(rig: Rig, tmp_path: Path) -> None:
    broker = PrivateBroker(tmp_path / "kafka")
    broker.start()
    try:
        worker = at_broker_away(rig, broker, away_for=3.0)
        _assert_exited(stop_timed(worker, signal.SIGTERM), "broker away", worker.tail())
    finally:
        broker.stop()
