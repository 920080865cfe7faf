"""Session fixture: Google's Pub/Sub emulator on a free local port.

Import ``pubsub_emulator`` into a test module (``from tests.integration.pubsub_fixture import
pubsub_emulator``). It yields ``"127.0.0.1:PORT"`` with ``PUBSUB_EMULATOR_HOST`` set for the
Google client libraries, and kills the emulator's whole process group at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.fail("gcloud is not installed: the Pub/Sub tests need `gcloud beta emulators pubsub`")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp(prefix="helios-pubsub-")
    log_path = os.path.join(data_dir, "emulator.log")
    with open(log_path, "wb") as log_file:
        # A new session, so the Java child of the gcloud wrapper dies with the group.
        proc = subprocess.Popen(
            [
                gcloud,
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--host-port={address}",
                "--project=test",
                f"--data-dir={data_dir}",
                "--quiet",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    try:
        deadline = time.monotonic() + 60
        while not _answers("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log_path) as f:
                    pytest.fail(f"Pub/Sub emulator did not start on {address}:\n{f.read()[-2000:]}")
            time.sleep(0.2)
        os.environ["PUBSUB_EMULATOR_HOST"] = address
        yield address
    finally:
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)
