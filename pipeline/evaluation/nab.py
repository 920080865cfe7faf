"""NAB (Numenta Anomaly Benchmark) harness: run the streaming detector over a corpus and score it.

``helios eval nab --data DIR --labels FILE --out DIR [--score]`` runs :class:`StreamingDetector`
over every ``*.csv`` under ``--data`` exactly as the pipeline would (one configuration for every
file, each row scored before it is learned, no look-ahead), writes ``timestamp,value,anomaly_score``
at the same relative path under ``--out``, and with ``--score`` computes NAB's normalised scores
for the three cost profiles.

The scorer follows NAB v1.x (see ``SCORING.md`` in the corpus):

* the first ``min(floor(0.15 * rows), 750)`` rows of a file are probationary and ignored;
* a row is a detection when its score is ``>= threshold``; one threshold per profile for the corpus,
  chosen by an exhaustive sweep over the distinct non-probationary scores plus "flag nothing"
  (reported as 1.1), ties going to the highest threshold;
* ``f(x) = 2 / (1 + exp(5 x)) - 1`` (``-1`` for ``x > 3``); a window ``L..R`` (width ``w``) earns
  ``tp * f(-(R - i + 1) / w) / f(-1)`` for its earliest detected row ``i``, else ``-fn``;
* a detection outside every window costs ``fp * f((i - R') / (w' - 1))`` with ``R'``, ``w'`` the end
  row and width of the latest window that ended before it, or ``fp * -1`` before the first window;
* normalised score ``100 * (raw - null) / (perfect - null)`` with ``null = -fn * windows`` and
  ``perfect = tp * windows``.

The detector's daily profile needs the number of points per day; the harness gives it
``86400 / median sampling interval`` of each file, the same rule the pipeline applies to its scoring
interval (a clock, not a tuned setting: 288 for NAB's 5-minute files, 24 for the hourly ones).

What is scored is what production declares (:func:`production_scores`): the streaming sigma combined
with the XGBoost probability by :func:`models.anomaly.combine`. The XGBoost model behind a file is
cross-fitted -- trained on the files of the *other* categories, never on the file it scores (the
shipped artifact is trained on everything, so it cannot be used here). ``scores.json`` also holds the
streaming sigma alone (``stream_only``). ``--cv categories`` prints the leave-one-category-out table
(:mod:`pipeline.evaluation.nab_cv`).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.anomaly import DetectorScore, StreamingDetector, combine, to_unit_interval, xgb_feature_names
from models.features import CPU, FEATURES
from models.spec import HELIOS, detector_spec, make_detector
from models.xgb import DEFAULT_ROUNDS

if TYPE_CHECKING:
    from pipeline.evaluation.nab_cv import Evaluation

#: The three NAB cost profiles: (true-positive, false-positive, false-negative) weights.
PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, 0.11, 1.0),
    "reward_low_FP_rate": (1.0, 0.22, 1.0),
    "reward_low_FN_rate": (1.0, 0.11, 2.0),
}

#: Threshold NAB reports for "flag nothing".
NO_DETECTION_THRESHOLD = 1.1


def scaled_sigmoid(x: float) -> float:
    """NAB's weighting ``2 / (1 + e^(5x)) - 1``, clamped to ``-1`` for ``x > 3``."""
    if x > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probationary_rows(n_rows: int) -> int:
    """Rows at the start of a file that NAB ignores: ``min(floor(0.15 * n), 750)``."""
    return min(math.floor(0.15 * n_rows), 750)


@dataclass
class LabelledFile:
    """One file's scores and its anomaly windows as inclusive row ranges."""

    name: str
    scores: Sequence[float]
    windows: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.scores)
        for left, right in self.windows:
            if not 0 <= left <= right < n:
                raise ValueError(f"{self.name}: window rows {left}..{right} outside 0..{n - 1}")
        prob = probationary_rows(n)
        # A window counts only if at least one of its rows lies after the probationary period.
        self.windows = sorted(w for w in self.windows if w[1] >= prob)


@dataclass(frozen=True)
class ProfileResult:
    """The outcome of one profile over the corpus."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    score: float
    per_file: dict[str, float]
    true_positives: int
    false_negatives: int
    false_positives: int


def _row_terms(
    f: LabelledFile, weights: tuple[float, float, float]
) -> tuple[list[tuple[float, int, int, float]], int]:
    """Each non-probationary row as ``(score, row, window id or -1, term if detected)``.

    For a window row the term is its true-positive credit; for any other row its false-positive cost.
    """
    tp, fp, _fn = weights
    n = len(f.scores)
    prob = probationary_rows(n)
    out: list[tuple[float, int, int, float]] = []
    win_idx = 0
    prev: tuple[int, int] | None = None  # the latest window that ended before the current row
    f_first = scaled_sigmoid(-1.0)
    for i in range(prob, n):
        while win_idx < len(f.windows) and f.windows[win_idx][1] < i:
            prev = f.windows[win_idx]
            win_idx += 1
        cur = f.windows[win_idx] if win_idx < len(f.windows) else None
        if cur is not None and cur[0] <= i <= cur[1]:
            left, right = cur
            width = right - left + 1
            term = tp * scaled_sigmoid(-(right - i + 1) / width) / f_first
            out.append((float(f.scores[i]), i, win_idx, term))
        else:
            if prev is None:
                term = -fp
            else:
                p_left, p_right = prev
                p_width = p_right - p_left + 1
                # A one-row window would divide by zero; NAB never has one, treat it as "far past".
                d = (i - p_right) / (p_width - 1) if p_width > 1 else math.inf
                term = fp * scaled_sigmoid(d)
            out.append((float(f.scores[i]), i, -1, term))
    return out, len(f.windows)


def score_profile(
    files: Sequence[LabelledFile], profile: str, weights: tuple[float, float, float]
) -> ProfileResult:
    """Sweep every distinct score as the corpus threshold and keep NAB's best one.

    Thresholds are visited from high to low; lowering the threshold only adds detections, so each
    row changes the raw score once: a false positive adds its cost, a window row raises its window's
    credit if it is the earliest detected row so far. Ties keep the highest threshold.
    """
    tp, _fp, fn = weights
    rows: list[tuple[float, int, int, int, float]] = []  # score, file, row, window, term
    n_windows = 0
    win_offset: list[int] = []
    for fi, f in enumerate(files):
        terms, nw = _row_terms(f, weights)
        win_offset.append(n_windows)
        rows.extend((s, fi, i, (n_windows + w) if w >= 0 else -1, t) for s, i, w, t in terms)
        n_windows += nw
    null = -fn * n_windows
    perfect = tp * n_windows
    rows.sort(key=lambda r: -r[0])

    # window credit: -fn when undetected, else the credit of its earliest detected row
    credit = [-fn] * n_windows
    earliest = [math.inf] * n_windows
    raw = null
    best_raw, best_threshold, best_k = raw, NO_DETECTION_THRESHOLD, 0
    k = 0
    while k < len(rows):
        s = rows[k][0]
        while k < len(rows) and rows[k][0] == s:
            _s, _fi, i, w, term = rows[k]
            if w < 0:
                raw += term
            elif i < earliest[w]:
                earliest[w] = i
                raw += term - credit[w]
                credit[w] = term
            k += 1
        # strict '>' keeps the earlier, higher threshold on ties
        if raw > best_raw + 1e-12:
            best_raw, best_threshold, best_k = raw, s, k

    # Recompute per-file terms and counts at the chosen threshold (also a check of the sweep).
    per_file = {f.name: 0.0 for f in files}
    file_credit: dict[int, float] = {}
    file_earliest: dict[int, int] = {}
    n_fp = 0
    for _s, fi, i, w, term in rows[:best_k]:
        if w < 0:
            per_file[files[fi].name] += term
            n_fp += 1
        elif i < file_earliest.get(w, 1 << 62):
            file_earliest[w] = i
            file_credit[w] = term
    for fi, f in enumerate(files):
        for w in range(win_offset[fi], win_offset[fi] + len(f.windows)):
            per_file[f.name] += file_credit.get(w, -fn)
    total = sum(per_file.values())
    assert abs(total - best_raw) < 1e-6 * max(1.0, abs(total)), (total, best_raw)
    score = 100.0 * (best_raw - null) / (perfect - null) if perfect != null else math.nan
    return ProfileResult(
        profile=profile,
        threshold=best_threshold,
        raw=best_raw,
        null=null,
        perfect=perfect,
        score=score,
        per_file=per_file,
        true_positives=len(file_credit),
        false_negatives=n_windows - len(file_credit),
        false_positives=n_fp,
    )


def score_corpus(
    files: Sequence[LabelledFile], profiles: Mapping[str, tuple[float, float, float]] = PROFILES
) -> dict[str, ProfileResult]:
    """Score every profile; see :func:`score_profile`."""
    return {name: score_profile(files, name, w) for name, w in profiles.items()}


# ---------------------------------------------------------------------------------------------
# Corpus I/O and the detector run


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def read_series(path: Path) -> tuple[list[str], list[float]]:
    """A NAB data file as (timestamps as written, values)."""
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"timestamp", "value"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected columns timestamp,value, got {reader.fieldnames}")
        for row in reader:
            stamps.append(row["timestamp"])
            values.append(float(row["value"]))
    return stamps, values


def window_rows(stamps: Sequence[str], windows: Iterable[Sequence[str]], name: str) -> list[tuple[int, int]]:
    """Label windows (start, end timestamps) as inclusive row ranges; the stamps must be data stamps."""
    index = {_parse_ts(s): i for i, s in enumerate(stamps)}
    out = []
    for win in windows:
        try:
            out.append((index[_parse_ts(win[0])], index[_parse_ts(win[1])]))
        except KeyError as exc:
            raise ValueError(f"{name}: window bound {exc.args[0]} is not a timestamp of the data") from None
    return out


def corpus_files(data_dir: Path) -> list[str]:
    """Relative paths (posix) of every data file under ``data_dir``, sorted."""
    return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*.csv"))


def points_per_day(stamps: Sequence[str]) -> int:
    """``round(86400 / median spacing)`` of the timestamps (0 when fewer than two or not increasing)."""
    ts = [_parse_ts(s) for s in stamps[:1001]]
    gaps = sorted((b - a).total_seconds() for a, b in itertools.pairwise(ts))
    if not gaps or gaps[len(gaps) // 2] <= 0:
        return 0
    return max(2, round(86400.0 / gaps[len(gaps) // 2]))


def nab_detector(stamps: Sequence[str], spec: str = HELIOS, **params: Any) -> Any:
    """The detector the harness runs on one file: defaults, the file's points per day, NAB's value as CPU.

    ``spec`` names it as ``HELIOS_DETECTOR`` does (``helios``, or a River detector: models/spec.py);
    ``params`` are further keyword arguments of Helios' own :class:`StreamingDetector` (a
    ``--candidates`` entry, which may also carry a ``spec``).
    """
    parsed = detector_spec(spec)
    if parsed.is_helios:
        options = {**parsed.options, **params}
        return StreamingDetector(features=(CPU,), season_length=points_per_day(stamps), **options)
    if params:
        raise ValueError(f"keyword arguments {sorted(params)} are for Helios' own detector, not {spec}")
    return make_detector(parsed, (CPU,), 2.5, points_per_day(stamps))


def stream_file(detector: StreamingDetector, values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Stream ``values`` as the pipeline does; returns (sigma per row, XGBoost rows in production layout).

    Each row is scored before it is learned. The rows have the columns of
    ``xgb_feature_names(FEATURES)`` (the shipped model's layout), the detector's own features filled in
    and every other column NaN, exactly what the stream builds for a sample that carries only CPU.
    """
    columns = xgb_feature_names(FEATURES)
    where = [columns.index(c) for c in detector.xgb_feature_names()]
    feature = detector.features[0]
    sigma = np.empty(len(values), dtype=np.float64)
    rows = np.full((len(values), len(columns)), np.nan, dtype=np.float32)
    for i, v in enumerate(values):
        x = {feature: v}
        score, row = detector.score_with_features(x)
        sigma[i] = score.sigma
        rows[i, where] = row
        detector.learn_one(x)
    return sigma, rows


def production_scores(
    sigma: Sequence[float] | np.ndarray, probability: Sequence[float] | np.ndarray | None, threshold: float
) -> list[float]:
    """NAB scores in [0, 1] of what production declares: :func:`combine` of sigma and the XGBoost part.

    ``probability`` None scores the streaming sigma alone.
    """
    out = []
    for i, s in enumerate(sigma):
        p = None if probability is None else float(probability[i])
        out.append(to_unit_interval(combine(DetectorScore(float(s)), p, threshold).score, threshold))
    return out


def detect_series(values: Sequence[float], detector: Any = None) -> list[float]:
    """Stream ``values`` through a fresh detector (score, then learn) and return scores in [0, 1]."""
    det = detector if detector is not None else StreamingDetector(features=(CPU,))
    feature = det.features[0]
    out = []
    for v in values:
        x = {feature: v}
        out.append(to_unit_interval(det.score_one(x), det.threshold))
        det.learn_one(x)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helios eval nab``."""
    parser.add_argument("--data", type=Path, required=True, help="NAB data folder (category/*.csv)")
    parser.add_argument("--labels", type=Path, required=True, help="combined_windows.json")
    parser.add_argument("--out", type=Path, required=True, help="folder for the result files")
    parser.add_argument("--score", action="store_true", help="also compute NAB's normalised scores")
    parser.add_argument(
        "--cv",
        choices=("none", "categories"),
        default="none",
        help="categories: leave-one-category-out table (choose on three categories, score the fourth)",
    )
    parser.add_argument(
        "--candidates",
        type=Path,
        default=None,
        help='with --cv categories: JSON list of {"name", "params"} detector arguments to choose from',
    )
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="boosting rounds of the XGBoost part"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the XGBoost part")
    parser.add_argument("--detector", default=HELIOS, help="as HELIOS_DETECTOR: helios or a River class path")


def run(args: argparse.Namespace) -> int:
    """Run the production detector over the corpus, write results, optionally score; returns an exit code.

    The XGBoost part of every file comes from a model trained on the other categories (cross-fitted).
    """
    from pipeline.evaluation import nab_cv

    out_dir: Path = args.out
    try:
        labels: dict[str, list[list[str]]] = json.loads(Path(args.labels).read_text())
        corpus = nab_cv.load_corpus(Path(args.data), labels)
        candidates = {"default": {}} if args.candidates is None else nab_cv.read_candidates(args.candidates)
    except (OSError, ValueError) as exc:
        print(f"cannot read the corpus: {exc}", file=sys.stderr)
        return 2
    try:
        detector_spec(getattr(args, "detector", HELIOS))
    except ValueError as exc:
        print(f"--detector: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "detector", HELIOS) != HELIOS:
        if args.candidates is not None:
            print("--detector and --candidates: name the detector in each candidate's spec", file=sys.stderr)
            return 2
        candidates = {"default": {"spec": args.detector}}
    if not corpus:
        print(f"no *.csv files under {args.data}", file=sys.stderr)
        return 2
    if args.cv == "none" and len(candidates) > 1:
        print(
            "--candidates needs --cv categories (a choice must be scored on held-out data)", file=sys.stderr
        )
        return 2
    if args.rounds < 1:
        print(f"--rounds must be >= 1, got {args.rounds}", file=sys.stderr)
        return 2
    ev = nab_cv.Evaluation(corpus, candidates, rounds=args.rounds, seed=args.seed)
    if args.cv == "categories":
        return nab_cv.run_cv(ev, out_dir)
    return _run_plain(ev, out_dir, score=args.score)


def _run_plain(ev: Evaluation, out_dir: Path, *, score: bool) -> int:
    """Every file's production scores to ``<out>/<file>``; with ``score`` NAB's scores of both variants."""
    (candidate,) = ev.candidates
    started = time.perf_counter()
    names = [f.name for f in ev.files]
    files = ev.scored(candidate, names, "production")
    elapsed = time.perf_counter() - started
    n_rows = sum(len(f.values) for f in ev.files)
    for corpus_file, scored in zip(ev.files, files, strict=True):
        dest = out_dir / corpus_file.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["timestamp", "value", "anomaly_score"])
            writer.writerows(zip(corpus_file.stamps, corpus_file.values, scored.scores, strict=True))
    print(
        f"scored {len(names)} files, {n_rows} rows in {elapsed:.1f} s ({1e6 * elapsed / n_rows:.1f} us/row, "
        f"{ev.n_models} cross-fitted XGBoost models included)"
    )
    if not score:
        return 0
    if not any(f.windows for f in files):
        print("no labelled windows in these files: NAB's normalised score is undefined")
        return 2
    summary: dict[str, Any] = {}
    for variant, scored_files in (
        ("production", files),
        ("stream_only", ev.scored(candidate, names, "stream")),
    ):
        for name, res in score_corpus(scored_files).items():
            print(
                f"{variant:11s} {name:20s} score {res.score:6.2f}  threshold {res.threshold:.6f}  "
                f"raw {res.raw:8.3f}  TP {res.true_positives} FN {res.false_negatives} "
                f"FP {res.false_positives}"
            )
            entry = {
                "score": res.score,
                "threshold": res.threshold,
                "raw": res.raw,
                "null": res.null,
                "perfect": res.perfect,
                "true_positives": res.true_positives,
                "false_negatives": res.false_negatives,
                "false_positives": res.false_positives,
                "per_file": res.per_file,
            }
            if variant == "production":
                summary[name] = entry
            else:
                summary.setdefault("stream_only", {})[name] = entry
    (out_dir / "scores.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return 0
