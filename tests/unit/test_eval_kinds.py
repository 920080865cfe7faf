"""The synthetic kinds corpus: NAB's layout, NAB's window rule, reproducible, and scorable by the harness."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from pipeline.evaluation import kinds, nab


def test_the_corpus_is_in_nab_layout_with_windows_on_data_stamps(tmp_path: Path) -> None:
    labels = kinds.write_corpus(tmp_path, seed=3, per_kind=2, days=6)
    assert sorted({name.split("/")[0] for name in labels}) == sorted(kinds.KINDS)
    assert json.loads((tmp_path / "labels.json").read_text()) == labels
    for name, wins in labels.items():
        stamps, values = nab.read_series(tmp_path / "data" / name)
        assert len(values) == 6 * kinds.DAY
        rows = nab.window_rows(stamps, wins, name)  # raises unless the bounds are data stamps
        assert 1 <= len(rows) <= 3
        # NAB's rule: about 10 % of the rows in windows, and every window after the probation
        covered = sum(hi - lo + 1 for lo, hi in rows)
        assert 0.08 * len(values) <= covered <= 0.11 * len(values)
        assert all(hi >= nab.probationary_rows(len(values)) for _, hi in rows)


def test_a_seed_reproduces_its_corpus_and_another_differs(tmp_path: Path) -> None:
    a = kinds.write_corpus(tmp_path / "a", seed=1, per_kind=1, days=3)
    b = kinds.write_corpus(tmp_path / "b", seed=1, per_kind=1, days=3)
    c = kinds.write_corpus(tmp_path / "c", seed=2, per_kind=1, days=3)
    assert a == b
    first = "counts/counts_0.csv"
    assert (tmp_path / "a/data" / first).read_text() == (tmp_path / "b/data" / first).read_text()
    assert (tmp_path / "a/data" / first).read_text() != (tmp_path / "c/data" / first).read_text()
    assert a != c


def test_the_nab_harness_scores_the_corpus_with_each_kind_held_out(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    kinds.add_arguments(parser)
    assert kinds.run(parser.parse_args(["--out", str(tmp_path), "--per-kind", "2", "--days", "6"])) == 0
    parser = argparse.ArgumentParser()
    nab.add_arguments(parser)
    data, labels, out = str(tmp_path / "data"), str(tmp_path / "labels.json"), str(tmp_path / "o")
    args = ["--data", data, "--labels", labels, "--out", out]
    assert nab.run(parser.parse_args([*args, "--cv", "categories"])) == 0
    cv = json.loads((tmp_path / "o" / "cv.json").read_text())
    assert set(kinds.KINDS) <= set(json.dumps(cv).replace('"', " ").split())


@pytest.mark.parametrize("bad", [["--per-kind", "0"], ["--days", "1"]])
def test_bad_sizes_are_refused(tmp_path: Path, bad: list[str]) -> None:
    parser = argparse.ArgumentParser()
    kinds.add_arguments(parser)
    assert kinds.run(parser.parse_args(["--out", str(tmp_path), *bad])) == 2
