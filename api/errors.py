"""Map every failure to a JSON :class:`~api.schemas.common.Problem` with the right status.

==========================================  ======  ========================
what                                        status  ``code``
==========================================  ======  ========================
``igrt`` InvalidInputError (bad file, ...)  422     invalid_input
``igrt`` ProcessingError                    422     processing_failed
request validation (form, body, query)      422     invalid_input
a body that cannot be parsed (JSON, form)   422     invalid_input
no or unknown bearer token                  401     unauthenticated
a role that may not do this                 403     forbidden
unknown id or route                         404     not_found
method not allowed                          405     method_not_allowed
duplicate (e.g. patient external id)        409     conflict
a file naming another patient               409     patient_mismatch
body over the upload limit                  413     payload_too_large
wrong content type                          415     unsupported_media_type
too many open real-time streams             429     too_many_streams
too many queued registrations (one token)   429     too_many_jobs
SQLite busy (a concurrent write; retry)     503     unavailable
heavy-work budget taken (uploads, ...)      503     busy
anything else (a bug)                       500     internal_error
==========================================  ======  ========================

Status codes live here and in the routes only; ``igrt`` knows nothing of HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.core.logging import REQUEST_ID
from api.schemas.common import FieldProblem, Problem
from api.work_budget import WorkBudgetExhaustedError
from igrt.errors import IgrtError, InvalidInputError, PatientMismatchError, ProcessingError

__all__ = [
    "PROBLEM_RESPONSES",
    "ApiError",
    "DatabaseInUseError",
    "install_error_handlers",
    "problem_response",
]

_LOG = logging.getLogger("api.errors")

_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie", "form"})


class ApiError(Exception):
    """An error the routes raise on purpose, with its status and the field at fault."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.code = code or _CODES.get(status, "error")
        self.headers = dict(headers or {})


def problem_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    field: str | None = None,
    errors: Sequence[FieldProblem] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response in the one shape every error has."""
    body = Problem(
        status=status,
        code=code or _CODES.get(status, "error"),
        detail=detail,
        field=field,
        errors=list(errors),
        request_id=REQUEST_ID.get(),
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


def _field_name(location: Sequence[Any]) -> str:
    parts = [str(part) for part in location]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or "body"


class DatabaseInUseError(RuntimeError):
    """Another service process holds the SQLite database (start-up refuses; not an HTTP error)."""


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem_response(
        exc.status, exc.detail, code=exc.code, field=exc.field, headers=exc.headers
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        FieldProblem(field=_field_name(error.get("loc", ())), message=str(error.get("msg", "")))
        for error in exc.errors()
    ]
    first = problems[0] if problems else FieldProblem(field="body", message="invalid request")
    return problem_response(
        422, f"{first.field}: {first.message}", field=first.field, errors=problems
    )


async def _igrt_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IgrtError)
    field = exc.field if isinstance(exc, InvalidInputError) else None
    status, code = 422, "invalid_input"
    if isinstance(exc, ProcessingError):
        code = "processing_failed"
    elif isinstance(exc, PatientMismatchError):
        # Not malformed input but a conflict with what is stored: the session's patient.
        status, code = 409, "patient_mismatch"
    errors = [FieldProblem(field=field, message=str(exc))] if field else []
    return problem_response(status, str(exc), code=code, field=field, errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400:
        # FastAPI and Starlette raise 400 only for a body they cannot parse (bytes that are not
        # UTF-8 JSON, a broken multipart form): invalid input like any other, so 422 naming it.
        problems = [FieldProblem(field="body", message=detail)]
        return problem_response(422, f"body: {detail}", field="body", errors=problems)
    return problem_response(exc.status_code, detail, headers=exc.headers)


async def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    # SQLite refuses a write whose read snapshot another connection has committed past; nothing
    # of this request was stored, so the client may simply send it again.
    if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
        _LOG.warning("database busy", extra={"error": type(exc.orig).__name__})
        response = problem_response(503, "the database is busy; nothing was stored, retry")
        response.headers["Retry-After"] = "1"
        return response
    return await _unexpected_error(request, exc)


async def _busy(request: Request, exc: Exception) -> JSONResponse:
    # Refused before any work: the process would otherwise run out of memory under the burst.
    assert isinstance(exc, WorkBudgetExhaustedError)
    _LOG.warning("heavy-work budget exhausted", extra={"what": exc.what, "limit": exc.limit})
    return problem_response(
        503, str(exc), code="busy", headers={"Retry-After": str(exc.retry_after_s)}
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    _LOG.error("unhandled error", exc_info=exc)
    return problem_response(500, "internal error; quote the request id when reporting it")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IgrtError, _igrt_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_busy)
    app.add_exception_handler(WorkBudgetExhaustedError, _busy)
    app.add_exception_handler(Exception, _unexpected_error)


def _response(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _response("Missing, unknown or revoked bearer token."),
    403: _response("The token's role may not do this."),
    422: _response("Invalid input; `field` names what to fix."),
}
"""Error responses every authenticated route documents (add 404/409/413/415 per route)."""


def problem(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """One more documented error response for a route's ``responses``."""
    return {status: _response(description)}
