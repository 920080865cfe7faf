"""The models a worker serves, and their safe reload.

A new XGBoost artifact under ``HELIOS_MODEL_PATH`` is validated (checksum, feature list, a trial
prediction) before it replaces the one in service; a corrupt or incompatible artifact is
rejected with a log line and ``helios_model_reload_failures_total``, and the old one stays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.anomaly import xgb_feature_names
from models.artifacts import ArtifactError, LoadedArtifact, list_versions, load_artifact, sha256_file
from models.features import FEATURES
from models.xgb import XGBAnomalyModel
from pipeline.api import ModelInfo
from pipeline.metrics import HeliosMetrics

log = logging.getLogger(__name__)

XGB_NAME = "xgboost"


@dataclass
class ModelStore:
    """Holds the loaded XGBoost anomaly model; the online models live per deployment."""

    model_path: Path
    metrics: HeliosMetrics
    clock: Callable[[], float] = time.time
    artifact: LoadedArtifact | None = None
    loaded_at: float | None = None
    started_at: float = field(default_factory=time.time)
    last_error: str | None = None
    #: version -> why it was rejected (not retried until a newer version appears)
    rejected: dict[str, str] = field(default_factory=dict)
    #: The served version's file no longer matches its checksum (reported once).
    served_damaged: bool = False
    #: ``/models`` name -> (class path, parameters) of the online models (``stages.online_models``).
    online: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def xgb(self) -> XGBAnomalyModel | None:
        return None if self.artifact is None else self.artifact.model

    def reload(self) -> bool:
        """Serve the newest valid version if it is not already served. True if swapped.

        Versions are tried newest first; a version that fails validation is logged, counted once
        and not retried (fix it by publishing a new version), and the next older one is tried, so
        a half-written upload never takes the service down.
        """
        expected = xgb_feature_names(FEATURES)
        for version in list_versions(self.model_path, XGB_NAME):
            if self.artifact is not None and version == self.artifact.version:
                self._check_served()
                return False
            if version in self.rejected:
                continue
            try:
                candidate = load_artifact(self.model_path / XGB_NAME / version, expected)
                probe = np.zeros((2, len(candidate.model.feature_names)), dtype=np.float32)
                probs = candidate.model.predict_batch(probe)
                if probs.shape != (2,) or not np.all(np.isfinite(probs)):
                    raise ArtifactError(f"trial prediction returned {probs!r}")
            except Exception as exc:
                self.rejected[version] = f"{type(exc).__name__}: {exc}"
                self.last_error = f"{XGB_NAME} {version}: {self.rejected[version]}"
                self.metrics.model_reload_failures.labels(XGB_NAME).inc()
                log.error("model %s %s rejected, keeping %s: %s", XGB_NAME, version, self._serving(), exc)
                continue
            self._swap(candidate)
            return True
        if self.artifact is None and self.last_error is None:
            self.last_error = f"no {XGB_NAME} artifact under {self.model_path}"
        return False

    def _check_served(self) -> None:
        """The model in memory keeps serving, but a changed file on disk would fail the next start-up."""
        assert self.artifact is not None
        model_file = self.artifact.path / str(self.artifact.metadata["model_file"])
        try:
            intact = sha256_file(model_file) == self.artifact.metadata["model_sha256"]
        except OSError:
            intact = False
        if intact:
            self.served_damaged = False
        elif not self.served_damaged:
            self.served_damaged = True
            self.last_error = (
                f"{XGB_NAME} {self.artifact.version}: {model_file} changed on disk since it was loaded"
            )
            self.metrics.model_reload_failures.labels(XGB_NAME).inc()
            log.error("%s; the copy in memory keeps serving, a restart would not load it", self.last_error)

    def _swap(self, candidate: LoadedArtifact) -> None:
        if self.artifact is not None:
            self.metrics.model_info.remove(XGB_NAME, self.artifact.version)
        self.artifact = candidate
        self.loaded_at = self.clock()
        self.metrics.model_info.labels(XGB_NAME, candidate.version).set(1)
        log.info("serving %s %s from %s", XGB_NAME, candidate.version, candidate.path)

    def _serving(self) -> str:
        return "nothing" if self.artifact is None else f"{XGB_NAME} {self.artifact.version}"

    def infos(self, online: dict[str, dict[str, float]], prophet_available: bool) -> list[ModelInfo]:
        """What ``/models`` lists: the online baseline, Prophet, and the XGBoost artifact."""
        started = datetime.fromtimestamp(self.started_at, tz=UTC)
        described = self.online
        infos = [
            ModelInfo(
                name=name,
                version="online-1",
                loaded_at=started,
                metrics=online.get(name, {}),
                model_class=described[name][0] if name in described else None,
                params=described[name][1] if name in described else None,
            )
            for name in ("baseline", *(n for n in described if n != "baseline"))
        ]
        if prophet_available:
            infos.append(
                ModelInfo(
                    name="prophet",
                    version="background-1",
                    loaded_at=started,
                    metrics=online.get("prophet", {}),
                )
            )
        if self.artifact is not None and self.loaded_at is not None:
            raw = self.artifact.metadata.get("metrics", {})
            numeric = {k: float(v) for k, v in raw.items() if isinstance(v, int | float)}
            infos.append(
                ModelInfo(
                    name=XGB_NAME,
                    version=self.artifact.version,
                    loaded_at=datetime.fromtimestamp(self.loaded_at, tz=UTC),
                    metrics=numeric,
                )
            )
        return infos
