"""The open plain-HTTP real-time streams of one service process (in memory, bounded).

A WebSocket keeps its stream's state in its connection; over plain HTTP each frame is a request
of its own, so the state (the :class:`~api.streaming.StreamMonitor` and the panel geometry) is
kept here between requests, keyed by a random stream id. Like the WebSocket's, this state is
real-time only and never persisted: a restart loses every open stream (the client starts a new
one; the audit trail keeps the ``stream.open`` of the lost one without its ``stream.close``).

Bounded three times: each stream holds a slot of :class:`~api.stream_slots.StreamSlots` (a bound
per process shared with the WebSockets, and a bound per token; the next start is refused), and a
stream that gets no frame for ``idle_timeout_s`` is closed (reason ``idle_timeout``) when any
stream is next opened or used.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from api.security import Principal
from api.stream_slots import StreamSlot, StreamSlots, TooManyStreamsError
from api.streaming import StreamMonitor
from igrt.geometry import ProjectionGeometry

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_MAX_STREAMS_PER_TOKEN",
    "HttpStream",
    "HttpStreamRegistry",
    "TooManyStreamsError",
]

DEFAULT_MAX_STREAMS = 32
"""Open streams per service process (a treatment room streams one at a time)."""

DEFAULT_MAX_STREAMS_PER_TOKEN = 16
"""Open streams (WebSocket and HTTP) one token may hold: half the process's slots."""

DEFAULT_IDLE_TIMEOUT_S = 60.0
"""A stream without a frame for this long is closed, s (fluoroscopy runs at 2-30 fps)."""


@dataclass(eq=False)
class HttpStream:
    """One open stream: who opened it, on which session, and its tracking state."""

    stream_id: str
    session_id: str
    principal: Principal
    monitor: StreamMonitor
    geometry: ProjectionGeometry
    last_used_s: float
    slot: StreamSlot
    # Frames of one stream are tracked one after the other: the tracker is sequential.
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    closed: bool = False


class HttpStreamRegistry:
    """The open streams, with their bound and idle timeout.

    Parameters
    ----------
    max_streams : int
        Most streams open at once (when ``slots`` is not given).
    idle_timeout_s : float
        A stream without a frame for this long is closed, s.
    clock : callable, optional
        Monotonic seconds (tests pass a fake one).
    slots : StreamSlots, optional
        The service's stream slots (shared with the WebSockets); ``max_streams`` slots of
        this registry's own, with no per-token bound, when omitted.
    """

    def __init__(
        self,
        *,
        max_streams: int = DEFAULT_MAX_STREAMS,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        slots: StreamSlots | None = None,
    ) -> None:
        if max_streams < 1 or not idle_timeout_s > 0:
            raise ValueError("max_streams must be at least 1 and idle_timeout_s positive")
        self.slots = (
            slots
            if slots is not None
            else StreamSlots(max_total=max_streams, max_per_token=max_streams)
        )
        self.max_streams = self.slots.max_total
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._streams: dict[str, HttpStream] = {}
        # Routes run on the event loop and in worker threads alike.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)

    def expire(self) -> list[HttpStream]:
        """Close the streams idle for longer than the timeout; the closed ones (to audit)."""
        now = self._clock()
        with self._lock:
            idle = [
                stream
                for stream in self._streams.values()
                if now - stream.last_used_s > self.idle_timeout_s
            ]
            for stream in idle:
                stream.closed = True
                del self._streams[stream.stream_id]
                self.slots.release(stream.slot)
        return idle

    def reserve(self, principal: Principal) -> StreamSlot:
        """Take a slot for a stream about to be opened by ``principal`` (in memory, no wait).

        Pass it to :meth:`open`, or give it back with :meth:`release_unused` if the stream is
        not opened after all.

        Raises
        ------
        TooManyStreamsError
            The service's or the token's slots are taken (call :meth:`expire` first to make
            room).
        """
        return self.slots.acquire(principal.token_id)

    def release_unused(self, slot: StreamSlot) -> None:
        """Give back a reserved slot, unless an open stream holds it (then :meth:`close` does)."""
        with self._lock:
            if any(stream.slot is slot for stream in self._streams.values()):
                return
        self.slots.release(slot)

    def open(
        self,
        session_id: str,
        principal: Principal,
        monitor: StreamMonitor,
        geometry: ProjectionGeometry,
        *,
        slot: StreamSlot | None = None,
    ) -> HttpStream:
        """Register a new stream, in ``slot`` (from :meth:`reserve`) or in a slot taken now.

        Raises
        ------
        TooManyStreamsError
            No slot was given and the service's or the token's slots are taken (call
            :meth:`expire` first to make room).
        """
        if slot is None:
            slot = self.slots.acquire(principal.token_id)
        elif slot.released or slot.token_id != principal.token_id:
            raise ValueError("the slot is not one reserved for this token")
        with self._lock:
            stream = HttpStream(
                stream_id=uuid.uuid4().hex,
                session_id=session_id,
                principal=principal,
                monitor=monitor,
                geometry=geometry,
                last_used_s=self._clock(),
                slot=slot,
            )
            self._streams[stream.stream_id] = stream
            return stream

    def get(self, stream_id: str, session_id: str, principal: Principal) -> HttpStream | None:
        """The open stream, if it is this session's and was opened with this token; marks it used.

        Another token's stream is not found: the id alone must not let a second client feed
        or stop a console's stream.
        """
        with self._lock:
            stream = self._streams.get(stream_id)
            if (
                stream is None
                or stream.session_id != session_id
                or stream.principal.token_id != principal.token_id
            ):
                return None
            stream.last_used_s = self._clock()
            return stream

    def close(self, stream: HttpStream) -> bool:
        """Forget the stream; whether it was still open (a concurrent stop or expiry may win)."""
        with self._lock:
            if self._streams.get(stream.stream_id) is not stream:
                return False
            stream.closed = True
            del self._streams[stream.stream_id]
            self.slots.release(stream.slot)
            return True
