"""``igrt simulate``: files written, readable, and consistent with the truth they ship with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from igrt.cli.main import EXIT_BAD_INPUT, main
from igrt.imageio import read_fluoro_dicom, read_fluoro_mha, read_volume


def test_fluoro_writes_dicom_mha_and_truth_that_agree(tmp_path: Path) -> None:
    out = tmp_path / "fluoro"
    code = main(
        [
            "simulate",
            "fluoro",
            "--anatomy",
            "phantom",
            "--amplitude-mm",
            "12",
            "--duration-s",
            "1",
            "--fps",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    dicom = read_fluoro_dicom(out / "fluoro.dcm")
    mha = read_fluoro_mha(out / "fluoro.mha")
    truth = json.loads((out / "truth.json").read_text())
    assert dicom.n_frames == mha.n_frames == 4
    np.testing.assert_array_equal(dicom.frames, mha.frames)
    np.testing.assert_allclose(dicom.timestamps_s, truth["truth"]["times_s"])
    assert dicom.geometries[0].sdd_mm == truth["geometry"]["sdd_mm"] == 1536.0
    assert dicom.frames.shape[1:] == tuple(truth["geometry"]["detector_shape_rows_columns"])
    si = np.array(truth["truth"]["apex_si_isocentre_mm"])
    assert np.ptp(si) == pytest.approx(np.ptp(truth["truth"]["signal_si_mm"]), abs=0.05)


def test_rotating_gantry_gives_a_projection_sequence(tmp_path: Path) -> None:
    out = tmp_path / "rot"
    code = main(
        [
            "simulate",
            "fluoro",
            "--anatomy",
            "phantom",
            "--gantry",
            "rotating",
            "--gantry-deg",
            "90",
            "--duration-s",
            "1",
            "--fps",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    sequence = read_fluoro_dicom(out / "fluoro.dcm")
    np.testing.assert_allclose(sequence.gantry_deg, [90.0, 91.0, 92.0])
    assert json.loads((out / "truth.json").read_text())["kind"] == "cbct_projections"


def test_cbct_writes_both_volumes_and_the_rigid_truth(tmp_path: Path) -> None:
    out = tmp_path / "cbct"
    code = main(
        [
            "simulate",
            "cbct",
            "--anatomy",
            "phantom",
            "--shift-mm",
            "3.2,-4.7,7.9",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    planning = read_volume(out / "planning_ct")
    cbct = read_volume(out / "cbct")
    assert planning.volume.array.shape != cbct.volume.array.shape
    # Reconstructed in the planning frame: one Frame of Reference, ready to register.
    assert planning.volume.frame_of_reference_uid == cbct.volume.frame_of_reference_uid
    truth = json.loads((out / "truth.json").read_text())["truth"]
    np.testing.assert_allclose(truth["anatomy_displacement_lps_mm"], [3.2, -4.7, 7.9])
    # Re-running into the same folder replaces the series instead of refusing.
    assert main(["simulate", "cbct", "--anatomy", "phantom", "--out", str(out)]) == 0


def test_bad_input_exits_with_the_bad_input_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["simulate", "fluoro", "--anatomy", "phantom", "--fps", "0", "--out", str(tmp_path)]
    )
    assert code == EXIT_BAD_INPUT
    assert "fps" in capsys.readouterr().err


def test_malformed_shift_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "cbct", "--shift-mm", "3,4", "--out", str(tmp_path)])
    assert info.value.code == 2


def test_cbct_in_the_room_frame_has_its_own_frame_of_reference(tmp_path: Path) -> None:
    out = tmp_path / "cbct"
    argv = ["simulate", "cbct", "--anatomy", "phantom", "--cbct-frame", "room", "--out", str(out)]
    assert main(argv) == 0
    planning = read_volume(out / "planning_ct")
    cbct = read_volume(out / "cbct")
    assert planning.volume.frame_of_reference_uid
    assert cbct.volume.frame_of_reference_uid
    assert planning.volume.frame_of_reference_uid != cbct.volume.frame_of_reference_uid
    # As a linac reconstructs it: centred on the machine isocentre, its LPS origin.
    np.testing.assert_allclose(cbct.volume.centre_lps_mm, (0.0, 0.0, 0.0), atol=1e-3)
    for name, loaded in (("planning_ct", planning), ("cbct", cbct)):
        mha = read_volume(out / f"{name}.mha")
        assert mha.volume.frame_of_reference_uid == loaded.volume.frame_of_reference_uid
    truth = json.loads((out / "truth.json").read_text())["truth"]
    assert truth["cbct_frame"] == "room"
    assert truth["room_frame_isocentre_lps_mm"] == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(
        np.asarray(truth["planning_from_cbct_frame"])[:3, 3], truth["isocentre_lps_mm"]
    )
