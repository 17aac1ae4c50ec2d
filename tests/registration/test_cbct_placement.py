"""A CBCT in the treatment room's own Frame of Reference, placed by the treatment isocentre."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fixtures.cbct import CbctSimulation, in_room_frame, simulate_cbct
from igrt.errors import InvalidInputError
from igrt.imageio import read_volume, write_ct_series
from igrt.volume import Volume
from registration import (
    DEFAULT_CBCT_ISOCENTRE_LPS_MM,
    FrameOfReferenceMismatchError,
    FrameRelationValues,
    IsocentreRequiredError,
    PlanningReference,
    QualityValues,
    prepare_planning_reference,
    read_spatial_registration,
    register_cbct_to_ct,
    write_spatial_registration,
)
from registration.result import RigidRegistrationResult
from tests.dicom_validation import DicomValidator
from tests.registration._support import CBCT_OPTIONS, PHANTOM_ISOCENTRE_LPS_MM, point_error_mm

PLANNING_FRAME = "1.2.826.0.1.3680043.8.498.71"
ROOM_FRAME = "1.2.826.0.1.3680043.8.498.72"
DISPLACEMENT_LPS_MM = (3.2, -4.7, 7.9)
ROTATION_DEG = (1.5, -1.0, 2.0)


@pytest.fixture(scope="module")
def framed_ct(phantom_ct: Volume) -> Volume:
    return Volume(
        phantom_ct.array,
        phantom_ct.spacing_mm,
        phantom_ct.origin_lps_mm,
        frame_of_reference_uid=PLANNING_FRAME,
    )


@pytest.fixture(scope="module")
def framed_reference(framed_ct: Volume) -> PlanningReference:
    return prepare_planning_reference(framed_ct)


@pytest.fixture(scope="module")
def planning_frame_cbct(framed_ct: Volume) -> CbctSimulation:
    """The simulator's default: the CBCT in the planning CT's frame (same UID)."""
    simulation = simulate_cbct(
        framed_ct,
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        anatomy_displacement_lps_mm=DISPLACEMENT_LPS_MM,
        rotation_deg=ROTATION_DEG,
        seed=4,
        **CBCT_OPTIONS,
    )
    assert simulation.cbct_hu.frame_of_reference_uid == PLANNING_FRAME
    return simulation


@pytest.fixture(scope="module")
def shared(
    framed_reference: PlanningReference, planning_frame_cbct: CbctSimulation
) -> RigidRegistrationResult:
    return register_cbct_to_ct(
        framed_reference,
        planning_frame_cbct.cbct_hu,
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        overlays=False,
    )


def _recovers_the_truth(result: RigidRegistrationResult, simulation: CbctSimulation) -> None:
    assert result.quality is QualityValues.GOOD, result.reasons
    assert result.anatomy_displacement is not None
    np.testing.assert_allclose(result.anatomy_displacement.lps_mm, DISPLACEMENT_LPS_MM, atol=0.25)
    assert result.anatomy_rotation_lps_deg is not None
    np.testing.assert_allclose(result.anatomy_rotation_lps_deg, ROTATION_DEG, atol=0.2)
    truth = simulation.truth
    # In the planning frame and from the CBCT's own coordinates alike, 50 mm around the
    # isocentre.
    for offset in ((0, 0, 0), (50, 0, 0), (0, 50, 0), (0, 0, 50)):
        point = PHANTOM_ISOCENTRE_LPS_MM + np.asarray(offset, dtype=np.float64)
        assert point_error_mm(result.cbct_from_ct, truth.cbct_from_ct, point) < 0.4
        own = np.linalg.inv(truth.planning_from_cbct_frame) @ np.append(
            truth.cbct_from_ct[:3, :3] @ point + truth.cbct_from_ct[:3, 3], 1.0
        )
        mapped = result.ct_from_cbct_frame @ own
        assert np.linalg.norm(mapped[:3] - point) < 0.4


def test_same_frame_is_registered_as_it_is(
    shared: RigidRegistrationResult, planning_frame_cbct: CbctSimulation, phantom_ct: Volume
) -> None:
    _recovers_the_truth(shared, planning_frame_cbct)
    placement = shared.cbct_placement
    assert placement is not None
    assert placement.relation is FrameRelationValues.SHARED
    assert not placement.placed
    assert placement.cbct_frame_of_reference_uid == PLANNING_FRAME
    np.testing.assert_array_equal(shared.planning_from_cbct_frame, np.eye(4))
    np.testing.assert_array_equal(shared.ct_from_cbct_frame, shared.ct_from_cbct)
    frames = shared.to_dict()["frames"]
    assert frames["relation"] == "shared frame"
    assert frames["cbct_isocentre_lps_mm"] is None
    # Unchanged by the frames: the same images without UIDs give the same bits.
    unlabelled = register_cbct_to_ct(
        prepare_planning_reference(phantom_ct),
        Volume(
            planning_frame_cbct.cbct_hu.array,
            planning_frame_cbct.cbct_hu.spacing_mm,
            planning_frame_cbct.cbct_hu.origin_lps_mm,
        ),
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        overlays=False,
    )
    np.testing.assert_array_equal(unlabelled.cbct_from_ct, shared.cbct_from_ct)
    assert unlabelled.cbct_placement is not None
    assert unlabelled.cbct_placement.relation is FrameRelationValues.ASSUMED_SHARED


def test_room_frame_is_placed_by_the_isocentre(
    framed_ct: Volume,
    framed_reference: PlanningReference,
    planning_frame_cbct: CbctSimulation,
    shared: RigidRegistrationResult,
) -> None:
    room = in_room_frame(planning_frame_cbct, ROOM_FRAME)
    # As a linac writes it: its own UID, the isocentre at its LPS origin, the grid about it.
    assert room.cbct_hu.frame_of_reference_uid == ROOM_FRAME
    np.testing.assert_allclose(room.cbct_hu.centre_lps_mm, (0.0, 0.0, 0.0), atol=1e-9)
    for planning in (framed_ct, framed_reference):
        result = register_cbct_to_ct(
            planning,
            room.cbct_hu,
            patient_position="HFS",
            isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
            overlays=False,
        )
        _recovers_the_truth(result, room)
        # Placing is a translation of the grid: the same voxels meet the same template.
        np.testing.assert_allclose(result.cbct_from_ct, shared.cbct_from_ct, atol=1e-9)
    placement = result.cbct_placement
    assert placement is not None
    assert placement.placed
    assert placement.relation is FrameRelationValues.PLACED_BY_ISOCENTRE
    assert placement.planning_frame_of_reference_uid == PLANNING_FRAME
    assert placement.cbct_frame_of_reference_uid == ROOM_FRAME
    np.testing.assert_allclose(placement.cbct_isocentre_lps_mm, DEFAULT_CBCT_ISOCENTRE_LPS_MM)
    assert placement.cbct_isocentre_source is not None
    assert placement.cbct_isocentre_source.startswith("default")
    np.testing.assert_allclose(result.planning_from_cbct_frame, room.truth.planning_from_cbct_frame)
    frames = result.to_dict()["frames"]
    assert frames["relation"] == "placed by the treatment isocentre"
    assert frames["planning_isocentre_lps_mm"] == list(PHANTOM_ISOCENTRE_LPS_MM)
    assert result.to_dict()["ct_from_cbct_frame"] == result.ct_from_cbct_frame.tolist()


def test_a_given_cbct_isocentre_is_used_and_recorded(
    framed_reference: PlanningReference, planning_frame_cbct: CbctSimulation
) -> None:
    elsewhere = (4.0, -12.0, 30.0)
    room = in_room_frame(planning_frame_cbct, ROOM_FRAME, room_isocentre_lps_mm=elsewhere)
    result = register_cbct_to_ct(
        framed_reference,
        room.cbct_hu,
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        cbct_isocentre_lps_mm=elsewhere,
        overlays=False,
    )
    _recovers_the_truth(result, room)
    assert result.cbct_placement is not None
    assert result.cbct_placement.cbct_isocentre_source == "given"
    np.testing.assert_allclose(result.cbct_placement.cbct_isocentre_lps_mm, elsewhere)


def test_room_frame_without_isocentre_is_refused(
    framed_ct: Volume, framed_reference: PlanningReference, planning_frame_cbct: CbctSimulation
) -> None:
    room = in_room_frame(planning_frame_cbct, ROOM_FRAME)
    for planning in (framed_ct, framed_reference):
        with pytest.raises(IsocentreRequiredError, match="treatment isocentre") as info:
            register_cbct_to_ct(planning, room.cbct_hu, patient_position="HFS")
        assert info.value.field == "isocentre_lps_mm"
        assert PLANNING_FRAME in str(info.value)
        assert ROOM_FRAME in str(info.value)
        assert isinstance(info.value, FrameOfReferenceMismatchError)
    # The CBCT's isocentre alone does not place it: the plan's is the one that is missing.
    with pytest.raises(IsocentreRequiredError):
        register_cbct_to_ct(
            framed_reference,
            room.cbct_hu,
            patient_position="HFS",
            cbct_isocentre_lps_mm=(0.0, 0.0, 0.0),
        )


def test_cbct_isocentre_for_a_shared_frame_is_refused(
    framed_reference: PlanningReference, planning_frame_cbct: CbctSimulation
) -> None:
    with pytest.raises(InvalidInputError, match="shares the planning CT") as info:
        register_cbct_to_ct(
            framed_reference,
            planning_frame_cbct.cbct_hu,
            patient_position="HFS",
            isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
            cbct_isocentre_lps_mm=(0.0, 0.0, 0.0),
        )
    assert info.value.field == "cbct_isocentre_lps_mm"


def test_an_unlabelled_cbct_is_placed_when_its_isocentre_is_given(
    framed_reference: PlanningReference, planning_frame_cbct: CbctSimulation
) -> None:
    room = in_room_frame(planning_frame_cbct, ROOM_FRAME).cbct_hu
    unlabelled = Volume(room.array, room.spacing_mm, room.origin_lps_mm)  # an MHA without UID
    result = register_cbct_to_ct(
        framed_reference,
        unlabelled,
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        cbct_isocentre_lps_mm=(0.0, 0.0, 0.0),
        overlays=False,
    )
    assert result.cbct_placement is not None
    assert result.cbct_placement.placed
    assert result.cbct_placement.cbct_frame_of_reference_uid is None
    assert result.anatomy_displacement is not None
    np.testing.assert_allclose(result.anatomy_displacement.lps_mm, DISPLACEMENT_LPS_MM, atol=0.25)


def test_dicom_reg_relates_the_room_frame(
    tmp_path: Path,
    framed_ct: Volume,
    planning_frame_cbct: CbctSimulation,
    dciodvfy: DicomValidator,
) -> None:
    room = in_room_frame(planning_frame_cbct, ROOM_FRAME)
    identity = {"patient_id": "P7", "patient_name": "Doe^John"}
    ct_written = write_ct_series(framed_ct, tmp_path / "ct", uid_seed="ct", **identity)
    cbct_written = write_ct_series(room.cbct_hu, tmp_path / "cbct", uid_seed="cbct", **identity)
    assert (ct_written.frame_of_reference_uid, cbct_written.frame_of_reference_uid) == (
        PLANNING_FRAME,
        ROOM_FRAME,
    )
    ct, cbct = read_volume(tmp_path / "ct"), read_volume(tmp_path / "cbct")
    result = register_cbct_to_ct(
        ct, cbct, patient_position="HFS", isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM, overlays=False
    )
    _recovers_the_truth(result, room)
    written = write_spatial_registration(
        result, tmp_path / "reg.dcm", planning_ct=ct, cbct=cbct, uid_seed="reg"
    )
    dciodvfy(written.paths[0])
    read = read_spatial_registration(written.paths[0])
    assert read.frame_of_reference_uid == PLANNING_FRAME
    assert [item.frame_of_reference_uid for item in read.items] == [PLANNING_FRAME, ROOM_FRAME]
    np.testing.assert_allclose(read.items[0].reference_from_item, np.eye(4))
    # Item 2 takes the CBCT's own coordinates to the planning CT's: the machine isocentre
    # (CBCT origin) lands where the isocentre's anatomy is in the plan.
    np.testing.assert_allclose(read.ct_from_cbct, result.ct_from_cbct_frame, atol=1e-6)
    truth = room.truth
    expected = truth.ct_from_cbct @ truth.planning_from_cbct_frame @ np.array([0, 0, 0, 1.0])
    landed = read.ct_from_cbct @ np.array([0, 0, 0, 1.0])
    assert np.linalg.norm(landed[:3] - expected[:3]) < 0.4
    # The matrix belongs to the room frame: written against a CBCT in another frame, refused.
    with pytest.raises(InvalidInputError, match="Frame of Reference"):
        write_spatial_registration(
            result, tmp_path / "wrong.dcm", planning_ct=ct, cbct=planning_frame_cbct.cbct_hu
        )
