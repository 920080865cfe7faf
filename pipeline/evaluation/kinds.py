"""A labelled corpus of the kinds of series the shared NAB files lack, written in NAB's layout.

``helios eval kinds --out DIR`` writes ``DIR/data/<kind>/<kind>_<i>.csv`` (``timestamp,value``) and
``DIR/labels.json`` (NAB's ``combined_windows.json`` format), so the NAB harness scores it unchanged,
and ``helios eval nab --data DIR/data --labels DIR/labels.json --cv categories`` holds each kind out in
turn. The kinds are what a Helios user streams besides utilisation, each with the normal behaviour
that makes it hard and anomalies of the sort an operator would want flagged:

* ``counts``: Poisson request counts with a daily and a weekly cycle; a burst, an outage, a sustained
  rise;
* ``latency``: log-normal latencies whose normal noise has isolated 2-4x spikes; a sustained slowdown,
  a ramp to failure;
* ``temperature``: a slowly wandering (AR(1)) level with a weak daily cycle; a drop (a failed sensor or
  machine), an overheating ramp;
* ``speed``: road-sensor speeds with rush-hour dips and brief normal slowdowns; an accident (speed near
  zero), a stuck sensor (a constant);
* ``utilisation``: a bounded daily cycle; saturation, a level shift, a day without the cycle.

Each file is 14 days at 5-minute steps with one to three anomalies; the windows follow NAB's rule: 10 %
of the file's rows split evenly over its anomalies, centred on each onset. None of it is drawn from NAB
data: the generators come from the description above, and the seed makes a corpus reproducible (score a
second seed to see how much one corpus varies).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

STEP_SECONDS = 300
DAY = 86400 // STEP_SECONDS
START = datetime(2024, 1, 1, tzinfo=UTC)

Series = tuple[np.ndarray, list[int]]  # values, anomaly onsets (rows)


def _onsets(rng: np.random.Generator, n: int, most: int, tail: int) -> list[int]:
    """1..most onsets after the first quarter (NAB's probation is 15 %), ``tail`` rows from the end."""
    count = int(rng.integers(1, most + 1))
    return sorted(int(o) for o in rng.choice(np.arange(n // 4, n - tail), size=count, replace=False))


def _cycle(n: int, rng: np.random.Generator) -> np.ndarray:
    """A daily cycle in [0, 1] with a random phase."""
    t = np.arange(n)
    return 0.5 - 0.5 * np.cos(2 * np.pi * t / DAY + rng.uniform(0, 2 * np.pi))


def counts(rng: np.random.Generator, n: int) -> Series:
    weekend = ((np.arange(n) // DAY) % 7) >= 5
    lam = rng.uniform(5, 150) * (0.3 + _cycle(n, rng)) * np.where(weekend, 1 - rng.uniform(0, 0.5), 1.0)
    onsets = _onsets(rng, n, 3, 200)
    for o in onsets:
        length = int(rng.integers(6, 36))
        kind = rng.integers(3)
        if kind == 0:
            lam[o : o + length] *= rng.uniform(3, 8)
        elif kind == 1:
            lam[o : o + 3 * length] *= rng.uniform(0.0, 0.2)
        else:
            lam[o : o + 4 * length] *= rng.uniform(1.8, 2.5)
    return rng.poisson(lam).astype(float), onsets


def latency(rng: np.random.Generator, n: int) -> Series:
    x = np.exp(np.log(rng.uniform(20, 400)) + 0.3 * _cycle(n, rng) + rng.normal(0, rng.uniform(0.1, 0.4), n))
    spikes = rng.random(n) < 0.01
    x[spikes] *= rng.uniform(2, 4, int(spikes.sum()))
    onsets = _onsets(rng, n, 2, 300)
    for o in onsets:
        if rng.integers(2) == 0:
            x[o : o + int(rng.integers(12, 48))] *= rng.uniform(3, 6)
        else:
            length = int(rng.integers(24, 96))
            x[o : o + length] *= np.linspace(1, rng.uniform(4, 8), length)
    return x, onsets


def temperature(rng: np.random.Generator, n: int) -> Series:
    walk = np.zeros(n)
    noise = rng.normal(0, 1, n)
    for i in range(1, n):
        walk[i] = 0.98 * walk[i - 1] + noise[i]
    x = rng.uniform(20, 90) + rng.uniform(0.15, 0.9) * walk + rng.uniform(0, 5) * _cycle(n, rng)
    onsets = _onsets(rng, n, 2, 300)
    for o in onsets:
        if rng.integers(2) == 0:
            x[o : o + int(rng.integers(24, 120))] -= rng.uniform(15, 40)
        else:
            length = int(rng.integers(48, 200))
            x[o : o + length] += np.linspace(0, rng.uniform(8, 20), length)
    return x, onsets


def speed(rng: np.random.Generator, n: int) -> Series:
    free = rng.uniform(50, 75)
    hour = (np.arange(n) % DAY) / DAY * 24
    rush = np.exp(-((hour - 8) ** 2) / 2) + np.exp(-((hour - 17.5) ** 2) / 2)
    x = free * (1 - 0.4 * rush * rng.uniform(0.5, 1.2)) + rng.normal(0, 4, n)
    slow = rng.random(n) < 0.02
    x[slow] = free * rng.uniform(0.3, 0.7, int(slow.sum()))
    onsets = _onsets(rng, n, 2, 200)
    for o in onsets:
        if rng.integers(2) == 0:
            x[o : o + int(rng.integers(12, 36))] = rng.uniform(3, 15)
        else:
            x[o : o + int(rng.integers(36, 144))] = x[o]
    return np.clip(x, 0, None), onsets


def utilisation(rng: np.random.Generator, n: int) -> Series:
    weekend = ((np.arange(n) // DAY) % 7) >= 5
    x = 0.2 + 0.4 * _cycle(n, rng) * np.where(weekend, 1 - rng.uniform(0, 0.3), 1.0)
    x = x + rng.normal(0, rng.uniform(0.01, 0.05), n)
    onsets = _onsets(rng, n, 2, 300)
    for o in onsets:
        kind = rng.integers(3)
        if kind == 0:
            x[o : o + int(rng.integers(6, 24))] = rng.uniform(0.9, 1.0)
        elif kind == 1:
            x[o:] += rng.uniform(0.15, 0.3)
        else:
            x[o : o + DAY] = x[o]
    return np.clip(x, 0, 1), onsets


KINDS: dict[str, Callable[[np.random.Generator, int], Series]] = {
    "counts": counts,
    "latency": latency,
    "temperature": temperature,
    "speed": speed,
    "utilisation": utilisation,
}


def windows(n: int, onsets: list[int]) -> list[tuple[int, int]]:
    """NAB's windows: 10 % of the rows split over the anomalies, centred on each onset.

    Examples
    --------
    >>> windows(1000, [500])
    [(450, 550)]
    """
    half = int(0.10 * n / len(onsets)) // 2
    return [(max(0, o - half), min(n - 1, o + half)) for o in onsets]


def write_corpus(out: Path, seed: int = 0, per_kind: int = 8, days: int = 14) -> dict[str, list[list[str]]]:
    """Write the corpus under ``out`` (``data/`` and ``labels.json``); returns the labels."""
    rng = np.random.default_rng(seed)
    n = days * DAY
    stamps = [(START + timedelta(seconds=STEP_SECONDS * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]
    labels: dict[str, list[list[str]]] = {}
    for kind, make in KINDS.items():
        folder = out / "data" / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_kind):
            values, onsets = make(rng, n)
            name = f"{kind}/{kind}_{i}.csv"
            with (out / "data" / name).open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["timestamp", "value"])
                writer.writerows((s, f"{v:.6g}") for s, v in zip(stamps, values, strict=True))
            labels[name] = [[stamps[lo], stamps[hi]] for lo, hi in windows(n, onsets)]
    (out / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
    return labels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helios eval kinds``."""
    parser.add_argument("--out", type=Path, required=True, help="folder for data/ and labels.json")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generators")
    parser.add_argument("--per-kind", type=int, default=8, help="files per kind")
    parser.add_argument("--days", type=int, default=14, help="days per file (5-minute steps)")


def run(args: argparse.Namespace) -> int:
    """Write the corpus; returns an exit code."""
    if args.per_kind < 1 or args.days < 2:
        print("--per-kind must be >= 1 and --days >= 2")
        return 2
    labels = write_corpus(args.out, args.seed, args.per_kind, args.days)
    print(
        f"wrote {len(labels)} files ({', '.join(KINDS)}) and labels.json under {args.out}; score them with "
        f"helios eval nab --data {args.out / 'data'} --labels {args.out / 'labels.json'} --cv categories"
    )
    return 0
