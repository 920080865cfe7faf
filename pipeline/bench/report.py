# ruff: noqa: E501 - the report is prose in f-strings; wrapping them mid-sentence reads worse
"""Turns the results of ``make bench`` (:mod:`pipeline.bench.perf`) into ``benchmarks/perf.md`` (numbers only from the run)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _f(x: float | None, nd: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{nd}f}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


@dataclass(frozen=True)
class Figures:
    """The numbers more than one section of the report uses, derived once from the run's results."""

    ceiling: float
    ceiling_cpu: float
    ratio: float
    ratio_cpu: float
    state_json: int
    rss_per: float
    steady: list[float]
    spread: float
    stage_sum: float


def figures(res: dict[str, Any]) -> Figures:
    inproc, thr = res["inproc"], res["helios"]["throughput"]
    ceiling_rates = sorted(r["sustained"] for r in res["ceiling"])
    ceiling = ceiling_rates[len(ceiling_rates) // 2]
    ceiling_cpu = sorted(r["cpu_us_per_sample"] for r in res["ceiling"])[len(res["ceiling"]) // 2]
    steady = [v["steady_us"] for v in inproc["by_deployments"].values()]
    stages = inproc["stages_us"]
    return Figures(
        ceiling=ceiling,
        ceiling_cpu=ceiling_cpu,
        ratio=thr["sustained"] / ceiling,
        ratio_cpu=ceiling_cpu / thr["cpu_us_per_sample"],
        state_json=inproc["state_sizes"][max(inproc["state_sizes"], key=int)]["bytes"],
        rss_per=res["memory"]["per_deployment_bytes"],
        steady=steady,
        # With 10 deployments a batch of 500 holds 50 samples of each; from 1,000 up every sample of a batch
        # is its own deployment's: compare like with like.
        spread=max(steady[-2:]) / min(steady[-2:]),
        stage_sum=sum(v for k, v in stages.items() if "median" not in k and "bytes" not in k),
    )


def _header(res: dict[str, Any], fig: Figures) -> list[str]:
    """The title, how the run was made, and the machine."""
    cfg = res["config"]
    mach = res["machine"]
    load = res["load"]
    lines: list[str] = []
    w = lines.append
    w("# Performance: Helios against the ceiling of Python on Kafka")
    w("")
    w(
        f"Produced by `make bench` (`python -m pipeline.bench.perf`) on {res['started']} in {res['seconds'] / 60:.1f} min; raw numbers "
        "in `benchmarks/perf.json`. Every number below comes from that one run."
        + (" **QUICK (debug) sizes.**" if cfg["quick"] else "")
    )
    w("")
    w("## Machine")
    w(
        f"- {mach['cpu']}, {mach['cores']} cores, {mach['ram_gib']} GiB RAM; {mach['platform']}; Python {mach['python']}"
    )
    w(
        f"- Apache Kafka {mach['kafka']} (KRaft, one local broker on the same 2 cores, `scripts/kafka-local`); "
        + ", ".join(f"{k} {v}" for k, v in mach["packages"].items())
    )
    w(
        f"- Shared machine: 1-minute load average {load['start'][0]:.2f} at the start, "
        + ", ".join(f"{k} {v[0]:.2f}" for k, v in load.items() if k != "start")
        + ". The broker, the process under test and the bench's own client share the 2 cores, so wall-clock rates "
        "are lower than on a dedicated box; CPU µs/sample (from /proc) is the number that transfers."
    )
    w("")
    return lines


def _summary(res: dict[str, Any], fig: Figures) -> list[str]:
    """The targets: measured, target, met."""
    thr = res["helios"]["throughput"]
    lat = res["helios"]["latency"]
    health = res["helios"]["health"]
    bd = res["inproc"]["by_deployments"]
    ceiling = fig.ceiling
    ceiling_cpu = fig.ceiling_cpu
    ratio = fig.ratio
    ratio_cpu = fig.ratio_cpu
    state_json = fig.state_json
    rss_per = fig.rss_per
    steady = fig.steady
    spread = fig.spread
    lines: list[str] = []
    w = lines.append
    w("## Summary")
    w("")
    w("| question | measured | target | met |")
    w("|---|---:|---:|---|")
    w(
        f"| Helios sustained / ceiling (wall clock) | {_f(thr['sustained'])} / {_f(ceiling)} samples/s = "
        f"**{ratio:.1%}** | >= 40 % | {_met(ratio >= 0.4)} |"
    )
    w(
        f"| same, by CPU per sample (ceiling µs / Helios µs) | {_f(ceiling_cpu)} / {_f(thr['cpu_us_per_sample'])} µs = "
        f"{ratio_cpu:.1%} | | |"
    )
    if res.get("floor"):
        fl = res["floor"]["cpu_us_per_sample"]
        w(
            f"| what any Faust agent of this design can reach: ceiling µs / Faust floor µs | {_f(ceiling_cpu)} / {_f(fl)} "
            f"µs = {ceiling_cpu / fl:.0%} | | |"
        )
        # The floor runs no Helios code, so its cost moves only with the machine: Helios' CPU over it
        # compares runs made on a busier or slower machine (benchmarks/perf-history.md).
        w(
            f"| Helios CPU per sample over the Faust floor's, same run | {_f(thr['cpu_us_per_sample'])} / {_f(fl)} µs = "
            f"{thr['cpu_us_per_sample'] / fl:.2f}x | | |"
        )
    w(
        f"| end-to-end p50 / p99 at half rate ({_f(lat['rate'])}/s) | {_f(lat['p50_ms'])} / **{_f(lat['p99_ms'])} ms** "
        f"| p99 < 250 ms | {_met(lat['p99_ms'] < 250)} |"
    )
    w(
        f"| resident memory per tracked deployment (RSS slope) | **{_f(rss_per / 1024, 1)} KB** | < 20 KB | "
        f"{_met(rss_per < 20 * 1024)} |"
    )
    w(
        f"| serialized state per deployment (`DeploymentPipeline.to_dict`, JSON) | {_f(state_json / 1024, 1)} KB | < 20 KB"
        f" | {_met(state_json < 20 * 1024)} |"
    )
    w(
        f"| cost per sample at {', '.join(bd)} deployments (in-process) | "
        f"{' / '.join(_f(v) for v in steady)} µs ({list(bd)[-2]} vs {list(bd)[-1]}: x{spread:.2f}) "
        "| independent | "
        f"{_met(spread < 1.3)} |"
    )
    w(
        f"| `/health` p99 while the worker runs flat out | **{_f(health['p99_ms'])} ms** (p50 {_f(health['p50_ms'], 1)}, "
        f"max {_f(health['max_ms'])}, {health['requests']} requests) | < 100 ms | {_met(health['p99_ms'] < 100)} |"
    )
    w("")
    return lines


def _throughput(res: dict[str, Any], fig: Figures) -> list[str]:
    """Section 1: sustained samples/s of the ceiling, the Faust floor and Helios."""
    cfg = res["config"]
    inproc = res["inproc"]
    thr = res["helios"]["throughput"]
    ceiling = fig.ceiling
    ceiling_cpu = fig.ceiling_cpu
    lines: list[str] = []
    w = lines.append
    w("## 1. Throughput")
    w(
        f"Input: {cfg['samples']:,} `MetricSample` JSON records ({cfg['deployments']:,} deployments x {cfg['steps']} "
        f"samples, one per {cfg['scoring_interval']} s interval, per-deployment daily CPU cycle, AR(1) noise and scrape "
        f"offset; event times end two intervals before now), pre-produced to one {cfg['partitions']}-partition topic. "
        "Each consumer starts after the backlog is in Kafka; the bench reads the output topic and timestamps every "
        "fetch. *Sustained* = outputs between 10 % and 90 % of the total divided by the time between them (leaves out "
        "group join and the tail); *overall* includes process start-up."
    )
    w("")
    w("| process | sustained samples/s | overall samples/s | start-up to first output | CPU µs/sample |")
    w("|---|---:|---:|---:|---:|")
    for i, r in enumerate(res["ceiling"]):
        w(
            f"| ceiling run {i + 1}: aiokafka consume -> orjson -> produce (acks=all) | {_f(r['sustained'])} | "
            f"{_f(r['overall'])} | | {_f(r['cpu_us_per_sample'])} |"
        )
    floor = res.get("floor")
    if floor:
        w(
            "| Faust floor: the same passthrough as a Faust agent on the worker's paths (`micro_batches`, manual "
            f"acks, `BatchSender`) | {_f(floor['sustained'])} | | {_f(floor['startup_seconds'], 1)} s | "
            f"{_f(floor['cpu_us_per_sample'])} (steady, 20-80 %) |"
        )
    w(
        f"| **Helios** `helios worker` (batch {inproc['batch_size']}, XGBoost batched, 3 outputs + changelog) | "
        f"**{_f(thr['sustained'])}** | {_f(thr['overall'])} | {_f(thr['startup_seconds'], 1)} s | "
        f"{_f(thr['cpu_us_per_sample'])} |"
    )
    w("")
    if floor:
        w(
            f"The Faust floor does the ceiling's work per sample and nothing else; it costs "
            f"{floor['cpu_us_per_sample'] / ceiling_cpu:.1f}x the ceiling's CPU. Any agent of this design (a Faust "
            f"stream, events acked one by one) reaches at most {ceiling_cpu / floor['cpu_us_per_sample']:.0%} of the "
            "ceiling before it does any work of its own."
        )
        w("")
    w(
        f"The ratio uses the median ceiling run ({_f(ceiling)}/s). Helios processed {_f(thr['processed'])} samples, "
        f"dead-lettered {_f(thr['dead_lettered'])}; the worker's RSS ended at "
        f"{_f(thr['rss_trace'][-1][1] / 2**20 if thr['rss_trace'] else float('nan'), 1)} MiB."
    )
    w("")
    w("![throughput](perf_throughput.png)")
    w("")
    return lines


def _latency(res: dict[str, Any], fig: Figures) -> list[str]:
    """Section 2: end-to-end latency of a paced producer at half the sustained rate."""
    cfg = res["config"]
    lat = res["helios"]["latency"]
    lines: list[str] = []
    w = lines.append
    w("## 2. End-to-end latency at half the sustained rate")
    w(
        f"The same worker, warm, then the next {cfg['latency_steps']} samples of every deployment from a paced producer "
        f"at {_f(lat['rate'])} samples/s ({lat['sent']:,} samples over {_f(lat['seconds'], 1)} s). Latency = consume "
        "time of the sample's recommendation (matched by deployment and window) minus the time the sample was handed to "
        f"the producer. {lat['matched']:,} of {lat['sent']:,} matched; the first second (producer warm-up) is left out "
        f"(p99 with it: {_f(lat['p99_all_ms'])} ms)."
    )
    w("")
    w(
        f"p50 **{_f(lat['p50_ms'])} ms**, p90 {_f(lat['p90_ms'])} ms, p99 **{_f(lat['p99_ms'])} ms**, max "
        f"{_f(lat['max_ms'])} ms. `/health` p99 during this phase: {_f(lat['health_p99_ms'])} ms."
    )
    vals = lat["values"]
    tenth = max(1, len(vals) // 10)
    # A --quick run's paced phase can be shorter than the left-out first second: no values, no tenths.
    deciles = [
        sorted(part)[len(part) // 2] for i in range(0, tenth * 10, tenth) if (part := vals[i : i + tenth])
    ]
    w("")
    w(
        "Median latency by tenth of the paced run, in order (a queue that grows means the worker is past its "
        "capacity; a flat level means a standing queue): "
        + (", ".join(_f(x) for x in deciles) or "n/a")
        + " ms."
    )
    w("")
    w("![latency](perf_latency.png)")
    w("")
    return lines


def _stage_costs(res: dict[str, Any], fig: Figures) -> list[str]:
    """Section 3: the in-process cost of each stage, state writes, XGBoost and what Kafka adds."""
    cfg = res["config"]
    inproc = res["inproc"]
    thr = res["helios"]["throughput"]
    pot = res["inproc"]["potentials"]
    stages = res["inproc"]["stages_us"]
    lines: list[str] = []
    w = lines.append
    w("## 3. Cost per stage (in-process, no Kafka)")
    w(
        f"`Runtime.process` taken apart: the same calls in the same order, timed, over {inproc['stages_deployments']:,} "
        f"warm deployments in micro-batches of {inproc['batch_size']} (`python -m pipeline.bench.inproc`). "
        f"The whole `Runtime.process` measured on its own: **{_f(inproc['process_us'])} µs/sample**."
    )
    w("")
    w("| stage | µs/sample | share |")
    w("|---|---:|---:|")
    total = stage_sum = fig.stage_sum
    for k, v in stages.items():
        if "median" in k or "bytes" in k:
            continue
        w(f"| {k} | {_f(v, 1)} | {v / total:.0%} |")
    w(f"| sum | {_f(total, 1)} | |")
    w("")
    every = cfg.get("snapshot_every", 10)
    write_us = pot["state to_dict+orjson us/deployment"]
    w(
        f"A deployment's state is written every {every} samples: the 3 measured samples per deployment above hold "
        f"almost no write. Amortised, a write ({_f(write_us)} µs for `to_dict` + orjson) costs "
        f"{_f(write_us / every, 1)} µs per sample."
    )
    w("")
    w(
        f"XGBoost median call: {_f(stages.get('XGBoost median call (per row)'), 2)} µs per row (the mean above also "
        "carries OpenMP stalls on the busy box). Output: "
        f"{_f(stages.get('output bytes per sample (3 records)'))} bytes of JSON per sample (3 records); "
        f"{_f(inproc['series_per_deployment'])} Prometheus series per deployment."
    )
    w("")
    w(
        f"The worker under Kafka used {_f(thr['cpu_us_per_sample'])} µs of CPU per sample against {_f(stage_sum)} µs "
        f"for these stages in-process: **~{_f(thr['cpu_us_per_sample'] - stage_sum)} µs/sample is Faust, aiokafka "
        "and the event loop** (the fetch path, Faust's event objects and acks, the output batches, the state "
        "table's changelog, the web view and timers)."
    )
    w("")
    return lines


def _worker_profile(res: dict[str, Any], fig: Figures) -> list[str]:
    """Section 3, continued: py-spy inside the worker under Kafka."""
    lines: list[str] = []
    w = lines.append
    wp = res.get("helios", {}).get("worker_profile")
    if wp and "inclusive" in wp:
        w(
            f"py-spy inside the worker under Kafka during the throughput run ({wp['samples']:,} stack samples at "
            "200 Hz over 15 s), inclusive share of the worker's time:"
        )
        w("")
        w("| function | inclusive |")
        w("|---|---:|")
        skip = (
            "run_forever",
            "run_until_complete",
            "_run_once",
            "runpy",
            "cli.py",
            "worker.py",
            "Handle._run",
        )
        shown = [(n, sh) for n, sh in wp["inclusive"] if not any(x in n for x in skip)][:24]
        for name, share in shown:
            w(f"| `{name}` | {share:.1%} |")
        w("")
    elif wp:
        w(f"py-spy could not sample the worker: {wp.get('error', '')}")
        w("")
    w("![stages](perf_stages.png)")
    w("")
    return lines


def _inproc_profile(res: dict[str, Any], fig: Figures) -> list[str]:
    """Section 3, continued: pyinstrument over ``Runtime.process``, cost against deployments."""
    inproc = res["inproc"]
    bd = res["inproc"]["by_deployments"]
    lines: list[str] = []
    w = lines.append
    prof = inproc["profile"]
    w(f"pyinstrument over `Runtime.process` ({prof['samples']:,} samples), inclusive share of the time:")
    w("")
    w("| function | inclusive | ")
    w("|---|---:|")
    for name, share in prof["inclusive"][:22]:
        if "inproc.py" in name or "<module>" in name:
            continue
        w(f"| `{name}` | {share:.1%} |")
    w("")
    w(
        "Cost per sample against the number of tracked deployments (fresh runtime each; first sample of a deployment "
        "creates its state):"
    )
    w("")
    w("| deployments | first sample µs | steady µs/sample |")
    w("|---:|---:|---:|")
    for d, v in bd.items():
        w(f"| {int(d):,} | {_f(v['first_sample_us'])} | {_f(v['steady_us'])} |")
    w("")
    return lines


def _memory(res: dict[str, Any], fig: Figures) -> list[str]:
    """Section 4: RSS per tracked deployment and where it goes."""
    inproc = res["inproc"]
    mem = res["memory"]
    rss_per = fig.rss_per
    lines: list[str] = []
    w = lines.append
    w("## 4. Memory per tracked deployment")
    w(
        "One worker, fresh topics, fed 2 samples for each new deployment; RSS from `/proc/<pid>/status` after the "
        f"outputs arrived. Idle (no deployment): {_f(mem['idle_rss'] / 2**20, 1)} MiB."
    )
    w("")
    w("| tracked deployments | RSS MiB |")
    w("|---:|---:|")
    for lv in mem["levels"]:
        w(f"| {_f(lv['tracked'])} | {_f(lv['rss'] / 2**20, 1)} |")
    w("")
    w(
        f"Slope between the last two levels: **{_f(rss_per / 1024, 1)} KB per deployment**. Where it goes (Python heap "
        "by tracemalloc, in-process, same 2 samples per deployment):"
    )
    w("")
    w("| part | KB/deployment |")
    w("|---|---:|")
    for k, v in inproc["memory_breakdown"].items():
        if k.startswith("state table"):
            k = "serialized state, for comparison (the worker's table keeps no copy of it since 2026-11-29 05:15)"
        w(f"| {k} | {_f(v / 1024, 1)} |")
    w("")
    by_age = inproc.get("memory_by_age")
    if by_age:
        w(
            "A deployment's state grows until its daily profile and pending forecasts fill up, so 2 samples "
            "understate it. The runtime's Python heap per deployment (pipelines + gauges + bookkeeping, tracemalloc, "
            "100 deployments) after k samples each:"
        )
        w("")
        w("| samples per deployment | KB/deployment |")
        w("|---:|---:|")
        for k, v in by_age.items():
            w(f"| {int(k):,} | {_f(v / 1024, 1)} |")
        w("")
    w(
        "Serialized state (`{offset, pipe: DeploymentPipeline.to_dict()}`, orjson) of one deployment after k samples:"
    )
    w("")
    w("| samples | bytes | of which forecasters | detector | aligner |")
    w("|---:|---:|---:|---:|---:|")
    for k, v in inproc["state_sizes"].items():
        w(
            f"| {int(k):,} | {_f(v['bytes'])} | {_f(v['parts']['fc'])} | {_f(v['parts']['det'])} | "
            f"{_f(v['parts']['align'])} |"
        )
    w("")
    return lines


def _scaling(res: dict[str, Any], fig: Figures) -> list[str]:
    """Section 5: one worker against two in the same consumer group."""
    cfg = res["config"]
    sc = res["scaling"]
    lines: list[str] = []
    w = lines.append
    w("## 5. One worker against two on the same partitions")
    w(
        f"{sc['samples']:,} pre-produced samples on a fresh {cfg['partitions']}-partition topic; first one worker, then "
        "two workers of one consumer group (same `HELIOS_APP_ID`) launched together; each configuration has its own consumer group and output topics."
    )
    w("")
    w(
        "| workers | sustained samples/s | start-up to first output | outputs (duplicates) | /health p99 (first worker) "
        "| per worker: processed, tracked deployments, CPU s |"
    )
    w("|---|---:|---:|---:|---:|---|")
    for k in ("1", "2", "1-batch50"):
        r = sc[k]
        per = "; ".join(
            f"{_f(p['processed'])}, {_f(p['tracked'])}, {_f(p['cpu_seconds'], 1)}" for p in r["workers"]
        )
        label = "1, HELIOS_BATCH_SIZE=50" if k == "1-batch50" else k
        w(
            f"| {label} | {_f(r['sustained'])} | {_f(r['startup_seconds'], 1)} s | {r['outputs']:,} ({r['duplicates']}) "
            f"| {_f(r['health_p99_ms'])} ms | {per} |"
        )
    w("")
    w(
        "Each worker is one Python process on one core, so two use both cores (shared with the broker and the "
        "bench): x"
        + f"{sc['2']['sustained'] / sc['1']['sustained']:.2f}"
        + ". The group splits the partitions, each "
        "worker tracks only the deployments of its partitions, and every window is recommended. The repeated "
        "recommendations are the samples since the last state write: the first worker to join takes all "
        "partitions, the second takes half of them over a moment later and re-reads up to "
        "`HELIOS_SNAPSHOT_EVERY` samples per deployment from the partition's marker (at-least-once outputs)."
    )
    w("")
    return lines


def _history_pointer(res: dict[str, Any], fig: Figures) -> list[str]:
    """Section 6: where the history of the changes is kept."""
    return [
        "## 6. Where the time goes, and what is left",
        "What was changed between earlier runs, with the figures of their day, is in `benchmarks/perf-history.md`. "
        "This run's figures for the choices made then:",
        "",
    ]


def _design_figures(res: dict[str, Any], fig: Figures) -> list[str]:
    """Section 6, continued: this run's figures for the design choices of earlier runs."""
    pot = res["inproc"]["potentials"]
    state_json = fig.state_json
    lines: list[str] = []
    w = lines.append
    wp = res.get("helios", {}).get("worker_profile") or {}
    own = dict(wp.get("self", []))
    full = pot["forecast(all steps, current) us/call"]
    clone = pot["clone via from_dict(to_dict()) us/call"]
    at = pot.get("forecast_at(published, current) us/call")
    quick_clone = pot.get("_clone() us/call")
    socket = sum(v for k, v in own.items() if "_SelectorSocketTransport.write" in k)
    w(
        "- **Producer linger** (`PRODUCER_LINGER_MS`): the socket writes are "
        + (
            f"{socket:.1%} of the worker's time (self time in `_SelectorSocketTransport.write`)."
            if socket
            else f"under {min(own.values(), default=0):.1%} of the worker's time (`_SelectorSocketTransport.write` is not among the "
            f"{len(own)} largest self-time entries)."
        )
    )
    w(
        f"- **State written every `HELIOS_SNAPSHOT_EVERY` samples** of a deployment, or "
        "`HELIOS_SNAPSHOT_MAX_AGE` after the first unsaved one: "
        f"{_f(pot['state to_dict+orjson us/deployment'])} µs and ~{_f(state_json / 1024, 1)} KB per write. "
        "A per-partition marker in the same table says where the input must be read again; a worker "
        "that takes a partition over or restarts reads those samples back from Kafka (`agents/gaps.py`)."
    )
    w(
        f"- **Gauges as one array per deployment**, rendered at scrape time (`DeploymentSeries`): an update is an "
        f"index store ({_f(pot.get('gauges: one series update us/call'), 2)} µs for a whole update call)."
    )
    if at is not None:
        w(
            f"- Forecast only the published horizons (`forecast_at`, {_f(at)} µs/call against {_f(full)} µs "
            f"for all {int(pot['forecast_max_steps'])} steps) and clone without serialization "
            f"({_f(quick_clone, 1)} against {_f(clone)} µs)."
        )
    return lines


def _whats_left(res: dict[str, Any], fig: Figures) -> list[str]:
    """Section 6, continued: what is left between Helios and the target."""
    thr = res["helios"]["throughput"]
    stages = res["inproc"]["stages_us"]
    prof = res["inproc"]["profile"]
    ceiling_us = fig.ceiling_cpu
    stage_sum = fig.stage_sum
    lines: list[str] = []
    w = lines.append
    top = [
        (name, share)
        for name, share in prof["inclusive"]
        if not any(x in name for x in ("inproc.py", "process (", "<module>", "[self]"))
    ][:6]
    w("")

    def stage(prefix: str) -> float:
        return next(v for k, v in stages.items() if k.startswith(prefix))

    faust_us = thr["cpu_us_per_sample"] - stage_sum
    plumbing = stage("decode") + stage("JSON encode") + stage("gauges") + faust_us
    w(
        "**What is left.** In-process, `Runtime.process` is pure-Python model code per deployment and sample "
        "(pyinstrument, inclusive share: " + "; ".join(f"`{n}` {s:.0%}" for n, s in top) + "). "
        f"The 40 % target means ~{_f(ceiling_us / 0.4)} µs of CPU per sample on this machine. The work around the "
        f"models alone is more than that: decoding the sample ({_f(stage('decode'))} µs), encoding its three "
        f"output records ({_f(stage('JSON encode'))} µs for {_f(stages.get('output bytes per sample (3 records)'))} "
        f"bytes, against the ceiling's one small record), the gauges ({_f(stage('gauges'))} µs) and Faust, aiokafka "
        f"and the event loop (~{_f(faust_us)} µs) add up to ~{_f(plumbing)} µs, so even with models that cost "
        f"nothing the ratio would be at most {ceiling_us / plumbing:.0%}"
        + (
            f" (and the Faust floor alone, {_f(res['floor']['cpu_us_per_sample'])} µs, caps any Faust agent at "
            f"{ceiling_us / res['floor']['cpu_us_per_sample']:.0%})"
            if res.get("floor")
            else ""
        )
        + ". Getting near the target needs the models "
        "vectorised across the deployments of a micro-batch (numpy over struct-of-arrays state: one array "
        "operation per model step for the whole batch instead of one Python call per deployment), records built "
        "and encoded per batch, and a consumer path without Faust's per-event objects: a different program "
        "from this one, not a tuning of it."
    )
    w("")
    w(
        "Reproduce: `make bench` (starts the broker on 9092); `--quick` for a smoke run; `python -m pipeline.bench.inproc` alone "
        "for the stage costs."
    )
    return lines


def write_report(res: dict[str, Any], path: Path) -> None:
    """Write ``benchmarks/perf.md`` from one run's results, section by section."""
    fig = figures(res)
    sections = (
        _header,
        _summary,
        _throughput,
        _latency,
        _stage_costs,
        _worker_profile,
        _inproc_profile,
        _memory,
        _scaling,
        _history_pointer,
        _design_figures,
        _whats_left,
    )
    path.write_text("\n".join(line for section in sections for line in section(res, fig)) + "\n")
