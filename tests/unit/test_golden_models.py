"""The golden run: the detector and the forecaster compute and save exactly what they did before.

``golden_models.json`` holds digests of every output bit of seeded runs, recorded on the models as
they stood before their parameters were declared once (see ``golden_models.py``).
"""

from __future__ import annotations

import json

from tests.unit.golden_models import GOLDEN, run


def test_seeded_runs_are_bit_identical_to_the_recorded_ones() -> None:
    expected = json.loads(GOLDEN.read_text())
    got = run()
    assert got.keys() == expected.keys()
    for name, digests in expected.items():
        assert got[name] == digests, name
