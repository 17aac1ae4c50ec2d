"""A therapist's dome hint and a stated pixel meaning on the command line.

``igrt motion assess --dome-hint COLUMN,ROW`` and a batch's ``<recording>.hint.json`` sidecar
reach the tracker (a spy on the tracker call) and the tracking starts at the hinted dome (end to
end on a short phantom clip); ``--intensity`` makes a folder of display-polarity PNG frames
assessable and is refused where a file says otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from fixtures import breathing
from fixtures.fluoro import FluoroSimulation, simulate_fluoro
from fixtures.motion import BreathingMotionModel
from fixtures.panel import PanelPhysics
from fixtures.phantom import make_phantom
from igrt import motion_assessment
from igrt.cli import motion as motion_cli
from igrt.cli.main import EXIT_BAD_INPUT, main
from igrt.geometry import xvi_geometry
from igrt.imageio import write_fluoro_dicom, write_fluoro_mha
from igrt.sequence import FluoroSequence, IntensityValues
from igrt.tracking import DomeTrack, TrackerSettings

HINT_OFFSET_PX = (5.0, -6.0)
"""Where the therapist clicks relative to the true apex: a hint is a click, not the truth."""


@pytest.fixture(scope="module")
def clip() -> FluoroSimulation:
    """3 s at 4 fps of the phantom (12 frames): enough to track, cheap to simulate."""
    return simulate_fluoro(
        BreathingMotionModel.from_anatomy(make_phantom()),
        breathing.regular(10.0, 3.0, 3.0, 50.0),
        duration_s=3.0,
        fps=4.0,
        geometry=xvi_geometry(binning=4),
        physics=PanelPhysics(photons_per_pixel=20000.0),
        grid_spacing_mm=(2.0, 1.0),
        seed=11,
    )


@pytest.fixture(scope="module")
def clip_dicom(clip: FluoroSimulation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hint-dicom") / "clip.dcm"
    write_fluoro_dicom(clip.sequence, path, patient_id="P", patient_name="S^P", uid_seed="hint")
    return path


def _hint_near_apex(clip: FluoroSimulation) -> tuple[float, float]:
    column, row = clip.truth.apex_pixel[0]
    return float(column + HINT_OFFSET_PX[0]), float(row + HINT_OFFSET_PX[1])


@pytest.fixture
def tracker_spy(monkeypatch: pytest.MonkeyPatch) -> list[TrackerSettings | None]:
    """The settings of every tracker run of the motion assessment (which still runs)."""
    seen: list[TrackerSettings | None] = []
    real: Callable[..., DomeTrack] = motion_assessment.track_dome

    def spy(sequence: FluoroSequence, settings: TrackerSettings | None = None) -> DomeTrack:
        seen.append(settings)
        return real(sequence, settings)

    monkeypatch.setattr(motion_assessment, "track_dome", spy)
    return seen


def _assessment(folder: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((folder / "assessment.json").read_text())
    return document


def _assert_tracked_from(document: dict[str, Any], clip: FluoroSimulation) -> None:
    """The first tracked apex is the true dome, a few pixels from where the hint was given."""
    column, row = document["tracking"]["first_apex_column_row_px"]
    true_column, true_row = clip.truth.apex_pixel[0]
    assert abs(row - true_row) <= 2.0
    assert abs(column - true_column) <= 6.0  # a flat dome top: the apex column is loose
    hint = document["dome_hint"]
    assert np.hypot(column - hint["column_px"], row - hint["row_px"]) <= 12.0


def test_dome_hint_reaches_the_tracker_and_tracking_starts_there(
    clip: FluoroSimulation,
    clip_dicom: Path,
    tmp_path: Path,
    tracker_spy: list[TrackerSettings | None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    column, row = _hint_near_apex(clip)
    code = main(
        [
            "motion",
            "assess",
            str(clip_dicom),
            "--out",
            str(tmp_path),
            "--dome-hint",
            f"{column},{row}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert len(tracker_spy) == 1
    assert tracker_spy[0] is not None
    assert tracker_spy[0].seed_column_row == (column, row)
    document = _assessment(tmp_path / "clip")
    assert document["dome_hint"] == {
        "column_px": column,
        "row_px": row,
        "given_by": None,
        "source": "--dome-hint",
    }
    _assert_tracked_from(document, clip)
    assert "tracked from a dome hint" in capsys.readouterr().out


def test_without_a_hint_the_tracker_gets_no_seed_and_none_is_recorded(
    clip_dicom: Path, tmp_path: Path, tracker_spy: list[TrackerSettings | None]
) -> None:
    assert main(["motion", "assess", str(clip_dicom), "--out", str(tmp_path)]) == 0
    assert [s.seed_column_row if s else None for s in tracker_spy] == [None]
    assert _assessment(tmp_path / "clip")["dome_hint"] is None


@pytest.mark.parametrize(
    ("hint", "message"),
    [
        ("12", "COLUMN,ROW"),
        ("a,b", "COLUMN,ROW"),
        ("-3,40", ">= 0"),
        ("nan,40", "finite"),
        ("40,256", "outside the first frame"),
    ],
)
def test_a_bad_dome_hint_is_bad_input(
    clip_dicom: Path,
    tmp_path: Path,
    hint: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["motion", "assess", str(clip_dicom), "--out", str(tmp_path), f"--dome-hint={hint}"]
    )
    assert code == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not (tmp_path / "clip" / "assessment.json").exists()


def test_one_hint_for_several_recordings_is_refused(clip_dicom: Path, tmp_path: Path) -> None:
    arguments = ["motion", "assess", str(clip_dicom), str(clip_dicom), "--dome-hint", "10,10"]
    assert main([*arguments, "--out", str(tmp_path)]) == EXIT_BAD_INPUT


def _workers_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask workers as threads of this process, so a spy sees their tracker calls."""
    import distributed

    local_cluster = distributed.LocalCluster

    def in_process(**options: object) -> distributed.LocalCluster:
        options.pop("host", None)  # an in-process cluster talks over its own transport
        return local_cluster(**{**options, "processes": False})

    monkeypatch.setattr(distributed, "LocalCluster", in_process)


def test_batch_sidecar_hint_reaches_the_tracker_for_its_recording_only(
    clip: FluoroSimulation,
    clip_dicom: Path,
    tmp_path: Path,
    tracker_spy: list[TrackerSettings | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    hinted, plain = folder / "hinted.dcm", folder / "plain.dcm"
    for path in (hinted, plain):
        path.write_bytes(clip_dicom.read_bytes())
    column, row = _hint_near_apex(clip)
    sidecar = motion_cli.hint_sidecar_path(hinted)
    assert sidecar.name == "hinted.dcm.hint.json"
    sidecar.write_text(json.dumps({"column_px": column, "row_px": row, "given_by": "A. Therapist"}))
    _workers_in_this_process(monkeypatch)
    assert main(["motion", "batch", str(folder), "--out", str(out), "--workers", "1"]) == 0
    seeds = [s.seed_column_row if s is not None else None for s in tracker_spy]
    assert sorted(seeds, key=str) == sorted([(column, row), None], key=str)
    hinted_document = _assessment(out / "hinted")
    assert hinted_document["dome_hint"] == {
        "column_px": column,
        "row_px": row,
        "given_by": "A. Therapist",
        "source": str(sidecar),
    }
    _assert_tracked_from(hinted_document, clip)
    assert _assessment(out / "plain")["dome_hint"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"column_px": 10}', "must hold"),
        ('{"column_px": 10, "row_px": 10, "radius": 3}', "unknown keys"),
        ('{"column_px": "10", "row_px": 10}', "must be a number"),
        ('{"column_px": 10, "row_px": 10, "given_by": 7}', "given_by"),
        ('{"column_px": 10, "row_px": 999}', "outside the first frame"),
        ("[10, 10]", "must hold"),
    ],
)
def test_a_bad_sidecar_fails_its_recording_as_bad_input(
    clip_dicom: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: str,
    message: str,
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    recording = folder / "clip.dcm"
    recording.write_bytes(clip_dicom.read_bytes())
    motion_cli.hint_sidecar_path(recording).write_text(content)
    _workers_in_this_process(monkeypatch)
    assert main(["motion", "batch", str(folder), "--out", str(out), "--workers", "1"]) == 3
    with (out / "summary.csv").open() as stream:
        summary = stream.read()
    assert "bad_input" in summary
    assert message in summary


# --- --intensity ----------------------------------------------------------------------------


def _display_frames(sequence: FluoroSequence) -> list[np.ndarray]:
    """8-bit display grey levels of raw frames: log, windowed on the clip, lung dark."""
    attenuation = -np.log(np.maximum(sequence.frames.astype(np.float64), 1.0))
    low, high = np.percentile(attenuation, [1, 99])
    display = np.clip((attenuation - low) / (high - low), 0.0, 1.0) ** 0.8
    return [np.round(255.0 * frame).astype(np.uint8) for frame in display]


@pytest.fixture(scope="module")
def display_folder(clip: FluoroSimulation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("display") / "frames"
    folder.mkdir()
    for index, frame in enumerate(_display_frames(clip.sequence)):
        assert cv2.imwrite(str(folder / f"frame{index}.png"), frame)
    return folder


def _geometry_options(clip: FluoroSimulation) -> list[str]:
    geometry = clip.sequence.geometries[0]
    return [
        "--pixel-mm",
        str(geometry.pixel_pitch_mm[0]),
        "--sad-mm",
        str(geometry.sad_mm),
        "--sdd-mm",
        str(geometry.sdd_mm),
        "--fps",
        "4",
    ]


def test_a_display_polarity_png_folder_is_assessed_with_intensity_display(
    clip: FluoroSimulation,
    display_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = [*_geometry_options(clip), "--out", str(tmp_path)]
    # Without a stated meaning the folder is refused, with the option to pass named.
    assert main(["motion", "assess", str(display_folder), *options]) == EXIT_BAD_INPUT
    assert "--intensity" in capsys.readouterr().err
    code = main(["motion", "assess", str(display_folder), "--intensity", "display", *options])
    assert code == 0, capsys.readouterr().err
    document = _assessment(tmp_path / "frames")
    assert document["tracking"]["tracked_fraction"] == 1.0
    column, row = document["tracking"]["first_apex_column_row_px"]
    true_column, true_row = clip.truth.apex_pixel[0]
    assert abs(row - true_row) <= 2.0
    assert abs(column - true_column) <= 6.0


def test_intensity_that_contradicts_the_file_is_refused(
    clip: FluoroSimulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stated = write_fluoro_mha(clip.sequence, tmp_path / "stated.mha")  # says RAW in its header
    arguments = ["motion", "assess", str(stated), "--out", str(tmp_path / "out")]
    assert main([*arguments, "--intensity", "display"]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "RAW" in error
    assert "DISPLAY" in error
    assert main([*arguments, "--intensity", "raw"]) == 0


def test_a_foreign_metaimage_without_the_header_key_needs_intensity(
    clip: FluoroSimulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import SimpleITK as sitk

    foreign = tmp_path / "foreign.mha"
    sitk.WriteImage(
        sitk.GetImageFromArray(np.ascontiguousarray(clip.sequence.frames)), str(foreign)
    )
    arguments = ["motion", "assess", str(foreign), *_geometry_options(clip)]
    assert main([*arguments, "--out", str(tmp_path / "a")]) == EXIT_BAD_INPUT
    assert "pass intensity" in capsys.readouterr().err
    assert main([*arguments, "--intensity", "raw", "--out", str(tmp_path / "b")]) == 0
    assert _assessment(tmp_path / "b" / "foreign")["tracking"]["tracked_fraction"] == 1.0


def test_intensity_values_match_the_cli_choices() -> None:
    parser = motion_cli.argparse.ArgumentParser()
    motion_cli._add_options(parser)
    action = next(a for a in parser._actions if a.dest == "intensity")
    assert set(action.choices or ()) == {value.value for value in IntensityValues}
