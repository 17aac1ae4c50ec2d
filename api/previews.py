"""Display images for the review page: fluoroscopy frames as 8-bit PNGs.

Frames are shown the way kV fluoroscopy is read: attenuation bright (bone and liver white, lung
dark), so raw panel counts are shown as ``-ln(counts)``. One grey window (the 0.5th to 99.5th
percentile of the first frame) serves the whole sequence, so the cine does not flicker. Stored
sequences never change (the store is content-addressed), so rendered windows are cached by
store path; the cache is bounded in bytes because a long clip at full resolution is large.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from api.ingest import read_stored_sequence
from api.storage import FileStore
from igrt.errors import InvalidInputError
from igrt.sequence import FluoroSequence, IntensityValues

__all__ = ["FramePreviews"]

_WINDOW_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True, eq=False)
class _Displayable:
    frames: npt.NDArray[Any]
    intensity: IntensityValues
    window: tuple[float, float]

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)


def _attenuation(frame: npt.NDArray[Any], intensity: IntensityValues) -> npt.NDArray[np.float32]:
    values = np.asarray(frame, dtype=np.float32)
    if intensity is IntensityValues.RAW:
        return -np.log(np.maximum(values, 1.0))
    return values


def _displayable(sequence: FluoroSequence) -> _Displayable:
    first = _attenuation(sequence.frames[0], sequence.intensity)
    low, high = np.percentile(first, _WINDOW_PERCENTILES)
    if not high > low:
        high = low + 1.0
    return _Displayable(sequence.frames, sequence.intensity, (float(low), float(high)))


class FramePreviews:
    """Frame PNGs of stored fluoroscopy, with a byte-bounded LRU cache of decoded sequences.

    Parameters
    ----------
    store : FileStore
        Where the canonical sequences are.
    max_cached_bytes : int, optional
        Decoded frames kept in memory at most, bytes.
    """

    def __init__(self, store: FileStore, *, max_cached_bytes: int = 256 * 1024 * 1024) -> None:
        self._store = store
        self._max_bytes = max_cached_bytes
        self._cache: OrderedDict[str, _Displayable] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, sequence_path: str) -> _Displayable:
        with self._lock:
            cached = self._cache.get(sequence_path)
            if cached is not None:
                self._cache.move_to_end(sequence_path)
                return cached
        # Read outside the lock: a slow read must not stall other clips' frames.
        loaded = _displayable(read_stored_sequence(self._store, sequence_path))
        with self._lock:
            self._cache[sequence_path] = loaded
            while len(self._cache) > 1 and sum(d.nbytes for d in self._cache.values()) > (
                self._max_bytes
            ):
                self._cache.popitem(last=False)
        return loaded

    def png(self, sequence_path: str, frame_index: int) -> bytes:
        """PNG bytes of one frame, attenuation bright, in the sequence's fixed window.

        Raises
        ------
        InvalidInputError
            ``frame_index`` is outside the sequence (``field`` ``frame_index``).
        """
        displayable = self._get(sequence_path)
        n_frames = int(displayable.frames.shape[0])
        if not 0 <= frame_index < n_frames:
            raise InvalidInputError(
                f"frame_index must be 0 to {n_frames - 1}, got {frame_index}", field="frame_index"
            )
        low, high = displayable.window
        values = _attenuation(displayable.frames[frame_index], displayable.intensity)
        grey = (np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0).round().astype(np.uint8)
        ok, encoded = cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 images
            raise RuntimeError("PNG encoding failed")
        return bytes(encoded.tobytes())
