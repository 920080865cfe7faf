"""``/health`` p99 while a worker runs flat out, without and with a browser polling the status page.

    HELIOS_KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python -m pipeline.bench.status_poll [--deployments 100]
        [--steps 400] [--every 5]

Pre-produces ``deployments x steps`` samples (``make bench``'s generator), then three times starts a
fresh worker on them (its own consumer group) with ``bench_health.py`` polling ``/health`` every 50 ms:
alone; with a plain HTTP client fetching what the page loads (page, static files, history) every
``--every`` seconds (the worker's own cost of the page); and with Debian's chromium (Playwright)
reloading the page of the first deployment every ``--every`` seconds (the page's own 5 s poll of the
history on top). The browser runs on the same cores as the worker here, which a user's browser does
not. ``/health`` counts between the first and the last output, as in ``make bench``.

``--cost`` instead times, in-process and without a broker, what one poll costs the worker's event loop:
the index and deployment pages' HTML, the history built and encoded (what every poll pays while outputs
arrive flat out) and answered from the held bytes (between two outputs), over the real Runtime fed
``--deployments x --steps`` samples. Those milliseconds do not depend on the machine's other load.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from pipeline.bench.common import (
    OutputCounter,
    create_topics,
    make_samples,
    percentile,
    produce_all,
    sustained_rate,
)
from pipeline.bench.perf import PARTITIONS, PY, STEP, Run, health_poller, log, stop_poller

#: What the deployment page loads from ``/static/``.
STATIC_NAMES = ("uPlot.iife.min.js", "uPlot.min.css", "status.css", "status.js")


def browse(url: str, every: float, duration: float) -> None:
    """The browser: load ``url`` every ``every`` seconds for ``duration`` seconds; print what it saw."""
    from playwright.sync_api import sync_playwright

    loads, errors, statuses = 0, 0, []
    stop = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: None)
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline and not stop:
            started = time.monotonic()
            try:
                response = page.goto(url, timeout=30_000)
                statuses.append(response.status if response else -1)
                loads += 1
            except Exception:
                errors += 1
            while not stop and time.monotonic() - started < every:
                time.sleep(0.1)
        browser.close()
    ok = statuses.count(200)
    print(f"browser: {loads} page loads, {ok} answered 200 (before: 404, no sample yet), {errors} errors")


def fetch(url: str, every: float, duration: float) -> None:
    """What the browser asks the worker for, without the browser: the page, its static files, the history."""
    import urllib.error
    import urllib.request

    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    base = url.split("/deployments/")[0]
    paths = [url, *(f"{base}/static/{f}" for f in STATIC_NAMES)]
    paths.append(url + "/history?window=21600")
    rounds, ok = 0, 0
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline and not stop:
        started = time.monotonic()
        for path in paths:
            try:
                with urllib.request.urlopen(path, timeout=30) as resp:
                    resp.read()
                    ok += resp.status == 200
            except (urllib.error.URLError, OSError):
                pass
        rounds += 1
        while not stop and time.monotonic() - started < every:
            time.sleep(0.1)
    print(f"fetcher: {rounds} rounds of {len(paths)} requests, {ok} answered 200", flush=True)


async def one_run(run: Run, source: str, n: int, name: str, browser_every: float | None) -> dict[str, Any]:
    env = run.worker_env(name, source)
    await create_topics(run.bootstrap, [env["HELIOS_TOPIC_RECOMMENDATIONS"]], PARTITIONS)
    counter = OutputCounter(run.bootstrap, env["HELIOS_TOPIC_RECOMMENDATIONS"])
    await counter.start()
    worker = run.start_worker(env, name, wait_ready=False)
    poller, poller_out = health_poller(run, worker.port, name)
    browser = None
    if browser_every is not None:
        url = f"http://127.0.0.1:{worker.port}/deployments/bench/svc-00000"
        cmd = [
            PY,
            "-m",
            "pipeline.bench.status_poll",
            "--fetch" if name == "fetcher" else "--browse",
            url,
            "--every",
            str(browser_every),
        ]
        browser = subprocess.Popen(cmd)
        run.procs.append(browser)
    try:
        ok = await counter.run_until(n, timeout=900)
        health = stop_poller(poller, poller_out)
        t_first, t_last = counter.marks[0][0], counter.marks[-1][0]
        busy = [ms for t, ms, st in health if t_first <= t <= t_last]
        res = {
            "complete": ok,
            "sustained": sustained_rate(counter.marks, n),
            "health_requests": len(busy),
            "health_p50_ms": percentile(busy, 50),
            "health_p99_ms": percentile(busy, 99),
            "health_max_ms": max(busy) if busy else float("nan"),
        }
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(timeout=30)
        await counter.stop()
        worker.kill()
    log(
        f"{name}: {res['sustained']:.0f} samples/s, /health p50 {res['health_p50_ms']:.1f} ms, "
        f"p99 {res['health_p99_ms']:.1f} ms, max {res['health_max_ms']:.0f} ms over {res['health_requests']}"
    )
    return res


def timed(fn: Callable[[], object], reps: int) -> float:
    """Median milliseconds of ``fn`` over ``reps`` calls (after one to warm it)."""
    fn()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 50)


def page_cost(deployments: int, steps: int, reps: int = 50) -> dict[str, float]:
    """Loop milliseconds of each part of a poll, on a worker holding ``deployments`` full rings."""
    from prometheus_client import CollectorRegistry

    from pipeline.app import create_app
    from pipeline.bench.inproc import raw_records, run_batches
    from pipeline.settings import load_settings
    from pipeline.status_page import HistoryCache, deployment_html, history_json, index_html, static_files

    settings = load_settings({"HELIOS_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    helios: Any = create_app(settings, registry=CollectorRegistry()).helios  # type: ignore[attr-defined]
    if not helios.models.reload():
        raise SystemExit(f"no XGBoost model under {settings.model_path}: {helios.models.last_error}")
    run_batches(
        helios.runtime, raw_records(make_samples(deployments, steps, STEP, seed=11)), settings.batch_size
    )
    key = next(iter(helios.runtime.entries))
    ns, dep = key.split("/")
    now, cache = helios.clock(), HistoryCache()
    horizons = list(settings.horizon_steps)
    res = {
        "index_html": timed(lambda: index_html(helios, "", now), reps),
        "deployment_html": timed(lambda: deployment_html(ns, dep, settings.history, horizons), reps),
        "history_build": timed(lambda: orjson.dumps(history_json(helios, key, None, now)), reps),
        "history_held": timed(lambda: cache.get(helios, key, None, now), reps),
        "static_lookup": timed(lambda: [static_files()[n] for n in STATIC_NAMES], reps),
        "history_kb": len(orjson.dumps(history_json(helios, key, None, now))) / 1000,
    }
    for name, value in res.items():
        log(f"{name}: {value:.4f} {'KB' if name.endswith('kb') else 'ms'}")
    reload_ms = res["deployment_html"] + res["static_lookup"] + res["history_build"]
    log(
        f"a page load while outputs arrive: {reload_ms:.2f} ms of loop (HTML, static files, history built); "
        f"its 5 s poll between two outputs: {res['history_held']:.4f} ms"
    )
    return res


async def bench(deployments: int, steps: int, every: float) -> None:
    import os

    run = Run(os.environ.get("HELIOS_KAFKA_BOOTSTRAP", "127.0.0.1:9092"), quick=False)
    try:
        source = run.topic("poll.metrics")
        await create_topics(run.bootstrap, [source], PARTITIONS)
        samples = make_samples(deployments, steps, STEP, seed=11)
        await produce_all(run.bootstrap, source, samples)
        for name, browser_every in (("alone", None), ("fetcher", every), ("browser", every)):
            await one_run(run, source, len(samples), name, browser_every)
    finally:
        run.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deployments", type=int, default=100)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=float, default=5.0)
    p.add_argument("--cost", action="store_true", help="time each part of a poll in-process (no broker)")
    p.add_argument("--browse", help=argparse.SUPPRESS)
    p.add_argument("--fetch", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.browse:
        browse(a.browse, a.every, duration=3600)
        return
    if a.fetch:
        fetch(a.fetch, a.every, duration=3600)
        return
    if a.cost:
        page_cost(a.deployments, a.steps)
        return
    asyncio.run(bench(a.deployments, a.steps, a.every))
    sys.exit(0)


if __name__ == "__main__":
    main()
