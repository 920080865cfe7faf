"""Versioned XGBoost model artifacts: ``<root>/<name>/<version>/model.ubj`` + ``metadata.json``.

``metadata.json`` records the name, version, training time, a hash of the training data, the feature
list, evaluation metrics, the SHA-256 of the model file, the XGBoost version and the artifact format
version. :func:`load_latest` picks the newest version that loads cleanly and verifies the checksum and the
feature list; nothing here unpickles anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xgboost as xgb

from models.xgb import XGBAnomalyModel

ARTIFACT_FORMAT = 1
MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")


class ArtifactError(ValueError):
    """A model artifact is missing, corrupt, incompatible or does not match what is expected.

    ``models`` must not import ``pipeline``; ``pipeline.errors.ArtifactError`` is the service-level twin.
    """


@dataclass(frozen=True)
class LoadedArtifact:
    """A model loaded from disk with its metadata."""

    model: XGBAnomalyModel
    metadata: dict[str, Any]
    path: Path
    version: str


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``1.10.0`` after ``1.9.0`` and dates naturally (numeric runs compare as ints)."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[A-Za-z]+", version))


def save_artifact(
    model: XGBAnomalyModel,
    out_dir: Path,
    *,
    name: str,
    version: str,
    data_hash: str,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    trained_at: dt.datetime | None = None,
) -> Path:
    """Write ``<out_dir>/<name>/<version>/`` with the model and its metadata; returns that folder.

    Refuses to overwrite an existing version (versions are immutable once published).
    """
    for label, value in (("name", name), ("version", version)):
        if not _VERSION_RE.match(value):
            raise ArtifactError(f"{label} must match {_VERSION_RE.pattern}, got {value!r}")
    folder = Path(out_dir) / name / version
    if folder.exists():
        raise ArtifactError(f"artifact {folder} already exists; choose a new version")
    folder.mkdir(parents=True)
    model_path = folder / MODEL_FILE
    model.booster.save_model(str(model_path))
    when = trained_at or dt.datetime.now(dt.UTC)
    metadata = {
        "format_version": ARTIFACT_FORMAT,
        "name": name,
        "version": version,
        "trained_at": when.isoformat(),
        "data_hash": data_hash,
        "feature_list": list(model.feature_names),
        "metrics": metrics,
        "model_file": MODEL_FILE,
        "model_sha256": sha256_file(model_path),
        "xgboost_version": xgb.__version__,
        **(extra or {}),
    }
    (folder / METADATA_FILE).write_text(
        json.dumps(metadata, indent=2, sort_keys=True, allow_nan=False) + "\n"
    )
    return folder


def load_artifact(folder: Path, expected_features: Sequence[str] | None = None) -> LoadedArtifact:
    """Load one version folder, verifying metadata, checksum and (if given) the feature list."""
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    try:
        metadata = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{meta_path}: metadata file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path}: metadata is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{meta_path}: metadata must be a JSON object")
    if metadata.get("format_version") != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"{meta_path}: format_version {metadata.get('format_version')!r} is not supported "
            f"(expected {ARTIFACT_FORMAT})"
        )
    for key in ("name", "version", "feature_list", "model_sha256", "model_file"):
        if key not in metadata:
            raise ArtifactError(f"{meta_path}: required key {key!r} is missing")
    model_file = str(metadata["model_file"])
    if model_file not in ("model.ubj", "model.json"):
        raise ArtifactError(f"{meta_path}: model_file must be model.ubj or model.json, got {model_file!r}")
    model_path = folder / model_file
    if not model_path.is_file():
        raise ArtifactError(f"{model_path}: model file is missing")
    actual = sha256_file(model_path)
    if actual != metadata["model_sha256"]:
        raise ArtifactError(
            f"{model_path}: checksum mismatch (metadata says {metadata['model_sha256']}, file is {actual})"
        )
    features = metadata["feature_list"]
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features) or not features:
        raise ArtifactError(f"{meta_path}: feature_list must be a non-empty list of names")
    if expected_features is not None and list(expected_features) != features:
        raise ArtifactError(
            f"{meta_path}: feature list mismatch: artifact has {len(features)} features {features[:3]}..., "
            f"expected {len(expected_features)} {list(expected_features)[:3]}..."
        )
    booster = xgb.Booster()
    try:
        booster.load_model(str(model_path))
    except xgb.core.XGBoostError as exc:
        raise ArtifactError(
            f"{model_path}: XGBoost cannot load the model ({str(exc).splitlines()[0]})"
        ) from None
    try:
        model = XGBAnomalyModel(booster, features)
    except ValueError as exc:
        raise ArtifactError(f"{model_path}: {exc}") from None
    return LoadedArtifact(model=model, metadata=metadata, path=folder, version=str(metadata["version"]))


def list_versions(model_path: Path, name: str = "xgboost") -> list[str]:
    """Version folder names under ``<model_path>/<name>``, newest first."""
    root = Path(model_path) / name
    if not root.is_dir():
        return []
    return sorted((p.name for p in root.iterdir() if p.is_dir()), key=version_key, reverse=True)


def load_latest(
    model_path: Path, name: str = "xgboost", expected_features: Sequence[str] | None = None
) -> LoadedArtifact:
    """Load the newest version that verifies; raise :class:`ArtifactError` if none does.

    A broken newer version is skipped in favour of an older valid one (a half-written upload must not
    take the service down); the error, when every version fails, lists why each was rejected.
    """
    versions = list_versions(model_path, name)
    if not versions:
        raise ArtifactError(f"no artifact versions under {Path(model_path) / name}")
    problems = []
    for version in versions:
        try:
            return load_artifact(Path(model_path) / name / version, expected_features)
        except ArtifactError as exc:
            problems.append(str(exc))
    raise ArtifactError("no valid artifact version: " + "; ".join(problems))
