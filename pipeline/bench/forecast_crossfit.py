"""Choose a forecaster default by cross-fitting across the CPU series, and score it on held-out ones.

Every candidate (``helios(...)`` keyword arguments, see :data:`CANDIDATES`) runs the forecast benchmark
(``river_forecast.run``: the 10 NAB CPU series, h = 1 and 6 steps) at the choosing step (300 s, the
series' own). The series are split into 5 folds of 2 (sorted by name, fold ``i`` holds series ``i`` and
``i + 5``); for each fold the candidate with the best in-sample score on the other 8 is chosen and scored
on the fold's 2. The in-sample score is the number of (series, horizon) pairs that beat both seasonal
naive and Holt-Winters, ties broken by the mean log of MASE over the better reference's. Reported:
held-out (each series scored by the candidate chosen without it) next to in-sample (each candidate
scored on all 10), and the candidate chosen on all 10, which then runs at the other steps (60 s and
1800 s), steps that played no part in the choice.

Usage: .venv/bin/python -m pipeline.bench.forecast_crossfit [--candidates a,b] [--other-steps 60,1800]
[--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from pipeline.bench.river_forecast import run
from pipeline.evaluation.forecast_eval import summarise

#: The smoothers of the previous default (the per-step constants chosen at 300 s, as half-lives).
_DEFAULT = ((932.0, True, 0.0), (932.0, False, 1.0), (4054.0, True, 1.0), (227.0, False, 0.0))

#: Candidate defaults: name -> the forecaster's keyword arguments on top of its defaults. Every one
#: names its smoothers, so the set means the same whatever the defaults are.
CANDIDATES: dict[str, dict[str, Any]] = {
    "previous": {"smoothers": _DEFAULT},
    "season_level_4h": {"smoothers": _DEFAULT, "season_level_seconds": 14400.0},
    "season_level_2h": {"smoothers": _DEFAULT, "season_level_seconds": 7200.0},
    "season_level_1h": {"smoothers": _DEFAULT, "season_level_seconds": 3600.0},
    "season_gamma_0.05": {"smoothers": _DEFAULT, "season_gamma": 0.05},
    "weight_power_10": {"smoothers": _DEFAULT, "weight_power": 10.0},
    "error_half_life_1h": {"smoothers": _DEFAULT, "error_half_life": 3600.0},
    "error_half_life_8h": {"smoothers": _DEFAULT, "error_half_life": 28800.0},
    "plus_slow_plain": {"smoothers": (*_DEFAULT, (4054.0, False, 1.0))},
    "plus_last": {"smoothers": (*_DEFAULT, (0.0, False, 0.0))},
    "plus_last_slow_plain": {"smoothers": (*_DEFAULT, (0.0, False, 0.0), (4054.0, False, 1.0))},
    "last_for_fastest": {"smoothers": (*_DEFAULT[:3], (0.0, False, 0.0))},
    "last_for_fastest_slow_plain": {"smoothers": (*_DEFAULT[:3], (0.0, False, 0.0), (4054.0, False, 1.0))},
    "plus_last_season_level_1h": {
        "smoothers": (*_DEFAULT, (0.0, False, 0.0)),
        "season_level_seconds": 3600.0,
    },
}

HORIZONS = ("1", "6")

#: series -> its result in the forecast benchmark (``EvalResult.to_json``).
Rows = dict[str, dict[str, Any]]


def spec(kwargs: dict[str, Any]) -> str:
    """The ``HELIOS_FORECASTER`` value of a candidate."""
    if not kwargs:
        return "helios"
    return "helios(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


def per_series(result: dict[str, Any]) -> Rows:
    """series -> its result, of one benchmark run."""
    return {r["file"]: r for r in result["series"]}


def score(rows: Rows, names: list[str]) -> tuple[int, float]:
    """(pairs beating both references, -mean log MASE ratio to the better reference): larger is better."""
    beats, logs = 0, []
    for name in names:
        m = rows[name]["metrics"]
        for h in HORIZONS:
            he, better = (
                m["helios"][h]["mase"],
                min(m["seasonal_naive"][h]["mase"], m["holt_winters"][h]["mase"]),
            )
            beats += he < better
            logs.append(math.log(he / better))
    return beats, -statistics.fmean(logs)


def table(rows: Rows) -> dict[str, dict[str, Any]]:
    """The issue's figures per horizon (the benchmark's own summary) over the given series."""
    summary = summarise(list(rows.values()), [int(h) for h in HORIZONS])
    return {
        h: {k: summary[h][k] for k in ("beats_both", "ratio", "coverage_min", "coverage_max")}
        for h in HORIZONS
    }


def crossfit(runs: dict[str, Rows]) -> dict[str, Any]:
    """Held-out rows (each fold scored by the candidate chosen on the other folds) and the choices."""
    names = sorted(next(iter(runs.values())))
    folds = [[names[i], names[i + len(names) // 2]] for i in range(len(names) // 2)]
    held: Rows = {}
    chosen = []
    for fold in folds:
        rest = [n for n in names if n not in fold]
        best = max(runs, key=lambda c: score(runs[c], rest))
        chosen.append({"held_out": fold, "chosen": best})
        held.update({n: runs[best][n] for n in fold})
    return {"folds": chosen, "held_out": table(held)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench.forecast_crossfit")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--other-steps", default="60,1800")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs, us = {}, {}
    for name in args.candidates.split(","):
        result = run(300, spec(CANDIDATES[name]))
        runs[name], us[name] = per_series(result), result["summary"]["us_per_sample"]
        print(json.dumps({"candidate": name, "in_sample": table(runs[name]), "us": us[name]}), flush=True)
    out = crossfit(runs)
    names = sorted(next(iter(runs.values())))
    overall = max(runs, key=lambda c: score(runs[c], names))
    out["chosen_on_all"] = overall
    out["in_sample"] = {c: table(r) for c, r in runs.items()}
    out["other_steps"] = {}
    for step in (int(s) for s in args.other_steps.split(",") if s):
        for name in dict.fromkeys(("previous", overall)):
            result = run(step, spec(CANDIDATES[name]))
            out["other_steps"][f"{step} {name}"] = table(per_series(result))
            line = {"step": step, "candidate": name, **out["other_steps"][f"{step} {name}"]}
            print(json.dumps(line), flush=True)
    print(json.dumps({k: out[k] for k in ("folds", "held_out", "chosen_on_all")}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
