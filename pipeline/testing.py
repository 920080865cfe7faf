"""Helpers that drive real processes, for the tests and the benchmarks (``pipeline.bench``).

A `helios worker` or `helios ingest` subprocess, a private broker, Kafka producers and readers. Nothing
here runs at import time; every process is started by a call. The worker is started through the CLI in a
subprocess, so this module imports no ``agents`` code.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nothing listens on now (the OS's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def topic_env(unique: str) -> dict[str, str]:
    """Topic names and an app id of one test's own."""
    return {
        "HELIOS_APP_ID": f"helios-test-{unique}",
        "HELIOS_TOPIC_METRICS": f"t-{unique}.metrics",
        "HELIOS_TOPIC_FORECASTS": f"t-{unique}.forecasts",
        "HELIOS_TOPIC_ANOMALIES": f"t-{unique}.anomalies",
        "HELIOS_TOPIC_RECOMMENDATIONS": f"t-{unique}.recommendations",
        "HELIOS_TOPIC_DLQ": f"t-{unique}.dlq",
    }


class Worker:
    """A real `helios worker` process with its own port and data directory."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env = env
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True, timeout: float = 90.0) -> Worker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"],
            cwd=REPO,
            env={**os.environ, **self.env, "HELIOS_PORT": str(self.port), "HELIOS_BIND": "127.0.0.1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(lambda: self.get("/health")[0] == 200, timeout, "health")
        if wait_ready:
            self.wait_for(lambda: self.get("/ready")[0] == 200, timeout, "ready")
        return self

    def wait_for(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}; log:\n{self.tail()}")
            try:
                if cond():
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not {what} within {timeout} s; log:\n{self.tail()}")

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, bytes]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path)

    def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        status, data = self.request("POST", path, body, **kw)
        return status, json.loads(data) if data else None

    def metrics(self) -> str:
        return self.get("/metrics")[1].decode()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    stop = kill

    def terminate(self) -> None:
        self.kill(signal.SIGTERM)


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus exposition, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return None


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(
    bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 60.0
) -> list[Any]:
    """Read a topic from the start until `until(records)` holds or the time is up."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(out):
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                out.extend(msgs)
    finally:
        await consumer.stop()
    return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class PrivateBroker:
    """A broker of one test's own (scripts/kafka-local on free ports), so it can be stopped freely."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.cport = free_port()
        home.mkdir(parents=True, exist_ok=True)
        shared_lib = REPO / ".local" / "kafka" / "lib"
        # Reuse the jars resolved for the dev broker instead of resolving them from Maven again.
        if shared_lib.is_dir() and not (home / "lib").exists():
            (home / "lib").symlink_to(shared_lib)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, verb: str) -> None:
        env = {
            **os.environ,
            "KAFKA_LOCAL_PORT": str(self.port),
            "KAFKA_LOCAL_CONTROLLER_PORT": str(self.cport),
            "KAFKA_LOCAL_DIR": str(self.home),
        }
        subprocess.run(
            [str(REPO / "scripts" / "kafka-local"), verb],
            env=env,
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    def is_up(self) -> bool:
        return port_open("127.0.0.1", self.port)


class Ingester:
    """A real ``helios ingest`` process."""

    def __init__(self, env: dict[str, str], args: Iterable[str], log_path: Path) -> None:
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "ingest", *args],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
