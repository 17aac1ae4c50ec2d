"""Serving stored uploads back to clients."""

from __future__ import annotations

from fastapi.responses import FileResponse

from api.errors import ApiError
from api.service import Service

__all__ = ["stored_file_response"]


def stored_file_response(
    service: Service, stored_path: str, *, content_type: str, sha256: str, field: str
) -> FileResponse:
    """A stored file byte for byte, its SHA-256 as the ``ETag``; 404 naming ``field`` if gone."""
    path = service.store.path(stored_path)
    if not path.is_file():
        raise ApiError(404, "the stored file is missing", field=field)
    return FileResponse(path, media_type=content_type, headers={"ETag": f'"{sha256}"'})
