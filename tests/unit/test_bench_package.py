"""pipeline.bench: modules that start nothing when imported, behind working entry points."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pipeline.bench
from pipeline.bench.report import write_report

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(m.name for m in pkgutil.iter_modules(pipeline.bench.__path__))
#: Helpers imported by the benchmarks, not run on their own.
LIBRARIES = {"common", "report", "shutdown_moments"}


def wrapped_modules() -> dict[str, str]:
    """Shell entry point in scripts/ -> the module it runs."""
    out = {}
    for path in sorted((REPO / "scripts").iterdir()):
        if path.is_file() and path.suffix == "":
            found = re.search(r"-m (pipeline\.bench\.\w+)", path.read_text(errors="replace"))
            if found:
                out[path.name] = found.group(1)
    return out


def test_every_documented_entry_point_is_a_wrapper_of_a_module_with_a_main() -> None:
    wrapped = wrapped_modules()
    assert set(wrapped) >= {"bench-simulate", "policy-bound", "eval-forecast-all", "periodic-ablation"}
    for name, module in wrapped.items():
        assert callable(getattr(importlib.import_module(module), "main", None)), (name, module)
    for name in set(MODULES) - LIBRARIES:
        assert callable(getattr(importlib.import_module(f"pipeline.bench.{name}"), "main", None)), name


def test_importing_every_bench_module_starts_nothing(tmp_path: Path) -> None:
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    done = subprocess.run(
        [sys.executable, "-c", code, *(f"pipeline.bench.{m}" for m in MODULES)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert list(tmp_path.iterdir()) == []


def test_the_faust_floor_perf_runs_is_a_module_of_the_composition_layer() -> None:
    perf = (REPO / "pipeline" / "bench" / "perf.py").read_text()
    assert '"-m", "agents.bench_floor"' in perf
    done = subprocess.run(
        [sys.executable, "-m", "agents.bench_floor", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--bootstrap" in done.stdout and "--batch" in done.stdout


def test_the_perf_report_has_every_section_from_the_recorded_run(tmp_path: Path) -> None:
    res = json.loads((REPO / "benchmarks" / "perf.json").read_text())
    out = tmp_path / "perf.md"
    write_report(res, out)
    text = out.read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Machine", "## Summary"]
    assert [h.split(".")[0] for h in headings[2:]] == [f"## {i}" for i in range(1, 7)]
    assert text.count("| ceiling run ") == len(res["ceiling"])
    assert f"{res['helios']['throughput']['sustained']:,.0f}" in text
    over_floor = res["helios"]["throughput"]["cpu_us_per_sample"] / res["floor"]["cpu_us_per_sample"]
    assert "over the Faust floor's, same run | " in text and f"= {over_floor:.2f}x |" in text


def test_the_perf_report_survives_a_paced_run_with_no_steady_values(tmp_path: Path) -> None:
    res = json.loads((REPO / "benchmarks" / "perf.json").read_text())
    res["helios"]["latency"]["values"] = []
    out = tmp_path / "perf.md"
    write_report(res, out)
    assert "a flat level means a standing queue): n/a ms." in out.read_text()
