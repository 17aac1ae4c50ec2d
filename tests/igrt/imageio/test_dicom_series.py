"""DICOM image series: CT writer, folder/file reader, real JPEG 2000 and oblique series, errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

from igrt.errors import (
    FrameOfReferenceError,
    GeometryError,
    ImageReadError,
    InvalidInputError,
)
from igrt.imageio import _dicom_pixels, read_volume, write_ct_series
from igrt.volume import Volume

J2K = Path("dicom") / "ct_series_j2k"
OBLIQUE = Path("dicom") / "oblique_ct"
RT_ECLIPSE = Path("dicom") / "rt_eclipse"


def _write(volume: Volume, folder: Path, **kwargs: Any) -> list[Path]:
    written = write_ct_series(
        volume, folder, patient_id="P1", patient_name="Doe^Jane", uid_seed="test", **kwargs
    )
    return list(written.paths)


def _max_quantisation_error(folder: Path) -> float:
    slope = float(pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True).RescaleSlope)
    return slope / 2 + 1e-3


# --- round trips ------------------------------------------------------------------------------


def test_float_oblique_volume_round_trips_through_a_ct_series(
    oblique_volume: Volume, tmp_path: Path
) -> None:
    folder = tmp_path / "ct"
    _write(oblique_volume, folder, patient_position="FFS")
    loaded = read_volume(folder)
    volume = loaded.volume
    assert volume.array.shape == oblique_volume.array.shape
    np.testing.assert_allclose(volume.origin_lps_mm, oblique_volume.origin_lps_mm, atol=1e-3)
    np.testing.assert_allclose(volume.spacing_mm, oblique_volume.spacing_mm, atol=1e-3)
    np.testing.assert_allclose(volume.direction, oblique_volume.direction, atol=1e-9)
    error = np.abs(volume.array.astype(np.float64) - oblique_volume.array)
    assert error.max() <= _max_quantisation_error(folder)
    assert volume.frame_of_reference_uid == oblique_volume.frame_of_reference_uid
    assert loaded.patient_position == "FFS"
    assert loaded.modality == "CT"
    assert loaded.notes == ()


def test_integer_volume_round_trips_exactly_as_int16(
    integer_volume: Volume, tmp_path: Path
) -> None:
    written = write_ct_series(
        integer_volume, tmp_path / "ct", patient_id="P1", patient_name="Doe^Jane"
    )
    loaded = read_volume(tmp_path / "ct")
    assert loaded.volume.array.dtype == np.int16
    np.testing.assert_array_equal(loaded.volume.array, integer_volume.array)
    assert loaded.volume.same_grid(integer_volume, tolerance_mm=1e-6)
    assert loaded.volume.frame_of_reference_uid == written.frame_of_reference_uid
    assert loaded.series_instance_uid == written.series_instance_uid
    assert loaded.study_instance_uid == written.study_instance_uid


def test_written_slices_carry_the_standard_geometry(oblique_volume: Volume, tmp_path: Path) -> None:
    paths = _write(oblique_volume, tmp_path / "ct")
    first = pydicom.dcmread(paths[0])
    last = pydicom.dcmread(paths[-1])
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (first.BitsAllocated, first.PixelRepresentation) == (16, 1)
    # PixelSpacing is (row spacing, column spacing) = (spacing_j, spacing_i).
    np.testing.assert_allclose([float(v) for v in first.PixelSpacing], [0.9, 0.7])
    np.testing.assert_allclose(float(first.SliceThickness), 2.5)
    np.testing.assert_allclose(float(first.SpacingBetweenSlices), 2.5)
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    np.testing.assert_allclose(iop[:3], oblique_volume.direction[:, 0], atol=1e-12)
    np.testing.assert_allclose(iop[3:], oblique_volume.direction[:, 1], atol=1e-12)
    # ImagePositionPatient is the centre of the first voxel of each slice.
    np.testing.assert_allclose(
        [float(v) for v in first.ImagePositionPatient], oblique_volume.origin_lps_mm, atol=1e-9
    )
    k_last = oblique_volume.array.shape[0] - 1
    np.testing.assert_allclose(
        [float(v) for v in last.ImagePositionPatient],
        oblique_volume.lps_from_index([[0, 0, k_last]])[0],
        atol=1e-9,
    )
    assert first.FrameOfReferenceUID == oblique_volume.frame_of_reference_uid
    assert first.PatientPosition == "HFS"
    for uid in (first.SOPInstanceUID, first.SeriesInstanceUID, first.StudyInstanceUID):
        assert UID(uid).is_valid


def test_seeded_uids_make_the_series_reproducible(integer_volume: Volume, tmp_path: Path) -> None:
    first = _write(integer_volume, tmp_path / "a")
    second = _write(integer_volume, tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    other = write_ct_series(
        integer_volume, tmp_path / "c", patient_id="P1", patient_name="X", uid_seed="other"
    )
    assert other.series_instance_uid != pydicom.dcmread(first[0]).SeriesInstanceUID
    sop_uids = {pydicom.dcmread(p).SOPInstanceUID for p in first}
    assert len(sop_uids) == len(first)


def test_file_order_and_names_do_not_matter(oblique_volume: Volume, tmp_path: Path) -> None:
    paths = _write(oblique_volume, tmp_path / "ct")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for index, path in enumerate(paths):  # reverse the name order and drop the numbering
        shutil.copy(path, shuffled / f"slice_{chr(ord('z') - index)}.dcm")
    expected = read_volume(tmp_path / "ct").volume
    loaded = read_volume(shuffled).volume
    np.testing.assert_array_equal(loaded.array, expected.array)
    np.testing.assert_array_equal(loaded.origin_lps_mm, expected.origin_lps_mm)


def test_left_handed_volume_reads_back_with_k_reversed_at_the_same_positions(
    integer_volume: Volume, tmp_path: Path
) -> None:
    mirrored = Volume(
        integer_volume.array,
        integer_volume.spacing_mm,
        integer_volume.origin_lps_mm,
        direction=np.diag([1.0, 1.0, -1.0]),
    )
    _write(mirrored, tmp_path / "ct")
    loaded = read_volume(tmp_path / "ct").volume
    np.testing.assert_array_equal(loaded.array, mirrored.array[::-1])
    n_k = mirrored.array.shape[0]
    np.testing.assert_allclose(
        loaded.origin_lps_mm, mirrored.lps_from_index([[0, 0, n_k - 1]])[0], atol=1e-6
    )
    assert np.linalg.det(loaded.direction) == pytest.approx(1.0)


def test_single_slice_file_is_a_one_slice_volume(oblique_volume: Volume, tmp_path: Path) -> None:
    paths = _write(oblique_volume, tmp_path / "ct")
    loaded = read_volume(paths[3])
    assert loaded.volume.array.shape == (1, 20, 30)
    np.testing.assert_allclose(
        loaded.volume.origin_lps_mm, oblique_volume.lps_from_index([[0, 0, 3]])[0], atol=1e-6
    )
    assert loaded.volume.spacing_mm[2] == pytest.approx(2.5)
    assert "SpacingBetweenSlices" in loaded.notes[0]


def test_non_image_dicom_and_text_files_in_the_folder_are_skipped_and_noted(
    integer_volume: Volume, tmp_path: Path, shared_data: Path
) -> None:
    folder = tmp_path / "ct"
    _write(integer_volume, folder)
    structure_set = next((shared_data / RT_ECLIPSE).glob("RS.*.dcm"))
    shutil.copy(structure_set, folder / structure_set.name)
    (folder / "README.txt").write_text("exported by hand")
    loaded = read_volume(folder)
    np.testing.assert_array_equal(loaded.volume.array, integer_volume.array)
    assert any("README.txt" in note for note in loaded.notes)
    assert any("RT Structure Set Storage" in note for note in loaded.notes)


def test_choosing_one_series_of_a_mixed_folder(
    integer_volume: Volume, oblique_volume: Volume, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed"
    _write(integer_volume, tmp_path / "a")
    written = write_ct_series(
        oblique_volume, tmp_path / "b", patient_id="P1", patient_name="X", uid_seed="b"
    )
    mixed.mkdir()
    for path in [*(tmp_path / "a").iterdir(), *(tmp_path / "b").iterdir()]:
        shutil.copy(path, mixed / f"{path.parent.name}_{path.name}")
    with pytest.raises(ImageReadError, match="mixes 2 image series") as excinfo:
        read_volume(mixed)
    assert written.series_instance_uid in str(excinfo.value)
    chosen = read_volume(mixed, series_instance_uid=written.series_instance_uid)
    assert chosen.volume.array.shape == oblique_volume.array.shape
    with pytest.raises(ImageReadError, match="holds no series"):
        read_volume(mixed, series_instance_uid="1.2.3")


# --- real data ----------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_jpeg2000_ct_series(shared_data: Path) -> None:
    folder = shared_data / J2K
    loaded = read_volume(folder)
    volume = loaded.volume
    assert volume.array.shape == (20, 512, 512)
    assert volume.array.dtype == np.int16
    np.testing.assert_allclose(volume.spacing_mm, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    np.testing.assert_array_equal(volume.direction, np.eye(3))
    headers = sorted(
        (pydicom.dcmread(p) for p in folder.iterdir()),
        key=lambda ds: float(ds.ImagePositionPatient[2]),
    )
    np.testing.assert_allclose(
        volume.origin_lps_mm, [float(v) for v in headers[0].ImagePositionPatient], atol=1e-9
    )
    assert volume.frame_of_reference_uid == headers[0].FrameOfReferenceUID
    assert loaded.patient_position == "HFS"
    # Values are HU: the stored values through the slice's own slope and intercept.
    for k in (0, 19):
        ds = headers[k]
        expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(volume.array[k], expected)
    assert volume.array.min() > -1100
    assert volume.array.max() < 4000


@pytest.mark.shared_data
def test_real_jpeg2000_series_decodes_through_simpleitk_when_pydicom_cannot(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = read_volume(shared_data / J2K).volume.array

    def missing_plugin(dataset: object) -> np.ndarray:
        raise RuntimeError("Unable to decode the pixel data: missing plugins")

    monkeypatch.setattr(_dicom_pixels, "_decode_with_pydicom", missing_plugin)
    np.testing.assert_array_equal(read_volume(shared_data / J2K).volume.array, expected)


@pytest.mark.shared_data
def test_undecodable_compressed_pixels_raise_image_read_error(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(_: object) -> np.ndarray:
        raise RuntimeError("no decoder")

    monkeypatch.setattr(_dicom_pixels, "_decode_with_pydicom", fails)
    monkeypatch.setattr(_dicom_pixels, "_decode_with_simpleitk", fails)
    with pytest.raises(ImageReadError, match=r"pydicom: .*SimpleITK: "):
        read_volume(shared_data / J2K)


@pytest.mark.shared_data
def test_real_oblique_series_keeps_the_direction_of_its_headers(shared_data: Path) -> None:
    folder = shared_data / OBLIQUE
    loaded = read_volume(folder)
    volume = loaded.volume
    headers = [pydicom.dcmread(folder / f"{i}.dcm") for i in range(3)]
    iop = np.array([float(v) for v in headers[0].ImageOrientationPatient])
    row_cosine, column_cosine = iop[:3], iop[3:]
    normal = np.cross(row_cosine, column_cosine)
    np.testing.assert_allclose(volume.direction[:, 0], row_cosine, atol=1e-12)
    np.testing.assert_allclose(volume.direction[:, 1], column_cosine, atol=1e-12)
    np.testing.assert_allclose(volume.direction[:, 2], normal / np.linalg.norm(normal), atol=1e-9)
    assert not np.allclose(volume.direction, np.eye(3), atol=0.1)
    assert volume.array.shape == (3, 50, 100)
    # PixelSpacing [3.5, 2.5] is (row, column): 2.5 mm along i, 3.5 mm along j.
    np.testing.assert_allclose(volume.spacing_mm, (2.5, 3.5, 4.5), atol=1e-3)
    # Every voxel sits where the DICOM equation of its own file puts it.
    for k, ds in enumerate(headers):
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        expected = position + 7 * 2.5 * row_cosine + 11 * 3.5 * column_cosine
        np.testing.assert_allclose(volume.lps_from_index([[7, 11, k]])[0], expected, atol=1e-3)
        expected_values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(volume.array[k], expected_values, atol=1e-6)
    assert any("non-DICOM" in note for note in loaded.notes)


# --- errors -------------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file or folder"):
        read_volume(tmp_path / "nowhere")


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no DICOM image files"):
        read_volume(tmp_path)


def test_folder_without_dicom_lists_what_it_ignored(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing to see")
    with pytest.raises(ImageReadError, match=r"no DICOM image files.*notes\.txt"):
        read_volume(tmp_path)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_corrupt_dicom_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.dcm"
    garbage = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path.write_bytes(b"\0" * 128 + b"DICM" + garbage)
    with pytest.raises(ImageReadError, match=r"corrupt\.dcm"):
        read_volume(path)


@pytest.mark.parametrize("keep_fraction", [0.03, 0.5, 0.97])
def test_truncated_slice_in_a_series_names_the_file(
    integer_volume: Volume, tmp_path: Path, keep_fraction: float
) -> None:
    paths = _write(integer_volume, tmp_path / "ct")
    victim = paths[-1]  # the last slice: skipping it would go unnoticed by the spacing check
    data = victim.read_bytes()
    victim.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(ImageReadError, match=victim.name):
        read_volume(tmp_path / "ct")


def test_text_file_is_not_a_volume(tmp_path: Path) -> None:
    path = tmp_path / "volume.dcm"
    path.write_text("this is not an image")
    with pytest.raises(ImageReadError, match=r"volume\.dcm"):
        read_volume(path)


def test_inconsistent_slice_spacing(integer_volume: Volume, tmp_path: Path) -> None:
    paths = _write(integer_volume, tmp_path / "ct")
    paths[2].unlink()
    with pytest.raises(GeometryError, match="inconsistent slice spacing") as excinfo:
        read_volume(tmp_path / "ct")
    assert excinfo.value.field == "ImagePositionPatient"


def test_two_slices_at_one_position(integer_volume: Volume, tmp_path: Path) -> None:
    paths = _write(integer_volume, tmp_path / "ct")
    shutil.copy(paths[1], tmp_path / "ct" / "copy.dcm")
    with pytest.raises(ImageReadError, match="same slice position"):
        read_volume(tmp_path / "ct")


def _edit(path: Path, **values: object) -> None:
    dataset = pydicom.dcmread(path)
    for keyword, value in values.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(path)


def test_sheared_stack_is_refused(integer_volume: Volume, tmp_path: Path) -> None:
    paths = _write(integer_volume, tmp_path / "ct")
    for k, path in enumerate(paths):  # a gantry tilt: each slice moves 0.5 mm along y
        position = pydicom.dcmread(path).ImagePositionPatient
        _edit(path, ImagePositionPatient=[position[0], float(position[1]) + 0.5 * k, position[2]])
    with pytest.raises(GeometryError, match="sheared"):
        read_volume(tmp_path / "ct")


def test_slice_with_another_orientation(integer_volume: Volume, tmp_path: Path) -> None:
    paths = _write(integer_volume, tmp_path / "ct")
    _edit(paths[2], ImageOrientationPatient=[1, 0, 0, 0, 0.8, 0.6])
    with pytest.raises(GeometryError, match="ImageOrientationPatient"):
        read_volume(tmp_path / "ct")


def test_slice_without_position(integer_volume: Volume, tmp_path: Path) -> None:
    paths = _write(integer_volume, tmp_path / "ct")
    _edit(paths[0], ImagePositionPatient=None)
    with pytest.raises(GeometryError, match=r"ImagePositionPatient \(0020,0032\)") as excinfo:
        read_volume(tmp_path / "ct")
    assert excinfo.value.field == "ImagePositionPatient"
    assert paths[0].name in str(excinfo.value)


def test_slices_from_two_frames_of_reference(integer_volume: Volume, tmp_path: Path) -> None:
    paths = _write(integer_volume, tmp_path / "ct")
    _edit(paths[3], FrameOfReferenceUID="1.2.3.4")
    with pytest.raises(FrameOfReferenceError, match="FrameOfReferenceUID"):
        read_volume(tmp_path / "ct")


def test_writer_refuses_a_non_empty_folder(integer_volume: Volume, tmp_path: Path) -> None:
    (tmp_path / "existing.dcm").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="not empty"):
        _write(integer_volume, tmp_path)
    with pytest.raises(InvalidInputError, match="not empty"):
        _write(integer_volume, tmp_path, overwrite=True)


def test_overwrite_replaces_a_previous_series_without_stale_slices(
    integer_volume: Volume, tmp_path: Path
) -> None:
    folder = tmp_path / "ct"
    _write(integer_volume, folder)
    with pytest.raises(InvalidInputError, match="overwrite=True"):
        _write(integer_volume, folder)
    thinner = Volume(integer_volume.array[:3], integer_volume.spacing_mm, (0.0, 0.0, 0.0))
    _write(thinner, folder, overwrite=True)
    assert len(list(folder.iterdir())) == 3
    np.testing.assert_array_equal(read_volume(folder).volume.array, thinner.array)


def test_writer_refuses_an_unknown_patient_position(integer_volume: Volume, tmp_path: Path) -> None:
    with pytest.raises(FrameOfReferenceError):
        _write(integer_volume, tmp_path / "ct", patient_position="SITTING")


def test_writer_refuses_a_contradicting_frame_of_reference(
    oblique_volume: Volume, tmp_path: Path
) -> None:
    with pytest.raises(FrameOfReferenceError, match="mix frames"):
        _write(oblique_volume, tmp_path / "ct", frame_of_reference_uid="1.2.3.4")


def test_writer_refuses_invalid_uids_and_other_modalities(
    integer_volume: Volume, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="not a valid DICOM UID"):
        _write(integer_volume, tmp_path / "a", series_instance_uid="1.2.abc")
    with pytest.raises(InvalidInputError, match="modality"):
        _write(integer_volume, tmp_path / "b", modality="MR")


# --- untrusted series: transfer syntax, size before decoding, one patient ---------------------


def test_a_deflated_slice_is_refused_before_it_is_inflated(
    integer_volume: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    paths = _write(integer_volume, tmp_path / "ct")
    dataset = pydicom.dcmread(paths[0])
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    dataset.save_as(paths[0], enforce_file_format=True)

    def no_parsing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the deflated data set was parsed")

    monkeypatch.setattr("igrt.imageio.dicom_series.dcmread", no_parsing)
    with pytest.raises(ImageReadError, match="Deflated") as caught:
        read_volume(tmp_path / "ct")
    assert caught.value.field == "TransferSyntaxUID"


def test_the_size_is_checked_from_the_headers_before_any_slice_is_decoded(
    integer_volume: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(integer_volume, tmp_path / "ct")  # 5 x 16 x 12 int16: 960 voxels, 1920 bytes

    def no_decoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a slice was decoded")

    monkeypatch.setattr("igrt.imageio.dicom_series.decode_pixels", no_decoding)
    with pytest.raises(ImageReadError, match="960 voxels, more than the limit of 959"):
        read_volume(tmp_path / "ct", max_voxels=959)
    with pytest.raises(ImageReadError, match="1920 bytes decoded"):
        read_volume(tmp_path / "ct", max_decoded_bytes=1919)


def test_slices_are_decoded_into_one_array_of_the_final_type(tmp_path: Path) -> None:
    import tracemalloc

    values = np.random.default_rng(4).integers(-1024, 3000, (10, 256, 256)).astype(np.int16)
    _write(Volume(values, spacing_mm=(1, 1, 2), origin_lps_mm=(0, 0, 0)), tmp_path / "ct")
    tracemalloc.start()
    try:
        loaded = read_volume(tmp_path / "ct")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(loaded.volume.array, values)
    assert loaded.volume.array.dtype == np.int16
    # One int16 volume plus a slice in flight and the slices' headers; int64 slices would
    # take 4x the volume and their np.stack copy 4x more.
    assert peak < 1.5 * values.nbytes, f"peak {peak} bytes for a {values.nbytes}-byte volume"


def test_slices_of_two_patients_are_not_one_volume(integer_volume: Volume, tmp_path: Path) -> None:
    from igrt.errors import PatientMismatchError

    paths = _write(integer_volume, tmp_path / "ct")
    dataset = pydicom.dcmread(paths[2])
    dataset.PatientID = "P2"
    dataset.save_as(paths[2], enforce_file_format=True)
    with pytest.raises(PatientMismatchError, match="P2"):
        read_volume(tmp_path / "ct")


def test_the_series_states_its_patient(integer_volume: Volume, tmp_path: Path) -> None:
    _write(integer_volume, tmp_path / "ct")
    patient = read_volume(tmp_path / "ct").patient
    assert (patient.patient_id, patient.name) == ("P1", "Doe^Jane")
