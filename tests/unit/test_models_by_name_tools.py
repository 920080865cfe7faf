"""Model names in the tools: ``eval forecast --forecaster``, ``eval nab --detector``, ``/models``."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from models.river_adapters import RiverDetector
from pipeline.evaluation import forecast_eval, nab
from pipeline.evaluation.forecast_eval import evaluate, resample
from pipeline.metrics import HeliosMetrics
from pipeline.model_store import ModelStore
from pipeline.settings import load_settings
from pipeline.stages import PipelineConfig, online_models

T0 = 1_700_000_000.0
SNARIMAX = "river.time_series.SNARIMAX(p=2, d=0, q=0)"


def _wave(n: int, step: int) -> tuple[list[float], list[float], list[str]]:
    ts = [T0 + step * i for i in range(n)]
    ys = [
        0.5 + 0.2 * math.sin(2 * math.pi * t / 86400) + 0.02 * ((i * 7919) % 11 - 5) / 5
        for i, t in enumerate(ts)
    ]
    return ts, ys, [str(t) for t in ts]


def test_eval_forecast_runs_a_river_forecaster_by_name_with_a_band() -> None:
    ts, ys, stamps = _wave(900, 300)
    r = evaluate(ts, ys, stamps, horizons=(1, 6), forecaster=SNARIMAX)
    assert r.to_json()["forecaster"] == SNARIMAX
    h1 = r.metrics["helios"][1]
    assert h1["mase"] is not None and h1["coverage"] is not None and 0.8 <= h1["coverage"] <= 0.97
    assert evaluate(ts, ys, stamps, horizons=(1,)).to_json()["forecaster"] == "helios"


def test_eval_forecast_refuses_a_bad_name_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "s.csv"
    f.write_text("timestamp,value\n" + "".join(f"2024-01-01 00:{m:02d}:00,{m}\n" for m in range(0, 60, 5)))
    parser = argparse.ArgumentParser()
    forecast_eval.add_arguments(parser)
    assert forecast_eval.run(parser.parse_args(["--file", str(f), "--forecaster", "os.system('x')"])) == 2
    assert "module os is not allowed" in capsys.readouterr().err


def test_resample_to_a_coarser_step_averages_and_leaves_gaps() -> None:
    ts = [0.0, 300.0, 600.0, 3600.0, 3900.0]
    ys = [1.0, 2.0, 3.0, 10.0, 20.0]
    grid, values, stamps = resample(ts, ys, 1800)
    assert (grid, values) == ([0.0, 3600.0], [2.0, 15.0])  # 1800..3600 had no sample: a gap
    assert stamps == ["1970-01-01 00:00:00", "1970-01-01 01:00:00"]


def test_eval_nab_takes_a_detector_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stamps = [f"2024-01-01 {h:02d}:{m:02d}:00" for h in range(24) for m in range(0, 60, 5)]
    assert isinstance(nab.nab_detector(stamps, "river.anomaly.GaussianScorer()"), RiverDetector)
    data = tmp_path / "data" / "cat"
    data.mkdir(parents=True)
    (data / "f.csv").write_text("timestamp,value\n" + "".join(f"{s},{i % 7}\n" for i, s in enumerate(stamps)))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"cat/f.csv": []}))
    parser = argparse.ArgumentParser()
    nab.add_arguments(parser)
    base = ["--data", str(tmp_path / "data"), "--labels", str(labels), "--out", str(tmp_path / "out")]
    assert nab.run(parser.parse_args([*base, "--detector", "river.anomaly.GaussianScorer()"])) == 0
    rows = (tmp_path / "out" / "cat" / "f.csv").read_text().splitlines()
    assert len(rows) == len(stamps) + 1
    assert nab.run(parser.parse_args([*base, "--detector", "river.time_series.SNARIMAX(p=1, d=0, q=0)"])) == 2
    assert "is not a River anomaly detector" in capsys.readouterr().err


def test_models_reports_the_class_and_parameters_of_the_online_models() -> None:
    settings = load_settings({"HELIOS_FORECASTER": SNARIMAX})
    store = ModelStore(Path("/nonexistent"), HeliosMetrics.create(CollectorRegistry()))
    store.online = online_models(PipelineConfig.from_settings(settings))
    infos = {m.name: m for m in store.infos({}, prophet_available=False)}
    assert infos["baseline"].model_class == "river.time_series.snarimax.SNARIMAX"
    assert infos["baseline"].params is not None and infos["baseline"].params["p"] == 2
    assert infos["detector"].model_class == "models.anomaly.StreamingDetector"
    assert infos["detector"].params is not None and infos["detector"].params["threshold"] == 2.5
    json.dumps([m.model_dump(mode="json") for m in infos.values()])  # servable as JSON


def test_detect_with_a_live_river_detector_answers_without_xgboost() -> None:
    from datetime import UTC, datetime

    from models.anomaly import xgb_feature_names
    from models.artifacts import load_latest
    from models.features import FEATURES
    from pipeline import serving
    from pipeline.api import DetectRequest
    from pipeline.records import Metrics, MetricSample
    from pipeline.stages import DeploymentPipeline

    config = PipelineConfig.from_settings(
        load_settings({"HELIOS_DETECTOR": "river.anomaly.GaussianScorer()"})
    )
    pipe = DeploymentPipeline("saleor", "saleor-api", config)
    for i in range(300):
        s = MetricSample(
            namespace="saleor",
            deployment="saleor-api",
            timestamp=datetime.fromtimestamp(T0 + 60 * i, tz=UTC),
            metrics=Metrics(cpu_utilization=0.4 + 0.01 * (i % 5)),
        )
        pipe.finish(pipe.prepare(s), None)
    shipped = Path(__file__).resolve().parents[2] / "models" / "artifacts"
    xgb = load_latest(shipped, expected_features=xgb_feature_names(FEATURES)).model
    req = DetectRequest.model_validate({"metrics": {"cpu_utilization": 0.9}})
    got = serving.detect(req, pipe, config, xgb, "saleor/saleor-api")
    assert got.model_used.startswith("streaming (live state") and got.is_anomaly
