"""Reading any supported volume file or DICOM folder, and writing MetaImage (MHA) volumes.

``read_volume`` accepts
    * a folder holding one DICOM image series (one file per slice, any file order, any
      transfer syntax pydicom or SimpleITK/GDCM can decode, e.g. JPEG 2000 lossless);
    * a single single-frame DICOM image file (a one-slice volume);
    * MetaImage (``.mha``/``.mhd``), NRRD (``.nrrd``/``.nhdr``) or NIfTI (``.nii``/``.nii.gz``)
      through SimpleITK, whose geometry is already in LPS (ITK converts NIfTI's RAS).

Volumes written by :func:`write_volume_mha` keep their Frame of Reference UID and the patient
position in the MetaImage header (keys ``FrameOfReferenceUID`` and ``PatientPosition``), so
they survive a round trip.
"""

from __future__ import annotations

from pathlib import Path

from pydicom.misc import is_dicom

from igrt.errors import ImageReadError, InvalidInputError
from igrt.frame_of_reference import PatientPositionValues
from igrt.imageio._dicom_attributes import validated_uid
from igrt.imageio._failures import foreign_errors
from igrt.imageio.dicom_series import read_dicom_file, read_dicom_folder
from igrt.imageio.results import LoadedVolume
from igrt.volume import Volume

__all__ = ["read_volume", "write_volume_mha"]

ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr", ".nii", ".nii.gz")
"""File name endings read with SimpleITK rather than pydicom."""

FRAME_OF_REFERENCE_KEY = "FrameOfReferenceUID"
PATIENT_POSITION_KEY = "PatientPosition"


def _has_itk_suffix(path: Path) -> bool:
    return path.name.lower().endswith(ITK_SUFFIXES)


def _read_with_simpleitk(path: Path) -> LoadedVolume:
    import SimpleITK as sitk

    with foreign_errors(path, "read image file"):
        image = sitk.ReadImage(str(path))
        keys = set(image.GetMetaDataKeys())
        frame_uid = (
            image.GetMetaData(FRAME_OF_REFERENCE_KEY) if FRAME_OF_REFERENCE_KEY in keys else None
        )
        position = image.GetMetaData(PATIENT_POSITION_KEY) if PATIENT_POSITION_KEY in keys else None
    if image.GetDimension() != 3:
        raise ImageReadError(
            f"{path} holds a {image.GetDimension()}D image; a volume must be 3D", field="path"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            f"{path} holds {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "a volume must be scalar",
            field="path",
        )
    try:
        volume = Volume.from_sitk(image, frame_of_reference_uid=(frame_uid or "").strip() or None)
    except InvalidInputError as exc:
        raise type(exc)(f"{path}: {exc}", field=exc.field) from exc
    return LoadedVolume(
        volume=volume, patient_position=(position or "").strip() or None, source_files=(path,)
    )


def read_volume(path: str | Path, *, series_instance_uid: str | None = None) -> LoadedVolume:
    """Read a 3D volume with its geometry in DICOM LPS.

    Parameters
    ----------
    path : str or pathlib.Path
        A DICOM series folder, a single DICOM image file, or an MHA/MHD, NRRD or NIfTI file.
    series_instance_uid : str or None, optional
        For a folder holding several DICOM series, the one to read.

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
        multi-component image. The message names the file.
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
        return read_dicom_folder(source, series_instance_uid=series_instance_uid)
    if _has_itk_suffix(source):
        return _read_with_simpleitk(source)
    with foreign_errors(source, "read"):
        dicom = is_dicom(source)
    if dicom:
        return read_dicom_file(source)
    return _read_with_simpleitk(source)


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
