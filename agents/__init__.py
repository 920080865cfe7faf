"""Faust agents: thin wiring from topics to :class:`pipeline.runtime.Runtime` and back.

``wire(app, helios)`` attaches everything to an app built by :func:`pipeline.app.create_app`, which the
composition root (the CLI's ``worker`` command) calls as ``create_app(settings, wire=wire)``.
"""

from agents.wiring import wire

__all__ = ["wire"]
