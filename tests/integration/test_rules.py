"""Prometheus rules, scrape configs and Alertmanager config, checked by promtool and amtool."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "rules"
RULES = RULES_DIR / "helios-rules.yaml"
RULE_TESTS = RULES_DIR / "helios-rules.test.yaml"
ALERTMANAGER = RULES_DIR / "alertmanager-config.yaml"

pytestmark = pytest.mark.prometheus


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = "prometheus-alertmanager" if name == "amtool" else "prometheus"
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing in CI: apt-get install {package}")
        pytest.skip(f"{name} not installed (Debian package {package})")
    return path


def _run(*args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _exported_metrics() -> tuple[frozenset[str], Any]:
    spec = importlib.util.spec_from_file_location("helios_grafana_generate", REPO / "grafana" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.EXPORTED_METRICS, module.metric_names


def test_promtool_check_rules() -> None:
    result = _run(_tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _run(_tool("promtool"), "test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    # Proves the promtool tests constrain the rules: a scale-up alert at 95% must fail them.
    original = RULES.read_text()
    assert original.count('helios_predicted_cpu{horizon="30m"} > 0.80') == 1
    (tmp_path / RULES.name).write_text(original.replace('{horizon="30m"} > 0.80', '{horizon="30m"} > 0.95'))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _run(_tool("promtool"), "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "HeliosPredictedCPUHigh" in result.stdout + result.stderr


def test_issue_alerts_are_present() -> None:
    names = {rule["alert"] for rule in _alerts()}
    assert {
        "HeliosAnomalyWarning",
        "HeliosAnomalyCritical",
        "HeliosPredictedCPUHigh",
        "HeliosPredictedMemoryHigh",
        "HeliosPredictionsStale",
        "HeliosPredictionsMissing",
        "HeliosDown",
        "HeliosForecastCoverageLow",
        "HeliosForecastErrorHigh",
        "HeliosSlowInference",
    } <= names
    by_name = {rule["alert"]: rule for rule in _alerts()}
    assert "absent(helios_recommended_replicas{" in by_name["HeliosPredictionsMissing"]["expr"]
    assert by_name["HeliosDown"]["expr"] == 'up{job="helios"} == 0'
    assert "histogram_quantile(0.99" in by_name["HeliosSlowInference"]["expr"]
    # The anomaly alerts follow the worker's held severity (2 = score >= 1.6 x HELIOS_ANOMALY_THRESHOLD).
    assert by_name["HeliosAnomalyWarning"]["expr"] == "helios_anomaly_severity >= 1"
    assert by_name["HeliosAnomalyCritical"]["expr"] == "helios_anomaly_severity >= 2"


def test_every_alert_has_for_severity_and_text() -> None:
    for rule in _alerts():
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        summary, description = rule["annotations"]["summary"], rule["annotations"]["description"]
        assert summary and description, name
        # Deployment-level alerts say which deployment; service-level ones say which worker.
        text = summary + description
        names_deployment = "$labels.namespace" in text and "$labels.deployment" in text
        assert names_deployment or "$labels.instance" in text, name


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names - fired == set(), "alerts never shown to fire"
    assert names - silent == set(), "alerts never shown to stay silent"
    assert (fired | silent) <= names, "tests for alerts that do not exist"


def test_rules_name_only_exported_metrics() -> None:
    exported, metric_names = _exported_metrics()
    for rule in _alerts():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, (rule["alert"], sorted(names - exported))


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-compose.yml"])
def test_prometheus_configs_scrape_helios_with_the_rules(config: str) -> None:
    result = _run(_tool("promtool"), "check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    doc = yaml.safe_load((RULES_DIR / config).read_text())
    assert doc["rule_files"] == ["helios-rules.yaml"]
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    assert jobs["helios"]["metrics_path"] == "/metrics"
    targets = jobs["helios"]["static_configs"][0]["targets"]
    assert len(targets) == 1 and targets[0].endswith(":8080")


def test_amtool_check_config() -> None:
    result = _run(_tool("amtool"), "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "namespace=saleor", "deployment=saleor-api"], "helios-critical"),
        (["severity=warning", "namespace=saleor", "deployment=saleor-api"], "helios-warning"),
        (["severity=info"], "helios-default"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    amtool = _tool("amtool")
    result = _run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_alertmanager_groups_and_inhibits_per_deployment() -> None:
    doc = yaml.safe_load(ALERTMANAGER.read_text())
    assert doc["route"]["group_by"] == ["namespace", "deployment", "alertname"]
    (inhibit,) = doc["inhibit_rules"]
    assert inhibit["source_matchers"] == ['severity = "critical"']
    assert inhibit["target_matchers"] == ['severity = "warning"']
    assert set(inhibit["equal"]) == {"namespace", "deployment"}
    receivers = {r["name"] for r in doc["receivers"]}
    assert {"helios-critical", "helios-warning"} <= receivers
