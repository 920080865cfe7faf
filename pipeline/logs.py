"""Logging for the worker and the ingester.

aiokafka retries a refused connection in a tight loop and logs every attempt: during a broker outage
that is thousands of lines a second, which buries everything else and costs CPU. Its loggers keep
their messages but each distinct message is let through at most once per ``window`` seconds, with a
count of what was held back; the outage itself is reported by ``/ready`` and ``helios_ready``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from pipeline.settings import Settings

#: Client libraries whose loggers are rate-limited and kept at WARNING unless Helios logs at DEBUG.
NOISY = ("aiokafka", "kafka")


class RateLimit(logging.Filter):
    """Let each distinct (logger, message template) through at most once per ``window`` seconds."""

    def __init__(self, window: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.window:
            self._last[key] = (last[0], last[1] + 1)
            return False
        held = 0 if last is None else last[1]
        self._last[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {self.window:.0f} s]"
        return True


_LIMIT = RateLimit()


def quiet_client_loggers(level: str) -> None:
    """Rate-limit the Kafka client's loggers (every one already created) and keep them at WARNING."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in NOISY] + list(NOISY)
    for name in names:
        logger = logging.getLogger(name)
        if _LIMIT not in logger.filters:
            logger.addFilter(_LIMIT)
        if level != "DEBUG":
            logger.setLevel(logging.WARNING)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    import aiokafka  # noqa: F401 - create its loggers so the filter reaches all of them

    quiet_client_loggers(settings.log_level)
