"""``helios train``: build detector features over labelled series, train XGBoost, evaluate, publish.

Labelled data is a NAB-style corpus: ``--data`` holds ``*.csv`` files (``timestamp,value``) and
``--labels`` a ``combined_windows.json`` mapping each relative path to its anomaly windows. Each file is
streamed through the detector ``helios eval nab`` scores (:func:`pipeline.evaluation.nab.nab_detector`),
exactly as the pipeline runs it (the row's features are taken before the row is learned); a row is
positive when it lies inside a labelled window. The value is fed as ``cpu_utilization``; the other
features' columns stay missing (NaN), so the model has the pipeline's full column layout.
``helios eval nab`` cross-fits the same model per category (:mod:`pipeline.evaluation.nab_cv`); the
artifact published here is trained on every file.

Evaluation is leave-files-out: files are split into ``--folds`` groups, and each group is predicted by a
model trained on the others (AUC, precision, recall, F1 at p >= 0.5, pooled over the held-out rows). The
published model is then trained on every file. The artifact lands in ``<out>/xgboost/<version>/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.anomaly import StreamingDetector, xgb_feature_names
from models.artifacts import ArtifactError, save_artifact
from models.features import FEATURES
from models.xgb import DEFAULT_PARAMS, DEFAULT_ROUNDS, classification_metrics, train
from pipeline.evaluation.nab import corpus_files, nab_detector, read_series, stream_file, window_rows


def build_dataset(
    data_dir: Path, labels: dict[str, list[list[str]]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], str]:
    """Stream every file; returns (x, y, file index per row, file names, data hash)."""
    names = corpus_files(data_dir)
    if not names:
        raise ValueError(f"no *.csv files under {data_dir}")
    digest = hashlib.sha256()
    ys: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    xs: list[np.ndarray] = []
    for gi, name in enumerate(names):
        raw = (data_dir / name).read_bytes()
        digest.update(name.encode() + b"\0" + hashlib.sha256(raw).digest())
        stamps, values = read_series(data_dir / name)
        windows = window_rows(stamps, labels.get(name, []), name)
        inside = np.zeros(len(values), dtype=np.float32)
        for left, right in windows:
            inside[left : right + 1] = 1.0
        # The detector ``helios eval nab`` scores, so the model learns the features it is evaluated on.
        _, x_file = stream_file(nab_detector(stamps), values)
        xs.append(x_file)
        ys.append(inside)
        groups.append(np.full(len(values), gi))
    digest.update(json.dumps({n: labels.get(n, []) for n in names}, sort_keys=True).encode())
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups), names, digest.hexdigest()


def leave_files_out(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, n_folds: int, rounds: int, seed: int
) -> dict[str, float]:
    """Pooled held-out metrics with files assigned round-robin to ``n_folds`` folds."""
    feature_names = xgb_feature_names(FEATURES)
    held_out = np.full(len(y), np.nan)
    fold_of_file = np.arange(groups.max() + 1) % n_folds
    fold = fold_of_file[groups]
    for k in range(n_folds):
        test = fold == k
        if not test.any():
            continue
        model, _ = train(x[~test], y[~test], feature_names, rounds=rounds, seed=seed)
        held_out[test] = model.predict_batch(x[test])
    metrics = classification_metrics(y, held_out)
    metrics["folds"] = float(n_folds)
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helios train``."""
    parser.add_argument("--data", type=Path, required=True, help="labelled corpus folder (category/*.csv)")
    parser.add_argument("--labels", type=Path, required=True, help="combined_windows.json")
    parser.add_argument("--out", type=Path, required=True, help="artifact root (the model path)")
    parser.add_argument("--version", default=None, help="artifact version (default: UTC timestamp)")
    parser.add_argument("--folds", type=int, default=5, help="leave-files-out folds for evaluation")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="boosting rounds")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Train and publish; returns an exit code (2 for bad input)."""
    if args.folds < 2:
        print(f"--folds must be >= 2, got {args.folds}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    version = args.version or now.strftime("%Y%m%d%H%M%S")
    try:
        labels = json.loads(Path(args.labels).read_text())
        x, y, groups, names, data_hash = build_dataset(Path(args.data), labels)
    except (OSError, ValueError) as exc:
        print(f"cannot read the training data: {exc}", file=sys.stderr)
        return 2
    if y.sum() == 0 or y.sum() == len(y):
        print("the labels must mark some rows inside and some outside anomaly windows", file=sys.stderr)
        return 2
    features_s = time.perf_counter() - started
    evaluation = leave_files_out(x, y, groups, args.folds, args.rounds, args.seed)
    model, train_metrics = train(x, y, xgb_feature_names(FEATURES), rounds=args.rounds, seed=args.seed)
    metrics: dict[str, Any] = {"leave_files_out": evaluation, "training_set": train_metrics}
    command = (
        f"helios train --data {args.data} --labels {args.labels} --out {args.out} --version {version} "
        f"--folds {args.folds} --rounds {args.rounds} --seed {args.seed}"
    )
    extra = {
        "training": {
            "command": command,
            "files": len(names),
            "rows": len(y),
            "positive_rows": int(y.sum()),
            "rounds": args.rounds,
            "params": {**DEFAULT_PARAMS, "seed": args.seed},
            "detector": StreamingDetector(features=FEATURES).to_dict()["params"],
            "feature_source": "NAB value fed as cpu_utilization; other features missing",
        }
    }
    try:
        folder = save_artifact(
            model,
            Path(args.out),
            name="xgboost",
            version=version,
            data_hash=data_hash,
            metrics=metrics,
            extra=extra,
            trained_at=now,
        )
    except ArtifactError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(
        f"trained on {len(names)} files, {len(y)} rows ({int(y.sum())} in windows) in "
        f"{time.perf_counter() - started:.1f} s (features {features_s:.1f} s)"
    )
    print(
        "leave-files-out: AUC {auc:.3f} precision {precision:.3f} recall {recall:.3f} F1 {f1:.3f}".format(
            **evaluation
        )
    )
    print(f"wrote {folder}")
    return 0
