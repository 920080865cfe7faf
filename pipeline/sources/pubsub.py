"""Pub/Sub source: JSON samples from a subscription, acknowledged only after Kafka took them.

Each message carries one sample in the JSON shape of :class:`~pipeline.records.MetricSample`.
Messages are pulled synchronously (in a worker thread) so the source decides exactly when
each one is acknowledged: the runner calls the batch's ``commit`` only after Kafka
acknowledged every produce, and ``commit`` acks exactly those messages. A crash in between
leaves them unacknowledged; Pub/Sub redelivers them once their ack deadline passes.

A message that is not a valid sample is not dropped here: its bytes are forwarded unchanged
to the metrics topic (keyed by its ordering key, or its ``namespace``/``deployment``
attributes), where the worker's dead-letter path records why it is unusable, and it is then
acknowledged like the others.

Set ``PUBSUB_EMULATOR_HOST`` (read by the Google client library itself) to use the emulator.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from google.api_core import exceptions as gexc
from pydantic import ValidationError

from pipeline.errors import ConfigError
from pipeline.records import MetricSample
from pipeline.settings import Settings
from pipeline.sources.base import Batch, RawRecord

log = logging.getLogger(__name__)

_TRANSIENT = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Aborted)


def subscription_path(subscription: str, project: str | None) -> str:
    """A full subscription path from a full path or a short name plus ``GCP_PROJECT_ID``.

    >>> subscription_path("helios", "shop")
    'projects/shop/subscriptions/helios'
    >>> subscription_path("projects/p/subscriptions/s", None)
    'projects/p/subscriptions/s'
    """
    if subscription.startswith("projects/"):
        parts = subscription.split("/")
        if len(parts) != 4 or parts[2] != "subscriptions" or not parts[1] or not parts[3]:
            raise ConfigError(f"--subscription {subscription!r}: expected projects/P/subscriptions/S")
        return subscription
    if "/" in subscription or not subscription:
        raise ConfigError(f"--subscription {subscription!r}: expected S or projects/P/subscriptions/S")
    if not project:
        raise ConfigError(f"GCP_PROJECT_ID is not set: needed to resolve --subscription {subscription!r}")
    return f"projects/{project}/subscriptions/{subscription}"


def raw_key(message: Any) -> bytes | None:
    """Best-effort Kafka key for a message that is not a valid sample."""
    if message.ordering_key:
        return str(message.ordering_key).encode()
    attrs = message.attributes
    if attrs and attrs.get("namespace") and attrs.get("deployment"):
        return f"{attrs['namespace']}/{attrs['deployment']}".encode()
    try:
        data = orjson.loads(message.data)
    except orjson.JSONDecodeError:
        return None
    if (
        isinstance(data, dict)
        and isinstance(data.get("namespace"), str)
        and isinstance(data.get("deployment"), str)
    ):
        return f"{data['namespace']}/{data['deployment']}".encode()
    return None


class PubSubSource:
    """Pulls a Pub/Sub subscription; one batch per pull.

    Parameters
    ----------
    settings
        Supplies ``GCP_PROJECT_ID`` for a short subscription name.
    subscription
        ``projects/P/subscriptions/S`` or ``S``.
    client
        A ``google.cloud.pubsub_v1.SubscriberClient`` (built if omitted).
    max_messages
        Most messages per pull (and per batch).
    pull_timeout
        Seconds one pull may wait for messages.
    idle_sleep
        Pause after an empty pull, so an idle subscription is not polled in a tight loop.
    """

    name = "pubsub"

    def __init__(
        self,
        settings: Settings,
        subscription: str,
        *,
        client: Any | None = None,
        max_messages: int = 500,
        pull_timeout: float = 10.0,
        idle_sleep: float = 0.2,
        backoff_max: float = 30.0,
    ) -> None:
        if not 1 <= max_messages <= 1000:
            raise ValueError(f"max_messages must be in 1..1000, got {max_messages}")
        if pull_timeout <= 0:
            raise ValueError(f"pull_timeout must be positive, got {pull_timeout}")
        self.subscription = subscription_path(subscription, settings.gcp_project_id)
        self.max_messages = max_messages
        self.pull_timeout = pull_timeout
        self.idle_sleep = idle_sleep
        self.backoff_max = backoff_max
        self._client = client
        self.invalid = 0

    def _subscriber(self) -> Any:
        if self._client is None:
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]

            self._client = pubsub_v1.SubscriberClient()
        return self._client

    def _pull(self) -> list[Any]:
        try:
            response = self._subscriber().pull(
                request={"subscription": self.subscription, "max_messages": self.max_messages},
                timeout=self.pull_timeout,
            )
        except gexc.DeadlineExceeded:
            return []
        return list(response.received_messages)

    def _ack(self, ack_ids: list[str]) -> None:
        # One acknowledge request takes at most 2500 ids; max_messages is <= 1000.
        self._subscriber().acknowledge(request={"subscription": self.subscription, "ack_ids": ack_ids})

    def decode(self, received: list[Any]) -> Batch:
        """Turn pulled messages into a batch whose commit acknowledges them (exposed for tests)."""
        samples: list[MetricSample] = []
        raw: list[RawRecord] = []
        for item in received:
            message = item.message
            try:
                sample = MetricSample.model_validate_json(message.data)
            except ValidationError as exc:
                self.invalid += 1
                why = exc.errors()[0]["msg"] if exc.errors() else str(exc)
                log.warning(
                    "pubsub message %s is not a valid sample (%s); forwarded for dead-lettering",
                    message.message_id,
                    why,
                )
                raw.append(RawRecord(raw_key(message), bytes(message.data), why))
                continue
            if sample.source is None:
                sample = sample.model_copy(update={"source": "pubsub"})
            samples.append(sample)
        ack_ids = [item.ack_id for item in received]

        async def commit() -> None:
            await asyncio.to_thread(self._ack, ack_ids)

        return Batch(samples, commit, raw)

    async def batches(self) -> AsyncIterator[Batch]:
        log.info("pubsub source pulling %s", self.subscription)
        backoff = 0.5
        while True:
            try:
                received = await asyncio.to_thread(self._pull)
            except _TRANSIENT as exc:
                log.warning("pubsub pull failed (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            backoff = 0.5
            if not received:
                await asyncio.sleep(self.idle_sleep)
                continue
            yield self.decode(received)
