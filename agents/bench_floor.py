"""The floor of ``make bench``: the ceiling's passthrough, run as a Faust agent on the worker's own paths.

The same work per sample as :mod:`pipeline.bench.passthrough` (orjson parse, one small JSON record out,
acks=all), but consumed the way ``helios worker`` consumes (a Faust agent, ``micro_batches`` of the
stream with manual acks, offsets committed by Faust) and produced the way it produces
(``pipeline.output.BatchSender``).
What this costs per sample is what any Faust agent on this design pays before it does any work.
Runs until it is stopped. It lives in the composition layer because it builds a Faust agent from
:mod:`agents.wiring`; ``pipeline.bench.perf`` runs it as a process, never imports it.

    python -m agents.bench_floor --bootstrap 127.0.0.1:9092 --input IN --output OUT --group G
"""

from __future__ import annotations

import tempfile
from typing import Any

import faust

from agents.wiring import micro_batches
from pipeline.bench.passthrough import passed_through, passthrough_arguments
from pipeline.output import BatchSender
from pipeline.runtime import Emit


class FloorApp(faust.App):
    sender: BatchSender

    async def on_stop(self) -> None:
        await super().on_stop()
        await self.sender.stop()


def build(bootstrap: str, source: str, sink: str, group: str, batch: int) -> faust.App:
    app = FloorApp(
        group,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="helios-floor-"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
    )
    topic = app.topic(source, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    sender = app.sender = BatchSender({"bootstrap_servers": bootstrap})

    @app.agent(topic, name="floor")
    async def floor(stream: Any) -> None:
        manual = stream.noack()
        async for events in micro_batches(manual, batch):
            await sender.send([Emit(sink, e.message.key, passed_through(e.message.value)) for e in events])
            for event in events:
                await manual.ack(event)

    return app


def main() -> None:
    p = passthrough_arguments(__doc__)
    p.add_argument("--batch", type=int, default=500, help="events per micro-batch (HELIOS_BATCH_SIZE)")
    a = p.parse_args()
    app = build(a.bootstrap, a.input, a.output, a.group, a.batch)
    faust.Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
