"""Rate-limited client logs: a retry storm during a broker outage becomes one line per window."""

from __future__ import annotations

import logging

from pipeline.logs import RateLimit


def record(msg: str, name: str = "aiokafka.client") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)


def test_one_line_per_message_per_window_with_a_count_of_the_rest() -> None:
    now = [0.0]
    limit = RateLimit(window=30.0, clock=lambda: now[0])
    assert limit.filter(record("Unable connect to node with id %s"))
    assert sum(limit.filter(record("Unable connect to node with id %s")) for _ in range(1000)) == 0
    assert limit.filter(record("Unable to update metadata"))  # another message is not held back
    now[0] = 31.0
    again = record("Unable connect to node with id %s")
    assert limit.filter(again)
    assert "[1000 more like this in the last 30 s]" in str(again.msg)
