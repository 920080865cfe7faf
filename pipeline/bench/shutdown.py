"""How long a signalled ``helios worker`` takes to exit, over 20 tries across five hard moments.

The moments are :mod:`pipeline.bench.shutdown_moments`'s.

    KAFKA_LOCAL_PORT=29292 KAFKA_LOCAL_CONTROLLER_PORT=29293 scripts/kafka-local start
    .venv/bin/python -m pipeline.bench.shutdown --bootstrap 127.0.0.1:29292 [--tries 20]

Try ``i`` stops at moment ``i % 5`` (start-up, table recovery, rebalance, full load, broker away), with
SIGTERM and SIGINT in turn and a different delay each round, and prints one line per try and a summary
(the figures are in ``benchmarks/shutdown.md``). A worker alive 40 s after the signal counts as hung;
its stacks are printed and it is killed. The broker-away moment runs a private broker on free ports.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from pipeline.bench.shutdown_moments import (
    EXIT_BOUND,
    MOMENTS,
    Rig,
    Stopped,
    at_broker_away,
    at_load,
    at_rebalance,
    at_recovery,
    at_startup,
    stop_timed,
)
from pipeline.testing import PrivateBroker

ROOT = Path(__file__).resolve().parents[2]

#: Per round: seconds after spawn (start-up), into the join (rebalance), after ready (load), away (broker).
DELAYS = {
    "startup": (1.0, 2.5, 4.0, 6.0),
    "rebalance": (1.0, 4.0, 2.0, 6.0),
    "load": (1.0, 3.0, 5.0, 8.0),
    "broker_away": (1.0, 3.0, 6.0, 10.0),
}


def one_try(rig: Rig, moment: str, round_: int, sig: int, broker: PrivateBroker) -> tuple[Stopped, str]:
    delays = DELAYS.get(moment, (0.0,))
    delay = delays[round_ % len(delays)]
    if moment == "startup":
        return stop_timed(at_startup(rig, delay), sig), f"{delay:.1f} s after spawn"
    if moment == "recovery":
        return stop_timed(at_recovery(rig), sig), "changelog recovery under way"
    if moment == "rebalance":
        first, joining = at_rebalance(rig, delay)
        stopped = stop_timed(first, sig)
        other = stop_timed(joining, sig)
        joined = "hung" if other.seconds is None else f"{other.seconds:.1f} s"
        return stopped, f"{delay:.1f} s into the join (the joining worker then: {joined})"
    if moment == "load":
        worker, _ = at_load(rig, delay)
        return stop_timed(worker, sig), f"{delay:.1f} s into a burst on fresh topics"
    broker.start()
    try:
        return stop_timed(at_broker_away(rig, broker, delay), sig), f"broker stopped {delay:.1f} s before"
    finally:
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args()
    times: dict[str, list[float | None]] = {m: [] for m in MOMENTS}
    with tempfile.TemporaryDirectory(prefix="bench-shutdown-") as tmp:
        broker = PrivateBroker(Path(tmp) / "kafka")
        print("| # | moment | signal | exit (s) | status | detail |\n|---|---|---|---|---|---|", flush=True)
        for i in range(args.tries):
            moment = MOMENTS[i % len(MOMENTS)]
            sig = signal.SIGTERM if (i // len(MOMENTS)) % 2 == 0 else signal.SIGINT
            rig = Rig(args.bootstrap, Path(tmp) / f"try-{i}")
            rig.tmp.mkdir()
            try:
                stopped, detail = one_try(rig, moment, i // len(MOMENTS), sig, broker)
            finally:
                rig.close()
            times[moment].append(stopped.seconds)
            shown = "hung" if stopped.seconds is None else f"{stopped.seconds:.1f}"
            name = signal.Signals(sig).name
            print(f"| {i + 1} | {moment} | {name} | {shown} | {stopped.returncode} | {detail} |", flush=True)
            if stopped.stacks:
                print(stopped.stacks, file=sys.stderr)
            time.sleep(1.0)
    within = sum(1 for ts in times.values() for t in ts if t is not None and t <= EXIT_BOUND)
    print(f"\nwithin {EXIT_BOUND:.0f} s: {within} of {args.tries}")
    for moment, ts in times.items():
        done = [t for t in ts if t is not None]
        if ts:
            worst = f"{max(done):.1f}" if done else "-"
            print(f"  {moment}: {len(done)}/{len(ts)} exited, slowest {worst} s")
    return 0 if within == args.tries else 1


if __name__ == "__main__":
    sys.exit(main())
