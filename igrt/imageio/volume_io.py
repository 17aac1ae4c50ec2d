"""Reading any supported volume file or DICOM folder, and writing MetaImage (MHA) volumes.

``read_volume`` accepts
    * a folder holding one DICOM image series (one file per slice, any file order, any
      transfer syntax pydicom or SimpleITK/GDCM can decode, e.g. JPEG 2000 lossless);
    * a single single-frame DICOM image file (a one-slice volume);
    * MetaImage (``.mha``/``.mhd``) or NRRD (``.nrrd``/``.nhdr``), header and voxels read by
      :mod:`igrt.imageio.header_allowlist` (an allow-list; no data in other files, except a
      ``.mhd``'s sibling data file), or NIfTI (``.nii``/``.nii.gz``) through SimpleITK's NIfTI
      reader (ITK converts NIfTI's RAS to LPS). The reader is chosen by the file's content.

Volumes written by :func:`write_volume_mha` keep their Frame of Reference UID and the patient
position in the MetaImage header (keys ``FrameOfReferenceUID`` and ``PatientPosition``), so
they survive a round trip.
"""

from __future__ import annotations

import math
from pathlib import Path

from igrt.errors import GeometryError, ImageReadError, InvalidInputError
from igrt.frame_of_reference import PatientPositionValues
from igrt.imageio.header_allowlist import MAX_SPACING_MM, read_image_header, read_image_voxels
from igrt.imageio.results import LoadedVolume
from igrt.imageio.sniff import FileFormatValues, detect_format
from igrt.volume import Volume

__all__ = ["read_volume", "write_volume_mha"]

# The DICOM readers, pydicom (through them and ``_failures``) and SimpleITK are imported inside
# the functions that use them: an MHA, NRRD or NIfTI volume never needs pydicom, and this
# module stays cheap enough to import before a reading thread starts (``igrt register``).

ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr", ".nii", ".nii.gz")
"""File name endings read with SimpleITK rather than pydicom."""

FRAME_OF_REFERENCE_KEY = "FrameOfReferenceUID"
PATIENT_POSITION_KEY = "PatientPosition"


def _has_itk_suffix(path: Path) -> bool:
    return path.name.lower().endswith(ITK_SUFFIXES)


def _check_voxel_count(size_xyz: tuple[int, ...], max_voxels: int | None, path: Path) -> None:
    count = math.prod(size_xyz)
    if max_voxels is not None and count > max_voxels:
        raise ImageReadError(
            f"{path}: a volume of {' x '.join(str(n) for n in size_xyz)} voxels exceeds the "
            f"limit of {max_voxels} voxels",
            field="path",
        )


def _read_with_header_allowlist(
    path: Path, *, max_voxels: int | None, max_decoded_bytes: int | None
) -> LoadedVolume:
    """MetaImage or NRRD, header and voxels read here, never by SimpleITK.

    See :mod:`igrt.imageio.header_allowlist` for why.
    """
    sibling_allowed = path.name.lower().endswith((".mhd", ".nhdr"))
    header = read_image_header(path, allow_sibling_data_file=sibling_allowed)
    if header.n_dims != 3:
        raise ImageReadError(
            f"{path} holds a {header.n_dims}D image; a volume must be 3D", field="path"
        )
    _check_voxel_count(header.size_xyz, max_voxels, path)
    array = read_image_voxels(header, max_decoded_bytes=max_decoded_bytes)
    frame_uid = header.metadata.get(FRAME_OF_REFERENCE_KEY, "").strip() or None
    try:
        volume = Volume(
            array,
            spacing_mm=header.spacing_mm,
            origin_lps_mm=header.origin_mm,
            direction=header.direction,
            frame_of_reference_uid=frame_uid,
        )
    except InvalidInputError as exc:
        raise type(exc)(f"{path}: {exc}", field=exc.field) from exc
    position = header.metadata.get(PATIENT_POSITION_KEY, "").strip() or None
    return LoadedVolume(volume=volume, patient_position=position, source_files=(path,))


def _read_nifti(
    path: Path, *, max_voxels: int | None, max_decoded_bytes: int | None
) -> LoadedVolume:
    """NIfTI through SimpleITK's NIfTI reader only (never a reader chosen by content)."""
    import SimpleITK as sitk

    from igrt.imageio._failures import foreign_errors

    reader = sitk.ImageFileReader()
    reader.SetImageIO("NiftiImageIO")
    reader.SetFileName(str(path))
    with foreign_errors(path, "read image file"):
        reader.ReadImageInformation()
        size = tuple(int(n) for n in reader.GetSize())
        components = reader.GetNumberOfComponents()
        pixel_bytes = _SITK_BYTES.get(sitk.GetPixelIDValueAsString(reader.GetPixelID()), 8)
    if len(size) != 3:
        raise ImageReadError(
            f"{path} holds a {len(size)}D image; a volume must be 3D", field="path"
        )
    if components != 1:
        raise ImageReadError(
            f"{path} holds {components} components per voxel; a volume must be scalar",
            field="path",
        )
    _check_voxel_count(size, max_voxels, path)
    decoded = math.prod(size) * pixel_bytes
    if max_decoded_bytes is not None and decoded > max_decoded_bytes:
        raise ImageReadError(
            f"{path}: the voxels would take {decoded} bytes decoded, more than the limit of "
            f"{max_decoded_bytes}",
            field="path",
        )
    with foreign_errors(path, "read image file"):
        image = reader.Execute()
    spacing = tuple(float(v) for v in image.GetSpacing())
    if not all(math.isfinite(v) and 0 < v <= MAX_SPACING_MM for v in spacing):
        raise GeometryError(
            f"{path}: spacing {list(spacing)} must be positive and at most {MAX_SPACING_MM} mm",
            field="spacing_mm",
        )
    try:
        volume = Volume.from_sitk(image)
    except InvalidInputError as exc:
        raise type(exc)(f"{path}: {exc}", field=exc.field) from exc
    return LoadedVolume(volume=volume, source_files=(path,))


_SITK_BYTES = {
    "8-bit unsigned integer": 1,
    "8-bit signed integer": 1,
    "16-bit unsigned integer": 2,
    "16-bit signed integer": 2,
    "32-bit unsigned integer": 4,
    "32-bit signed integer": 4,
    "32-bit float": 4,
    "64-bit float": 8,
}


def _read_single_file(
    path: Path, *, max_voxels: int | None, max_decoded_bytes: int | None
) -> LoadedVolume:
    """A volume in one file, read by the reader its content (not its name) calls for."""
    found = detect_format(path)
    if found in (FileFormatValues.METAIMAGE, FileFormatValues.NRRD):
        return _read_with_header_allowlist(
            path, max_voxels=max_voxels, max_decoded_bytes=max_decoded_bytes
        )
    if found is FileFormatValues.NIFTI or (
        found is FileFormatValues.GZIP and path.name.lower().endswith(".nii.gz")
    ):
        return _read_nifti(path, max_voxels=max_voxels, max_decoded_bytes=max_decoded_bytes)
    what = found.value if found is not None else "no recognised format"
    raise ImageReadError(
        f"{path} holds {what}; a volume file must be MetaImage, NRRD or NIfTI", field="path"
    )


def read_volume(
    path: str | Path,
    *,
    series_instance_uid: str | None = None,
    max_voxels: int | None = None,
    max_decoded_bytes: int | None = None,
) -> LoadedVolume:
    """Read a 3D volume with its geometry in DICOM LPS.

    Parameters
    ----------
    path : str or pathlib.Path
        A DICOM series folder, a single DICOM image file, or an MHA/MHD, NRRD or NIfTI file.
    series_instance_uid : str or None, optional
        For a folder holding several DICOM series, the one to read.
    max_voxels, max_decoded_bytes : int or None, optional
        Refuse, from the headers and before any voxel is decoded, a volume with more voxels or
        more decoded bytes than these.

    Returns
    -------
    LoadedVolume
        ``.volume`` holds the voxels (HU for CT: Rescale Slope/Intercept applied) with exact
        spacing, origin (centre of the first voxel) and direction from the file, and the
        Frame of Reference UID when the file states one; ``.patient_position`` the DICOM
        Patient Position (or the MHA key written by :func:`write_volume_mha`), else ``None``.

    Raises
    ------
    ImageReadError
        Missing path, empty folder, non-image or corrupt file, mixed series, 2D or
        multi-component image, over a limit. The message names the file.
    UnsafeHeaderError
        A MetaImage or NRRD header off the allow-list
        (:mod:`igrt.imageio.header_allowlist`), e.g. one pointing at another file.
    GeometryError
        Missing or inconsistent geometry (e.g. irregular slice spacing).
    FrameOfReferenceError
        Slices of one series disagree on their Frame of Reference UID or Patient Position.

    Examples
    --------
    >>> from igrt.imageio import read_volume  # doctest: +SKIP
    >>> ct = read_volume("ct_series/").volume  # doctest: +SKIP
    """
    source = Path(path)
    if not source.exists():
        raise ImageReadError(f"no such file or folder: {source}", field="path")
    if source.is_dir():
        from igrt.imageio.dicom_series import read_dicom_folder

        return read_dicom_folder(
            source,
            series_instance_uid=series_instance_uid,
            max_voxels=max_voxels,
            max_decoded_bytes=max_decoded_bytes,
        )
    if not _has_itk_suffix(source):
        from pydicom.misc import is_dicom

        from igrt.imageio._failures import foreign_errors
        from igrt.imageio.dicom_series import read_dicom_file

        with foreign_errors(source, "read"):
            dicom = is_dicom(source)
        if dicom:
            return read_dicom_file(
                source, max_voxels=max_voxels, max_decoded_bytes=max_decoded_bytes
            )
    return _read_single_file(source, max_voxels=max_voxels, max_decoded_bytes=max_decoded_bytes)


def write_volume_mha(
    volume: Volume,
    path: str | Path,
    *,
    patient_position: str | None = None,
    compress: bool = True,
) -> Path:
    """Write ``volume`` as a MetaImage file (voxel type kept, geometry exact).

    Parameters
    ----------
    volume : Volume
        The volume; its Frame of Reference UID, when set, is stored under the header key
        ``FrameOfReferenceUID``.
    path : str or pathlib.Path
        Destination ending in ``.mha`` (single file) or ``.mhd`` (header + ``.raw``/``.zraw``).
    patient_position : str or None, optional
        DICOM Patient Position to store under the key ``PatientPosition``
        (validated, one of the eight recumbent codes).
    compress : bool, optional
        zlib-compress the voxels (default).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    InvalidInputError
        Wrong file ending, or the file cannot be written.
    FrameOfReferenceError
        Unknown patient position.
    """
    import SimpleITK as sitk

    from igrt.imageio._dicom_attributes import validated_uid
    from igrt.imageio._failures import foreign_errors

    destination = Path(path)
    if not destination.name.lower().endswith((".mha", ".mhd")):
        raise InvalidInputError(
            f"a MetaImage path must end in .mha or .mhd, got {destination.name}", field="path"
        )
    image = volume.to_sitk()
    if volume.frame_of_reference_uid is not None:
        image.SetMetaData(
            FRAME_OF_REFERENCE_KEY,
            validated_uid(volume.frame_of_reference_uid, "frame_of_reference_uid"),
        )
    if patient_position is not None:
        image.SetMetaData(PATIENT_POSITION_KEY, PatientPositionValues.parse(patient_position).value)
    with foreign_errors(destination, "write image file", error=InvalidInputError):
        sitk.WriteImage(image, str(destination), useCompression=compress)
    return destination
