"""`helios eval forecast` on a tiny file: the rows, no look-ahead, and the printed figures."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import pytest

from pipeline.evaluation.forecast_eval import add_arguments, infer_step, run

STEP = 300


def _write(path: Path, values: list[float | None]) -> list[tuple[str, float]]:
    """One row per value, 5 minutes apart; None leaves the row out (a gap)."""
    rows = []
    for i, v in enumerate(values):
        if v is None:
            continue
        hh, mm = divmod(i * 5, 60)
        rows.append((f"2024-03-01 {hh:02d}:{mm:02d}:00", v))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        w.writerows(rows)
    return rows


def _values() -> list[float | None]:
    vals: list[float | None] = [40 + 10 * math.sin(i / 5) + (i % 3) for i in range(60)]
    vals[30] = None
    return vals


def _run(tmp_path: Path, name: str, values: list[float | None], capsys: pytest.CaptureFixture[str]) -> tuple:
    src = tmp_path / f"{name}.csv"
    out = tmp_path / f"{name}-out.csv"
    rows = _write(src, values)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--file", str(src), "--horizons", "1,3", "--out", str(out)])
    assert run(args) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    with open(out, newline="") as fh:
        written = list(csv.DictReader(fh))
    return rows, written, printed


def test_rows_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows, written, printed = _run(tmp_path, "tiny", _values(), capsys)
    assert list(written[0]) == ["timestamp", "horizon", "actual", "forecast", "lower", "upper"]
    index = {ts: i for i, (ts, _) in enumerate(rows)}
    step_of = {ts: int(ts[11:13]) * 12 + int(ts[14:16]) // 5 for ts, _ in rows}
    value_of = dict(rows)
    # Expected rows: every observed target whose origin, h steps earlier, was observed too.
    steps = set(step_of.values())
    for h in (1, 3):
        expected = sorted(ts for ts, s in step_of.items() if s - h in steps)
        got = sorted(r["timestamp"] for r in written if r["horizon"] == str(h))
        assert got == expected
    for r in written:
        assert r["timestamp"] in index
        assert float(r["actual"]) == pytest.approx(value_of[r["timestamp"]])
        lo, point, hi = float(r["lower"]), float(r["forecast"]), float(r["upper"])
        assert lo <= point <= hi
        # Forecasts are in the file's units (percent), not the fractions the model saw.
        assert 10 < point < 80
    figures = json.loads(printed[-1])
    assert figures["step_seconds"] == STEP
    assert figures["feature_scale"] == 0.01
    for model in ("helios", "seasonal_naive", "holt_winters"):
        for h in ("1", "3"):
            m = figures["metrics"][model][h]
            assert m["n"] > 0 and m["mae"] >= 0 and m["mase"] >= 0
    assert 0.0 <= figures["metrics"]["helios"]["1"]["coverage"] <= 1.0
    assert any("holt_winters" in line for line in printed[:-1])  # the human table


def test_no_look_ahead(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Changing the value at one time must not change any forecast *for* that time, nor anything
    # forecast for earlier times.
    base = _values()
    changed = list(base)
    changed[40] = 99.0
    _, a, _ = _run(tmp_path, "a", base, capsys)
    _, b, _ = _run(tmp_path, "b", changed, capsys)
    target = "2024-03-01 03:20:00"  # step 40
    fa = {(r["timestamp"], r["horizon"]): r for r in a}
    fb = {(r["timestamp"], r["horizon"]): r for r in b}
    assert fa.keys() == fb.keys()
    for key, ra in fa.items():
        if key[0] <= target:
            assert (ra["forecast"], ra["lower"], ra["upper"]) == (
                fb[key]["forecast"],
                fb[key]["lower"],
                fb[key]["upper"],
            ), key
    assert any(fa[k]["forecast"] != fb[k]["forecast"] for k in fa if k[0] > target)


def test_infer_step_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert infer_step([0, 300, 600, 1200, 1500]) == 300
    bad = tmp_path / "bad.csv"
    bad.write_text("time,val\n1,2\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--file", str(bad)])) == 2
    assert "timestamp,value" in capsys.readouterr().err
