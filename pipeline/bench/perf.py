"""``make bench``: Helios against the ceiling of a Python stream processor on Kafka, in one run.

Against the real broker (``HELIOS_KAFKA_BOOTSTRAP``, default 127.0.0.1:9092), on fresh topics:

1. in-process (no Kafka): the cost of each stage in µs/sample, a pyinstrument profile, the cost per
   sample with 10 / 1,000 / 10,000 tracked deployments, the serialized state size
   (:mod:`pipeline.bench.inproc`);
2. the ceiling: :mod:`pipeline.bench.passthrough` (aiokafka consume -> orjson parse -> produce a small JSON
   record)
   on the pre-produced input, three times;
3. Helios: a real ``helios worker`` subprocess on the same input; sustained samples/s, CPU per sample,
   ``/health`` latency while it runs flat out (:mod:`pipeline.bench.health`), then the end-to-end latency of a
   paced producer at half the sustained rate;
4. resident memory of a worker with 10, 1,000 and 10,000 tracked deployments;
5. one worker against two in the same consumer group on the same partitions.

Writes ``benchmarks/perf.md``, ``benchmarks/perf.json`` and the PNG plots, and deletes its topics.
``--quick`` runs everything at small sizes (to debug the harness).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from pipeline.bench.common import (
    OutputCounter,
    Sample,
    cpu_seconds,
    create_topics,
    delete_topics,
    loadavg,
    make_samples,
    percentile,
    produce_all,
    rss_bytes,
    sustained_rate,
)
from pipeline.settings import load_settings
from pipeline.testing import Worker, metric_value

ROOT = Path(__file__).resolve().parents[2]

PY = sys.executable
OUT = ROOT / "benchmarks"
PARTITIONS = 8
STEP = 60


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')} load {loadavg()[0]:.2f}] {msg}", flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Run:
    """Names and processes of one bench run; everything it starts is stopped in :meth:`close`."""

    def __init__(self, bootstrap: str, quick: bool) -> None:
        self.bootstrap = bootstrap
        self.quick = quick
        self.id = uuid.uuid4().hex[:8]
        self.prefix = f"bench-{self.id}"
        self.tmp = Path(tempfile.mkdtemp(prefix="helios-bench-"))
        self.workers: list[Worker] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def worker_env(self, app: str, metrics_topic: str) -> dict[str, str]:
        return {
            "HELIOS_APP_ID": f"{self.prefix}-{app}",
            "HELIOS_TOPIC_METRICS": metrics_topic,
            "HELIOS_TOPIC_FORECASTS": self.topic(f"{app}.forecasts"),
            "HELIOS_TOPIC_ANOMALIES": self.topic(f"{app}.anomalies"),
            "HELIOS_TOPIC_RECOMMENDATIONS": self.topic(f"{app}.recommendations"),
            "HELIOS_TOPIC_DLQ": self.topic(f"{app}.dlq"),
            "HELIOS_TOPIC_PARTITIONS": str(PARTITIONS),
            "HELIOS_KAFKA_BOOTSTRAP": self.bootstrap,
            "HELIOS_SCORING_INTERVAL": str(STEP),
            "HELIOS_LOG_LEVEL": "WARNING",
            "HELIOS_DATA_DIR": str(self.tmp / f"data-{app}-{len(self.workers)}"),
        }

    def start_worker(self, env: dict[str, str], name: str, wait_ready: bool = True) -> Worker:
        w = Worker(env, free_port(), self.tmp / f"{name}.log")
        self.workers.append(w)
        return w.start(wait_ready=wait_ready, timeout=120.0)

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


def health_poller(run: Run, port: int, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = run.tmp / f"health-{name}.json"
    proc = subprocess.Popen([PY, "-m", "pipeline.bench.health", "--port", str(port), "--out", str(out)])
    run.procs.append(proc)
    return proc, out


def stop_poller(proc: subprocess.Popen[bytes], out: Path) -> list[tuple[float, float, int]]:
    proc.terminate()
    proc.wait(timeout=15)
    if not out.exists():  # stopped before it installed its signal handler: nothing was measured
        return []
    return [tuple(x) for x in json.loads(out.read_text())]


def start_py_spy(pid: int, out: Path, seconds: int) -> subprocess.Popen[bytes]:
    """Sample the worker's Python stacks (py-spy, 200 Hz) while it runs flat out."""
    cmd = [str(Path(PY).parent / "py-spy"), "record", "-p", str(pid), "-d", str(seconds), "-r", "200"]
    cmd += ["-f", "raw", "-o", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_py_spy(proc: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    """Inclusive and self shares per function from py-spy's collapsed stacks."""
    _, err = proc.communicate(timeout=120)
    if proc.returncode != 0 or not out.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = []
        for frame in stack.split(";"):
            fn, _, loc = frame.partition(" (")
            frames.append(f"{fn} ({loc.rsplit('/', 1)[-1].split(':')[0]})" if loc else fn)
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def top(d: dict[str, int], k: int) -> list[tuple[str, float]]:
        return [(name, c / total) for name, c in sorted(d.items(), key=lambda x: -x[1])[:k]]

    return {"samples": total, "inclusive": top(inclusive, 60), "self": top(own, 25)}


def processed(worker: Worker) -> float:
    return metric_value(worker.metrics(), "helios_samples_total", outcome="processed") or 0.0


def dead(worker: Worker) -> float:
    return metric_value(worker.metrics(), "helios_samples_total", outcome="dead_lettered") or 0.0


# -- phases ----------------------------------------------------------------------------------------
def phase_inproc(quick: bool) -> dict[str, Any]:
    log("in-process stage costs, profile and state sizes (no Kafka)")
    cmd = [PY, "-m", "pipeline.bench.inproc"] + (["--quick"] if quick else [])
    done = subprocess.run(cmd, capture_output=True, check=True, timeout=600, cwd=ROOT)
    return json.loads(done.stdout)


async def phase_ceiling(run: Run, source: str, n: int, repeats: int) -> list[dict[str, Any]]:
    results = []
    for i in range(repeats):
        sink = run.topic(f"ceiling{i}.out")
        await create_topics(run.bootstrap, [sink], PARTITIONS)
        counter = OutputCounter(run.bootstrap, sink)
        await counter.start()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.time()
        proc = subprocess.Popen(
            [PY, "-m", "pipeline.bench.passthrough", "--bootstrap", run.bootstrap, "--input", source,
             "--output", sink, "--group", f"{run.prefix}-ceiling{i}", "--count", str(n)]
        )  # fmt: skip
        run.procs.append(proc)
        try:
            ok = await counter.run_until(n, timeout=300)
        finally:
            await counter.stop()
        proc.wait(timeout=60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        last = counter.marks[-1][0]
        res = {
            "complete": ok,
            "outputs": counter.count,
            "sustained": sustained_rate(counter.marks, n),
            "wall_seconds": last - started,
            "overall": n / (last - started),
            "cpu_us_per_sample": cpu / n * 1e6,
            "marks": [(t - started, c) for t, c in counter.marks],
        }
        log(
            f"ceiling run {i}: {res['sustained']:.0f} samples/s sustained, "
            f"{res['cpu_us_per_sample']:.0f} µs CPU/sample"
        )
        results.append(res)
    return results


async def phase_floor(run: Run, source: str, n: int) -> dict[str, Any]:
    """The ceiling's work as a Faust agent on the worker's consume and produce paths (a floor for Helios)."""
    sink = run.topic("floor.out")
    await create_topics(run.bootstrap, [sink], PARTITIONS)
    counter = OutputCounter(run.bootstrap, sink)
    await counter.start()
    started = time.time()
    # A process, not an import: the floor is a Faust app built from ``agents``, which ``pipeline`` never
    # imports.
    proc = subprocess.Popen(
        [PY, "-m", "agents.bench_floor", "--bootstrap", run.bootstrap, "--input", source,
         "--output", sink, "--group", f"{run.prefix}-floor"]
    )  # fmt: skip
    run.procs.append(proc)
    # CPU between 20 % and 80 % of the outputs: the steady cost, without Faust's start-up.
    marks: dict[str, tuple[float, int]] = {}

    def steady() -> bool:
        for name, share in (("from", 0.2), ("to", 0.8)):
            if name not in marks and counter.count >= share * n:
                marks[name] = (cpu_seconds(proc.pid), counter.count)
        return proc.poll() is not None

    try:
        ok = await counter.run_until(n, timeout=300, stop=steady)
        if ok:
            marks.setdefault("to", (cpu_seconds(proc.pid), counter.count))  # the last fetch passed 80 %
    finally:
        await counter.stop()
        proc.terminate()
        proc.wait(timeout=60)
    if not ok or len(marks) < 2:
        raise RuntimeError(f"the Faust floor produced {counter.count} of {n} records")
    (c0, n0), (c1, n1) = marks["from"], marks["to"]
    res = {
        "outputs": counter.count,
        "sustained": sustained_rate(counter.marks, n),
        "startup_seconds": counter.marks[0][0] - started,
        "cpu_us_per_sample": (c1 - c0) / (n1 - n0) * 1e6,
    }
    log(f"faust floor: {res['sustained']:.0f} samples/s sustained, {res['cpu_us_per_sample']:.0f} µs/sample")
    return res


async def helios_throughput(
    run: Run, worker: Worker, counter: OutputCounter, n: int, started: float, quick: bool
) -> dict[str, Any]:
    """The worker on the pre-produced backlog: sustained rate, CPU, RSS, /health meanwhile, a profile."""
    res: dict[str, Any] = {}
    assert worker.proc is not None
    pid = worker.proc.pid
    poller, poller_out = health_poller(run, worker.port, "helios")
    cpu0 = cpu_seconds(pid)
    rss_trace: list[tuple[float, int]] = []
    last_rss = [0.0]

    spy: list[subprocess.Popen[bytes]] = []
    spy_out = run.tmp / "py-spy.txt"

    def sample_rss() -> bool:
        if not spy and counter.count >= n // 10 and not quick:
            spy.append(start_py_spy(pid, spy_out, seconds=15))
        if time.time() - last_rss[0] >= 1.0:
            last_rss[0] = time.time()
            rss_trace.append((last_rss[0] - started, rss_bytes(pid)))
        return worker.proc is not None and worker.proc.poll() is not None

    ok = await counter.run_until(n, timeout=900, stop=sample_rss)
    t_first = counter.marks[0][0] if counter.marks else started
    t_last = counter.marks[-1][0] if counter.marks else time.time()
    cpu1 = cpu_seconds(pid)
    health = stop_poller(poller, poller_out)
    # /health while the worker was flat out: between the first and the last output.
    busy = [ms for t, ms, st in health if t_first <= t <= t_last]
    failed = sum(1 for t, _, st in health if t_first <= t <= t_last and st != 200)
    res["throughput"] = {
        "complete": ok,
        "samples": n,
        "outputs": counter.count,
        "sustained": sustained_rate(counter.marks, n),
        "wall_seconds": t_last - started,
        "overall": n / (t_last - started),
        "startup_seconds": t_first - started,
        "first_to_last": n / max(1e-9, t_last - t_first),
        "cpu_us_per_sample": (cpu1 - cpu0) / n * 1e6,
        "processed": processed(worker),
        "dead_lettered": dead(worker),
        "marks": [(t - started, c) for t, c in counter.marks],
        "rss_trace": rss_trace,
    }
    res["health"] = {
        "requests": len(busy),
        "failed": failed,
        "p50_ms": percentile(busy, 50),
        "p99_ms": percentile(busy, 99),
        "max_ms": max(busy) if busy else float("nan"),
    }
    if spy:
        res["worker_profile"] = finish_py_spy(spy[0], spy_out)
    thr = res["throughput"]
    log(
        f"helios: {thr['sustained']:.0f} samples/s sustained, "
        f"{thr['cpu_us_per_sample']:.0f} µs CPU/sample; "
        f"/health p99 {res['health']['p99_ms']:.1f} ms over {len(busy)} requests"
    )
    if not ok:
        raise RuntimeError(f"helios produced {counter.count} of {n} recommendations; log:\n{worker.tail()}")
    return res


async def helios_latency(
    run: Run, worker: Worker, counter: OutputCounter, source: str, paced: list[Sample], n: int, rate: float
) -> dict[str, Any]:
    """End-to-end latency of a paced producer at ``rate`` samples/s, the same worker, warm."""
    sent_at: dict[tuple[str, int], float] = {}
    latencies: list[tuple[float, float]] = []

    def on_records(msgs: list[Any], now: float) -> None:
        for m in msgs:
            rec = orjson.loads(m.value)
            ts = int(datetime.fromisoformat(rec["timestamp"]).timestamp())
            at = sent_at.pop((f"{rec['namespace']}/{rec['deployment']}", ts), None)
            if at is not None:
                latencies.append((at, (now - at) * 1000.0))

    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, acks="all")
    await producer.start()
    poller, poller_out = health_poller(run, worker.port, "latency")

    async def pace() -> None:
        t0 = time.perf_counter()
        for i, s in enumerate(paced):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0.001:
                await asyncio.sleep(delay)
            sent_at[(s.key.decode(), s.window)] = time.time()
            await producer.send(source, key=s.key, value=s.value)
        await producer.flush()

    log(f"latency: {len(paced)} samples paced at {rate:.0f}/s (half the sustained rate)")
    paced_started = time.time()
    try:
        await asyncio.gather(
            pace(),
            counter.run_until(n + len(paced), timeout=120 + len(paced) / rate, on_records=on_records),
        )
    finally:
        await producer.stop()
    paced_seconds = time.time() - paced_started
    health2 = stop_poller(poller, poller_out)
    # The first second is the producer's connection warm-up; it is reported apart.
    steady = [ms for at, ms in latencies if at - paced_started >= 1.0]
    allv = [ms for _, ms in latencies]
    lat = {
        "rate": rate,
        "sent": len(paced),
        "matched": len(latencies),
        "unmatched": len(sent_at),
        "seconds": paced_seconds,
        "p50_ms": percentile(steady, 50),
        "p90_ms": percentile(steady, 90),
        "p99_ms": percentile(steady, 99),
        "max_ms": max(steady) if steady else float("nan"),
        "p99_all_ms": percentile(allv, 99),
        "values": steady,
        "health_p99_ms": percentile([ms for _, ms, _ in health2], 99),
    }
    log(f"latency at {rate:.0f}/s: p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms")
    return lat


async def phase_helios(
    run: Run, source: str, warm: list[Sample], paced: list[Sample], quick: bool
) -> dict[str, Any]:
    """Throughput on the pre-produced backlog, /health meanwhile, then latency at half that rate."""
    n = len(warm)
    env = run.worker_env("helios", source)
    await create_topics(run.bootstrap, [env["HELIOS_TOPIC_RECOMMENDATIONS"]], PARTITIONS)
    counter = OutputCounter(run.bootstrap, env["HELIOS_TOPIC_RECOMMENDATIONS"])
    await counter.start()
    started = time.time()
    worker = run.start_worker(env, "helios", wait_ready=False)
    try:
        res = await helios_throughput(run, worker, counter, n, started, quick)
        # Latency: the same worker (warm state), the next steps of the same deployments, paced.
        rate = res["throughput"]["sustained"] / 2
        res["latency"] = await helios_latency(run, worker, counter, source, paced, n, rate)
    finally:
        await counter.stop()
        worker.kill()
    return res


async def phase_memory(run: Run, quick: bool) -> dict[str, Any]:
    """RSS of one worker as it comes to track 10, 1,000 and 10,000 deployments (2 samples each)."""
    source = run.topic("mem.metrics")
    await create_topics(run.bootstrap, [source], PARTITIONS)
    env = run.worker_env("mem", source)
    await create_topics(run.bootstrap, [env["HELIOS_TOPIC_RECOMMENDATIONS"]], PARTITIONS)
    worker = run.start_worker(env, "mem")
    assert worker.proc is not None
    pid = worker.proc.pid
    counter = OutputCounter(run.bootstrap, env["HELIOS_TOPIC_RECOMMENDATIONS"])
    await counter.start()
    out: dict[str, Any] = {"levels": []}
    try:
        time.sleep(2.0)
        out["idle_rss"] = rss_bytes(pid)
        tracked, expected = 0, 0
        levels = (10, 200, 1000) if quick else (10, 1000, 10_000)
        for level in levels:
            new = make_samples(level - tracked, 2, STEP, seed=5, first_deployment=tracked)
            await produce_all(run.bootstrap, source, new)
            expected += len(new)
            t0 = time.time()
            ok = await counter.run_until(expected, timeout=600)
            if not ok:
                raise RuntimeError(
                    f"memory phase: {counter.count} of {expected} outputs; log:\n{worker.tail()}"
                )
            time.sleep(1.5)  # let the last batch's state writes and gauges settle
            got = metric_value(worker.metrics(), "helios_tracked_deployments")
            rss = rss_bytes(pid)
            out["levels"].append(
                {"deployments": level, "tracked": got, "rss": rss, "seconds": time.time() - t0}
            )
            log(f"memory: {got:.0f} tracked deployments, RSS {rss / 2**20:.1f} MiB")
            tracked = level
    finally:
        await counter.stop()
        worker.kill()
    lv = out["levels"]
    out["per_deployment_bytes"] = (lv[-1]["rss"] - lv[-2]["rss"]) / (
        lv[-1]["deployments"] - lv[-2]["deployments"]
    )
    return out


async def phase_two_workers(run: Run, deployments: int, steps: int) -> dict[str, Any]:
    """Pre-produced input, then one worker; the same input again with two workers in one group."""
    source = run.topic("scale.metrics")
    await create_topics(run.bootstrap, [source], PARTITIONS)
    samples = make_samples(deployments, steps, STEP, seed=9)
    await produce_all(run.bootstrap, source, samples)
    n = len(samples)
    out: dict[str, Any] = {"samples": n}
    for name, count, extra in (("1", 1, {}), ("2", 2, {}), ("1-batch50", 1, {"HELIOS_BATCH_SIZE": "50"})):
        app = f"scale{name.replace('-', '')}"
        env = {**run.worker_env(app, source), **extra}
        await create_topics(run.bootstrap, [env["HELIOS_TOPIC_RECOMMENDATIONS"]], PARTITIONS)
        counter = OutputCounter(run.bootstrap, env["HELIOS_TOPIC_RECOMMENDATIONS"])
        await counter.start()
        started = time.time()
        workers = []
        try:
            procs = []
            for i in range(count):
                env_i = dict(env, HELIOS_DATA_DIR=str(run.tmp / f"data-{app}-{i}"))
                w = Worker(env_i, free_port(), run.tmp / f"{app}-{i}.log")
                run.workers.append(w)
                workers.append(w)
            # Both processes are launched together so they join the group at about the same time.
            for w in workers:
                procs.append(threaded_start(w))
            for t in procs:
                t.join()
            cpu0 = [cpu_seconds(w.proc.pid) for w in workers if w.proc is not None]
            poller, poller_out = health_poller(run, workers[0].port, app)
            ok = await counter.run_until(n, timeout=600)
            health = stop_poller(poller, poller_out)
            # Late duplicates (a batch replayed after a rebalance) arrive right after; give them a moment.
            await counter.run_until(n * 2, timeout=3.0)
            cpu1 = [cpu_seconds(w.proc.pid) for w in workers if w.proc is not None]
            t_first, t_last = counter.marks[0][0], max(t for t, c in counter.marks if c <= n)
            per = []
            for w, c0, c1 in zip(workers, cpu0, cpu1, strict=True):
                text = w.metrics()
                per.append({
                    "processed": metric_value(text, "helios_samples_total", outcome="processed") or 0.0,
                    "replayed": metric_value(text, "helios_samples_total", outcome="replayed") or 0.0,
                    "tracked": metric_value(text, "helios_tracked_deployments"),
                    "cpu_seconds": c1 - c0,
                })  # fmt: skip
            busy = [ms for t, ms, _ in health if t_first <= t <= t_last]
            out[name] = {
                "health_p99_ms": percentile(busy, 99),
                "health_p50_ms": percentile(busy, 50),
                "complete": ok,
                "outputs": counter.count,
                "duplicates": counter.count - n,
                "sustained": sustained_rate(counter.marks, n),
                "first_to_last": n / max(1e-9, t_last - t_first),
                "startup_seconds": t_first - started,
                "workers": per,
                "marks": [(t - started, c) for t, c in counter.marks],
            }
            log(
                f"{name} worker(s): {out[name]['sustained']:.0f} samples/s, /health p99 "
                f"{out[name]['health_p99_ms']:.0f} ms, per worker {per}"
            )
        finally:
            await counter.stop()
            for w in workers:
                w.kill()
    return out


def threaded_start(w: Worker) -> Any:
    import threading

    t = threading.Thread(target=w.start, kwargs={"wait_ready": False, "timeout": 120.0})
    t.start()
    return t


# -- report ----------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(
            line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line
        )
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    info["ram_gib"] = round(int(mem) / 2**20, 1)
    from importlib.metadata import version

    names = ("aiokafka", "faust-streaming", "orjson", "pydantic", "xgboost-cpu", "prometheus-client", "river")
    info["packages"] = {p: version(p) for p in names}
    jars = sorted((ROOT / ".local" / "kafka" / "lib").glob("kafka_2.13-*.jar"))
    info["kafka"] = jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "unknown"
    return info


def plots(res: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    best = max(res["ceiling"], key=lambda r: r["sustained"])
    for label, marks in (
        (f"ceiling (aiokafka passthrough): {best['sustained']:.0f}/s", best["marks"]),
        (
            f"Helios, 1 worker: {res['helios']['throughput']['sustained']:.0f}/s",
            res["helios"]["throughput"]["marks"],
        ),
    ):
        ax.plot([t for t, _ in marks], [c for _, c in marks], label=label)
    ax.set_xlabel("seconds since the consumer process was launched")
    ax.set_ylabel("outputs consumed")
    ax.set_title(f"Throughput on {res['config']['samples']:,} pre-produced samples")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(OUT / "perf_throughput.png", dpi=110)
    files.append("perf_throughput.png")
    plt.close(fig)

    lat = res["helios"]["latency"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    vals = sorted(lat["values"])
    a1.hist(vals, bins=60, color="tab:blue")
    a1.set_xlabel("produce -> recommendation consumed (ms)")
    a1.set_ylabel("samples")
    a1.set_title(f"at {lat['rate']:.0f} samples/s (half the sustained rate)")
    a2.plot(vals, [i / len(vals) for i in range(len(vals))])
    for q, name in ((lat["p50_ms"], "p50"), (lat["p99_ms"], "p99")):
        a2.axvline(q, color="grey", ls="--")
        a2.text(q, 0.05, f" {name} {q:.0f} ms", rotation=90)
    a2.axvline(250, color="red", ls=":", label="target p99 250 ms")
    a2.set_xlabel("ms")
    a2.set_ylabel("CDF")
    a2.legend()
    fig.tight_layout()
    fig.savefig(OUT / "perf_latency.png", dpi=110)
    files.append("perf_latency.png")
    plt.close(fig)

    stages = res["inproc"]["stages_us"]
    names = [k for k in stages if "median" not in k]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(names, [stages[k] for k in names])
    ax.invert_yaxis()
    ax.set_xlabel("µs per sample (in-process, no Kafka)")
    ax.set_title(
        f"Cost per stage, {res['inproc']['stages_deployments']} deployments, "
        f"batch {res['inproc']['batch_size']}"
    )
    fig.tight_layout()
    fig.savefig(OUT / "perf_stages.png", dpi=110)
    files.append("perf_stages.png")
    plt.close(fig)
    return files


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, to debug the harness")
    p.add_argument("--deployments", type=int, default=1000)
    p.add_argument("--steps", type=int, default=60, help="samples per deployment in the throughput run")
    p.add_argument("--latency-steps", type=int, default=10, help="further samples per deployment, paced")
    p.add_argument("--skip-inproc", action="store_true")
    p.add_argument("--out", type=Path, default=OUT / "perf.json")
    a = p.parse_args()
    if a.quick:
        a.deployments, a.steps, a.latency_steps = 100, 20, 5
    bootstrap = os.environ.get("HELIOS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    run = Run(bootstrap, a.quick)
    began = time.time()
    res: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load": {"start": loadavg()},
        "config": {
            "deployments": a.deployments,
            "steps": a.steps,
            "samples": a.deployments * a.steps,
            "latency_steps": a.latency_steps,
            "partitions": PARTITIONS,
            "scoring_interval": STEP,
            "snapshot_every": load_settings({}).snapshot_every,
            "quick": a.quick,
        },
    }
    log(f"run {run.id}: broker {bootstrap}, scratch {run.tmp}")
    try:
        if not a.skip_inproc:
            res["inproc"] = phase_inproc(a.quick)
        res["load"]["after_inproc"] = loadavg()

        async def kafka_phases() -> None:
            source = run.topic("metrics")
            await create_topics(bootstrap, [source], PARTITIONS)
            every = make_samples(a.deployments, a.steps + a.latency_steps, STEP)
            cut = a.deployments * a.steps
            warm, paced = every[:cut], every[cut:]
            secs = await produce_all(bootstrap, source, warm)
            log(f"pre-produced {len(warm)} samples in {secs:.1f} s")
            res["ceiling"] = await phase_ceiling(run, source, len(warm), 3)
            res["load"]["after_ceiling"] = loadavg()
            res["floor"] = await phase_floor(run, source, len(warm))
            res["helios"] = await phase_helios(run, source, warm, paced, a.quick)
            res["load"]["after_helios"] = loadavg()
            res["memory"] = await phase_memory(run, a.quick)
            res["load"]["after_memory"] = loadavg()
            steps2 = 10 if a.quick else 20
            res["scaling"] = await phase_two_workers(run, a.deployments, steps2)
            res["load"]["end"] = loadavg()

        asyncio.run(kafka_phases())
    finally:
        run.close()
        try:
            asyncio.run(delete_topics(bootstrap, run.prefix))
        except Exception as exc:
            log(f"could not delete topics {run.prefix}.*: {exc}")
    res["seconds"] = time.time() - began
    OUT.mkdir(exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    if "inproc" in res:
        res["plots"] = plots(res)
        from pipeline.bench.report import write_report

        write_report(res, OUT / "perf.md")
    log(f"done in {res['seconds']:.0f} s: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
