"""Creating Helios' topics with the partition count the settings name, before anything subscribes.

Faust does not declare an agent's source topic, and a topic auto-created by the first producer gets
the broker's default partition count, which then disagrees with the state table's changelog (the
co-partitioning Faust relies on). So the worker and the ingester both call :func:`ensure_topics`.
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pipeline.errors import ConfigError
from pipeline.kafka_config import kafka_client_kwargs
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.topic_metrics,
        settings.topic_forecasts,
        settings.topic_anomalies,
        settings.topic_recommendations,
        settings.topic_dlq,
    ]


async def ensure_topics(settings: Settings) -> None:
    """Create missing topics; refuse to run if the metrics topic has another partition count."""
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topic_names(settings) if name not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, settings.topic_partitions, settings.topic_replicas) for n in missing]
                )
                log.info("created topics %s with %d partitions", missing, settings.topic_partitions)
            except TopicAlreadyExistsError:
                pass  # another worker or the ingester won the race
        if settings.topic_metrics in existing:
            described = await admin.describe_topics([settings.topic_metrics])
            found = len(described[0].get("partitions", []))
            if found and found != settings.topic_partitions:
                raise ConfigError(
                    f"HELIOS_TOPIC_PARTITIONS={settings.topic_partitions} but topic {settings.topic_metrics} "
                    f"has {found} partitions: set it to {found}"
                )
    finally:
        await admin.close()
