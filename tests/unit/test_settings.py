"""Every setting out of range stops start-up with a message naming it; secrets never show up in messages.

The bounds are read from ``Settings.model_fields`` (their annotated-types constraints), so a setting
added later is covered without editing this file.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import annotated_types as at
import pytest
from prometheus_client import CollectorRegistry

from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]

#: Other settings an in-range boundary value needs to stay consistent (cross-field rules).
COMPANIONS: dict[str, dict[str, str]] = {
    "HELIOS_MIN_REPLICAS": {"HELIOS_MAX_REPLICAS": "10000"},
    "HELIOS_MAX_REPLICAS": {"HELIOS_MIN_REPLICAS": "1"},
    "HELIOS_CPU_SCALE_UP": {"HELIOS_CPU_SCALE_DOWN": "0"},
    "HELIOS_CPU_SCALE_DOWN": {"HELIOS_CPU_SCALE_UP": "1"},
}


def _numeric_fields() -> list[tuple[str, type, Any, Any, bool, bool]]:
    """(variable, int|float, lower, upper, lower inclusive, upper inclusive) for each numeric setting."""
    out: list[tuple[str, type, Any, Any, bool, bool]] = []
    for field in Settings.model_fields.values():
        kind = next((k for k in (int, float) if field.annotation in (k, k | None)), None)
        if kind is None or field.annotation is bool:
            continue
        lo: Any = None
        hi: Any = None
        lo_inc = hi_inc = True
        for m in field.metadata:
            if isinstance(m, at.Ge):
                lo = m.ge
            elif isinstance(m, at.Gt):
                lo, lo_inc = m.gt, False
            elif isinstance(m, at.Le):
                hi = m.le
            elif isinstance(m, at.Lt):
                hi, hi_inc = m.lt, False
        assert isinstance(field.validation_alias, str)
        out.append((field.validation_alias, kind, lo, hi, lo_inc, hi_inc))
    return out


NUMERIC = _numeric_fields()
IDS = [n[0] for n in NUMERIC]


def test_the_numeric_settings_were_found() -> None:
    names = set(IDS)
    assert {
        "HELIOS_PORT",
        "HELIOS_MAX_BODY_BYTES",
        "HELIOS_MAX_PERIODS",
        "HELIOS_MAX_DEPLOYMENTS",
        "HELIOS_IDLE_TTL",
        "HELIOS_LATE_GRACE",
    } <= names
    # Every numeric setting is bounded on both sides (an unbounded float would accept "inf").
    unbounded = [var for var, _, lo, hi, _, _ in NUMERIC if lo is None or hi is None]
    assert not unbounded


def _step(kind: type, value: float) -> float:
    return 1 if kind is int else max(1e-6, abs(value) * 1e-6)


def _fmt(kind: type, value: float) -> str:
    return str(int(value)) if kind is int else repr(float(value))


def _expect_refused(var: str, value: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings({var: value, **COMPANIONS.get(var, {})})
    message = str(info.value)
    assert message.startswith(f"{var}="), message
    return message


@pytest.mark.parametrize(("var", "kind", "lo", "hi", "lo_inc", "hi_inc"), NUMERIC, ids=IDS)
def test_each_numeric_setting_rejects_values_beyond_its_bounds(
    var: str, kind: type, lo: float, hi: float | None, lo_inc: bool, hi_inc: bool
) -> None:
    below = lo - _step(kind, lo) if lo_inc else lo
    _expect_refused(var, _fmt(kind, below))
    _expect_refused(var, _fmt(kind, lo - 1000))
    if hi is not None:
        above = hi + _step(kind, hi) if hi_inc else hi
        _expect_refused(var, _fmt(kind, above))
    _expect_refused(var, "not-a-number")


@pytest.mark.parametrize(("var", "kind", "lo", "hi", "lo_inc", "hi_inc"), NUMERIC, ids=IDS)
def test_each_numeric_setting_accepts_its_inclusive_bounds(
    var: str, kind: type, lo: float, hi: float | None, lo_inc: bool, hi_inc: bool
) -> None:
    name = next(n for n, f in Settings.model_fields.items() if f.validation_alias == var)
    for bound, inclusive in ((lo, lo_inc), (hi, hi_inc)):
        if bound is None:
            continue
        value = bound if inclusive else bound + (_step(kind, bound) if bound == lo else -_step(kind, bound))
        settings = load_settings({var: _fmt(kind, value), **COMPANIONS.get(var, {})})
        assert getattr(settings, name) == pytest.approx(value)


@pytest.mark.parametrize("var", [v for v, kind, *_ in NUMERIC if kind is float])
def test_float_settings_refuse_non_finite_values(var: str) -> None:
    for value in ("nan", "inf", "-inf", "1e400"):
        _expect_refused(var, value)


def test_cross_field_rules_name_both_settings() -> None:
    with pytest.raises(ConfigError, match=r"HELIOS_CPU_SCALE_DOWN .*HELIOS_CPU_SCALE_UP"):
        load_settings({"HELIOS_CPU_SCALE_UP": "0.5", "HELIOS_CPU_SCALE_DOWN": "0.6"})
    with pytest.raises(ConfigError, match=r"HELIOS_MIN_REPLICAS .*HELIOS_MAX_REPLICAS"):
        load_settings({"HELIOS_MIN_REPLICAS": "5", "HELIOS_MAX_REPLICAS": "4"})


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("HELIOS_LOG_LEVEL", "VERBOSE"),
        ("HELIOS_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("HELIOS_KAFKA_SASL_MECHANISM", "GSSAPI"),
        ("HELIOS_APP_ID", "has spaces"),
        ("HELIOS_TOPIC_METRICS", "bad/topic"),
        ("HELIOS_KAFKA_BOOTSTRAP", "x"),
        ("HELIOS_BIND", ""),
    ],
)
def test_non_numeric_settings_name_the_variable(var: str, value: str) -> None:
    _expect_refused(var, value)


def test_several_bad_settings_are_all_named() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"HELIOS_PORT": "0", "HELIOS_BATCH_SIZE": "0", "HELIOS_RISK_LEVEL": "2"})
    for var in ("HELIOS_PORT", "HELIOS_BATCH_SIZE", "HELIOS_RISK_LEVEL"):
        assert var in str(info.value)


# -- secrets ---------------------------------------------------------------------------------------
PASSWORD = "s3cr3t-Pa55-do-not-log"
TOKEN = "tok-7f1d2c-do-not-log"


def _sasl_env(**more: str) -> dict[str, str]:
    return {
        "HELIOS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "HELIOS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "HELIOS_KAFKA_SASL_USERNAME": "helios",
        "HELIOS_KAFKA_SASL_PASSWORD": PASSWORD,
        "HELIOS_API_TOKEN": TOKEN,
        **more,
    }


def test_secrets_are_hidden_in_the_settings_object() -> None:
    settings = load_settings(_sasl_env())
    assert settings.kafka_sasl_password is not None and settings.api_token is not None
    assert settings.kafka_sasl_password.get_secret_value() == PASSWORD
    assert settings.api_token.get_secret_value() == TOKEN
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert PASSWORD not in text and TOKEN not in text


def test_secrets_are_never_in_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_sasl_env(HELIOS_PORT="99999", HELIOS_KAFKA_SASL_USERNAME=""))
    message = str(info.value)
    assert "HELIOS_PORT" in message
    assert PASSWORD not in message and TOKEN not in message
    # SASL without a username: the message names what is missing, not the password it has.
    with pytest.raises(ConfigError) as info:
        load_settings({k: v for k, v in _sasl_env().items() if k != "HELIOS_KAFKA_SASL_USERNAME"})
    assert "HELIOS_KAFKA_SASL_USERNAME" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_secrets_can_come_from_mounted_files(tmp_path: Path) -> None:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "token").write_text(TOKEN)
    env = _sasl_env()
    del env["HELIOS_KAFKA_SASL_PASSWORD"], env["HELIOS_API_TOKEN"]
    env |= {
        "HELIOS_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password"),
        "HELIOS_API_TOKEN_FILE": str(tmp_path / "token"),
    }
    settings = load_settings(env)
    assert settings.kafka_sasl_password is not None and settings.api_token is not None
    assert settings.kafka_sasl_password.get_secret_value() == PASSWORD
    assert settings.api_token.get_secret_value() == TOKEN
    with pytest.raises(ConfigError, match=r"HELIOS_API_TOKEN_FILE=.*cannot read"):
        load_settings({"HELIOS_API_TOKEN_FILE": str(tmp_path / "missing")})


def test_building_a_sasl_worker_logs_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.app import create_app

    caplog.set_level(logging.DEBUG)
    settings = load_settings(_sasl_env(HELIOS_LOG_LEVEL="DEBUG"))
    app = create_app(settings, registry=CollectorRegistry())
    assert app.conf.broker_credentials is not None  # SASL really configured
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert PASSWORD not in logged and TOKEN not in logged
    assert PASSWORD not in repr(app.conf.broker_credentials)


# -- start-up ------------------------------------------------------------------------------------
def test_worker_with_an_out_of_range_port_exits_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIOS_")}
    env |= {"HELIOS_PORT": "99999", "HELIOS_API_TOKEN": TOKEN}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "worker"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "HELIOS_PORT" in proc.stderr and "99999" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert TOKEN not in proc.stderr + proc.stdout
