"""Shared anatomies, prepared references and simulated CBCTs for the registration tests.

The phantom (:func:`fixtures.phantom.make_phantom`, right dome apex exactly at LPS
(-70, -10, 30) mm) keeps most tests independent of ``../shared/data``; its CBCTs use the fast
simulator path with a 200 mm field of view and 160 mm length (about 0.3 s each), cached per
parameter set for the session. The real chest CT (``chest_model``, ``chest_isocentre``; needs
``shared_data``) is loaded once per session for the 2D/2D tests.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from fixtures.anatomy import load_chest_ct
from fixtures.cbct import CbctSimulation, simulate_cbct
from fixtures.fluoro import default_isocentre_lps_mm
from fixtures.motion import BreathingMotionModel
from fixtures.phantom import make_phantom
from igrt.volume import Volume
from registration import PlanningReference, prepare_planning_reference
from tests.registration._support import CBCT_OPTIONS, PHANTOM_ISOCENTRE_LPS_MM

Simulate = Callable[..., CbctSimulation]


@pytest.fixture(scope="session")
def chest_model(shared_data: Path) -> BreathingMotionModel:
    return BreathingMotionModel.from_anatomy(load_chest_ct(shared_data))


@pytest.fixture(scope="session")
def chest_isocentre(chest_model: BreathingMotionModel) -> npt.NDArray[np.float64]:
    """20 mm below the right dome apex, LPS mm."""
    return default_isocentre_lps_mm(chest_model)


@pytest.fixture(scope="session")
def phantom_ct() -> Volume:
    return make_phantom().ct_hu


@pytest.fixture(scope="session")
def phantom_reference(phantom_ct: Volume) -> PlanningReference:
    return prepare_planning_reference(phantom_ct)


@pytest.fixture(scope="session")
def simulate_phantom_cbct(phantom_ct: Volume) -> Simulate:
    """``simulate(displacement_lps_mm, rotation_deg=(0, 0, 0), seed=1)``, cached."""

    @lru_cache(maxsize=32)
    def cached(
        displacement: tuple[float, float, float],
        rotation: tuple[float, float, float],
        seed: int,
    ) -> CbctSimulation:
        return simulate_cbct(
            phantom_ct,
            isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
            anatomy_displacement_lps_mm=displacement,
            rotation_deg=rotation,
            seed=seed,
            **CBCT_OPTIONS,
        )

    def simulate(
        displacement_lps_mm: npt.ArrayLike,
        rotation_deg: npt.ArrayLike = (0.0, 0.0, 0.0),
        seed: int = 1,
    ) -> CbctSimulation:
        d = tuple(float(v) for v in np.asarray(displacement_lps_mm, dtype=np.float64))
        r = tuple(float(v) for v in np.asarray(rotation_deg, dtype=np.float64))
        return cached((d[0], d[1], d[2]), (r[0], r[1], r[2]), seed)

    return simulate
