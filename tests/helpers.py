"""The tests' name for :mod:`pipeline.testing` (the process helpers, importable by the benchmarks too),
and the design's example samples."""

from __future__ import annotations

from pipeline.testing import REPO, Worker, consume, metric_value, produce, run, topic_env

__all__ = [
    "DESIGN_ANOMALOUS",
    "DESIGN_NORMAL",
    "REPO",
    "Worker",
    "consume",
    "metric_value",
    "produce",
    "run",
    "topic_env",
]

#: The design document's /detect examples (phase5-inference-service.md): an ordinary sample of the
#: Saleor API and its database, and an anomalous one.
DESIGN_NORMAL = {
    "cpu_utilization": 0.45,
    "memory_utilization": 0.62,
    "memory_bytes": 536870912,
    "db_cpu": 0.30,
    "db_memory": 0.55,
    "db_connections": 15,
}
DESIGN_ANOMALOUS = {
    "cpu_utilization": 0.95,
    "memory_utilization": 0.88,
    "memory_bytes": 1073741824,
    "db_cpu": 0.85,
    "db_memory": 0.75,
    "db_connections": 150,
}
