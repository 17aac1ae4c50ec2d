"""Patient identities compared attribute by attribute, names as DICOM person names."""

from __future__ import annotations

import pytest

from igrt.errors import PatientMismatchError
from igrt.patient_identity import PatientIdentity, check_same_patient


@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        (PatientIdentity("MRN1", "Doe^Jane", "19600101"), PatientIdentity("MRN1", "DOE^JANE")),
        (PatientIdentity("MRN1", "Doe^Jane"), PatientIdentity("MRN1", "Jane Doe")),
        (PatientIdentity("MRN1", "Doe^Jane^^^"), PatientIdentity("MRN1", " doe, jane ")),
        (PatientIdentity("MRN1"), PatientIdentity("MRN1", "Doe^Jane")),
        (PatientIdentity(), PatientIdentity("MRN1", "Doe^Jane")),
    ],
)
def test_identities_that_agree_on_what_both_state(
    stated: PatientIdentity, expected: PatientIdentity
) -> None:
    check_same_patient(stated, expected)


@pytest.mark.parametrize(
    ("stated", "differing"),
    [
        (PatientIdentity("MRN2", "Doe^Jane"), "Patient ID"),
        (PatientIdentity("MRN1", "Doe^John"), "Patient's Name"),
        (PatientIdentity("MRN1", "Doe^Jane", "19700101"), "Patient's Birth Date"),
    ],
)
def test_a_disagreement_names_both_identities(stated: PatientIdentity, differing: str) -> None:
    expected = PatientIdentity("MRN1", "Doe^Jane", "19600101")
    with pytest.raises(PatientMismatchError) as caught:
        check_same_patient(stated, expected, what="the CBCT")
    message = str(caught.value)
    assert differing in message
    assert stated.describe() in message
    assert expected.describe() in message
    assert message.startswith("the CBCT belongs to another patient")
    assert caught.value.field == "file"
