"""Pub/Sub source without the emulator: names, decoding, what commit acknowledges."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.errors import ConfigError
from pipeline.records import MetricSample
from pipeline.settings import load_settings
from pipeline.sources.pubsub import PubSubSource, raw_key, subscription_path

GOOD = (
    b'{"namespace":"saleor","deployment":"saleor-api","timestamp":"2024-01-01T00:00:00Z",'
    b'"metrics":{"cpu_utilization":0.4}}'
)


def received(ack_id: str, data: bytes, ordering_key: str = "", **attributes: str) -> Any:
    message = SimpleNamespace(data=data, ordering_key=ordering_key, attributes=attributes, message_id=ack_id)
    return SimpleNamespace(ack_id=ack_id, message=message)


class RecordingSubscriber:
    def __init__(self) -> None:
        self.acked: list[dict[str, Any]] = []

    def acknowledge(self, request: dict[str, Any]) -> None:
        self.acked.append(request)


def test_subscription_path_forms() -> None:
    assert subscription_path("helios", "shop") == "projects/shop/subscriptions/helios"
    assert subscription_path("projects/a/subscriptions/b", None) == "projects/a/subscriptions/b"
    with pytest.raises(ConfigError, match="GCP_PROJECT_ID"):
        subscription_path("helios", None)
    with pytest.raises(ConfigError, match="projects/P/subscriptions/S"):
        subscription_path("projects/a/topics/b", "x")


async def test_decode_keeps_valid_samples_and_forwards_invalid_bytes() -> None:
    client = RecordingSubscriber()
    source = PubSubSource(load_settings({"GCP_PROJECT_ID": "shop"}), "helios", client=client)
    batch = source.decode(
        [
            received("a1", GOOD),
            received("a2", b"\xff not json", ordering_key="saleor/saleor-api"),
            received("a3", b'{"namespace":"saleor","deployment":"x","metrics":{}}'),
            received("a4", b"[]", namespace="ns", deployment="dep"),
        ]
    )
    assert [s.key for s in batch.samples] == ["saleor/saleor-api"]
    assert batch.samples[0].source == "pubsub"
    assert batch.samples[0] == MetricSample.model_validate_json(GOOD).model_copy(update={"source": "pubsub"})
    assert [(r.key, r.value) for r in batch.raw] == [
        (b"saleor/saleor-api", b"\xff not json"),
        (b"saleor/x", b'{"namespace":"saleor","deployment":"x","metrics":{}}'),
        (b"ns/dep", b"[]"),
    ]
    assert source.invalid == 3
    assert client.acked == []  # nothing is acknowledged before commit
    await batch.commit()
    assert client.acked == [
        {"subscription": "projects/shop/subscriptions/helios", "ack_ids": ["a1", "a2", "a3", "a4"]}
    ]


def test_raw_key_without_any_hint_is_none() -> None:
    assert raw_key(received("x", b"garbage").message) is None
