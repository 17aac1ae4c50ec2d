"""``igrt register-pair``: an RT Image and a fluoroscopy frame registered to DRRs, from files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fixtures.motion import BreathingMotionModel
from fixtures.phantom import make_phantom
from igrt.cli.main import EXIT_BAD_INPUT, main
from igrt.geometry import xvi_geometry
from igrt.imageio import write_fluoro_dicom, write_volume_mha
from igrt.sequence import FluoroSequence, IntensityValues
from tests.igrt.imageio.builders import write_rt_image
from tests.registration._support import PHANTOM_ISOCENTRE_LPS_MM, simulate_kv_view

SHIFT_LPS_MM = (0.0, 0.0, 5.0)  # 5 mm superior


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pair")
    model = BreathingMotionModel.from_anatomy(make_phantom())
    write_volume_mha(model.anatomy.ct_hu, folder / "ct.mha", patient_position="HFS")
    front, side = (
        simulate_kv_view(model, xvi_geometry(binning=4, gantry_deg=g), PHANTOM_ISOCENTRE_LPS_MM,
                         SHIFT_LPS_MM)
        for g in (0.0, 90.0)
    )  # fmt: skip
    sequence = FluoroSequence(
        np.round(front.image)[np.newaxis].astype(np.uint16), [0.0], (front.geometry,),
        IntensityValues.RAW,
    )  # fmt: skip
    write_fluoro_dicom(sequence, folder / "front.dcm", patient_id="P", patient_name="S^P")
    geometry = side.geometry
    first_u_mm, first_v_mm = geometry.detector_mm_from_pixel(0, 0)
    write_rt_image(
        folder / "side.dcm",
        np.round(side.image).astype(np.uint16),
        sid_mm=geometry.sdd_mm,
        sad_mm=geometry.sad_mm,
        spacing_row_col_mm=(geometry.pixel_pitch_mm[1], geometry.pixel_pitch_mm[0]),
        position_mm=(float(first_u_mm), -float(first_v_mm)),
        gantry_deg=0.0,  # the treatment beam's; the kV source was at 90
    )
    return {"ct": folder / "ct.mha", "front": folder / "front.dcm", "side": folder / "side.dcm"}


def test_register_pair_writes_the_3d_result_document(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iso = ",".join(str(v) for v in PHANTOM_ISOCENTRE_LPS_MM)
    code = main(
        ["register-pair", str(files["ct"]), str(files["front"]), str(files["side"]),
         "--out", str(tmp_path), f"--isocentre={iso}", "--kv-source-deg", ",90"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "longitudinal Y -5" in capsys.readouterr().out
    document = json.loads((tmp_path / "result.json").read_text())
    assert document["kind"] == "pair_2d"
    assert document["isocentre_source"] == "given"
    for key in ("quality", "couch_correction_iec_support_mm", "repositioning", "uncertainty_mm"):
        assert key in document
    np.testing.assert_allclose(document["couch_correction_iec_support_mm"], (0, -5, 0), atol=1.0)
    assert document["repositioning"]["required"] is True


def test_register_pair_without_isocentre_or_angles_is_bad_input(
    files: dict[str, Path], tmp_path: Path
) -> None:
    views = [str(files["front"]), str(files["side"])]
    assert main(["register-pair", str(files["ct"]), *views, "--out", str(tmp_path)]) == (
        EXIT_BAD_INPUT
    )
    one_angle = ["--isocentre=0,0,0", "--kv-source-deg", "90"]  # two views, one angle
    assert main(["register-pair", str(files["ct"]), *views, *one_angle]) == EXIT_BAD_INPUT
