"""Leave-one-category-out evaluation of the production detector on a NAB-style corpus.

What is scored is what production declares: the streaming sigma combined with the XGBoost probability
(:func:`models.anomaly.combine`). The XGBoost part is *cross-fitted*: a file of category ``c`` is
scored by a model trained only on files of other categories, so no model ever sees the file (or the
category) it scores. The shipped artifact (``helios train``) is still trained on everything.

``helios eval nab --cv categories`` holds out each category in turn:

* every candidate detector (``--candidates``: named keyword arguments of
  :func:`pipeline.evaluation.nab.nab_detector`; the defaults alone without it) is scored with NAB's
  standard profile on the *other* categories together, one threshold, and the best one is chosen.
  The XGBoost model behind a training file then excludes both the held-out category and the file's
  own, so the held-out category reaches neither the choice nor any model used to make it;
* the chosen candidate scores the held-out category alone, with its own threshold (``SCORING.md``
  rule 13, the way the anchors' per-category scores were computed);
* a category without windows has no normalised score: its false positives are counted at the
  threshold chosen on the other categories.

Every (candidate, file) is streamed once and every (candidate, excluded categories) model trained
once; folds share them (:class:`Evaluation`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.anomaly import xgb_feature_names
from models.features import FEATURES
from models.xgb import DEFAULT_ROUNDS, XGBAnomalyModel, train
from pipeline.evaluation.nab import (
    PROFILES,
    LabelledFile,
    ProfileResult,
    corpus_files,
    nab_detector,
    probationary_rows,
    production_scores,
    read_series,
    score_profile,
    stream_file,
    window_rows,
)

#: The anchors' standard-profile scores per shared category, each category scored alone with its own
#: threshold (from the shared ``ANOMALY-METHODS.md``: the detectors' published result files).
ANCHORS: dict[str, dict[str, float]] = {
    "artificialWithAnomaly": {"HTM": 77.82, "ARTime": 70.35, "CAD OSE": 73.91},
    "realAWSCloudwatch": {"HTM": 73.42, "ARTime": 69.92, "CAD OSE": 72.09},
    "realAdExchange": {"HTM": 76.86, "ARTime": 75.23, "CAD OSE": 72.80},
}

#: The two variants reported: the production score, and the streaming sigma alone.
VARIANTS = ("production", "stream")


@dataclass(frozen=True)
class CorpusFile:
    """One data file with its category (first folder) and windows as row ranges."""

    name: str
    stamps: list[str]
    values: list[float]
    windows: list[tuple[int, int]]

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0] if "/" in self.name else ""

    def inside(self) -> np.ndarray:
        """1.0 for rows inside a labelled window, else 0.0 (the XGBoost target)."""
        y = np.zeros(len(self.values), dtype=np.float32)
        for left, right in self.windows:
            y[left : right + 1] = 1.0
        return y


def load_corpus(data_dir: Path, labels: Mapping[str, Sequence[Sequence[str]]]) -> list[CorpusFile]:
    """Every ``*.csv`` under ``data_dir`` with its windows; raises ValueError for bad files or labels."""
    out = []
    for name in corpus_files(data_dir):
        stamps, values = read_series(data_dir / name)
        out.append(CorpusFile(name, stamps, values, window_rows(stamps, labels.get(name, []), name)))
    return out


def read_candidates(path: Path) -> dict[str, dict[str, Any]]:
    """``[{"name": ..., "params": {...}}, ...]`` as name -> keyword arguments; ValueError when malformed.

    Each candidate is built once here, so a bad argument fails before any file is streamed.
    """
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--candidates {path}: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"--candidates {path}: expected a non-empty JSON list of candidates")
    out: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(raw):
        if (
            not isinstance(c, dict)
            or not isinstance(c.get("name"), str)
            or not isinstance(c.get("params"), dict)
        ):
            raise ValueError(f"--candidates {path}: entry {i} must be {{'name': str, 'params': {{...}}}}")
        if c["name"] in out:
            raise ValueError(f"--candidates {path}: duplicate name {c['name']!r}")
        try:
            nab_detector(["2020-01-01 00:00:00", "2020-01-01 00:05:00"], **c["params"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--candidates {path}: {c['name']}: {exc}") from None
        out[c["name"]] = dict(c["params"])
    return out


@dataclass
class Evaluation:
    """Streams, cross-fitted XGBoost models and scores of a corpus, each computed once.

    ``excluded`` is always a set of categories: a model ``(candidate, excluded)`` is trained on the
    files of every other category, and a file is scored by the model that also excludes its own.
    ``trained_on`` and ``scored_by`` record which files built each model and which model scored each
    file, so the protocol can be checked.
    """

    files: list[CorpusFile]
    candidates: dict[str, dict[str, Any]]
    rounds: int = DEFAULT_ROUNDS
    seed: int = 0
    trainer: Callable[..., tuple[XGBAnomalyModel, dict[str, float]]] = train
    _streams: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict)
    _models: dict[tuple[str, frozenset[str]], XGBAnomalyModel | None] = field(default_factory=dict)
    _p: dict[tuple[str, str, frozenset[str]], np.ndarray | None] = field(default_factory=dict)
    trained_on: dict[tuple[str, frozenset[str]], list[str]] = field(default_factory=dict)
    scored_by: dict[tuple[str, str, frozenset[str]], tuple[str, frozenset[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {f.name: f for f in self.files}
        self.categories = sorted({f.category for f in self.files})

    def stream(self, candidate: str, name: str) -> tuple[np.ndarray, np.ndarray, float]:
        """(sigma, XGBoost rows, threshold) of one file under one candidate, streamed once."""
        key = (candidate, name)
        if key not in self._streams:
            f = self.by_name[name]
            det = nab_detector(f.stamps, **self.candidates[candidate])
            sigma, rows = stream_file(det, f.values)
            self._streams[key] = (sigma, rows, det.threshold)
        return self._streams[key]

    def model(self, candidate: str, excluded: frozenset[str]) -> XGBAnomalyModel | None:
        """The XGBoost model trained on every file outside ``excluded`` (None without both classes)."""
        key = (candidate, excluded)
        if key not in self._models:
            names = [f.name for f in self.files if f.category not in excluded]
            self.trained_on[key] = names
            model = None
            if names:
                x = np.concatenate([self.stream(candidate, n)[1] for n in names])
                y = np.concatenate([self.by_name[n].inside() for n in names])
                if 0 < y.sum() < len(y):
                    model, _ = self.trainer(
                        x, y, xgb_feature_names(FEATURES), rounds=self.rounds, seed=self.seed
                    )
            self._models[key] = model
        return self._models[key]

    def probability(self, candidate: str, name: str, excluded: frozenset[str]) -> np.ndarray | None:
        """Cross-fitted XGBoost probabilities of one file: the model also excludes the file's category."""
        key = (candidate, name, excluded)
        if key not in self._p:
            model_key = (candidate, excluded | {self.by_name[name].category})
            model = self.model(*model_key)
            self.scored_by[key] = model_key
            self._p[key] = None if model is None else model.predict_batch(self.stream(candidate, name)[1])
        return self._p[key]

    def scored(
        self, candidate: str, names: Iterable[str], variant: str, excluded: frozenset[str] = frozenset()
    ) -> list[LabelledFile]:
        """The files' NAB scores under ``variant`` ("production" or "stream")."""
        out = []
        for name in names:
            sigma, _, threshold = self.stream(candidate, name)
            p = self.probability(candidate, name, excluded) if variant == "production" else None
            f = self.by_name[name]
            out.append(LabelledFile(name, production_scores(sigma, p, threshold), list(f.windows)))
        return out

    def standard(
        self, candidate: str, names: Sequence[str], variant: str, excluded: frozenset[str] = frozenset()
    ) -> ProfileResult:
        """NAB's standard profile over ``names`` together (one threshold)."""
        return score_profile(
            self.scored(candidate, names, variant, excluded), "standard", PROFILES["standard"]
        )

    @property
    def n_streams(self) -> int:
        """(candidate, file) pairs streamed so far."""
        return len(self._streams)

    @property
    def n_models(self) -> int:
        """(candidate, excluded categories) XGBoost models trained so far."""
        return len(self._models)

    def names(self, categories: Iterable[str]) -> list[str]:
        wanted = set(categories)
        return [f.name for f in self.files if f.category in wanted]


def false_positives(files: Sequence[LabelledFile], threshold: float) -> int:
    """Non-probationary rows scored at or above ``threshold`` (a category without windows)."""
    return sum(sum(1 for s in f.scores[probationary_rows(len(f.scores)) :] if s >= threshold) for f in files)


def _best(
    ev: Evaluation, names: Sequence[str], variant: str, excluded: frozenset[str]
) -> tuple[str, ProfileResult]:
    """The candidate with the best standard score on ``names``; ties keep the first listed."""
    best: tuple[str, ProfileResult] | None = None
    for cand in ev.candidates:
        res = ev.standard(cand, names, variant, excluded)
        if best is None or res.score > best[1].score:
            best = (cand, res)
    assert best is not None  # candidates is never empty
    return best


def held_out_fold(ev: Evaluation, held_out: str, variant: str) -> dict[str, Any]:
    """Choose on the other categories, score ``held_out`` alone; one row of the table."""
    train_names = ev.names(c for c in ev.categories if c != held_out)
    test_names = ev.names([held_out])
    chosen, on_train = _best(ev, train_names, variant, frozenset({held_out}))
    test = ev.scored(chosen, test_names, variant)
    row: dict[str, Any] = {
        "category": held_out,
        "chosen": chosen,
        "train_score": on_train.score,
        "train_threshold": on_train.threshold,
        "selection_files": train_names,
        "windows": sum(len(f.windows) for f in test),
    }
    if row["windows"]:
        res = score_profile(test, "standard", PROFILES["standard"])
        row.update(
            score=res.score,
            threshold=res.threshold,
            true_positives=res.true_positives,
            false_negatives=res.false_negatives,
            false_positives=res.false_positives,
        )
    else:
        row.update(score=None, false_positives=false_positives(test, on_train.threshold))
    return row


def cross_validate(ev: Evaluation) -> dict[str, Any]:
    """The leave-one-category-out table for both variants, and the in-sample score beside it."""
    out: dict[str, Any] = {"categories": ev.categories, "candidates": ev.candidates}
    for variant in VARIANTS:
        rows = [held_out_fold(ev, c, variant) for c in ev.categories]
        scored = [r["score"] for r in rows if r["score"] is not None]
        chosen, in_sample = _best(ev, [f.name for f in ev.files], variant, frozenset())
        out[variant] = {
            "folds": rows,
            "mean": sum(scored) / len(scored) if scored else None,
            "worst": min(scored) if scored else None,
            "in_sample": {"chosen": chosen, "score": in_sample.score, "threshold": in_sample.threshold},
        }
    return out


def table(result: Mapping[str, Any]) -> str:
    """The CV result as a markdown table (what ``--cv categories`` prints)."""
    anchors = ["HTM", "ARTime", "CAD OSE"]
    lines = [
        "| held-out category | chosen | production | chosen (stream) | stream only | "
        + " | ".join(anchors)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(anchors),
    ]

    def cell(r: Mapping[str, Any]) -> str:
        if r["score"] is None:
            return f"{r['false_positives']} FP"
        return f"{r['score']:.2f}"

    prod, stream = result["production"], result["stream"]
    for rp, rs in zip(prod["folds"], stream["folds"], strict=True):
        ref = ANCHORS.get(rp["category"], {})
        lines.append(
            f"| {rp['category']} | {rp['chosen']} | {cell(rp)} | {rs['chosen']} | {cell(rs)} | "
            + " | ".join(f"{ref[a]:.2f}" if a in ref else "-" for a in anchors)
            + " |"
        )

    def agg(key: str, fn: Callable[[list[float]], float]) -> str:
        vals = [ANCHORS[c][key] for c in result["categories"] if c in ANCHORS]
        return f"{fn(vals):.2f}" if vals else "-"

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    lines.append(
        f"| **mean** | | {num(prod['mean'])} | | {num(stream['mean'])} | "
        + " | ".join(agg(a, lambda v: sum(v) / len(v)) for a in anchors)
        + " |"
    )
    lines.append(
        f"| **worst** | | {num(prod['worst'])} | | {num(stream['worst'])} | "
        + " | ".join(agg(a, min) for a in anchors)
        + " |"
    )
    ip, is_ = prod["in_sample"], stream["in_sample"]
    lines.append(
        f"| in-sample (all files, one threshold) | {ip['chosen']} | {ip['score']:.2f} | "
        f"{is_['chosen']} | {is_['score']:.2f} |" + " |" * len(anchors)
    )
    return "\n".join(lines)


def run_cv(ev: Evaluation, out_dir: Path) -> int:
    """Print the table, write ``<out>/cv.json``; returns an exit code."""
    if not any(f.windows for f in ev.files):
        print("no labelled windows in these files: NAB's normalised score is undefined")
        return 2
    started = time.perf_counter()
    result = cross_validate(ev)
    result["seconds"] = time.perf_counter() - started
    result["models_trained"] = ev.n_models
    for variant in VARIANTS:
        for row in result[variant]["folds"]:
            row["selection_files"] = len(row["selection_files"])
    print(table(result))
    print(f"{ev.n_streams} streams, {ev.n_models} XGBoost models, {result['seconds']:.1f} s")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cv.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=_json) + "\n")
    return 0


def _json(x: object) -> object:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
