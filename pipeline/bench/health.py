"""Polls a worker's ``/health`` at a fixed rate and writes every request's latency (ms) as JSON.

Runs in its own process so the bench's Kafka client does not share a GIL with the measurement.
Stops on SIGTERM/SIGINT or after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import time
from types import FrameType

_stop = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--duration", type=float, default=900.0)
    a = p.parse_args()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    lat: list[tuple[float, float, int]] = []
    deadline = time.monotonic() + a.duration
    next_at = time.monotonic()
    while not _stop and time.monotonic() < deadline:
        started = time.perf_counter()
        status = 0
        try:
            conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
            conn.request("GET", "/health")
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            conn.close()
        except OSError:
            status = -1
        lat.append((time.time(), (time.perf_counter() - started) * 1000.0, status))
        next_at += a.interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    with open(a.out, "w") as fh:
        json.dump(lat, fh)


if __name__ == "__main__":
    main()
