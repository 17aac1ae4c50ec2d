"""Whose images these are: the patient identity a file states, compared with the expected one.

Images filed under the wrong patient are a patient-safety hazard (a plan, a motion decision or a
couch correction computed from someone else's anatomy). Every DICOM file states Patient ID
(0010,0020), and usually Patient's Name (0010,0010) and Birth Date (0010,0030); a file is
accepted for a patient only if every attribute that *both* sides state agrees.

Names are compared as DICOM person names: case, the ``^`` component separators, commas and
extra spaces are ignored, and the order of the components does not matter (``Doe^Jane`` equals
``JANE DOE``); a name missing on either side is not compared.

The messages of :class:`~igrt.errors.PatientMismatchError` name both identities so that the
person who sent the file can see the mix-up; they must never be logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from igrt.errors import PatientMismatchError

__all__ = ["PatientIdentity", "check_same_patient"]


def _name_tokens(name: str) -> tuple[str, ...]:
    return tuple(sorted(re.split(r"[\s^,=]+", name.upper().strip(" ^,="))))


@dataclass(frozen=True)
class PatientIdentity:
    """A patient's identifying attributes as one source states them (empty = not stated).

    Attributes
    ----------
    patient_id : str
        Patient ID, e.g. the hospital's medical record number.
    name : str
        Patient's Name in DICOM PN form (``Family^Given``) or free text.
    birth_date : str
        Birth date ``YYYYMMDD``.
    """

    patient_id: str = ""
    name: str = ""
    birth_date: str = ""

    def __post_init__(self) -> None:
        for attribute in ("patient_id", "name", "birth_date"):
            object.__setattr__(self, attribute, str(getattr(self, attribute) or "").strip())

    @property
    def is_empty(self) -> bool:
        """``True`` when nothing identifying is stated."""
        return not (self.patient_id or self.name or self.birth_date)

    def describe(self) -> str:
        """``ID 'x', name 'y', born z`` with the attributes stated."""
        parts = [f"ID {self.patient_id!r}"] if self.patient_id else []
        if self.name:
            parts.append(f"name {self.name!r}")
        if self.birth_date:
            parts.append(f"born {self.birth_date}")
        return ", ".join(parts) or "no identity"

    def disagreements(self, other: PatientIdentity) -> list[str]:
        """Names of the attributes both state and that differ (empty when they agree)."""
        found = []
        if self.patient_id and other.patient_id and self.patient_id != other.patient_id:
            found.append("Patient ID")
        if self.name and other.name and _name_tokens(self.name) != _name_tokens(other.name):
            found.append("Patient's Name")
        if self.birth_date and other.birth_date and self.birth_date != other.birth_date:
            found.append("Patient's Birth Date")
        return found


def check_same_patient(
    stated: PatientIdentity,
    expected: PatientIdentity,
    *,
    what: str = "the file",
    field: str = "file",
) -> None:
    """Refuse ``stated`` when it disagrees with ``expected`` on any attribute both state.

    Parameters
    ----------
    stated : PatientIdentity
        What the file says.
    expected : PatientIdentity
        Whom the file is filed under.
    what : str, optional
        How to name the source in the message.
    field : str, optional
        The error's ``field``.

    Raises
    ------
    PatientMismatchError
        Naming both identities and the attributes that differ.

    Examples
    --------
    >>> check_same_patient(PatientIdentity("MRN1", "Doe^Jane"), PatientIdentity("MRN1", "JANE DOE"))
    >>> check_same_patient(PatientIdentity("MRN2"), PatientIdentity("MRN1"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    igrt.errors.PatientMismatchError: ...
    """
    differing = stated.disagreements(expected)
    if differing:
        raise PatientMismatchError(
            f"{what} belongs to another patient ({', '.join(differing)} differ): it states "
            f"{stated.describe()}, but it was filed under {expected.describe()}",
            field=field,
        )
