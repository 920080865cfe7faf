"""Connection keyword arguments for aiokafka clients, from the one settings object.

The ingester's producer, the tests' consumers and admin clients all connect the same way:
bootstrap servers, security protocol, SASL credentials and TLS files. Secrets are read from
:class:`~pipeline.settings.Settings` (environment or mounted ``*_FILE``) and never logged.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import Settings


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and the admin client.

    Examples
    --------
    >>> from pipeline.settings import load_settings
    >>> kafka_client_kwargs(load_settings({"HELIOS_KAFKA_BOOTSTRAP": "b1:9092,b2:9092"}))
    {'bootstrap_servers': 'b1:9092,b2:9092', 'security_protocol': 'PLAINTEXT'}
    """
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL"):
        # Settings already refused SASL without mechanism, user and password.
        password = settings.kafka_sasl_password
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = password.get_secret_value() if password is not None else None
    if protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
            raise ConfigError(
                "HELIOS_KAFKA_SSL_CERTFILE and HELIOS_KAFKA_SSL_KEYFILE go together (certificate and its key)"
            )
        for var, path in (
            ("HELIOS_KAFKA_SSL_CAFILE", settings.kafka_ssl_cafile),
            ("HELIOS_KAFKA_SSL_CERTFILE", settings.kafka_ssl_certfile),
            ("HELIOS_KAFKA_SSL_KEYFILE", settings.kafka_ssl_keyfile),
        ):
            if path is not None and not path.is_file():
                raise ConfigError(f"{var}={path}: no such file")
        # Without a CA file the system trust store verifies the broker (a managed cluster).
        kwargs["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    return kwargs
