"""Multi-frame XA files: exact round trips, standard attributes, foreign files, errors."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.tag import Tag
from pydicom.uid import UID, XRayAngiographicImageStorage

from igrt.errors import FrameOfReferenceError, GeometryError, ImageReadError, InvalidInputError
from igrt.frame_of_reference import PatientPositionValues
from igrt.geometry import ProjectionGeometry
from igrt.imageio import read_fluoro_dicom, read_volume, write_ct_series, write_fluoro_dicom
from igrt.imageio.fluoro_dicom import PRIVATE_GROUP
from igrt.sequence import FluoroSequence, IntensityValues
from igrt.volume import Volume
from tests.igrt.imageio.builders import fixed_sequence, rotating_sequence

CHEST_CR = Path("xray") / "chest_cr_RG1_UNCI.dcm"
RT_ECLIPSE = Path("dicom") / "rt_eclipse"


def _write(sequence: FluoroSequence, path: Path, **kwargs: Any) -> Path:
    write_fluoro_dicom(
        sequence, path, patient_id="P1", patient_name="Doe^Jane", uid_seed="fluoro", **kwargs
    )
    return path


def _strip_private(path: Path, *delete: str, **values: object) -> Path:
    """Rewrite a file as a foreign one would look: no igrt private block, edits applied."""
    dataset = pydicom.dcmread(path)
    for element in list(dataset):
        if element.tag.group == PRIVATE_GROUP:
            del dataset[element.tag]
    for keyword in delete:
        delattr(dataset, keyword)
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    out = path.with_name(f"foreign_{path.name}")
    dataset.save_as(out)
    return out


def _assert_same_geometry(
    actual: FluoroSequence, expected: FluoroSequence, *, offsets: bool = True
) -> None:
    for got, want in zip(actual.geometries, expected.geometries, strict=True):
        assert got.sad_mm == pytest.approx(want.sad_mm, abs=1e-9)
        assert got.sdd_mm == pytest.approx(want.sdd_mm, abs=1e-9)
        assert got.pixel_pitch_mm == pytest.approx(want.pixel_pitch_mm, abs=1e-12)
        assert got.detector_shape == want.detector_shape
        assert got.gantry_deg == pytest.approx(want.gantry_deg, abs=1e-9)
        if offsets:
            assert got.detector_offset_mm == want.detector_offset_mm


# --- exact round trips --------------------------------------------------------------------------


def test_fixed_geometry_raw_sequence_round_trips_exactly(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    sequence = fixed_sequence(panel)
    read = read_fluoro_dicom(_write(sequence, tmp_path / "fluoro.dcm"))
    assert read.frames.dtype == np.uint16
    np.testing.assert_array_equal(read.frames, sequence.frames)
    np.testing.assert_array_equal(read.timestamps_s, sequence.timestamps_s)
    assert read.geometries == sequence.geometries
    assert read.intensity is IntensityValues.RAW


def test_rotating_sequence_with_panel_offsets_round_trips_exactly(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    sequence = rotating_sequence(panel)
    read = read_fluoro_dicom(_write(sequence, tmp_path / "cbct.dcm"))
    np.testing.assert_array_equal(read.frames, sequence.frames)
    np.testing.assert_array_equal(read.timestamps_s, sequence.timestamps_s)
    assert read.geometries == sequence.geometries  # per-frame angles and offsets, bit for bit


def test_line_integral_floats_round_trip_within_quantisation(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    sequence = rotating_sequence(panel, n_frames=8, intensity=IntensityValues.LINE_INTEGRAL)
    path = _write(sequence, tmp_path / "line_integrals.dcm")
    read = read_fluoro_dicom(path)
    assert read.intensity is IntensityValues.LINE_INTEGRAL
    assert read.frames.dtype == np.float32
    value_range = float(sequence.frames.max() - sequence.frames.min())
    float32_rounding = np.finfo(np.float32).eps * float(np.abs(sequence.frames).max())
    tolerance = value_range / 65535 / 2 * (1 + 1e-6) + float32_rounding
    assert np.abs(read.frames - sequence.frames).max() <= tolerance
    dataset = pydicom.dcmread(path)
    assert dataset.PixelIntensityRelationship == "LOG"
    assert dataset.PixelIntensityRelationshipSign == -1
    assert dataset.RescaleType == "US"
    assert float(dataset.RescaleSlope) == pytest.approx(value_range / 65535, rel=1e-6)


def test_integer_line_integrals_and_8_bit_raw_frames_are_stored_exactly(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    shape = (3, *panel.detector_shape)
    for dtype, intensity in ((np.uint16, IntensityValues.LINE_INTEGRAL), (np.uint8, None)):
        frames = rng.integers(0, np.iinfo(dtype).max, shape).astype(dtype)
        sequence = FluoroSequence.with_fixed_geometry(
            frames, [0.0, 0.1, 0.2], panel, intensity or IntensityValues.RAW
        )
        read = read_fluoro_dicom(_write(sequence, tmp_path / f"{np.dtype(dtype).name}.dcm"))
        assert read.frames.dtype == dtype
        np.testing.assert_array_equal(read.frames, frames)


def test_seeded_files_are_byte_identical(panel: ProjectionGeometry, tmp_path: Path) -> None:
    sequence = fixed_sequence(panel)
    first = _write(sequence, tmp_path / "a.dcm").read_bytes()
    second = _write(sequence, tmp_path / "b.dcm").read_bytes()
    assert first == second
    unseeded = write_fluoro_dicom(sequence, tmp_path / "c.dcm", patient_id="P", patient_name="X")
    assert UID(unseeded.sop_instance_uids[0]).is_valid
    assert unseeded.sop_instance_uids[0] != pydicom.dcmread(tmp_path / "a.dcm").SOPInstanceUID


# --- the standard attributes ----------------------------------------------------------------------


def test_rotating_file_carries_the_geometry_in_standard_xa_attributes(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    sequence = rotating_sequence(panel)
    dataset = pydicom.dcmread(_write(sequence, tmp_path / "cbct.dcm"))
    assert dataset.SOPClassUID == XRayAngiographicImageStorage
    assert dataset.Modality == "XA"
    assert int(dataset.NumberOfFrames) == sequence.n_frames
    assert (dataset.BitsAllocated, dataset.PhotometricInterpretation) == (16, "MONOCHROME2")
    assert float(dataset.DistanceSourceToPatient) == 1000.0
    assert float(dataset.DistanceSourceToDetector) == 1536.0
    # ImagerPixelSpacing is (row spacing, column spacing) = (pitch along v, pitch along u).
    assert [float(v) for v in dataset.ImagerPixelSpacing] == [1.2, 0.8]
    assert dataset.PositionerMotion == "DYNAMIC"
    assert list(dataset.FrameIncrementPointer) == [Tag(0x0018, 0x1065), Tag(0x0018, 0x1520)]
    increments = np.array([float(v) for v in dataset.PositionerPrimaryAngleIncrement])
    np.testing.assert_allclose(increments, sequence.gantry_deg - sequence.gantry_deg[0], atol=1e-9)
    times_ms = np.array([float(v) for v in dataset.FrameTimeVector])
    assert times_ms[0] == 0.0
    np.testing.assert_allclose(times_ms[1:], np.diff(sequence.timestamps_s) * 1000, rtol=1e-12)
    assert float(dataset.FrameDelay) == pytest.approx(sequence.timestamps_s[0] * 1000)
    assert dataset.PatientPosition == "HFS"
    assert dataset.PixelIntensityRelationship == "LIN"
    assert dataset.PixelIntensityRelationshipSign == 1


def test_fixed_file_is_static_with_one_frame_pointer(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    dataset = pydicom.dcmread(_write(fixed_sequence(panel), tmp_path / "fluoro.dcm"))
    assert dataset.PositionerMotion == "STATIC"
    assert dataset.FrameIncrementPointer == Tag(0x0018, 0x1065)
    assert "PositionerPrimaryAngleIncrement" not in dataset


@pytest.mark.parametrize(
    ("position", "gantry_deg", "primary_deg"),
    [
        ("HFS", 0.0, -180.0),  # source above a supine patient: receptor behind the back
        ("HFS", 90.0, -90.0),  # source at IEC +X = the HFS patient's left: receptor right (RAO)
        ("HFS", 270.0, 90.0),  # source at the patient's right: receptor left (LAO)
        ("HFP", 0.0, 0.0),  # prone: the receptor under the couch faces the chest
        ("FFS", 90.0, 90.0),  # feet first: IEC +X is the patient's right, receptor at the left
    ],
)
def test_gantry_angle_becomes_the_patient_based_receptor_angle(
    panel: ProjectionGeometry,
    tmp_path: Path,
    position: str,
    gantry_deg: float,
    primary_deg: float,
) -> None:
    sequence = fixed_sequence(replace(panel, gantry_deg=gantry_deg), n_frames=2)
    dataset = pydicom.dcmread(_write(sequence, tmp_path / "f.dcm", patient_position=position))
    assert float(dataset.PositionerPrimaryAngle) == pytest.approx(primary_deg, abs=1e-9)


@pytest.mark.parametrize("position", [p.value for p in PatientPositionValues])
def test_standard_attributes_alone_rebuild_the_geometry(
    panel: ProjectionGeometry, tmp_path: Path, position: str
) -> None:
    sequence = rotating_sequence(panel, n_frames=12)
    path = _write(sequence, tmp_path / "cbct.dcm", patient_position=position)
    read = read_fluoro_dicom(_strip_private(path))
    np.testing.assert_allclose(read.timestamps_s, sequence.timestamps_s, atol=1e-9)
    without_offsets = FluoroSequence(
        sequence.frames,
        sequence.timestamps_s,
        tuple(replace(g, detector_offset_mm=(0.0, 0.0)) for g in sequence.geometries),
    )
    # The XA model has no panel offset: a foreign reader sees a centred panel.
    _assert_same_geometry(read, without_offsets)


def test_foreign_file_with_constant_increment_and_frame_time(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    path = _write(rotating_sequence(panel, n_frames=5), tmp_path / "cbct.dcm")
    foreign = _strip_private(
        path,
        "FrameTimeVector",
        "FrameDelay",
        FrameTime="66.5",
        FrameIncrementPointer=Tag(0x0018, 0x1063),
        PositionerPrimaryAngle="-90",
        PositionerPrimaryAngleIncrement="2.5",
    )
    read = read_fluoro_dicom(foreign)
    np.testing.assert_allclose(read.timestamps_s, np.arange(5) * 0.0665)
    # HFS: receptor at -90 (patient's right) means the source at the left, IEC +X: gantry 90.
    np.testing.assert_allclose(read.gantry_deg, 90.0 + 2.5 * np.arange(5), atol=1e-9)


# --- single radiographs and other real files ----------------------------------------------


@pytest.mark.shared_data
def test_real_chest_radiograph_needs_a_fallback_geometry(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = shared_data / CHEST_CR
    with pytest.raises(GeometryError, match=r"DistanceSourceToPatient \(0018,1111\)") as excinfo:
        read_fluoro_dicom(path, intensity=IntensityValues.RAW)
    assert excinfo.value.field == "DistanceSourceToPatient"
    fallback = ProjectionGeometry(
        sad_mm=1800.0, sdd_mm=1996.0, pixel_pitch_mm=(0.2, 0.2), detector_shape=(1955, 1841)
    )
    with caplog.at_level(logging.WARNING, logger="igrt.imageio.fluoro_dicom"):
        read = read_fluoro_dicom(path, fallback_geometry=fallback, intensity=IntensityValues.RAW)
    assert "fallback_geometry" in caplog.text
    assert read.frames.shape == (1, 1955, 1841)
    assert read.frames.dtype == np.uint16
    np.testing.assert_array_equal(read.frames[0], pydicom.dcmread(path).pixel_array)
    assert read.geometries == (fallback,)
    np.testing.assert_array_equal(read.timestamps_s, [0.0])


@pytest.mark.shared_data
def test_real_radiograph_does_not_state_its_pixel_meaning(shared_data: Path) -> None:
    fallback = ProjectionGeometry(1800.0, 1996.0, (0.2, 0.2), (1955, 1841))
    with pytest.raises(ImageReadError, match="PixelIntensityRelationship"):
        read_fluoro_dicom(shared_data / CHEST_CR, fallback_geometry=fallback)


@pytest.mark.shared_data
def test_a_monochrome1_plate_read_as_display_comes_back_lung_dark(shared_data: Path) -> None:
    # MONOCHROME1 shows the lowest value white: as stored, lung is bright. DISPLAY means lung
    # dark, so the reader mirrors the grey levels; a tracker told DISPLAY would otherwise look
    # for the dome with the opposite polarity.
    path = shared_data / CHEST_CR
    stored = pydicom.dcmread(path).pixel_array.astype(np.int64)
    fallback = ProjectionGeometry(1800.0, 1996.0, (0.2, 0.2), (1955, 1841))
    read = read_fluoro_dicom(path, fallback_geometry=fallback, intensity=IntensityValues.DISPLAY)
    assert read.frames.dtype == np.uint16
    np.testing.assert_array_equal(read.frames[0], stored.min() + stored.max() - stored)


@pytest.mark.parametrize(
    ("photometric", "lut_shape", "inverted"),
    [
        ("MONOCHROME2", None, False),
        ("MONOCHROME1", None, True),
        ("MONOCHROME2", "INVERSE", True),
        ("MONOCHROME1", "INVERSE", False),
    ],
)
def test_display_frames_are_mirrored_when_shown_inverted(
    panel: ProjectionGeometry,
    tmp_path: Path,
    photometric: str,
    lut_shape: str | None,
    inverted: bool,
) -> None:
    path = _write(fixed_sequence(panel, n_frames=2), tmp_path / "raw.dcm")
    edits: dict[str, object] = {"PhotometricInterpretation": photometric}
    if lut_shape is not None:
        edits["PresentationLUTShape"] = lut_shape
    foreign = _strip_private(
        path, "PixelIntensityRelationship", "PixelIntensityRelationshipSign", **edits
    )
    stored = pydicom.dcmread(foreign).pixel_array.astype(np.int64)
    read = read_fluoro_dicom(
        foreign, fallback_geometry=panel, fallback_fps=10.0, intensity=IntensityValues.DISPLAY
    )
    expected = stored.min() + stored.max() - stored if inverted else stored
    np.testing.assert_array_equal(read.frames, expected)


@pytest.mark.shared_data
def test_real_rt_image_lacks_the_xa_geometry(shared_data: Path) -> None:
    path = next((shared_data / RT_ECLIPSE).glob("RI.*.dcm"))
    with pytest.raises(GeometryError, match="RT Image Storage"):
        read_fluoro_dicom(path, intensity=IntensityValues.RAW)


# --- errors ---------------------------------------------------------------------------------


def test_missing_geometry_attribute_is_named_and_a_fallback_rescues_it(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    sequence = fixed_sequence(panel)
    foreign = _strip_private(_write(sequence, tmp_path / "f.dcm"), "DistanceSourceToDetector")
    with pytest.raises(GeometryError, match=r"DistanceSourceToDetector \(0018,1110\)") as excinfo:
        read_fluoro_dicom(foreign)
    assert excinfo.value.field == "DistanceSourceToDetector"
    read = read_fluoro_dicom(foreign, fallback_geometry=panel)
    assert read.geometries == sequence.geometries
    with pytest.raises(GeometryError, match="fallback_geometry describes"):
        read_fluoro_dicom(foreign, fallback_geometry=replace(panel, detector_shape=(10, 10)))


def test_missing_patient_position_is_named(panel: ProjectionGeometry, tmp_path: Path) -> None:
    foreign = _strip_private(_write(fixed_sequence(panel), tmp_path / "f.dcm"), "PatientPosition")
    with pytest.raises(GeometryError, match=r"PatientPosition \(0018,5100\)"):
        read_fluoro_dicom(foreign)


def test_unknown_patient_position_in_a_file(panel: ProjectionGeometry, tmp_path: Path) -> None:
    foreign = _strip_private(
        _write(fixed_sequence(panel), tmp_path / "f.dcm"), PatientPosition="AFDR"
    )
    with pytest.raises(FrameOfReferenceError, match=r"foreign_f\.dcm"):
        read_fluoro_dicom(foreign)


def test_cranio_caudal_tilt_is_refused(panel: ProjectionGeometry, tmp_path: Path) -> None:
    foreign = _strip_private(
        _write(fixed_sequence(panel), tmp_path / "f.dcm"), PositionerSecondaryAngle="15"
    )
    with pytest.raises(GeometryError, match="PositionerSecondaryAngle"):
        read_fluoro_dicom(foreign)


def test_missing_frame_times(panel: ProjectionGeometry, tmp_path: Path) -> None:
    foreign = _strip_private(
        _write(fixed_sequence(panel), tmp_path / "f.dcm"),
        "FrameTimeVector",
        "FrameIncrementPointer",
    )
    with pytest.raises(ImageReadError, match=r"FrameTime \(0018,1063\)"):
        read_fluoro_dicom(foreign)
    read = read_fluoro_dicom(foreign, fallback_fps=15.0)
    np.testing.assert_allclose(read.timestamps_s, np.arange(6) / 15.0)


def test_edited_standard_attribute_contradicting_the_private_copy(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    path = _write(fixed_sequence(panel), tmp_path / "f.dcm")
    dataset = pydicom.dcmread(path)
    dataset.DistanceSourceToDetector = "1500"
    dataset.save_as(path)
    with pytest.raises(GeometryError, match="edited"):
        read_fluoro_dicom(path)


def test_intensity_argument_must_agree_with_the_file(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    path = _write(fixed_sequence(panel), tmp_path / "f.dcm")
    with pytest.raises(InvalidInputError, match="intensity=LINE_INTEGRAL"):
        read_fluoro_dicom(path, intensity=IntensityValues.LINE_INTEGRAL)
    foreign = _strip_private(path, PixelIntensityRelationship="DISP")
    with pytest.raises(ImageReadError, match="pass intensity"):
        read_fluoro_dicom(foreign)
    assert (
        read_fluoro_dicom(foreign, intensity=IntensityValues.RAW).intensity is IntensityValues.RAW
    )


def test_writer_refuses_frames_it_cannot_store_faithfully(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    floats = FluoroSequence.with_fixed_geometry(np.zeros((2, 24, 32)), [0.0, 1.0], panel)
    with pytest.raises(InvalidInputError, match="must be integers"):
        _write(floats, tmp_path / "a.dcm")
    negative = FluoroSequence.with_fixed_geometry(
        np.full((2, 24, 32), -1, np.int32), [0.0, 1.0], panel
    )
    with pytest.raises(InvalidInputError, match=r"0\.\.65535"):
        _write(negative, tmp_path / "b.dcm")


def test_writer_refuses_a_sequence_whose_sdd_changes(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    frames = np.zeros((2, 24, 32), np.uint16)
    sequence = FluoroSequence(frames, np.array([0.0, 1.0]), (panel, replace(panel, sdd_mm=1500.0)))
    with pytest.raises(GeometryError, match="SDD changes"):
        _write(sequence, tmp_path / "f.dcm")


def test_missing_non_dicom_corrupt_and_truncated_files(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_fluoro_dicom(tmp_path / "absent.dcm")
    text = tmp_path / "notes.dcm"
    text.write_text("not DICOM")
    with pytest.raises(ImageReadError, match=r"notes\.dcm"):
        read_fluoro_dicom(text)
    path = _write(fixed_sequence(panel), tmp_path / "f.dcm")
    data = path.read_bytes()
    for keep in (200, len(data) // 2, len(data) - 10):
        truncated = tmp_path / f"truncated_{keep}.dcm"
        truncated.write_bytes(data[:keep])
        with pytest.raises(ImageReadError, match=truncated.name):
            read_fluoro_dicom(truncated)


def test_ct_slice_is_not_a_projection(tmp_path: Path) -> None:
    volume = Volume(np.zeros((1, 4, 4), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    written = write_ct_series(volume, tmp_path / "ct", patient_id="P", patient_name="X")
    with pytest.raises(GeometryError, match="CT Image Storage"):
        read_fluoro_dicom(written.paths[0], intensity=IntensityValues.RAW)


def test_multi_frame_file_is_not_a_volume(panel: ProjectionGeometry, tmp_path: Path) -> None:
    path = _write(fixed_sequence(panel), tmp_path / "f.dcm")
    with pytest.raises(ImageReadError, match="multi-frame"):
        read_volume(path)
