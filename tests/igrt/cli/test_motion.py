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
    assert "BREATH HOLD TRIAL NEXT" in printed
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


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../etc/hostname"])
def test_assess_refuses_a_metaimage_pointing_at_another_file(
    tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = tmp_path / "clip.mha"
    hostile.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 4 4 2\nElementType = MET_UCHAR\n"
        f"ElementDataFile = {target}\n"
    )
    code = main(["motion", "assess", str(hostile), "--out", str(tmp_path / "o")])
    assert code == EXIT_BAD_INPUT
    assert "ElementDataFile" in capsys.readouterr().err


# --- issue 13 targets (a)-(d): the decision through ``igrt motion assess`` on CSV traces ------


def _assess_csv(
    tmp_path: Path, name: str, times_s: np.ndarray, si_mm: np.ndarray, *options: str
) -> dict[str, object]:
    import json

    from tests.igrt.traces import write_csv

    path = write_csv(tmp_path / f"{name}.csv", times_s, si_mm)
    assert main(["motion", "assess", str(path), "--out", str(tmp_path), "--no-plot", *options]) == 0
    document = json.loads((tmp_path / name / "assessment.json").read_text())
    assert isinstance(document, dict)
    return document


def test_target_a_frequent_deep_breaths_are_not_no_device(tmp_path: Path) -> None:
    from tests.igrt.traces import lujan_cycles

    amplitudes = [9.0 if i % 10 in (2, 5, 8) else 4.0 for i in range(30)]  # 30 % at 9 mm
    document = _assess_csv(tmp_path, "deep", *lujan_cycles(amplitudes))
    decision = document["decision"]
    assert isinstance(decision, dict)
    assert decision["recommendation"] != "no_device"
    analysis = document["analysis"]
    assert isinstance(analysis, dict)
    assert analysis["excursion_p95_mm"] == pytest.approx(9.0, abs=0.3)


def test_target_b_drifting_baseline_is_not_no_device(tmp_path: Path) -> None:
    from tests.igrt.traces import lujan_cycles

    document = _assess_csv(tmp_path, "drift", *lujan_cycles([4.0] * 30, drift_mm_per_min=8.0))
    decision = document["decision"]
    assert isinstance(decision, dict)
    assert decision["recommendation"] != "no_device"
    assert "drift" in " ".join(decision["rationale"]).lower()


def test_target_c_exhale_breath_holds_are_found_and_give_abc(tmp_path: Path) -> None:
    from tests.igrt.traces import exhale_hold_trial

    document = _assess_csv(
        tmp_path, "trial", *exhale_hold_trial(), "--context", "breath_hold_trial"
    )
    analysis, decision = document["analysis"], document["decision"]
    assert isinstance(analysis, dict)
    assert isinstance(decision, dict)
    assert len(analysis["holds"]) == 2
    assert all(hold["duration_s"] >= 24.0 for hold in analysis["holds"])
    assert decision["recommendation"] == "active_breathing_control"


def test_target_d_no_hold_evidence_means_abc_trial_next(tmp_path: Path) -> None:
    from tests.igrt.traces import lujan_cycles

    document = _assess_csv(tmp_path, "fb10", *lujan_cycles([10.0] * 15))
    decision = document["decision"]
    assert isinstance(decision, dict)
    assert decision["recommendation"] == "breath_hold_trial_next"
    text = " ".join(decision["rationale"]).lower()
    assert "compression if abc is not tolerated" in text
