"""Faust agents: thin wiring from topics to :class:`pipeline.runtime.Runtime` and back.

``wire(app, helios)`` attaches everything to an app built by :func:`pipeline.app.create_app`.
"""

from agents.wiring import wire

__all__ = ["wire"]
