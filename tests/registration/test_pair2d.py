"""2D/2D registration of simulated orthogonal kV pairs of the real chest CT to its DRRs."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from fixtures.fluoro import simulate_fluoro
from fixtures.motion import BreathingMotionModel
from igrt.errors import GeometryError
from igrt.frame_of_reference import iec_support_from_lps
from igrt.geometry import xvi_geometry
from igrt.sequence import FluoroSequence, IntensityValues
from registration import (
    KvView,
    PairReference,
    QualityValues,
    prepare_pair_reference,
    register_pair_to_drrs,
)
from registration.drr import render_drr

pytestmark = pytest.mark.shared_data

GEOMETRIES = (xvi_geometry(binning=4, gantry_deg=0.0), xvi_geometry(binning=4, gantry_deg=90.0))
TARGET_ERROR_MM = 0.5


class _Still:
    """A breathing signal that never moves (end-exhale)."""

    def sample(self, times_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.zeros_like(times_s)


Simulate = Callable[[tuple[float, float, float]], list[FluoroSequence]]


@pytest.fixture(scope="module")
def isocentre(chest_isocentre: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return chest_isocentre


@pytest.fixture(scope="module")
def pair_reference(
    chest_model: BreathingMotionModel, isocentre: npt.NDArray[np.float64]
) -> PairReference:
    return prepare_pair_reference(
        chest_model.anatomy.ct_hu, GEOMETRIES, isocentre_lps_mm=isocentre, patient_position="HFS"
    )


@pytest.fixture(scope="module")
def simulate_pair(
    chest_model: BreathingMotionModel, isocentre: npt.NDArray[np.float64]
) -> Simulate:
    """kV frames at gantry 0 and 90 of the anatomy displaced by ``shift`` (LPS mm)."""

    def simulate(shift_lps_mm: tuple[float, float, float]) -> list[FluoroSequence]:
        # Moving the isocentre by -shift images the patient displaced by +shift.
        return [
            simulate_fluoro(
                chest_model,
                _Still(),
                duration_s=1.0,
                fps=1.0,
                geometry=geometry,
                isocentre_lps_mm=isocentre - np.asarray(shift_lps_mm),
                intensity=IntensityValues.RAW,
                grid_spacing_mm=(2.0, 2.0),
                seed=3,
            ).sequence
            for geometry in GEOMETRIES
        ]

    return simulate


@pytest.mark.parametrize(
    "shift_lps_mm",
    [(5.0, 0.0, 0.0), (0.0, 5.0, 0.0), (0.0, 0.0, 5.0), (-7.3, 4.1, -12.2)],
    ids=["left-5", "posterior-5", "superior-5", "oblique"],
)
def test_known_shift_is_recovered_with_the_right_sign(
    pair_reference: PairReference,
    simulate_pair: Simulate,
    shift_lps_mm: tuple[float, float, float],
) -> None:
    result = register_pair_to_drrs(pair_reference, simulate_pair(shift_lps_mm))
    assert result.quality is QualityValues.GOOD, result.reasons
    assert result.anatomy_displacement is not None
    assert result.couch_correction is not None
    error = np.asarray(result.anatomy_displacement.lps_mm) - np.asarray(shift_lps_mm)
    assert np.all(np.abs(error) <= TARGET_ERROR_MM), error
    # The couch correction undoes the displacement, on IEC patient-support axes too.
    np.testing.assert_allclose(
        result.couch_correction.lps_mm, -np.asarray(result.anatomy_displacement.lps_mm)
    )
    expected_couch_iec = -iec_support_from_lps(shift_lps_mm, "HFS")
    assert result.couch_correction_iec_support_mm is not None
    np.testing.assert_allclose(
        result.couch_correction_iec_support_mm, expected_couch_iec, atol=TARGET_ERROR_MM
    )
    # Both views saw the longitudinal (superior) component and agree on it.
    assert result.shared_axis_disagreement_mm < result.shared_axis_tolerance_mm
    for estimate in result.shared_axis_estimates_mm:
        assert abs(estimate - shift_lps_mm[2]) < TARGET_ERROR_MM
    assert 0.0 < result.uncertainty_mm < 1.0
    assert result.repositioning is not None
    assert result.repositioning.required == bool(np.any(np.abs(expected_couch_iec) > 3.0))
    summary = result.to_dict()
    assert summary["quality"] == "good"
    assert summary["shared_axis"] == "IEC Y (longitudinal)"


def test_pair_of_arrays_and_benchmark(
    pair_reference: PairReference, simulate_pair: Simulate
) -> None:
    """Plain 2D arrays work too; DRR pair plus match within the 0.5 s target."""
    sequences = simulate_pair((2.0, -3.0, 4.0))
    views = [
        KvView(np.asarray(s.frames[0], np.float32), s.geometries[0], IntensityValues.RAW)
        for s in sequences
    ]
    register_pair_to_drrs(pair_reference, views)  # warm-up
    started = time.perf_counter()
    result = register_pair_to_drrs(pair_reference, views)
    elapsed_s = time.perf_counter() - started
    drr_started = time.perf_counter()
    for beam, geometry in zip(pair_reference.beam_volumes, GEOMETRIES, strict=True):
        render_drr(beam, geometry)
    drr_pair_s = time.perf_counter() - drr_started
    print(
        f"\n2D/2D benchmark (XVI 4x binned, 256x256): DRR pair {drr_pair_s * 1000:.0f} ms; "
        f"registration ({result.iterations} DRR pairs + matches) {elapsed_s * 1000:.0f} ms; "
        f"preparation {pair_reference.preparation_s:.2f} s once per plan"
    )
    assert result.quality is QualityValues.GOOD
    assert result.anatomy_displacement is not None
    np.testing.assert_allclose(result.anatomy_displacement.lps_mm, (2.0, -3.0, 4.0), atol=0.5)
    assert drr_pair_s + elapsed_s / result.iterations <= 0.5
    assert elapsed_s <= 1.0


def test_unrelated_image_fails(pair_reference: PairReference, simulate_pair: Simulate) -> None:
    sequences = simulate_pair((0.0, 0.0, 0.0))
    rng = np.random.default_rng(0)
    noise = KvView(rng.normal(size=GEOMETRIES[1].detector_shape).astype(np.float32), GEOMETRIES[1])
    result = register_pair_to_drrs(pair_reference, [KvView.from_sequence(sequences[0]), noise])
    assert result.quality is QualityValues.FAILED
    assert result.anatomy_displacement is None
    assert result.couch_correction is None
    assert result.repositioning is None
    assert any("NCC" in reason for reason in result.reasons)


def test_parallel_views_are_refused(pair_reference: PairReference, simulate_pair: Simulate) -> None:
    sequence = simulate_pair((0.0, 0.0, 0.0))[0]
    view = KvView.from_sequence(sequence)
    with pytest.raises(GeometryError):
        register_pair_to_drrs(pair_reference, [view, view])
