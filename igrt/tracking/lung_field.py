"""The lung fields of a projection image, found without user input.

The diaphragm dome is the inferior boundary of a lung field: aerated lung above, liver below.
On a real image the sharpest dome-shaped edge is often something else (a shoulder against the
air above it, the top edge of a clavicle, a plate border), so detection first finds the lung
fields and then only accepts dome edges on their inferior boundaries.

Method (classical, no trained model): the attenuation image is reduced to about
``_WORK_PIXEL_MM`` per pixel; a first Otsu threshold separates dark from bright; dark regions
touching the left, right or bottom border are air outside the body (a lung can reach only the
top border, in a field of view cropped above the apex); a second Otsu threshold inside the body
separates aerated lung from soft tissue and bone; opening and closing remove ribs' gaps and
thin bridges; connected components larger than ``_MIN_LUNG_AREA_MM2`` are lung fields. A
uniform band burned in along an image edge is outside the body too.

The dome is then found on a field's inferior boundary (:func:`refined_inferior_boundary`,
:func:`diaphragm_apex`): snapped to the image's lung-to-liver edge, followed medially where
the segmentation lost the lung over the heart and spine, and read with the definition the
``cxr_dev`` references use (the highest point of the longest stretch flatter than 45 degrees).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "LungField",
    "diaphragm_apex",
    "edge_above_fraction",
    "find_lung_fields",
    "lung_field_readings",
    "lung_over_liver_fraction",
    "refined_inferior_boundary",
]

_WORK_PIXEL_MM = 2.0
"""Pixel size, mm at the isocentre, at which the lung fields are segmented."""
_SMOOTHING_MM = 3.0
_OPENING_MM = 6.0
_CLOSING_MM = 14.0
_BODY_MARGIN_MM = 10.0
_MIN_LUNG_AREA_MM2 = 2500.0
_MIN_RELATIVE_AREA = 0.15
"""A dark region smaller than this fraction of the largest one is not a lung (trachea, gas)."""
_MIN_LUNG_HEIGHT_MM = 40.0
_CUT_TOP_MIN_MM = 40.0
_DOME_LOWEST_FRACTION = 0.5
"""A dome apex lies below this fraction of its lung field's height."""
_MIN_RUN_MM = 20.0
"""Shortest near-horizontal stretch of inferior boundary that counts as a diaphragm."""
_APEX_TOLERANCE_MM = 2.0
_MIN_RELATIVE_RUN = 0.8
_EDGE_SIGMA_MM = 1.5
_SNAP_MM = 8.0
_DESCENT_MM = 80.0
_DESCENT_MIN_RATIO = 1.5
_MEDIAL_EXTENSION_MM = 30.0
_MEDIAL_MIN_RELATIVE_EDGE = 0.3
_FOLLOW_MEMORY = 20
_FOLLOW_DROP = 0.6
_BOUNDARY_MEDIAN_MM = 6.0
_PARALLEL_GAP_MM = 4.0
_PARALLEL_REACH_MM = 15.0
_PARALLEL_MIN_RELATIVE_EDGE = 0.5
_PARALLEL_VALLEY = 0.85
_SLOPE_BASELINE_MM = 3.0
_UNIFORM_LINE_SPREAD = 0.1
_BORDER_GUARD_MM = 1.0
_BORDER_RIM_MM = 6.0
"""Air this close to the left, right or bottom border is outside the body."""
_MAX_BORDER_FRACTION = 0.15
"""A uniform band along an edge is a frame up to this fraction of the image: a 60 mm
collimation band on a 43 cm plate is 14 %. Wider uniform bands, such as the air beside the body
on an oblique projection, are left to the outside-air rule: taken as a frame, with its margin,
they cut into the lung field (30 % lost the dome on rotating-gantry arcs)."""


@dataclass(frozen=True, eq=False)
class LungField:
    """One lung field on a projection image (full-resolution panel pixels).

    Attributes
    ----------
    columns : numpy.ndarray of int
        Panel columns the field spans (at least one lung pixel).
    inferior_rows : numpy.ndarray of float
        Per column of ``columns``, the row of the field's lowest pixel: its inferior boundary.
    superior_row : float
        Row of the field's highest pixel.
    centroid_column_row : tuple of float
        Centre of the field, panel pixels.
    area_mm2 : float
        Area at the isocentre plane, mm².
    touches_top : bool
        The field is cut by the top of the image over at least ``_CUT_TOP_MIN_MM``: a view
        cropped above the lung apex (a trachea reaching the top edge is narrower).
    last_exposed_row : int or None
        The last row above a uniform band along the bottom of the image (collimation, a
        burned-in frame), where the image's own edges end; None without such a band.
    """

    columns: npt.NDArray[np.intp]
    inferior_rows: npt.NDArray[np.float64]
    superior_row: float
    centroid_column_row: tuple[float, float]
    area_mm2: float
    touches_top: bool
    last_exposed_row: int | None = None

    def holds_dome_at(self, row: float) -> bool:
        """Whether a dome apex at this row lies in the lower half of the field.

        The top of a lung field (its apex under the clavicle) is never the diaphragm. A field
        cut by the top of the image has no known top, so any row is possible.
        """
        if self.touches_top:
            return True
        lowest = float(self.inferior_rows.max())
        return row >= self.superior_row + _DOME_LOWEST_FRACTION * (lowest - self.superior_row)


def _odd(size_px: float) -> int:
    return max(1, round(size_px) | 1)


def _otsu(values: npt.NDArray[np.uint8]) -> float:
    threshold, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(threshold)


def _touches_side_or_bottom(
    labels: npt.NDArray[np.int32], border: npt.NDArray[np.bool_]
) -> set[int]:
    """Labels present in ``border``: the left, right and bottom margins of the body's image."""
    return {int(k) for k in np.unique(labels[border]) if k}


def _side_and_bottom_border(
    shape: tuple[int, int], side_frame: npt.NDArray[np.bool_], rim: int
) -> npt.NDArray[np.bool_]:
    """Where air is outside the body: near the left, right or bottom edge, or a band along them.

    Within ``rim`` pixels of those edges of the image or of a uniform frame band along them (a
    collimator's or a scanner's border, bright or dark). Digitised radiographs often brighten
    over their last few millimetres (a plate's or a scanner's rim), and a collimated one has a
    uniform band along its edges: air outside the body then stops short of the image's border.
    """
    border = np.zeros(shape, np.uint8)
    border[:, :rim], border[:, -rim:], border[-rim:, :] = 1, 1, 1
    border |= side_frame.astype(np.uint8)
    kernel = np.ones((2 * rim + 1,) * 2, np.uint8)
    grown: npt.NDArray[np.bool_] = cv2.dilate(border, kernel).astype(bool)
    return grown


def _normalised(image: npt.NDArray[np.float32], pixel_mm: float) -> npt.NDArray[np.uint8]:
    smooth = cv2.GaussianBlur(image, (0, 0), max(_SMOOTHING_MM / pixel_mm, 0.5))
    low, high = np.percentile(smooth, [0.5, 99.5])
    scaled = np.clip((smooth - low) / max(float(high - low), 1e-12), 0.0, 1.0)
    return np.asarray(scaled * 255.0, np.uint8)


def _outside_air(
    dark: npt.NDArray[np.uint8], pixel_mm: float, side_frame: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Dark regions reaching the left, right or bottom border: air around the body.

    A lung can reach only the top border (a field of view cropped above the apex).
    """
    kernel = np.ones((_odd(_OPENING_MM / pixel_mm),) * 2, np.uint8)
    opened = cv2.morphologyEx(dark, cv2.MORPH_OPEN, kernel)
    labels: npt.NDArray[np.int32] = np.asarray(cv2.connectedComponents(opened)[1], np.int32)
    rim = max(1, round(_BORDER_RIM_MM / pixel_mm))
    border = _side_and_bottom_border(dark.shape, side_frame, rim)
    outside_labels = _touches_side_or_bottom(labels, border)
    outside = (
        np.isin(labels, list(outside_labels)) if outside_labels else np.zeros(dark.shape, bool)
    )
    return _grown(outside, pixel_mm)


def find_lung_fields(
    attenuation: npt.NDArray[np.float32], pixel_at_isocentre_mm: float
) -> list[LungField]:
    """Lung fields of an attenuation-ordered image (lung low, liver high), largest first.

    The first reading of :func:`lung_field_readings`.

    Parameters
    ----------
    attenuation : numpy.ndarray
        One frame, values rising with attenuation (see
        :func:`igrt.tracking.detection.attenuation_image`).
    pixel_at_isocentre_mm : float
        Panel pixel size at the isocentre plane, mm.

    Returns
    -------
    list of LungField
        Empty when no region dark, large and tall enough to be a lung is found.
    """
    return next(lung_field_readings(attenuation, pixel_at_isocentre_mm))


def lung_field_readings(
    attenuation: npt.NDArray[np.float32], pixel_at_isocentre_mm: float
) -> Iterator[list[LungField]]:
    """The lung fields of an image as read at each plausible lung grey level, best first.

    The lungs are the dark class of the body's grey levels. First that class is split off the
    whole body. Then, when it holds dark regions that cannot be lung (air above the shoulders,
    which ends in the upper part of the image, left greyer than the air around the body by a
    brighter look-up table), the body is split again without them, so that the lungs rather
    than those regions are the dark class. Last, the dark class is split again, for a lung
    that the first grey level joins to dark abdomen (gas, or a darker look-up table or blur
    that greys the liver below a dense lower lung). The later readings are for when the first
    has no usable field: on an image the first reads well, the second's higher grey level can
    let a lung leak into the abdomen and the third's lower one can break a lung apart.

    Yields
    ------
    list of LungField
        As :func:`find_lung_fields`, one list per reading; the first always (possibly empty).
    """
    body = _Body.of(attenuation, pixel_at_isocentre_mm)
    if body is None:
        yield []
        return
    first = _otsu(body.values[body.inside])
    regions = body.dark_regions(first)
    yield body.fields(regions)
    kept = body.inside & ~regions.ending_high()
    if kept.any() and not np.array_equal(kept, body.inside):
        second = _otsu(body.values[kept])
        if second != first:
            yield body.fields(body.dark_regions(second))
    lower = body.inside & (body.values < first)
    if lower.any():
        yield body.fields(body.dark_regions(_otsu(body.values[lower])))


@dataclass(frozen=True)
class _Body:
    """An image on the segmentation's working grid, with where the body is in it."""

    attenuation_shape: tuple[int, int]
    values: npt.NDArray[np.uint8]
    inside: npt.NDArray[np.bool_]
    pixel_mm: float
    first_row: int
    last_exposed_row: int | None

    @classmethod
    def of(cls, attenuation: npt.NDArray[np.float32], pixel_at_isocentre_mm: float) -> _Body | None:
        """None when too little of the image is body to hold lungs."""
        rows, cols = attenuation.shape
        factor = max(1, round(_WORK_PIXEL_MM / pixel_at_isocentre_mm))
        small_shape = (max(8, rows // factor), max(8, cols // factor))
        small = np.asarray(
            cv2.resize(attenuation, small_shape[::-1], interpolation=cv2.INTER_AREA), np.float32
        )
        pixel_mm = pixel_at_isocentre_mm * rows / small_shape[0]
        values = _normalised(small, pixel_mm)
        # Air around the body is the darkest class: split the dark half again, so that lung
        # joined to the air through a thin chest wall (a cropped view) is not taken for it.
        dark_half = values < _otsu(values)
        air = (values < _otsu(values[dark_half])).astype(np.uint8) if dark_half.any() else dark_half
        top, bottom, left, right = _uniform_border(attenuation, pixel_at_isocentre_mm)
        frame = _frame_mask(attenuation.shape, (top, bottom, left, right), small_shape)
        side_frame = _frame_mask(attenuation.shape, (0, bottom, left, right), small_shape)
        outside = _outside_air(air.astype(np.uint8), pixel_mm, side_frame) | _grown(frame, pixel_mm)
        inside = ~outside
        if np.count_nonzero(inside) < 0.2 * inside.size:
            return None
        return cls(
            attenuation_shape=(rows, cols),
            values=values,
            inside=inside,
            pixel_mm=pixel_mm,
            first_row=_first_row_inside(frame),
            last_exposed_row=rows - 1 - bottom if bottom else None,
        )

    def dark_regions(self, threshold: float) -> _Regions:
        """Connected regions of the body darker than ``threshold``, opened then closed."""
        dark = ((self.values < threshold) & self.inside).astype(np.uint8)
        opening = np.ones((_odd(_OPENING_MM / self.pixel_mm),) * 2, np.uint8)
        closing = np.ones((_odd(_CLOSING_MM / self.pixel_mm),) * 2, np.uint8)
        opened = cv2.morphologyEx(dark, cv2.MORPH_OPEN, opening)
        regions = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, closing)
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(regions)
        return _Regions(
            int(count),
            np.asarray(labels, np.int32),
            np.asarray(stats, np.int32),
            np.asarray(centroids, np.float64),
        )

    def fields(self, regions: _Regions) -> list[LungField]:
        """The lung fields among dark ``regions`` of the body, largest first."""
        count, labels, stats, centroids = regions
        rows, cols = self.attenuation_shape
        area_mm2 = stats[:, cv2.CC_STAT_AREA] * self.pixel_mm**2
        largest = float(area_mm2[1:].max()) if count > 1 else 0.0
        fields = []
        for k in range(1, count):
            height_mm = stats[k, cv2.CC_STAT_HEIGHT] * self.pixel_mm
            if (
                area_mm2[k] < max(_MIN_LUNG_AREA_MM2, _MIN_RELATIVE_AREA * largest)
                or height_mm < _MIN_LUNG_HEIGHT_MM
            ):
                continue
            fields.append(
                _field(
                    labels == k,
                    factor_rows=rows / labels.shape[0],
                    factor_cols=cols / labels.shape[1],
                    area_mm2=float(area_mm2[k]),
                    centroid=centroids[k],
                    full_cols=cols,
                    pixel_mm=self.pixel_mm,
                    first_row=self.first_row,
                    last_exposed_row=self.last_exposed_row,
                )
            )
        fields.sort(key=lambda f: f.area_mm2, reverse=True)
        return fields


class _Regions(NamedTuple):
    """Labelled connected regions on the working grid (``cv2.connectedComponentsWithStats``)."""

    n_labels: int
    labels: npt.NDArray[np.int32]
    stats: npt.NDArray[np.int32]
    centroids: npt.NDArray[np.float64]

    def ending_high(self) -> npt.NDArray[np.bool_]:
        """Regions ending in the image's upper part: not lungs, which reach the diaphragm."""
        lowest = self.stats[:, cv2.CC_STAT_TOP] + self.stats[:, cv2.CC_STAT_HEIGHT]
        limit = _UPPER_PART * self.labels.shape[0]
        high = [k for k in range(1, self.n_labels) if lowest[k] < limit]
        regions: npt.NDArray[np.bool_] = np.isin(self.labels, high)
        return regions


_UPPER_PART = 1.0 / 3.0
"""A dark region ending above this fraction of the image's height is not a lung."""


def _frame_mask(
    shape: tuple[int, int], widths: tuple[int, int, int, int], small_shape: tuple[int, int]
) -> npt.NDArray[np.bool_]:
    """A frame of ``(top, bottom, left, right)`` widths (:func:`_uniform_border`), working grid."""
    top, bottom, left, right = widths
    frame = np.zeros(shape, np.uint8)
    frame[:top], frame[shape[0] - bottom :] = 1, 1
    frame[:, :left], frame[:, shape[1] - right :] = 1, 1
    small = cv2.resize(frame, small_shape[::-1], interpolation=cv2.INTER_AREA)
    return np.asarray(small > 0, bool)


def _grown(mask: npt.NDArray[np.bool_], pixel_mm: float) -> npt.NDArray[np.bool_]:
    margin = np.ones((_odd(2 * _BODY_MARGIN_MM / pixel_mm),) * 2, np.uint8)
    grown: npt.NDArray[np.bool_] = cv2.dilate(mask.astype(np.uint8), margin).astype(bool)
    return grown


def _first_row_inside(frame: npt.NDArray[np.bool_]) -> int:
    """The first working row below a frame band along the top (0 without one)."""
    inside = np.nonzero(~frame.all(axis=1))[0]
    return int(inside[0]) if inside.size else 0


def _uniform_border(
    image: npt.NDArray[np.float32], pixel_at_isocentre_mm: float
) -> tuple[int, int, int, int]:
    """Widths of a frame burned into the image along its top, bottom, left and right, pixels.

    Digitised and exported radiographs often carry a uniform line or band along an edge (black
    or white), and collimated ones an unexposed band a few centimetres wide. Dark, it joins both
    lungs into one field through the image's top row or puts a 'diaphragm' on its bottom row: it
    is outside the body like the air around it. A band is a run of edge lines whose spread is a
    small part of the image's range, plus a guard band for its blurred inner edge; never more
    than ``_MAX_BORDER_FRACTION`` of the image.
    """
    low, high = np.percentile(image, [0.5, 99.5])
    spread = max(float(high - low), 1e-12)
    guard = max(1, round(_BORDER_GUARD_MM / pixel_at_isocentre_mm))

    def band(lines: npt.NDArray[np.float32]) -> int:
        limit = int(_MAX_BORDER_FRACTION * lines.shape[0])
        uniform = lines[:limit].std(axis=1) < _UNIFORM_LINE_SPREAD * spread
        count = int(np.argmin(uniform)) if not uniform.all() else limit
        return min(count + guard, limit) if count else 0

    return band(image), band(image[::-1]), band(image.T), band(image.T[::-1])


def _field(
    mask: npt.NDArray[np.bool_],
    *,
    factor_rows: float,
    factor_cols: float,
    area_mm2: float,
    centroid: npt.NDArray[np.float64],
    full_cols: int,
    pixel_mm: float,
    first_row: int,
    last_exposed_row: int | None,
) -> LungField:
    """A component's inferior boundary, mapped to full-resolution columns."""
    small_rows = np.arange(mask.shape[0])[:, None]
    lowest = np.where(mask, small_rows, -1).max(axis=0)
    highest_row = int(np.argmax(mask.any(axis=1)))
    present = np.nonzero(lowest >= 0)[0]
    first, last = int(present[0]), int(present[-1])
    columns = np.arange(
        int(np.floor(first * factor_cols)), min(int(np.ceil((last + 1) * factor_cols)), full_cols)
    )
    small_col = np.clip(((columns + 0.5) / factor_cols - 0.5).round().astype(int), first, last)
    inferior_small = lowest[small_col].astype(np.float64)
    # Gaps inside the span (a rib shadow splitting the mask) take the neighbours' boundary.
    known = inferior_small >= 0
    inferior_small = np.interp(columns, columns[known], inferior_small[known])
    inferior_rows = (inferior_small + 1.0) * factor_rows - 0.5
    return LungField(
        columns=columns.astype(np.intp),
        inferior_rows=inferior_rows,
        superior_row=highest_row * factor_rows,
        centroid_column_row=(
            (float(centroid[0]) + 0.5) * factor_cols - 0.5,
            (float(centroid[1]) + 0.5) * factor_rows - 0.5,
        ),
        area_mm2=area_mm2,
        touches_top=bool(np.count_nonzero(mask[first_row]) * pixel_mm >= _CUT_TOP_MIN_MM),
        last_exposed_row=last_exposed_row,
    )


def refined_inferior_boundary(
    field: LungField,
    attenuation: npt.NDArray[np.float32],
    pixel_at_isocentre_mm: float,
    medial_step: int,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The field's inferior boundary moved onto the image's lung-to-liver edge, full resolution.

    The segmentation works at about 2 mm and often loses the medial lung, which overlies the
    heart and the spine and is brighter than the rest; there the diaphragm rises to the heart
    border, which is where the dome is highest on many patients. Per column the boundary is
    moved to the strongest rise of attenuation within ``_SNAP_MM`` of it; then, from the medial
    end of the diaphragm stretch (``medial_step`` = +1 or -1 columns, the way to the heart; 0
    for none), the edge itself is followed column by column, at most a row per column (flatter
    than 45 degrees, as a diaphragm is), while it stays strong, up to ``_MEDIAL_EXTENSION_MM``
    beyond the field. The followed edge replaces the boundary where they overlap.

    Returns
    -------
    columns, rows : numpy.ndarray
        Columns in increasing order and the edge row on each (sub-pixel not attempted).
    """
    gradient = _downward_gradient(attenuation, pixel_at_isocentre_mm)
    columns, rows, strengths = _snapped(field, gradient, pixel_at_isocentre_mm)
    if not medial_step or columns.size < 5:
        return columns, rows
    run = _diaphragm_run(columns, rows, pixel_at_isocentre_mm)
    if run is None:
        return columns, rows
    start = run[1] - 1 if medial_step > 0 else run[0]
    limit = abs(int(columns[-1 if medial_step > 0 else 0]) - int(columns[start])) + round(
        _MEDIAL_EXTENSION_MM / pixel_at_isocentre_mm
    )
    traced = _followed_edge(
        gradient,
        (int(columns[start]), float(rows[start])),
        medial_step,
        limit,
        min_strength=_MEDIAL_MIN_RELATIVE_EDGE * float(np.median(strengths)),
    )
    if not traced:
        return columns, rows
    traced_columns = np.array([c for c, _ in traced], np.intp)
    keep = ~np.isin(columns, traced_columns)
    all_columns = np.concatenate([columns[keep], traced_columns])
    all_rows = np.concatenate([rows[keep], [r for _, r in traced]])
    order = np.argsort(all_columns)
    return all_columns[order], all_rows[order]


def lung_over_liver_fraction(
    field: LungField, attenuation: npt.NDArray[np.float32], pixel_at_isocentre_mm: float
) -> float:
    """Share of the diaphragm stretch where attenuation rises across the field's lower boundary.

    Below a lung is liver or stomach wall: going down across the diaphragm the image only gets
    more attenuating. Per column of the boundary's diaphragm run, the strongest rise within
    ``_SNAP_MM`` of it is compared with the strongest fall. The sign of a change survives any
    display look-up table, equalisation or noise that keeps the grey levels' order, which
    texture and edge strength do not; an image whose stated pixel meaning is inverted turns the
    diaphragm into a fall along nearly its whole length. Only columns whose boundary has image
    ``_SNAP_MM`` above and below count (a field cut by the image's edge shows no edge there);
    NaN without a diaphragm run or without such columns.
    """
    run = _diaphragm_run(field.columns, field.inferior_rows, pixel_at_isocentre_mm)
    if run is None:
        return math.nan
    gradient = _downward_gradient(attenuation, pixel_at_isocentre_mm)
    snap = max(2, round(_SNAP_MM / pixel_at_isocentre_mm))
    rising = []
    for column, row in zip(
        field.columns[run[0] : run[1]], field.inferior_rows[run[0] : run[1]], strict=True
    ):
        if not snap <= int(row) < gradient.shape[0] - snap:
            continue
        profile = gradient[int(row) - snap : int(row) + snap + 1, column]
        rising.append(float(profile.max()) > -float(profile.min()))
    return float(np.mean(rising)) if rising else math.nan


def _edge_sigma_px(pixel_at_isocentre_mm: float) -> float:
    return max(_EDGE_SIGMA_MM / pixel_at_isocentre_mm, 0.7)


def _downward_gradient(
    attenuation: npt.NDArray[np.float32], pixel_at_isocentre_mm: float
) -> npt.NDArray[np.float32]:
    smooth = cv2.GaussianBlur(attenuation, (0, 0), _edge_sigma_px(pixel_at_isocentre_mm))
    return np.asarray(cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3), np.float32)


def _snapped(
    field: LungField, gradient: npt.NDArray[np.float32], pixel_at_isocentre_mm: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per column, the lung-to-liver edge nearest the segmented boundary, or a stronger one below.

    The strongest rise of attenuation within ``_SNAP_MM`` of the boundary, unless one at least
    ``_DESCENT_MIN_RATIO`` times as strong lies within ``_DESCENT_MM`` below: the lowest part of
    a lung field is often greyer than the rest (more tissue in the beam, a breast, disease) and
    falls on the wrong side of the threshold, and the diaphragm is then the much stronger edge
    further down. The diaphragm is one continuous edge: a column whose edge below continues
    its neighbour's (:func:`_continued_descents`) takes it when merely as strong as the near one.
    """
    snap = max(2, round(_SNAP_MM / pixel_at_isocentre_mm))
    descent = round(_DESCENT_MM / pixel_at_isocentre_mm)
    # A band along the bottom has the image's strongest edge of all, and smoothing spreads it
    # over the rows above: it is no diaphragm.
    end = gradient.shape[0]
    if field.last_exposed_row is not None:
        reach = math.ceil(3.0 * _edge_sigma_px(pixel_at_isocentre_mm)) + 1
        end = max(1, field.last_exposed_row + 1 - reach)
    n = field.columns.size
    near_rows, near_strengths = np.empty(n), np.empty(n)
    below_rows, below_strengths = np.full(n, -1.0), np.zeros(n)
    for i, (column, row) in enumerate(zip(field.columns, field.inferior_rows, strict=True)):
        low = max(0, min(int(row), end - 1) - snap)
        high = min(end, int(row) + snap + 1)
        profile = gradient[low:high, column]
        k = int(np.argmax(profile))
        near_rows[i], near_strengths[i] = low + k, profile[k]
        below = gradient[high : min(end, high + descent), column]
        if below.size:
            j = int(np.argmax(below))
            below_rows[i], below_strengths[i] = high + j, below[j]
    ratio = below_strengths / np.maximum(near_strengths, 1e-12)
    descended = (below_rows >= 0) & (ratio > _DESCENT_MIN_RATIO)
    descended = _continued_descents(descended, below_rows, ratio >= 1.0)
    edge_rows = np.where(descended, below_rows, near_rows)
    strengths = np.where(descended, below_strengths, near_strengths)
    return field.columns, edge_rows, strengths


def _continued_descents(
    descended: npt.NDArray[np.bool_],
    below_rows: npt.NDArray[np.float64],
    eligible: npt.NDArray[np.bool_],
) -> npt.NDArray[np.bool_]:
    """Descents grown column by column along an edge below that continues without a step.

    A column joins when its edge below lies within ``_CONTINUITY_ROWS`` of its descended
    neighbour's (a diaphragm flatter than 45 degrees) and is ``eligible`` (as strong as the
    near edge): a hysteresis along the diaphragm, seeded by the clear descents.
    """
    grown = descended.copy()
    for order in (range(1, grown.size), range(grown.size - 2, -1, -1)):
        for i in order:
            j = i - 1 if order.step > 0 else i + 1
            if (
                not grown[i]
                and grown[j]
                and eligible[i]
                and below_rows[i] >= 0
                and abs(below_rows[i] - below_rows[j]) <= _CONTINUITY_ROWS
            ):
                grown[i] = True
    return grown


_CONTINUITY_ROWS = 2


def _followed_edge(
    gradient: npt.NDArray[np.float32],
    start: tuple[int, float],
    step: int,
    max_columns: int,
    *,
    min_strength: float,
) -> list[tuple[int, float]]:
    """An edge followed from ``start`` column by column, at most one row per column."""
    rows, cols = gradient.shape
    column, row = start
    followed: list[tuple[int, float]] = []
    recent: list[float] = []
    for _ in range(max_columns):
        column += step
        if not 0 <= column < cols:
            break
        low, high = max(0, int(row) - 1), min(rows, int(row) + 2)
        profile = gradient[low:high, column]
        if profile.size == 0:
            break
        k = int(np.argmax(profile))
        # Over the spine and the heart the edge fades gradually; where it ends it drops at once.
        if profile[k] < min_strength or (
            len(recent) >= _FOLLOW_MEMORY and profile[k] < _FOLLOW_DROP * np.median(recent)
        ):
            break
        recent = [*recent[-_FOLLOW_MEMORY + 1 :], float(profile[k])]
        row = float(low + k)
        followed.append((column, row))
    return followed


def _boundary_slope(
    columns: npt.NDArray[np.intp], rows: npt.NDArray[np.float64], pixel_at_isocentre_mm: float
) -> npt.NDArray[np.float64]:
    """|rows per column| of a boundary, over a baseline of ``2 * _SLOPE_BASELINE_MM``.

    A boundary taken row by row is a staircase: between neighbouring columns a 40 degree
    diaphragm steps 0, 1 or 2 rows, and a two-row step would read as steeper than 45 degrees.
    """
    half = max(1, round(_SLOPE_BASELINE_MM / pixel_at_isocentre_mm))
    index = np.arange(columns.size)
    ahead, behind = np.minimum(index + half, columns.size - 1), np.maximum(index - half, 0)
    run = np.maximum(columns[ahead] - columns[behind], 1).astype(np.float64)
    slope: npt.NDArray[np.float64] = np.abs(rows[ahead] - rows[behind]) / run
    return slope


def _smoothed(rows: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    window = min(window, rows.size - (1 - rows.size % 2))
    padded = np.pad(rows, window // 2, mode="edge")
    smooth: npt.NDArray[np.float64] = np.median(
        np.lib.stride_tricks.sliding_window_view(padded, window), axis=1
    )
    return smooth


def _diaphragm_run(
    columns: npt.NDArray[np.intp],
    inferior_rows: npt.NDArray[np.float64],
    pixel_at_isocentre_mm: float,
) -> tuple[int, int] | None:
    """Index range ``[start, stop)`` of the boundary's diaphragm stretch, or None.

    The inferior boundary of a lung field is the diaphragm where it runs closer to horizontal
    than vertical; laterally it drops into the costophrenic angle and medially it climbs the
    heart border, both steeper. Of the flat stretches at least ``_MIN_RUN_MM`` long, the lowest
    of those nearly as long as the longest: a flat stretch higher up is the top of a heart
    shadow overlapping the field (the left lung) or the floor of a rib gap.
    """
    if columns.size < 5:
        return None
    window = max(3, round(_BOUNDARY_MEDIAN_MM / pixel_at_isocentre_mm) | 1)
    smooth = _smoothed(inferior_rows, window)
    flat = _boundary_slope(columns, smooth, pixel_at_isocentre_mm) < 1.0
    runs: list[tuple[int, int]] = []
    start = None
    for i, is_flat in enumerate([*flat.tolist(), False]):
        if is_flat and start is None:
            start = i
        elif not is_flat and start is not None:
            runs.append((start, i))
            start = None
    long_enough = [
        (a, b)
        for a, b in runs
        if (columns[b - 1] - columns[a]) * pixel_at_isocentre_mm >= _MIN_RUN_MM
    ]
    if not long_enough:
        return None
    longest = max(b - a for a, b in long_enough)
    return max(
        (run for run in long_enough if run[1] - run[0] >= _MIN_RELATIVE_RUN * longest),
        key=lambda run: float(np.median(smooth[run[0] : run[1]])),
    )


def diaphragm_apex(
    columns: npt.NDArray[np.intp],
    inferior_rows: npt.NDArray[np.float64],
    pixel_at_isocentre_mm: float,
) -> tuple[float, float] | None:
    """The most superior point of the diaphragm part of a lung field's inferior boundary.

    The diaphragm part is the stretch of :func:`_diaphragm_run`; its apex is its highest
    point, at the median column of the points within ``_APEX_TOLERANCE_MM`` of it.

    Returns
    -------
    tuple of float or None
        ``(column, row)``, panel pixels; None when no run of at least ``_MIN_RUN_MM`` exists.
    """
    run = _diaphragm_run(columns, inferior_rows, pixel_at_isocentre_mm)
    if run is None:
        return None
    window = max(3, round(_BOUNDARY_MEDIAN_MM / pixel_at_isocentre_mm) | 1)
    smooth = _smoothed(inferior_rows, window)
    a, b = run
    run_columns, run_rows = columns[a:b], smooth[a:b]
    top = float(run_rows.min())
    near_top = run_columns[run_rows <= top + _APEX_TOLERANCE_MM / pixel_at_isocentre_mm]
    return float(np.median(near_top)), top


def edge_above_fraction(
    columns: npt.NDArray[np.intp],
    edge_rows: npt.NDArray[np.float64],
    attenuation: npt.NDArray[np.float32],
    pixel_at_isocentre_mm: float,
) -> float:
    """Share of the diaphragm stretch along which a second lung-to-liver edge runs just above.

    A PA or AP view often shows the diaphragm twice: the top of the dome, where the beam is
    tangent to it, and lower down the end of the posterior costophrenic recess, whose lung
    overlaps the liver and reads as a grey band between the two. The dome is the upper one. An
    edge rising in attenuation, at least ``_PARALLEL_MIN_RELATIVE_EDGE`` as strong as the
    boundary's own, ``_PARALLEL_GAP_MM`` to ``_PARALLEL_REACH_MM`` above it, and continuing from
    column to column (within ``_CONTINUITY_ROWS``), with a dip between them (the gradient
    falling to ``_PARALLEL_VALLEY`` of the weaker edge or less: two edges, not the far side of
    one broad ramp), says the boundary may be the lower contour.
    A rib's upper border rises in attenuation too, but crosses a diaphragm rather than running
    along it for long.

    Parameters
    ----------
    columns, edge_rows : numpy.ndarray
        A field's inferior boundary on the image's edge (:func:`refined_inferior_boundary`).
    attenuation : numpy.ndarray
        The image, values rising with attenuation, head towards row 0.
    pixel_at_isocentre_mm : float
        Pixel size at the isocentre plane, mm.

    Returns
    -------
    float
        Longest such parallel stretch over the diaphragm stretch's length (0 to 1); NaN when
        the boundary has no diaphragm stretch.
    """
    run = _diaphragm_run(columns, edge_rows, pixel_at_isocentre_mm)
    if run is None:
        return math.nan
    gradient = _downward_gradient(attenuation, pixel_at_isocentre_mm)
    gap = max(1, round(_PARALLEL_GAP_MM / pixel_at_isocentre_mm))
    reach = max(gap + 1, round(_PARALLEL_REACH_MM / pixel_at_isocentre_mm))
    above_rows, parallel = [], []
    for column, edge_row in zip(columns[run[0] : run[1]], edge_rows[run[0] : run[1]], strict=True):
        row = int(edge_row)
        own = float(gradient[max(0, row - 1) : row + 2, column].max())
        low = max(0, row - reach)
        profile = gradient[low : max(low, row - gap), column]
        if profile.size == 0:
            above_rows.append(-1)
            parallel.append(False)
            continue
        k = int(np.argmax(profile))
        above, between = float(profile[k]), gradient[low + k : row, column]
        above_rows.append(low + k)
        # Two edges, not one broad ramp: the gradient falls back between them (the grey band).
        parallel.append(
            own > 0.0
            and above >= _PARALLEL_MIN_RELATIVE_EDGE * own
            and float(between.min()) <= _PARALLEL_VALLEY * min(above, own)
        )
    return _longest_continuous(parallel, above_rows) / (run[1] - run[0])


def _longest_continuous(flags: list[bool], rows: list[int]) -> int:
    """Longest stretch of flagged columns whose rows step at most ``_CONTINUITY_ROWS``."""
    longest = current = 0
    for i, flagged in enumerate(flags):
        if not flagged:
            current = 0
        elif current and abs(rows[i] - rows[i - 1]) <= _CONTINUITY_ROWS:
            current += 1
        else:
            current = 1
        longest = max(longest, current)
    return longest
