"""``helios eval forecast``: stream one series through the online forecaster and its references.

Every forecast is made before the value it targets is learned (no look-ahead): at each row the models
are first scored on the forecasts they made ``h`` steps earlier, then learn the row, then forecast.

Compared in the same run:

* ``helios`` -- the forecaster under test: :class:`models.forecast.OnlineForecaster` with its conformal
  band, or the model ``--forecaster`` names (``HELIOS_FORECASTER``'s values, see ``models/spec.py``:
  a River forecaster gets the same conformal band);
* ``seasonal_naive`` -- the value one day earlier;
* ``holt_winters`` -- additive Holt-Winters (alpha 0.2, beta 0.001, gamma 0.05), with a rolling
  split-conformal band: the empirical ``level`` quantile of its last ``--conformal-window`` absolute
  errors at that horizon (``hw_conformal``).

MASE divides each MAE by the in-sample one-step naive MAE of the whole series, so all models share the
denominator.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.features import HORIZONS
from models.forecast import calibrated_steps_for
from models.reference import HoltWinters, SeasonalNaive
from models.spec import forecaster_spec, make_forecaster

__all__ = [
    "EvalResult",
    "add_arguments",
    "evaluate",
    "infer_step",
    "load_series",
    "resample",
    "run",
    "summarise",
]

#: Columns of the rows written by ``--out``.
OUT_COLUMNS = ("timestamp", "horizon", "actual", "forecast", "lower", "upper")


def load_series(path: str | Path) -> tuple[list[float], list[float], list[str]]:
    """Read a ``timestamp,value`` CSV: epoch seconds, values, and the timestamps as written."""
    frame = pd.read_csv(path)
    if "timestamp" not in frame.columns or "value" not in frame.columns:
        raise ValueError(f"{path}: expected columns timestamp,value, got {list(frame.columns)}")
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    order = np.argsort(stamps.to_numpy(), kind="stable")
    # Seconds since the epoch whatever the datetime resolution pandas picked.
    epoch = pd.Timestamp(0, tz="UTC")
    ts = ((stamps - epoch) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)[order].tolist()
    ys = frame["value"].astype(float).to_numpy()[order].tolist()
    raw = frame["timestamp"].astype(str).to_numpy()[order].tolist()
    return ts, ys, raw


def resample(
    ts: Sequence[float], ys: Sequence[float], step_seconds: int
) -> tuple[list[float], list[float], list[str]]:
    """A series on a regular grid of ``step_seconds``: finer than its own step by linear interpolation in
    time, coarser by the mean of each bin (empty bins are dropped, so they are gaps).

    Examples
    --------
    >>> resample([0.0, 300.0, 600.0], [1.0, 2.0, 4.0], 150)[:2]
    ([0.0, 150.0, 300.0, 450.0, 600.0], [1.0, 1.5, 2.0, 3.0, 4.0])
    >>> resample([0.0, 300.0, 600.0, 900.0], [1.0, 3.0, 5.0, 7.0], 600)[:2]
    ([0.0, 600.0], [2.0, 6.0])
    """
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds!r}")
    t = np.asarray(ts, dtype=float)
    y = np.asarray(ys, dtype=float)
    keep = np.isfinite(t) & np.isfinite(y)
    t, y = t[keep], y[keep]
    if len(t) < 2:
        raise ValueError("need at least two finite samples to resample")
    native = infer_step(t.tolist())
    origin = math.floor(t[0] / step_seconds) * step_seconds
    if step_seconds < native:
        grid = np.arange(math.ceil(t[0] / step_seconds) * step_seconds, t[-1] + 1e-9, step_seconds)
        values = np.interp(grid, t, y)
    else:
        bins = np.floor((t - origin) / step_seconds).astype(np.int64)
        sums = np.bincount(bins, weights=y)
        counts = np.bincount(bins)
        full = counts > 0
        grid = origin + step_seconds * np.nonzero(full)[0].astype(float)
        values = sums[full] / counts[full]
    stamps = pd.to_datetime(grid, unit="s", utc=True).strftime("%Y-%m-%d %H:%M:%S").tolist()
    return grid.tolist(), values.tolist(), stamps


def infer_step(ts: Sequence[float]) -> int:
    """The median spacing of the timestamps, in whole seconds (at least 1)."""
    if len(ts) < 2:
        raise ValueError("need at least two timestamps to infer the step")
    return max(1, round(float(np.median(np.diff(np.asarray(ts, dtype=float))))))


def _feature_scale(value: str, ys: Sequence[float]) -> float:
    if value == "auto":
        # Helios sees utilisation as fractions; NAB-style files are in percent.
        return 0.01 if max((abs(y) for y in ys if math.isfinite(y)), default=0.0) > 1.0 else 1.0
    scale = float(value)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"--feature-scale must be 'auto' or a positive number, got {value!r}")
    return scale


@dataclass
class _Track:
    """Scored forecasts of one model at one horizon."""

    abs_err: list[float] = field(default_factory=list)
    #: target step -> (covered, width) for the forecasts that came with an interval
    intervals: dict[int, tuple[bool, float]] = field(default_factory=dict)

    def summary(self, naive_mae: float, first: int, common: set[int]) -> dict[str, float | None]:
        mae = float(np.mean(self.abs_err)) if self.abs_err else math.nan
        early = float(np.mean(self.abs_err[:first])) if self.abs_err else math.nan
        out: dict[str, float | None] = {
            "n": len(self.abs_err),
            "mae": _clean(mae),
            "mase": _clean(mae / naive_mae) if naive_mae > 0 else None,
            # The first day only: how useful the model is before it has seen a daily cycle.
            "mase_first_day": _clean(early / naive_mae) if naive_mae > 0 else None,
        }
        # Interval figures over the targets every interval model covered, so no model is charged
        # for start-up bands another model did not have to issue.
        shared = [v for k, v in self.intervals.items() if k in common]
        if shared:
            out["coverage"] = _clean(float(np.mean([c for c, _ in shared])))
            out["mean_width"] = _clean(float(np.mean([w for _, w in shared])))
            out["n_intervals"] = len(shared)
        return out


def _clean(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


@dataclass
class EvalResult:
    """Metrics per model and horizon, and the Helios rows (in the file's units)."""

    file: str
    step_seconds: int
    feature_scale: float
    naive_mae: float
    metrics: dict[str, dict[int, dict[str, float | None]]]
    rows: list[tuple[str, int, float, float, float, float]]
    seconds_per_sample: float
    forecaster: str = "helios"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "forecaster": self.forecaster,
            "step_seconds": self.step_seconds,
            "feature_scale": self.feature_scale,
            "naive_mae": _clean(self.naive_mae),
            "us_per_sample": round(self.seconds_per_sample * 1e6, 2),
            "metrics": {m: {str(h): v for h, v in per.items()} for m, per in self.metrics.items()},
        }


#: The models every evaluation scores, Helios first.
_MODELS = ("helios", "seasonal_naive", "holt_winters")


@dataclass
class _Scoreboard:
    """Forecasts awaiting the value they target, and the score of those that met it."""

    hs: list[int]
    feature_scale: float
    level: float
    conformal_window: int
    tracks: dict[str, dict[int, _Track]] = field(init=False)
    #: target step index -> (forecast, lower, upper) per model and horizon
    pending: dict[str, dict[int, dict[int, tuple[float, float, float]]]] = field(init=False)
    hw_resid: dict[int, deque[float]] = field(init=False)
    rows: list[tuple[str, int, float, float, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tracks = {m: {h: _Track() for h in self.hs} for m in _MODELS}
        self.pending = {m: {h: {} for h in self.hs} for m in _MODELS}
        self.hw_resid = {h: deque[float](maxlen=self.conformal_window) for h in self.hs}

    def score(self, s: int, y: float, y_raw: float, stamp: str) -> None:
        """Score every forecast that targeted step ``s`` against its (scaled) value ``y``."""
        fs = self.feature_scale
        for m in _MODELS:
            for h in self.hs:
                got = self.pending[m][h].pop(s, None)
                if got is None:
                    continue
                point, lo, hi = got
                err = abs(y - point)
                tr = self.tracks[m][h]
                tr.abs_err.append(err / fs)
                if m == "holt_winters":
                    self.hw_resid[h].append(err)
                if math.isfinite(lo):
                    tr.intervals[s] = (lo <= y <= hi, (hi - lo) / fs)
                if m == "helios":
                    self.rows.append((stamp, h, y_raw, point / fs, lo / fs, hi / fs))

    def queue(
        self, s: int, bands: Sequence[Any], sn_points: Sequence[float], hw_points: Sequence[float]
    ) -> None:
        """File the forecasts made at step ``s`` under the steps they target."""
        for h in self.hs:
            b = bands[h - 1]
            self.pending["helios"][h][s + h] = (b.point, b.lower, b.upper)
            self.pending["seasonal_naive"][h][s + h] = (sn_points[h - 1], math.nan, math.nan)
            self.pending["holt_winters"][h][s + h] = self._hw_band(h, hw_points[h - 1])

    def _hw_band(self, h: int, point: float) -> tuple[float, float, float]:
        """Holt-Winters' point with a split-conformal band from its own recent errors at ``h``."""
        resid = self.hw_resid[h]
        if len(resid) < 20:
            return (point, math.nan, math.nan)
        n = len(resid)
        q = float(
            np.quantile(
                np.fromiter(resid, float), min(1.0, math.ceil((n + 1) * self.level) / n), method="higher"
            )
        )
        return (point, point - q, point + q)


def evaluate(
    ts: Sequence[float],
    ys: Sequence[float],
    stamps: Sequence[str],
    horizons: Sequence[int] = (1, 6),
    feature_scale: float = 1.0,
    step_seconds: int | None = None,
    level: float = 0.9,
    conformal_window: int = 288,
    make_forecaster: Callable[[int, tuple[int, ...]], Any] | None = None,
    file: str = "",
    forecaster: str = "helios",
) -> EvalResult:
    """Stream ``(ts, ys)`` through the models; score each forecast on the value it targeted."""
    import time

    step = step_seconds or infer_step(ts)
    hs = sorted({int(h) for h in horizons})
    if not hs or hs[0] < 1:
        raise ValueError(f"horizons must be positive integers, got {horizons!r}")
    hmax = hs[-1]
    # Calibrate where the stream does (the published horizons) and at the horizons evaluated here.
    # (published horizons between two steps calibrate both neighbours, as forecast_seconds serves them)
    calibrated = tuple(sorted(set(calibrated_steps_for(step, list(HORIZONS.values()))) | set(hs)))
    if make_forecaster is None:
        helios = _build(forecaster, step, level, calibrated)
    else:
        helios = make_forecaster(step, calibrated)
    hw = HoltWinters(step_seconds=step)
    sn = SeasonalNaive(step_seconds=step)
    board = _Scoreboard(hs, feature_scale, level, conformal_window)
    t0 = ts[0] if ts else 0.0
    spent = 0.0
    for t, y_raw, stamp in zip(ts, ys, stamps, strict=True):
        if not math.isfinite(y_raw):
            continue
        y = y_raw * feature_scale
        s = round((t - t0) / step)
        board.score(s, y, y_raw, stamp)
        start = time.perf_counter()
        helios.learn_at(t, y)
        bands = helios.intervals(hmax)
        spent += time.perf_counter() - start
        hw.learn_one(t, y)
        sn.learn_one(t, y)
        hw_points = hw.forecast(hmax)
        board.queue(s, bands, sn.forecast(hmax), hw_points)
    finite = [y for y in ys if math.isfinite(y)]
    naive_mae = float(np.mean(np.abs(np.diff(finite)))) if len(finite) > 1 else math.nan
    first = max(1, round(86400 / step))
    tracks = board.tracks
    common = {h: set(tracks["helios"][h].intervals) & set(tracks["holt_winters"][h].intervals) for h in hs}
    metrics = {m: {h: tracks[m][h].summary(naive_mae, first, common[h]) for h in hs} for m in _MODELS}
    rows = sorted(board.rows, key=lambda r: (r[0], r[1]))
    return EvalResult(
        file=file,
        step_seconds=step,
        feature_scale=feature_scale,
        naive_mae=naive_mae,
        metrics=metrics,
        rows=rows,
        seconds_per_sample=spent / max(1, len(finite)),
        forecaster=forecaster,
    )


def _build(forecaster: str, step: int, level: float, calibrated: tuple[int, ...]) -> Any:
    return make_forecaster(forecaster_spec(forecaster), step, level, calibrated)


def summarise(results: Sequence[dict[str, Any]], horizons: Sequence[int] = (1, 6)) -> dict[str, Any]:
    """The issue's target figures over :meth:`EvalResult.to_json` results, per horizon.

    ``beats_both``: series whose MASE is below seasonal naive's and Holt-Winters'; ``ratio``: median
    MASE over Holt-Winters' median MASE; coverage over the series of the model under test.
    """
    out: dict[str, Any] = {}
    for h in (str(h) for h in horizons):
        rows = [r["metrics"] for r in results]
        mase = [m["helios"][h]["mase"] for m in rows]
        hw = [m["holt_winters"][h]["mase"] for m in rows]
        beat = sum(
            m["helios"][h]["mase"] < min(m["seasonal_naive"][h]["mase"], m["holt_winters"][h]["mase"])
            for m in rows
        )
        covs = [m["helios"][h].get("coverage") for m in rows]
        known = [c for c in covs if c is not None]
        out[h] = {
            "beats_both": f"{beat}/{len(rows)}",
            "median_mase": round(float(np.median(mase)), 4),
            "median_mase_hw": round(float(np.median(hw)), 4),
            "ratio": round(float(np.median(mase) / np.median(hw)), 4),
            "coverage_min": round(min(known), 4) if known else None,
            "coverage_max": round(max(known), 4) if known else None,
            "covered_85_95": f"{sum(0.85 <= c <= 0.95 for c in known)}/{len(rows)}",
        }
    out["us_per_sample"] = round(float(np.mean([r["us_per_sample"] for r in results])), 1)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``helios eval forecast``."""
    parser.add_argument("--file", required=True, type=Path, help="CSV with timestamp,value columns")
    parser.add_argument("--horizons", default="1,6", help="comma-separated horizons in steps (default 1,6)")
    parser.add_argument(
        "--feature-scale",
        default="auto",
        help="multiply values by this before forecasting; 'auto' = 0.01 when values exceed 1 (percent)",
    )
    parser.add_argument("--level", type=float, default=0.9, help="nominal interval coverage (default 0.9)")
    parser.add_argument(
        "--forecaster",
        default="helios",
        help="the model under test, as HELIOS_FORECASTER: helios (default) or a River class path, "
        "e.g. 'river.time_series.SNARIMAX(p=2, d=1, q=1, m=288)'",
    )
    parser.add_argument(
        "--conformal-window", type=int, default=288, help="residuals kept for the Holt-Winters conformal band"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write timestamp,horizon,actual,forecast,lower,upper"
    )


def _print_table(result: EvalResult, stream: Any) -> None:
    print(
        f"{result.file}: step {result.step_seconds}s, one-step naive MAE {result.naive_mae:.6g}", file=stream
    )
    print(f"{'model':<16}{'h':>4}{'MAE':>12}{'MASE':>8}{'coverage':>10}{'width':>12}", file=stream)
    for model, per in result.metrics.items():
        for h, m in per.items():
            cov = m.get("coverage")
            width = m.get("mean_width")
            print(
                f"{model:<16}{h:>4}{_fmt(m['mae']):>12}{_fmt(m['mase']):>8}{_fmt(cov):>10}{_fmt(width):>12}",
                file=stream,
            )


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; prints a table and, last, one JSON line with every figure."""
    try:
        horizons = [int(h) for h in str(args.horizons).split(",") if h.strip()]
        ts, ys, stamps = load_series(args.file)
        scale = _feature_scale(str(args.feature_scale), ys)
        result = evaluate(
            ts,
            ys,
            stamps,
            horizons=horizons,
            feature_scale=scale,
            level=float(getattr(args, "level", 0.9)),
            conformal_window=int(getattr(args, "conformal_window", 288)),
            file=str(args.file),
            forecaster=str(getattr(args, "forecaster", "helios")),
        )
    except (OSError, ValueError) as exc:
        print(f"helios eval forecast: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        with open(args.out, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(OUT_COLUMNS)
            for stamp, h, actual, point, lo, hi in result.rows:
                writer.writerow((stamp, h, repr(actual), repr(point), repr(lo), repr(hi)))
    _print_table(result, sys.stdout)
    line = result.to_json()
    print(json.dumps(line, sort_keys=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m pipeline.evaluation.forecast_eval``)."""
    parser = argparse.ArgumentParser(prog="helios eval forecast", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
