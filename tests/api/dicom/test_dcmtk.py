"""The receiver against DCMTK's ``echoscu`` and ``storescu`` (Debian's dcmtk) on 127.0.0.1."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.db.models import DicomInstance, DicomQuarantineItem
from api.dicom.receiver import DicomReceiver
from tests.api.dicom.conftest import Clinic, identify, rt_files

pytestmark = pytest.mark.shared_data


def _run(tool: Path, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool), *map(str, arguments)], capture_output=True, text=True, timeout=300, check=False
    )


def _storescu(
    dcmtk: Path, port: int, files: Sequence[Path], *, calling: str = "CTSIM", j2k: bool = False
) -> subprocess.CompletedProcess[str]:
    # -R proposes only the files' own SOP classes; -xv adds JPEG 2000 lossless to the
    # uncompressed transfer syntaxes (DCMTK cannot transcode JPEG 2000, so it sends as stored).
    options = ["-R", "-xv"] if j2k else ["-R"]
    return _run(
        dcmtk / "storescu",
        *options,
        "-aet",
        calling,
        "-aec",
        "IGRT",
        "127.0.0.1",
        str(port),
        *files,
    )


def _rows(receiver: DicomReceiver, model: Any) -> list[Any]:
    with receiver.service.sessions() as db:
        return list(db.scalars(select(model)))


def test_echoscu_from_an_allowed_ae_and_refusal_of_another(
    receiver: DicomReceiver, dcmtk: Path
) -> None:
    ok = _run(dcmtk / "echoscu", "-aet", "XVI", "-aec", "IGRT", "127.0.0.1", receiver.port)
    assert ok.returncode == 0, ok.stderr
    refused = _run(
        dcmtk / "echoscu", "-aet", "INTRUDER", "-aec", "IGRT", "127.0.0.1", receiver.port
    )
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr


def test_storescu_sends_the_j2k_ct_series_and_resends_it_idempotently(
    receiver: DicomReceiver, clinic: Clinic, dcmtk: Path, identified_ct: list[Path]
) -> None:
    sent = _storescu(dcmtk, receiver.port, identified_ct, j2k=True)
    assert sent.returncode == 0, sent.stderr
    again = _storescu(dcmtk, receiver.port, identified_ct, j2k=True)
    assert again.returncode == 0, again.stderr
    rows = _rows(receiver, DicomInstance)
    assert len(rows) == len(identified_ct)
    assert {row.transfer_syntax_uid for row in rows} == {"1.2.840.10008.1.2.4.90"}
    assert {row.session_id for row in rows} == {clinic.rt_simulation}
    assert _rows(receiver, DicomQuarantineItem) == []
    assert receiver.processor.wait_idle(120)
    assert {row.processing_status for row in _rows(receiver, DicomInstance)} == {"done"}


def test_storescu_sends_rt_plan_structures_and_image(
    receiver: DicomReceiver, clinic: Clinic, dcmtk: Path, shared_data: Path
) -> None:
    files = rt_files(shared_data)
    planning = _storescu(dcmtk, receiver.port, [files["RP"], files["RS"]])
    assert planning.returncode == 0, planning.stderr
    treatment = _storescu(dcmtk, receiver.port, [files["RI"]], calling="XVI")
    assert treatment.returncode == 0, treatment.stderr
    sessions = {row.kind: row.session_id for row in _rows(receiver, DicomInstance)}
    assert sessions == {
        "rt_plan": clinic.rt_simulation,
        "rt_struct": clinic.rt_simulation,
        "rt_image": clinic.rt_fraction,
    }


def test_storescu_of_an_unknown_patient_lands_in_the_quarantine(
    receiver: DicomReceiver, dcmtk: Path, identified_ct: list[Path], tmp_path: Path
) -> None:
    stranger = identify(identified_ct[0], tmp_path / "stranger.dcm", PatientID="MRN-NOBODY")
    sent = _storescu(dcmtk, receiver.port, [stranger], j2k=True)
    assert sent.returncode == 0, sent.stderr
    (held,) = _rows(receiver, DicomQuarantineItem)
    assert (held.reason_code, held.patient_id_in_file) == ("unknown_patient", "MRN-NOBODY")
    assert _rows(receiver, DicomInstance) == []


def test_storescu_from_a_non_allowed_ae_stores_nothing(
    receiver: DicomReceiver, dcmtk: Path, shared_data: Path
) -> None:
    sent = _storescu(dcmtk, receiver.port, [rt_files(shared_data)["RP"]], calling="INTRUDER")
    assert sent.returncode != 0
    assert "Calling AE Title Not Recognized" in sent.stderr
    assert _rows(receiver, DicomInstance) == []
    assert _rows(receiver, DicomQuarantineItem) == []
