"""Builders shared by the image I/O tests: small volumes, geometries and sequences."""

from __future__ import annotations

import numpy as np
import pytest

from igrt.geometry import ProjectionGeometry
from igrt.volume import Volume
from tests.igrt.imageio.builders import rotation_matrix


@pytest.fixture
def oblique_volume() -> Volume:
    """7 slices of 20x30 float HU with an oblique direction and a frame of reference."""
    rng = np.random.default_rng(1)
    return Volume(
        rng.normal(0.0, 300.0, (7, 20, 30)).astype(np.float32),
        spacing_mm=(0.7, 0.9, 2.5),
        origin_lps_mm=(-100.25, 30.5, -400.125),
        direction=rotation_matrix(10.0, -20.0, 35.0),
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1",
    )


@pytest.fixture
def integer_volume() -> Volume:
    """An axial int16 HU volume, values within the int16 range."""
    rng = np.random.default_rng(2)
    return Volume(
        rng.integers(-1024, 3000, (5, 16, 12)).astype(np.int16),
        spacing_mm=(0.9765625, 0.9765625, 2.0),
        origin_lps_mm=(-249.51171875, -437.51171875, -804.5),
    )


@pytest.fixture
def panel() -> ProjectionGeometry:
    """A small XVI-like panel: SAD 1000, SDD 1536, 24 rows x 32 columns at 0.8/1.2 mm."""
    return ProjectionGeometry(
        sad_mm=1000.0,
        sdd_mm=1536.0,
        pixel_pitch_mm=(0.8, 1.2),
        detector_shape=(24, 32),
        detector_offset_mm=(115.0, -2.5),
        gantry_deg=270.0,
    )
