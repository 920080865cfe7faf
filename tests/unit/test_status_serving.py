"""The status page's serving side: the history bytes held between outputs, the static files' ETags.

A real (unstarted) app's Runtime is fed real samples; what the cache answers is checked against a
fresh build of the same body.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from pipeline.app import create_app
from pipeline.runtime import RawRecord
from pipeline.settings import load_settings
from pipeline.status_page import STATIC, HistoryCache, history_json, static_files

KEY = "saleor/saleor-api"
STEP = 60


class Fed:
    """A real app's Helios, fed one sample a window from ``start``."""

    def __init__(self, tmp_path: Path) -> None:
        settings = load_settings(
            {
                "HELIOS_DATA_DIR": str(tmp_path),
                "HELIOS_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                "HELIOS_SCORING_INTERVAL": str(STEP),
            }
        )
        self.helios: Any = create_app(settings, registry=CollectorRegistry()).helios  # type: ignore[attr-defined]
        self.start = (time.time() // STEP - 50) * STEP
        self.sent = 0

    def feed(self, n: int) -> None:
        records = []
        for _ in range(n):
            body = {
                "namespace": "saleor",
                "deployment": "saleor-api",
                "timestamp": self.start + self.sent * STEP + 5,
                "replicas": 3,
                "metrics": {"cpu_utilization": 0.3 + 0.01 * (self.sent % 7), "memory_utilization": 0.4},
            }
            records.append(RawRecord(KEY.encode(), json.dumps(body).encode(), "metrics", 0, self.sent))
            self.sent += 1
        self.helios.runtime.process(records, lambda key: None)


def test_the_history_is_built_once_per_output_and_equals_a_fresh_build(tmp_path: Path) -> None:
    fed = Fed(tmp_path)
    fed.feed(12)
    cache = HistoryCache()
    now = fed.helios.clock()
    first = cache.get(fed.helios, KEY, None, now)
    assert first is not None
    assert first == orjson.dumps(history_json(fed.helios, KEY, None, now))
    # Polled again before the next output: the same bytes, not a rebuild (``generated_at`` unchanged).
    assert cache.get(fed.helios, KEY, None, now + 5) is first
    fed.feed(1)
    second = cache.get(fed.helios, KEY, None, now + 10)
    assert second is not None and second is not first
    assert second == orjson.dumps(history_json(fed.helios, KEY, None, now + 10))
    assert orjson.loads(second)["t"][0] == orjson.loads(first)["t"][0] + STEP  # the ring moved on


def test_each_window_is_held_apart_and_the_least_recently_asked_for_goes_first(tmp_path: Path) -> None:
    fed = Fed(tmp_path)
    fed.feed(12)
    cache = HistoryCache(size=2)
    now = fed.helios.clock()
    short, long = cache.get(fed.helios, KEY, 300.0, now), cache.get(fed.helios, KEY, None, now)
    assert short is not None and long is not None and short != long
    assert cache.get(fed.helios, KEY, 300.0, now) is short
    cache.get(fed.helios, KEY, 600.0, now)  # a third window: the full one was asked for longest ago
    assert cache.get(fed.helios, KEY, 300.0, now) is short
    assert cache.get(fed.helios, KEY, None, now) is not long


def test_an_unknown_deployment_has_no_history(tmp_path: Path) -> None:
    fed = Fed(tmp_path)
    fed.feed(3)
    assert HistoryCache().get(fed.helios, "saleor/other", None, fed.helios.clock()) is None


def test_every_static_file_is_served_with_the_etag_of_its_bytes() -> None:
    files = static_files()
    on_disk = {p.name for p in STATIC.iterdir() if p.suffix in {".js", ".css", ".txt"}}
    assert set(files) == on_disk and {"status.js", "uPlot.iife.min.js"} <= on_disk
    for name, found in files.items():
        body = (STATIC / name).read_bytes()
        assert found.body == body
        assert found.etag == '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    assert len({f.etag for f in files.values()}) == len(files)
