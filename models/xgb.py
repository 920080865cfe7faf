"""XGBoost anomaly model over the streaming detector's features (:meth:`StreamingDetector.xgb_features`).

The model is a plain ``xgboost.Booster`` (binary logistic) wrapped with its feature names; it is saved
only in XGBoost's own JSON/UBJSON formats (see :mod:`models.artifacts`), never pickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xgboost as xgb

#: Defaults for a small, fast model: 100 trees of depth 4.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5.0,
    "tree_method": "hist",
    "nthread": 1,
}
DEFAULT_ROUNDS = 100


class XGBAnomalyModel:
    """A trained booster plus the ordered feature names it expects.

    Parameters
    ----------
    booster
        A trained binary-logistic ``xgboost.Booster``.
    feature_names
        Column names, in the order of the rows passed to :meth:`predict_batch`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 2)); y = (x[:, 0] > 1).astype(float)
    >>> model, metrics = train(x, y, ["a", "b"], rounds=10, seed=0)
    >>> p = model.predict_batch(np.array([[3.0, 0.0], [-3.0, 0.0]]))
    >>> bool(p[0] > 0.5 > p[1])
    True
    """

    def __init__(self, booster: xgb.Booster, feature_names: Sequence[str]) -> None:
        if not feature_names:
            raise ValueError("feature_names must not be empty")
        if booster.num_features() != len(feature_names):
            raise ValueError(
                f"feature_names has {len(feature_names)} names "
                f"but the booster expects {booster.num_features()}"
            )
        # One thread: the stream calls it with a micro-batch of a few rows, where OpenMP's thread
        # start-up and spinning cost more than the trees.
        booster.set_param({"nthread": 1})
        self.booster = booster
        self.feature_names = list(feature_names)

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        arr = np.asarray(rows, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != len(self.feature_names):
            raise ValueError(f"rows must have shape (n, {len(self.feature_names)}), got {arr.shape}")
        return arr

    def _matrix(self, rows: np.ndarray) -> xgb.DMatrix:
        return xgb.DMatrix(self._rows(rows), missing=np.nan, feature_names=self.feature_names)

    def predict_batch(self, rows: np.ndarray) -> np.ndarray:
        """Anomaly probabilities for an ``(n, k)`` float array, in one booster call; NaN = missing.

        ``inplace_predict`` reads the array as it is: building a ``DMatrix`` cost more than the
        prediction for the stream's small batches.
        """
        arr = self._rows(rows)
        p = self.booster.inplace_predict(arr, missing=np.nan, validate_features=False)
        return np.asarray(p, dtype=np.float64).reshape(len(arr))

    def contributions(self, row: Sequence[float] | np.ndarray) -> dict[str, float]:
        """SHAP contributions (log-odds) of one row's features; the bias is under ``"bias"``."""
        contrib = self.booster.predict(self._matrix(np.asarray(row, dtype=np.float32)), pred_contribs=True)[0]
        out = {name: float(c) for name, c in zip(self.feature_names, contrib[:-1], strict=True)}
        out["bias"] = float(contrib[-1])
        return out


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties get average ranks); NaN if one class is absent."""
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sorted_p = p[order]
    i = 0
    while i < len(p):
        j = i
        while j + 1 < len(p) and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC, precision, recall and F1 of probabilities ``p`` against 0/1 labels ``y``.

    Examples
    --------
    >>> m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]))
    >>> m["auc"], m["precision"], m["recall"]
    (0.75, 0.5, 0.5)
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    pred = p >= threshold
    tp = float(np.sum(pred & (y > 0.5)))
    fp = float(np.sum(pred & (y <= 0.5)))
    fn = float(np.sum(~pred & (y > 0.5)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"auc": _auc(y, p), "precision": precision, "recall": recall, "f1": f1, "n": float(len(y))}


def train(
    x: np.ndarray,
    y: np.ndarray,
    feature_names: Sequence[str],
    *,
    rounds: int = DEFAULT_ROUNDS,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    weight: np.ndarray | None = None,
) -> tuple[XGBAnomalyModel, dict[str, float]]:
    """Train a binary-logistic booster on ``(x, y)``; returns the model and its training-set metrics.

    Positives are up-weighted by ``negatives / positives`` (``scale_pos_weight``) because anomalies are
    rare. Held-out evaluation is the caller's job (``helios train`` does leave-files-out).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != len(feature_names):
        raise ValueError(f"x must be (n, {len(feature_names)}) with n = len(y), got {x.shape} and {y.shape}")
    n_pos = float(y.sum())
    p = dict(DEFAULT_PARAMS)
    p["seed"] = seed
    p["scale_pos_weight"] = (len(y) - n_pos) / n_pos if n_pos > 0 else 1.0
    if params:
        p.update(params)
    dtrain = xgb.DMatrix(x, label=y, weight=weight, missing=np.nan, feature_names=list(feature_names))
    booster = xgb.train(p, dtrain, num_boost_round=rounds)
    model = XGBAnomalyModel(booster, feature_names)
    return model, classification_metrics(y, model.predict_batch(x))
