"""Fluoroscopy uploads: upload (any role), list, read, download the original file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy import func, select

from api.audit import record_audit
from api.core.config import API_PREFIX
from api.crud import get_session, get_upload
from api.db.models import Upload
from api.deps import AnyRole, DbSession, HeavyWork, MultipartContent, OriginalsReader, ServiceDep
from api.enums import UploadFormatValues, UploadKindValues
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.files import stored_file_response
from api.ingest import SUFFIXES, ingest_fluoroscopy
from api.schemas.uploads import FluoroscopyUploadForm, UploadPublic, UploadsPublic
from api.storage import PayloadTooLargeError
from igrt.frame_of_reference import PatientPositionValues
from igrt.patient_identity import PatientIdentity

__all__ = ["ACCEPTED_CONTENT_TYPES", "router"]

router = APIRouter(prefix=API_PREFIX, tags=["uploads"], responses=PROBLEM_RESPONSES)

_OCTET = "application/octet-stream"
ACCEPTED_CONTENT_TYPES: dict[UploadFormatValues, frozenset[str]] = {
    UploadFormatValues.DICOM: frozenset({"application/dicom", _OCTET}),
    UploadFormatValues.MHA: frozenset({_OCTET}),
    UploadFormatValues.RAW: frozenset({_OCTET}),
    UploadFormatValues.ZIP: frozenset({"application/zip", "application/x-zip-compressed", _OCTET}),
}
"""Content types the ``file`` part may declare, per format (none declared = octet-stream)."""

# A download is served with the content type it was uploaded with: any of the accepted ones.
_DOWNLOAD_CONTENT = {
    content_type: {"schema": {"type": "string", "format": "binary"}}
    for content_type in sorted(set().union(*ACCEPTED_CONTENT_TYPES.values()))
}


def _public(upload: Upload) -> UploadPublic:
    return UploadPublic.model_validate(upload, from_attributes=True)


@router.post(
    "/sessions/{session_id}/uploads/fluoroscopy",
    operation_id="upload_fluoroscopy",
    status_code=201,
    responses={
        **problem(404, "No such session."),
        **problem(409, "The DICOM file names another patient than the session's."),
        **problem(413, "The file exceeds the upload limit."),
        **problem(415, "Not multipart/form-data, or a file part of the wrong content type."),
        **problem(503, "The service is busy (heavy-work budget); retry after Retry-After."),
    },
)
def upload_fluoroscopy(
    principal: AnyRole,
    _: MultipartContent,
    _work: HeavyWork,
    service: ServiceDep,
    db: DbSession,
    session_id: str,
    file: Annotated[
        UploadFile, File(description="The fluoroscopy file (DICOM, MHA, raw uint16 or zip).")
    ],
    form: Annotated[FluoroscopyUploadForm, Form()],
    response: Response,
) -> UploadPublic:
    """Store a kV fluoroscopy sequence with its geometry (201 once it is safely on disk).

    The file is kept byte for byte (content-addressed by SHA-256) together with a canonical
    MetaImage of the frames, geometry and frame times that later analyses read. A file whose
    content is not of the declared format is refused (422); a DICOM file naming another patient
    (Patient ID, or Patient's Name when both state one) is refused (409, both identities named),
    one whose Patient Position contradicts the session's too (422).
    """
    session = get_session(db, session_id)
    content_type = (file.content_type or _OCTET).split(";", 1)[0].strip().lower()
    accepted = ACCEPTED_CONTENT_TYPES[form.format]
    if content_type not in accepted:
        raise ApiError(
            415,
            f"a {form.format.value} file must be sent as {' or '.join(sorted(accepted))}, "
            f"not {content_type}",
            field="file",
        )
    patient = PatientIdentity(session.patient.external_id, session.patient.name or "")
    # End the read transaction before storing and decoding (up to seconds): SQLite refuses the
    # write of a transaction whose snapshot predates another connection's commit ("database is
    # locked", a 500), and streams, jobs and other requests commit all the time.
    db.commit()
    settings = service.settings
    with service.store.staging(SUFFIXES[form.format]) as staged:
        try:
            size = service.store.copy_to_staging(
                file.file, staged, limit_bytes=settings.max_upload_bytes
            )
        except PayloadTooLargeError as exc:
            raise ApiError(413, str(exc), field="file") from exc
        if size == 0:
            raise ApiError(422, "the file is empty", field="file")
        ingested = ingest_fluoroscopy(
            service.store,
            service.limits,
            staged,
            form,
            patient_position=PatientPositionValues(session.patient_position),
            patient=patient,
        )
    upload = Upload(
        session_id=session.id,
        kind=UploadKindValues.FLUOROSCOPY.value,
        format=form.format.value,
        content_type=content_type,
        filename=file.filename[-255:] if file.filename else None,
        **ingested.upload_columns(),
        created_by=principal.token_id,
    )
    db.add(upload)
    db.flush()
    record_audit(
        db,
        principal,
        "upload.create",
        "upload",
        upload.id,
        {"session_id": session.id, "format": upload.format, "sha256": upload.sha256},
    )
    db.commit()
    service.metrics.uploads.labels(upload.kind, upload.format).inc()
    service.metrics.upload_bytes.inc(upload.size_bytes)
    response.headers["Location"] = f"{API_PREFIX}/uploads/{upload.id}"
    return _public(upload)


@router.get(
    "/sessions/{session_id}/uploads",
    operation_id="list_uploads",
    responses=problem(404, "No such session."),
)
def list_uploads(principal: AnyRole, db: DbSession, session_id: str) -> UploadsPublic:
    """A session's uploads, oldest first."""
    session = get_session(db, session_id)
    query = select(Upload).where(Upload.session_id == session.id)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(Upload.created_at, Upload.id))
    return UploadsPublic(data=[_public(row) for row in rows], count=count)


@router.get(
    "/uploads/{upload_id}",
    operation_id="get_upload",
    responses=problem(404, "No such upload."),
)
def read_upload(principal: AnyRole, db: DbSession, upload_id: str) -> UploadPublic:
    """One upload's description."""
    return _public(get_upload(db, upload_id))


@router.get(
    "/uploads/{upload_id}/file",
    operation_id="download_upload",
    response_class=FileResponse,
    responses={
        200: {"content": _DOWNLOAD_CONTENT, "description": "The file exactly as uploaded."},
        **problem(404, "No such upload."),
    },
)
def download_upload(
    principal: OriginalsReader, service: ServiceDep, db: DbSession, upload_id: str
) -> FileResponse:
    """The uploaded file, byte for byte (``ETag`` is its SHA-256)."""
    upload = get_upload(db, upload_id)
    service.read_audit.record(
        principal, "upload", upload.id, session_id=upload.session_id, what="upload_file"
    )
    return stored_file_response(
        service,
        upload.stored_path,
        content_type=upload.content_type,
        sha256=upload.sha256,
        field="upload_id",
    )
