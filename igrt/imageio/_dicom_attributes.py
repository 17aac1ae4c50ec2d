"""Reading and writing DICOM attribute values: DS numbers, labelled look-ups, UIDs.

A DS (decimal string) holds at most 16 characters, so a float is rounded when it is written.
Writers here compute with :func:`ds_float` (the value a reader will get back), never with the
unrounded float, so that what is written and what is later read agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import RE_VALID_UID, UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from igrt.errors import GeometryError, InvalidInputError
from igrt.patient_identity import PatientIdentity

__all__ = [
    "attribute_label",
    "ds_float",
    "ds_string",
    "make_uid",
    "new_part10_dataset",
    "optional_float",
    "optional_floats",
    "optional_text",
    "patient_identity",
    "validated_uid",
]


def attribute_label(keyword: str) -> str:
    """``"Keyword (gggg,eeee)"`` for a DICOM keyword, as used in error messages."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def ds_string(value: float) -> str:
    """Format a finite float as a DICOM DS of at most 16 characters (rounding if needed)."""
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"cannot store a non-finite number ({number!r}) in DICOM")
    if number == 0.0:
        return "0.0"  # also maps -0.0 to a valid DS
    return str(format_number_as_ds(number))


def ds_float(value: float) -> float:
    """The float a reader gets back after ``value`` is written as a DS."""
    return float(ds_string(value))


def _element_value(dataset: Dataset, keyword: str) -> Any:
    if keyword not in dataset:
        return None
    value = dataset[keyword].value
    if value is None or value == "" or (isinstance(value, Sequence) and len(value) == 0):
        return None
    return value


def optional_float(dataset: Dataset, keyword: str, path: Path) -> float | None:
    """A single numeric attribute as float, or ``None`` when absent or empty.

    Raises
    ------
    GeometryError
        If the value is present but not a finite number (``field`` is the keyword).
    """
    values = optional_floats(dataset, keyword, path)
    if values is None:
        return None
    if len(values) != 1:
        raise GeometryError(
            f"{path}: {attribute_label(keyword)} should hold one number, got {values}",
            field=keyword,
        )
    return values[0]


def optional_floats(dataset: Dataset, keyword: str, path: Path) -> list[float] | None:
    """A (possibly multi-valued) numeric attribute as a list of floats, or ``None``.

    Raises
    ------
    GeometryError
        If a value is present but not a finite number (``field`` is the keyword).
    """
    value = _element_value(dataset, keyword)
    if value is None:
        return None
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    try:
        numbers = [float(item) for item in items]
    except (TypeError, ValueError) as exc:
        raise GeometryError(
            f"{path}: {attribute_label(keyword)} is not numeric: {value!r}", field=keyword
        ) from exc
    if not all(math.isfinite(number) for number in numbers):
        raise GeometryError(
            f"{path}: {attribute_label(keyword)} is not finite: {numbers}", field=keyword
        )
    return numbers


def optional_text(dataset: Dataset, keyword: str) -> str | None:
    """A string attribute stripped of padding, or ``None`` when absent or empty."""
    if keyword not in dataset:
        return None
    value = dataset[keyword].value
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def make_uid(uid_seed: str | None, *parts: object) -> str:
    """A new DICOM UID under pydicom's root, reproducible when ``uid_seed`` is given.

    Parameters
    ----------
    uid_seed : str or None
        ``None`` for a random UID; otherwise the UID is a hash of ``uid_seed`` and ``parts``
        (``pydicom.uid.generate_uid(entropy_srcs=...)``), so the same seed and parts always
        give the same UID and different parts give different UIDs.
    *parts : object
        What the UID identifies, e.g. ``("series",)`` or ``("sop", 12)``.
    """
    if uid_seed is None:
        return str(generate_uid())
    return str(generate_uid(entropy_srcs=[uid_seed, *(str(part) for part in parts)]))


def validated_uid(value: str, name: str) -> str:
    """Return ``value`` if it is a valid DICOM UID, else raise InvalidInputError naming ``name``."""
    if not isinstance(value, str) or len(value) > 64 or not RE_VALID_UID.match(value):
        raise InvalidInputError(f"{name} is not a valid DICOM UID: {value!r}", field=name)
    return value


def new_part10_dataset(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """An empty dataset with a Part-10 file meta header for explicit VR little endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    return dataset


def patient_identity(dataset: Dataset) -> PatientIdentity:
    """Patient ID, Patient's Name and Birth Date as the data set states them."""
    return PatientIdentity(
        patient_id=str(dataset.get("PatientID", "") or ""),
        name=str(dataset.get("PatientName", "") or ""),
        birth_date=str(dataset.get("PatientBirthDate", "") or ""),
    )
