"""Images for the review page: fluoroscopy frames as PNGs (see :mod:`api.previews`).

Registration review images come from ``/registrations/{id}/overlays/{plane}``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from api.core.config import API_PREFIX
from api.crud import get_or_404
from api.db.models import Upload
from api.deps import AnyRole, DbSession, ServiceDep
from api.errors import PROBLEM_RESPONSES, ApiError, problem

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["uploads"], responses=PROBLEM_RESPONSES)


@router.get(
    "/uploads/{upload_id}/frames/{frame_index}",
    operation_id="get_upload_frame",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The frame, attenuation bright."},
        304: {"description": "Unchanged since the ETag sent in If-None-Match."},
        **problem(404, "No such upload or frame."),
    },
)
def read_upload_frame(
    request: Request,
    principal: AnyRole,
    service: ServiceDep,
    db: DbSession,
    upload_id: str,
    frame_index: Annotated[int, Path(ge=0, le=1_000_000)],
) -> Response:
    """One fluoroscopy frame as an 8-bit PNG in the clip's fixed grey window, for display."""
    upload = get_or_404(db, Upload, upload_id, "upload", "upload_id")
    if frame_index >= upload.n_frames:
        raise ApiError(
            404,
            f"the upload has {upload.n_frames} frames (0 to {upload.n_frames - 1})",
            field="frame_index",
        )
    # Stored frames never change, but a signed-out browser must not show them from its cache:
    # every load asks again (no-cache) and an unchanged frame costs a 304 only.
    etag = f'"{upload.sequence_sha256[:32]}-{frame_index}"'
    headers = {"Cache-Control": "private, no-cache", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    png = service.previews.png(upload.sequence_path, frame_index)
    service.read_audit.record(
        principal, "upload", upload.id, session_id=upload.session_id, what="upload_frames"
    )
    return Response(png, media_type="image/png", headers=headers)
