"""The extent of a named ROI in a DICOM RT Structure Set.

An ROI's contours (``ROIContourSequence``) are polygons of LPS mm points in the ROI's Frame of
Reference (``StructureSetROISequence`` > ``ReferencedFrameOfReferenceUID``). Only the
axis-aligned bounds of all its points are read: what a registration clip box needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igrt.errors import GeometryError, ImageReadError, InvalidInputError
from igrt.imageio._dicom_attributes import optional_floats, optional_text
from igrt.imageio._dicom_file import read_dicom_file
from igrt.imageio._failures import MALFORMED_VALUE_ERRORS, foreign_errors

__all__ = ["LoadedStructureSet", "RoiExtent", "read_structure_set"]

RT_STRUCTURE_SET_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_MAX_POINTS = 5_000_000
_CONTOUR_TYPES = frozenset({"CLOSED_PLANAR", "OPEN_PLANAR", "OPEN_NONPLANAR", "POINT"})


@dataclass(frozen=True)
class RoiExtent:
    """The axis-aligned bounds of one ROI's contour points, LPS mm.

    Attributes
    ----------
    name : str
        ROI Name as written.
    number : int
        ROI Number.
    frame_of_reference_uid : str or None
        The ROI's Referenced Frame of Reference UID.
    lower_lps_mm, upper_lps_mm : tuple of float
        Smallest and largest LPS coordinates of its points.
    n_points : int
        Contour points read.
    """

    name: str
    number: int
    frame_of_reference_uid: str | None
    lower_lps_mm: tuple[float, float, float]
    upper_lps_mm: tuple[float, float, float]
    n_points: int


@dataclass(frozen=True)
class LoadedStructureSet:
    """The ROIs of an RT Structure Set that have contours.

    Attributes
    ----------
    path : pathlib.Path
        The file read.
    sop_instance_uid : str
        The structure set's SOP Instance UID.
    frame_of_reference_uid : str or None
        The (first) Referenced Frame of Reference UID of the structure set.
    patient_id : str or None
        Patient ID.
    rois : tuple of RoiExtent
        Every ROI with contour points.
    roi_names : tuple of str
        Every ROI named in the set, contoured or not.
    """

    path: Path
    sop_instance_uid: str
    frame_of_reference_uid: str | None
    patient_id: str | None
    rois: tuple[RoiExtent, ...]
    roi_names: tuple[str, ...]

    def roi(self, name: str) -> RoiExtent:
        """The ROI named ``name`` (case-insensitive, exactly one).

        Raises
        ------
        InvalidInputError
            No such ROI, an ROI without contours, or two ROIs of that name.
        """
        wanted = name.strip().lower()
        matches = [roi for roi in self.rois if roi.name.strip().lower() == wanted]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidInputError(
                f"{self.path} has {len(matches)} ROIs named {name!r}", field="roi"
            )
        if any(n.strip().lower() == wanted for n in self.roi_names):
            raise InvalidInputError(f"{self.path}: ROI {name!r} has no contours", field="roi")
        raise InvalidInputError(
            f"{self.path} has no ROI {name!r} (it has: {', '.join(self.roi_names)})", field="roi"
        )


def _roi_frames(dataset: object) -> dict[int, tuple[str, str | None]]:
    frames: dict[int, tuple[str, str | None]] = {}
    for item in getattr(dataset, "StructureSetROISequence", None) or []:
        number = int(item.ROINumber)
        frames[number] = (
            optional_text(item, "ROIName") or f"ROI {number}",
            optional_text(item, "ReferencedFrameOfReferenceUID"),
        )
    return frames


def _extent(contours: object, path: Path) -> tuple[np.ndarray, np.ndarray, int] | None:
    lower, upper, count = np.full(3, np.inf), np.full(3, -np.inf), 0
    for contour in contours or []:  # type: ignore[attr-defined]
        kind = optional_text(contour, "ContourGeometricType")
        if kind is not None and kind not in _CONTOUR_TYPES:
            raise ImageReadError(f"{path}: unknown contour type {kind!r}", field="structures")
        values = optional_floats(contour, "ContourData", path)
        if not values:
            continue
        if len(values) % 3:
            raise GeometryError(
                f"{path}: contour data of {len(values)} numbers is not (x, y, z) points",
                field="ContourData",
            )
        points = np.asarray(values, dtype=np.float64).reshape(-1, 3)
        count += len(points)
        if count > _MAX_POINTS:
            raise ImageReadError(f"{path}: more than {_MAX_POINTS} contour points", field="path")
        lower, upper = np.minimum(lower, points.min(axis=0)), np.maximum(upper, points.max(axis=0))
    return (lower, upper, count) if count else None


def read_structure_set(path: str | os.PathLike[str]) -> LoadedStructureSet:
    """Read the ROIs and their extents from an RT Structure Set.

    Raises
    ------
    ImageReadError
        Not DICOM, not an RT Structure Set, or too many contour points.
    GeometryError
        Malformed contour data.
    """
    source, dataset = read_dicom_file(path)
    with foreign_errors(source, "read RT Structure Set", catch=MALFORMED_VALUE_ERRORS):
        if str(dataset.get("SOPClassUID", "")) != RT_STRUCTURE_SET_SOP_CLASS:
            raise ImageReadError(f"{source} is not an RT Structure Set", field="structures")
        frames = _roi_frames(dataset)
        rois = []
        for item in dataset.get("ROIContourSequence") or []:
            number = int(item.ReferencedROINumber)
            extent = _extent(item.get("ContourSequence"), source)
            if extent is None or number not in frames:
                continue
            name, frame = frames[number]
            lower, upper, count = extent
            rois.append(
                RoiExtent(
                    name=name,
                    number=number,
                    frame_of_reference_uid=frame,
                    lower_lps_mm=(float(lower[0]), float(lower[1]), float(lower[2])),
                    upper_lps_mm=(float(upper[0]), float(upper[1]), float(upper[2])),
                    n_points=count,
                )
            )
        referenced = dataset.get("ReferencedFrameOfReferenceSequence") or []
        return LoadedStructureSet(
            path=source,
            sop_instance_uid=str(dataset.SOPInstanceUID),
            frame_of_reference_uid=(
                optional_text(referenced[0], "FrameOfReferenceUID") if referenced else None
            ),
            patient_id=optional_text(dataset, "PatientID"),
            rois=tuple(rois),
            roi_names=tuple(name for name, _ in frames.values()),
        )
