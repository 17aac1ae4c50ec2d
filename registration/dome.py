"""Find the apex of the right hemidiaphragm dome from image values alone (no label map).

The dome is the lung base over the liver: going up a column of voxels, liver (soft tissue)
gives way to lung (air) at the diaphragm. The finder works on an isotropic identity-direction
grid (``z`` up) in four steps:

1. **Threshold.** Lung and soft-tissue levels come from the image itself (Otsu's split of the
   values clipped to [-1000, 300], then the median of each class), so the CBCT's unreliable HU
   scale does not matter; the edge threshold is the midpoint of the two levels.
2. **Lung-base surface.** In every column the highest upward tissue-to-lung transition with at
   least 15 mm of tissue below and 10 mm of lung above (vessels and fissures do not qualify);
   its height is the sub-voxel crossing of the midpoint threshold, which is where the edge is
   for any symmetric blur.
3. **The dome's sheet.** The surface is cut where neighbouring columns jump by more than a few
   millimetres (the heart and mediastinum sit as separate, higher sheets) and split into
   connected sheets; the dome is the largest sheet on the patient's right (whole-volume search)
   or the sheet nearest a hint (searching a box, e.g. a CBCT around the planning CT's apex).
4. **Apex.** A quadratic surface fitted to the sheet within 20 mm of its highest smoothed point;
   the apex is the fitted vertex when the fit is a cap, the smoothed maximum otherwise. The
   lung and tissue levels are then re-measured just above and below the apex and steps 2-4 are
   repeated once with the local midpoint.

The apex's superior-inferior height is what the registration's dome check compares; it is
insensitive to where on the flat top of the dome the apex falls laterally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from igrt.errors import InvalidInputError, ProcessingError
from igrt.volume import Volume
from registration._grid import (
    CT_PADDING_BELOW_HU,
    IsoGrid,
    coarsened_volume,
    crop_volume,
    nan_gaussian,
    resample_onto,
)
from registration.clip_box import ClipBox, volume_bounds_lps_mm

__all__ = ["DomeApex", "DomeNotFoundError", "find_dome_apex"]

FloatArray = npt.NDArray[np.float64]

_TISSUE_BELOW_MM = 15.0
_LUNG_ABOVE_MM = 10.0
_FIT_RADIUS_MM = 20.0
_SMOOTH_SIGMA_MM = 4.0
_RIM_MM = 9.0
_MAX_CANDIDATES = 5
_MAX_CAP_RMS_MM = 1.5
_MIN_SHEET_AREA_MM2 = 150.0
_COARSE_SPACING_MM = 3.0
_FINE_SPACING_MM = 1.0
_FINE_BOX_HALF_MM = np.array([30.0, 30.0, 25.0])
_BODY_THRESHOLD_HU = -400.0


class DomeNotFoundError(ProcessingError):
    """No lung base over soft tissue (a diaphragm dome) was found where it was searched."""


@dataclass(frozen=True, eq=False)
class DomeApex:
    """The apex of the right hemidiaphragm dome found in one image.

    Parameters
    ----------
    position_lps_mm : numpy.ndarray
        Apex, LPS mm. Its ``z`` (superior-inferior) is the precise part; ``x`` and ``y`` lie
        somewhere on the dome's flat top.
    lung_level : float
        Image value of lung just above the apex (the image's own units, HU for a CT).
    tissue_level : float
        Image value of the tissue (liver) just below the apex.
    n_columns : int
        Surface columns (1 mm apart) used by the apex fit.
    fit_rms_mm : float
        Root-mean-square residual of the fitted cap, mm.
    method : str
        ``"cap-fit"`` (vertex of the fitted quadratic) or ``"smoothed-maximum"``.
    """

    position_lps_mm: FloatArray
    lung_level: float
    tissue_level: float
    n_columns: int
    fit_rms_mm: float
    method: str

    @property
    def si_mm(self) -> float:
        """Superior-inferior coordinate of the apex: LPS ``z``, mm (+ is superior)."""
        return float(self.position_lps_mm[2])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "position_lps_mm": [float(v) for v in self.position_lps_mm],
            "lung_level": float(self.lung_level),
            "tissue_level": float(self.tissue_level),
            "n_columns": int(self.n_columns),
            "fit_rms_mm": float(self.fit_rms_mm),
            "method": self.method,
        }


def find_dome_apex(
    volume: Volume,
    *,
    search_box: ClipBox | None = None,
    hint_lps_mm: npt.ArrayLike | None = None,
    padding_value: float | None = None,
    invalid_below: float | None = CT_PADDING_BELOW_HU,
    threads: int = 2,
) -> DomeApex:
    """Locate the apex of the right hemidiaphragm dome from image values.

    Parameters
    ----------
    volume : igrt.volume.Volume
        A CT or CBCT of the chest and upper abdomen, any direction cosines. Lung must be darker
        than liver; the absolute scale is not used.
    search_box : ClipBox, optional
        Where to search, LPS mm. Without it the whole volume is searched for the largest lung
        base on the patient's right (a planning CT); with it (a CBCT), the sheet nearest
        ``hint_lps_mm`` inside the box is taken.
    hint_lps_mm : array_like of float, optional
        Expected apex (e.g. the planning CT's apex), LPS mm; only its ``x, y`` choose the sheet.
        The box centre when omitted.
    padding_value : float, optional
        Voxels equal to this value are outside the field of view (a CBCT's fill).
    invalid_below : float or None, optional
        Voxels below this value are padding (default -1050, a CT's -2048 or -3024 fill).
    threads : int, optional
        Threads for resampling.

    Returns
    -------
    DomeApex
        The apex and how it was found.

    Raises
    ------
    DomeNotFoundError
        If no lung base over soft tissue is found.
    InvalidInputError
        If the search box misses the volume.
    """
    if search_box is None:
        coarse = _coarse_apex(volume, padding_value, invalid_below, threads)
        search_box = ClipBox(coarse - _FINE_BOX_HALF_MM, coarse + _FINE_BOX_HALF_MM)
        hint = coarse
    else:
        hint = (
            search_box.centre_lps_mm
            if hint_lps_mm is None
            else np.asarray(hint_lps_mm, dtype=np.float64)
        )
    lower, upper = volume_bounds_lps_mm(volume)
    box = search_box.intersection(ClipBox(lower, upper))
    if box is None:
        raise InvalidInputError("the dome search box misses the volume", field="search_box")
    grid = IsoGrid.covering(box.lower_lps_mm, box.upper_lps_mm, _FINE_SPACING_MM, 1)
    crop = crop_volume(
        volume,
        box.lower_lps_mm,
        box.upper_lps_mm,
        margin_voxels=2,
        padding_value=padding_value,
        invalid_below=invalid_below,
    )
    if crop is None:
        raise InvalidInputError("the dome search box misses the volume", field="search_box")
    values = resample_onto(crop, grid, threads=threads).astype(np.float64)
    values = nan_gaussian(values, 1.0)
    lung_level, tissue_level = _class_levels(values)
    apex: DomeApex | None = None
    for _ in range(2):
        threshold = 0.5 * (lung_level + tissue_level)
        heights = _lung_base_heights(values, threshold, grid.spacing_mm, grid.origin_lps_mm[2])
        sheet = _sheet_near(heights, grid, hint[:2])
        apex = _fit_apex(heights, sheet, grid, lung_level, tissue_level)
        lung_level, tissue_level = _local_levels(values, grid, apex.position_lps_mm)
    assert apex is not None
    return DomeApex(
        apex.position_lps_mm, lung_level, tissue_level, apex.n_columns, apex.fit_rms_mm, apex.method
    )


# --- coarse whole-volume search ----------------------------------------------------------


def _coarse_apex(
    volume: Volume, padding_value: float | None, invalid_below: float | None, threads: int
) -> FloatArray:
    lower, upper = volume_bounds_lps_mm(volume)
    # Cheap anti-aliasing: block means towards the coarse spacing before resampling; padding
    # must not be averaged into tissue, so mostly-invalid blocks are NaN before resampling.
    small = coarsened_volume(
        volume, _COARSE_SPACING_MM, padding_value=padding_value, invalid_below=invalid_below
    )
    grid = IsoGrid.covering(lower, upper, _COARSE_SPACING_MM, 1)
    values = resample_onto(small, grid, threads=threads).astype(np.float64)
    tissue = values >= _BODY_THRESHOLD_HU  # NaN compares False: padding is not body
    filled = _fill_holes_in_planes(tissue)
    labels, n_labels = ndimage.label(filled)
    if n_labels == 0:
        raise DomeNotFoundError("no body found in the volume")
    sizes = _label_sizes(labels, n_labels)
    body = labels == (1 + int(np.argmax(sizes)))
    lung = body & (values < _BODY_THRESHOLD_HU)
    masked = np.where(body, values, np.nan)
    masked = np.where(lung, -1000.0, masked)
    heights = _lung_base_heights(masked, _BODY_THRESHOLD_HU, grid.spacing_mm, grid.origin_lps_mm[2])
    # Mean column index of the body from its per-column counts (exact integer sums, as the
    # mean of every body voxel's index but without listing them).
    columns = np.count_nonzero(body, axis=(0, 1))
    mean_i = float(np.sum(columns * np.arange(columns.size))) / float(np.sum(columns))
    body_x_mm = mean_i * grid.spacing_mm + grid.origin_lps_mm[0]
    x_mm = grid.origin_lps_mm[0] + grid.spacing_mm * np.arange(grid.shape_kji[2])
    right = np.broadcast_to(x_mm[np.newaxis, :] < body_x_mm, heights.shape)
    heights = np.where(right, heights, np.nan)
    sheets, n_sheets = _sheets(heights, grid.spacing_mm)
    if n_sheets == 0:
        raise DomeNotFoundError("no lung base over soft tissue on the patient's right")
    areas = _label_sizes(sheets, n_sheets)
    sheet = sheets == (1 + int(np.argmax(areas)))
    smooth = _smoothed_heights(
        heights, _core(sheet, grid.spacing_mm), _SMOOTH_SIGMA_MM / grid.spacing_mm
    )
    j, i = _apex_column(smooth, grid.spacing_mm)
    apex: FloatArray = np.array(
        [
            grid.origin_lps_mm[0] + i * grid.spacing_mm,
            grid.origin_lps_mm[1] + j * grid.spacing_mm,
            float(smooth[j, i]),
        ]
    )
    return apex


def _label_sizes(labels: npt.NDArray[np.integer[Any]], n_labels: int) -> FloatArray:
    """Voxel count of each label ``1 .. n_labels``."""
    counts: FloatArray = np.bincount(labels.ravel(), minlength=n_labels + 1)[1:].astype(np.float64)
    return counts


def _fill_holes_in_planes(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``mask`` ``(k, j, i)`` with the holes of each axial plane filled.

    A hole is a background region (4-connected within its plane) that does not reach the
    plane's border: the same as ``ndimage.binary_fill_holes`` with a structure that does not
    connect planes, from one labelling of the background instead of dilations repeated until
    nothing changes (a third of the time on a whole CT at 3 mm).
    """
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    labels, n_labels = ndimage.label(~mask, structure=in_plane)
    reaches_border = np.zeros(n_labels + 1, bool)
    reaches_border[0] = True  # label 0 is the mask itself
    for face in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        reaches_border[face] = True
    filled: npt.NDArray[np.bool_] = mask | ~reaches_border[labels]
    return filled


# --- the surface and its sheets ----------------------------------------------------------


def _otsu(values: FloatArray) -> float:
    histogram, edges = np.histogram(values, bins=128)
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight = histogram.astype(np.float64)
    w0 = np.cumsum(weight)
    w1 = w0[-1] - w0
    m0 = np.cumsum(weight * centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean0 = m0 / w0
        mean1 = (m0[-1] - m0) / w1
        between = w0 * w1 * (mean0 - mean1) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return float(centres[int(np.argmax(between))])


def _class_levels(values: FloatArray) -> tuple[float, float]:
    """Lung and soft-tissue levels of a region: medians of the two Otsu classes."""
    finite = values[~np.isnan(values)]
    clipped = np.clip(finite, -1000.0, 300.0)
    if clipped.size < 1000:
        raise DomeNotFoundError("too few valid voxels where the dome was searched")
    threshold = _otsu(clipped)
    low = clipped[clipped < threshold]
    high = clipped[(clipped >= threshold) & (clipped < 300.0)]
    if low.size < 100 or high.size < 100:
        raise DomeNotFoundError("no lung and soft tissue where the dome was searched")
    return float(np.median(low)), float(np.median(high))


def _lung_base_heights(
    values: FloatArray, threshold: float, spacing_mm: float, z0_mm: float
) -> FloatArray:
    """Height (LPS z, mm) of the highest qualifying tissue-to-lung transition per column.

    ``values`` is ``(k, j, i)`` with ``k`` going superior; NaN voxels break runs. Returns a
    ``(j, i)`` map, NaN where no transition qualifies.
    """
    n_below = max(1, round(_TISSUE_BELOW_MM / spacing_mm))
    n_above = max(1, round(_LUNG_ABOVE_MM / spacing_mm))
    valid = ~np.isnan(values)
    tissue = valid & (values >= threshold)
    lung = valid & (values < threshold)
    nk = values.shape[0]
    if nk < n_below + n_above:
        return np.full(values.shape[1:], np.nan)
    zeros = np.zeros((1, *values.shape[1:]), np.int32)
    tissue_sum = np.concatenate([zeros, np.cumsum(tissue, axis=0, dtype=np.int32)])
    lung_sum = np.concatenate([zeros, np.cumsum(lung, axis=0, dtype=np.int32)])
    # For k = n_below - 1 .. nk - n_above - 1: tissue at k - n_below + 1 .. k, lung at
    # k + 1 .. k + n_above, as differences of the running sums (contiguous slices, no gather).
    count = nk - n_above - n_below + 1
    tissue_run = (tissue_sum[n_below : n_below + count] - tissue_sum[:count]) == n_below
    lung_run = (
        lung_sum[n_below + n_above : n_below + n_above + count]
        - lung_sum[n_below : n_below + count]
    ) == n_above
    qualifies = tissue_run & lung_run
    any_q = qualifies.any(axis=0)
    # highest qualifying k per column
    top = qualifies.shape[0] - 1 - np.argmax(qualifies[::-1], axis=0)
    k_edge = top + (n_below - 1)
    heights = np.full(values.shape[1:], np.nan)
    jj, ii = np.nonzero(any_q)
    kk = k_edge[jj, ii]
    below = values[kk, jj, ii]
    above = values[kk + 1, jj, ii]
    fraction = np.clip((below - threshold) / (below - above), 0.0, 1.0)
    heights[jj, ii] = z0_mm + (kk + fraction) * spacing_mm
    return heights


def _sheets(heights: FloatArray, spacing_mm: float) -> tuple[npt.NDArray[np.int32], int]:
    """Label smooth connected sheets of a height map; columns at height jumps are cut out."""
    valid = ~np.isnan(heights)
    jump_mm = 2.0 * spacing_mm + 2.0
    filled = np.where(valid, heights, -1e6)
    cut = np.zeros(heights.shape, bool)
    for axis in (0, 1):
        difference = np.abs(np.diff(filled, axis=axis))
        big = difference > jump_mm
        lower = [slice(None), slice(None)]
        upper = [slice(None), slice(None)]
        lower[axis] = slice(0, -1)
        upper[axis] = slice(1, None)
        cut[tuple(lower)] |= big
        cut[tuple(upper)] |= big
    labels, n_labels = ndimage.label(valid & ~cut)
    return labels.astype(np.int32), int(n_labels)


def _sheet_near(
    heights: FloatArray, grid: IsoGrid, hint_xy_mm: FloatArray
) -> npt.NDArray[np.bool_]:
    sheets, n_sheets = _sheets(heights, grid.spacing_mm)
    if n_sheets == 0:
        raise DomeNotFoundError("no lung base over soft tissue where the dome was searched")
    areas = _label_sizes(sheets, n_sheets) * grid.spacing_mm**2
    nj, ni = heights.shape
    y_mm = grid.origin_lps_mm[1] + grid.spacing_mm * np.arange(nj)
    x_mm = grid.origin_lps_mm[0] + grid.spacing_mm * np.arange(ni)
    distance = np.hypot(x_mm[np.newaxis, :] - hint_xy_mm[0], y_mm[:, np.newaxis] - hint_xy_mm[1])
    nearest = np.full(n_sheets + 1, np.inf)
    np.minimum.at(nearest, sheets.ravel(), distance.ravel())
    nearest = nearest[1:]  # per sheet, the distance of its column nearest the hint
    candidates = np.flatnonzero(areas >= _MIN_SHEET_AREA_MM2)
    if candidates.size == 0:
        raise DomeNotFoundError("the lung base found is too small to be a diaphragm dome")
    # The nearest sheet; among sheets within 5 mm of the nearest distance, the largest.
    best_distance = float(np.min(np.asarray(nearest)[candidates]))
    close = candidates[np.asarray(nearest)[candidates] <= best_distance + 5.0]
    chosen = close[int(np.argmax(areas[close]))]
    sheet: npt.NDArray[np.bool_] = sheets == (chosen + 1)
    return sheet


def _core(sheet: npt.NDArray[np.bool_], spacing_mm: float) -> npt.NDArray[np.bool_]:
    """The sheet without its rim: the apex is an interior maximum, not a climbing edge.

    Where a lung base meets the mediastinum or the heart it climbs steeply within a few
    millimetres; eroding the sheet by ``_RIM_MM`` keeps those columns out of the apex search.
    """
    core = sheet
    for _ in range(max(1, round(_RIM_MM / spacing_mm))):
        # One erosion by the 4-neighbour cross; outside the map counts as sheet: the search
        # box's own faces are not a rim of the sheet (ndimage.binary_erosion with
        # border_value=1, without its slow path for repeated iterations).
        padded = np.pad(core, 1, constant_values=True)
        core = core & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return core if core.sum() >= 10 else sheet


def _smoothed_heights(
    heights: FloatArray, sheet: npt.NDArray[np.bool_], sigma_voxels: float
) -> FloatArray:
    filled = np.where(sheet, heights, 0.0)
    numerator = ndimage.gaussian_filter(filled, sigma_voxels)
    weight = ndimage.gaussian_filter(sheet.astype(np.float64), sigma_voxels)
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth: FloatArray = np.where(sheet & (weight > 0.3), numerator / weight, np.nan)
    return smooth


def _peak_columns(smooth: FloatArray, spacing_mm: float) -> list[tuple[int, int]]:
    """``(j, i)`` of the interior local maxima of a smoothed height map, highest first.

    A local maximum is a column at least as high as every column within 8 mm; maxima within
    3 mm of the map's border are skipped (a sheet that keeps climbing out of the searched box
    peaks there without being a dome). Without an interior maximum: the highest column.
    """
    filled = np.where(np.isnan(smooth), -np.inf, smooth)
    size = 2 * max(1, round(8.0 / spacing_mm)) + 1
    peaks = (filled == ndimage.maximum_filter(filled, size=size, mode="nearest")) & np.isfinite(
        filled
    )
    border = max(1, round(3.0 / spacing_mm))
    peaks[:border, :] = False
    peaks[-border:, :] = False
    peaks[:, :border] = False
    peaks[:, -border:] = False
    if not peaks.any():
        j, i = np.unravel_index(int(np.argmax(filled)), filled.shape)
        return [(int(j), int(i))]
    jj, ii = np.nonzero(peaks)
    order = np.argsort(-filled[jj, ii], kind="stable")
    return [(int(jj[n]), int(ii[n])) for n in order[:_MAX_CANDIDATES]]


def _apex_column(smooth: FloatArray, spacing_mm: float) -> tuple[int, int]:
    """``(j, i)`` of the highest interior local maximum (see :func:`_peak_columns`)."""
    return _peak_columns(smooth, spacing_mm)[0]


def _fit_apex(
    heights: FloatArray,
    sheet: npt.NDArray[np.bool_],
    grid: IsoGrid,
    lung_level: float,
    tissue_level: float,
) -> DomeApex:
    """The first local maximum, highest first, around which a cap fits; else the highest."""
    spacing = grid.spacing_mm
    smooth = _smoothed_heights(heights, _core(sheet, spacing), _SMOOTH_SIGMA_MM / spacing)
    if np.all(np.isnan(smooth)):
        raise DomeNotFoundError("the dome's sheet is too thin to locate an apex")
    jj, ii = np.nonzero(sheet)
    x = grid.origin_lps_mm[0] + spacing * ii
    y = grid.origin_lps_mm[1] + spacing * jj
    z = heights[jj, ii]
    candidates = _peak_columns(smooth, spacing)
    for j0, i0 in candidates:
        start = np.array(
            [grid.origin_lps_mm[0] + spacing * i0, grid.origin_lps_mm[1] + spacing * j0]
        )
        cap = _cap_fit(x, y, z, start)
        if cap is not None:
            position, n_columns, rms = cap
            return DomeApex(position, lung_level, tissue_level, n_columns, rms, "cap-fit")
    j0, i0 = candidates[0]
    return DomeApex(
        np.array(
            [
                grid.origin_lps_mm[0] + spacing * i0,
                grid.origin_lps_mm[1] + spacing * j0,
                float(smooth[j0, i0]),
            ]
        ),
        lung_level,
        tissue_level,
        int(sheet.sum()),
        math.nan,
        "smoothed-maximum",
    )


def _cap_fit(
    x: FloatArray, y: FloatArray, z: FloatArray, start_xy_mm: FloatArray
) -> tuple[FloatArray, int, float] | None:
    """Fit ``z = quadratic(x, y)`` within 20 mm, recentred on its vertex up to three times.

    Returns the vertex ``(x, y, z)``, the columns used and the fit's RMS residual (mm), or
    ``None`` when the surface there is not a cap (not concave, vertex beyond the fitted disk,
    or a residual above ``_MAX_CAP_RMS_MM``).
    """
    centre = np.asarray(start_xy_mm, dtype=np.float64)
    for _ in range(3):
        dx, dy = x - centre[0], y - centre[1]
        near = dx**2 + dy**2 <= _FIT_RADIUS_MM**2
        n_near = int(near.sum())
        if n_near < 30:
            return None
        design = np.stack(
            [
                np.ones(n_near),
                dx[near],
                dy[near],
                dx[near] ** 2,
                dx[near] * dy[near],
                dy[near] ** 2,
            ],
            axis=1,
        )
        keep = np.ones(n_near, bool)
        coefficients = np.zeros(6)
        residual = np.zeros(n_near)
        for _ in range(2):  # one round of outlier rejection (vessels touching the dome)
            coefficients, *_ = np.linalg.lstsq(design[keep], z[near][keep], rcond=None)
            residual = z[near] - design @ coefficients
            mad = float(np.median(np.abs(residual[keep]))) + 1e-6
            keep = np.abs(residual) <= 4.0 * 1.4826 * mad
        hessian = np.array(
            [[2 * coefficients[3], coefficients[4]], [coefficients[4], 2 * coefficients[5]]]
        )
        if not np.all(np.linalg.eigvalsh(hessian) < 0):
            return None
        vertex = -np.linalg.solve(hessian, coefficients[1:3])
        if float(np.hypot(*vertex)) > _FIT_RADIUS_MM:
            return None
        centre = centre + vertex
        if float(np.hypot(*vertex)) < 0.5:
            break
    vx, vy = vertex
    z_apex = float(
        coefficients[0]
        + coefficients[1] * vx
        + coefficients[2] * vy
        + coefficients[3] * vx**2
        + coefficients[4] * vx * vy
        + coefficients[5] * vy**2
    )
    rms = float(np.sqrt(np.mean(residual[keep] ** 2)))
    if rms > _MAX_CAP_RMS_MM:
        return None
    return np.array([centre[0], centre[1], z_apex]), int(keep.sum()), rms


def _local_levels(
    values: FloatArray, grid: IsoGrid, apex_lps_mm: FloatArray
) -> tuple[float, float]:
    """Lung and tissue medians 4-12 mm above and below the apex, within 15 mm laterally."""
    nk, nj, ni = values.shape
    spacing = grid.spacing_mm
    x = grid.origin_lps_mm[0] + spacing * np.arange(ni)
    y = grid.origin_lps_mm[1] + spacing * np.arange(nj)
    z = grid.origin_lps_mm[2] + spacing * np.arange(nk)
    lateral = np.hypot(x[np.newaxis, :] - apex_lps_mm[0], y[:, np.newaxis] - apex_lps_mm[1]) < 15.0
    above = (z > apex_lps_mm[2] + 4.0) & (z < apex_lps_mm[2] + 12.0)
    below = (z < apex_lps_mm[2] - 4.0) & (z > apex_lps_mm[2] - 12.0)
    lung = values[above][:, lateral]
    tissue = values[below][:, lateral]
    lung = lung[~np.isnan(lung)]
    tissue = tissue[~np.isnan(tissue)]
    if lung.size < 50 or tissue.size < 50:
        return _class_levels(values)
    return float(np.median(lung)), float(np.median(tissue))
