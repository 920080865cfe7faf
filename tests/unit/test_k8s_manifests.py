"""Kubernetes and KEDA manifests: rendered by `kubectl kustomize`, validated against Kubernetes'
schemas (kubernetes-validate) and the CRDs in ../shared/crds, and held to the issue's requirements."""

from __future__ import annotations

import copy
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from pipeline.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
CRD_DIR = REPO.parent / "shared" / "crds"

#: Oldest Kubernetes minor still in GKE's channels, and the newest the installed package knows.
K8S_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())

#: Custom resources and the CRD file that defines them.
CRD_FILES = {
    ("keda.sh", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("keda.sh", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
    ("monitoring.googleapis.com", "PodMonitoring"): "monitoring.googleapis.com_podmonitorings.yaml",
}


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is missing in CI")
        pytest.skip("kubectl not installed")
    return path


def render(kustomization: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def inference() -> list[dict[str, Any]]:
    return render("helios-inference")


@pytest.fixture(scope="module")
def keda() -> list[dict[str, Any]]:
    return render("keda")


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


# --- schema validation ---------------------------------------------------------------------------


def _closed(schema: Any) -> Any:
    """The CRD schema with unknown fields forbidden.

    The API server silently prunes fields a structural schema does not declare, so a misspelt
    field (``fallback.behaviour``) would be dropped without error; forbidding them here catches it.
    """
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _crd_schema(group: str, kind: str, version: str) -> dict[str, Any]:
    if not CRD_DIR.is_dir():
        pytest.skip(f"CRDs not found at {CRD_DIR} (the shared/ folder beside the repository)")
    crd = yaml.safe_load((CRD_DIR / CRD_FILES[(group, kind)]).read_text())
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            assert served["served"], f"{group}/{version} {kind} is not served"
            schema = copy.deepcopy(served["schema"]["openAPIV3Schema"])
            # metadata is validated by the API server itself, not by the CRD schema.
            schema["properties"]["metadata"] = {"type": "object"}
            return _closed(schema)
    raise AssertionError(f"{kind}: the CRD has no version {version}")


def validate(obj: dict[str, Any]) -> None:
    group, _, version = obj["apiVersion"].rpartition("/")
    if (group, obj["kind"]) in CRD_FILES:
        jsonschema.validate(obj, _crd_schema(group, obj["kind"], version))
    else:
        for k8s_version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, k8s_version, strict=True)


@pytest.mark.parametrize("kustomization", ["helios-inference", "keda"])
def test_every_rendered_object_validates(kustomization: str) -> None:
    objects = render(kustomization)
    assert objects
    for obj in objects:
        validate(obj)


def test_validation_rejects_a_misspelt_field(
    keda: list[dict[str, Any]], inference: list[dict[str, Any]]
) -> None:
    # The checks above must be able to fail: a typo in a CRD object and in a built-in object.
    scaled = copy.deepcopy(one(keda, "ScaledObject", "saleor-api-scaler"))
    scaled["spec"]["fallback"]["behaviour"] = scaled["spec"]["fallback"].pop("behavior")
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    scaled = copy.deepcopy(one(keda, "ScaledObject", "saleor-api-scaler"))
    scaled["spec"]["fallback"]["behavior"] = "lowest"
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    worker = copy.deepcopy(one(inference, "Deployment", "helios-worker"))
    worker["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(worker)


# --- helios-inference --------------------------------------------------------------------------------


def test_inference_has_the_designed_objects(inference: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in inference)
    assert kinds == sorted(
        [
            ("Namespace", "helios"),
            ("ServiceAccount", "helios"),
            ("ConfigMap", "helios-config"),
            ("ConfigMap", "helios-env"),
            ("Deployment", "helios-worker"),
            ("Deployment", "helios-ingester"),
            ("Service", "helios-inference"),
            ("PodMonitoring", "helios"),
            ("PodDisruptionBudget", "helios-worker"),
        ]
    )
    for obj in inference:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "helios", obj["metadata"]["name"]


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", ["helios-worker", "helios-ingester"])
def test_pods_are_locked_down(inference: list[dict[str, Any]], name: str) -> None:
    pod = _pod(one(inference, "Deployment", name))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] is True
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert "add" not in ctx["capabilities"]
        resources = container["resources"]
        for key in ("cpu", "memory"):
            assert key in resources["requests"], (name, key)
        assert "memory" in resources["limits"]
        assert container["image"].startswith("europe-docker.pkg.dev/") and ":" in container["image"]


def _mounts(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize(
    ("name", "args"),
    [("helios-worker", ["worker"]), ("helios-ingester", ["ingest", "--source", "cloud-monitoring"])],
)
def test_config_secret_and_writable_dirs_are_mounted(
    inference: list[dict[str, Any]], name: str, args: list[str]
) -> None:
    pod = _pod(one(inference, "Deployment", name))
    (container,) = pod["containers"]
    assert container["args"] == args
    assert "command" not in container  # the image's ENTRYPOINT ["helios"]
    env = _env(container)
    mounts = _mounts(pod, container)
    config_file = Path(env["HELIOS_CONFIG_FILE"])
    assert mounts[str(config_file.parent)]["configMap"]["name"] == "helios-config"
    assert container["envFrom"] == [{"configMapRef": {"name": "helios-env"}}]
    password_file = Path(env["HELIOS_KAFKA_SASL_PASSWORD_FILE"])
    secret = mounts[str(password_file.parent)]["secret"]
    assert secret["secretName"] == "helios-kafka"
    assert [item["path"] for item in secret["items"]] == [password_file.name]
    assert "emptyDir" in mounts[env["HELIOS_DATA_DIR"]]
    assert "emptyDir" in mounts["/tmp"]  # read-only root: Python, Prophet and cmdstan write temp files
    assert not any(
        e["name"] == "HELIOS_KAFKA_SASL_PASSWORD" and "value" in e for e in container.get("env", [])
    )


def test_configmap_is_accepted_by_the_settings_loader(
    inference: list[dict[str, Any]], tmp_path: Path
) -> None:
    # The real parser: unknown config.yaml keys or out-of-range values would stop the worker at start-up.
    config = one(inference, "ConfigMap", "helios-config")["data"]["config.yaml"]
    (tmp_path / "config.yaml").write_text(config)
    (tmp_path / "password").write_text("s3cret\n")
    env = dict(one(inference, "ConfigMap", "helios-env")["data"])
    env |= {
        "HELIOS_CONFIG_FILE": str(tmp_path / "config.yaml"),
        "HELIOS_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password"),
    }
    settings = load_settings(env)
    assert (settings.metrics_namespace, settings.metrics_deployment) == ("saleor", "saleor-api")
    assert (settings.cpu_scale_up, settings.cpu_scale_down, settings.memory_warning) == (0.80, 0.20, 0.85)
    assert settings.anomaly_threshold == 2.5
    assert (settings.min_replicas, settings.max_replicas) == (1, 10)
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "s3cret"


def test_worker_probes_health_and_ready_on_8080(inference: list[dict[str, Any]]) -> None:
    (container,) = _pod(one(inference, "Deployment", "helios-worker"))["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    for probe, path in (
        ("startupProbe", "/health"),
        ("livenessProbe", "/health"),
        ("readinessProbe", "/ready"),
    ):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == 8080, probe


def _selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_monitoring_and_pdb_select_only_workers(inference: list[dict[str, Any]]) -> None:
    worker = one(inference, "Deployment", "helios-worker")
    ingester = one(inference, "Deployment", "helios-ingester")
    service = one(inference, "Service", "helios-inference")
    monitoring = one(inference, "PodMonitoring", "helios")
    pdb = one(inference, "PodDisruptionBudget", "helios-worker")
    for selector in (
        service["spec"]["selector"],
        monitoring["spec"]["selector"]["matchLabels"],
        pdb["spec"]["selector"]["matchLabels"],
    ):
        assert _selects(selector, worker) and not _selects(selector, ingester), selector
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, "http")]
    (endpoint,) = monitoring["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    # GMP's job label is the PodMonitoring's name; the rules alert on up{job="helios"}.
    assert monitoring["metadata"]["name"] == "helios"
    assert pdb["spec"]["minAvailable"] < worker["spec"]["replicas"]


# --- KEDA ---------------------------------------------------------------------------------------------


def _walk_keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _walk_keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _walk_keys(v)}
    return set()


def test_scaled_object_targets_saleor_api(keda: list[dict[str, Any]]) -> None:
    (scaled,) = keda
    assert scaled["kind"] == "ScaledObject"
    assert scaled["metadata"]["namespace"] == "saleor"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "saleor-api"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 10)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (30, 300)
    assert "metricName" not in _walk_keys(scaled)  # removed from current KEDA
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    # cooldownPeriod only applies to scale-to-zero: the scale-down damping is the HPA's window.
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_the_simulator_reads_this_scaled_object(keda: list[dict[str, Any]]) -> None:
    from pipeline.simulate import DEFAULT_SCALED_OBJECT, ScaledObjectSpec

    (scaled,) = keda
    spec = scaled["spec"]
    so = ScaledObjectSpec.from_manifest(DEFAULT_SCALED_OBJECT)
    (prom,) = [t for t in spec["triggers"] if t["type"] == "prometheus"]
    (cpu,) = [t for t in spec["triggers"] if t["type"] == "cpu"]
    assert so.query == prom["metadata"]["query"]
    assert so.threshold == float(prom["metadata"]["threshold"])
    assert (so.polling_seconds, so.cooldown_seconds) == (spec["pollingInterval"], spec["cooldownPeriod"])
    assert so.cpu_target == pytest.approx(float(cpu["metadata"]["value"]) / 100)
    assert (so.min_replicas, so.max_replicas) == (spec["minReplicaCount"], spec["maxReplicaCount"])
    down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert so.downscale_stabilization_seconds == down["stabilizationWindowSeconds"]


def test_prometheus_trigger_yields_the_recommended_replicas(keda: list[dict[str, Any]]) -> None:
    (scaled,) = keda
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    meta = trigger["metadata"]
    assert meta["query"] == 'max(helios_recommended_replicas{namespace="saleor", deployment="saleor-api"})'
    assert meta["ignoreNullValues"] == "false"
    assert trigger.get("metricType", "AverageValue") == "AverageValue"
    threshold = float(meta["threshold"])
    # KEDA's AverageValue arithmetic: the HPA wants ceil(value / threshold) replicas.
    for recommended in range(scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"] + 1):
        assert math.ceil(recommended / threshold) == recommended
    # The design's trigger (a 0..1 gauge against "70") could never ask for a second replica.
    assert math.ceil(1.0 / 70) == 1


def test_fallback_is_safe_and_cpu_is_the_floor(keda: list[dict[str, Any]]) -> None:
    (scaled,) = keda
    spec = scaled["spec"]
    fallback = spec["fallback"]
    assert fallback["failureThreshold"] >= 1
    assert spec["minReplicaCount"] < fallback["replicas"] <= spec["maxReplicaCount"]
    assert fallback.get("behavior") == "currentReplicasIfHigher"  # an outage at peak never scales down
    (cpu,) = [t for t in spec["triggers"] if t["type"] == "cpu"]
    assert cpu["metricType"] == "Utilization"
    assert cpu["metadata"] == {"value": "72"}
    # The HPA acts outside 10 % of its target: the trigger must act before Helios' 80 % threshold.
    assert float(cpu["metadata"]["value"]) / 100 * 1.1 <= 0.80
    # KEDA's admission webhook: fallback needs a non-cpu/memory trigger of type AverageValue.
    assert any(
        t["type"] not in {"cpu", "memory"} and t.get("metricType", "AverageValue") == "AverageValue"
        for t in spec["triggers"]
    )


def test_keda_query_is_the_one_the_promtool_tests_pin(keda: list[dict[str, Any]]) -> None:
    # rules/helios-rules.test.yaml evaluates this query on a real PromQL engine: one sample while two
    # workers export the deployment, none once the series is gone (tests/integration/test_rules.py).
    (scaled,) = keda
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    cases = yaml.safe_load((REPO / "rules" / "helios-rules.test.yaml").read_text())["tests"]
    pinned = [check for case in cases for check in case.get("promql_expr_test", [])]
    exprs = {check["expr"] for check in pinned}
    assert exprs == {trigger["metadata"]["query"]}
    assert any(check["exp_samples"] == [] for check in pinned)
    assert any(len(check["exp_samples"]) == 1 for check in pinned)


def test_keda_query_parses_as_promql(keda: list[dict[str, Any]], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    (scaled,) = keda
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    rules = {
        "groups": [
            {"name": "keda", "rules": [{"record": "keda:query", "expr": trigger["metadata"]["query"]}]}
        ]
    }
    path = tmp_path / "keda.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
