"""Leave-one-category-out evaluation on small generated corpora (pipeline.evaluation.nab_cv)."""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation import nab, nab_cv
from pipeline.evaluation.nab_cv import CorpusFile, Evaluation

ROWS = 600


def _stamps(n: int) -> list[str]:
    return [f"2020-01-{1 + i // 288:02d} {i % 288 // 12:02d}:{i % 12 * 5:02d}:00" for i in range(n)]


def _file(name: str, seed: int, spike_at: int | None, window_at: int | None) -> CorpusFile:
    """Gaussian noise, optionally a 20-row jump at ``spike_at`` and a 40-row window at ``window_at``."""
    rng = random.Random(seed)
    values = [rng.gauss(10.0, 1.0) for _ in range(ROWS)]
    if spike_at is not None:
        for i in range(spike_at, spike_at + 20):
            values[i] = 40.0 + rng.gauss(0.0, 1.0)
    windows = [] if window_at is None else [(window_at - 10, window_at + 30)]
    return CorpusFile(name, _stamps(ROWS), values, windows)


def _corpus() -> list[CorpusFile]:
    """Three categories with windows on their jumps, one with neither (like artificialNoAnomaly)."""
    files = []
    for c, cat in enumerate(("alpha", "beta", "gamma")):
        for k in range(2):
            at = 300 + 60 * k + 20 * c
            files.append(_file(f"{cat}/s{k}.csv", 10 * c + k, at, at))
    files += [_file(f"quiet/q{k}.csv", 100 + k, None, None) for k in range(2)]
    return files


def test_no_model_scores_a_file_it_was_trained_on() -> None:
    ev = Evaluation(_corpus(), {"default": {}}, rounds=5)
    result = nab_cv.cross_validate(ev)
    assert ev.scored_by, "the production variant must use the XGBoost part"
    for (_, name, _excluded), model_key in ev.scored_by.items():
        category = name.split("/")[0]
        assert category in model_key[1]
        assert name not in ev.trained_on[model_key]
        assert not any(n.split("/")[0] == category for n in ev.trained_on[model_key])
    # the held-out category's rows reach no model used for that fold, not even for the selection
    for row in result["production"]["folds"]:
        held = row["category"]
        assert all(n.split("/")[0] != held for n in row["selection_files"])
        for (_, _name, excluded), model_key in ev.scored_by.items():
            if held in excluded:
                assert all(n.split("/")[0] != held for n in ev.trained_on[model_key])
    # one stream per file, and models only for these exclusion sets: 4 singles + 6 pairs
    assert ev.n_streams == len(ev.files)
    assert {len(k[1]) for k in ev.trained_on} == {1, 2}
    assert ev.n_models == 4 + 6


def test_held_out_scores_and_the_category_without_windows() -> None:
    ev = Evaluation(_corpus(), {"default": {}}, rounds=5)
    result = nab_cv.cross_validate(ev)
    stream = {r["category"]: r for r in result["stream"]["folds"]}
    for cat in ("alpha", "beta", "gamma"):
        # each jump starts 10 rows into its window: both windows caught
        assert stream[cat]["true_positives"] == 2
        assert stream[cat]["score"] > 50
    assert stream["quiet"]["score"] is None
    assert isinstance(stream["quiet"]["false_positives"], int)
    # a category scored alone equals the plain scorer on those files with its own threshold
    alone = nab.score_profile(
        ev.scored("default", ev.names(["beta"]), "stream"), "standard", nab.PROFILES["standard"]
    )
    assert stream["beta"]["score"] == alone.score
    scored = [stream[c]["score"] for c in ("alpha", "beta", "gamma")]
    assert result["stream"]["mean"] == pytest.approx(sum(scored) / 3)
    assert result["stream"]["worst"] == min(scored)
    text = nab_cv.table(result)
    assert "| quiet | default |" in text and " FP |" in text and "in-sample" in text


def test_selection_uses_only_the_training_categories() -> None:
    # What the held-out category holds cannot change the choice made for it: replace its files by
    # different ones and the chosen candidate, its training score and threshold stay the same.
    deaf = {"warmup": 100_000}  # never leaves its warm-up: scores 0 everywhere
    candidates = {"deaf": deaf, "default": {}}
    base = _corpus()[:6]
    odd_a = [_file(f"odd/o{k}.csv", 50 + k, 300, 300) for k in range(2)]
    odd_b = [_file(f"odd/o{k}.csv", 70 + k, 250, 500) for k in range(2)]
    folds = []
    for odd in (odd_a, odd_b):
        ev = Evaluation(base + odd, candidates, rounds=5)
        folds.append({v: nab_cv.held_out_fold(ev, "odd", v) for v in nab_cv.VARIANTS})
    for v in nab_cv.VARIANTS:
        for key in ("chosen", "train_score", "train_threshold", "selection_files"):
            assert folds[0][v][key] == folds[1][v][key]
        assert folds[0][v]["chosen"] == "default"  # the deaf one scores 0 on the training categories
        assert folds[0][v]["score"] != folds[1][v]["score"]
    ev = Evaluation(base + odd_a, candidates, rounds=5)
    train_names = ev.names(["alpha", "beta", "gamma"])
    on_train = {c: ev.standard(c, train_names, "stream").score for c in candidates}
    assert folds[0]["stream"]["train_score"] == max(on_train.values()) > on_train["deaf"]


def _write(tmp_path: Path, files: list[CorpusFile]) -> argparse.Namespace:
    labels = {}
    for f in files:
        dest = tmp_path / "data" / f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value"])
            w.writerows(zip(f.stamps, f.values, strict=True))
        labels[f.name] = [[f.stamps[a], f.stamps[b]] for a, b in f.windows]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    return argparse.Namespace(
        data=tmp_path / "data",
        labels=tmp_path / "labels.json",
        out=tmp_path / "out",
        score=True,
        cv="categories",
        candidates=None,
        rounds=5,
        seed=0,
    )


def test_cli_writes_the_cv_json_and_rejects_bad_candidates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _write(tmp_path, _corpus())
    assert nab.run(args) == 0
    got = json.loads((tmp_path / "out" / "cv.json").read_text())
    assert {r["category"] for r in got["production"]["folds"]} == {"alpha", "beta", "gamma", "quiet"}
    assert got["models_trained"] == 10
    assert "| **mean** |" in capsys.readouterr().out
    bad = tmp_path / "cands.json"
    bad.write_text(json.dumps([{"name": "x", "params": {"fast_alpha": 7}}]))
    args.candidates = bad
    assert nab.run(args) == 2
    assert "fast_alpha" in capsys.readouterr().err
    bad.write_text(json.dumps([{"name": "x", "params": {}}, {"name": "y", "params": {}}]))
    args.cv = "none"
    assert nab.run(args) == 2
    assert "--cv categories" in capsys.readouterr().err


def test_plain_run_scores_the_cross_fitted_production_detector(tmp_path: Path) -> None:
    args = _write(tmp_path, _corpus())
    args.cv = "none"
    assert nab.run(args) == 0
    summary = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert summary["standard"]["true_positives"] == 6
    assert summary["stream_only"]["standard"]["true_positives"] == 6
    ev = Evaluation(_corpus(), {"default": {}}, rounds=5)
    sigma, _, threshold = ev.stream("default", "alpha/s0.csv")
    p = ev.probability("default", "alpha/s0.csv", frozenset())
    assert p is not None
    with (tmp_path / "out" / "alpha" / "s0.csv").open() as fh:
        written = [float(r["anomaly_score"]) for r in csv.DictReader(fh)]
    expected = nab.production_scores(sigma, p, threshold)
    assert np.allclose(written, expected)
    # production != stream alone: the XGBoost part changes the scores
    assert not np.allclose(expected, nab.production_scores(sigma, None, threshold))
