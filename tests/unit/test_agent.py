"""The pipeline agent under Faust's own test_context(): decode, run the stages, emit, observe."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any
from unittest.mock import patch

import pytest

from agents import wire
from pipeline.app import create_app
from pipeline.settings import load_settings


def _sample(t: float, cpu: float) -> bytes:
    return json.dumps(
        {
            "namespace": "saleor",
            "deployment": "saleor-api",
            "timestamp": t,
            "replicas": 2,
            "metrics": {"cpu_utilization": cpu, "memory_utilization": 0.5},
        }
    ).encode()


@pytest.mark.asyncio
async def test_agent_emits_three_records_per_sample_and_dead_letters_bad_ones(tmp_path: Any) -> None:
    # Five samples of one deployment fill its state's write interval once.
    settings = load_settings({"HELIOS_DATA_DIR": str(tmp_path), "HELIOS_SNAPSHOT_EVERY": "5"})
    app = create_app(settings, wire=wire)
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    helios = app.helios
    sent: list[tuple[str, bytes, bytes]] = []
    changelog: list[tuple[int, str]] = []

    async def fake_send(records: Any) -> None:
        sent.extend((r.topic, r.key, r.value) for r in records)

    def fake_changelog(partition: int, key: str, value: Any, **kw: Any) -> None:
        changelog.append((partition, key))

    agent = app.agents["helios-pipeline"]
    step = settings.scoring_interval
    start = math.floor(time.time() / step) * step - 10 * step
    with (
        patch.object(helios.output, "send", fake_send),
        patch.object(helios.state, "send_changelog", fake_changelog),
    ):
        async with agent.test_context() as a:
            for i in range(5):
                await a.put(_sample(start + i * step, 0.4 + 0.01 * i), key=b"saleor/saleor-api", partition=3)
            await a.put(b"{not json", key=b"saleor/saleor-api", partition=3)
            # The agent processes a part-filled batch once its queue is dry for LINGER seconds.
            await asyncio.sleep(0.5)
    topics = [t for t, _, _ in sent]
    assert topics.count(settings.topic_forecasts) == 5
    assert topics.count(settings.topic_anomalies) == 5
    assert topics.count(settings.topic_recommendations) == 5
    dlq = [json.loads(v) for t, _, v in sent if t == settings.topic_dlq]
    assert [d["reason"] for d in dlq] == ["not_json"]
    # The deployment's state and the partition's next-offset marker, both on the record's partition.
    assert set(changelog) == {(3, "saleor/saleor-api"), (3, "~next-offset/3")}
    assert (
        helios.registry.get_sample_value(
            "helios_recommended_replicas", {"namespace": "saleor", "deployment": "saleor-api"}
        )
        is not None
    )
