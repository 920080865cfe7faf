"""The Faust/aiokafka internals Helios uses, checked against the installed versions on a real app."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry

from pipeline import faust_adapter
from pipeline.app import create_app
from pipeline.settings import load_settings


def _app(tmp_path: Path) -> Any:
    settings = load_settings({"HELIOS_DATA_DIR": str(tmp_path), "HELIOS_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    app = create_app(settings, registry=CollectorRegistry())
    app.finalize()
    return app


def test_the_adapter_was_written_for_the_installed_versions() -> None:
    # A pin that moves fails here first: re-read the attributes below against the new versions.
    assert version("faust-streaming") == faust_adapter.FAUST_VERSION
    assert version("aiokafka") == faust_adapter.AIOKAFKA_VERSION


def test_the_table_store_is_the_tables_own_mapping(tmp_path: Path) -> None:
    app = _app(tmp_path)
    table = app.helios.state
    store = faust_adapter.table_store(table)
    store["~next-offset/0"] = b'{"next": 7}'
    assert table["~next-offset/0"] == b'{"next": 7}'
    assert store.pop("~next-offset/0") == b'{"next": 7}'
    assert "~next-offset/0" not in table


def test_an_unstarted_app_has_no_assignment_and_no_finished_recovery(tmp_path: Path) -> None:
    app = _app(tmp_path)
    assert faust_adapter.assigned_actives(app) == set()
    assert faust_adapter.recovery_completed(app) is False


def test_the_consumer_diagnostic_never_raises(tmp_path: Path) -> None:
    app = _app(tmp_path)
    tp = TP(app.helios.settings.topic_metrics, 0)
    text = faust_adapter.consumer_state(app, tp, 42)
    assert text.startswith("highwater 42; consumer state unavailable: ")
