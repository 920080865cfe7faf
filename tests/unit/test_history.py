"""The status page's history ring (:mod:`pipeline.history`), filled by the real Runtime from real stages."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from pipeline.errors import ConfigError
from pipeline.history import FRACTION_SCALE, DeploymentHistory, HistoryConfig
from pipeline.runtime import RawRecord
from pipeline.settings import load_settings
from pipeline.status_page import checked_key, deployment_html, session_cookie
from tests.unit.test_runtime_rules import KEY, STEP, T0, TOPIC, Clock, make_runtime

QUANTUM = 1 / FRACTION_SCALE


def cpu_at(i: int) -> float:
    return 0.45 + 0.2 * math.sin(i / 9)


def run(n: int, skip: range = range(0), **env: str) -> tuple[list, DeploymentHistory | None]:
    """``n`` windows of one deployment through the Runtime (windows in ``skip`` get no sample)."""
    clock = Clock(T0 + n * STEP)
    rt, _ = make_runtime(clock, HELIOS_SNAPSHOT_EVERY="1000", **env)
    outputs = []
    for i in range(n):
        if i in skip:
            continue
        body = {
            "namespace": "saleor",
            "deployment": "saleor-api",
            "timestamp": T0 + i * STEP + 5,
            "replicas": 3,
            "metrics": {"cpu_utilization": cpu_at(i), "memory_utilization": 0.4},
        }
        result = rt.process([RawRecord(KEY, json.dumps(body).encode(), TOPIC, 0, i)], lambda key: None)
        outputs += result.outputs
    return outputs, rt.entries["saleor/saleor-api"].history


def test_history_setting_takes_durations_and_names_itself_when_wrong() -> None:
    assert load_settings({}).history == 6 * 3600
    assert load_settings({"HELIOS_HISTORY": "90m"}).history == 5400
    assert load_settings({"HELIOS_HISTORY": "0"}).history == 0
    with pytest.raises(ConfigError, match="HELIOS_HISTORY=six hours: 'six hours' is not a duration"):
        load_settings({"HELIOS_HISTORY": "six hours"})
    with pytest.raises(ConfigError, match=r"HELIOS_HISTORY \(30 s\) must be 0 .* HELIOS_SCORING_INTERVAL"):
        load_settings({"HELIOS_HISTORY": "30s"})
    with pytest.raises(ConfigError, match="HELIOS_HISTORY=30d"):
        load_settings({"HELIOS_HISTORY": "30d"})


def test_the_ring_holds_the_last_windows_with_each_forecast_at_the_window_it_forecasts() -> None:
    outputs, history = run(150, HELIOS_HISTORY="1h")
    assert history is not None
    body = history.to_json()
    ahead = max(h["seconds"] for h in body["forecast"].values()) // STEP
    assert len(body["t"]) == 60 + ahead  # one hour of windows, then the future ones forecasts reach
    assert body["t"][0] == T0 + 90 * STEP and body["t"][59] == T0 + 149 * STEP
    cpu = body["series"]["cpu_utilization"]
    for k in range(60):
        assert cpu[k] == pytest.approx(cpu_at(90 + k), abs=QUANTUM / 2 + 1e-9)
    assert cpu[60:] == [None] * ahead
    # The 15m forecast made in window 120 is drawn at window 135, equal to the record sent on Kafka.
    made = next(o for o in outputs if o.forecast.timestamp.timestamp() == T0 + 120 * STEP)
    band = next(h for h in made.forecast.horizons if h.horizon == "15m").cpu_utilization
    assert band is not None
    at = body["t"].index(T0 + 135 * STEP)
    drawn = body["forecast"]["15m"]["cpu_utilization"]
    assert drawn["upper"][at] == pytest.approx(min(band.upper, 254 * QUANTUM), abs=QUANTUM + 1e-9)
    assert drawn["lower"][at] == pytest.approx(max(band.lower, 0.0), abs=QUANTUM + 1e-9)
    assert drawn["point"][:15] == [None] * 15  # made before the ring's first window
    assert body["replicas"]["current"][:60] == [3] * 60
    last = outputs[-1]
    assert body["replicas"]["recommended"][59] == last.recommendation.recommended_replicas
    assert body["series"]["action"][59] == last.decision.action


def test_windows_without_a_sample_are_gaps_and_a_narrower_window_is_the_tail() -> None:
    _, history = run(40, skip=range(30, 33), HELIOS_HISTORY="1h")
    assert history is not None
    body = history.to_json(window=15 * 60)
    assert len(body["t"]) == 15 + 60
    assert body["t"][0] == T0 + 25 * STEP
    cpu = body["series"]["cpu_utilization"]
    assert cpu[5:8] == [None, None, None] and None not in cpu[:5] + cpu[8:15]
    assert body["series"]["action"][5] is None and body["replicas"]["current"][5] is None
    assert history.latest() is not None and history.latest()["t"] == T0 + 39 * STEP  # type: ignore[index]


def test_closed_chunks_are_lossless_for_any_bytes_and_the_ring_reads_across_them() -> None:
    import numpy as np

    rng = np.random.default_rng(3)
    for dtype in (np.uint8, np.uint16):
        config = HistoryConfig(
            capacity=20, step_seconds=STEP, horizons=(("5m", 5),), threshold=2.5, replica_dtype=dtype, chunk=7
        )
        rows = rng.integers(0, 256, (7, config.width), dtype=np.uint8)  # wraps in every column
        assert np.array_equal(config.decode(config.encode(rows.tobytes())), rows)
        assert config.encode(config.absent_row * 7) == b""  # a chunk nothing arrived in costs nothing
        # A closed chunk's changes packed four, two or one to a byte by their size, at every row count
        # (a trimmed oldest chunk holds fewer): columns that change by at most 1, 7, 8 or anything.
        for n in (1, 2, 3, 4, 5, 6, 7):
            steps = np.stack([rng.integers(-r, r + 1, n) for r in (0, 1, 2, 7, 8, 127)], axis=1)
            walk = (np.cumsum(steps, axis=0) + 100).astype(np.uint8)
            rows = np.concatenate([walk, rng.integers(0, 256, (n, config.width - 6), dtype=np.uint8)], axis=1)
            blob = config.encode(rows.tobytes(), closed=True)
            assert np.array_equal(config.decode(blob, n, closed=True), rows)
            assert np.array_equal(config.decode(config.encode(rows.tobytes()), n), rows)
            for drop in range(n):  # the oldest chunk trimmed, from either form, reads as its last rows
                for closed in (True, False):
                    blob = config.trimmed(config.encode(rows.tobytes(), closed=closed), n, drop, closed)
                    assert np.array_equal(config.decode(blob, n - drop), rows[drop:])
    # The same windows through rings of 1-row, 7-row and 60-row chunks, with the open chunk's rows sealed
    # every 1, 2 or 3 rows or never, read the same, gaps and all.
    outputs, whole = run(100, skip=range(50, 64), HELIOS_HISTORY="1h")
    assert whole is not None and whole._sealed  # the default seals the open chunk's older rows
    for size, seal in ((1, 1), (7, 1), (7, 3), (7, 7), (60, 2), (60, 60)):
        chunked = DeploymentHistory(HistoryConfig(**{**_fields(whole.config), "chunk": size, "seal": seal}))
        replay(outputs, chunked)
        assert chunked.to_json() == whole.to_json()
        assert len(chunked._chunks) <= -(-60 // size)  # only the chunks the hour reaches into
        assert len(chunked._open) <= seal * whole.config.width
        assert chunked.latest() == whole.latest()


def test_a_late_window_overwrites_its_row_even_in_a_closed_chunk() -> None:
    outputs, whole = run(30, HELIOS_HISTORY="1h")
    assert whole is not None
    config = HistoryConfig(**{**_fields(whole.config), "chunk": 5, "seal": 2})
    ring = DeploymentHistory(config)
    late = outputs[12]
    replay([o for o in outputs if o is not late], ring)
    body = ring.to_json()
    at = body["t"].index(late.forecast.timestamp.timestamp())
    assert body["series"]["cpu_utilization"][at] is None and len(ring._chunks) >= 2  # in a closed chunk
    replay([late], ring)
    assert ring.to_json() == whole.to_json()
    # A late row among the sealed rows of the open chunk.
    ring = DeploymentHistory(HistoryConfig(**{**_fields(whole.config), "chunk": 60, "seal": 3}))
    replay([o for o in outputs if o is not late], ring)
    assert ring._sealed and ring.to_json() != whole.to_json()
    replay([late], ring)
    assert ring.to_json() == whole.to_json()


def _fields(config: HistoryConfig) -> dict[str, Any]:
    keys = ("capacity", "step_seconds", "horizons", "threshold", "replica_dtype", "decisions", "chunk")
    keys += ("seal",)
    return {k: getattr(config, k) for k in keys}


def replay(outputs: list, ring: DeploymentHistory) -> None:
    for o in outputs:
        ring.record(o.forecast.timestamp.timestamp(), o, o.recommendation.model_dump_json().encode())


def test_no_history_when_the_setting_is_zero() -> None:
    outputs, history = run(5, HELIOS_HISTORY="0")
    assert history is None and len(outputs) == 5


@pytest.mark.parametrize(("decisions", "expected"), [(1, [0, 10, 11]), (2, [0, 8, 10, 11])])
def test_a_scale_up_stays_listed_however_many_scale_downs_follow(decisions: int, expected: list[int]) -> None:
    config = HistoryConfig(
        capacity=10, step_seconds=STEP, horizons=(("5m", 5),), threshold=2.5, decisions=decisions
    )
    history = DeploymentHistory(config)

    def keep(kind: int, n: int) -> None:
        history._keep(kind, json.dumps({"timestamp": f"2026-01-01T00:{n:02d}:00Z", "n": n}).encode())
        history._kind = kind

    for n, kind in enumerate([1, 1, 1, 0, 2, 0, 2, 0, 2, 0, 2, 3, 3]):
        if kind:
            keep(kind, n)
        else:
            history._kind = 0
    kept = sorted(json.loads(raw)["n"] for b in history._notable for raw in config.unpack_kept(b))
    # The scale-up episode by its first decision; the last (two) scale-downs; the advice episode's first.
    assert kept == expected
    assert [r["n"] for r in history.recommendations()] == sorted(expected, reverse=True)  # newest first


def test_the_latest_record_is_kept_packed_after_each_batch_and_read_back_as_sent() -> None:
    clock = Clock(T0 + 10 * STEP)
    rt, _ = make_runtime(clock, HELIOS_SNAPSHOT_EVERY="1000")
    bodies = [
        {
            "namespace": "saleor",
            "deployment": "saleor-api",
            "timestamp": T0 + i * STEP + 5,
            "replicas": 3,
            "metrics": {"cpu_utilization": cpu_at(i), "memory_utilization": 0.4},
        }
        for i in range(8)
    ]
    records = [RawRecord(KEY, json.dumps(b).encode(), TOPIC, 0, i) for i, b in enumerate(bodies)]
    for batch in (records[:1], records[1:5], records[5:]):  # one sample, then several in a batch
        result = rt.process(batch, lambda key: None)
        history = rt.entries["saleor/saleor-api"].history
        assert history is not None
        sent = [e.value for e in result.emits if e.topic == rt.settings.topic_recommendations][-1]
        assert history._sent is None and history._latest is not None
        assert len(history._latest) < len(sent) / 3  # packed, not the record as sent
        assert json.loads(sent) in history.recommendations()
        assert history.recommendations()[0] == json.loads(sent)  # the newest first
    # Before it is settled, the ring serves the record as sent.
    out = result.outputs[-1]
    stamp = out.recommendation.timestamp.replace(year=2099)
    later = out.recommendation.model_copy(update={"timestamp": stamp})
    raw = later.model_dump_json().encode()
    history.record(out.forecast.timestamp.timestamp() + STEP, out, raw)
    assert history._sent is raw and history.recommendations()[0] == json.loads(raw)
    history.settle()
    assert history._sent is None and history.recommendations()[0] == json.loads(raw)


def test_pages_escape_names_and_check_them() -> None:
    page = deployment_html("ns", '"><script>alert(1)</script>', 6 * 3600, ["5m", "15m"])
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert 'data-history="/deployments/ns/%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E/history"' in page
    assert checked_key("shop", "api-1") == "shop/api-1"
    assert checked_key("shop", "../x") is None and checked_key("a" * 64, "api") is None
    assert session_cookie("secret") != "secret" and len(session_cookie("secret")) == 64


def test_a_ring_started_mid_chunk_holds_only_its_rows_and_takes_late_ones_before_them() -> None:
    outputs, whole = run(30, HELIOS_HISTORY="1h")
    assert whole is not None
    config = HistoryConfig(**{**_fields(whole.config), "chunk": 10, "seal": 2})
    checked = 0
    for k in range(12):
        fresh = DeploymentHistory(config)
        replay(outputs[k + 1 : k + 2], fresh)
        assert len(fresh._open) == config.width  # not the absent rows before it in its chunk
        if (outputs[k].forecast.timestamp.timestamp() // STEP) % 10 == 9:
            continue  # the late row would be in a chunk before the ring's first: never held
        later = outputs[k + 1 :] if k % 2 else outputs[k + 1 : k + 4]  # across chunks, or within one
        late = DeploymentHistory(config)
        replay(later, late)
        replay([outputs[k]], late)  # older than every row held, in the open chunk or a closed one
        ordered = DeploymentHistory(config)
        replay([outputs[k], *later], ordered)
        assert late.to_json() == ordered.to_json()
        checked += 1
    assert checked == 11


def _held(v: float | None) -> float | None:
    """What the ring promises to give back for a recorded utilisation (see pipeline/history.py)."""
    if v is None or v != v:
        return None
    return min(max(v, 0.0), 254 * QUANTUM)  # clipped to [0, 1.016], then within a step or half of one


def test_every_value_read_back_is_within_its_stated_resolution_on_adversarial_data() -> None:
    import dataclasses

    import numpy as np

    from pipeline.records import Band

    outputs, whole = run(70, HELIOS_HISTORY="1h")
    assert whole is not None
    n = len(outputs)
    cases: list[list[float | None]] = [
        [0.37] * n,  # constant
        [0.1 if i < n // 2 else 0.9 for i in range(n)],  # one step
        [(-1) ** i * 1e9 for i in range(n)],  # huge, both signs
        [1e-12 * (i % 3) for i in range(n)],  # tiny
        [math.nan if i % 4 == 0 else None if i % 4 == 1 else 0.5 for i in range(n)],  # missing
        [float(v) for v in np.random.default_rng(11).uniform(-0.1, 1.1, n)],  # across both clip points
    ]
    # Most rows in closed chunks, most of the others sealed.
    config = HistoryConfig(**{**_fields(whole.config), "chunk": 7, "seal": 2})
    for cpu, mem in zip(cases, cases[1:] + cases[:1], strict=True):
        ring = DeploymentHistory(config)
        for i, o in enumerate(outputs):
            point = cpu[(i + 3) % n]
            band = Band.model_construct(point=point, lower=mem[i], upper=cpu[i])
            forecast = o.forecast.model_copy(
                update={
                    "observed": o.forecast.observed.model_copy(
                        update={"cpu_utilization": cpu[i], "memory_utilization": mem[i]}
                    ),
                    "horizons": [h.model_copy(update={"cpu_utilization": band}) for h in o.forecast.horizons],
                }
            )
            ring.record(o.forecast.timestamp.timestamp(), dataclasses.replace(o, forecast=forecast), b"{}")
        assert len(ring._chunks) >= 8
        body = ring.to_json()
        first = body["t"][0]
        checked = 0
        for i, o in enumerate(outputs):
            k = int(o.forecast.timestamp.timestamp() - first) // STEP
            if k < 0:
                continue  # older than the ring reaches
            got = [body["series"]["cpu_utilization"][k], body["series"]["memory_utilization"][k]]
            want = [_held(cpu[i]), _held(mem[i])]
            for label, steps in config.horizons:
                drawn = body["forecast"][label]["cpu_utilization"]
                got += [drawn[part][k + steps] for part in ("point", "lower", "upper")]
                want += [_held(cpu[(i + 3) % n]), _held(mem[i]), _held(cpu[i])]
            # Actuals and points within half a step; band ends within one (their distance from the
            # point is rounded, not the end itself).
            bounds = [QUANTUM / 2] * 2 + [QUANTUM / 2, QUANTUM, QUANTUM] * len(config.horizons)
            for g, w, bound in zip(got, want, bounds, strict=True):
                assert (g is None) == (w is None), (i, got, want)
                assert g is None or w is None or abs(g - w) <= bound + 1e-12, (i, got, want)
                checked += 1
        assert checked >= 60 * (2 + 3 * len(config.horizons))


def test_a_symmetric_band_reads_back_symmetric_and_costs_a_closed_chunk_less() -> None:
    import dataclasses

    import numpy as np

    from pipeline.records import Band

    outputs, whole = run(80, HELIOS_HISTORY="1h")
    assert whole is not None
    config = HistoryConfig(**{**_fields(whole.config), "chunk": 20, "seal": 20})
    rng = np.random.default_rng(3)
    points = 0.2 + 0.6 * rng.random(len(outputs))
    widths = 0.05 + 0.1 * rng.random(len(outputs))
    ring, rounded_alone = DeploymentHistory(config), DeploymentHistory(config)
    for o, p, w in zip(outputs, points, widths, strict=True):
        band = Band.model_construct(point=float(p), lower=float(p - w), upper=float(p + w))
        horizons = [h.model_copy(update={"cpu_utilization": band}) for h in o.forecast.horizons]
        out = dataclasses.replace(o, forecast=o.forecast.model_copy(update={"horizons": horizons}))
        ring.record(o.forecast.timestamp.timestamp(), out, b"{}")
        # The same values if each end were rounded by itself: about half the bands one step lopsided.
        lopsided = Band.model_construct(
            point=float(p),
            lower=round(p * FRACTION_SCALE) * QUANTUM - round(w * FRACTION_SCALE) * QUANTUM,
            upper=round(p * FRACTION_SCALE) * QUANTUM
            + round(w * FRACTION_SCALE) * QUANTUM
            + QUANTUM * (rng.random() < 0.5),
        )
        horizons = [h.model_copy(update={"cpu_utilization": lopsided}) for h in o.forecast.horizons]
        out = dataclasses.replace(o, forecast=o.forecast.model_copy(update={"horizons": horizons}))
        rounded_alone.record(o.forecast.timestamp.timestamp(), out, b"{}")
    body = ring.to_json()
    checked = 0
    for label, _ in config.horizons:
        drawn = body["forecast"][label]["cpu_utilization"]
        for p, lo, up in zip(drawn["point"], drawn["lower"], drawn["upper"], strict=True):
            if p is not None:
                assert round((up - p) * FRACTION_SCALE) == round((p - lo) * FRACTION_SCALE)
                checked += 1
    assert checked > 100
    # Each lopsided band holds a coin's bit the symmetric one does not: half of it at least is saved.
    windows = len(ring._chunks) * config.chunk
    saved = sum(map(len, rounded_alone._chunks)) - sum(map(len, ring._chunks))
    assert saved >= len(config.horizons) * windows / 16


def test_the_openapi_schema_states_the_resolution_the_ring_keeps() -> None:
    import re

    from pipeline.history import _TOP, SCORE_STEPS
    from pipeline.openapi import openapi_spec

    schemas = openapi_spec()["components"]["schemas"]
    for model, fields, steps in (
        ("HistorySeries", ("cpu_utilization", "memory_utilization"), 0.5),
        ("BandHistory", ("point",), 0.5),
        ("BandHistory", ("lower", "upper"), 1.0),
    ):
        for name in fields:
            text = schemas[model]["properties"][name]["description"]
            scale, within, top = re.search(r"1/(\d+): within ([\d.]+) .* \[0, ([\d.]+)\]", text).groups()  # type: ignore[union-attr]
            assert (int(scale), float(within), float(top)) == (
                FRACTION_SCALE,
                steps / FRACTION_SCALE,
                _TOP / FRACTION_SCALE,
            )
    score = schemas["HistorySeries"]["properties"]["anomaly_score"]["description"]
    assert f"threshold / {SCORE_STEPS} (within threshold / {2 * SCORE_STEPS}" in score


def test_the_oldest_chunk_lets_go_of_the_rows_older_than_the_capacity_at_each_seal() -> None:
    outputs, whole = run(90, HELIOS_HISTORY="1h")
    assert whole is not None
    config = HistoryConfig(**{**_fields(whole.config), "capacity": 20, "chunk": 7, "seal": 3})
    narrow = HistoryConfig(**{**_fields(whole.config), "capacity": 20, "chunk": 1, "seal": 1})
    ring, exact = DeploymentHistory(config), DeploymentHistory(narrow)
    surplus, trimmed = [], 0
    for o in outputs:
        replay([o], ring)
        replay([o], exact)
        assert ring.to_json() == exact.to_json()  # what a request sees does not change
        held = len(ring._chunks) * config.chunk - ring._trim + (ring._last or 0) % config.chunk + 1
        surplus.append(held - config.capacity)
        trimmed = max(trimmed, ring._trim)
    # Without trimming the ring holds up to a chunk less one row past its capacity; with it, about a
    # seal's worth of rows (the raw rows before the next seal) and never fewer than the capacity.
    assert trimmed > 0 and min(surplus[25:]) >= 0
    assert max(surplus[25:]) <= config.seal + 1 < config.chunk - 1
