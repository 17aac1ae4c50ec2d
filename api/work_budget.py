"""A process-wide budget for heavy work: decoding uploads, assessments, registrations.

Each piece of heavy work peaks at up to about twice ``IGRT_MAX_DECODED_BYTES`` (the bad-input
corpus measures it) and keeps a core busy for seconds. Without a bound, a burst of legal
uploads multiplies that peak until the process runs out of memory. :class:`WorkBudget` lets at
most ``max_concurrent`` of them run at once in this process, so the heavy-work peak stays near
``max_concurrent x 2 x max_decoded_bytes``:

- a request waits up to ``wait_s`` for a slot (a short burst is queued, not refused), then
  :class:`WorkBudgetExhaustedError` is raised, which ``api.errors`` answers with 503 and
  ``Retry-After`` (nothing was stored; the client sends it again later);
- a registration job waits for a slot as long as it takes, still ``queued`` (its time limit
  starts when it runs).

The budget is a counter under a condition variable, not a lock: a slot taken on one thread may
be given back on another (FastAPI may exit a dependency on another worker thread).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["WorkBudget", "WorkBudgetExhaustedError"]


class WorkBudgetExhaustedError(Exception):
    """Every heavy-work slot stayed taken for the whole wait; ``retry_after_s`` to come back."""

    def __init__(self, what: str, limit: int, retry_after_s: int) -> None:
        self.what = what
        self.limit = limit
        self.retry_after_s = retry_after_s
        super().__init__(
            f"the service is busy: {limit} heavy requests (uploads, assessments, "
            f"registrations) are running, the most it runs at once; nothing was done for this "
            f"request ({what}), retry in {retry_after_s} s"
        )


class WorkBudget:
    """At most ``max_concurrent`` heavy operations at once in this process (thread-safe).

    Parameters
    ----------
    max_concurrent : int
        Heavy operations running at once.
    wait_s : float
        How long :meth:`slot` waits for a free slot before refusing, s (0: refuse at once).
    """

    def __init__(self, *, max_concurrent: int, wait_s: float) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if not wait_s >= 0:
            raise ValueError("wait_s must be zero or positive")
        self.max_concurrent = max_concurrent
        self.wait_s = wait_s
        self._running = 0
        self._changed = threading.Condition()

    @property
    def running(self) -> int:
        """Slots taken now."""
        with self._changed:
            return self._running

    @property
    def retry_after_s(self) -> int:
        """What a refused client is told to wait, whole seconds (at least 1)."""
        return max(1, math.ceil(self.wait_s))

    def _take(self, timeout_s: float | None, stop: threading.Event | None = None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._changed:
            while self._running >= self.max_concurrent:
                if stop is not None and stop.is_set():
                    return False
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # Wake at least every second so a stop request is seen while waiting.
                self._changed.wait(min(remaining, 1.0))
            self._running += 1
            return True

    def _give_back(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify()

    @contextmanager
    def slot(self, what: str) -> Iterator[None]:
        """Hold a slot for one request's heavy work, waiting at most ``wait_s`` for it.

        Raises
        ------
        WorkBudgetExhaustedError
            No slot came free within ``wait_s``.
        """
        if not self._take(self.wait_s):
            raise WorkBudgetExhaustedError(what, self.max_concurrent, self.retry_after_s)
        try:
            yield
        finally:
            self._give_back()

    @contextmanager
    def slot_when_free(self, stop: threading.Event) -> Iterator[bool]:
        """Hold a slot for background work, waiting until one is free or ``stop`` is set.

        Yields whether a slot is held (False: the service is stopping; do not start).
        """
        taken = self._take(None, stop)
        try:
            yield taken
        finally:
            if taken:
                self._give_back()
