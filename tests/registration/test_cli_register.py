"""``igrt register``: files in, result.json, overlays and a DICOM REG out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from igrt.cli import register as register_cli
from igrt.errors import InvalidInputError
from igrt.imageio import write_volume_mha
from igrt.volume import Volume
from registration import read_spatial_registration
from tests.dicom_validation import DicomValidator
from tests.registration._support import PHANTOM_ISOCENTRE_LPS_MM
from tests.registration.conftest import Simulate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="igrt")
    commands = parser.add_subparsers(dest="command", required=True)
    register_cli.register(commands)
    return parser


def _run(argv: list[str]) -> int:
    arguments = _parser().parse_args(argv)
    code: int = arguments.handler(arguments)
    return code


@pytest.fixture(scope="module")
def files(
    tmp_path_factory: pytest.TempPathFactory, phantom_ct: Volume, simulate_phantom_cbct: Simulate
) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli")
    ct_path, cbct_path = folder / "ct.mha", folder / "cbct.mha"
    write_volume_mha(phantom_ct, ct_path, patient_position="HFS")
    write_volume_mha(simulate_phantom_cbct((0.0, 0.0, 5.0)).cbct_hu, cbct_path)
    return ct_path, cbct_path


def test_register_writes_everything_and_prints_the_couch_correction(
    files: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dciodvfy: DicomValidator,
) -> None:
    ct_path, cbct_path = files
    iso = ",".join(str(v) for v in PHANTOM_ISOCENTRE_LPS_MM)
    code = _run(
        ["register", str(ct_path), str(cbct_path), "--out", str(tmp_path), f"--isocentre={iso}"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    # Anatomy 5 mm superior (HFS): couch moves 5 mm along -Y (IEC longitudinal).
    assert "longitudinal Y -5.0 mm" in printed
    assert "REPOSITION" in printed
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["quality"] == "good"
    assert summary["degrees_of_freedom"] == 6
    np.testing.assert_allclose(summary["couch_correction_iec_support_mm"], (0, -5, 0), atol=0.5)
    timing = summary["timing_s"]
    assert set(timing) == {"read", "prepare", "register", "write", "total"}
    assert all(value >= 0 for value in timing.values())
    steps = timing["read"] + timing["prepare"] + timing["register"] + timing["write"]
    assert steps <= timing["total"]
    cpu = summary["timing_cpu_s"]
    assert set(cpu) == set(timing)
    assert all(value >= 0 for value in cpu.values())
    assert cpu["read"] + cpu["prepare"] + cpu["register"] + cpu["write"] <= cpu["total"]
    assert (tmp_path / "overlay_axial_after_checkerboard.png").stat().st_size > 0
    dciodvfy(tmp_path / "registration.dcm")
    reg = read_spatial_registration(tmp_path / "registration.dcm")
    np.testing.assert_allclose(reg.cbct_from_ct[2, 3], 5.0, atol=0.5)


def test_bad_input_is_an_invalid_input_error(files: tuple[Path, Path], tmp_path: Path) -> None:
    ct_path, cbct_path = files
    with pytest.raises(InvalidInputError):
        _run(
            ["register", str(ct_path), str(cbct_path), "--out", str(tmp_path), "--isocentre", "1,2"]
        )
    with pytest.raises(InvalidInputError):
        _run(["register", str(ct_path), str(tmp_path / "missing.mha"), "--out", str(tmp_path)])
    # The CBCT file has no patient position, but the CT's does; neither: refused.
    with pytest.raises(InvalidInputError):
        _run(["register", str(cbct_path), str(cbct_path), "--out", str(tmp_path)])


def test_a_volume_header_pointing_at_another_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from igrt.cli.main import EXIT_BAD_INPUT, main

    hostile = tmp_path / "ct.mha"
    hostile.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
        "ElementDataFile = /etc/passwd\n"
    )
    code = main(["register", str(hostile), str(hostile), "--out", str(tmp_path / "out")])
    assert code == EXIT_BAD_INPUT
    assert "ElementDataFile" in capsys.readouterr().err


def test_a_room_frame_cbct_needs_and_uses_the_treatment_isocentre(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dciodvfy: DicomValidator
) -> None:
    from igrt.cli.main import EXIT_BAD_INPUT, main

    simulated = tmp_path / "sim"
    shift = "3.2,-4.7,7.9"
    argv = ["simulate", "cbct", "--anatomy", "phantom", "--shift-mm", shift, "--cbct-frame"]
    assert main([*argv, "room", "--out", str(simulated)]) == 0
    truth = json.loads((simulated / "truth.json").read_text())["truth"]
    assert truth["cbct_frame"] == "room"
    ct, cbct = str(simulated / "planning_ct"), str(simulated / "cbct")
    out = tmp_path / "out"
    capsys.readouterr()
    # Another Frame of Reference and no isocentre: refused, naming what is missing.
    assert main(["register", ct, cbct, "--out", str(out)]) == EXIT_BAD_INPUT
    assert "treatment isocentre" in capsys.readouterr().err
    iso = ",".join(str(v) for v in truth["isocentre_lps_mm"])
    assert main(["register", ct, cbct, "--out", str(out), f"--isocentre={iso}"]) == 0
    assert "placed on the planning CT" in capsys.readouterr().out
    summary = json.loads((out / "result.json").read_text())
    assert summary["quality"] == "good", summary["reasons"]
    np.testing.assert_allclose(
        summary["anatomy_displacement_lps_mm"], truth["anatomy_displacement_lps_mm"], atol=0.25
    )
    frames = summary["frames"]
    assert frames["relation"] == "placed by the treatment isocentre"
    assert frames["cbct_isocentre_lps_mm"] == [0.0, 0.0, 0.0]
    assert frames["planning_ct_frame_of_reference_uid"] != frames["cbct_frame_of_reference_uid"]
    np.testing.assert_allclose(
        frames["planning_from_cbct_frame"], truth["planning_from_cbct_frame"]
    )
    dciodvfy(out / "registration.dcm")
    reg = read_spatial_registration(out / "registration.dcm")
    assert reg.items[1].frame_of_reference_uid == frames["cbct_frame_of_reference_uid"]
    np.testing.assert_allclose(reg.ct_from_cbct, summary["ct_from_cbct_frame"], atol=1e-6)
    # The MHA files carry both frames too: the same refusal without an isocentre.
    with pytest.raises(InvalidInputError, match="isocentre"):
        _run(
            [
                "register",
                str(simulated / "planning_ct.mha"),
                str(simulated / "cbct.mha"),
                "--out",
                str(out),
                "--patient-position",
                "HFS",
            ]
        )
