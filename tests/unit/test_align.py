"""The aligner's persisted state: its JSON layout, and a restored aligner carrying on identically."""

from __future__ import annotations

import json

import pytest

from pipeline.align import TumblingAligner
from pipeline.errors import BadSample

CPU, MEM = "cpu_utilization", "memory_utilization"


def _aligner() -> TumblingAligner:
    a = TumblingAligner(step_seconds=60, grace_seconds=60)
    a.add(120.0, {CPU: 0.4, MEM: 0.5})
    a.add(130.0, {CPU: 0.6})
    a.add(185.0, {MEM: 0.7})  # closes the window at 120
    a.add(170.0, {CPU: 0.2, MEM: 0.9})  # late, within grace: merged into the open window
    return a


def test_state_layout() -> None:
    # State written by earlier releases must keep loading: the layout is part of the contract.
    assert json.loads(json.dumps(_aligner().to_dict())) == {
        "w": 180,
        "s": {MEM: pytest.approx(1.6), CPU: 0.2},
        "c": {MEM: 2, CPU: 1},
        "seen": [f"185.000|{MEM}", f"170.000|{CPU},{MEM}"],
        "last": {CPU: 0.5, MEM: 0.5},
    }


def test_to_dict_is_a_snapshot_and_a_restored_aligner_carries_on_identically() -> None:
    a = _aligner()
    d = a.to_dict()
    text = json.dumps(d)
    b = TumblingAligner.from_dict(json.loads(text), step_seconds=60, grace_seconds=60)
    for t, values in [
        (200.0, {CPU: 0.3}),
        (245.0, {MEM: 0.1}),
        (250.0, {CPU: 0.8, MEM: 0.2}),
        (301.0, {CPU: 1.0}),
    ]:
        assert a.add(t, values) == b.add(t, values)
    with pytest.raises(BadSample, match="duplicate"):
        b.add(301.0, {CPU: 1.0})
    assert a.to_dict() == b.to_dict()
    assert json.dumps(d) == text
