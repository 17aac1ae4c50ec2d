"""``igrt motion assess`` and ``igrt motion batch`` (more of the batch in test_batch.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from fixtures import breathing
from fixtures.fluoro import simulate_fluoro
from fixtures.motion import BreathingMotionModel
from fixtures.panel import PanelPhysics
from fixtures.phantom import make_phantom
from igrt.cli.main import EXIT_BAD_INPUT, main
from igrt.geometry import xvi_geometry
from igrt.imageio import write_fluoro_dicom
from igrt.trace import BreathingTrace


@pytest.fixture(scope="module")
def dicom_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = BreathingMotionModel.from_anatomy(make_phantom())
    simulation = simulate_fluoro(
        model,
        breathing.regular(10.0, 4.0, 30.0, 50.0),
        duration_s=30.0,
        fps=5.0,
        geometry=xvi_geometry(binning=4),
        physics=PanelPhysics(photons_per_pixel=20000.0),
        grid_spacing_mm=(2.0, 1.0),
        seed=5,
    )
    path = tmp_path_factory.mktemp("dicom") / "clip.dcm"
    write_fluoro_dicom(simulation.sequence, path, patient_id="P", patient_name="S^P", uid_seed="c")
    return path


def test_assess_prints_a_summary_and_writes_results(
    dicom_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["motion", "assess", str(dicom_clip), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "ABDOMINAL COMPRESSION" in printed
    excursion_mm = float(printed.split("excursion ")[1].split()[0])
    assert excursion_mm == pytest.approx(10.0, abs=0.8)  # phantom ribs: see test_tracker
    assert (tmp_path / "clip" / "assessment.json").exists()


def test_assess_bad_input_exit_code(tmp_path: Path) -> None:
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 50)
    assert main(["motion", "assess", str(broken), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT


def _summary(path: Path) -> list[dict[str, str]]:
    with path.open() as stream:
        return list(csv.DictReader(stream))


def test_batch_reports_failures_in_the_summary(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    signal = breathing.regular(8.0, 4.0, 40.0, 10.0)
    BreathingTrace(signal.times_s, signal.si_mm).to_csv(folder / "good.csv")
    (folder / "bad.csv").write_text("time_s,si_mm,confidence\n0,1,1\n0,2,1\n")
    code = main(["motion", "batch", str(folder), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert code == 3
    rows = {Path(r["recording"]).name: r for r in _summary(tmp_path / "out" / "summary.csv")}
    assert rows["good.csv"]["status"] == "ok"
    assert rows["bad.csv"]["status"] == "bad_input"
    assert np.isfinite(float(rows["good.csv"]["excursion_median_mm"]))
