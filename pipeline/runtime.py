"""What a worker does with a micro-batch of raw records, without any Faust in it.

The agent hands :meth:`Runtime.process` the raw records of one micro-batch; it
gets back what to emit, what to write to the state table's changelog and what to dead-letter.
Tests drive it directly; the Faust agent only moves bytes in and out.
"""

from __future__ import annotations

import base64
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from pipeline.errors import BadSample
from pipeline.history import DeploymentHistory, HistoryConfig
from pipeline.metrics import HeliosMetrics
from pipeline.model_store import ModelStore
from pipeline.offsets import marker_key
from pipeline.records import DeadLetter, MetricSample
from pipeline.settings import Settings
from pipeline.stages import DeploymentPipeline, PipelineConfig, Prepared, StageOutput, score_batch

log = logging.getLogger(__name__)


#: Bytes of a bad record's value a dead letter carries (base64 makes them 4/3 as many).
DLQ_VALUE_BYTES = 256 * 1024

#: Reads a deployment's persisted state (the decoded JSON object) or None.
StateLoader = Callable[[str], "dict[str, Any] | None"]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record as it arrived on the metrics topic."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Emit:
    topic: str
    key: bytes
    value: bytes


@dataclass(slots=True)
class Entry:
    """A tracked deployment on this worker."""

    pipeline: DeploymentPipeline
    partition: int
    last_seen: float
    exported: bool = False
    #: Offset of the last metrics record applied to this state: a replay after a crash skips it.
    applied_offset: int = -1
    #: Samples applied since the state was last written, the offset of the first and when it came.
    unsaved: int = 0
    unsaved_from: int = -1
    unsaved_at: float = 0.0
    #: The state is written when ``unsaved`` reaches this (see :func:`first_write_after`).
    write_after: int = 1
    #: Recent outputs for the status page (``HELIOS_HISTORY``; not persisted).
    history: DeploymentHistory | None = None
    #: The runtime's output count when this deployment's latest output came: it changes whenever the
    #: history, the accuracy or the recommendations may have, and never repeats on another entry.
    version: int = 0


def first_write_after(key: str, every: int) -> int:
    """Samples before a deployment's first state write on this worker: 1 to ``every``, by its key.

    Every later write comes ``every`` samples after the one before. Deployments report on the same
    interval and a worker picks them all up at once when it starts, so writing every one of them after
    exactly ``every`` samples writes the whole fleet's state in the same interval, and that interval's
    samples wait behind the writes (benchmarks/perf.md); spread by key, each interval writes about
    ``1 / every`` of it.

    >>> sorted({first_write_after(f"ns/api-{i}", 10) for i in range(100)})
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    """
    return 1 + zlib.crc32(key.encode()) % every


@dataclass
class BatchResult:
    emits: list[Emit] = field(default_factory=list)
    #: (partition, key, value or None for a tombstone) for the state table's changelog
    state_writes: list[tuple[int, str, bytes | None]] = field(default_factory=list)
    outputs: list[StageOutput] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def extend(self, other: BatchResult) -> None:
        """Append a later result; a key's later state write replaces its earlier one."""
        self.emits += other.emits
        self.outputs += other.outputs
        self.dead += other.dead
        if other.state_writes:
            later = {key for _, key, _ in other.state_writes}
            self.state_writes = [w for w in self.state_writes if w[1] not in later] + other.state_writes


def describe_validation(exc: ValidationError) -> str:
    """``metrics.cpu_utilization: Input should be less than or equal to 1 (got 1.7)``; ..."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
        parts.append(f"{loc}: {err['msg']}{shown}")
    return "; ".join(parts)


class Runtime:
    """Per-worker state: the tracked deployments and the code that advances them."""

    def __init__(
        self,
        settings: Settings,
        metrics: HeliosMetrics,
        models: ModelStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models = models
        self.clock = clock
        self.config = PipelineConfig.from_settings(settings)
        self.history = HistoryConfig.from_settings(settings)
        self.entries: dict[str, Entry] = {}
        #: partition -> the entries with samples applied since their state was last written, in the order
        #: of their first unsaved sample (records of a partition come in offset order): the first one
        #: holds the partition's replay marker.
        self.unsaved: dict[int, dict[str, Entry]] = {}
        #: partition -> the offset after the last record processed (good or dead-lettered)
        self.position: dict[int, int] = {}
        #: Called with (key, window start, values) for every window a sample closes (Prophet's history).
        self.on_window_closed: Callable[[str, float, dict[str, float]], None] | None = None
        self._topics = (settings.topic_forecasts, settings.topic_anomalies, settings.topic_recommendations)
        self._outputs = 0

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, raw: RawRecord, now: float) -> MetricSample:
        """Validate one record; raises :class:`BadSample` with a precise reason."""
        if not raw.value:
            raise BadSample("empty", "the record has no value")
        try:
            data = orjson.loads(raw.value)
        except orjson.JSONDecodeError as exc:
            raise BadSample("not_json", f"value is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadSample("schema", f"expected a JSON object, got {type(data).__name__}")
        try:
            sample = MetricSample.model_validate(data)
        except ValidationError as exc:
            raise BadSample("schema", describe_validation(exc)) from None
        key = None if raw.key is None else raw.key.decode("utf-8", "replace")
        if key != sample.key:
            raise BadSample(
                "key_mismatch", f"record key {key!r} is not {sample.key!r} (namespace/deployment)"
            )
        if not sample.metrics.present():
            raise BadSample("no_metrics", "the sample carries none of the six features")
        t = sample.timestamp.timestamp()
        if t > now + self.settings.max_future_skew:
            raise BadSample(
                "future",
                f"timestamp {sample.timestamp.isoformat()} is {t - now:.0f} s ahead of the worker's clock",
            )
        if t < now - self.settings.max_sample_age:
            raise BadSample(
                "too_old",
                f"timestamp {sample.timestamp.isoformat()} is older than HELIOS_MAX_SAMPLE_AGE "
                f"({self.settings.max_sample_age:.0f} s)",
            )
        return sample

    def dead_letter(self, raw: RawRecord, err: BadSample, now: float) -> DeadLetter:
        self.metrics.dead_letters.labels(err.reason).inc()
        self.metrics.samples.labels("dead_lettered").inc()
        value, detail = raw.value or b"", err.detail
        if len(value) > DLQ_VALUE_BYTES:
            # Base64 of a record near the broker's 1 MB limit would not fit in a record itself.
            detail += (
                f" (value_b64 holds the first {DLQ_VALUE_BYTES:,} of {len(value):,} bytes; the whole record "
                f"is {raw.topic}[{raw.partition}]@{raw.offset})"
            )
            value = value[:DLQ_VALUE_BYTES]
        return DeadLetter(
            reason=err.reason,
            detail=detail,
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=None if raw.key is None else raw.key.decode("utf-8", "replace"),
            value_b64=base64.b64encode(value).decode("ascii"),
            received_at=datetime.fromtimestamp(now, tz=UTC),
        )

    # -- state --------------------------------------------------------------------------------
    def entry_for(self, sample: MetricSample, partition: int, load: StateLoader) -> Entry:
        key = sample.key
        entry = self.entries.get(key)
        if entry is not None:
            return entry
        stored = load(key)
        if stored is None and len(self.entries) >= self.settings.max_deployments:
            raise BadSample(
                "deployment_cap",
                f"this worker already tracks HELIOS_MAX_DEPLOYMENTS={self.settings.max_deployments} "
                "deployments",
            )
        pipe, applied = DeploymentPipeline(sample.namespace, sample.deployment, self.config), -1
        if stored is not None:
            try:
                pipe, applied = (
                    DeploymentPipeline.from_dict(stored["pipe"], self.config),
                    int(stored["offset"]),
                )
            except (ValueError, KeyError, TypeError) as exc:
                log.error("state of %s unreadable, starting afresh: %s", key, exc)
        entry = Entry(
            pipeline=pipe,
            partition=partition,
            last_seen=self.clock(),
            applied_offset=applied,
            write_after=first_write_after(key, self.settings.snapshot_every),
            history=self.history.new(),
        )
        self.entries[key] = entry
        self.metrics.tracked_deployments.set(len(self.entries))
        return entry

    # -- the batch --------------------------------------------------------------------------
    def process(self, records: Iterable[RawRecord], load: StateLoader) -> BatchResult:
        """Decode, run the three stages for every good record, and say what to emit and persist."""
        now = self.clock()
        result = BatchResult()
        prepared: list[tuple[Prepared, Entry, float]] = []
        touched: set[int] = set()
        due: list[str] = []
        for raw in records:
            touched.add(raw.partition)
            if raw.offset + 1 > self.position.get(raw.partition, -1):
                self.position[raw.partition] = raw.offset + 1
            try:
                sample = self.decode(raw, now)
                entry = self.entry_for(sample, raw.partition, load)
                if raw.offset <= entry.applied_offset:
                    # Already in the durable state (the worker died before committing the offset).
                    self.metrics.samples.labels("replayed").inc()
                    continue
                started = time.perf_counter()
                prep = entry.pipeline.prepare(sample)
                prepared.append((prep, entry, time.perf_counter() - started))
                if prep.closed is not None and self.on_window_closed is not None:
                    self.on_window_closed(sample.key, prep.closed.start, prep.closed.values)
            except BadSample as err:
                result.dead.append(self.dead_letter(raw, err, now))
                continue
            entry.last_seen = now
            if self.applied(sample.key, entry, raw, now):
                due.append(sample.key)
        batch_started = time.perf_counter()
        probabilities = score_batch(self.models.xgb, [p for p, _, _ in prepared])
        xgb_share = (time.perf_counter() - batch_started) / max(1, len(prepared))
        stream_latency = self.metrics.inference_duration.labels("stream")
        for (prep, entry, prepare_seconds), probability in zip(prepared, probabilities, strict=True):
            started = time.perf_counter()
            out = entry.pipeline.finish(prep, probability)
            # Model time of this sample: its own stages plus its share of the batched XGBoost call.
            stream_latency.observe(prepare_seconds + xgb_share + time.perf_counter() - started)
            result.outputs.append(out)
            kafka_key = prep.sample.key.encode()
            values = [r.model_dump_json().encode() for r in (out.forecast, out.anomaly, out.recommendation)]
            for topic, value in zip(self._topics, values, strict=True):
                result.emits.append(Emit(topic, kafka_key, value))
            if entry.history is not None:
                entry.history.record(prep.window.start, out, values[2])
            self._outputs += 1
            entry.version = self._outputs
            self.metrics.observe(out.forecast, out.anomaly, out.recommendation, self._accuracy(entry), now)
            entry.exported = True
        for _, entry, _ in prepared:
            if entry.history is not None:
                entry.history.settle()
        self.metrics.samples.labels("processed").inc(len(prepared))
        result.state_writes += self._save(due, touched)
        result.emits.extend(self.dlq_emit(dead) for dead in result.dead)
        return result

    def applied(self, key: str, entry: Entry, raw: RawRecord, now: float) -> bool:
        """Note that ``raw`` is now in the entry's state; True when the state is due to be written."""
        entry.partition = raw.partition
        entry.applied_offset = raw.offset
        if not entry.unsaved:
            entry.unsaved_from, entry.unsaved_at = raw.offset, now
            self.unsaved.setdefault(raw.partition, {})[key] = entry
        entry.unsaved += 1
        return entry.unsaved == entry.write_after

    def _save(self, keys: Iterable[str], partitions: set[int]) -> list[tuple[int, str, bytes | None]]:
        """State writes for ``keys``, then the replay markers of their partitions and of ``partitions``.

        A partition's marker is where a new owner (or this worker after a crash) must start reading for
        its restored state to miss nothing: the first unsaved sample of any of its deployments, or else
        the offset after the last record processed. Samples at or below a deployment's saved offset are
        skipped on the way, so the replay applies each sample once.
        """
        writes: list[tuple[int, str, bytes | None]] = []
        for key in keys:
            entry = self.entries[key]
            self._saved(key, entry)
            state = {"offset": entry.applied_offset, "pipe": entry.pipeline.to_dict()}
            writes.append((entry.partition, key, orjson.dumps(state)))
            partitions.add(entry.partition)
        for p in partitions:
            if p not in self.position:
                continue
            pending = self.unsaved.get(p)
            start = next(iter(pending.values())).unsaved_from if pending else self.position[p]
            writes.append((p, marker_key(p), orjson.dumps({"next": start})))
        return writes

    def _saved(self, key: str, entry: Entry) -> None:
        """The entry's state is written (or dropped): it no longer holds its partition's marker back."""
        entry.unsaved = 0
        entry.write_after = self.settings.snapshot_every
        pending = self.unsaved.get(entry.partition)
        if pending is not None:
            pending.pop(key, None)
            if not pending:
                del self.unsaved[entry.partition]

    def save_due(self) -> list[tuple[int, str, bytes | None]]:
        """State writes for deployments whose first unsaved sample is ``HELIOS_SNAPSHOT_MAX_AGE`` old."""
        limit = self.clock() - self.settings.snapshot_max_age
        old = [k for pending in self.unsaved.values() for k, e in pending.items() if e.unsaved_at <= limit]
        return self._save(old, set())

    def dlq_emit(self, dead: DeadLetter) -> Emit:
        return Emit(self.settings.topic_dlq, (dead.key or "").encode(), dead.model_dump_json().encode())

    def _accuracy(self, entry: Entry) -> dict[str, dict[str, tuple[float, float]]]:
        by_step = {steps: label for label, steps in self.config.horizon_steps.items()}
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for feature, forecaster in entry.pipeline.forecasters.items():
            acc = forecaster.accuracy()
            out[feature] = {label: acc[step] for step, label in by_step.items() if step in acc}
        return out

    # -- ownership and hygiene ----------------------------------------------------------------
    def revoke(self, partitions: set[int]) -> list[str]:
        """Forget every deployment on partitions this worker no longer owns."""
        gone = [key for key, e in self.entries.items() if e.partition in partitions]
        for key in gone:
            entry = self.entries.pop(key)
            self.metrics.forget(entry.pipeline.namespace, entry.pipeline.deployment)
        for p in partitions:
            self.position.pop(p, None)
            self.unsaved.pop(p, None)
        self.metrics.tracked_deployments.set(len(self.entries))
        return gone

    def sweep(self) -> list[tuple[int, str]]:
        """Unexport stale deployments; drop idle ones. Returns (partition, key) to tombstone."""
        now = self.clock()
        tombstones = []
        for key, entry in list(self.entries.items()):
            idle = now - entry.last_seen
            stale = idle > self.settings.stale_after
            evicted = idle > self.settings.idle_ttl
            if entry.exported and (stale or evicted):
                self.metrics.forget(entry.pipeline.namespace, entry.pipeline.deployment)
                entry.exported = False
            if evicted:
                del self.entries[key]
                self._saved(key, entry)
                tombstones.append((entry.partition, key))
        self.metrics.tracked_deployments.set(len(self.entries))
        return tombstones
