"""The worker: the Faust agent, the partition hook and the worker's services.

``wire(app, helios)`` attaches them to an app built by :func:`pipeline.app.create_app`, which the
composition root (the CLI's ``worker`` command) calls as ``create_app(settings, wire=wire)``. The agent
decodes, runs :class:`pipeline.runtime.Runtime`, sends and observes (:mod:`agents.processor`); the
sweeper, model reloader, broker probe and consumption watchdog are each a ``mode.Service``
(:mod:`agents.services`).
"""

from agents.wiring import wire

__all__ = ["wire"]
