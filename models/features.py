"""The six workload features Helios reads, and the forecast horizons it publishes.

Everything that names a feature imports it from here, so the ingester, the models,
the records and the dashboards cannot drift apart.
"""

from __future__ import annotations

from typing import Final

#: Per-pod average CPU utilisation of the container limit (0..1).
CPU: Final = "cpu_utilization"
#: Per-pod average memory utilisation of the container limit (0..1).
MEMORY: Final = "memory_utilization"
#: Per-pod average memory in use, in bytes.
MEMORY_BYTES: Final = "memory_bytes"
#: Cloud SQL CPU utilisation (0..1).
DB_CPU: Final = "db_cpu"
#: Cloud SQL memory utilisation (0..1).
DB_MEMORY: Final = "db_memory"
#: PostgreSQL backends (connections) on the Cloud SQL instance.
DB_CONNECTIONS: Final = "db_connections"

FEATURES: Final[tuple[str, ...]] = (CPU, MEMORY, MEMORY_BYTES, DB_CPU, DB_MEMORY, DB_CONNECTIONS)

#: Features whose values are fractions of a limit and so must lie in [0, 1].
UTILISATION_FEATURES: Final[frozenset[str]] = frozenset({CPU, MEMORY, DB_CPU, DB_MEMORY})

#: Features the forecaster predicts (the ones scaling decisions are made on).
FORECAST_FEATURES: Final[tuple[str, ...]] = (CPU, MEMORY)

#: Published forecast horizons: gauge label -> seconds ahead.
HORIZONS: Final[dict[str, int]] = {"5m": 300, "15m": 900, "30m": 1800, "60m": 3600}
