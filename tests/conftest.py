"""Shared fixtures: real services, started once per session and left with no process behind."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.testing import free_port as free_port  # re-exported: the tests import it from here
from pipeline.testing import port_open

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TEST_KAFKA_PORT = 19092


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Apache Kafka broker (KRaft) from scripts/kafka-local; reused if `make test` started it."""
    given = os.environ.get("HELIOS_TEST_KAFKA")
    if given:
        host, _, port = given.rpartition(":")
        if port_open(host, int(port)):
            yield given
            return
    env = {
        **os.environ,
        "KAFKA_LOCAL_PORT": str(TEST_KAFKA_PORT),
        "KAFKA_LOCAL_CONTROLLER_PORT": str(TEST_KAFKA_PORT + 1),
    }
    started = False
    if not port_open("127.0.0.1", TEST_KAFKA_PORT):
        subprocess.run([str(REPO / "scripts" / "kafka-local"), "start"], env=env, check=True)
        started = True
    try:
        yield f"127.0.0.1:{TEST_KAFKA_PORT}"
    finally:
        if started:
            subprocess.run([str(REPO / "scripts" / "kafka-local"), "stop"], env=env, check=False)


@pytest.fixture
def unique() -> str:
    """A suffix that keeps one test's topics and consumer groups apart from another's."""
    return uuid.uuid4().hex[:10]
