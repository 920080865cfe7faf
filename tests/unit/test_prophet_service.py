"""The Prophet service: background fits from watched history, 409 until a fit exists, auto's choice."""

from __future__ import annotations

import math

import pytest

from pipeline.api import MetricsIn, PredictRequest
from pipeline.prophet_service import MIN_POINTS, ProphetService
from pipeline.serving import BadRequest
from pipeline.settings import load_settings
from pipeline.stages import PipelineConfig

CONFIG = PipelineConfig.from_settings(load_settings({}))
KEY = "saleor/saleor-api"
STEP = CONFIG.step_seconds


def test_prophet_answers_409_until_fitted_then_serves_the_fit() -> None:
    now = [1_700_000_000.0]
    service = ProphetService(CONFIG, KEY, refit_seconds=900, clock=lambda: now[0])
    req = PredictRequest(metrics=MetricsIn(cpu_utilization=0.5), periods=6, model="prophet")
    with pytest.raises(BadRequest) as err:
        service.predict(req, KEY, CONFIG, now[0])
    assert err.value.status == 409 and "no fit" in err.value.problem
    t0 = now[0] - 2 * MIN_POINTS * STEP
    for i in range(2 * MIN_POINTS):
        t = t0 + i * STEP
        service.observe(KEY, t, {"cpu_utilization": 0.5 + 0.1 * math.sin(2 * math.pi * t / 3600)})
    assert service.due() == [KEY]
    service.fits[KEY] = service._fit_rows(list(service.history[KEY]))
    assert service.due() == []
    answer = service.predict(req, KEY, CONFIG, now[0])
    assert len(answer.predictions) == 6 and answer.model_used.startswith("prophet")
    for p in answer.predictions:
        assert 0.0 <= p.confidence_lower <= p.cpu_utilization <= p.confidence_upper <= 1.0
    now[0] += 901
    assert service.due() == [KEY]  # refit after refit_seconds


def test_unwatched_deployments_keep_no_history() -> None:
    service = ProphetService(CONFIG, KEY, max_watched=1)
    service.observe("other/app", 0.0, {"cpu_utilization": 0.5})
    assert "other/app" not in service.history
    service.watch("other/app")  # over max_watched: still not kept
    assert "other/app" not in service.history
