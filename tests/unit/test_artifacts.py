"""Artifact lifecycle: round trip, newest-valid selection, and precise rejection of bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.anomaly import xgb_feature_names
from models.artifacts import (
    ArtifactError,
    list_versions,
    load_artifact,
    load_latest,
    save_artifact,
    version_key,
)
from models.features import FEATURES
from models.xgb import XGBAnomalyModel, train

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "artifacts"


@pytest.fixture(scope="module")
def model() -> XGBAnomalyModel:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 1] > 0.8).astype(float)
    m, _ = train(x, y, ["w", "x", "y", "z"], rounds=15, seed=0)
    return m


def _save(model: XGBAnomalyModel, root: Path, version: str = "1.0.0") -> Path:
    return save_artifact(model, root, name="xgboost", version=version, data_hash="abc", metrics={"auc": 0.9})


def test_round_trip_identical_predictions(tmp_path: Path, model: XGBAnomalyModel) -> None:
    folder = _save(model, tmp_path)
    meta = json.loads((folder / "metadata.json").read_text())
    for key in (
        "name",
        "version",
        "trained_at",
        "data_hash",
        "feature_list",
        "metrics",
        "model_sha256",
        "xgboost_version",
        "format_version",
    ):
        assert key in meta
    loaded = load_latest(tmp_path)
    rows = np.random.default_rng(1).normal(size=(50, 4))
    np.testing.assert_array_equal(loaded.model.predict_batch(rows), model.predict_batch(rows))
    assert loaded.version == "1.0.0" and loaded.path == folder
    assert loaded.model.feature_names == ["w", "x", "y", "z"]


def test_no_pickle_anywhere(tmp_path: Path, model: XGBAnomalyModel) -> None:
    folder = _save(model, tmp_path)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["metadata.json", "model.ubj"]
    assert not (folder / "model.ubj").read_bytes().startswith(b"\x80")  # pickle protocol 2+ magic
    src = (Path(__file__).resolve().parents[2] / "models" / "artifacts.py").read_text()
    assert "import pickle" not in src and "joblib" not in src and "dill" not in src


def test_checksum_mismatch_rejected(tmp_path: Path, model: XGBAnomalyModel) -> None:
    folder = _save(model, tmp_path)
    meta_path = folder / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["model_sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_latest(tmp_path)


def test_truncated_model_rejected(tmp_path: Path, model: XGBAnomalyModel) -> None:
    folder = _save(model, tmp_path)
    data = (folder / "model.ubj").read_bytes()
    (folder / "model.ubj").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_artifact(folder)
    # even with a matching checksum, XGBoost's own parser must reject the truncated file
    import hashlib

    meta = json.loads((folder / "metadata.json").read_text())
    meta["model_sha256"] = hashlib.sha256(data[: len(data) // 2]).hexdigest()
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="cannot load"):
        load_artifact(folder)


def test_wrong_feature_list_rejected(tmp_path: Path, model: XGBAnomalyModel) -> None:
    _save(model, tmp_path)
    with pytest.raises(ArtifactError, match="feature list mismatch"):
        load_latest(tmp_path, expected_features=["w", "x", "z", "y"])
    folder = tmp_path / "xgboost" / "1.0.0"
    meta = json.loads((folder / "metadata.json").read_text())
    meta["feature_list"] = ["w", "x", "y"]  # disagrees with the booster's width
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="booster expects 4"):
        load_artifact(folder)


def test_corrupt_or_incompatible_metadata_rejected(tmp_path: Path, model: XGBAnomalyModel) -> None:
    folder = _save(model, tmp_path)
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(folder)
    (folder / "metadata.json").write_text(json.dumps({"format_version": 7}))
    with pytest.raises(ArtifactError, match="format_version 7"):
        load_artifact(folder)


def test_newest_valid_version_wins(tmp_path: Path, model: XGBAnomalyModel) -> None:
    _save(model, tmp_path, "1.9.0")
    _save(model, tmp_path, "1.10.0")
    broken = _save(model, tmp_path, "2.0.0")
    assert list_versions(tmp_path) == ["2.0.0", "1.10.0", "1.9.0"]
    assert load_latest(tmp_path).version == "2.0.0"
    (broken / "model.ubj").write_bytes(b"garbage")
    assert load_latest(tmp_path).version == "1.10.0"
    assert version_key("1.10.0") > version_key("1.9.0")


def test_no_versions_and_overwrite_rejected(tmp_path: Path, model: XGBAnomalyModel) -> None:
    with pytest.raises(ArtifactError, match="no artifact versions"):
        load_latest(tmp_path)
    _save(model, tmp_path)
    with pytest.raises(ArtifactError, match="already exists"):
        _save(model, tmp_path)
    with pytest.raises(ArtifactError, match="version must match"):
        _save(model, tmp_path, "../evil")


def test_shipped_default_artifact_loads_with_the_pipeline_feature_layout() -> None:
    loaded = load_latest(SHIPPED, expected_features=xgb_feature_names(FEATURES))
    assert loaded.metadata["training"]["command"].startswith("helios train")
    held_out = loaded.metadata["metrics"]["leave_files_out"]
    assert 0.5 < held_out["auc"] <= 1.0
    p = loaded.model.predict_batch(np.full((3, len(loaded.model.feature_names)), np.nan))
    assert p.shape == (3,)


def test_helios_train_writes_a_loadable_versioned_artifact(tmp_path: Path) -> None:
    import argparse
    import csv
    import random

    from pipeline import training

    rng = random.Random(0)
    data = tmp_path / "data" / "cat"
    data.mkdir(parents=True)
    labels = {}
    for k in range(4):
        rows = [
            (f"2020-01-{1 + i // 288:02d} {i % 288 // 12:02d}:{i % 12 * 5:02d}:00", rng.gauss(10, 1))
            for i in range(600)
        ]
        for i in range(400, 420):
            rows[i] = (rows[i][0], 40.0 + rng.gauss(0, 1))
        with (data / f"s{k}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value"])
            w.writerows(rows)
        labels[f"cat/s{k}.csv"] = [[rows[390][0], rows[430][0]]]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    args = argparse.Namespace(
        data=tmp_path / "data",
        labels=tmp_path / "labels.json",
        out=tmp_path / "models",
        version="0.1.0",
        folds=2,
        rounds=5,
        seed=0,
    )
    assert training.run(args) == 0
    loaded = load_latest(tmp_path / "models", expected_features=xgb_feature_names(FEATURES))
    assert loaded.version == "0.1.0"
    assert loaded.metadata["training"]["rows"] == 2400
    assert loaded.metadata["training"]["positive_rows"] == 4 * 41
    assert loaded.metadata["metrics"]["leave_files_out"]["folds"] == 2.0
    # published versions are immutable: a second run with the same version is refused
    assert training.run(args) == 2
