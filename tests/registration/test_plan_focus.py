"""Plan-aware registration: the isocentre from an RT Plan, the clip box from an RTSTRUCT ROI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from fixtures.rt_objects import write_rt_plan, write_structure_set
from igrt.cli import register as register_cli
from igrt.errors import GeometryError, InvalidInputError
from igrt.imageio import read_volume, write_ct_series, write_volume_mha
from igrt.imageio.rt_plan import read_rt_plan
from igrt.imageio.rt_structures import read_structure_set
from igrt.volume import Volume
from registration.errors import ClipBoxError, FrameOfReferenceMismatchError
from registration.plan_focus import plan_focus
from tests.dicom_validation import DicomValidator
from tests.registration._support import PHANTOM_ISOCENTRE_LPS_MM
from tests.registration.conftest import Simulate

FRAME_UID = "1.2.826.0.1.3680043.8.498.77"
ISOCENTRE = [float(v) for v in PHANTOM_ISOCENTRE_LPS_MM]
LIVER = (
    (ISOCENTRE[0] - 40.0, ISOCENTRE[1] - 50.0, ISOCENTRE[2] - 40.0),
    (ISOCENTRE[0] + 40.0, ISOCENTRE[1] + 40.0, ISOCENTRE[2] + 45.0),
)
ELSEWHERE = ((60.0, -60.0, -80.0), (100.0, -20.0, -40.0))


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="igrt")
    register_cli.register(parser.add_subparsers(dest="command", required=True))
    arguments = parser.parse_args(argv)
    code: int = arguments.handler(arguments)
    return code


@pytest.fixture(scope="module")
def case(
    tmp_path_factory: pytest.TempPathFactory, phantom_ct: Volume, simulate_phantom_cbct: Simulate
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("plan")
    write_ct_series(
        phantom_ct,
        folder / "ct",
        patient_id="SIM",
        patient_name="Sim^Patient",
        frame_of_reference_uid=FRAME_UID,
        uid_seed="plan-focus",
    )
    write_volume_mha(simulate_phantom_cbct((0.0, 0.0, 5.0)).cbct_hu, folder / "cbct.mha")
    structures = write_structure_set(
        folder / "rs.dcm", {"Liver": LIVER, "Kidney": ELSEWHERE}, frame_of_reference_uid=FRAME_UID
    )
    write_rt_plan(
        folder / "rp.dcm",
        [("ARC1", ISOCENTRE), ("ARC2", ISOCENTRE)],
        frame_of_reference_uid=None,  # as Eclipse: the plan's frame comes from its structure set
        structure_set_uid=structures,
    )
    return {
        "ct": folder / "ct",
        "cbct": folder / "cbct.mha",
        "rs": folder / "rs.dcm",
        "rp": folder / "rp.dcm",
        "folder": folder,
    }


def test_register_with_plan_isocentre_and_liver_box_says_where_they_came_from(
    case: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dciodvfy: DicomValidator,
) -> None:
    code = _run(
        ["register", str(case["ct"]), str(case["cbct"]), "--out", str(tmp_path),
         "--plan", str(case["rp"]), "--structures", str(case["rs"]), "--roi", "LIVER",
         "--roi-margin-mm", "5"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "isocentre from: RT Plan" in printed
    assert "ROI 'Liver' + 5 mm" in printed
    result = json.loads((tmp_path / "result.json").read_text())
    np.testing.assert_allclose(result["reference_point_lps_mm"], ISOCENTRE, atol=1e-3)
    np.testing.assert_allclose(
        result["clip_box"]["lower_lps_mm"], np.add(LIVER[0], -5.0), atol=1e-2
    )
    assert result["extra"]["plan_focus"]["isocentre_in_clip_box"] is True
    assert result["extra"]["plan_focus"]["frame_of_reference_uid"] == FRAME_UID
    np.testing.assert_allclose(result["couch_correction_iec_support_mm"], (0, -5, 0), atol=0.5)
    dciodvfy(tmp_path / "registration.dcm")  # the CT's patient, study and series referenced


def test_plan_in_another_frame_of_reference_is_refused(case: dict[str, Path]) -> None:
    other = case["folder"] / "rp_other.dcm"
    write_rt_plan(other, [("ARC1", ISOCENTRE)], frame_of_reference_uid="1.2.3.4.5")
    ct = read_volume(case["ct"])
    with pytest.raises(FrameOfReferenceMismatchError, match=r"1\.2\.3\.4\.5"):
        plan_focus(ct, read_rt_plan(other))


def test_several_isocentres_need_a_beam(case: dict[str, Path]) -> None:
    path = case["folder"] / "rp_two.dcm"
    second = [ISOCENTRE[0] + 30.0, ISOCENTRE[1], ISOCENTRE[2]]
    write_rt_plan(path, [("LIVER", ISOCENTRE), ("LUNG", second)], frame_of_reference_uid=FRAME_UID)
    ct = read_volume(case["ct"])
    plan = read_rt_plan(path)
    with pytest.raises(InvalidInputError, match="2 distinct isocentres"):
        plan_focus(ct, plan)
    chosen = plan_focus(ct, plan, beam="lung")
    np.testing.assert_allclose(chosen.isocentre_lps_mm, second)
    assert "2 LUNG" in chosen.isocentre_source


def test_plan_without_isocentre_is_a_geometry_error(case: dict[str, Path]) -> None:
    path = case["folder"] / "rp_none.dcm"
    write_rt_plan(path, [("ARC1", None)], frame_of_reference_uid=FRAME_UID)
    with pytest.raises(GeometryError, match="no beam states an isocentre"):
        read_rt_plan(path)


def test_missing_roi_and_roi_away_from_the_isocentre_are_refused(case: dict[str, Path]) -> None:
    ct = read_volume(case["ct"])
    plan = read_rt_plan(case["rp"])
    structures = read_structure_set(case["rs"])
    with pytest.raises(InvalidInputError, match="no ROI 'GTV'.*Liver, Kidney"):
        plan_focus(ct, plan, structures=structures, roi="GTV")
    with pytest.raises(ClipBoxError, match="does not contain the treatment isocentre"):
        plan_focus(ct, plan, structures=structures, roi="Kidney")


def test_mha_planning_ct_cannot_be_checked_against_a_plan(
    case: dict[str, Path], phantom_ct: Volume
) -> None:
    with pytest.raises(InvalidInputError, match="no Frame of Reference UID"):
        plan_focus(phantom_ct, read_rt_plan(case["rp"]))


@pytest.mark.shared_data
def test_real_eclipse_plan_and_structures(shared_data: Path) -> None:
    folder = shared_data / "dicom" / "rt_eclipse"
    plan = read_rt_plan(next(folder.glob("RP*.dcm")))
    structures = read_structure_set(next(folder.glob("RS*.dcm")))
    assert plan.frame_of_reference_uid is None  # Eclipse: through the structure set
    assert len(plan.isocentres) == 1
    assert len(plan.isocentres[0].beams) == 5
    np.testing.assert_allclose(plan.isocentres[0].position_lps_mm, (0.0, 0.909, 0.0), atol=1e-3)
    ct = Volume(
        np.zeros((2, 2, 2)),
        (1.0, 1.0, 1.0),
        (0.0, 0.0, 0.0),
        None,
        structures.frame_of_reference_uid,
    )
    # The test plan's isocentre lies 50 mm above the PTV: a PTV clip box is refused ...
    with pytest.raises(ClipBoxError, match="does not contain"):
        plan_focus(ct, plan, structures=structures, roi="PTV")
    # ... and the BODY contains it.
    focus = plan_focus(ct, plan, structures=structures, roi="body")
    assert focus.to_dict()["isocentre_in_clip_box"] is True
    # Without the structure set the plan's frame cannot be established.
    with pytest.raises(InvalidInputError, match="states no Frame of Reference UID"):
        plan_focus(ct, plan)
