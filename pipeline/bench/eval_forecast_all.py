"""Run `helios eval forecast` on every NAB CPU series and print the per-series table and the target counts.

Usage: scripts/eval-forecast-all (or python -m pipeline.bench.eval_forecast_all) [NAB_DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path

from pipeline.evaluation.forecast_eval import _feature_scale, evaluate, load_series


def main() -> int:
    p = argparse.ArgumentParser(prog="scripts/eval-forecast-all")
    p.add_argument("nab", nargs="?", default="/work/shared/nab/data/realAWSCloudwatch")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    files = sorted(
        glob.glob(f"{a.nab}/ec2_cpu_utilization_*.csv") + glob.glob(f"{a.nab}/rds_cpu_utilization_*.csv")
    )
    results = []
    for f in files:
        ts, ys, stamps = load_series(f)
        ev = evaluate(
            ts, ys, stamps, horizons=(1, 6), feature_scale=_feature_scale("auto", ys), file=Path(f).stem
        )
        results.append(ev.to_json())
    hdr = (
        "| series | h | MASE helios | MASE snaive | MASE HW | cov helios | cov HW-conf "
        "| width helios | width HW-conf |"
    )
    print(hdr)
    print("|" + "---|" * 9)
    summary = {}
    for h in ("1", "6"):
        beat, ratio_h, ratio_hw, covs, wins_w = 0, [], [], [], 0
        for r in results:
            m = r["metrics"]
            he, sn, hw = m["helios"][h], m["seasonal_naive"][h], m["holt_winters"][h]
            name = r["file"].replace("_utilization", "")
            print(
                f"| {name} | {h} | {he['mase']:.3f} | {sn['mase']:.3f} | {hw['mase']:.3f} "
                f"| {he['coverage']:.3f} | {hw['coverage']:.3f} "
                f"| {he['mean_width']:.4g} | {hw['mean_width']:.4g} |"
            )
            beat += he["mase"] < sn["mase"] and he["mase"] < hw["mase"]
            ratio_h.append(he["mase"])
            ratio_hw.append(hw["mase"])
            covs.append(he["coverage"])
            wins_w += he["mean_width"] <= hw["mean_width"]
        early = [
            (
                r["metrics"]["helios"][h]["mase_first_day"],
                r["metrics"]["holt_winters"][h]["mase_first_day"],
                r["metrics"]["seasonal_naive"][h]["mase_first_day"],
            )
            for r in results
        ]
        summary[h] = {
            "first_day_median_mase_helios_hw_snaive": [
                round(statistics.median(x[i] for x in early), 4) for i in range(3)
            ],
            "first_day_beats_both": f"{sum(a < min(b, c) for a, b, c in early)}/{len(results)}",
            "beats_both": f"{beat}/{len(results)}",
            "median_mase_helios": round(statistics.median(ratio_h), 4),
            "median_mase_hw": round(statistics.median(ratio_hw), 4),
            "ratio": round(statistics.median(ratio_h) / statistics.median(ratio_hw), 4),
            "coverage_min": round(min(covs), 4),
            "coverage_max": round(max(covs), 4),
            "coverage_median": round(statistics.median(covs), 4),
            "narrower_than_hw_conformal": f"{wins_w}/{len(results)}",
        }
    us = statistics.mean(r["us_per_sample"] for r in results)
    print(json.dumps({"summary": summary, "us_per_sample_learn+forecast": round(us, 1)}, indent=1))
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "series": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
