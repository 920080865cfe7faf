"""A worker that always stops: the stop deadline behind ``HELIOS_SHUTDOWN_TIMEOUT``.

A graceful stop lets the batch in flight finish (outputs acknowledged by Kafka, then its state written),
and Faust commits the offsets acknowledged so far. Two things can hold a stop up for ever, and neither
can be fixed from here:

* a batch whose outputs cannot be delivered (the broker is away): Faust's consumer waits for every
  event handed to the agent to be acknowledged before it stops ("Wait for streams..."), and the
  output sender retries until Kafka has the outputs, which is the at-least-once guarantee;
* Faust's consumer thread, which is not a daemon thread: when its aiokafka consumer does not finish
  closing (a rebalance or a coordinator request in flight), the event loop ends, the thread stays, and
  the interpreter waits for it in ``threading._shutdown`` with nothing left to end it.

So the stop has a deadline. :meth:`StopDeadline.arm` starts it when the stop begins; a daemon thread
ends the process when it passes, and :meth:`StopDeadline.leave` ends it at once once the event loop
is closed, if only stray threads are left. Whatever was not committed by then is read again by the
partition's next owner, as after a crash: outputs are at-least-once, the state counts every sample once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Seconds stray threads get to end once the event loop has closed (the consumer thread closing its
#: sockets ends well within it; one that is stuck would never end).
LEAVE_GRACE = 2.0


class StopDeadline:
    """Ends the process ``timeout`` seconds after :meth:`arm`, whatever is still running.

    ``exit`` (``os._exit`` by default: it does not wait for threads) and ``clock`` are injectable,
    so the deadline is tested without ending the test run.

    Examples
    --------
    >>> codes = []
    >>> deadline = StopDeadline(0.05, exit=codes.append)
    >>> deadline.arm()
    >>> deadline.wait(1.0)
    True
    >>> codes
    [1]
    """

    def __init__(
        self,
        timeout: float,
        *,
        exit: Callable[[int], object] = os._exit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.timeout = timeout
        self._exit = exit
        self._clock = clock
        self._armed_at: float | None = None
        self._fired = threading.Event()
        self._lock = threading.Lock()

    @property
    def armed(self) -> bool:
        return self._armed_at is not None

    def remaining(self) -> float:
        """Seconds left before the deadline (the whole timeout while it is not armed)."""
        if self._armed_at is None:
            return self.timeout
        return max(0.0, self._armed_at + self.timeout - self._clock())

    def arm(self, code: int = 1) -> None:
        """Start the deadline (once; a second call keeps the first deadline). ``code``: the exit status
        if it passes (1 by default: the stop was cut short)."""
        with self._lock:
            if self._armed_at is not None:
                return
            self._armed_at = self._clock()
        log.info("stopping: the worker exits within %.0f s", self.timeout)
        threading.Thread(target=self._watch, args=(code,), name="helios-stop-deadline", daemon=True).start()

    def wait(self, timeout: float) -> bool:
        """Block until the deadline fired or ``timeout`` passed; True if it fired."""
        return self._fired.wait(timeout)

    def _watch(self, code: int) -> None:
        while (left := self.remaining()) > 0:
            time.sleep(min(left, 0.1))
        self._end(code, f"the stop did not finish within {self.timeout:.0f} s (HELIOS_SHUTDOWN_TIMEOUT)")

    def leave(self, code: int, threads: Callable[[], list[threading.Thread]] | None = None) -> None:
        """The event loop has closed: give stray non-daemon threads ``LEAVE_GRACE`` seconds, then exit.

        Returns (and lets the interpreter exit normally) if no such thread is left.
        """
        stray = (threads or _stray_threads)()
        end = self._clock() + min(LEAVE_GRACE, self.remaining())
        for thread in stray:
            thread.join(max(0.0, end - self._clock()))
        alive = [t.name for t in stray if t.is_alive()]
        if alive:
            self._end(code, f"threads still running after the event loop closed: {', '.join(alive)}")

    def _end(self, code: int, why: str) -> None:
        if self._fired.is_set():
            return
        log.warning(
            "%s; exiting now. What was not committed is read again by the partitions' next owner", why
        )
        _flush_logs()
        self._fired.set()
        self._exit(code)


def _stray_threads() -> list[threading.Thread]:
    me = threading.current_thread()
    return [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]


def _flush_logs() -> None:
    # os._exit skips logging's own shutdown: what the handlers buffered would be lost.
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # a broken handler must not stop the exit
            handler.flush()
