"""Where a real-time frame is tracked: whole-panel searches apart from the frames that follow.

Following the dome from one frame to the next costs a few milliseconds; searching the whole
panel for it (a stream's first frame, and the frame after the dome was lost) costs 70-90 ms of
CPU at 512 x 512. On one shared thread pool, streams that start together run their searches at
once, and the frames of the streams already tracking wait behind them for the CPU and the
interpreter lock: 16 streams starting within one frame period on two replicas of a 2-core
machine gave a p99 round trip of 36 ms, where it is 12 ms once every stream tracks.

So a frame that will search (:attr:`api.streaming.StreamMonitor.searching`) runs on a lane of
its own: ``IGRT_STREAM_SEARCH_THREADS`` threads (1), in arrival order, at a lower CPU priority
(nice +10 for those threads; Linux gives each thread its own nice value, so the process's other
threads keep theirs). Frames that follow run on the shared worker threads at normal priority.
A search costs what it did; it waits only behind other searches, so a stream's first result
comes later when many start at once, while the streams already tracking keep their pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
import numpy.typing as npt
from starlette.concurrency import run_in_threadpool

from api.streaming import AlertEvent, StreamMonitor
from igrt.geometry import ProjectionGeometry

__all__ = ["SEARCH_NICE", "FrameLanes"]

SEARCH_NICE = 10
"""How much the search threads' nice value is raised: at +10 the kernel's fair scheduler gives
a following frame about ten times a search's share of a busy core, so a search runs on what the
other frames leave (and at full speed on an idle machine)."""

_T = TypeVar("_T")


def _lower_priority() -> None:
    """Raise the calling thread's nice value (a search thread's initialiser)."""
    # Raising one's own nice value needs no privilege; where threads cannot have their own
    # (not Linux), leave the priority alone rather than slow the whole process.
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    with contextlib.suppress(OSError):
        thread = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, nice + SEARCH_NICE)


class FrameLanes:
    """Runs a stream's frames: searches on a few low-priority threads, the rest on the pool.

    Parameters
    ----------
    search_threads : int
        Searches run at once in this process (at least 1).
    """

    def __init__(self, search_threads: int) -> None:
        if search_threads < 1:
            raise ValueError("search_threads must be at least 1")
        self.search_threads = search_threads
        self._searches: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _search_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._searches is None:
                self._searches = ThreadPoolExecutor(
                    max_workers=self.search_threads,
                    thread_name_prefix="stream-search",
                    initializer=_lower_priority,
                )
            return self._searches

    async def process(
        self,
        monitor: StreamMonitor,
        frame: npt.NDArray[Any],
        time_s: float,
        geometry: ProjectionGeometry,
    ) -> tuple[dict[str, Any], AlertEvent | None]:
        """:meth:`StreamMonitor.process` on the lane the frame belongs to."""
        if monitor.searching:
            return await self._on_search_lane(monitor.process, frame, time_s, geometry)
        return await run_in_threadpool(monitor.process, frame, time_s, geometry)

    async def _on_search_lane(self, function: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the request id in the frame's log lines
        future = loop.run_in_executor(self._search_executor(), context.run, function, *args)
        # As on the shared pool: a cancelled caller still waits for its frame, so a stream's
        # next frame never runs on its tracker while this one does.
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    def shutdown(self) -> None:
        """Stop the search threads once their frames are done (idempotent)."""
        with self._lock:
            searches, self._searches = self._searches, None
        if searches is not None:
            searches.shutdown(wait=False, cancel_futures=True)
