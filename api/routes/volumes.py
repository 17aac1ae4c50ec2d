"""Planning CT and CBCT uploads: upload (any role), list, read, download the original file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.responses import FileResponse
from sqlalchemy import func, select

from api.audit import record_audit
from api.core.config import API_PREFIX
from api.crud import get_or_404, get_session
from api.db.models import VolumeUpload
from api.deps import AnyRole, DbSession, HeavyWork, MultipartContent, OriginalsReader, ServiceDep
from api.enums import VolumeFormatValues, VolumeKindValues
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.files import stored_file_response
from api.permissions import PermissionValues, check_permission
from api.schemas.volumes import VolumeUploadForm, VolumeUploadPublic, VolumeUploadsPublic
from api.storage import PayloadTooLargeError
from api.volumes import VOLUME_SUFFIXES, ingest_volume
from igrt.frame_of_reference import PatientPositionValues
from igrt.patient_identity import PatientIdentity

__all__ = ["ACCEPTED_VOLUME_CONTENT_TYPES", "router"]

router = APIRouter(prefix=API_PREFIX, tags=["volumes"], responses=PROBLEM_RESPONSES)

_OCTET = "application/octet-stream"
ACCEPTED_VOLUME_CONTENT_TYPES: dict[VolumeFormatValues, frozenset[str]] = {
    VolumeFormatValues.DICOM_ZIP: frozenset(
        {"application/zip", "application/x-zip-compressed", _OCTET}
    ),
    VolumeFormatValues.MHA: frozenset({_OCTET}),
    VolumeFormatValues.NRRD: frozenset({_OCTET}),
    VolumeFormatValues.NIFTI: frozenset({_OCTET, "application/gzip", "application/x-gzip"}),
}
"""Content types the ``file`` part may declare, per format (none declared = octet-stream)."""

# A download is served with the content type it was uploaded with: any of the accepted ones.
_DOWNLOAD_CONTENT = {
    content_type: {"schema": {"type": "string", "format": "binary"}}
    for content_type in sorted(set().union(*ACCEPTED_VOLUME_CONTENT_TYPES.values()))
}


def _public(upload: VolumeUpload) -> VolumeUploadPublic:
    return VolumeUploadPublic.model_validate(upload, from_attributes=True)


def get_volume_upload(db: DbSession, volume_id: str) -> VolumeUpload:
    """The volume upload, or 404 naming ``volume_id``."""
    return get_or_404(db, VolumeUpload, volume_id, "volume upload", "volume_id")


@router.post(
    "/sessions/{session_id}/uploads/volume",
    operation_id="upload_volume",
    status_code=201,
    responses={
        **problem(404, "No such session."),
        **problem(409, "The DICOM series names another patient than the session's."),
        **problem(413, "The file exceeds the upload limit."),
        **problem(415, "Not multipart/form-data, or a file part of the wrong content type."),
        **problem(503, "The service is busy (heavy-work budget); retry after Retry-After."),
    },
)
def upload_volume(
    principal: AnyRole,
    _: MultipartContent,
    _work: HeavyWork,
    service: ServiceDep,
    db: DbSession,
    session_id: str,
    file: Annotated[
        UploadFile,
        File(description="The volume: a zip of one DICOM series, or one MHA/NRRD/NIfTI file."),
    ],
    form: Annotated[VolumeUploadForm, Form()],
    response: Response,
) -> VolumeUploadPublic:
    """Store a planning CT or CBCT with its geometry (201 once it is safely on disk).

    The file is kept byte for byte (content-addressed by SHA-256) together with a canonical
    MetaImage that registrations read. A file whose content is not of the declared format is
    refused (422); DICOM slices naming another patient (Patient ID, or Patient's Name when both
    state one) are refused (409, both identities named); a file whose Patient Position
    contradicts the session's is refused (422); a file without one takes the session's. Consoles
    upload CBCTs only.
    """
    if form.kind is VolumeKindValues.PLANNING_CT:
        check_permission(principal, PermissionValues.UPLOAD_PLANNING_CT)
    session = get_session(db, session_id)
    content_type = (file.content_type or _OCTET).split(";", 1)[0].strip().lower()
    accepted = ACCEPTED_VOLUME_CONTENT_TYPES[form.format]
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
    with service.store.staging(VOLUME_SUFFIXES[form.format]) as staged:
        try:
            size = service.store.copy_to_staging(
                file.file, staged, limit_bytes=settings.max_upload_bytes
            )
        except PayloadTooLargeError as exc:
            raise ApiError(413, str(exc), field="file") from exc
        if size == 0:
            raise ApiError(422, "the file is empty", field="file")
        ingested = ingest_volume(
            service.store,
            service.volume_limits,
            staged,
            form.format,
            session_position=PatientPositionValues(session.patient_position),
            patient=patient,
        )
    upload = VolumeUpload(
        session_id=session.id,
        kind=form.kind.value,
        format=form.format.value,
        content_type=content_type,
        filename=file.filename[-255:] if file.filename else None,
        size_bytes=ingested.original.size_bytes,
        sha256=ingested.original.sha256,
        stored_path=ingested.original.relative_path,
        volume_sha256=ingested.volume_file.sha256,
        volume_path=ingested.volume_file.relative_path,
        geometry=ingested.geometry,
        created_by=principal.token_id,
    )
    db.add(upload)
    db.flush()
    record_audit(
        db,
        principal,
        "volume.create",
        "volume_upload",
        upload.id,
        {
            "session_id": session.id,
            "kind": upload.kind,
            "format": upload.format,
            "sha256": upload.sha256,
        },
    )
    db.commit()
    service.metrics.uploads.labels(upload.kind, upload.format).inc()
    service.metrics.upload_bytes.inc(upload.size_bytes)
    response.headers["Location"] = f"{API_PREFIX}/volumes/{upload.id}"
    return _public(upload)


@router.get(
    "/sessions/{session_id}/volumes",
    operation_id="list_volume_uploads",
    responses=problem(404, "No such session."),
)
def list_volume_uploads(principal: AnyRole, db: DbSession, session_id: str) -> VolumeUploadsPublic:
    """A session's planning CT and CBCT uploads, oldest first."""
    session = get_session(db, session_id)
    query = select(VolumeUpload).where(VolumeUpload.session_id == session.id)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(VolumeUpload.created_at, VolumeUpload.id))
    return VolumeUploadsPublic(data=[_public(row) for row in rows], count=count)


@router.get(
    "/volumes/{volume_id}",
    operation_id="get_volume_upload",
    responses=problem(404, "No such volume upload."),
)
def read_volume_upload(principal: AnyRole, db: DbSession, volume_id: str) -> VolumeUploadPublic:
    """One volume upload's description and geometry."""
    return _public(get_volume_upload(db, volume_id))


@router.get(
    "/volumes/{volume_id}/file",
    operation_id="download_volume_upload",
    response_class=FileResponse,
    responses={
        200: {"content": _DOWNLOAD_CONTENT, "description": "The file exactly as uploaded."},
        **problem(404, "No such volume upload."),
    },
)
def download_volume_upload(
    principal: OriginalsReader, service: ServiceDep, db: DbSession, volume_id: str
) -> FileResponse:
    """The uploaded file, byte for byte (``ETag`` is its SHA-256)."""
    upload = get_volume_upload(db, volume_id)
    service.read_audit.record(
        principal, "volume", upload.id, session_id=upload.session_id, what="volume_file"
    )
    return stored_file_response(
        service,
        upload.stored_path,
        content_type=upload.content_type,
        sha256=upload.sha256,
        field="volume_id",
    )
