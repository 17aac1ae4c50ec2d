"""Private: exhaustive translation search by masked normalised cross-correlation (FFT).

The planning-CT template ``F`` (the clip box, one coarse pyramid level) is compared with the
CBCT ``M`` sampled on the same lattice grown by a margin, for *every* integer-voxel translation
within the margin at once. Correlations are computed with FFTs; the CBCT's invalid voxels (NaN:
outside its field of view) are excluded from every sum, so each shift's NCC uses exactly the
overlap of the template and the valid CBCT (Padfield, IEEE TIP 2012, "Masked object
registration in the Fourier domain"). With a 4 mm lattice and a 32 mm margin that is
17 x 17 x 17 shifts in a few milliseconds: the capture range no longer depends on a local
optimiser's basin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import fft

FloatArray = npt.NDArray[np.float64]

MIN_OVERLAP_FRACTION = 0.5
"""Shifts whose overlap with the valid CBCT is below this fraction of the template are skipped."""


@dataclass(frozen=True)
class SearchResult:
    """Best translation of an exhaustive search.

    Parameters
    ----------
    shift_voxels : numpy.ndarray
        ``(3,)`` best shift along ``(x, y, z)``, voxels, sub-voxel by a parabola through the
        peak and its neighbours (moving-image position minus template position).
    ncc : float
        NCC at the best integer shift.
    runner_up_ncc : float
        Best NCC at least ``exclusion_voxels`` away from the peak (-1 if none).
    at_edge : bool
        Whether the peak lies on the border of the searched range.
    overlap_fraction : float
        Valid-overlap fraction of the template at the peak.
    """

    shift_voxels: FloatArray
    ncc: float
    runner_up_ncc: float
    at_edge: bool
    overlap_fraction: float


def masked_ncc_search(
    template: npt.NDArray[np.float32],
    moving: npt.NDArray[np.float32],
    *,
    threads: int,
    exclusion_voxels: int = 2,
) -> SearchResult | None:
    """NCC of ``template`` against every placement inside ``moving`` (both ``(k, j, i)``).

    Parameters
    ----------
    template : numpy.ndarray
        The template; NaN voxels are left out.
    moving : numpy.ndarray
        The larger image on the same lattice; NaN voxels are left out. Shift ``s`` (voxels,
        ``(k, j, i)``) compares ``template[x]`` with ``moving[x + s]``.
    threads : int
        FFT worker threads (results do not depend on it).
    exclusion_voxels : int, optional
        Radius around the peak excluded when looking for the runner-up.

    Returns
    -------
    SearchResult or None
        ``None`` when no shift overlaps enough valid data.
    """
    template_valid = ~np.isnan(template)
    moving_valid = ~np.isnan(moving)
    f = np.where(template_valid, template, 0.0).astype(np.float64)
    wf = template_valid.astype(np.float64)
    m = np.where(moving_valid, moving, 0.0).astype(np.float64)
    wm = moving_valid.astype(np.float64)
    shape = moving.shape
    valid_shifts = tuple(slice(0, shape[a] - template.shape[a] + 1) for a in range(3))
    if any(s.stop <= 0 for s in valid_shifts):
        return None

    def spectrum(array: FloatArray) -> npt.NDArray[np.complex128]:
        transformed: npt.NDArray[np.complex128] = fft.rfftn(array, shape, workers=threads)
        return transformed

    def correlate(
        small: npt.NDArray[np.complex128], large: npt.NDArray[np.complex128]
    ) -> FloatArray:
        result: FloatArray = fft.irfftn(np.conj(small) * large, shape, workers=threads)
        return result[valid_shifts]

    spectrum_f, spectrum_ff, spectrum_wf = spectrum(f), spectrum(f * f), spectrum(wf)
    spectrum_m, spectrum_mm, spectrum_wm = spectrum(m), spectrum(m * m), spectrum(wm)
    count = correlate(spectrum_wf, spectrum_wm)
    sum_f = correlate(spectrum_f, spectrum_wm)
    sum_ff = correlate(spectrum_ff, spectrum_wm)
    sum_m = correlate(spectrum_wf, spectrum_m)
    sum_mm = correlate(spectrum_wf, spectrum_mm)
    sum_fm = correlate(spectrum_f, spectrum_m)
    count = np.round(count)
    enough = count >= MIN_OVERLAP_FRACTION * float(wf.sum())
    if not enough.any():
        return None
    safe = np.maximum(count, 1.0)
    covariance = sum_fm - sum_f * sum_m / safe
    variance_f = np.maximum(sum_ff - sum_f**2 / safe, 0.0)
    variance_m = np.maximum(sum_mm - sum_m**2 / safe, 0.0)
    denominator = np.sqrt(variance_f * variance_m)
    positive = enough & (denominator > 1e-9 * safe)
    ncc = np.full(count.shape, -1.0)
    ncc[positive] = covariance[positive] / denominator[positive]
    peak = np.array(np.unravel_index(int(np.argmax(ncc)), ncc.shape))
    best = float(ncc[tuple(peak)])
    if best <= -1.0:
        return None
    offset = np.zeros(3)
    at_edge = False
    for axis in range(3):
        if peak[axis] == 0 or peak[axis] == ncc.shape[axis] - 1:
            at_edge = True
            continue
        before = list(peak)
        after = list(peak)
        before[axis] -= 1
        after[axis] += 1
        y0, y1, y2 = float(ncc[tuple(before)]), best, float(ncc[tuple(after)])
        curvature = y0 - 2.0 * y1 + y2
        if curvature < 0 and y0 > -1.0 and y2 > -1.0:
            offset[axis] = float(np.clip(0.5 * (y0 - y2) / curvature, -0.5, 0.5))
    grid = np.indices(ncc.shape)
    distance = np.max(np.abs(grid - peak[:, np.newaxis, np.newaxis, np.newaxis]), axis=0)
    others = ncc[distance > exclusion_voxels]
    runner_up = float(others.max()) if others.size else -1.0
    shift_kji = peak + offset
    return SearchResult(
        shift_voxels=shift_kji[::-1].copy(),
        ncc=best,
        runner_up_ncc=runner_up,
        at_edge=at_edge,
        overlap_fraction=float(count[tuple(peak)] / max(float(wf.sum()), 1.0)),
    )
