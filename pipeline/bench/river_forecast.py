"""The forecast benchmark per step size and per model: Helios' own and River forecasters by name.

For every (step, model) pair, every shared CPU series (the 10 NAB ``*_cpu_utilization_*`` files, 5-minute
steps) is resampled to the step (``forecast_eval.resample``: 1 minute by linear interpolation, 30 minutes
by bin means, 5 minutes as it is) and streamed through ``forecast_eval.evaluate`` with the model under
test named as ``HELIOS_FORECASTER`` would name it, next to seasonal naive and Holt-Winters. Horizons 1
and 6 steps; 90 % bands. Prints one JSON line per pair and a markdown table.

Usage: .venv/bin/python -m pipeline.bench.river_forecast [--steps 60,300,1800] [--models all|helios|river]
[--json OUT]
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path
from typing import Any

from pipeline.evaluation.forecast_eval import (
    _feature_scale,
    evaluate,
    load_series,
    resample,
    summarise,
)

NAB = "/work/shared/nab/data/realAWSCloudwatch"

RIVER_MODELS = (
    # Same constants as Helios' reference Holt-Winters (models/reference.py), daily season.
    "river.time_series.HoltWinters(alpha=0.2, beta=0.001, gamma=0.05, seasonality={m})",
    # ARIMA(2, 1, 1): River's default regressor (StandardScaler | LinearRegression, SGD lr 0.01).
    "river.time_series.SNARIMAX(p=2, d=1, q=1, m={m})",
    # A linear regression on the last 12 values and the value one day earlier, at two learning rates.
    "river.time_series.SNARIMAX(p=12, d=0, q=0, m={m}, sp=1, regressor=river.preprocessing.StandardScaler()"
    " | river.linear_model.LinearRegression(optimizer=river.optim.SGD(0.001), intercept_lr=0.01))",
    "river.time_series.SNARIMAX(p=12, d=0, q=0, m={m}, sp=1, regressor=river.preprocessing.StandardScaler()"
    " | river.linear_model.LinearRegression(optimizer=river.optim.SGD(0.003), intercept_lr=0.1, l2=0.001))",
)


def series() -> list[str]:
    ec2, rds = glob.glob(f"{NAB}/ec2_cpu_utilization_*.csv"), glob.glob(f"{NAB}/rds_cpu_utilization_*.csv")
    return sorted(ec2 + rds)


def run(step: int, model: str) -> dict[str, Any]:
    results = []
    for f in series():
        ts, ys, stamps = load_series(f)
        if step != 300:
            ts, ys, stamps = resample(ts, ys, step)
        r = evaluate(
            ts,
            ys,
            stamps,
            horizons=(1, 6),
            feature_scale=_feature_scale("auto", ys),
            step_seconds=step,
            file=Path(f).stem,
            forecaster=model,
        )
        results.append(r.to_json())
    return {"step": step, "model": model, "summary": summarise(results), "series": results}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default="60,300,1800")
    parser.add_argument("--models", choices=("all", "helios", "river"), default="all")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out = []
    for step in (int(s) for s in args.steps.split(",")):
        names = [] if args.models == "river" else ["helios"]
        if args.models != "helios":
            names += [m.format(m=86400 // step) for m in RIVER_MODELS]
        for name in names:
            r = run(step, name)
            out.append(r)
            print(json.dumps({"step": step, "model": name, "summary": r["summary"]}), flush=True)
    print(
        "| step | model | h | beats both | median MASE | x HW | coverage min-max | in 85-95 % | µs/sample |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in out:
        s = r["summary"]
        for h in ("1", "6"):
            m = s[h]
            name = r["model"].replace("|", "\\|")
            cov = f"{m['coverage_min']:.3f}-{m['coverage_max']:.3f}"
            print(
                f"| {r['step']} s | `{name}` | {h} | {m['beats_both']} | {m['median_mase']:.4g} "
                f"| {m['ratio']:.4g} | {cov} | {m['covered_85_95']} | {s['us_per_sample']} |"
            )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
