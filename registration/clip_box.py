"""The registration clip box: an axis-aligned box in DICOM patient (LPS) coordinates.

The clip box says *which anatomy* the rigid registration aligns: the liver and the right
diaphragm dome, not the spine or the ribs far from the target. It is given in the planning
frame (LPS mm), so it selects planning-CT anatomy; the metric is evaluated at planning-CT points
inside it and at the CBCT points they map to (``STYLE.md`` pitfall 11: the metric's domain is
the clip box, never the whole planning CT).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from igrt.volume import Volume
from registration.errors import ClipBoxError

__all__ = ["DEFAULT_DOME_BOX_EXTENT_MM", "ClipBox", "volume_bounds_lps_mm"]

DEFAULT_DOME_BOX_EXTENT_MM: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] = (
    (-50.0, 50.0),
    (-60.0, 50.0),
    (-60.0, 30.0),
)
"""Automatic box around the right dome apex: ``(below, above)`` offsets along LPS x, y, z, mm.

100 mm laterally and 110 mm antero-posteriorly centred near the apex, from 60 mm below the
apex (the upper liver) to 30 mm above it (the lung base, so the dome edge is inside with room to
move by the capture range): the dome and the liver dominate, the spine and the anterior body
wall stay mostly outside. Multiples of 4 mm so every pyramid level tiles it exactly.
"""

_MIN_SIZE_MM = 20.0


def _as_point(value: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    try:
        point = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ClipBoxError(f"{name} must be 3 numbers: {error}", field=name) from None
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise ClipBoxError(f"{name} must be 3 finite numbers, got {value!r}", field=name)
    return point


def volume_bounds_lps_mm(
    volume: Volume,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Axis-aligned LPS bounds of a volume's voxel *centres*, mm (any direction cosines).

    Parameters
    ----------
    volume : igrt.volume.Volume
        Any volume.

    Returns
    -------
    lower, upper : numpy.ndarray
        ``(3,)`` smallest and largest LPS coordinates of the eight corner voxel centres.
    """
    shape = np.asarray(volume.shape_ijk, dtype=np.float64) - 1.0
    corners = np.array(
        [[i, j, k] for i in (0.0, shape[0]) for j in (0.0, shape[1]) for k in (0.0, shape[2])]
    )
    points = volume.lps_from_index(corners)
    lower: npt.NDArray[np.float64] = points.min(axis=0)
    upper: npt.NDArray[np.float64] = points.max(axis=0)
    return lower, upper


@dataclass(frozen=True, eq=False, init=False)
class ClipBox:
    """An axis-aligned box in DICOM patient coordinates (LPS), mm.

    Parameters
    ----------
    lower_lps_mm, upper_lps_mm : array_like of float
        Opposite corners ``(x, y, z)``, LPS mm; every component of ``upper`` must exceed that of
        ``lower`` by at least 20 mm (a smaller box holds too little anatomy to register).

    Raises
    ------
    ClipBoxError
        If a corner is not 3 finite numbers or the box is too small or inverted.

    Examples
    --------
    >>> box = ClipBox((-100.0, -80.0, -240.0), (0.0, 30.0, -150.0))
    >>> box.size_mm.tolist(), box.centre_lps_mm.tolist()
    ([100.0, 110.0, 90.0], [-50.0, -25.0, -195.0])
    """

    lower_lps_mm: npt.NDArray[np.float64]
    upper_lps_mm: npt.NDArray[np.float64]

    def __init__(self, lower_lps_mm: npt.ArrayLike, upper_lps_mm: npt.ArrayLike) -> None:
        lower = _as_point(lower_lps_mm, "lower_lps_mm")
        upper = _as_point(upper_lps_mm, "upper_lps_mm")
        size = upper - lower
        if np.any(size < _MIN_SIZE_MM):
            raise ClipBoxError(
                f"the clip box must be at least {_MIN_SIZE_MM} mm along every axis with upper > "
                f"lower, got lower {lower.tolist()} and upper {upper.tolist()}",
                field="clip_box",
            )
        for value in (lower, upper):
            value.flags.writeable = False
        object.__setattr__(self, "lower_lps_mm", lower)
        object.__setattr__(self, "upper_lps_mm", upper)

    @classmethod
    def around(
        cls,
        point_lps_mm: npt.ArrayLike,
        extent_mm: tuple[
            tuple[float, float], tuple[float, float], tuple[float, float]
        ] = DEFAULT_DOME_BOX_EXTENT_MM,
    ) -> ClipBox:
        """A box placed by offsets from a point (by default: the automatic dome box).

        Parameters
        ----------
        point_lps_mm : array_like of float
            Anchor point, LPS mm (for the automatic box, the right dome apex).
        extent_mm : tuple of three (below, above) pairs, optional
            Offsets of the lower and upper faces from the anchor along x, y and z, mm.

        Returns
        -------
        ClipBox
            ``[point + below, point + above]`` per axis.
        """
        point = _as_point(point_lps_mm, "point_lps_mm")
        below = np.array([pair[0] for pair in extent_mm], dtype=np.float64)
        above = np.array([pair[1] for pair in extent_mm], dtype=np.float64)
        return cls(point + below, point + above)

    @property
    def size_mm(self) -> npt.NDArray[np.float64]:
        """Edge lengths along LPS x, y, z, mm."""
        size: npt.NDArray[np.float64] = self.upper_lps_mm - self.lower_lps_mm
        return size

    @property
    def centre_lps_mm(self) -> npt.NDArray[np.float64]:
        """Centre of the box, LPS mm."""
        centre: npt.NDArray[np.float64] = 0.5 * (self.lower_lps_mm + self.upper_lps_mm)
        return centre

    def expanded(self, margin_mm: float) -> ClipBox:
        """The box grown by ``margin_mm`` on every face (negative shrinks it)."""
        return ClipBox(self.lower_lps_mm - margin_mm, self.upper_lps_mm + margin_mm)

    def translated(self, shift_lps_mm: npt.ArrayLike) -> ClipBox:
        """The box moved by ``shift_lps_mm`` (LPS mm)."""
        shift = _as_point(shift_lps_mm, "shift_lps_mm")
        return ClipBox(self.lower_lps_mm + shift, self.upper_lps_mm + shift)

    def intersection(self, other: ClipBox) -> ClipBox | None:
        """The common part of two boxes, or ``None`` if it is smaller than 20 mm on any axis."""
        lower = np.maximum(self.lower_lps_mm, other.lower_lps_mm)
        upper = np.minimum(self.upper_lps_mm, other.upper_lps_mm)
        if np.any(upper - lower < _MIN_SIZE_MM):
            return None
        return ClipBox(lower, upper)

    def fraction_inside(self, lower_lps_mm: npt.ArrayLike, upper_lps_mm: npt.ArrayLike) -> float:
        """Fraction of this box's volume inside another axis-aligned box (0 to 1)."""
        lower = np.maximum(self.lower_lps_mm, np.asarray(lower_lps_mm, dtype=np.float64))
        upper = np.minimum(self.upper_lps_mm, np.asarray(upper_lps_mm, dtype=np.float64))
        common = float(np.prod(np.clip(upper - lower, 0.0, None)))
        return common / float(np.prod(self.size_mm))

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-able corners."""
        return {
            "lower_lps_mm": [float(v) for v in self.lower_lps_mm],
            "upper_lps_mm": [float(v) for v in self.upper_lps_mm],
        }

    def __repr__(self) -> str:
        lower = ", ".join(f"{v:.1f}" for v in self.lower_lps_mm)
        upper = ", ".join(f"{v:.1f}" for v in self.upper_lps_mm)
        return f"ClipBox(lower_lps_mm=({lower}), upper_lps_mm=({upper}))"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClipBox):
            return NotImplemented
        return bool(
            np.array_equal(self.lower_lps_mm, other.lower_lps_mm)
            and np.array_equal(self.upper_lps_mm, other.upper_lps_mm)
        )

    def __hash__(self) -> int:
        return hash((tuple(self.lower_lps_mm.tolist()), tuple(self.upper_lps_mm.tolist())))
