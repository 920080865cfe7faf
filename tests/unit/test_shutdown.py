"""The stop deadline: it ends the process once, when it passes or when stray threads outlive the loop."""

from __future__ import annotations

import threading

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from pipeline.shutdown import StopDeadline


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_not_armed_means_no_exit_and_the_whole_timeout_left() -> None:
    codes: list[int] = []
    deadline = StopDeadline(5.0, exit=codes.append, clock=Clock())
    assert not deadline.armed
    assert deadline.remaining() == 5.0
    assert not deadline.wait(0.2)
    assert codes == []


def test_fires_once_when_the_deadline_passes() -> None:
    codes: list[int] = []
    clock = Clock()
    deadline = StopDeadline(5.0, exit=codes.append, clock=clock)
    deadline.arm(code=3)
    deadline.arm(code=4)  # a second stop keeps the first deadline
    clock.now += 4.9
    assert not deadline.wait(0.3)
    assert deadline.remaining() == pytest.approx(0.1)
    clock.now += 0.2
    assert deadline.wait(2.0)
    assert codes == [3]


def test_leave_returns_when_no_thread_is_left() -> None:
    codes: list[int] = []
    deadline = StopDeadline(5.0, exit=codes.append)
    deadline.leave(0, threads=lambda: [])
    assert codes == []


def test_leave_exits_with_the_workers_code_when_a_thread_will_not_end() -> None:
    codes: list[int] = []
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="consumer-like", daemon=True)
    stuck.start()
    clock = Clock()
    deadline = StopDeadline(5.0, exit=codes.append, clock=clock)
    deadline.arm()
    clock.now += 4.9  # 0.1 s left: leave() waits no longer than the deadline
    try:
        deadline.leave(0, threads=lambda: [stuck])
        assert codes == [0]
    finally:
        release.set()
        stuck.join()


def test_leave_waits_for_a_thread_that_ends() -> None:
    codes: list[int] = []
    done = threading.Event()
    ending = threading.Thread(target=lambda: done.wait(0.2), daemon=True)
    ending.start()
    StopDeadline(5.0, exit=codes.append).leave(0, threads=lambda: [ending])
    assert codes == [] and not ending.is_alive()


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout must be positive, got 0"):
        StopDeadline(0)


def test_the_setting_is_bounded_and_named() -> None:
    assert load_settings({}).shutdown_timeout == 8.0
    with pytest.raises(ConfigError, match=r"HELIOS_SHUTDOWN_TIMEOUT=0\.5"):
        load_settings({"HELIOS_SHUTDOWN_TIMEOUT": "0.5"})
