"""A kV fluoroscopy or CBCT projection sequence: frames, timestamps and per-frame geometry."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError, InvalidInputError
from igrt.geometry import ProjectionGeometry

__all__ = ["FluoroSequence", "IntensityValues"]


class IntensityValues(enum.Enum):
    """What a frame's pixel values mean."""

    RAW = "raw"
    """Detected panel signal: bright where little is attenuated (lung), dark under the liver."""

    LINE_INTEGRAL = "line_integral"
    """Log-normalised ``-ln(I / I0)``: bright where much is attenuated (liver, bone)."""

    DISPLAY = "display"
    """Grey levels prepared for viewing (windowed, gamma- or video-encoded), lung dark as in a
    MONOCHROME2 radiograph: they rise with attenuation but not linearly. An inverted display
    (lung bright, MONOCHROME1) must be inverted by its reader before it is called this."""


_SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64)


@dataclass(frozen=True, eq=False)
class FluoroSequence:
    """Frames acquired by one kV imager, with a time and a geometry for every frame.

    Parameters
    ----------
    frames : numpy.ndarray
        Shape ``(n_frames, rows, columns)``; integer panel counts or floating values. The array
        is made read-only.
    timestamps_s : array_like of float
        Acquisition time of each frame in seconds, strictly increasing.
    geometries : sequence of ProjectionGeometry
        One per frame (the gantry angle may change between frames); each must match the
        frame shape.
    intensity : IntensityValues, optional
        Meaning of the pixel values; raw panel signal by default.

    Raises
    ------
    InvalidInputError
        Wrong dimensionality or dtype, empty sequence, NaN/inf pixels, timestamps that are
        not finite or not strictly increasing.
    GeometryError
        Missing geometry, wrong count, or a detector shape that differs from the frames.
    """

    frames: npt.NDArray[Any]
    timestamps_s: npt.NDArray[np.float64]
    geometries: tuple[ProjectionGeometry, ...]
    intensity: IntensityValues = IntensityValues.RAW

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames)
        if frames.ndim != 3:
            raise InvalidInputError(
                f"frames must be (n_frames, rows, columns), got shape {frames.shape}",
                field="frames",
            )
        if frames.shape[0] == 0:
            raise InvalidInputError("the sequence has no frames", field="frames")
        if frames.dtype.type not in _SUPPORTED_DTYPES:
            raise InvalidInputError(f"unsupported frame dtype {frames.dtype}", field="frames")
        if np.issubdtype(frames.dtype, np.floating) and not np.all(np.isfinite(frames)):
            raise InvalidInputError("frames hold NaN or infinite pixels", field="frames")
        timestamps = np.asarray(self.timestamps_s, dtype=np.float64)
        if timestamps.shape != (frames.shape[0],):
            raise InvalidInputError(
                f"need one timestamp per frame ({frames.shape[0]}), got shape {timestamps.shape}",
                field="timestamps_s",
            )
        if not np.all(np.isfinite(timestamps)):
            raise InvalidInputError("timestamps must be finite", field="timestamps_s")
        if np.any(np.diff(timestamps) <= 0):
            raise InvalidInputError("timestamps must be strictly increasing", field="timestamps_s")
        if isinstance(self.geometries, ProjectionGeometry):
            raise GeometryError(
                "geometries needs one ProjectionGeometry per frame; use with_fixed_geometry "
                "for a fixed gantry",
                field="geometries",
            )
        geometries = tuple(self.geometries) if self.geometries is not None else ()
        if len(geometries) != frames.shape[0]:
            raise GeometryError(
                f"need one geometry per frame ({frames.shape[0]}), got {len(geometries)}",
                field="geometries",
            )
        for index, geometry in enumerate(geometries):
            if not isinstance(geometry, ProjectionGeometry):
                raise GeometryError(f"geometry {index} is not a ProjectionGeometry")
            if geometry.detector_shape != frames.shape[1:]:
                raise GeometryError(
                    f"geometry {index} describes a {geometry.detector_shape} panel but the "
                    f"frames are {frames.shape[1:]}",
                    field="geometries",
                )
        frames = frames.view()  # read-only view; the caller's array keeps its flags
        frames.flags.writeable = False
        timestamps.flags.writeable = False
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "timestamps_s", timestamps)
        object.__setattr__(self, "geometries", geometries)

    @classmethod
    def with_fixed_geometry(
        cls,
        frames: npt.NDArray[Any],
        timestamps_s: npt.ArrayLike,
        geometry: ProjectionGeometry,
        intensity: IntensityValues = IntensityValues.RAW,
    ) -> FluoroSequence:
        """A fluoroscopy sequence at one gantry angle (every frame shares ``geometry``)."""
        return cls(
            frames,
            np.asarray(timestamps_s, np.float64),
            (geometry,) * int(np.shape(frames)[0]),
            intensity,
        )

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])

    @property
    def gantry_deg(self) -> npt.NDArray[np.float64]:
        """Per-frame kV source angle, degrees."""
        return np.array([g.gantry_deg for g in self.geometries])

    @property
    def duration_s(self) -> float:
        """Time from the first to the last frame, seconds."""
        return float(self.timestamps_s[-1] - self.timestamps_s[0])

    def subset(self, indices: Sequence[int] | slice) -> FluoroSequence:
        """Frames selected by ``indices`` (a slice or a sequence of indices), geometry kept."""
        selection = np.arange(self.n_frames)[indices]
        return FluoroSequence(
            self.frames[selection],
            self.timestamps_s[selection],
            tuple(self.geometries[i] for i in selection),
            self.intensity,
        )
