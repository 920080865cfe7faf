"""micro_batches: what is queued goes together; a part-filled batch never waits for new input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agents.wiring import LINGER, micro_batches


class FakeStream:
    """Events from a queue, as a Faust stream offers them (events() and channel.empty())."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        self.channel = self

    def empty(self) -> bool:
        return self.queue.empty()

    async def events(self) -> AsyncIterator[int]:
        while True:
            yield await self.queue.get()


@pytest.mark.asyncio
async def test_queued_events_batch_together_up_to_the_maximum() -> None:
    stream = FakeStream()
    for i in range(7):
        stream.queue.put_nowait(i)
    batches = micro_batches(stream, max_size=3)
    assert await anext(batches) == [0, 1, 2]
    assert await anext(batches) == [3, 4, 5]
    assert await anext(batches) == [6]  # the queue ran dry
    await batches.aclose()


@pytest.mark.asyncio
async def test_a_part_filled_batch_is_released_after_the_linger_even_if_the_queue_lied() -> None:
    stream = FakeStream()
    stream.queue.put_nowait(1)
    stream.empty = lambda: False  # type: ignore[method-assign] # "more is coming" (then cleared by a rebalance)
    batches = micro_batches(stream, max_size=100)
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(anext(batches), timeout=5) == [1]
    assert asyncio.get_running_loop().time() - started >= LINGER * 0.9
    await batches.aclose()
