"""Parameters declared once: the models' signatures, attributes and state agree with their declarations."""

from __future__ import annotations

import dataclasses
import json
import math
from array import array
from pathlib import Path

import pytest

from models.anomaly import DetectorParams, StreamingDetector
from models.forecast import _CACHE, _OWN, _PACKED, _STATE, ForecasterParams, OnlineForecaster
from models.params import shared, signature_mismatches

MODELS = [(StreamingDetector, DetectorParams), (OnlineForecaster, ForecasterParams)]


@pytest.mark.parametrize(("model", "params"), MODELS, ids=lambda c: c.__name__)
def test_the_signature_river_reads_is_the_declaration(model: type, params: type) -> None:
    assert signature_mismatches(model, params) == []


def test_a_signature_that_drifts_from_the_declaration_is_reported() -> None:
    class Drifted(StreamingDetector):
        def __init__(self, features: tuple[str, ...] = ("cpu",), threshold: float = 3.0) -> None: ...

    found = signature_mismatches(Drifted, DetectorParams)
    assert found[0].startswith("arguments ['features', 'threshold'] in the signature")
    assert "features: default ('cpu',) in the signature" in found[1]
    assert found[2] == "threshold: default 3.0 in the signature, 2.5 in DetectorParams"


@pytest.mark.parametrize(("model", "params"), MODELS, ids=lambda c: c.__name__)
def test_every_field_reads_from_the_shared_parameters(model: type, params: type) -> None:
    m = model(step_seconds=60) if model is OnlineForecaster else model()
    for f in dataclasses.fields(params):
        assert getattr(m, f.name) is getattr(m.params, f.name), f.name
    assert m._get_params() == {
        f.name: getattr(m.params, f.name) for f in dataclasses.fields(params) if f.init
    }


def test_equal_arguments_share_one_object_and_types_are_kept_apart() -> None:
    a = StreamingDetector(features=["cpu_utilization"], season_features=["cpu_utilization"])
    b = StreamingDetector(features=("cpu_utilization",), season_features=("cpu_utilization",))
    assert a.params is b.params
    assert StreamingDetector(threshold=3).params is not StreamingDetector(threshold=3.0).params
    assert (
        StreamingDetector(threshold=3).params.to_dict() == StreamingDetector(threshold=3.0).params.to_dict()
    )
    assert shared(ForecasterParams, {"step_seconds": 60}) is OnlineForecaster(step_seconds=60).params
    with pytest.raises(TypeError, match="unexpected arguments"):
        shared(ForecasterParams, {"step_seconds": 60, "stepseconds": 60})


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"features": "cpu_utilization"}, "features must be a non-empty sequence"),
        ({"threshold": 0}, "threshold must be > 0"),
        ({"season_bins": 1}, "season_bins must be >= 2"),
        ({"slow_alpha": 0.2}, r"slow_alpha \(0.2\) must be smaller than fast_alpha \(0.1\)"),
    ],
)
def test_the_declaration_validates(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreamingDetector(**kw)  # type: ignore[arg-type]


def _trained() -> OnlineForecaster:
    f = OnlineForecaster(step_seconds=300, calibrated_steps=(1, 3, 24))
    for i in range(400):
        f.learn_at(300.0 * i, 0.5 + 0.1 * math.sin(i / 20) + 0.01 * (i % 7))
    return f


def test_the_forecaster_state_is_declared_once() -> None:
    names = {f"_{f.key}" for f in _OWN}
    assert set(OnlineForecaster.__slots__) == names | {"params", "_packed"}
    annotated = {k for k in OnlineForecaster.__annotations__ if k.startswith("_")}
    assert annotated == names | {"_packed"}
    # Every part of the state is held once: as its own attribute or in the packed array, in its order.
    assert {f.key for f in _OWN} | {f.key for f in _PACKED} == {f.key for f in (*_STATE, _CACHE)}
    assert not {f.key for f in _OWN} & {f.key for f in _PACKED}
    p = _trained().params
    starts = [getattr(p, f"at_{f.key}") for f in _PACKED]
    lengths = [f.length(p) for f in _PACKED]
    assert starts == [sum(lengths[:i]) for i in range(len(lengths))]
    assert len(_trained()._packed) == p.packed_size == sum(lengths)
    saved = _trained().to_dict()
    assert list(saved) == ["v", "params", *(f.key for f in _STATE)]


def test_the_spelt_out_clone_copies_every_slot() -> None:
    f = _trained()
    f.forecast_at([1, 3])  # fills the weights cache, copied as well
    c = f._clone()
    for name in OnlineForecaster.__slots__:
        mine, theirs = getattr(f, name), getattr(c, name)
        if isinstance(mine, array):
            assert theirs is not mine and theirs.typecode == mine.typecode, name
            assert theirs.tobytes() == mine.tobytes(), name
        else:
            assert theirs is mine or json.dumps(theirs) == json.dumps(mine), name
    c.learn_at(f._t_last + 300.0, 0.9)
    assert f.to_dict() == _trained().to_dict()  # the copy's learning left the original alone


def test_a_saved_state_of_the_wrong_size_names_its_field() -> None:
    d = _trained().to_dict()
    d["cand_mae"] = d["cand_mae"][:2]
    with pytest.raises(ValueError, match="'cand_mae' has 2 rows, expected 3"):
        OnlineForecaster.from_dict(d)
    d = _trained().to_dict()
    d["count"] = [1]
    with pytest.raises(ValueError, match="'count' has 1 values, expected 3"):
        OnlineForecaster.from_dict(d)


def test_states_saved_before_the_declarations_load_and_save_alike() -> None:
    # states_b961780.json: a forecaster and a detector saved by the models of commit b961780.
    saved = json.loads((Path(__file__).parent / "states_b961780.json").read_text())
    # The forecaster's is a version-1 state: per-step constants, migrated to half-lives on load.
    old = saved["forecaster"]
    f = OnlineForecaster.from_dict(old)
    d = StreamingDetector.from_dict(saved["detector"])
    mine = f.to_dict()
    assert old["v"] == 1 and mine["v"] == 2
    assert {k: v for k, v in mine.items() if k not in ("v", "params")} == {
        k: v for k, v in old.items() if k not in ("v", "params")
    }
    p = f.params
    for (a, s, c), (a2, s2, c2) in zip(old["params"]["candidates"], p.candidates, strict=True):
        assert math.isclose(a, a2, rel_tol=1e-12) and (s, c) == (s2, c2)
    assert math.isclose(p.error_alpha, old["params"]["error_alpha"], rel_tol=1e-12)
    assert math.isclose(p.spread_alpha, old["params"]["spread_alpha"], rel_tol=1e-12)
    assert OnlineForecaster.from_dict(mine).to_dict() == mine  # once migrated, saved back unchanged
    assert d.to_dict() == saved["detector"]
    assert f.n_seen == 300 and d.n_learned("cpu_utilization") == 300
    assert f.params is OnlineForecaster(**mine["params"]).params
