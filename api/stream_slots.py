"""Slots for long-lived connections: a bound per service process and a bound per token.

A real-time stream (WebSocket or plain HTTP) or a live-monitor WebSocket holds a slot from the
moment it is authenticated until it ends. Without a per-token bound one token (a leaked console
token, a buggy client) could take every slot and lock the treatment rooms out; without the
service bound, memory and worker threads would grow with every open connection.

:meth:`StreamSlots.acquire` refuses at once (no waiting) with :class:`TooManyStreamsError`, whose
``scope`` says which bound was reached; the routes answer 429 (HTTP) or close 1013 "try again
later" (WebSocket). The counts live in this process's memory: issue 15's replicas replace this
class by one with the same methods on a shared store.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Literal

__all__ = ["StreamSlot", "StreamSlots", "TooManyStreamsError"]


class TooManyStreamsError(Exception):
    """No slot: ``scope`` is ``"service"`` (every slot taken) or ``"token"`` (this token's)."""

    def __init__(self, scope: Literal["service", "token"], limit: int) -> None:
        self.scope = scope
        self.limit = limit
        what = "this service keeps" if scope == "service" else "one token may hold"
        super().__init__(f"{limit} streams are open, the most {what}")


@dataclass(eq=False)
class StreamSlot:
    """One held slot; :meth:`StreamSlots.release` gives it back (once)."""

    token_id: str
    released: bool = False


class StreamSlots:
    """Counts of held slots, in total and per token (thread-safe).

    Parameters
    ----------
    max_total : int
        Most slots held at once in this process.
    max_per_token : int
        Most slots one token holds at once.
    """

    def __init__(self, *, max_total: int, max_per_token: int) -> None:
        if max_total < 1 or max_per_token < 1:
            raise ValueError("max_total and max_per_token must be at least 1")
        self.max_total = max_total
        self.max_per_token = max_per_token
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return sum(self._held.values())

    def held_by(self, token_id: str) -> int:
        """How many slots the token holds."""
        with self._lock:
            return self._held[token_id]

    def acquire(self, token_id: str) -> StreamSlot:
        """Take a slot for the token.

        Raises
        ------
        TooManyStreamsError
            The token's or the service's slots are all taken.
        """
        with self._lock:
            if self._held[token_id] >= self.max_per_token:
                raise TooManyStreamsError("token", self.max_per_token)
            if sum(self._held.values()) >= self.max_total:
                raise TooManyStreamsError("service", self.max_total)
            self._held[token_id] += 1
        return StreamSlot(token_id)

    def release(self, slot: StreamSlot) -> None:
        """Give the slot back (a second release does nothing)."""
        with self._lock:
            if slot.released:
                return
            slot.released = True
            self._held[slot.token_id] -= 1
            if self._held[slot.token_id] <= 0:
                del self._held[slot.token_id]
