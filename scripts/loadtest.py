"""Bounded HTTP load test of a worker while the stream runs: a locust file and its runner in one.

As a runner (``python scripts/loadtest.py``) it starts, all on 127.0.0.1: a `helios worker` with
topics of its own, the synthetic ingester streaming into it (``--stream-rate`` samples/s over
``--deployments`` deployments), then locust headless (``--users`` users for ``--duration`` seconds)
over ``/health``, ``/predict``, ``/detect`` and ``/recommend``. It writes requests/s and p50/p99
per endpoint to ``benchmarks/load.md`` and exits non-zero if ``/health`` p99 >= 100 ms or any
request failed. Everything it started is stopped at the end.

As a locust file (``locust -f scripts/loadtest.py``) it only defines :class:`HeliosUser`; the
runner passes the target, which it refuses unless it is the loopback address.

Usage::

    .venv/bin/python scripts/loadtest.py                     # 60 s, 20 users, broker on 127.0.0.1:9092
    .venv/bin/python scripts/loadtest.py --duration 30 --users 10 --out /tmp/load.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from locust import HttpUser, between, task

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
ENDPOINTS = ("/health", "/predict", "/detect", "/recommend")
HEALTH_P99_BUDGET_MS = 100.0


# -- the locust file ---------------------------------------------------------------------------------
def _deployment() -> str:
    # Mostly the watched deployment (live state on this worker), sometimes another streamed one.
    n = int(os.environ.get("LOADTEST_DEPLOYMENTS", "1"))
    i = 0 if random.random() < 0.5 or n <= 1 else random.randint(1, n - 1)
    return "saleor-api" if i == 0 else f"synthetic-{i:04d}"


class HeliosUser(HttpUser):
    """A mix of kubelet probes and ad-hoc inference calls."""

    wait_time = between(0.05, 0.25)

    def on_start(self) -> None:
        if not self.host or not self.host.startswith(f"http://{LOOPBACK}:"):
            raise SystemExit(f"refusing to load-test {self.host!r}: only http://{LOOPBACK}:<port> is allowed")
        token = os.environ.get("LOADTEST_TOKEN")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    @task(3)
    def health(self) -> None:
        self.client.get("/health", name="/health")

    @task(2)
    def predict(self) -> None:
        body = {
            "metrics": {"cpu_utilization": random.uniform(0.1, 0.9)},
            "periods": random.choice((6, 12, 60)),
            "namespace": "saleor",
            "deployment": _deployment(),
        }
        self.client.post("/predict", json=body, headers=self.headers, name="/predict")

    @task(2)
    def detect(self) -> None:
        body = {
            "metrics": {
                "cpu_utilization": random.uniform(0.1, 0.99),
                "memory_utilization": random.uniform(0.2, 0.9),
                "db_connections": random.uniform(5, 80),
            },
            "namespace": "saleor",
            "deployment": _deployment(),
        }
        self.client.post("/detect", json=body, headers=self.headers, name="/detect")

    @task(1)
    def recommend(self) -> None:
        body = {
            "namespace": "saleor",
            "deployment": _deployment(),
            "current_replicas": random.randint(1, 8),
            "current_metrics": {"cpu_utilization": random.uniform(0.1, 0.9)},
            "predicted_metrics": {"cpu_utilization": random.uniform(0.1, 0.99)},
            "anomaly_score": random.uniform(0, 4),
        }
        self.client.post("/recommend", json=body, headers=self.headers, name="/recommend")


# -- the runner --------------------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _metric(port: int, name: str, **labels: str) -> float:
    text = _get(port, "/metrics")[1].decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait(cond: object, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what}: process exited with {proc.returncode}")
        try:
            if cond():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what}: not within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _read_stats(prefix: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = row["Name"]
            out[name] = {
                "requests": float(row["Request Count"]),
                "failures": float(row["Failure Count"]),
                "rps": float(row["Requests/s"]),
                "p50": float(row["50%"]),
                "p99": float(row["99%"]),
                "max": float(row["Max Response Time"]),
            }
    return out


def _report(args: argparse.Namespace, stats: dict[str, dict[str, float]], stream: dict[str, float]) -> str:
    health = stats.get("/health", {})
    verdict = "PASS" if health and health["p99"] < HEALTH_P99_BUDGET_MS else "FAIL"
    lines = [
        "# HTTP load test (locust, headless, 127.0.0.1)",
        "",
        f"Generated by `scripts/loadtest.py` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}: "
        f"{args.users} users (spawn rate {args.spawn_rate}/s, each waiting 50-250 ms between requests) for "
        f"{args.duration} s, task mix /health 3 : /predict 2 : /detect 2 : /recommend 1, while the synthetic "
        f"ingester streamed into the same worker ({args.deployments} deployments, target "
        f"{args.stream_rate:g} samples/s).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs, the broker, the "
        "ingester and locust itself), Python " + platform.python_version() + "; 1-minute load average "
        f"{stream['load_before']:.1f} before the test and {stream['load_after']:.1f} after it.",
        "",
        "| endpoint | requests | failures | requests/s | p50 (ms) | p99 (ms) | max (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in (*ENDPOINTS, "Aggregated"):
        s = stats.get(name)
        if s is None:
            continue
        lines.append(
            f"| {name} | {s['requests']:.0f} | {s['failures']:.0f} | {s['rps']:.1f} | {s['p50']:.0f} | "
            f"{s['p99']:.0f} | {s['max']:.0f} |"
        )
    lines += [
        "",
        f"Stream during the test: {stream['processed']:.0f} samples processed by the worker "
        f"({stream['processed'] / max(1.0, stream['seconds']):.0f}/s over {stream['seconds']:.0f} s), "
        f"{stream['dead']:.0f} dead-lettered.",
        "",
        f"`/health` p99 = {health.get('p99', float('nan')):.0f} ms against a budget of "
        f"{HEALTH_P99_BUDGET_MS:.0f} ms: **{verdict}**.",
        "",
        "Percentiles are locust's (whole milliseconds; rounded to two significant digits above 100 ms) and "
        "include the client's own time on a loaded 2-core machine, so they are an upper bound on the "
        "worker's latency.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=int, default=60, help="seconds of load (at most 300)")
    p.add_argument("--users", type=int, default=20, help="concurrent locust users (at most 100)")
    p.add_argument("--spawn-rate", type=float, default=10.0)
    p.add_argument("--stream-rate", type=float, default=100.0, help="ingester samples per second")
    p.add_argument("--deployments", type=int, default=10)
    p.add_argument("--bootstrap", default=os.environ.get("HELIOS_KAFKA_BOOTSTRAP", f"{LOOPBACK}:9092"))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "load.md")
    p.add_argument("--workdir", type=Path, default=REPO / ".local" / "loadtest")
    args = p.parse_args(argv)
    if not (1 <= args.duration <= 300 and 1 <= args.users <= 100):
        p.error("--duration must be 1..300 and --users 1..100 (a bounded test)")
    if not args.bootstrap.startswith(f"{LOOPBACK}:"):
        p.error(f"--bootstrap must be on {LOOPBACK} (got {args.bootstrap})")

    run_id = uuid.uuid4().hex[:8]
    work = args.workdir / run_id
    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HELIOS_")},
        "HELIOS_KAFKA_BOOTSTRAP": args.bootstrap,
        "HELIOS_BIND": LOOPBACK,
        "HELIOS_PORT": str(port),
        "HELIOS_APP_ID": f"helios-load-{run_id}",
        "HELIOS_DATA_DIR": str(work / "data"),
        "HELIOS_TOPIC_PARTITIONS": "4",
        "HELIOS_LOG_LEVEL": "WARNING",
        **{
            f"HELIOS_TOPIC_{t.upper()}": f"load-{run_id}.{t}"
            for t in ("metrics", "forecasts", "anomalies", "recommendations", "dlq")
        },
    }
    helios = [sys.executable, "-m", "pipeline.cli"]
    worker = ingester = None
    try:
        with open(work / "worker.log", "wb") as wlog:
            worker = subprocess.Popen(
                [*helios, "worker"], cwd=REPO, env=env, stdout=wlog, stderr=subprocess.STDOUT
            )
        _wait(lambda: _get(port, "/ready")[0] == 200, 120, "worker ready", worker)
        count = int(args.stream_rate * (args.duration + 60) / args.deployments) + 1
        with open(work / "ingest.log", "wb") as ilog:
            ingester = subprocess.Popen(
                [
                    *helios,
                    "ingest",
                    "--source",
                    "synthetic",
                    "--rate",
                    str(args.stream_rate),
                    "--count",
                    str(count),
                    "--deployments",
                    str(args.deployments),
                    "--incident-at",
                    str(count // 2),
                ],
                cwd=REPO,
                env=env,
                stdout=ilog,
                stderr=subprocess.STDOUT,
            )
        # Load starts once the stream is flowing and every deployment has state on the worker.
        _wait(
            lambda: _metric(port, "helios_tracked_deployments") >= args.deployments,
            120,
            "stream flowing",
            ingester,
        )
        processed0, dead0, t0 = (
            _metric(port, "helios_samples_total", outcome="processed"),
            _metric(port, "helios_dead_letters_total"),
            time.monotonic(),
        )
        load_before = os.getloadavg()[0]
        prefix = work / "locust"
        locust = subprocess.run(
            [
                str(Path(sys.executable).with_name("locust")),
                "-f",
                str(Path(__file__).resolve()),
                "--headless",
                "-u",
                str(args.users),
                "-r",
                str(args.spawn_rate),
                "-t",
                f"{args.duration}s",
                "-H",
                f"http://{LOOPBACK}:{port}",
                "--csv",
                str(prefix),
                "--only-summary",
                "--loglevel",
                "WARNING",
                "--stop-timeout",
                "5",
            ],
            cwd=REPO,
            env={**env, "LOADTEST_DEPLOYMENTS": str(args.deployments)},
            capture_output=True,
            text=True,
            timeout=args.duration + 120,
            check=False,
        )
        stream = {
            "processed": _metric(port, "helios_samples_total", outcome="processed") - processed0,
            "dead": _metric(port, "helios_dead_letters_total") - dead0,
            "seconds": time.monotonic() - t0,
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        }
        if ingester.poll() is not None and ingester.returncode != 0:
            raise SystemExit(f"ingester failed ({ingester.returncode}); see {work / 'ingest.log'}")
        if worker.poll() is not None:
            raise SystemExit(f"worker died during the load; see {work / 'worker.log'}")
        if not Path(f"{prefix}_stats.csv").is_file():
            raise SystemExit(f"locust wrote no stats (rc {locust.returncode}):\n{locust.stderr[-3000:]}")
        stats = _read_stats(prefix)
    finally:
        _stop(ingester)
        _stop(worker)
    text = _report(args, stats, stream)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    (work / "summary.json").write_text(json.dumps({"stats": stats, "stream": stream}, indent=2))
    print(text)
    failures = stats.get("Aggregated", {}).get("failures", 0.0)
    health_p99 = stats.get("/health", {}).get("p99", float("inf"))
    return 0 if health_p99 < HEALTH_P99_BUDGET_MS and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
