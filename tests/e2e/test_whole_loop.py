"""The whole loop, for real: ingester -> Kafka -> worker -> Prometheus -> what KEDA, Grafana and on-call see.

One test starts a `helios worker`, the synthetic ingester with an injected incident, and a real
Prometheus server (Debian's ``/usr/bin/prometheus``) that scrapes the worker with the project's own
``rules/prometheus.yml`` (only the targets and the intervals rewritten) and evaluates
``rules/helios-rules.yaml`` unchanged. Everything is asserted through Prometheus' HTTP API:

1. the KEDA ScaledObject's query returns one sample, and KEDA's arithmetic on it (``ceil(value /
   threshold)``) gives the replica count the worker recommends;
2. every Grafana panel query (and every template-variable query) returns data;
3. the anomaly alerts (on the worker's held ``helios_anomaly_severity``) go pending, then firing, in an
   episode that starts after the incident does, and resolve again;
4. once the worker is stopped, the KEDA query returns nothing (so KEDA's ``fallback`` takes over) and
   ``HeliosPredictionsMissing`` and ``HeliosDown`` fire.

Why the production scoring interval (60 s) and not a compressed one: after the history the samples
follow the wall clock (the ingester never emits a future timestamp), so a step lasts its interval in
real time, and the rules' ``for:`` durations are real time too. The detector raises its score for the
first steps of an incident and then suppresses re-alarms, so how many steps ``for: 1m`` spans decides
whether an alert can fire at all: at 10 s a step the warning would need six anomalous steps in a row,
which says nothing about production. At 60 s the run still fits in about four minutes because the
incident starts at the first real-time step.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from models.artifacts import list_versions
from pipeline.sources.synthetic import SaleorWorkload
from tests.conftest import REPO, free_port
from tests.helpers import Worker, consume, metric_value, produce, run, topic_env

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.prometheus]

PROMETHEUS_BIN = Path("/usr/bin/prometheus")
NS, DEP = "saleor", "saleor-api"
KEY = f"{NS}/{DEP}".encode()

#: Prometheus' scrape and rule-evaluation interval in this test (production: 15 s).
SCRAPE = 2
#: HELIOS_SCORING_INTERVAL for the worker and the ingester: production's (see the module docstring).
STEP = 60
#: Steps of history the ingester emits at once: more than the 60m horizon (60 steps) and the
#: detector's warm-up, so every gauge of every horizon exists before the incident.
BACKFILL = 180
#: The incident starts at the first real-time step, 0..60 s after the ingester starts.
INCIDENT_AT = BACKFILL
INCIDENT_STEPS = int(inspect.signature(SaleorWorkload).parameters["incident_length"].default)
#: The shop's local hour at the incident: the feed follows the wall clock, so its time zone is chosen to
#: put the incident at the same point of the daily cycle whenever the test runs. How far the onset's
#: score clears the critical factor depends on that point (at the afternoon peak the same incident
#: can score only a warning); the night trough is where it stands out most.
INCIDENT_LOCAL_HOUR = 4.0

WARNING, CRITICAL = "HeliosAnomalyWarning", "HeliosAnomalyCritical"
ANOMALY_ALERTS = (WARNING, CRITICAL)
OUTAGE_ALERTS = ("HeliosPredictionsMissing", "HeliosDown")

#: What Grafana substitutes into the panel queries for this deployment.
GRAFANA_VARS = {
    "namespace": NS,
    "deployment": DEP,
    "__rate_interval": "1m",
    "__interval": f"{SCRAPE}s",
    "__interval_ms": str(SCRAPE * 1000),
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}


# -- the assets ------------------------------------------------------------------------------------


def keda_trigger() -> tuple[str, float, dict[str, Any]]:
    """The ScaledObject's Prometheus trigger: (query, threshold, the whole trigger)."""
    docs = list(yaml.safe_load_all((REPO / "k8s" / "keda" / "scaledobject-saleor.yaml").read_text()))
    scaled = [d for d in docs if d and d.get("kind") == "ScaledObject"]
    assert len(scaled) == 1, f"expected one ScaledObject, found {len(scaled)}"
    triggers = [t for t in scaled[0]["spec"]["triggers"] if t["type"] == "prometheus"]
    assert len(triggers) == 1, f"expected one prometheus trigger, found {len(triggers)}"
    meta = triggers[0]["metadata"]
    return meta["query"], float(meta["threshold"]), triggers[0]


def alert_rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((REPO / "rules" / "helios-rules.yaml").read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def duration_seconds(text: str) -> float:
    """Prometheus durations as the rules use them: ``30s``, ``1m``, ``1h30m``, ``0m``."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"unparsed duration {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


def utc_offset_for(local_hour: float, now: float) -> float:
    """The time zone (hours east of UTC, within ±12) whose local time at ``now`` is ``local_hour``."""
    utc_hour = (now % 86400) / 3600
    return (local_hour - utc_hour + 12) % 24 - 12


def write_prometheus_config(folder: Path, target: str, alertmanager: str) -> Path:
    """rules/prometheus.yml with the target and intervals changed, and its rule files beside it, unchanged.

    The Alertmanager address moves too, to a port nobody listens on: the file's 127.0.0.1:9093 is the
    local Kafka's controller port on a developer machine, which should not receive alert POSTs.
    """
    doc = yaml.safe_load((REPO / "rules" / "prometheus.yml").read_text())
    doc["global"]["scrape_interval"] = f"{SCRAPE}s"
    doc["global"]["evaluation_interval"] = f"{SCRAPE}s"
    jobs = [j for j in doc["scrape_configs"] if j["job_name"] == "helios"]
    assert len(jobs) == 1, "rules/prometheus.yml should have one job named helios"
    statics = jobs[0]["static_configs"]
    assert len(statics) == 1 and len(statics[0]["targets"]) == 1, "expected a single static target"
    statics[0]["targets"] = [target]
    if "scrape_interval" in jobs[0]:
        jobs[0]["scrape_interval"] = f"{SCRAPE}s"
    for am in doc.get("alerting", {}).get("alertmanagers", []):
        for static in am.get("static_configs", []):
            static["targets"] = [alertmanager]
    for rule_file in doc["rule_files"]:
        shutil.copy(REPO / "rules" / rule_file, folder / rule_file)
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def grafana_substitute(expr: str) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in GRAFANA_VARS, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARS[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def dashboard_queries() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(panel queries, template-variable queries), each as (where, expression)."""
    panels: list[tuple[str, str]] = []
    variables: list[tuple[str, str]] = []
    paths = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
    assert paths, "no dashboards under grafana/dashboards"
    for path in paths:
        doc = json.loads(path.read_text())

        def walk(items: list[dict[str, Any]], board: str = path.stem) -> None:
            for panel in items:
                walk(panel.get("panels") or [])
                for target in panel.get("targets") or []:
                    if target.get("expr"):
                        panels.append(
                            (f"{board} / {panel.get('title')} / {target.get('refId')}", target["expr"])
                        )

        walk(doc.get("panels") or [])
        for var in doc.get("templating", {}).get("list", []):
            query = var.get("query")
            if var.get("type") == "query":
                text = query.get("query") if isinstance(query, dict) else query
                variables.append((f"{path.stem} / ${var['name']}", str(text)))
    return panels, variables


# -- the processes ---------------------------------------------------------------------------------


class Prometheus:
    """A real Prometheus server on a free port, with its TSDB in a temporary folder."""

    def __init__(self, config: Path, data: Path, port: int, log_path: Path) -> None:
        self.config, self.data, self.port, self.log_path = config, data, port, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Prometheus:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(PROMETHEUS_BIN),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"prometheus not ready within {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"GET {url}: HTTP {exc.code} {exc.read().decode(errors='replace')}"
            ) from None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: expected a vector, got {data['resultType']}"
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def stop(self) -> None:
        stop_process(self.proc)
        if self._log is not None:
            self._log.close()


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def parse_time(text: str) -> float:
    """Prometheus' RFC 3339 timestamps (nanoseconds, ``Z``) as epoch seconds."""
    m = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    assert m, f"unparsed timestamp {text!r}"
    fraction = (m.group(2) or ".0")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + fraction + zone).timestamp()


# -- watching alerts -------------------------------------------------------------------------------


@dataclass
class Episode:
    """One pending[-firing] run of an alert as the polls saw it."""

    active_at: float
    pending_seen: float | None = None
    firing_seen: float | None = None
    ended_seen: float | None = None
    max_value: float = -math.inf


@dataclass
class AlertWatch:
    """Polls /api/v1/alerts and keeps every episode of the watched alerts for the watched labels."""

    prom: Prometheus
    names: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    episodes: dict[str, list[Episode]] = field(default_factory=dict)

    def poll(self) -> None:
        now = time.time()
        current = {
            a["labels"]["alertname"]: a
            for a in self.prom.alerts()
            if a["labels"].get("alertname") in self.names
            and all(a["labels"].get(k) == v for k, v in self.labels.items())
        }
        for name in self.names:
            runs = self.episodes.setdefault(name, [])
            open_run = runs[-1] if runs and runs[-1].ended_seen is None else None
            alert = current.get(name)
            if alert is None:
                if open_run is not None:
                    open_run.ended_seen = now
                continue
            active_at = parse_time(alert["activeAt"])
            if open_run is None or abs(open_run.active_at - active_at) > 0.5:
                if open_run is not None:
                    open_run.ended_seen = now
                open_run = Episode(active_at)
                runs.append(open_run)
            if alert["state"] == "pending" and open_run.pending_seen is None:
                open_run.pending_seen = now
            if alert["state"] == "firing" and open_run.firing_seen is None:
                open_run.firing_seen = now
            with_value = alert.get("value")
            if with_value is not None:
                open_run.max_value = max(open_run.max_value, float(with_value))

    def fired(self, name: str) -> list[Episode]:
        return [e for e in self.episodes.get(name, []) if e.firing_seen is not None]

    def until(self, done: Callable[[], bool], timeout: float, every: float = 1.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if done():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(every)

    def describe(self, origin: float) -> str:
        def rel(t: float | None) -> str:
            return "-" if t is None else f"{t - origin:+.1f}s"

        lines = []
        for name, runs in self.episodes.items():
            for e in runs:
                lines.append(
                    f"{name}: activeAt {rel(e.active_at)}, pending seen {rel(e.pending_seen)}, "
                    f"firing seen {rel(e.firing_seen)}, ended seen {rel(e.ended_seen)}, "
                    f"highest value {e.max_value:.2f}"
                )
        return "\n".join(lines) or "(no alerts seen)"


# -- the test --------------------------------------------------------------------------------------


@pytest.mark.timeout(480)
def test_whole_loop(kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    if not PROMETHEUS_BIN.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{PROMETHEUS_BIN} is missing in CI: apt-get install prometheus")
        pytest.skip(f"{PROMETHEUS_BIN} not installed (Debian package prometheus)")
    t_start = time.time()
    keda_query, keda_threshold, trigger = keda_trigger()
    # KEDA's Prometheus scaler with an AverageValue target: desired replicas = ceil(value / threshold).
    assert trigger.get("metricType", "AverageValue") == "AverageValue", trigger
    rules = alert_rules()
    panels, variables = dashboard_queries()
    report: dict[str, Any] = {}

    # The worker serves a copy of the default model, so the test can publish a broken version.
    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "artifacts", models)
    env = {
        **topic_env(unique),
        "HELIOS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HELIOS_SCORING_INTERVAL": str(STEP),
        # Two steps: a detection at the incident's onset is declared long enough for both alerts'
        # `for:` and the alerts still resolve within the run (production holds 300 s).
        "HELIOS_ANOMALY_HOLD": str(2 * STEP),
        # The incident (15 steps) would otherwise stay declared while CPU and the DB stay outside their
        # normal band: two steps keep the run short (tests/unit/test_incident.py covers the full length).
        "HELIOS_ANOMALY_ADAPT": str(2 * STEP),
        "HELIOS_DATA_DIR": str(tmp_path / "data"),
        "HELIOS_MODEL_PATH": str(models),
        "HELIOS_MODEL_REFRESH_INTERVAL": "5",
        "HELIOS_METRICS_NAMESPACE": NS,
        "HELIOS_METRICS_DEPLOYMENT": DEP,
    }
    worker = Worker(env, free_port(), tmp_path / "worker.log")
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    config = write_prometheus_config(prom_dir, f"127.0.0.1:{worker.port}", f"127.0.0.1:{free_port()}")
    prom = Prometheus(config, prom_dir / "data", free_port(), tmp_path / "prometheus.log")
    ingest_log = (tmp_path / "ingest.log").open("ab")
    ingester: subprocess.Popen[bytes] | None = None

    def logs() -> str:
        ingest_log.flush()
        ingested = "\n".join((tmp_path / "ingest.log").read_text(errors="replace").splitlines()[-20:])
        return (
            f"\n--- worker log ---\n{worker.tail(40)}\n--- ingester log ---\n{ingested}"
            f"\n--- prometheus log ---\n{prom.tail(20)}"
        )

    # Watched from the start, so an incident scored early is not missed while the other checks run.
    watch = AlertWatch(prom, ANOMALY_ALERTS, {"namespace": NS, "deployment": DEP})

    def pause(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if prom.proc is not None:
                watch.poll()
            time.sleep(min(1.0, max(0.0, left)))

    def recommended() -> float | None:
        return metric_value(worker.metrics(), "helios_recommended_replicas", namespace=NS, deployment=DEP)

    def keda_check(label: str) -> None:
        """KEDA's view (through Prometheus) against the worker's own gauge, while the gauge is steady."""
        for _ in range(6):
            before = recommended()
            pause(2 * SCRAPE + 0.5)
            samples = prom.query(keda_query)
            after = recommended()
            if before is not None and before == after:
                break
        assert before is not None and before == after, f"recommendation never steady: {before}, {after}"
        assert len(samples) == 1, f"KEDA query {keda_query!r} returned {samples}"
        value = float(samples[0]["value"][1])
        desired = math.ceil(value / keda_threshold)
        assert desired == after, (
            f"KEDA: ceil({value} / {keda_threshold}) = {desired} replicas, worker says {after}"
        )
        series = prom.query(f'helios_recommended_replicas{{namespace="{NS}", deployment="{DEP}"}}')
        assert len(series) == 1, f"more than one exported series: {series}"
        report[f"KEDA {label}"] = (
            f"query -> {value:g}; ceil({value:g} / {keda_threshold:g}) = {desired}; worker gauge {after:g}"
        )

    def missing_data() -> list[str]:
        out = []
        for where, expr in panels:
            query = grafana_substitute(expr)
            if not prom.query(query):
                out.append(f"{where}: {query}")
        for where, expr in variables:
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", grafana_substitute(expr).strip())
            assert m, f"{where}: unsupported variable query {expr!r}"
            label = m.group(2)
            values = prom.api(f"label/{label}/values", **{"match[]": m.group(1)})
            if GRAFANA_VARS[label] not in values:
                out.append(f"{where}: {expr} -> {values}")
        return out

    try:
        worker.start()
        prom.start()
        t_ingest = time.time()
        ingester = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "helios"),
                "ingest",
                "--source",
                "synthetic",
                "--backfill",
                str(BACKFILL),
                "--incident-at",
                str(INCIDENT_AT),
                "--utc-offset",
                f"{utc_offset_for(INCIDENT_LOCAL_HOUR, t_ingest):.4f}",
            ],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=ingest_log,
            stderr=subprocess.STDOUT,
        )
        # Data for the two panels a calm run never fills, made the honest way: one record that is
        # not JSON (dead letters) and a newer model version whose upload broke (reload failures).
        run(produce(kafka_bootstrap, env["HELIOS_TOPIC_METRICS"], [(KEY, b"{not json")]))
        serving = list_versions(models)[0]
        broken = shutil.copytree(models / "xgboost" / serving, models / "xgboost" / f"{serving}.1")
        with (broken / "model.ubj").open("ab") as fh:
            fh.write(b"\0 truncated upload")

        # 2. Every dashboard query (and template variable) has data.
        deadline = time.monotonic() + 60
        while (empty := missing_data()) and time.monotonic() < deadline:
            pause(SCRAPE)
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty) + logs()
        report["dashboards"] = (
            f"all {len(panels)} panel queries and {len(variables)} variable queries have data "
            f"{time.time() - t_ingest:.0f} s after the ingester started"
        )
        versions = {sample["metric"]["version"] for sample in prom.query("helios_model_info")}
        assert versions == {serving}, (
            f"after a broken upload the worker must keep {serving}, exports {versions}"
        )

        # The rules Prometheus runs are the project's, and they evaluate without errors.
        loaded = {r["name"]: r for r in prom.rules() if r["type"] == "alerting"}
        assert set(loaded) == set(rules), f"loaded {sorted(loaded)}, file has {sorted(rules)}"
        bad = {n: (r["health"], r.get("lastError")) for n, r in loaded.items() if r["health"] != "ok"}
        assert not bad, f"rules not healthy: {bad}"

        # 1. KEDA's arithmetic on the query equals the worker's recommendation.
        keda_check("check 1")

        # 3. The incident. The detector scores its onset and then suppresses re-alarms, so the score
        # is at or above the threshold for the first one to three steps of the incident. Whenever it
        # is >= 1.6 x threshold for a step (60 s), the critical alert (for: 30s) must fire; the
        # warning (for: 1m) goes pending with it, and fires only if the score stays above the
        # threshold for two steps: asserted when it happens, reported either way.
        def incident_over() -> bool:
            warning = watch.episodes.get(WARNING, [])
            return (
                bool(watch.fired(CRITICAL))
                and all(e.ended_seen is not None for e in watch.fired(CRITICAL))
                and bool(watch.fired(WARNING))
                and (bool(warning) and warning[-1].ended_seen is not None)
            )

        # The incident starts within one step of the ingester; its onset lasts at most three steps.
        resolved = watch.until(incident_over, timeout=t_ingest + 7 * STEP + 20 - time.time())
        # When the incident started: the ingester's own record (its event time is its emission time).
        records = run(
            consume(
                kafka_bootstrap,
                env["HELIOS_TOPIC_METRICS"],
                lambda rs: sum(1 for r in rs if r.value and r.value.startswith(b'{"')) > INCIDENT_AT,
                timeout=30,
            )
        )
        samples = [json.loads(r.value) for r in records if r.value and r.value.startswith(b'{"')]
        assert len(samples) > INCIDENT_AT, f"only {len(samples)} samples on the metrics topic" + logs()
        stamp = samples[INCIDENT_AT]["timestamp"].replace("Z", "+00:00")
        t_incident = datetime.fromisoformat(stamp).timestamp()
        t_incident_end = t_incident + INCIDENT_STEPS * STEP
        timeline = watch.describe(t_incident)
        report["incident"] = (
            f"started {t_incident - t_ingest:.0f} s after the ingester, lasts {INCIDENT_STEPS * STEP} s"
        )
        report["anomaly alerts (times from the incident start)"] = "\n" + timeline
        assert resolved, "anomaly alerts did not fire and resolve in time:\n" + timeline + logs()
        critical = watch.fired(CRITICAL)[0]
        # Pending first, then firing no sooner than the rule's `for:` allows,
        assert critical.pending_seen is not None and critical.firing_seen is not None, timeline
        assert critical.pending_seen < critical.firing_seen, timeline
        assert critical.firing_seen - critical.active_at >= duration_seconds(rules[CRITICAL]["for"]) - 1, (
            timeline
        )
        # in an episode that began after the incident started (not a false alarm carried over) and
        # fired while the incident lasted,
        assert critical.active_at >= t_incident - 1, timeline
        assert critical.firing_seen <= t_incident_end, timeline
        # then resolved with the worker still up and scraped.
        assert critical.ended_seen is not None, timeline
        # The warning's threshold is lower: it was pending at least as long, and after the incident began.
        warning = [e for e in watch.episodes[WARNING] if e.active_at <= critical.active_at + 1]
        assert warning and warning[-1].active_at >= t_incident - 1, timeline
        assert watch.fired(WARNING), "the warning alert never fired:\n" + timeline
        for episode in watch.fired(WARNING):
            assert episode.active_at >= t_incident - 1, timeline
            assert episode.firing_seen is not None and episode.firing_seen <= t_incident_end, timeline
            assert episode.firing_seen - episode.active_at >= duration_seconds(rules[WARNING]["for"]) - 1, (
                timeline
            )
            assert episode.ended_seen is not None, timeline
        report["warning fired"] = bool(watch.fired(WARNING))
        keda_check("check 2")

        # 4. The worker goes away: no sample for KEDA (so its fallback applies), and the outage alerts fire.
        stop_process(ingester)
        t_stop = time.time()
        worker.terminate()
        report["worker stop"] = f"SIGTERM -> exited in {time.time() - t_stop:.1f} s"
        deadline = time.monotonic() + 4 * SCRAPE + 5
        while (left := prom.query(keda_query)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert left == [], f"KEDA query still returns {left} after the worker stopped"
        report["KEDA after stop"] = f"empty result {time.time() - t_stop:.1f} s after SIGTERM"
        up = prom.query('up{job="helios"}')
        assert [float(s["value"][1]) for s in up] == [0.0], up
        outage = AlertWatch(prom, OUTAGE_ALERTS)
        fired = outage.until(
            lambda: all(outage.fired(n) for n in OUTAGE_ALERTS),
            timeout=max(duration_seconds(rules[n]["for"]) for n in OUTAGE_ALERTS) + 30,
        )
        report["outage alerts (times from SIGTERM)"] = "\n" + outage.describe(t_stop)
        assert fired, f"outage alerts did not fire:\n{outage.describe(t_stop)}"
        for name in OUTAGE_ALERTS:
            assert outage.fired(name)[0].active_at >= t_stop - 1, outage.describe(t_stop)
        states = {r["name"]: r["state"] for r in prom.rules() if r["type"] == "alerting"}
        assert states["HeliosPredictionsMissing"] == "firing", states
    finally:
        report["wall time"] = f"{time.time() - t_start:.0f} s"
        print("\n" + "\n".join(f"{k}: {v}" for k, v in report.items()))
        stop_process(ingester)
        worker.kill()
        prom.stop()
        ingest_log.close()
