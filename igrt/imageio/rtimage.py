"""A DICOM RT Image (RTIMAGE: portal image, DRR, simulator image) and its projection geometry.

Attributes read (RT Image module, PS3.3 C.8.8.2)
------------------------------------------------
==========================================  ================================================
RT Image SID (3002,0026)                    ``sdd_mm``: source to *image plane*, mm
Radiation Machine SAD (3002,0022)           ``sad_mm``
Image Plane Pixel Spacing (3002,0011)       ``(row spacing, column spacing)`` in the image
                                            plane, mm: ``pixel_pitch_mm = (col, row)``
RT Image Position (3002,0012)               ``(x, y)`` of the *centre* of the first pixel in
                                            the IEC X-RAY IMAGE RECEPTOR system, mm
X-Ray Image Receptor Translation            ``(x, y, z)`` of that system's origin in IEC
(3002,000D), optional                       GANTRY; ``x, y`` add to the position, ``z`` must
                                            be ``SAD - SID``
Gantry Angle (300A,011E)                    ``gantry_deg`` (see the caution below)
==========================================  ================================================

Axes. The IEC X-RAY IMAGE RECEPTOR system (receptor angle 0) is parallel to IEC GANTRY: ``x``
is the gantry's ``X`` = the detector ``u`` axis of :mod:`igrt.geometry`, ``y`` points towards
the gantry (up in the beam's-eye view), so the detector ``v`` axis (towards the couch foot) is
``-y``. Columns run along ``+x`` and rows along ``-y``. With ``(x0, y0)`` the first pixel's
centre relative to the beam axis, the panel centre sits at
``u = x0 + (columns - 1) / 2 * pitch_u`` and ``v = -y0 + (rows - 1) / 2 * pitch_v``; a point on
the beam axis lands on column ``-x0 / pitch_u``, row ``y0 / pitch_v``.

A DRR stored at ``RTImageSID == RadiationMachineSAD`` (Eclipse does this) is a virtual image
plane through the isocentre: magnification 1, which :class:`~igrt.geometry.ProjectionGeometry`
accepts on purpose.

Caution: whose gantry angle
---------------------------
An RT Image's Gantry Angle is the *treatment* gantry's. For a portal image or a DRR of a
treatment field that is the imaging source's angle too; for a kV image stored as an RT Image it
is not (the kV source sits about 90 degrees away, by a machine-specific amount). The reader
never derives one angle from the other: the caller who knows the image came from another
source passes ``imaging_source_gantry_deg``; without it a file lacking Gantry Angle is refused.

Refused geometry
----------------
Missing SID, SAD, pixel spacing, position or gantry angle; a NON_NORMAL image plane; a
receptor rotated in its plane (X-Ray Image Receptor Angle), a gantry pitch or a couch rotation
(Patient Support Angle): none of these can be described by the projection model, which
assumes couch 0 and a detector perpendicular to the central ray. Pixel Spacing (0028,0030) is
*not* used in place of a missing Image Plane Pixel Spacing: vendors calibrate it at different
planes (receptor or isocentre), which would silently scale every shift by ``SID / SAD``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import RTImageStorage

from igrt.errors import GeometryError, ImageReadError, InvalidInputError
from igrt.geometry import ProjectionGeometry
from igrt.imageio._dicom_attributes import (
    attribute_label,
    optional_float,
    optional_floats,
    optional_text,
)
from igrt.imageio._dicom_file import read_dicom_file
from igrt.imageio._dicom_pixels import decode_pixels
from igrt.imageio._failures import MALFORMED_VALUE_ERRORS, foreign_errors, with_file_context
from igrt.imageio._positioner_angles import wrap_deg
from igrt.imageio.results import LoadedRtImage

__all__ = ["read_rt_image"]

_LOG = logging.getLogger(__name__)

_ANGLE_TOLERANCE_DEG = 1e-3
_RECEPTOR_Z_TOLERANCE_MM = 0.5
"""DS values carry 16 characters; half a millimetre separates rounding from a real mismatch."""

_REQUIRED = ("RTImageSID", "RadiationMachineSAD", "ImagePlanePixelSpacing", "RTImagePosition")


def _pair(dataset: Dataset, keyword: str, path: Path) -> tuple[float, float] | None:
    values = optional_floats(dataset, keyword, path)
    if values is None:
        return None
    if len(values) != 2:
        raise GeometryError(
            f"{path}: {attribute_label(keyword)} needs 2 values, got {values}", field=keyword
        )
    return values[0], values[1]


def _refuse_rotation(dataset: Dataset, keyword: str, path: Path, why: str) -> None:
    angle = optional_float(dataset, keyword, path)
    if angle is not None and abs(wrap_deg(angle)) > _ANGLE_TOLERANCE_DEG:
        raise GeometryError(
            f"{path}: {attribute_label(keyword)} is {angle} deg: {why}", field=keyword
        )


def _receptor_translation_xy(
    dataset: Dataset, path: Path, sad_mm: float, sid_mm: float
) -> tuple[float, float]:
    values = optional_floats(dataset, "XRayImageReceptorTranslation", path)
    if values is None:
        return 0.0, 0.0
    if len(values) != 3:
        raise GeometryError(
            f"{path}: {attribute_label('XRayImageReceptorTranslation')} needs 3 values, got "
            f"{values}",
            field="XRayImageReceptorTranslation",
        )
    # PS3.3 C.8.8.2: the receptor origin lies SID from the source, i.e. z = SAD - SID.
    if abs(values[2] - (sad_mm - sid_mm)) > _RECEPTOR_Z_TOLERANCE_MM:
        raise GeometryError(
            f"{path}: {attribute_label('XRayImageReceptorTranslation')} z = {values[2]} mm "
            f"contradicts RT Image SID {sid_mm} mm and Radiation Machine SAD {sad_mm} mm "
            f"(expected SAD - SID = {sad_mm - sid_mm} mm)",
            field="XRayImageReceptorTranslation",
        )
    return values[0], values[1]


def _image_kind(dataset: Dataset) -> str | None:
    """Third value of Image Type (``DRR``, ``PORTAL``, ``SIMULATOR``, ...), or ``None``."""
    if "ImageType" not in dataset:
        return None
    values = dataset["ImageType"].value
    items = [values] if isinstance(values, str) else list(values or [])
    return (str(items[2]).strip().upper() or None) if len(items) > 2 else None


def _kv_hint(dataset: Dataset) -> bool:
    """Whether the file itself suggests a kV image (Image Type SIMULATOR or an exposure kVp)."""
    if _image_kind(dataset) == "SIMULATOR":
        return True
    exposures = dataset.get("ExposureSequence") or []
    return any(item.get("KVP") not in (None, "") for item in exposures)


def _missing_geometry(dataset: Dataset, path: Path, missing: list[str]) -> GeometryError:
    hint = ""
    if "ImagePlanePixelSpacing" in missing and "PixelSpacing" in dataset:
        hint = (
            f" ({attribute_label('PixelSpacing')} is present but not used: its plane, receptor "
            "or isocentre, is not stated)"
        )
    if "GantryAngle" in missing:
        hint += " (pass imaging_source_gantry_deg if you know where the source was)"
    return GeometryError(
        f"{path} lacks {', '.join(attribute_label(k) for k in missing)}: the projection "
        f"geometry cannot be established{hint}",
        field=missing[0],
    )


def _geometry(
    dataset: Dataset,
    path: Path,
    shape: tuple[int, int],
    imaging_source_gantry_deg: float | None,
    notes: list[str],
) -> tuple[ProjectionGeometry, float | None]:
    sid_mm = optional_float(dataset, "RTImageSID", path)
    sad_mm = optional_float(dataset, "RadiationMachineSAD", path)
    spacing = _pair(dataset, "ImagePlanePixelSpacing", path)
    position = _pair(dataset, "RTImagePosition", path)
    treatment_gantry_deg = optional_float(dataset, "GantryAngle", path)
    gantry_known = treatment_gantry_deg is not None or imaging_source_gantry_deg is not None
    if sid_mm is None or sad_mm is None or spacing is None or position is None or not gantry_known:
        values = (sid_mm, sad_mm, spacing, position)
        missing = [
            keyword for keyword, value in zip(_REQUIRED, values, strict=True) if value is None
        ]
        raise _missing_geometry(dataset, path, missing + ([] if gantry_known else ["GantryAngle"]))

    plane = optional_text(dataset, "RTImagePlane")
    if plane is None:
        notes.append("RT Image Plane absent; taken as NORMAL (perpendicular to the beam axis)")
    elif plane.upper() != "NORMAL":
        raise GeometryError(
            f"{path}: {attribute_label('RTImagePlane')} is {plane}: only images perpendicular "
            "to the beam axis (NORMAL) can be described",
            field="RTImagePlane",
        )
    _refuse_rotation(
        dataset, "XRayImageReceptorAngle", path, "a receptor rotated in its plane is not modelled"
    )
    _refuse_rotation(dataset, "GantryPitchAngle", path, "a pitched gantry is not modelled")
    _refuse_rotation(
        dataset, "PatientSupportAngle", path, "the projection model assumes the couch at 0 deg"
    )
    shift_x_mm, shift_y_mm = _receptor_translation_xy(dataset, path, sad_mm, sid_mm)

    if imaging_source_gantry_deg is None:
        assert treatment_gantry_deg is not None  # checked with gantry_known
        gantry_deg = treatment_gantry_deg
        if _kv_hint(dataset):
            note = (
                "the file looks like a kV image (Image Type SIMULATOR or an exposure kVp) but "
                "its Gantry Angle is the treatment gantry's; it was used as the source angle "
                "(pass imaging_source_gantry_deg if the kV source was elsewhere)"
            )
            notes.append(note)
            _LOG.warning("%s: %s", path, note)
    else:
        if not math.isfinite(imaging_source_gantry_deg):
            raise InvalidInputError(
                "imaging_source_gantry_deg must be finite", field="imaging_source_gantry_deg"
            )
        gantry_deg = float(imaging_source_gantry_deg)
        stated = "absent" if treatment_gantry_deg is None else f"{treatment_gantry_deg:g} deg"
        notes.append(
            f"source angle {gantry_deg:g} deg given by the caller (file Gantry Angle: {stated})"
        )

    rows, columns = shape
    pitch_u_mm, pitch_v_mm = spacing[1], spacing[0]
    first_x_mm = position[0] + shift_x_mm
    first_y_mm = position[1] + shift_y_mm
    offset_mm = (
        first_x_mm + (columns - 1) / 2.0 * pitch_u_mm,
        -first_y_mm + (rows - 1) / 2.0 * pitch_v_mm,
    )
    try:
        geometry = ProjectionGeometry(
            sad_mm=sad_mm,
            sdd_mm=sid_mm,
            pixel_pitch_mm=(pitch_u_mm, pitch_v_mm),
            detector_shape=shape,
            detector_offset_mm=offset_mm,
            gantry_deg=gantry_deg,
        )
    except GeometryError as exc:
        raise with_file_context(exc, path) from exc
    return geometry, treatment_gantry_deg


def _pixel_values(dataset: Dataset, path: Path) -> npt.NDArray[np.float32]:
    decoded = decode_pixels(dataset, path)
    if decoded.array.shape[0] != 1:
        raise ImageReadError(
            f"{path} holds {decoded.array.shape[0]} frames; an RT image reader reads one",
            field="NumberOfFrames",
        )
    values = decoded.array[0].astype(np.float64)
    if not decoded.rescaled:
        slope = optional_float(dataset, "RescaleSlope", path)
        intercept = optional_float(dataset, "RescaleIntercept", path)
        values = values * (1.0 if slope is None else slope) + (
            0.0 if intercept is None else intercept
        )
    image: npt.NDArray[np.float32] = values.astype(np.float32)
    if not np.all(np.isfinite(image)):
        raise ImageReadError(f"{path}: the pixel values are not all finite", field="PixelData")
    return image


def read_rt_image(
    path: str | Path, *, imaging_source_gantry_deg: float | None = None
) -> LoadedRtImage:
    """Read a single-frame DICOM RT Image and the projection geometry it states.

    See the module docstring for the attributes used, the axes and what is refused.

    Parameters
    ----------
    path : str or pathlib.Path
        An RT Image file (Modality RTIMAGE).
    imaging_source_gantry_deg : float or None, optional
        IEC 61217 angle of the source that made the image, degrees. Leave ``None`` for a
        portal image or a DRR of a treatment field (the file's Gantry Angle is then used and
        must be present); pass it for an image from another source (a kV imager), whose angle
        the file does not state.

    Returns
    -------
    LoadedRtImage
        The float32 image (Modality LUT applied) and its
        :class:`~igrt.geometry.ProjectionGeometry`; ``sdd_mm`` is the RT Image SID and may
        equal ``sad_mm``.

    Raises
    ------
    ImageReadError
        Missing, non-DICOM, corrupt or truncated file; not an RT Image; undecodable, multi-frame
        or non-finite pixels. The message names the file.
    GeometryError
        A geometry attribute missing (the message and ``field`` name it), malformed, non-finite
        or describing a geometry the model cannot represent.
    InvalidInputError
        A non-finite ``imaging_source_gantry_deg``.

    Examples
    --------
    >>> from igrt.imageio import read_rt_image  # doctest: +SKIP
    >>> drr = read_rt_image("RI.dcm")  # doctest: +SKIP
    >>> drr.geometry.sdd_mm, drr.geometry.gantry_deg  # doctest: +SKIP
    (1000.0, 0.0)
    """
    source, dataset = read_dicom_file(path)
    notes: list[str] = []
    # pydicom converts values lazily, on access: malformed values surface as foreign errors.
    with foreign_errors(source, "interpret DICOM attributes of", catch=MALFORMED_VALUE_ERRORS):
        modality = optional_text(dataset, "Modality")
        sop_class = optional_text(dataset, "SOPClassUID")
        if modality != "RTIMAGE" and sop_class != RTImageStorage:
            raise ImageReadError(
                f"{source} is not an RT Image (Modality {modality}, SOP Class {sop_class})",
                field="Modality",
            )
        image = _pixel_values(dataset, source)
        rows, columns = (int(n) for n in image.shape)
        geometry, treatment_gantry_deg = _geometry(
            dataset, source, (rows, columns), imaging_source_gantry_deg, notes
        )
        image_kind = _image_kind(dataset)
        label = optional_text(dataset, "RTImageLabel")
        photometric = optional_text(dataset, "PhotometricInterpretation") or "MONOCHROME2"
        frame_uid = optional_text(dataset, "FrameOfReferenceUID")
    return LoadedRtImage(
        image=image,
        geometry=geometry,
        path=source,
        treatment_gantry_deg=treatment_gantry_deg,
        image_kind=image_kind,
        label=label,
        photometric_interpretation=photometric,
        frame_of_reference_uid=frame_uid,
        notes=tuple(notes),
    )
