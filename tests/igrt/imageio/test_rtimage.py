"""RT Image reader: the real Eclipse DRR, synthetic portal images, refused geometry, bad files."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest

from igrt.errors import GeometryError, IgrtError, ImageReadError, InvalidInputError
from igrt.geometry import ProjectionGeometry
from igrt.imageio import LoadedRtImage, read_rt_image, write_ct_series
from igrt.volume import Volume
from tests.igrt.imageio.builders import write_rt_image

RT_ECLIPSE = Path("dicom") / "rt_eclipse"


def _pixels(rows: int = 30, columns: int = 40) -> npt.NDArray[np.uint16]:
    rng = np.random.default_rng(11)
    return rng.integers(0, 60000, (rows, columns), dtype=np.uint16)


def _write(tmp_path: Path, name: str = "ri.dcm", **kwargs: Any) -> Path:
    pixels = kwargs.pop("pixels", _pixels())
    return write_rt_image(tmp_path / name, pixels, **kwargs)


def _edit(path: Path, *remove: str, **values: Any) -> Path:
    dataset = pydicom.dcmread(path)
    for keyword in remove:
        delattr(dataset, keyword)
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    edited = path.with_name(f"edited_{path.name}")
    dataset.save_as(edited)
    return edited


def _expected_pixel(
    geometry: ProjectionGeometry,
    point_iec_mm: npt.ArrayLike,
    first_pixel_xy_mm: tuple[float, float],
    spacing_row_col_mm: tuple[float, float],
) -> tuple[float, float]:
    """Where DICOM says a point lands: receptor (x, y) from the first pixel, y up, rows down."""
    point = np.asarray(point_iec_mm, dtype=np.float64)
    source = geometry.sad_mm * geometry.source_direction
    # Ray from the source through the point, to the plane SID from the source.
    ray = point - source
    t = geometry.sdd_mm / float(-ray @ geometry.source_direction)
    hit = source + t * ray
    x_mm = float(hit @ geometry.u_axis)
    y_mm = float(hit @ np.array([0.0, 1.0, 0.0]))  # receptor y = IEC gantry Y, towards the gantry
    column = (x_mm - first_pixel_xy_mm[0]) / spacing_row_col_mm[1]
    row = (first_pixel_xy_mm[1] - y_mm) / spacing_row_col_mm[0]
    return column, row


# --- the real Eclipse DRR ---------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_eclipse_drr(shared_data: Path) -> None:
    path = next((shared_data / RT_ECLIPSE).glob("RI.*.dcm"))
    read = read_rt_image(path)
    g = read.geometry
    assert (g.sad_mm, g.sdd_mm) == (1000.0, 1000.0)  # SID == SAD: a plane through the isocentre
    assert g.magnification == 1.0
    assert g.detector_shape == (512, 512)
    assert g.pixel_pitch_mm == (0.9765625, 0.9765625)
    assert g.gantry_deg == 0.0
    # RT Image Position (-249.51171875, +249.51171875) centres the 500 mm image on the beam.
    assert g.detector_offset_mm == pytest.approx((0.0, 0.0), abs=1e-9)
    column, row = g.pixel_from_detector_mm(*g.project_iec_fixed([0.0, 0.0, 0.0]))
    assert (float(column[0]), float(row[0])) == pytest.approx((255.5, 255.5))
    assert (float(column[0]), float(row[0])) == pytest.approx(
        (249.51171875 / 0.9765625, 249.51171875 / 0.9765625)
    )
    assert read.image.shape == (512, 512)
    assert read.image.dtype == np.float32
    assert float(read.image.max()) > 0.0
    assert read.treatment_gantry_deg == 0.0
    assert read.image_kind == "DRR"
    assert read.label == "AP PROS-DRR"
    assert read.photometric_interpretation == "MONOCHROME2"
    assert read.frame_of_reference_uid is not None
    assert read.notes == ()


# --- synthetic round trips --------------------------------------------------------------------


def test_centred_portal_image(tmp_path: Path) -> None:
    pixels = _pixels()
    read = read_rt_image(_write(tmp_path, pixels=pixels))
    g = read.geometry
    assert (g.sad_mm, g.sdd_mm) == (1000.0, 1500.0)
    assert g.pixel_pitch_mm == (0.392, 0.392)
    assert g.pixel_at_isocentre_mm[0] == pytest.approx(0.392 / 1.5)
    assert g.detector_offset_mm == pytest.approx((0.0, 0.0), abs=1e-9)
    np.testing.assert_array_equal(read.image, pixels.astype(np.float32))
    assert read.image_kind == "PORTAL"


@pytest.mark.parametrize("gantry_deg", [0.0, 90.0, 270.0, 33.5])
@pytest.mark.parametrize("sid_mm", [1000.0, 1500.0])
def test_points_land_where_rt_image_position_says(
    tmp_path: Path, gantry_deg: float, sid_mm: float
) -> None:
    spacing = (0.5, 0.4)  # (row, column): rows 0.5 mm apart along v, columns 0.4 mm along u
    first_pixel = (-5.0, 6.0)  # isocentre at column 12.5, row 12 of a 30 x 40 image
    path = _write(
        tmp_path,
        sid_mm=sid_mm,
        spacing_row_col_mm=spacing,
        position_mm=first_pixel,
        gantry_deg=gantry_deg,
    )
    g = read_rt_image(path).geometry
    assert g.pixel_pitch_mm == (0.4, 0.5)
    assert g.gantry_deg == gantry_deg
    iso_column, iso_row = g.pixel_from_detector_mm(*g.project_iec_fixed([0.0, 0.0, 0.0]))
    assert float(iso_column[0]) == pytest.approx(12.5)
    assert float(iso_row[0]) == pytest.approx(12.0)
    # Off-axis points, in and out of the isocentre plane, against the DICOM definition.
    superior_and_deep = 3.0 * g.u_axis + np.array([0.0, 4.0, 0.0]) - 50.0 * g.source_direction
    for point in ([0.0, 4.0, 0.0], 3.0 * g.u_axis, superior_and_deep):
        column, row = g.pixel_from_detector_mm(*g.project_iec_fixed(point))
        expected = _expected_pixel(g, point, first_pixel, spacing)
        assert (float(column[0]), float(row[0])) == pytest.approx(expected)
    # Superior (towards the gantry) is up in the image: a smaller row.
    _, superior_row = g.pixel_from_detector_mm(*g.project_iec_fixed([0.0, 4.0, 0.0]))
    assert float(superior_row[0]) == pytest.approx(12.0 - 4.0 * sid_mm / 1000.0 / 0.5)


def test_receptor_translation_moves_the_image(tmp_path: Path) -> None:
    path = _write(tmp_path, spacing_row_col_mm=(0.5, 0.4), position_mm=(-5.0, 6.0))
    moved = _edit(path, XRayImageReceptorTranslation=["3.0", "-2.0", "-500"])
    g = read_rt_image(moved).geometry
    column, row = g.pixel_from_detector_mm(*g.project_iec_fixed([0.0, 0.0, 0.0]))
    # The first pixel sits at (-5 + 3, 6 - 2) mm from the beam axis.
    assert float(column[0]) == pytest.approx(2.0 / 0.4)
    assert float(row[0]) == pytest.approx(4.0 / 0.5)


def test_rescale_is_applied(tmp_path: Path) -> None:
    pixels = _pixels()
    path = _edit(_write(tmp_path, pixels=pixels), RescaleSlope="0.5", RescaleIntercept="-100")
    read = read_rt_image(path)
    np.testing.assert_allclose(read.image, pixels * 0.5 - 100.0, rtol=1e-6)


def test_caller_states_the_imaging_source_angle(tmp_path: Path) -> None:
    path = _write(tmp_path, gantry_deg=None)
    read = read_rt_image(path, imaging_source_gantry_deg=270.0)
    assert read.geometry.gantry_deg == 270.0
    assert read.treatment_gantry_deg is None
    assert any("given by the caller" in note for note in read.notes)
    # With the file's angle present, the caller's still wins, and both are kept.
    kv = read_rt_image(_write(tmp_path, "b.dcm", gantry_deg=0.0), imaging_source_gantry_deg=90.0)
    assert (kv.geometry.gantry_deg, kv.treatment_gantry_deg) == (90.0, 0.0)


def test_a_kv_looking_file_gets_a_note_not_a_guessed_angle(tmp_path: Path) -> None:
    read = read_rt_image(_write(tmp_path, gantry_deg=0.0, image_kind="SIMULATOR"))
    assert read.geometry.gantry_deg == 0.0
    assert any("imaging_source_gantry_deg" in note for note in read.notes)


def test_loaded_rt_image_checks_its_shape(tmp_path: Path) -> None:
    read = read_rt_image(_write(tmp_path))
    with pytest.raises(GeometryError):
        LoadedRtImage(np.zeros((3, 4), np.float32), read.geometry, read.path)
    with pytest.raises(InvalidInputError):
        LoadedRtImage(read.image.astype(np.float64), read.geometry, read.path)  # type: ignore[arg-type]


# --- missing, malformed and unsupported geometry ----------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "label"),
    [
        ("RTImageSID", r"RTImageSID \(3002,0026\)"),
        ("RadiationMachineSAD", r"RadiationMachineSAD \(3002,0022\)"),
        ("ImagePlanePixelSpacing", r"ImagePlanePixelSpacing \(3002,0011\)"),
        ("RTImagePosition", r"RTImagePosition \(3002,0012\)"),
        ("GantryAngle", r"GantryAngle \(300A,011E\)"),
    ],
)
def test_missing_geometry_is_named(tmp_path: Path, keyword: str, label: str) -> None:
    path = _edit(_write(tmp_path), keyword)
    with pytest.raises(GeometryError, match=label) as info:
        read_rt_image(path)
    assert info.value.field == keyword
    assert path.name in str(info.value)


def test_pixel_spacing_is_not_taken_for_the_image_plane_spacing(tmp_path: Path) -> None:
    path = _edit(_write(tmp_path), "ImagePlanePixelSpacing", PixelSpacing=["0.26", "0.26"])
    with pytest.raises(GeometryError, match="PixelSpacing .* not used") as info:
        read_rt_image(path)
    assert info.value.field == "ImagePlanePixelSpacing"


@pytest.mark.parametrize(
    ("keyword", "written", "sentinel", "patched"),
    [
        ("RTImageSID", {"sid_mm": 1234.5}, b"1234.5", b"NaN   "),
        ("RadiationMachineSAD", {"sad_mm": 987.25}, b"987.25", b"inf   "),
        ("GantryAngle", {"gantry_deg": 12.125}, b"12.125", b"NaN   "),
        ("RTImagePosition", {"position_mm": (-5.0, 7777.0)}, b"7777", b"NaN "),
        ("ImagePlanePixelSpacing", {"spacing_row_col_mm": (0.4, 0.4125)}, b"0.4125", b"abc   "),
    ],
)
def test_non_finite_or_malformed_geometry(
    tmp_path: Path, keyword: str, written: dict[str, Any], sentinel: bytes, patched: bytes
) -> None:
    # pydicom refuses to write such values, so a valid file is patched byte for byte.
    data = _write(tmp_path, **written).read_bytes()
    assert data.count(sentinel) == 1
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(data.replace(sentinel, patched))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom's own complaint about the value
        with pytest.raises(GeometryError) as info:
            read_rt_image(bad)
    assert info.value.field == keyword
    assert "bad.dcm" in str(info.value)


def test_position_with_one_value(tmp_path: Path) -> None:
    path = _edit(_write(tmp_path), RTImagePosition=["-5.0"])
    with pytest.raises(GeometryError, match="needs 2 values") as info:
        read_rt_image(path)
    assert info.value.field == "RTImagePosition"


def test_detector_nearer_the_source_than_the_isocentre(tmp_path: Path) -> None:
    path = _edit(_write(tmp_path), "XRayImageReceptorTranslation", RTImageSID="900")
    with pytest.raises(GeometryError, match="at least sad_mm") as info:
        read_rt_image(path)
    assert info.value.field == "sdd_mm"
    assert path.name in str(info.value)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"RTImagePlane": "NON_NORMAL"}, "RTImagePlane"),
        ({"XRayImageReceptorAngle": "90"}, "XRayImageReceptorAngle"),
        ({"PatientSupportAngle": "10"}, "PatientSupportAngle"),
        ({"GantryPitchAngle": 5.0}, "GantryPitchAngle"),
        ({"XRayImageReceptorTranslation": ["0", "0", "0"]}, "XRayImageReceptorTranslation"),
        ({"XRayImageReceptorTranslation": ["0", "0"]}, "XRayImageReceptorTranslation"),
    ],
)
def test_geometry_the_model_cannot_describe_is_refused(
    tmp_path: Path, values: dict[str, Any], field: str
) -> None:
    path = _edit(_write(tmp_path), **values)  # SID 1500: receptor z must be -500
    with pytest.raises(GeometryError) as info:
        read_rt_image(path)
    assert info.value.field == field


def test_a_full_turn_of_the_couch_is_no_rotation(tmp_path: Path) -> None:
    path = _edit(_write(tmp_path), PatientSupportAngle="360", XRayImageReceptorAngle="-360")
    assert read_rt_image(path).geometry.gantry_deg == 0.0


def test_non_finite_source_angle_from_the_caller(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        read_rt_image(_write(tmp_path), imaging_source_gantry_deg=math.nan)
    assert info.value.field == "imaging_source_gantry_deg"


# --- bad files and pixel data -----------------------------------------------------------------


def test_missing_non_dicom_and_truncated_files(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_rt_image(tmp_path / "absent.dcm")
    text = tmp_path / "notes.dcm"
    text.write_text("not DICOM")
    with pytest.raises(ImageReadError, match=r"notes\.dcm"):
        read_rt_image(text)
    data = _write(tmp_path).read_bytes()
    for keep in (200, len(data) // 2, len(data) - 10):
        truncated = tmp_path / f"truncated_{keep}.dcm"
        truncated.write_bytes(data[:keep])
        with pytest.raises(ImageReadError, match=truncated.name):
            read_rt_image(truncated)


def test_pixel_data_of_the_wrong_length(tmp_path: Path) -> None:
    path = _write(tmp_path)
    dataset = pydicom.dcmread(path)
    dataset.PixelData = dataset.PixelData[: len(dataset.PixelData) // 2]
    short = tmp_path / "short.dcm"
    dataset.save_as(short)
    with pytest.raises(ImageReadError, match=r"short\.dcm"):
        read_rt_image(short)


def test_no_pixel_data(tmp_path: Path) -> None:
    path = _edit(_write(tmp_path), "PixelData")
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_rt_image(path)


def test_multi_frame_rt_image_is_refused(tmp_path: Path) -> None:
    pixels = _pixels()
    path = _write(tmp_path, pixels=pixels)
    dataset = pydicom.dcmread(path)
    dataset.NumberOfFrames = 2
    dataset.PixelData = np.concatenate([pixels, pixels]).astype("<u2").tobytes()
    cine = tmp_path / "cine.dcm"
    dataset.save_as(cine)
    with pytest.raises(ImageReadError, match="2 frames"):
        read_rt_image(cine)


def test_a_ct_slice_is_not_an_rt_image(tmp_path: Path) -> None:
    volume = Volume(np.zeros((1, 4, 4), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    written = write_ct_series(volume, tmp_path / "ct", patient_id="P", patient_name="X")
    with pytest.raises(ImageReadError, match="not an RT Image") as info:
        read_rt_image(written.paths[0])
    assert isinstance(info.value, IgrtError)
