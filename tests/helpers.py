"""The tests' name for :mod:`pipeline.testing` (the process helpers, importable by the benchmarks too)."""

from __future__ import annotations

from pipeline.testing import REPO, Worker, consume, metric_value, produce, run, topic_env

__all__ = ["REPO", "Worker", "consume", "metric_value", "produce", "run", "topic_env"]
