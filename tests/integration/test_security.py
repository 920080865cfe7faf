"""Security against a running worker: the bearer token, what stays open, and secrets kept out of the log.

With ``HELIOS_API_TOKEN`` set (here through the mounted-file variant ``HELIOS_API_TOKEN_FILE``),
``/predict``, ``/detect`` and ``/recommend`` answer 401 without ``Authorization: Bearer <token>``;
``/metrics``, ``/health`` and ``/ready`` stay open for Prometheus and the kubelet. The worker runs
at DEBUG and its whole log is searched for the token afterwards. (SASL secrets are unit-tested in
``tests/unit/test_settings.py``: there is no SASL broker here.)
"""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from pipeline.api import DetectResponse, ErrorResponse, PredictResponse, RecommendResponse
from tests.conftest import free_port
from tests.helpers import Worker, topic_env

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hx-" + uuid.uuid4().hex  # a fresh secret per run, so a hit in the log cannot be a coincidence

BODIES: dict[str, dict[str, Any]] = {
    "/predict": {"metrics": {"cpu_utilization": 0.5}, "periods": 3},
    "/detect": {"metrics": {"cpu_utilization": 0.5, "memory_utilization": 0.4}},
    "/recommend": {
        "namespace": "saleor",
        "deployment": "saleor-api",
        "current_replicas": 2,
        "current_metrics": {"cpu_utilization": 0.7},
        "predicted_metrics": {"cpu_utilization": 0.9},
    },
}
RESPONSES: dict[str, type[BaseModel]] = {
    "/predict": PredictResponse,
    "/detect": DetectResponse,
    "/recommend": RecommendResponse,
}


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    tmp = tmp_path_factory.mktemp("security")
    secret = tmp / "api-token"
    secret.write_text(TOKEN + "\n")
    secret.chmod(0o600)
    env = {
        **topic_env(uuid.uuid4().hex[:10]),
        "HELIOS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HELIOS_DATA_DIR": str(tmp / "data"),
        "HELIOS_TOPIC_PARTITIONS": "2",
        "HELIOS_BROKER_SESSION_TIMEOUT": "6",
        "HELIOS_LOG_LEVEL": "DEBUG",
        "HELIOS_API_TOKEN_FILE": str(secret),
    }
    w = Worker(env, free_port(), tmp / "worker.log")
    try:
        yield w.start()
    finally:
        w.kill(signal.SIGTERM)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize(
    "auth",
    [
        None,
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer ",
        "Bearer",
    ],
    ids=["none", "wrong", "longer", "shorter", "basic", "no-scheme", "empty", "scheme-only"],
)
def test_inference_endpoints_refuse_without_the_token(worker: Worker, path: str, auth: str | None) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    status, data = worker.post(path, BODIES[path], headers=headers)
    assert status == 401, data
    err = ErrorResponse.model_validate(data)
    assert "HELIOS_API_TOKEN" in err.error and TOKEN not in err.error


@pytest.mark.kafka
@pytest.mark.slow
def test_401_comes_before_body_parsing_and_carries_a_challenge(worker: Worker) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{worker.port}/predict", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 401  # an anonymous caller learns nothing about the schema
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_inference_endpoints_answer_with_the_token(worker: Worker, path: str, scheme: str) -> None:
    status, data = worker.post(path, BODIES[path], headers={"Authorization": f"{scheme} {TOKEN}"})
    assert status == 200, data
    RESPONSES[path].model_validate(data)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("path", ["/metrics", "/health", "/ready"])
def test_probe_and_scrape_endpoints_stay_open(worker: Worker, path: str) -> None:
    status, body = worker.get(path)
    assert status == 200, body
    assert TOKEN.encode() not in body


@pytest.mark.kafka
@pytest.mark.slow
def test_the_token_never_reaches_the_log(worker: Worker) -> None:
    # Exercise the paths that log: refused and accepted requests, a malformed body, the scrape.
    for path, body in BODIES.items():
        worker.post(path, body, headers={"Authorization": f"Bearer {TOKEN}"})
        worker.post(path, body, headers={"Authorization": f"Bearer {TOKEN}-wrong"})
        worker.request("POST", path, raw=b"{oops", headers={"Authorization": f"Bearer {TOKEN}"})
    worker.metrics()
    log = worker.log_path.read_text(errors="replace")
    assert "DEBUG" in log  # the log really is at its most verbose
    assert TOKEN not in log
    assert TOKEN[3:] not in log  # nor the random part on its own


def _python_sources() -> list[Path]:
    return [p for d in ("pipeline", "agents", "models") for p in (REPO / d).rglob("*.py")]


UNSAFE = {
    "pickle": re.compile(r"^\s*(import|from)\s+(c?pickle|joblib|dill|cloudpickle|shelve|marshal)\b", re.M),
    "unsafe yaml": re.compile(r"yaml\.(load|unsafe_load|full_load)\("),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\("),
    "torch.load": re.compile(r"torch\.load\("),
    "numpy allow_pickle": re.compile(r"allow_pickle\s*=\s*True"),
    "pandas read_pickle": re.compile(r"read_pickle\("),
}


@pytest.mark.parametrize("what", list(UNSAFE))
def test_nothing_deserialises_untrusted_code(what: str) -> None:
    """Kafka does not authenticate producers and the model path is a volume: neither may carry code."""
    sources = _python_sources()
    assert len(sources) > 20
    hits = [f"{p.relative_to(REPO)}" for p in sources if UNSAFE[what].search(p.read_text())]
    assert not hits, f"{what} in {hits}"


def test_the_guard_would_catch_pickle() -> None:
    assert UNSAFE["pickle"].search("import pickle\n")
    assert UNSAFE["pickle"].search("from joblib import load\n")
    assert UNSAFE["unsafe yaml"].search("yaml.load(stream)")
    assert not UNSAFE["unsafe yaml"].search("yaml.safe_load(stream)")
    assert UNSAFE["eval/exec"].search("x = eval(s)")
    assert not UNSAFE["eval/exec"].search("model.eval()")
