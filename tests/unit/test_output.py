"""The batched output sender without a broker: it keeps trying, and says so, rather than failing a batch."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from pipeline.output import BatchSender
from pipeline.runtime import Emit


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.asyncio
async def test_without_a_broker_send_waits_and_retries_instead_of_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = BatchSender({"bootstrap_servers": f"127.0.0.1:{_closed_port()}", "request_timeout_ms": 500})
    caplog.set_level(logging.WARNING, logger="pipeline.output")
    record = Emit("helios.recommendations", b"ns/api", b"{}")
    try:
        # Still trying when the caller gives up: nothing raised, so the input is not acked, nothing lost.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sender.send([record]), timeout=3.0)
    finally:
        await sender.stop()
    retries = [r for r in caplog.records if "cannot reach Kafka" in r.getMessage()]
    assert len(retries) >= 2
