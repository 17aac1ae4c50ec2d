"""Whole-panel searches run on a lane of their own, one at a time at a lower CPU priority, and
the frames of streams already tracking pass them (api.frame_lanes)."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import numpy as np
import pytest

from api.frame_lanes import SEARCH_NICE, FrameLanes
from api.streaming import StreamMonitor
from igrt.protocol import DEFAULT_PROTOCOL
from igrt.sequence import FluoroSequence
from igrt.tracking import TrackerSettings

_WAIT_S = 10.0


def test_a_monitor_searches_on_its_first_frame_and_after_losing_the_dome(
    fluoro_sequence: FluoroSequence,
) -> None:
    clip = fluoro_sequence
    monitor = StreamMonitor(
        DEFAULT_PROTOCOL,
        TrackerSettings(),
        clip.intensity,
        window_s=8.0,
        reference_window_s=4.0,
    )
    assert monitor.searching
    states = []
    for frame, time_s, geometry in zip(
        clip.frames[:3], clip.timestamps_s, clip.geometries, strict=False
    ):
        result, _ = monitor.process(frame, float(time_s), geometry)
        assert result["dome"]["status"] != "lost"
        states.append(monitor.searching)
    assert states == [False, False, False]
    noise = np.random.default_rng(1).integers(1000, 1100, clip.frames[0].shape, dtype=np.uint16)
    result, _ = monitor.process(noise, float(clip.timestamps_s[3]), clip.geometries[3])
    assert result["dome"]["status"] == "lost"
    assert monitor.searching  # the tracker starts over on the next frame


class _FakeMonitor:
    """A stream whose frames wait for ``release`` and record where they ran."""

    def __init__(self, name: str, searching: bool, log: list[tuple[str, str, int]]) -> None:
        self.name = name
        self.searching = searching
        self.started = threading.Event()
        self.release = threading.Event()
        self._log = log

    def process(self, frame: Any, time_s: float, geometry: Any) -> tuple[dict[str, Any], None]:
        thread = threading.get_native_id()
        self._log.append(
            (self.name, threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, thread))
        )
        self.started.set()
        assert self.release.wait(_WAIT_S)
        return {"stream": self.name}, None


async def _started(monitor: _FakeMonitor) -> None:
    assert await asyncio.to_thread(monitor.started.wait, _WAIT_S)


def test_searches_run_one_at_a_time_at_a_lower_priority_and_following_frames_pass_them() -> None:
    log: list[tuple[str, str, int]] = []
    first, second = _FakeMonitor("first", True, log), _FakeMonitor("second", True, log)
    tracking = _FakeMonitor("tracking", False, log)
    tracking.release.set()
    lanes = FrameLanes(search_threads=1)

    async def scenario() -> list[str]:
        def process(monitor: _FakeMonitor) -> Any:
            return lanes.process(monitor, None, 0.0, None)  # type: ignore[arg-type]

        searches = [asyncio.ensure_future(process(first))]
        await _started(first)
        searches.append(asyncio.ensure_future(process(second)))
        # A stream already tracking is answered while the first search still runs and the
        # second waits for it.
        answer, _ = await asyncio.wait_for(process(tracking), _WAIT_S)
        assert answer == {"stream": "tracking"}
        assert not second.started.is_set()
        first.release.set()
        await _started(second)
        second.release.set()
        return [answer["stream"] for answer, _ in await asyncio.gather(*searches)]

    try:
        assert asyncio.run(scenario()) == ["first", "second"]
    finally:
        first.release.set()
        second.release.set()
        lanes.shutdown()
    where = {name: (thread, nice) for name, thread, nice in log}
    normal = os.getpriority(os.PRIO_PROCESS, 0)
    assert where["first"][0].startswith("stream-search")
    assert where["second"][0] == where["first"][0]  # one search thread
    assert not where["tracking"][0].startswith("stream-search")
    assert where["tracking"][1] == normal
    expected = min(normal + SEARCH_NICE, 19)  # the kernel caps nice values at 19
    assert where["first"][1] == expected


def test_a_lane_needs_a_search_thread() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FrameLanes(search_threads=0)
