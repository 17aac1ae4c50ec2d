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
thin bridges; connected components larger than ``_MIN_LUNG_AREA_MM2`` are lung fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["LungField", "diaphragm_apex", "find_lung_fields", "refined_inferior_boundary"]

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
_MEDIAL_EXTENSION_MM = 30.0
_MEDIAL_MIN_RELATIVE_EDGE = 0.5
_BOUNDARY_MEDIAN_MM = 6.0


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
    """

    columns: npt.NDArray[np.intp]
    inferior_rows: npt.NDArray[np.float64]
    superior_row: float
    centroid_column_row: tuple[float, float]
    area_mm2: float
    touches_top: bool

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


def _touches_side_or_bottom(labels: npt.NDArray[np.int32]) -> set[int]:
    edges = np.concatenate([labels[:, 0], labels[:, -1], labels[-1, :]])
    return {int(k) for k in np.unique(edges) if k}


def _normalised(image: npt.NDArray[np.float32], pixel_mm: float) -> npt.NDArray[np.uint8]:
    smooth = cv2.GaussianBlur(image, (0, 0), max(_SMOOTHING_MM / pixel_mm, 0.5))
    low, high = np.percentile(smooth, [0.5, 99.5])
    scaled = np.clip((smooth - low) / max(float(high - low), 1e-12), 0.0, 1.0)
    return np.asarray(scaled * 255.0, np.uint8)


def _outside_air(dark: npt.NDArray[np.uint8], pixel_mm: float) -> npt.NDArray[np.bool_]:
    """Dark regions connected to the left, right or bottom border: air around the body."""
    kernel = np.ones((_odd(_OPENING_MM / pixel_mm),) * 2, np.uint8)
    opened = cv2.morphologyEx(dark, cv2.MORPH_OPEN, kernel)
    labels: npt.NDArray[np.int32] = np.asarray(cv2.connectedComponents(opened)[1], np.int32)
    outside_labels = _touches_side_or_bottom(labels)
    outside = (
        np.isin(labels, list(outside_labels)) if outside_labels else np.zeros(dark.shape, bool)
    )
    margin = np.ones((_odd(2 * _BODY_MARGIN_MM / pixel_mm),) * 2, np.uint8)
    grown: npt.NDArray[np.bool_] = cv2.dilate(outside.astype(np.uint8), margin).astype(bool)
    return grown


def find_lung_fields(
    attenuation: npt.NDArray[np.float32], pixel_at_isocentre_mm: float
) -> list[LungField]:
    """Lung fields of an attenuation-ordered image (lung low, liver high), largest first.

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
    rows, cols = attenuation.shape
    factor = max(1, round(_WORK_PIXEL_MM / pixel_at_isocentre_mm))
    small_shape = (max(8, rows // factor), max(8, cols // factor))
    small = np.asarray(
        cv2.resize(attenuation, small_shape[::-1], interpolation=cv2.INTER_AREA), np.float32
    )
    pixel_mm = pixel_at_isocentre_mm * rows / small_shape[0]
    values = _normalised(small, pixel_mm)
    # Air around the body is the darkest class: split the dark half again, so that lung joined
    # to the air through a thin chest wall (a cropped view) is not taken for it.
    dark_half = values < _otsu(values)
    air = (values < _otsu(values[dark_half])).astype(np.uint8) if dark_half.any() else dark_half
    outside = _outside_air(air.astype(np.uint8), pixel_mm)
    body = ~outside
    if np.count_nonzero(body) < 0.2 * body.size:
        return []
    lung = ((values < _otsu(values[body])) & body).astype(np.uint8)
    opening = np.ones((_odd(_OPENING_MM / pixel_mm),) * 2, np.uint8)
    closing = np.ones((_odd(_CLOSING_MM / pixel_mm),) * 2, np.uint8)
    lung = np.asarray(
        cv2.morphologyEx(cv2.morphologyEx(lung, cv2.MORPH_OPEN, opening), cv2.MORPH_CLOSE, closing),
        np.uint8,
    )
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(lung)
    area_mm2 = stats[:, cv2.CC_STAT_AREA] * pixel_mm**2
    largest = float(area_mm2[1:].max()) if count > 1 else 0.0
    fields = []
    for k in range(1, count):
        height_mm = stats[k, cv2.CC_STAT_HEIGHT] * pixel_mm
        if (
            area_mm2[k] < max(_MIN_LUNG_AREA_MM2, _MIN_RELATIVE_AREA * largest)
            or height_mm < _MIN_LUNG_HEIGHT_MM
        ):
            continue
        fields.append(
            _field(
                labels == k,
                factor_rows=rows / small_shape[0],
                factor_cols=cols / small_shape[1],
                area_mm2=float(area_mm2[k]),
                centroid=centroids[k],
                full_cols=cols,
                pixel_mm=pixel_mm,
            )
        )
    fields.sort(key=lambda f: f.area_mm2, reverse=True)
    return fields


def _field(
    mask: npt.NDArray[np.bool_],
    *,
    factor_rows: float,
    factor_cols: float,
    area_mm2: float,
    centroid: npt.NDArray[np.float64],
    full_cols: int,
    pixel_mm: float,
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
        touches_top=bool(np.count_nonzero(mask[0]) * pixel_mm >= _CUT_TOP_MIN_MM),
    )


def refined_inferior_boundary(
    field: LungField,
    attenuation: npt.NDArray[np.float32],
    pixel_at_isocentre_mm: float,
    medial_step: int,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The field's inferior boundary moved onto the image's lung-to-liver edge, full resolution.

    The segmentation works at about 2 mm and rounds the corner where the diaphragm meets the
    heart border, which is where the dome is highest on many patients. Per column the boundary
    is moved to the strongest rise of attenuation within ``_SNAP_MM`` of it; then the edge is
    followed medially (``medial_step`` = +1 or -1 columns; 0 for none) beyond the segmented field
    for up to ``_MEDIAL_EXTENSION_MM``, at most a row per column, while it stays strong.

    Returns
    -------
    columns, rows : numpy.ndarray
        Columns in increasing order and the edge row on each (sub-pixel not attempted).
    """
    rows, cols = attenuation.shape
    smooth = cv2.GaussianBlur(attenuation, (0, 0), max(_EDGE_SIGMA_MM / pixel_at_isocentre_mm, 0.7))
    gradient = np.asarray(cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3), np.float32)
    snap = max(2, round(_SNAP_MM / pixel_at_isocentre_mm))
    edge_rows = np.empty(field.columns.size)
    strengths = np.empty(field.columns.size)
    for i, (column, row) in enumerate(zip(field.columns, field.inferior_rows, strict=True)):
        low, high = max(0, int(row) - snap), min(rows, int(row) + snap + 1)
        profile = gradient[low:high, column]
        k = int(np.argmax(profile))
        edge_rows[i], strengths[i] = low + k, profile[k]
    typical = float(np.median(strengths)) if strengths.size else 0.0
    # One row per column: the diaphragm run is where the boundary is flatter than 45 degrees,
    # and a steeper climb is the heart border.
    step_rows = 1
    extension: list[tuple[int, float]] = []
    end = 0 if medial_step < 0 else -1
    n_steps = round(_MEDIAL_EXTENSION_MM / pixel_at_isocentre_mm) if medial_step else 0
    column, row = int(field.columns[end]), float(edge_rows[end])
    for _ in range(n_steps):
        column += medial_step
        if not 0 <= column < cols:
            break
        low, high = max(0, int(row) - step_rows), min(rows, int(row) + step_rows + 1)
        profile = gradient[low:high, column]
        if profile.size == 0:
            break
        k = int(np.argmax(profile))
        if profile[k] < _MEDIAL_MIN_RELATIVE_EDGE * typical:
            break
        row = float(low + k)
        extension.append((column, row))
    all_columns = np.concatenate([field.columns, [c for c, _ in extension]]).astype(np.intp)
    all_rows = np.concatenate([edge_rows, [r for _, r in extension]])
    order = np.argsort(all_columns)
    return all_columns[order], all_rows[order]


def diaphragm_apex(
    columns: npt.NDArray[np.intp],
    inferior_rows: npt.NDArray[np.float64],
    pixel_at_isocentre_mm: float,
) -> tuple[float, float] | None:
    """The most superior point of the diaphragm part of a lung field's inferior boundary.

    The inferior boundary of a lung field is the diaphragm where it runs closer to horizontal
    than vertical; laterally it drops into the costophrenic angle and medially it climbs the
    heart border, both steeper. The apex is the highest point of the longest such run.

    Returns
    -------
    tuple of float or None
        ``(column, row)``, panel pixels; None when no run of at least ``_MIN_RUN_MM`` exists.
    """
    if columns.size < 5:
        return None
    window = max(3, round(_BOUNDARY_MEDIAN_MM / pixel_at_isocentre_mm) | 1)
    window = min(window, columns.size - (1 - columns.size % 2))
    padded = np.pad(inferior_rows, window // 2, mode="edge")
    smooth = np.median(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)
    slope = np.abs(np.gradient(smooth, columns.astype(np.float64)))
    flat = slope < 1.0
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
    # The diaphragm is the lowest long flat stretch: a flat stretch higher up is the top of a
    # heart shadow overlapping the field (the left lung) or the floor of a rib gap.
    longest = max(b - a for a, b in long_enough)
    a, b = max(
        (run for run in long_enough if run[1] - run[0] >= _MIN_RELATIVE_RUN * longest),
        key=lambda run: float(np.median(smooth[run[0] : run[1]])),
    )
    run_columns, run_rows = columns[a:b], smooth[a:b]
    top = float(run_rows.min())
    near_top = run_columns[run_rows <= top + _APEX_TOLERANCE_MM / pixel_at_isocentre_mm]
    return float(np.median(near_top)), top
