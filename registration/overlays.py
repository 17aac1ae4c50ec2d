"""Review images of a CBCT-to-CT registration: checkerboard and colour blend in three planes.

Each plane passes through a centre point (the isocentre) and spans the clip box plus a margin,
at 1 mm pixels. At every plane point ``p`` (planning frame, LPS mm) the planning CT is sampled
at ``p`` and the CBCT at ``cbct_from_ct @ p``: the CBCT is shown *mapped back onto the planning
anatomy*, so a good registration makes the two coincide. ``before`` images use the identity
(the CBCT as acquired in the planning frame), ``after`` images the registration's transform.

Display conventions (radiological):

- axial: columns run to the patient's left (+x), rows to posterior (+y): the patient's right
  is on the image's left, anterior at the top;
- coronal: columns +x, rows inferior (-z): head at the top, patient's right on the left;
- sagittal: columns posterior (+y), rows inferior (-z): anterior on the left, head at the top.

The checkerboard alternates 20 mm squares of CT and CBCT (grey, window -1000 to 400 HU on the CT
scale; the CBCT is first mapped to the CT scale with the registration's intensity fit). The
blend shows the CT in magenta and the CBCT in green: aligned anatomy is grey, misalignment shows
coloured fringes. Pixels outside the CBCT's field of view are black in the CBCT's share. Each
image also keeps its two grey layers (``ct`` and ``cbct``, same grid and window; the ``cbct``
PNG's alpha marks the CBCT's field of view) so that a viewer can compose its own checkerboard,
blend or difference.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from igrt.volume import Volume
from registration._grid import CT_PADDING_BELOW_HU, map_points, trilinear

__all__ = ["OVERLAY_KINDS", "OverlayImages", "PlaneValues", "RegistrationOverlays", "make_overlays"]

FloatArray = npt.NDArray[np.float64]
DISPLAY_WINDOW_HU = (-1000.0, 400.0)
OVERLAY_KINDS = ("checkerboard", "blend", "ct", "cbct")
CHECKER_MM = 20.0


class PlaneValues(enum.Enum):
    """A review plane through the centre point."""

    AXIAL = "axial"
    """Perpendicular to LPS z."""

    CORONAL = "coronal"
    """Perpendicular to LPS y."""

    SAGITTAL = "sagittal"
    """Perpendicular to LPS x."""


# (column direction, row direction) of each plane, LPS unit vectors.
_PLANE_AXES: dict[PlaneValues, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    PlaneValues.AXIAL: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    PlaneValues.CORONAL: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    PlaneValues.SAGITTAL: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}


@dataclass(frozen=True, eq=False)
class OverlayImages:
    """Checkerboard and blend of one plane at one stage.

    Parameters
    ----------
    plane : PlaneValues
        Which plane.
    checkerboard : numpy.ndarray
        ``(rows, columns)`` uint8 grey image.
    blend : numpy.ndarray
        ``(rows, columns, 3)`` uint8 RGB image (CT magenta, CBCT green).
    ct, cbct : numpy.ndarray
        ``(rows, columns)`` uint8 grey layers: the planning CT, and the CBCT mapped onto it on
        the CT's scale (black outside the CBCT's field of view).
    cbct_field_of_view : numpy.ndarray
        ``(rows, columns)`` bool: where the CBCT has data (its PNG's alpha channel), so a
        viewer can tell air (black inside) from no data (black outside).
    top_left_lps_mm : numpy.ndarray
        LPS position of pixel ``(0, 0)``'s centre, mm.
    column_direction_lps, row_direction_lps : tuple of float
        LPS unit vectors along the columns and down the rows.
    pixel_mm : float
        Pixel size, mm.
    """

    plane: PlaneValues
    checkerboard: npt.NDArray[np.uint8]
    blend: npt.NDArray[np.uint8]
    ct: npt.NDArray[np.uint8]
    cbct: npt.NDArray[np.uint8]
    cbct_field_of_view: npt.NDArray[np.bool_]
    top_left_lps_mm: FloatArray
    column_direction_lps: tuple[float, float, float]
    row_direction_lps: tuple[float, float, float]
    pixel_mm: float

    def png(self, kind: str = "checkerboard") -> bytes:
        """PNG bytes of ``"checkerboard"``, ``"blend"``, ``"ct"`` or ``"cbct"``."""
        if kind == "blend":
            image: npt.NDArray[np.uint8] = self.blend
        elif kind == "cbct":
            alpha = np.where(self.cbct_field_of_view, 255, 0).astype(np.uint8)
            image = np.dstack([self.cbct, self.cbct, self.cbct, alpha])
        elif kind in ("checkerboard", "ct"):
            image = getattr(self, kind)
        else:
            raise ValueError(f"kind must be one of {OVERLAY_KINDS}, got {kind!r}")
        return _png_bytes(image)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (not the pixels)."""
        return {
            "plane": self.plane.value,
            "shape": [int(n) for n in self.checkerboard.shape],
            "top_left_lps_mm": [float(v) for v in self.top_left_lps_mm],
            "column_direction_lps": list(self.column_direction_lps),
            "row_direction_lps": list(self.row_direction_lps),
            "pixel_mm": float(self.pixel_mm),
        }


@dataclass(frozen=True, eq=False)
class RegistrationOverlays:
    """Review images before and after registration, three planes each.

    Parameters
    ----------
    before, after : tuple of OverlayImages
        Axial, coronal and sagittal images at the identity and at the result.
    centre_lps_mm : numpy.ndarray
        Point all planes pass through, LPS mm.
    """

    before: tuple[OverlayImages, ...]
    after: tuple[OverlayImages, ...]
    centre_lps_mm: FloatArray

    def image(self, plane: PlaneValues | str, *, stage: str = "after") -> OverlayImages:
        """The images of one plane at ``stage`` ``"before"`` or ``"after"``."""
        wanted = PlaneValues(plane)
        images = self.after if stage == "after" else self.before
        if stage not in ("before", "after"):
            raise ValueError(f"stage must be 'before' or 'after', got {stage!r}")
        for item in images:
            if item.plane is wanted:
                return item
        raise KeyError(wanted)  # pragma: no cover - every plane is built

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description of the planes (not the pixels)."""
        return {
            "centre_lps_mm": [float(v) for v in self.centre_lps_mm],
            "planes": [item.to_dict() for item in self.after],
        }


def _plane_points(
    centre: FloatArray,
    plane: PlaneValues,
    half_extent_mm: FloatArray,
    pixel_mm: float,
) -> tuple[FloatArray, FloatArray, tuple[int, int]]:
    column_dir, row_dir = (np.asarray(v) for v in _PLANE_AXES[plane])
    half_columns = float(np.abs(column_dir) @ half_extent_mm)
    half_rows = float(np.abs(row_dir) @ half_extent_mm)
    n_columns = 2 * round(half_columns / pixel_mm) + 1
    n_rows = 2 * round(half_rows / pixel_mm) + 1
    top_left = (
        centre - column_dir * (n_columns // 2) * pixel_mm - row_dir * (n_rows // 2) * pixel_mm
    )
    rows, columns = np.mgrid[0:n_rows, 0:n_columns].astype(np.float64)
    points = (
        top_left
        + columns.reshape(-1, 1) * pixel_mm * column_dir
        + rows.reshape(-1, 1) * pixel_mm * row_dir
    )
    return points, top_left, (n_rows, n_columns)


def _index_from_lps(volume: Volume, points: FloatArray) -> FloatArray:
    linear = volume.direction.T / volume.spacing_mm[:, np.newaxis]
    return map_points(points, linear, -(linear @ volume.origin_lps_mm))


def _sample_volume(volume: Volume, points: FloatArray) -> FloatArray:
    return trilinear(volume.array, _index_from_lps(volume, points))


def _nearest_equals(volume: Volume, points: FloatArray, value: float) -> npt.NDArray[np.bool_]:
    """Whether the nearest voxel of each point holds ``value`` (outside the volume: False)."""
    index = np.rint(_index_from_lps(volume, points)).astype(np.int64)
    shape = np.asarray(volume.shape_ijk)
    inside = np.all((index >= 0) & (index < shape), axis=1)
    result = np.zeros(len(points), bool)
    i, j, k = index[inside].T
    result[inside] = np.asarray(volume.array)[k, j, i] == value
    return result


def _to_grey(values: FloatArray) -> npt.NDArray[np.uint8]:
    low, high = DISPLAY_WINDOW_HU
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
    grey: npt.NDArray[np.uint8] = np.where(np.isnan(values), 0.0, scaled).round().astype(np.uint8)
    return grey


_PNG_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}
"""PNG colour type of 8-bit images by channel count: grey, RGB, RGBA."""


def _png_bytes(image: npt.NDArray[np.uint8]) -> bytes:
    """An 8-bit grey ``(rows, columns)``, RGB or RGBA ``(rows, columns, 3 | 4)`` image as PNG.

    Written here (rows unfiltered, zlib level 1) rather than by OpenCV, whose import was the
    only one ``igrt register`` made for these images (about 20 ms of every fresh command).
    """
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or channels not in _PNG_COLOUR_TYPES:
        raise ValueError(f"a PNG needs 8-bit grey, RGB or RGBA pixels, got {image.shape}")
    rows, columns = image.shape[:2]
    scanlines = np.zeros((rows, 1 + columns * channels), np.uint8)  # filter byte 0: none
    scanlines[:, 1:] = image.reshape(rows, columns * channels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    header = struct.pack(">IIBBBBB", columns, rows, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 1)),
            chunk(b"IEND", b""),
        )
    )


def make_overlays(
    planning_ct: Volume,
    cbct: Volume,
    cbct_from_ct: npt.ArrayLike,
    *,
    centre_lps_mm: npt.ArrayLike,
    half_extent_mm: npt.ArrayLike,
    cbct_gain: float = 1.0,
    cbct_offset: float = 0.0,
    cbct_padding_value: float | None = None,
    pixel_mm: float = 1.0,
) -> RegistrationOverlays:
    """Build checkerboard and blend images in three planes, before and after registration.

    Parameters
    ----------
    planning_ct, cbct : igrt.volume.Volume
        The two images (any direction cosines).
    cbct_from_ct : array_like of float
        4x4 transform of the registration result (planning-CT point to CBCT point).
    centre_lps_mm : array_like of float
        Point every plane passes through, LPS mm.
    half_extent_mm : array_like of float
        Half size of the shown region along LPS x, y, z, mm.
    cbct_gain, cbct_offset : float, optional
        CBCT value = gain * CT value + offset (the registration's intensity fit); inverted to
        show the CBCT on the CT's scale.
    cbct_padding_value : float, optional
        CBCT fill value outside its field of view (shown black).
    pixel_mm : float, optional
        Pixel size, mm.

    Returns
    -------
    RegistrationOverlays
        Images before (identity) and after (``cbct_from_ct``).
    """
    centre = np.asarray(centre_lps_mm, dtype=np.float64)
    half = np.asarray(half_extent_mm, dtype=np.float64)
    after_transform = np.asarray(cbct_from_ct, dtype=np.float64)
    gain = cbct_gain if abs(cbct_gain) > 1e-6 else 1.0
    stages: dict[str, list[OverlayImages]] = {"before": [], "after": []}
    for plane in PlaneValues:
        points, top_left, shape = _plane_points(centre, plane, half, pixel_mm)
        ct_values = _sample_volume(planning_ct, points)
        ct_values = np.where(ct_values < CT_PADDING_BELOW_HU, DISPLAY_WINDOW_HU[0], ct_values)
        ct_grey = _to_grey(ct_values).reshape(shape)
        rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
        squares = ((rows * pixel_mm // CHECKER_MM) + (columns * pixel_mm // CHECKER_MM)) % 2 == 0
        for stage, transform in (("before", np.eye(4)), ("after", after_transform)):
            mapped = map_points(points, transform[:3, :3], transform[:3, 3])
            raw = _sample_volume(cbct, mapped)
            if cbct_padding_value is not None:
                raw = np.where(_nearest_equals(cbct, mapped, cbct_padding_value), np.nan, raw)
            cbct_grey = _to_grey((raw - cbct_offset) / gain).reshape(shape)
            field_of_view = ~np.isnan(raw).reshape(shape)
            checkerboard = np.where(squares, ct_grey, cbct_grey).astype(np.uint8)
            blend = np.stack([ct_grey, cbct_grey, ct_grey], axis=-1).astype(np.uint8)
            column_dir, row_dir = _PLANE_AXES[plane]
            stages[stage].append(
                OverlayImages(
                    plane=plane,
                    checkerboard=checkerboard,
                    blend=blend,
                    ct=ct_grey,
                    cbct=cbct_grey,
                    cbct_field_of_view=field_of_view,
                    top_left_lps_mm=top_left,
                    column_direction_lps=column_dir,
                    row_direction_lps=row_dir,
                    pixel_mm=float(pixel_mm),
                )
            )
    return RegistrationOverlays(
        before=tuple(stages["before"]), after=tuple(stages["after"]), centre_lps_mm=centre
    )
