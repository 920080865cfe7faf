"""Replay a CSV trace onto ``helios.metrics``.

The file has a ``timestamp`` column plus any of the six features of
:data:`models.features.FEATURES` (and optionally ``replicas``). A NAB file
(``timestamp,value``) maps ``value`` to the feature chosen with ``--feature``
(default ``cpu_utilization``).

Units: a utilisation column (CPU, memory, DB CPU, DB memory) whose largest value is above 1
is read as percent and divided by 100 (NAB's ``ec2_cpu_utilization_*`` files are percent);
one whose largest value is above 100 is refused, since it cannot be a utilisation.

Time: the trace keeps its spacing but is moved so that its last row lands at the wall-clock
moment it is emitted. With ``--speedup 1`` event time equals wall time; with ``--speedup X``
the trace plays X times faster and ends at "now"; with ``--speedup max`` (or 0) it is sent
as fast as possible and ends at the start time. No row is ever stamped in the future
(the worker and Kafka refuse far-future timestamps).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from models.features import CPU, FEATURES, UTILISATION_FEATURES
from pipeline.errors import SourceError
from pipeline.records import Metrics, MetricSample
from pipeline.sources.base import Batch

log = logging.getLogger(__name__)


def parse_speedup(text: str) -> float:
    """``"max"`` or ``"0"`` -> 0.0 (as fast as possible); otherwise a positive factor.

    >>> parse_speedup("max"), parse_speedup("60")
    (0.0, 60.0)
    """
    if text.strip().lower() in ("max", "inf", "0"):
        return 0.0
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"--speedup must be a positive number or 'max', got {text!r}")
    return value


def load_trace(path: Path, feature: str = CPU) -> pd.DataFrame:
    """Read a CSV trace into a frame with a UTC ``timestamp`` column and feature columns.

    Rows are sorted by time; utilisation columns in percent are divided by 100 (see the
    module docstring). Raises :class:`SourceError` naming the problem.
    """
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {', '.join(FEATURES)}, got {feature!r}")
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SourceError(f"replay file {path}: cannot read it as CSV ({exc})") from exc
    if "timestamp" not in df.columns:
        raise SourceError(f"replay file {path}: needs a 'timestamp' column, has {list(df.columns)}")
    if "value" in df.columns and feature not in df.columns:
        df = df.rename(columns={"value": feature})
    columns = [f for f in FEATURES if f in df.columns]
    if not columns:
        raise SourceError(
            f"replay file {path}: no feature column; expected 'value' or any of {', '.join(FEATURES)}"
        )
    ts = pd.to_datetime(df["timestamp"], utc=True, errors="coerce", format="mixed")
    if ts.isna().any():
        bad = df.loc[ts.isna(), "timestamp"].iloc[0]
        raise SourceError(f"replay file {path}: unparseable timestamp {bad!r}")
    out = pd.DataFrame({"timestamp": ts})
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce").astype(float)
        if col in UTILISATION_FEATURES:
            top = values.max(skipna=True)
            if top > 100:
                raise SourceError(
                    f"replay file {path}: column {col} reaches {top}: neither a fraction nor a percent; "
                    "map it to a count feature such as db_connections with --feature"
                )
            if top > 1:
                values = values / 100.0
        out[col] = values
    if "replicas" in df.columns:
        out["replicas"] = pd.to_numeric(df["replicas"], errors="coerce")
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


class ReplaySource:
    """Plays a CSV trace as samples for one deployment.

    Parameters
    ----------
    path
        The CSV file.
    namespace, deployment
        Who the samples are about.
    speedup
        Pacing factor over real time; ``0`` = as fast as possible.
    feature
        Feature that a NAB ``value`` column stands for.
    batch_size
        Most samples per batch.
    """

    name = "replay"

    def __init__(
        self,
        path: Path,
        namespace: str = "saleor",
        deployment: str = "saleor-api",
        *,
        speedup: float = 0.0,
        feature: str = CPU,
        batch_size: int = 500,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if speedup < 0 or not math.isfinite(speedup):
            raise ValueError(f"speedup must be >= 0 (0 = as fast as possible), got {speedup}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = Path(path)
        self.namespace = namespace
        self.deployment = deployment
        self.speedup = speedup
        self.feature = feature
        self.batch_size = batch_size
        self._clock = clock
        self._sleep = sleep
        self.skipped = 0
        self._trace = load_trace(self.path, feature)

    def _sample(self, row: dict[str, object], when: float) -> MetricSample | None:
        values = {f: float(v) for f in FEATURES if (v := row.get(f)) is not None and pd.notna(v)}  # type: ignore[arg-type]
        if not values:
            return None
        replicas = row.get("replicas")
        try:
            return MetricSample(
                namespace=self.namespace,
                deployment=self.deployment,
                timestamp=datetime.fromtimestamp(when, UTC),
                metrics=Metrics(**values),
                replicas=int(replicas) if replicas is not None and pd.notna(replicas) else None,  # type: ignore[call-overload]
                source="replay",
            )
        except ValidationError as exc:
            self.skipped += 1
            log.warning(
                "replay %s: row at %s skipped: %s", self.path, row["timestamp"], exc.errors()[0]["msg"]
            )
            return None

    async def batches(self) -> AsyncIterator[Batch]:
        trace = self._trace
        if trace.empty:
            return
        offsets = (trace["timestamp"] - trace["timestamp"].iloc[0]).dt.total_seconds().to_numpy()
        duration = float(offsets[-1])
        t0 = self._clock()
        play = duration / self.speedup if self.speedup > 0 else 0.0
        # Event time of row i = end - (duration - offset_i); end is when the last row goes out.
        end = t0 + play
        pending: list[MetricSample] = []
        for i, row in enumerate(trace.to_dict("records")):
            if self.speedup > 0:
                due = t0 + offsets[i] / self.speedup
                wait = due - self._clock()
                if wait > 0:
                    if pending:
                        yield Batch(pending)
                        pending = []
                    await self._sleep(wait)
            sample = self._sample(row, end - (duration - offsets[i]))
            if sample is not None:
                pending.append(sample)
            if len(pending) >= self.batch_size:
                yield Batch(pending)
                pending = []
        if pending:
            yield Batch(pending)
        if self.skipped:
            log.warning("replay %s: %d rows skipped as invalid", self.path, self.skipped)
