"""Where the dome edge begins on a column profile: the apex of the projected dome.

Near its apex the dome is a paraboloid, so a ray passing ``x`` below the apex crosses a chord of
liver growing like ``sqrt(x)``: the attenuation profile down the apex column is
``b0 + b1 x + k sqrt(max(x, 0))``, blurred by the detector, the focal spot and partial volume.
The steepest point of the edge lies below the apex (the blur moves it down) and its superior
half-maximum above it; fitting the blurred square-root onset recovers the apex itself, which is
what the projected 3D apex means.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

__all__ = ["fit_edge_onset"]

_NODES = np.linspace(-4.0, 4.0, 81)
_WEIGHTS = np.exp(-0.5 * _NODES**2) / np.exp(-0.5 * _NODES**2).sum()
_MIN_SIGMA_PX = 0.2


def _blurred_sqrt(x: npt.NDArray[np.float64], sigma: float) -> npt.NDArray[np.float64]:
    """``E[sqrt(max(x + e, 0))]`` for Gaussian ``e`` of standard deviation ``sigma``."""
    samples = x[:, None] + sigma * _NODES[None, :]
    result: npt.NDArray[np.float64] = (np.sqrt(np.maximum(samples, 0.0)) * _WEIGHTS).sum(axis=1)
    return result


def fit_edge_onset(
    profile: npt.NDArray[np.floating],
    steepest_index: float,
    *,
    above_px: int = 10,
    below_px: int = 6,
) -> tuple[float, float] | None:
    """Sub-pixel row where a dome edge begins on an attenuation profile.

    Parameters
    ----------
    profile : numpy.ndarray
        Attenuation down the apex column (rising from lung to liver), 1D.
    steepest_index : float
        Row of the edge's steepest rise (the tracker's feature), an index into ``profile``.
    above_px, below_px : int, optional
        Rows of the profile used above and below the steepest point (fewer where the profile
        ends; at least 4 above and 3 below).

    Returns
    -------
    tuple of float or None
        ``(onset_row, blur_sigma_px)``, or ``None`` when the profile is too short or the fit
        does not describe an edge (then the caller keeps its steepest-point estimate).
    """
    centre = round(steepest_index)
    low, high = max(0, centre - above_px), min(profile.size, centre + below_px)
    if centre - low < 4 or high - centre < 3:
        return None
    rows = np.arange(low, high, dtype=np.float64)
    values = np.asarray(profile[low:high], dtype=np.float64)
    rise = values[-1] - values[0]
    if not math.isfinite(rise) or rise <= 0:
        return None

    def residual(parameters: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        onset, sigma, amplitude, offset, slope = parameters
        model = (
            offset
            + slope * (rows - centre)
            + amplitude * _blurred_sqrt(rows - onset, abs(sigma) + _MIN_SIGMA_PX)
        )
        difference: npt.NDArray[np.float64] = model - values
        return difference

    start = np.array([centre - 3.0, 2.0, rise / math.sqrt(high - low), values[0], 0.0])
    solution = least_squares(residual, start, method="lm", max_nfev=200)
    onset, sigma = float(solution.x[0]), abs(float(solution.x[1])) + _MIN_SIGMA_PX
    if not solution.success or not low <= onset <= centre + 1 or solution.x[2] <= 0:
        return None
    return onset, sigma
