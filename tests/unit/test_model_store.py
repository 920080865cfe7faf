"""The worker's model store: a corrupt or incompatible new artifact never replaces a good one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.metrics import HeliosMetrics
from pipeline.model_store import XGB_NAME, ModelStore
from pipeline.settings import DEFAULT_MODEL_PATH


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    shutil.copytree(DEFAULT_MODEL_PATH, tmp_path / "models")
    return ModelStore(tmp_path / "models", HeliosMetrics.create(CollectorRegistry()))


def failures(store: ModelStore) -> float:
    value = store.metrics.registry.get_sample_value("helios_model_reload_failures_total", {"model": XGB_NAME})
    return value or 0.0


def shipped_version() -> str:
    return sorted(p.name for p in (DEFAULT_MODEL_PATH / XGB_NAME).iterdir())[-1]


def test_loads_the_shipped_artifact_once(store: ModelStore) -> None:
    assert store.reload() is True
    assert store.artifact is not None and store.artifact.version == shipped_version()
    assert store.reload() is False  # nothing newer
    assert (
        store.metrics.registry.get_sample_value(
            "helios_model_info", {"name": XGB_NAME, "version": shipped_version()}
        )
        == 1.0
    )


@pytest.mark.parametrize("damage", ["truncate", "checksum", "features"])
def test_a_broken_newer_version_is_rejected_counted_once_and_the_old_one_keeps_serving(
    store: ModelStore, damage: str
) -> None:
    assert store.reload()
    old = store.artifact
    newer = store.model_path / XGB_NAME / "9.9.9"
    shutil.copytree(old.path, newer)  # type: ignore[union-attr]
    model_file = next(p for p in newer.iterdir() if p.name.startswith("model."))
    meta_file = newer / "metadata.json"
    if damage == "truncate":
        model_file.write_bytes(model_file.read_bytes()[:100])
    elif damage == "checksum":
        data = bytearray(model_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model_file.write_bytes(bytes(data))
    else:
        meta = json.loads(meta_file.read_text())
        key = next(k for k in ("feature_list", "features", "feature_names") if k in meta)
        meta[key] = meta[key][:-1]
        meta_file.write_text(json.dumps(meta))
    assert store.reload() is False
    assert store.artifact is old
    assert failures(store) == 1.0
    assert "9.9.9" in (store.last_error or "")
    assert store.reload() is False
    assert failures(store) == 1.0  # not retried (and not recounted) until a newer version appears


def test_nothing_valid_means_not_loaded_with_a_reason(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "empty", HeliosMetrics.create(CollectorRegistry()))
    assert store.reload() is False
    assert store.artifact is None
    assert "no xgboost artifact" in (store.last_error or "")


def test_the_served_file_changing_on_disk_is_reported_once_and_the_model_keeps_serving(
    store: ModelStore,
) -> None:
    assert store.reload()
    served = store.artifact
    assert served is not None
    model_file = served.path / served.metadata["model_file"]
    model_file.write_bytes(b"garbage")
    assert store.reload() is False
    assert store.artifact is served and failures(store) == 1.0
    assert "changed on disk" in (store.last_error or "")
    store.reload()
    assert failures(store) == 1.0
