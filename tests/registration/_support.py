"""Constants and helpers shared by the registration tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fixtures.fluoro import simulate_fluoro
from fixtures.motion import BreathingMotionModel
from fixtures.phantom import phantom_right_dome_apex_lps_mm
from igrt.geometry import ProjectionGeometry
from igrt.sequence import IntensityValues
from registration import KvView

PHANTOM_APEX_LPS_MM = phantom_right_dome_apex_lps_mm()
PHANTOM_ISOCENTRE_LPS_MM = PHANTOM_APEX_LPS_MM - np.array([0.0, 0.0, 20.0])
CBCT_OPTIONS: dict[str, Any] = {
    "fov_diameter_mm": 200.0,
    "length_mm": 160.0,
    "max_extrapolation_mm": 40.0,
}


def point_error_mm(
    estimated_cbct_from_ct: npt.NDArray[np.float64],
    true_cbct_from_ct: npt.NDArray[np.float64],
    point_lps_mm: npt.ArrayLike,
) -> float:
    """Distance between where two transforms put one planning-CT point, mm."""
    p = np.asarray(point_lps_mm, dtype=np.float64)
    a = estimated_cbct_from_ct[:3, :3] @ p + estimated_cbct_from_ct[:3, 3]
    b = true_cbct_from_ct[:3, :3] @ p + true_cbct_from_ct[:3, 3]
    return float(np.linalg.norm(a - b))


class StillBreathing:
    """A breathing signal that never moves (end-exhale)."""

    def sample(self, times_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.zeros_like(times_s)


def simulate_kv_view(
    model: BreathingMotionModel,
    geometry: ProjectionGeometry,
    isocentre_lps_mm: npt.NDArray[np.float64],
    shift_lps_mm: npt.ArrayLike,
    seed: int = 3,
) -> KvView:
    """One raw kV frame of the anatomy displaced by ``shift_lps_mm``, breath held."""
    # Moving the isocentre by -shift images the patient displaced by +shift.
    sequence = simulate_fluoro(
        model,
        StillBreathing(),
        duration_s=1.0,
        fps=1.0,
        geometry=geometry,
        isocentre_lps_mm=isocentre_lps_mm - np.asarray(shift_lps_mm, dtype=np.float64),
        intensity=IntensityValues.RAW,
        grid_spacing_mm=(2.0, 2.0),
        seed=seed,
    ).sequence
    return KvView.from_sequence(sequence)
