"""Durations as people write them in settings and queries: ``6h``, ``90m``, ``1h30m``, ``45s``, ``3600``."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER = r"\d+(?:\.\d+)?"
#: Exactly what :func:`parse_duration` accepts (the OpenAPI spec publishes it).
DURATION_PATTERN = rf"^(?:{_NUMBER}|(?:{_NUMBER}[smhd])+)$"
_WHOLE = re.compile(DURATION_PATTERN)
_PART = re.compile(rf"({_NUMBER})([smhd])")


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``: a number of seconds, or parts like ``1h30m`` (units s, m, h, d).

    >>> parse_duration("6h"), parse_duration("1h30m"), parse_duration("90"), parse_duration(45)
    (21600.0, 5400.0, 90.0, 45.0)
    >>> parse_duration("6 hours")
    Traceback (most recent call last):
    ...
    ValueError: '6 hours' is not a duration: write seconds or parts like 6h, 90m, 1h30m
    """
    if isinstance(text, bool) or (not isinstance(text, str) and not 0 <= text < float("inf")):
        raise ValueError(f"{text!r} is not a duration: a number of seconds >= 0")
    if not isinstance(text, str):
        return float(text)
    if not _WHOLE.match(text):
        raise ValueError(f"{text!r} is not a duration: write seconds or parts like 6h, 90m, 1h30m")
    if re.fullmatch(_NUMBER, text):
        return float(text)
    return float(sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)))
