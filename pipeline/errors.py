"""One exception root for Helios, with a few precise subclasses.

Each subclass also inherits the builtin it refines, so callers that only know
``ValueError`` keep working (the pattern of Faust's ``exceptions.py``).
"""

from __future__ import annotations


class HeliosError(Exception):
    """Root of every error Helios raises on purpose."""


class ConfigError(HeliosError, ValueError):
    """A setting is missing or out of range; the message names the variable."""


class BadSample(HeliosError, ValueError):
    """A record on the metrics topic cannot be used; the message says why.

    ``reason`` is a short machine-readable code (``not_json``, ``schema``, ``too_late`` ...)
    that the dead-letter record and the DLQ counter carry.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SourceError(HeliosError, RuntimeError):
    """An ingester source failed in a way that retrying will not fix."""
