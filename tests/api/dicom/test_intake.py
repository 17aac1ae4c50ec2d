"""Intake of one instance without the network: refusals record nothing; names agree or not."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.db.models import AuditEvent, DicomInstance, DicomQuarantineItem
from api.dicom.filing import names_agree
from api.dicom.intake import IntakeOutcomeValues, Received, take_in
from api.dicom.objects import SourceRoleValues
from api.service import Service
from api.storage import FileStore
from igrt.errors import InvalidInputError
from tests.api.dicom.conftest import Clinic, rt_files

_PLAN_CLASS = "1.2.840.10008.5.1.4.1.1.481.5"


def _received(encoded: bytes, sop_class: str, sop_instance: str) -> Received:
    return Received(
        encoded=encoded,
        transfer_syntax_uid="1.2.840.10008.1.2",
        affected_sop_class_uid=sop_class,
        affected_sop_instance_uid=sop_instance,
        calling_ae="CTSIM",
        role=SourceRoleValues.PLANNING,
    )


@pytest.fixture
def service(clinic: Clinic) -> Service:
    return Service.from_settings(clinic.settings)


def _take(service: Service, received: Received) -> IntakeOutcomeValues:
    store = FileStore(service.settings.store_dir, service.settings.temp_dir / "dicom")
    store.prepare()
    return take_in(store, service.sessions, received, fraction_window=timedelta(hours=12)).outcome


def _counts(service: Service) -> tuple[int, int, int]:
    with service.sessions() as db:
        return tuple(  # type: ignore[return-value]
            int(db.scalar(select(func.count()).select_from(model)) or 0)
            for model in (DicomInstance, DicomQuarantineItem, AuditEvent)
        )


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "field"),
    [
        ("1.2.840.10008.5.1.4.1.1.481.3", None, "SOPClassUID"),
        (_PLAN_CLASS, "1.2.3.4", "SOPInstanceUID"),
    ],
)
def test_a_dataset_contradicting_its_request_is_refused(
    service: Service, shared_data: Path, sop_class: str, sop_instance: str | None, field: str
) -> None:
    import pydicom

    plan = rt_files(shared_data)["RP"]
    uid = str(pydicom.dcmread(plan, stop_before_pixels=True).SOPInstanceUID)
    with pytest.raises(InvalidInputError) as error:
        _take(service, _received(plan.read_bytes(), sop_class, sop_instance or uid))
    assert error.value.field == field
    assert _counts(service) == (0, 0, 0)


@pytest.mark.parametrize(
    "encoded", [b"", b"not dicom at all", b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff"]
)
def test_unreadable_bytes_are_refused(service: Service, encoded: bytes) -> None:
    with pytest.raises(InvalidInputError):
        _take(service, _received(encoded, _PLAN_CLASS, "1.2.3"))
    assert _counts(service) == (0, 0, 0)


@pytest.mark.shared_data
def test_a_filed_instance_has_one_audit_event(service: Service, shared_data: Path) -> None:
    import pydicom

    plan = rt_files(shared_data)["RP"]
    uid = str(pydicom.dcmread(plan, stop_before_pixels=True).SOPInstanceUID)
    received = _received(plan.read_bytes(), _PLAN_CLASS, uid)
    assert _take(service, received) is IntakeOutcomeValues.FILED
    assert _take(service, received) is IntakeOutcomeValues.DUPLICATE
    assert _counts(service) == (1, 0, 1)


@pytest.mark.parametrize(
    ("dicom_name", "record_name", "agree"),
    [
        ("DOE^JANE^Q^DR^", "Jane Doe", True),
        ("doe^jane", "JANE DOE", True),
        ("DOE^JOHN", "Jane Doe", False),
        ("DOE", "Jane Doe", False),
        ("", "Jane Doe", True),
        ("DOE^JANE", None, True),
        ("DOE^JANE=ドウ^ジェーン", "Jane Doe", True),
    ],
)
def test_names_agree_on_family_and_given_names(
    dicom_name: str, record_name: str | None, agree: bool
) -> None:
    assert names_agree(dicom_name, record_name) is agree
