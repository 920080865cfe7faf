"""Helios' detector and River detectors (by name) side by side on NAB, per category and on the corpus.

Each detector runs over every file exactly as ``helios eval nab --detector SPEC --score`` runs it
(``pipeline.evaluation.nab.nab_detector``: score, then learn, one configuration for every file). Then,
per SCORING.md rule 13, each category is scored **alone**, with its own threshold, null and perfect
score (the held-out-style number: a category's threshold is not borrowed from the others), and the whole
corpus once more with one threshold. Cost is the wall time of score + learn per row.

Usage: .venv/bin/python -m pipeline.bench.river_nab [--json OUT] [SPEC ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pipeline.evaluation.nab import (
    PROFILES,
    LabelledFile,
    corpus_files,
    detect_series,
    nab_detector,
    read_series,
    score_profile,
    window_rows,
)

DATA = Path("/work/shared/nab/data")
LABELS = Path("/work/shared/nab/combined_windows.json")

DEFAULT_SPECS = (
    "helios",
    "river.preprocessing.MinMaxScaler()"
    " | river.anomaly.HalfSpaceTrees(n_trees=25, height=8, window_size=250, seed=42)",
    "river.anomaly.GaussianScorer()",
    "river.preprocessing.StandardScaler() | river.anomaly.OneClassSVM(nu=0.2)",
)


def run_spec(spec: str, labels: dict[str, list[list[str]]]) -> dict[str, Any]:
    files: list[LabelledFile] = []
    rows = 0
    spent = 0.0
    for name in corpus_files(DATA):
        stamps, values = read_series(DATA / name)
        det = nab_detector(stamps, spec)
        start = time.perf_counter()
        scores = detect_series(values, det)
        spent += time.perf_counter() - start
        rows += len(values)
        files.append(LabelledFile(name, scores, window_rows(stamps, labels.get(name, []), name)))
    weights = PROFILES["standard"]
    out: dict[str, Any] = {"spec": spec, "us_per_row": round(1e6 * spent / rows, 1), "categories": {}}
    for category in sorted({f.name.split("/")[0] for f in files}):
        subset = [f for f in files if f.name.split("/")[0] == category]
        if not any(f.windows for f in subset):
            out["categories"][category] = None  # rule 13: no windows, no normalised score
            continue
        res = score_profile(subset, "standard", weights)
        out["categories"][category] = {
            "score": round(res.score, 2),
            "tp": res.true_positives,
            "fn": res.false_negatives,
            "fp": res.false_positives,
        }
    whole = score_profile(files, "standard", weights)
    out["corpus"] = {"score": round(whole.score, 2), "fp": whole.false_positives, "tp": whole.true_positives}
    # The categories without windows: how many rows of theirs cross the corpus threshold (false alarms).
    quiet = [f for f in files if not f.windows]
    out["quiet_rows_flagged_at_corpus_threshold"] = sum(
        sum(1 for s in f.scores if s >= whole.threshold) for f in quiet
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("specs", nargs="*", default=list(DEFAULT_SPECS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    labels = json.loads(LABELS.read_text())
    results = []
    for spec in args.specs:
        r = run_spec(spec, labels)
        results.append(r)
        print(json.dumps(r), flush=True)
    cats = sorted({c for r in results for c in r["categories"]})
    print("| detector | " + " | ".join(cats) + " | corpus (one threshold) | µs/row |")
    print("|---" * (len(cats) + 3) + "|")
    for r in results:
        cells = []
        for c in cats:
            v = r["categories"].get(c)
            cells.append("n/a (no windows)" if v is None else f"{v['score']:.2f}")
        name = r["spec"].replace("|", "\\|")
        print(f"| `{name}` | " + " | ".join(cells) + f" | {r['corpus']['score']:.2f} | {r['us_per_row']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
