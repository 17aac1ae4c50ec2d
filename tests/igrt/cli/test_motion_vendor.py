"""``igrt motion assess`` on vendor projection folders (XVI .his, OBI .hnd, TrueBeam .xim)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures import breathing
from fixtures.fluoro import simulate_fluoro
from fixtures.motion import BreathingMotionModel
from fixtures.panel import PanelPhysics
from fixtures.phantom import make_phantom
from fixtures.vendor_files import write_his_folder, write_hnd_folder, write_xim_folder
from igrt.cli.main import EXIT_BAD_INPUT, main
from igrt.geometry import xvi_geometry
from igrt.sequence import FluoroSequence


@pytest.fixture(scope="module")
def clip() -> FluoroSequence:
    simulation = simulate_fluoro(
        BreathingMotionModel.from_anatomy(make_phantom()),
        breathing.regular(10.0, 4.0, 30.0, 50.0),
        duration_s=30.0,
        fps=5.0,
        geometry=xvi_geometry(binning=4),
        physics=PanelPhysics(photons_per_pixel=20000.0),
        grid_spacing_mm=(2.0, 1.0),
        seed=5,
    )
    return simulation.sequence


@pytest.mark.parametrize(
    ("write", "options"),
    [(write_his_folder, []), (write_hnd_folder, ["--fps", "5"]), (write_xim_folder, [])],
)
def test_assess_reads_a_vendor_folder_with_its_geometry_and_times(
    clip: FluoroSequence,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write: object,
    options: list[str],
) -> None:
    folder = write(clip, tmp_path / "recording")  # type: ignore[operator]
    assert main(["motion", "assess", str(folder), "--out", str(tmp_path / "o"), *options]) == 0
    printed = capsys.readouterr().out
    excursion_mm = float(printed.split("excursion ")[1].split()[0])
    assert excursion_mm == pytest.approx(10.0, abs=0.8)  # as for the same clip in DICOM


def test_assess_obi_folder_without_fps_is_bad_input(clip: FluoroSequence, tmp_path: Path) -> None:
    folder = write_hnd_folder(clip, tmp_path / "obi")
    assert main(["motion", "assess", str(folder), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
