"""Simulated clips with known dome motion, shared by the tracking tests."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import breathing
from fixtures.fluoro import FluoroSimulation, simulate_fluoro
from fixtures.motion import BreathingMotionModel
from fixtures.panel import PanelPhysics
from fixtures.phantom import make_phantom
from igrt.geometry import xvi_geometry
from igrt.tracking.detection import DetectionView, attenuation_image

GEOMETRY = xvi_geometry(binning=4)  # 256 x 256 at 1.6 mm: 1.04 mm pixels at the isocentre


@pytest.fixture(scope="session")
def phantom_model() -> BreathingMotionModel:
    return BreathingMotionModel.from_anatomy(make_phantom())


@pytest.fixture(scope="session")
def regular_clip(phantom_model: BreathingMotionModel) -> FluoroSimulation:
    signal = breathing.regular(12.0, 4.0, 8.0, 50.0)
    return simulate_fluoro(
        phantom_model,
        signal,
        duration_s=6.0,
        fps=5.0,
        geometry=GEOMETRY,
        physics=PanelPhysics(photons_per_pixel=20000.0),
        grid_spacing_mm=(2.0, 1.0),
        seed=1,
    )


@pytest.fixture(scope="session")
def midline_clip(phantom_model: BreathingMotionModel) -> FluoroSimulation:
    """Isocentre on the midline, so both domes are on the panel."""
    signal = breathing.regular(10.0, 4.0, 4.0, 50.0)
    isocentre = phantom_model.apex_lps_mm * [0.0, 1.0, 1.0] - [0.0, 0.0, 20.0]
    return simulate_fluoro(
        phantom_model,
        signal,
        duration_s=2.0,
        fps=5.0,
        geometry=GEOMETRY,
        physics=PanelPhysics(photons_per_pixel=20000.0),
        grid_spacing_mm=(2.0, 1.0),
        isocentre_lps_mm=isocentre,
        seed=2,
    )


def first_frame_view(clip: FluoroSimulation) -> tuple[np.ndarray, DetectionView]:
    """A simulated clip's first frame as detection sees it (attenuation, head up), and its view."""
    sequence = clip.sequence
    image = attenuation_image(sequence.frames[0], sequence.intensity)
    return image, DetectionView(-1.0, GEOMETRY.pixel_at_isocentre_mm[0])
