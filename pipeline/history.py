"""The status page's memory: a bounded ring of recent stage outputs per deployment.

One row of bytes per scoring window: utilisations, forecasts and the anomaly score as one byte each,
replica counts as one byte (two when ``HELIOS_MAX_REPLICAS`` exceeds 254). The row of window ``t`` is
that of slot ``t / step``, so a missed window is a row marked absent and no timestamp is stored.

What one byte holds:

* a utilisation (CPU, memory, a forecast's point) in steps of 1/250 (0.4 %), 0 to 1.016;
* a band end as the point's step plus its own distance from the point in steps (:func:`_end`), so
  within one step of the value, not half: the forecasters' bands are symmetric wherever they are not
  clipped at 0, and two distances rounded alike let the two ends of a band cost about one column;
* the anomaly score in steps of threshold / 50, up to 5.08 x the threshold (higher scores are shown
  at that ceiling: the chart is about the score against its threshold);
* flags: present, declared anomaly, severity, the action and the non-scaling advice types.

Rows are grouped in chunks of ``chunk`` consecutive slots. A chunk that is over is stored compressed,
losslessly: each band end as its distance from the point, the upper distance as its difference from the
lower one (zero for a symmetric band), then every column as its change from the window before, the
changes packed several to a byte where they are small (:func:`_pack_changes`), column by column, and
LZMA-compressed. Utilisations move little from one minute to the next, so a closed chunk takes a
fraction of its raw size (``benchmarks/memory.md``). The newest chunk grows a raw row per window; every
``seal`` rows, its rows but the newest are compressed the same way but more cheaply (no packing,
deflate), as a seal is frequent, into one blob with those sealed before, so it holds at most
``seal`` raw rows (the newest stays raw for the index page). Chunks are aligned on slots, so the oldest
one starts before the ring's first window; at each seal it lets go of the rows no request can reach.

A forecast is stored in the row of the window it was made in; :meth:`DeploymentHistory.to_json` shifts
each horizon onto the window it forecasts, so forecast and outcome line up on one time axis.
The latest recommendation (the record sent to Kafka) and the last two episodes of each kind of decision
that did something (scale up during an anomaly, other scale-ups, scale down, resource or database advice;
an episode keeps the decision that started it) are kept for the audit table, so an incident's scale-up
stays listed however many routine decisions follow it. They are deflated against a dictionary shared by
every ring of the worker, per kind: the first record the worker saw, then the first of that kind (the keys
and most of the words recur in every record, the reasons in those of one kind), and inflated when the
page asks; the kept records of one kind are one stream, the second deflated after the first. A
compressor given each kind's dictionary is kept for the worker and copied for every record, so the
dictionary is not hashed again each time. The latest is deflated once per
micro-batch (:meth:`DeploymentHistory.settle`), not once per sample: a deployment with several samples
in a batch (a backlog, a flat-out replay) pays for the one that stays.
The ring is not persisted: a restarted worker, or a new owner after a rebalance, starts it empty.
"""

from __future__ import annotations

import lzma
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

if TYPE_CHECKING:
    from pipeline.settings import Settings
    from pipeline.stages import StageOutput

#: One byte per fraction: q = round(v * FRACTION_SCALE).
FRACTION_SCALE = 250
#: Quanta of the anomaly threshold: the score is stored in steps of threshold / SCORE_STEPS.
SCORE_STEPS = 50
MISSING = 255
_TOP = 254
#: Windows per chunk: longer chunks deflate better, but sealing and trimming re-encode a longer chunk's
#: rows, so they cost more a sample (benchmarks/memory.md: bytes and µs at 60, 90 and 120).
CHUNK_ROWS = 60
#: Raw rows of the open chunk before they are sealed: fewer re-deflate the chunk's sealed rows more often
#: (benchmarks/status-page.md: bytes and µs per sample at 10, 15 and 20).
SEAL_ROWS = 15
#: Raw deflate (no zlib header or checksum: 6 bytes a blob saved; the data never leaves the process).
_WBITS = -15
#: zlib's memory level (1-9, its default 8): the hash table it sizes is set up anew for every blob, and
#: at 8 that set-up (~250 KB of tables) outweighs deflating a small blob; at 4 the tables still cover a
#: blob and its dictionary many times over (benchmarks/status-page.md: same bytes).
_MEM_LEVEL = 4
#: The window of a single record's deflate: its dictionary (~2.5 KB) and the record (~1.2 KB) fit, and
#: copying a compressor primed with the dictionary (:meth:`HistoryConfig.pack`) copies the window, so a
#: smaller one is a cheaper copy. Inflating with ``_WBITS`` reads any smaller window.
_RECORD_WBITS = -13
#: Deflate level of the open chunk's sealed rows and of a trimmed oldest chunk.
_CHUNK_LEVEL = 6
#: A closed chunk is compressed once (an hour at a 60 s step) and kept for hours, so it takes LZMA:
#: its adaptive range coder spends fewer bytes on the packed changes than deflate's one Huffman code
#: a blob, for ~0.1 ms more a close (benchmarks/status-page.md). Raw (no header: the data never leaves
#: the process), the smallest window, and no literal context (a column's byte does not predict the
#: next column's).
_CLOSED_FILTERS = (
    {
        "id": lzma.FILTER_LZMA1,
        "dict_size": 4096,
        "lc": 0,
        "lp": 0,
        "pb": 0,
        "mf": lzma.MF_BT4,
        "nice_len": 32,
    },
)
#: Deflate level of the kept decisions: they are rare and stay for hours, so the slower level's fewer
#: bytes are worth it (the latest, packed every micro-batch, takes the fastest).
_KEPT_LEVEL = 6

#: What the latest record is when it is also the newest kept one (no second copy).
_NEWEST_KEPT = b""

CPU_COL, MEM_COL, SCORE_COL, FLAGS_COL = 0, 1, 2, 3
_FIRST_FORECAST_COL = 4
FEATURES = ("cpu_utilization", "memory_utilization")
PARTS = ("point", "lower", "upper")

PRESENT, ANOMALY = 1, 2
_SEVERITY_SHIFT, _ACTION_SHIFT = 2, 4
RESOURCE_ADVICE, DATABASE_ADVICE = 64, 128
_SEVERITY_CODE = {"normal": 0, "warning": 1, "critical": 2}
_SEVERITY_NAME = ("normal", "warning", "critical", "critical")
_ACTION_CODE = {"hold": 0, "scale_up": 1, "scale_down": 2}
_ACTION_NAME = ("hold", "scale_up", "scale_down", "hold")
_ABSENT_BAND = (MISSING, MISSING, MISSING)
_ADVICE_KIND, _ANOMALY_UP_KIND = 3, 4
_SERIES = ("cpu_utilization", "memory_utilization", "anomaly_score", "is_anomaly", "severity", "action")
_REPLICAS = ("current", "recommended", "reactive_hpa")


def _deflate(data: bytes, level: int, dictionary: bytes | None = None) -> bytes:
    """Raw deflate of ``data`` (against ``dictionary``), with the small tables of ``_MEM_LEVEL``."""
    if dictionary is None:
        z = zlib.compressobj(level, zlib.DEFLATED, _WBITS, _MEM_LEVEL)
    else:
        z = zlib.compressobj(level, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, dictionary)
    return z.compress(data) + z.flush()


def _frac(v: float | None) -> int:
    if v is None or v != v:  # absent, or NaN
        return MISSING
    q = int(v * FRACTION_SCALE + 0.5)
    return 0 if q < 0 else (q if q < _TOP else _TOP)


def _end(q_point: int, point: float, end: float | None) -> int:
    """A band end's byte: the point's (``q_point``) plus the end's distance from the point, rounded.

    Rounding each end by itself would give a symmetric band's two distances from the point different
    steps about half the time; rounding the distances keeps them equal, which the chunks' band transform
    turns into a column of zeros. The end is then within one step of its value (two roundings) instead of
    half a step. A point at or past either edge of the range may have been clipped, so its end is
    rounded by itself.

    A band 0.1008 either side of 0.5016: the ends by themselves round to 25 and 26 steps from the point,
    as distances both to 25.

    >>> q = _frac(0.5016)
    >>> q, (_frac(0.4008), _frac(0.6024)), (_end(q, 0.5016, 0.4008), _end(q, 0.5016, 0.6024))
    (125, (100, 151), (100, 150))
    """
    if not 0 < q_point < _TOP or end is None or not math.isfinite(end):
        return _frac(end)
    q = q_point + math.floor((end - point) * FRACTION_SCALE + 0.5)
    return 0 if q < 0 else (q if q < _TOP else _TOP)


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """Shape of every deployment's ring, derived once from the settings."""

    capacity: int
    step_seconds: int
    #: (label, steps ahead) of the published horizons, in the forecast records' order.
    horizons: tuple[tuple[str, int], ...]
    threshold: float
    replica_dtype: Any = np.uint8
    #: Episodes kept per kind of decision that did something (see :meth:`DeploymentHistory._keep`): the
    #: last two (each its first decision), so an incident's scale-up stays listed when one more episode
    #: of its kind follows it (a recovery that is itself flagged, a later ramp).
    decisions: int = 2
    #: Windows per chunk (see the module docstring); at most the capacity.
    chunk: int = CHUNK_ROWS
    #: Raw rows the open chunk holds at most before its older rows are compressed (see the module
    #: docstring); a chunk's size or more seals nothing before the chunk closes.
    seal: int = SEAL_ROWS
    #: Derived: the score's quantum, the replica columns' "absent" value (their dtype's largest), bytes
    #: per replica count, and the row of a window nothing arrived in.
    score_unit: float = field(init=False)
    replica_missing: int = field(init=False)
    replica_bytes: int = field(init=False)
    absent_row: bytes = field(init=False, repr=False)
    #: Derived: bytes of a row before the replica counts, and of a row (the columns, then three replica
    #: counts, little-endian when two bytes); fields, not properties, as the record hook reads them.
    columns: int = field(init=False, repr=False)
    width: int = field(init=False, repr=False)
    #: The deflate dictionaries of the kept records, shared by every ring: per kind, the first record
    #: recorded (key -1), then the first of that kind when it is another.
    dictionaries: dict[int, bytes] = field(init=False, repr=False, compare=False)
    #: Per (kind, level), a compressor that has been given the kind's dictionary: :meth:`pack` deflates
    #: with a copy, not with a new compressor that hashes the dictionary again for every record.
    primed: dict[tuple[int, int], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "score_unit", self.threshold / SCORE_STEPS)
        object.__setattr__(self, "replica_missing", int(np.iinfo(self.replica_dtype).max))
        object.__setattr__(self, "replica_bytes", int(np.dtype(self.replica_dtype).itemsize))
        object.__setattr__(self, "chunk", max(1, min(self.chunk, self.capacity)))
        object.__setattr__(self, "seal", max(1, self.seal))
        object.__setattr__(self, "decisions", max(1, self.decisions))
        columns = _FIRST_FORECAST_COL + len(self.horizons) * len(FEATURES) * len(PARTS)
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "width", columns + len(_REPLICAS) * self.replica_bytes)
        row = bytearray([MISSING]) * self.width
        row[FLAGS_COL] = 0  # not present
        object.__setattr__(self, "absent_row", bytes(row))
        object.__setattr__(self, "dictionaries", {})
        object.__setattr__(self, "primed", {})

    @classmethod
    def from_settings(cls, settings: Settings) -> HistoryConfig:
        return cls(
            capacity=int(settings.history // settings.scoring_interval),
            step_seconds=settings.scoring_interval,
            horizons=tuple(settings.horizon_steps.items()),
            threshold=settings.anomaly_threshold,
            replica_dtype=np.uint8 if settings.max_replicas <= _TOP else np.uint16,
        )

    def new(self) -> DeploymentHistory | None:
        """A fresh ring, or None when ``HELIOS_HISTORY`` is 0."""
        return DeploymentHistory(self) if self.capacity > 0 else None

    # -- the encodings ----------------------------------------------------------------------------
    def _words(self, record: bytes, kind: int) -> bytes:
        """The dictionary of ``kind``, made from ``record`` if it is the first of its kind."""
        d = self.dictionaries
        first = d.setdefault(-1, record)
        return d.setdefault(kind, first if record is first else first + record)

    def pack(self, record: bytes, kind: int, level: int = 1) -> bytes:
        """A recommendation record of ``kind`` (0-255): the kind's byte, then the record deflated against
        the kind's shared dictionary."""
        z = self.primed.get((kind, level))
        if z is None:
            words = self._words(record, kind)
            strategy = zlib.Z_DEFAULT_STRATEGY
            z = zlib.compressobj(level, zlib.DEFLATED, _RECORD_WBITS, _MEM_LEVEL, strategy, words)
            self.primed[kind, level] = z
        z = z.copy()
        return bytes((kind,)) + z.compress(record) + z.flush()

    def unpack(self, packed: bytes) -> bytes:
        """The record a :meth:`pack` gave ``packed`` for."""
        z = zlib.decompressobj(_WBITS, self.dictionaries[packed[0]])
        return z.decompress(packed[1:]) + z.flush()

    def pack_kept(self, kind: int, records: Sequence[bytes]) -> bytes:
        """Kept records of ``kind``, oldest first, as one blob: the kind's byte, the number of records,
        their lengths (4 bytes each, little-endian), then the records deflated one after the other against
        the kind's dictionary (the second shares more with the first than with the dictionary)."""
        z = self.primed.get((kind, _KEPT_LEVEL))
        if z is None:
            words = self._words(records[0], kind)
            z = zlib.compressobj(
                _KEPT_LEVEL, zlib.DEFLATED, _RECORD_WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, words
            )
            self.primed[kind, _KEPT_LEVEL] = z
        z = z.copy()
        head = bytes((kind, len(records))) + b"".join(len(r).to_bytes(4, "little") for r in records)
        return head + z.compress(b"".join(records)) + z.flush()

    def unpack_kept(self, blob: bytes) -> list[bytes]:
        """The records a :meth:`pack_kept` gave ``blob`` for."""
        n = blob[1]
        z = zlib.decompressobj(_WBITS, self.dictionaries[blob[0]])
        raw = z.decompress(blob[2 + 4 * n :]) + z.flush()
        out, at = [], 0
        for k in range(n):
            size = int.from_bytes(blob[2 + 4 * k : 6 + 4 * k], "little")
            out.append(raw[at : at + size])
            at += size
        return out

    def encode(self, rows: bytes | bytearray, closed: bool = False) -> bytes:
        """Rows (a closed chunk, or the sealed rows of the open one) compressed: band ends as distances
        from their point (the upper one less the lower one), then each column as its change from the row
        before, column by column; b"" for rows that are all absent. A ``closed`` chunk's changes are
        packed (:func:`_pack_changes`) and LZMA-compressed, the others deflated: slower, as it is done
        once a chunk, not at every seal."""
        n = len(rows) // self.width
        if rows == self.absent_row * n:
            return b""
        m = np.frombuffer(rows, dtype=np.uint8).reshape(n, self.width).copy()
        points = slice(_FIRST_FORECAST_COL, self.columns, len(PARTS))
        lower = slice(_FIRST_FORECAST_COL + 1, self.columns, len(PARTS))
        upper = slice(_FIRST_FORECAST_COL + 2, self.columns, len(PARTS))
        m[:, lower] = m[:, points] - m[:, lower]  # uint8 arithmetic wraps: exact modulo 256
        m[:, upper] = m[:, upper] - m[:, points] - m[:, lower]
        m[1:] -= m[:-1].copy()
        if closed:
            return lzma.compress(_pack_changes(m), lzma.FORMAT_RAW, filters=_CLOSED_FILTERS)
        return _deflate(np.ascontiguousarray(m.T).tobytes(), _CHUNK_LEVEL)

    def trimmed(self, blob: bytes, n: int, drop: int, closed: bool = False) -> bytes:
        """:meth:`encode`'d rows (``n`` of them) without their first ``drop``, encoded as sealed rows are.

        Done on the changes, not the rows: the first row kept is the sum of the changes up to it (modulo
        256, as the rows' bytes wrap), and the band transform stays applied, so only the inflate and the
        deflate cost anything.
        """
        if not blob:
            return b""
        changes = _changes_of(blob, n, self.width, closed)
        kept = changes[drop:].copy()
        kept[0] = changes[: drop + 1].sum(axis=0, dtype=np.uint8)
        return _deflate(np.ascontiguousarray(kept.T).tobytes(), _CHUNK_LEVEL)

    def decode(self, blob: bytes, n: int | None = None, closed: bool = False) -> np.ndarray:
        """The rows (``n`` x ``width`` uint8; ``n`` a chunk's by default) of :meth:`encode`'d rows."""
        n = self.chunk if n is None else n
        if not blob:
            return np.frombuffer(self.absent_row * n, dtype=np.uint8).reshape(n, self.width)
        changes = _changes_of(blob, n, self.width, closed)
        m = np.cumsum(changes, axis=0, dtype=np.uint8)
        points = slice(_FIRST_FORECAST_COL, self.columns, len(PARTS))
        lower = slice(_FIRST_FORECAST_COL + 1, self.columns, len(PARTS))
        upper = slice(_FIRST_FORECAST_COL + 2, self.columns, len(PARTS))
        m[:, upper] = m[:, upper] + m[:, points] + m[:, lower]
        m[:, lower] = m[:, points] - m[:, lower]
        return m


def _changes_of(blob: bytes, n: int, width: int, closed: bool) -> np.ndarray:
    """The rows of changes (``n`` x ``width``) of :meth:`HistoryConfig.encode` output."""
    if closed:
        return _unpack_changes(lzma.decompress(blob, lzma.FORMAT_RAW, filters=_CLOSED_FILTERS), n, width)
    return np.frombuffer(zlib.decompress(blob, _WBITS), dtype=np.uint8).reshape(width, n).T


def _pack_changes(m: np.ndarray) -> bytes:
    """Rows of changes (``n`` x ``width``; the first row as it is) in fewer bytes: each change as a
    zigzag code (0, -1, 1, -2, ... as 0, 1, 2, 3, ...), then per column, by its largest code, four codes
    to a byte (all under 4), two (under 16) or one. Deflate's single Huffman code spends at least a bit a
    byte; most columns change by a quantum or two a window, so this halves or quarters their bytes first.

    Layout: the columns' modes (0, 1, 2: four, two, one code a byte), the first row, then the columns of
    each mode in turn (their original order), column by column.
    """
    n, width = m.shape
    if n == 1:
        return m.tobytes()
    k = n - 1
    u = m[1:]
    z = (u << 1) ^ (u.view(np.int8) >> 7).view(np.uint8)
    top = z.max(axis=0)
    mode = (top > 3).astype(np.uint8) + (top > 15)
    order = np.argsort(mode, kind="stable")
    a, b = int(np.count_nonzero(mode == 0)), int(np.count_nonzero(mode < 2))
    codes = np.zeros((-(-k // 4) * 4, width), dtype=np.uint8)
    codes[:k] = z[:, order]
    c = codes[:, :a]
    fours = (c[0::4] << 6) | (c[1::4] << 4) | (c[2::4] << 2) | c[3::4]
    c = codes[:, a:b]
    twos = (c[0::2] << 4) | c[1::2]
    ones = codes[:k, b:]
    return b"".join((mode.tobytes(), m[0].tobytes(), fours.T.tobytes(), twos.T.tobytes(), ones.T.tobytes()))


def _unpack_changes(buf: bytes, n: int, width: int) -> np.ndarray:
    """The rows of changes a :func:`_pack_changes` gave ``buf`` for."""
    if n == 1:
        return np.frombuffer(buf, dtype=np.uint8).reshape(1, width)
    k, rows = n - 1, -(-(n - 1) // 4)
    mode = np.frombuffer(buf, dtype=np.uint8, count=width)
    order = np.argsort(mode, kind="stable")
    a, b = int(np.count_nonzero(mode == 0)), int(np.count_nonzero(mode < 2))
    codes = np.empty((rows * 4, width), dtype=np.uint8)
    at = 2 * width
    fours = np.frombuffer(buf, dtype=np.uint8, count=rows * a, offset=at).reshape(a, rows).T
    at += rows * a
    for shift in range(4):
        codes[shift::4, :a] = (fours >> (6 - 2 * shift)) & 3
    twos = np.frombuffer(buf, dtype=np.uint8, count=2 * rows * (b - a), offset=at).reshape(b - a, 2 * rows).T
    at += 2 * rows * (b - a)
    codes[0::2, a:b] = twos >> 4
    codes[1::2, a:b] = twos & 15
    ones = np.frombuffer(buf, dtype=np.uint8, count=k * (width - b), offset=at)
    codes[:k, b:] = ones.reshape(width - b, k).T
    z = codes[:k]
    out = np.empty((n, width), dtype=np.uint8)
    out[0] = np.frombuffer(buf, dtype=np.uint8, count=width, offset=width)
    out[1:, order] = (z >> 1) ^ (np.uint8(0) - (z & 1))
    return out


class DeploymentHistory:
    """The ring of one deployment (see the module docstring)."""

    __slots__ = (
        "_chunks",
        "_kind",
        "_last",
        "_latest",
        "_lead",
        "_notable",
        "_open",
        "_sealed",
        "_sent",
        "_trim",
        "config",
    )

    def __init__(self, config: HistoryConfig) -> None:
        self.config = config
        #: Slot (window start / step) of the newest row, None before the first.
        self._last: int | None = None
        #: The rows of the newest chunk, from its row ``_lead`` to ``_last``: the absent rows before the
        #: first one the chunk received are not held (a new deployment starts mid-chunk, on average half
        #: a chunk of rows that would say only "nothing arrived").
        #: They are the sealed rows (:meth:`HistoryConfig.encode`), then the raw rows in ``_open``.
        self._sealed = b""
        self._open = bytearray()
        self._lead = 0
        #: The closed chunks before it, oldest first, consecutive (:meth:`HistoryConfig.encode`).
        self._chunks: list[bytes] = []
        #: Leading rows of the oldest closed chunk not held: older than the capacity reaches (see
        #: :meth:`_trim_oldest`).
        self._trim = 0
        #: The latest record packed (:meth:`HistoryConfig.pack`), or until :meth:`settle` as sent (the
        #: bytes built for Kafka: no copy) in ``_sent``.
        self._latest: bytes | None = None
        self._sent: bytes | None = None
        #: The decisions that did something (see :meth:`_keep`): per kind, its records in one blob
        #: (:meth:`HistoryConfig.pack_kept`, the kind its first byte).
        self._notable: list[bytes] = []
        self._kind = 0

    @property
    def nbytes(self) -> int:
        """Bytes of the rows, raw and compressed, and of the kept records (without object headers)."""
        kept = sum(len(b) for b in self._notable) + len(self._sent or self._latest or b"")
        return len(self._sealed) + len(self._open) + sum(len(b) for b in self._chunks) + kept

    def record(self, start: float, out: StageOutput, recommendation: bytes) -> None:
        """Note one stage output for window ``start``; ``recommendation`` is its record as sent."""
        cfg = self.config
        slot = int(start // cfg.step_seconds)
        last = self._last
        if last is not None and slot <= last - cfg.capacity:
            return  # older than the ring reaches
        decision, anomaly, rec = out.decision, out.anomaly, out.recommendation
        action = _ACTION_CODE.get(decision.action, 0)
        adv = 0
        for item in rec.recommendations:
            if item.type != "scaling":
                adv |= RESOURCE_ADVICE if item.type == "resource" else DATABASE_ADVICE
        flags = PRESENT | (ANOMALY if anomaly.is_anomaly else 0) | adv
        flags |= _SEVERITY_CODE.get(anomaly.severity, 0) << _SEVERITY_SHIFT | action << _ACTION_SHIFT
        observed = out.forecast.observed
        score = anomaly.anomaly_score
        row = [
            _frac(observed.cpu_utilization),
            _frac(observed.memory_utilization),
            MISSING if score != score else min(_TOP, max(0, int(score / cfg.score_unit + 0.5))),
            flags,
        ]
        for horizon in out.forecast.horizons:
            for band in (horizon.cpu_utilization, horizon.memory_utilization):
                if band is None:
                    row += _ABSENT_BAND
                else:
                    point = band.point
                    q = _frac(point)
                    row += (q, _end(q, point, band.lower), _end(q, point, band.upper))
        missing = cfg.replica_missing
        reactive = (decision.evidence.get("needs") or {}).get("reactive_floor")
        current = rec.current_replicas
        for count in (
            missing if current is None else min(missing - 1, current),
            min(missing - 1, decision.target_replicas),
            missing if reactive is None else min(missing - 1, int(reactive)),
        ):
            row += (count,) if cfg.replica_bytes == 1 else (count & 255, count >> 8)
        self._put(slot, bytes(row))
        self._sent = recommendation
        kind = action or (_ADVICE_KIND if adv else 0)
        if kind == _ACTION_CODE["scale_up"] and anomaly.is_anomaly:
            # Scale-ups during an anomaly are what an SRE audits after an incident: routine ones later
            # in the day must not push them out.
            kind = _ANOMALY_UP_KIND
        if kind:
            self._keep(kind, recommendation)
        self._kind = kind

    def _put(self, slot: int, row: bytes) -> None:
        """Write the row of ``slot``: advance the ring to it (closing chunks, absent rows for the windows
        nothing arrived in), or overwrite an earlier row (a late or re-aligned window)."""
        cfg = self.config
        size, width = cfg.chunk, cfg.width
        last = self._last
        if last is None or slot > last:
            if last is None or slot // size != last // size:
                self._advance(slot)
            else:
                self._open += cfg.absent_row * (slot - last - 1)
            self._open += row
            self._last = slot
            if len(self._open) > cfg.seal * width and slot % size != size - 1:
                self._seal()
            return
        assert last is not None
        back = last // size - slot // size  # chunks before the open one
        at = (slot % size) * width
        if back == 0:
            self._unseal()
            if slot % size < self._lead:  # before the first row held: hold the absent rows up to it
                self._open[:0] = cfg.absent_row * (self._lead - slot % size)
                self._lead = slot % size
            at -= self._lead * width
            self._open[at : at + width] = row
        elif back <= len(self._chunks):
            i = len(self._chunks) - back
            rows = bytearray(self._closed(i).tobytes())
            rows[at : at + width] = row
            trim = self._trim if i == 0 else 0
            self._chunks[i] = cfg.encode(rows[trim * width :], closed=not trim)

    def _advance(self, slot: int) -> None:
        """Close the open chunk and open the one of ``slot`` (its rows before ``slot`` absent)."""
        cfg = self.config
        size = cfg.chunk
        last = self._last
        if last is not None:
            self._unseal()
            self._open += cfg.absent_row * (size - 1 - last % size)
            self._chunks.append(cfg.encode(cfg.absent_row * self._lead + self._open, closed=True))
            skipped = slot // size - last // size - 1
            self._chunks += [b""] * min(skipped, cfg.capacity // size + 1)
        self._open = bytearray()
        self._lead = slot % size
        # Keep the closed chunks the ring's capacity still reaches into.
        need = -(-max(0, cfg.capacity - slot % size - 1) // size)
        if len(self._chunks) > need:
            del self._chunks[: len(self._chunks) - need]
            self._trim = 0
        elif not self._chunks:
            self._trim = 0

    def _closed(self, i: int) -> np.ndarray:
        """The rows of closed chunk ``i`` (a chunk's, absent where trimmed). A trimmed chunk is encoded
        as the sealed rows are, without the closed chunks' packing: it is re-encoded at every seal, and
        is soon dropped."""
        cfg = self.config
        trim = self._trim if i == 0 else 0
        if not trim:
            return cfg.decode(self._chunks[i], closed=True)
        rows = cfg.decode(self._chunks[i], cfg.chunk - trim)
        pad = np.frombuffer(cfg.absent_row * trim, dtype=np.uint8).reshape(trim, cfg.width)
        return np.concatenate([pad, rows])

    def _trim_oldest(self) -> None:
        """Drop the oldest closed chunk's rows the capacity no longer reaches, re-encoding it without them.

        Chunks are aligned on slots, so the oldest one starts up to a chunk less one row before the ring's
        first window: on average half a chunk of rows no request can return. The open chunk's seals call
        this (every ``seal`` rows), which bounds those rows by about ``seal``.
        """
        cfg = self.config
        assert self._last is not None
        size = cfg.chunk
        while self._chunks:
            start = (self._last // size - len(self._chunks)) * size  # the oldest chunk's first slot
            drop = self._last - cfg.capacity + 1 - start
            if drop < size:
                if drop > self._trim:
                    held = size - self._trim
                    self._chunks[0] = cfg.trimmed(self._chunks[0], held, drop - self._trim, not self._trim)
                    self._trim = drop
                return
            del self._chunks[0]  # wholly older than the capacity (the next close would drop it)
            self._trim = 0

    def settle(self) -> None:
        """Pack the latest record (the runtime calls it once per micro-batch for the rings it fed)."""
        if self._sent is not None:
            self._latest = self.config.pack(self._sent, self._kind)
            self._sent = None

    def _sealed_rows(self) -> int:
        assert self._last is not None
        return self._last % self.config.chunk + 1 - self._lead - len(self._open) // self.config.width

    def _seal(self) -> None:
        """Compress the open chunk's rows but the newest into its sealed rows."""
        cfg = self.config
        keep = len(self._open) - cfg.width
        before = cfg.decode(self._sealed, self._sealed_rows()).tobytes()
        self._sealed = cfg.encode(before + self._open[:keep])
        del self._open[:keep]
        self._trim_oldest()

    def _unseal(self) -> None:
        """Put the open chunk's sealed rows back in front of its raw ones."""
        if self._sealed:
            self._open[:0] = self.config.decode(self._sealed, self._sealed_rows()).tobytes()
            self._sealed = b""

    def _keep(self, kind: int, recommendation: bytes) -> None:
        """Keep the decision that starts an episode (the same kind window after window: the one that says
        why it started), and of each kind the last ``decisions`` episodes."""
        if self._kind == kind:
            return
        cfg = self.config
        notable = self._notable
        at = next((i for i, b in enumerate(notable) if b[0] == kind), len(notable))
        records = cfg.unpack_kept(notable[at]) if at < len(notable) else []
        records.append(recommendation)
        packed = cfg.pack_kept(kind, records[-cfg.decisions :])
        if at < len(notable):
            notable[at] = packed
        else:
            notable.append(packed)
        if recommendation is self._sent:  # it is the latest too: no deflate in settle
            self._latest, self._sent = _NEWEST_KEPT, None

    def _rows(self, n: int) -> np.ndarray:
        """The rows of the last ``n`` slots (``n`` x ``width``), absent before the first."""
        cfg = self.config
        assert self._last is not None
        size, width = cfg.chunk, cfg.width
        opened = self._last % size + 1
        chunks = min(len(self._chunks), -(-max(0, n - opened) // size))
        parts = [self._closed(i) for i in range(len(self._chunks) - chunks, len(self._chunks))]
        sealed = cfg.decode(self._sealed, self._sealed_rows()).tobytes() if self._sealed else b""
        held = cfg.absent_row * self._lead + sealed + self._open
        parts.append(np.frombuffer(bytes(held), dtype=np.uint8).reshape(opened, width))
        rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if len(rows) < n:
            pad = np.frombuffer(cfg.absent_row * (n - len(rows)), dtype=np.uint8).reshape(-1, width)
            rows = np.concatenate([pad, rows])
        return rows[len(rows) - n :]

    def _replicas(self, rows: np.ndarray) -> np.ndarray:
        cfg = self.config
        r = rows[:, cfg.columns :].astype(np.int64)
        return r if cfg.replica_bytes == 1 else r[:, 0::2] + (r[:, 1::2] << 8)

    # -- reading --------------------------------------------------------------------------------
    def latest(self) -> dict[str, Any] | None:
        """The newest row as scalars (for the index page), or None before the first sample."""
        if self._last is None:
            return None
        width = self.config.width
        rows = np.frombuffer(bytes(self._open[-width:]), dtype=np.uint8).reshape(1, width)
        q, r = rows[0], self._replicas(rows)[0]
        flags = int(q[FLAGS_COL])
        missing = self.config.replica_missing
        return {
            "t": self._last * self.config.step_seconds,
            "cpu": None if q[CPU_COL] == MISSING else int(q[CPU_COL]) / FRACTION_SCALE,
            "severity": _SEVERITY_NAME[(flags >> _SEVERITY_SHIFT) & 3],
            "is_anomaly": bool(flags & ANOMALY),
            "replicas": None if r[0] == missing else int(r[0]),
            "recommended": None if r[1] == missing else int(r[1]),
        }

    def recommendations(self) -> list[Any]:
        """The latest recommendation and the last ones that did something, newest first."""
        unpack = self.config.unpack
        raws = {raw for b in self._notable for raw in self.config.unpack_kept(b)}
        if self._sent is not None:
            raws.add(self._sent)
        elif self._latest:  # not _NEWEST_KEPT, which is among the kept
            raws.add(unpack(self._latest))
        records = [orjson.loads(raw) for raw in raws]
        return sorted(records, key=lambda r: str(r.get("timestamp", "")), reverse=True)

    def to_json(self, window: float | None = None) -> dict[str, Any]:
        """The ring (or its last ``window`` seconds) as the history endpoint's arrays.

        All arrays share the time axis ``t`` (window starts, epoch seconds): the windows held, then as
        many future windows as the longest horizon reaches, where only forecasts have values.
        """
        cfg = self.config
        step = cfg.step_seconds
        if self._last is None:
            empty: list[Any] = []
            return {
                "t": empty,
                "series": {name: empty for name in _SERIES},
                "forecast": {
                    label: {"seconds": steps * step, **{f: {p: empty for p in PARTS} for f in FEATURES}}
                    for label, steps in cfg.horizons
                },
                "replicas": {name: empty for name in _REPLICAS},
                "score_ceiling": _TOP * cfg.score_unit,
            }
        n = cfg.capacity if window is None else max(1, min(cfg.capacity, int(window // step)))
        first = self._last - n + 1
        q = self._rows(n)
        r = self._replicas(q)
        ahead = max((steps for _, steps in cfg.horizons), default=0)
        pad: list[Any] = [None] * ahead
        flags = q[:, FLAGS_COL].astype(np.int64)
        present = (flags & PRESENT) != 0
        sev = (flags >> _SEVERITY_SHIFT) & 3
        act = (flags >> _ACTION_SHIFT) & 3
        series = {
            "cpu_utilization": _fractions(q[:, CPU_COL]) + pad,
            "memory_utilization": _fractions(q[:, MEM_COL]) + pad,
            "anomaly_score": _scaled(q[:, SCORE_COL], cfg.score_unit) + pad,
            "is_anomaly": [bool(f & ANOMALY) if p else None for f, p in zip(flags, present, strict=True)]
            + pad,
            "severity": [_SEVERITY_NAME[s] if p else None for s, p in zip(sev, present, strict=True)] + pad,
            "action": [_ACTION_NAME[a] if p else None for a, p in zip(act, present, strict=True)] + pad,
        }
        forecast: dict[str, Any] = {}
        col = _FIRST_FORECAST_COL
        for label, steps in cfg.horizons:
            lead: list[float | None] = [None] * steps
            tail: list[float | None] = [None] * (ahead - steps)
            per_feature: dict[str, dict[str, list[float | None]]] = {}
            for feature in FEATURES:
                per_feature[feature] = {
                    part: lead + _fractions(q[:, col + k]) + tail for k, part in enumerate(PARTS)
                }
                col += len(PARTS)
            forecast[label] = {"seconds": steps * step, **per_feature}
        missing = cfg.replica_missing
        replicas = {
            name: [None if v == missing else int(v) for v in r[:, k]] + pad
            for k, name in enumerate(_REPLICAS)
        }
        return {
            "t": [(first + k) * step for k in range(n + ahead)],
            "series": series,
            "forecast": forecast,
            "replicas": replicas,
            "score_ceiling": _TOP * cfg.score_unit,
        }


def _fractions(column: Sequence[int] | np.ndarray) -> list[float | None]:
    return [None if v == MISSING else v / FRACTION_SCALE for v in np.asarray(column).tolist()]


def _scaled(column: np.ndarray, unit: float) -> list[float | None]:
    return [None if v == MISSING else round(v * unit, 4) for v in column.tolist()]
