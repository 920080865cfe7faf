"""NAB scorer on hand-made cases; expected numbers are computed here from SCORING.md's formulas."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import pytest

from pipeline.evaluation import nab
from pipeline.evaluation.nab import (
    PROFILES,
    LabelledFile,
    probationary_rows,
    scaled_sigmoid,
    score_corpus,
    score_profile,
    window_rows,
)

STANDARD = PROFILES["standard"]


def f(x: float) -> float:
    """SCORING.md rule 4, written out independently of the module under test."""
    return -1.0 if x > 3 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def test_scaled_sigmoid_reference_points() -> None:
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)  # 2/(1+e^-5)-1
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0001) == -1.0
    assert scaled_sigmoid(3.0) == pytest.approx(2.0 / (1.0 + math.exp(15.0)) - 1.0)


@pytest.mark.parametrize(("rows", "expected"), [(10, 1), (100, 15), (4032, 604), (5000, 750), (22695, 750)])
def test_probationary_period(rows: int, expected: int) -> None:
    assert probationary_rows(rows) == expected


def _file(scores: list[float], windows: list[tuple[int, int]], name: str = "f.csv") -> LabelledFile:
    return LabelledFile(name, scores, windows)


def test_earliest_detection_and_fp_weighting_by_hand() -> None:
    # 100 rows -> 15 probationary rows (0..14). One window on rows 40..49 (width 10).
    scores = [0.0] * 100
    scores[5] = 0.9  # probationary: must be ignored even though it is the highest score
    scores[20] = 0.6  # before the first window: full FP cost
    scores[44] = 0.8  # inside the window, 5th row: x = -(49 - 44 + 1)/10 = -0.6
    scores[46] = 0.8  # later in the same window: changes nothing
    scores[52] = 0.7  # after the window: d = (52 - 49)/(10 - 1) = 1/3
    lf = _file(scores, [(40, 49)])
    res = score_profile([lf], "standard", STANDARD)
    # Candidate thresholds (non-probationary distinct scores) and raw score at each:
    #   1.1 (nothing):          -1 (missed window)
    #   0.8: rows 44, 46 ->     f(-0.6)/f(-1)
    #   0.7: + row 52 ->        f(-0.6)/f(-1) + 0.11 f(1/3)
    #   0.6: + row 20 ->        ... - 0.11
    #   0.0: every row detected: earliest window row 40 (x = -1) gives 1, plus many FPs.
    tp_44 = f(-0.6) / f(-1.0)
    at_07 = tp_44 + 0.11 * f(1 / 3)
    at_06 = at_07 - 0.11
    # At threshold 0 all 85 scored rows are detections: window credit 1 (row 40); FPs are rows 15..39
    # (25 rows before the window, -0.11 each) and rows 50..99 at d = (i - 49)/9.
    at_0 = 1.0 - 0.11 * 25 + sum(0.11 * f((i - 49) / 9) for i in range(50, 100))
    candidates = {1.1: -1.0, 0.8: tp_44, 0.7: at_07, 0.6: at_06, 0.0: at_0}
    best = max(candidates.values())
    assert res.raw == pytest.approx(best)
    # f(1/3) = 2/(1 + e^(5/3)) - 1 ~ -0.68: even an alarm just after a window costs something
    assert f(1 / 3) < 0
    assert res.threshold == 0.8 and best == tp_44
    assert res.null == -1.0 and res.perfect == 1.0
    assert res.score == pytest.approx(100 * (tp_44 + 1.0) / 2.0)
    assert (res.true_positives, res.false_negatives, res.false_positives) == (1, 0, 0)


def test_fp_just_after_window_is_cheaper_than_far_fp() -> None:
    # Window 40..49 (width 10) detected on its first row; one FP either 1 row or 40 rows after it.
    def raw_with_fp_at(row: int) -> float:
        scores = [0.0] * 100
        scores[40] = scores[row] = 0.9
        return score_profile([_file(scores, [(40, 49)])], "standard", STANDARD).raw

    # row 50: d = 1/9; row 89: d = 40/9 > 3 -> f = -1, full cost. Both beat flagging nothing (-1).
    assert raw_with_fp_at(50) == pytest.approx(1.0 + 0.11 * f(1 / 9))
    assert raw_with_fp_at(89) == pytest.approx(1.0 - 0.11)
    assert raw_with_fp_at(50) > raw_with_fp_at(89)


def test_ties_go_to_the_highest_threshold() -> None:
    # Two rows outside a window that sit 3+ window-widths after it cost the full fp weight; a detection at
    # the window start is worth exactly +1. Scores: window row 0.9, far FP rows 0.5. Raw at 0.9 is 1.0.
    # With fp weight 0 (custom profile), threshold 0.5 ties with 0.9: the higher threshold must win.
    scores = [0.0] * 100
    scores[30] = 0.9  # window 30..33 (width 4): first row -> credit exactly 1
    scores[90] = 0.5
    lf = _file(scores, [(30, 33)])
    res = score_profile([lf], "zero_fp", (1.0, 0.0, 1.0))
    assert res.raw == pytest.approx(1.0)
    assert res.threshold == 0.9
    assert res.score == pytest.approx(100.0)


def test_flag_nothing_is_reported_as_1_1_and_constant_detector_is_null() -> None:
    files = [_file([0.5] * 200, [(100, 119)], "a.csv"), _file([0.5] * 300, [(50, 60), (200, 230)], "b.csv")]
    results = score_corpus(files)
    for name, (tp, _fp, fn) in PROFILES.items():
        r = results[name]
        assert r.threshold == 1.1
        assert r.raw == pytest.approx(-fn * 3)
        assert r.null == -fn * 3 and r.perfect == tp * 3
        assert r.score == pytest.approx(0.0)
    assert results["reward_low_FN_rate"].null == -6.0


def test_window_in_probation_is_dropped_and_fp_cost_uses_previous_window() -> None:
    # 200 rows -> 30 probationary; window 0..20 lies entirely in probation and does not count.
    scores = [0.0] * 200
    scores[100] = 0.7  # window 90..109 (width 20): x = -(109 - 100 + 1)/20 = -0.5
    scores[115] = 0.7  # FP after that window: d = (115 - 109)/19
    lf = _file(scores, [(0, 20), (90, 109)])
    assert lf.windows == [(90, 109)]
    res = score_profile([lf], "low_fp", PROFILES["reward_low_FP_rate"])
    expected = f(-0.5) / f(-1.0) + 0.22 * f(6 / 19)
    assert res.raw == pytest.approx(expected)
    assert res.per_file["f.csv"] == pytest.approx(expected)


def test_low_fn_profile_counts_misses_twice() -> None:
    # Two files, one window each; only the first window is ever detected (on its last row).
    a = [0.0] * 100
    a[59] = 0.8  # window 50..59 (width 10): last row, x = -1/10
    b = [0.0] * 100
    lf = [_file(a, [(50, 59)], "a.csv"), _file(b, [(50, 59)], "b.csv")]
    res = score_profile(lf, "reward_low_FN_rate", PROFILES["reward_low_FN_rate"])
    expected = f(-0.1) / f(-1.0) - 2.0
    assert res.raw == pytest.approx(expected)
    assert res.null == -4.0 and res.perfect == 2.0
    assert res.score == pytest.approx(100 * (expected + 4.0) / 6.0)
    assert res.per_file == pytest.approx({"a.csv": f(-0.1) / f(-1.0), "b.csv": -2.0})


def test_window_rows_requires_exact_timestamps() -> None:
    stamps = ["2014-01-01 00:00:00", "2014-01-01 00:05:00", "2014-01-01 00:10:00"]
    assert window_rows(stamps, [["2014-01-01 00:05:00.000000", "2014-01-01 00:10:00.000000"]], "x") == [
        (1, 2)
    ]
    with pytest.raises(ValueError, match="not a timestamp"):
        window_rows(stamps, [["2014-01-01 00:06:00", "2014-01-01 00:10:00"]], "x")


def test_window_outside_file_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        LabelledFile("x", [0.0] * 10, [(5, 10)])


def test_run_writes_one_result_per_file_and_scores(tmp_path: Path) -> None:
    data = tmp_path / "data" / "cat"
    data.mkdir(parents=True)
    labels = {}
    for k in range(2):
        rows = [
            (f"2020-01-01 {h:02d}:{m:02d}:00", 1.0 + 0.01 * ((h * 60 + m) % 7))
            for h in range(20)
            for m in range(0, 60, 5)
        ]
        rows[200] = (rows[200][0], 50.0)  # a spike the detector must catch
        with (data / f"s{k}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value"])
            w.writerows(rows)
        labels[f"cat/s{k}.csv"] = [[rows[190][0], rows[210][0]]]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    out = tmp_path / "out"
    args = argparse.Namespace(
        data=tmp_path / "data",
        labels=tmp_path / "labels.json",
        out=out,
        score=True,
        cv="none",
        candidates=None,
        rounds=5,
        seed=0,
    )
    assert nab.run(args) == 0
    for k in range(2):
        with (out / "cat" / f"s{k}.csv").open() as fh:
            got = list(csv.DictReader(fh))
        assert len(got) == 240
        assert list(got[0]) == ["timestamp", "value", "anomaly_score"]
        scores = [float(r["anomaly_score"]) for r in got]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert max(scores) == scores[200]
    summary = json.loads((out / "scores.json").read_text())
    assert summary["standard"]["true_positives"] == 2
    assert summary["standard"]["false_positives"] == 0
    # both windows caught on row 200 of 190..210: x = -(210 - 200 + 1)/21
    assert summary["standard"]["score"] == pytest.approx(100 * (2 * f(-11 / 21) / f(-1) + 2) / 4)
