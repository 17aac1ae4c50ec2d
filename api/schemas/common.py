"""Schemas shared by every route: the error body and the list envelope."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_OFFSET", "FieldProblem", "Problem"]

MAX_OFFSET = 1_000_000_000
"""Largest ``offset`` a list accepts: databases take 64-bit offsets, and a larger number
must be a 422 naming it, not the driver's overflow (a 500)."""


class FieldProblem(BaseModel):
    """One problem with one input field."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"field": "sad_mm", "message": "Input should be a finite number"}]
        }
    )

    field: str = Field(description="Dotted name of the field (form, body, query or path).")
    message: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """The body of every error response (4xx and 5xx)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": 422,
                    "code": "invalid_input",
                    "detail": "sad_mm must be a finite positive number, got nan",
                    "field": "sad_mm",
                    "errors": [{"field": "sad_mm", "message": "must be finite"}],
                    "request_id": "6f1c2d0e9a7b4c3d8e5f1a2b3c4d5e6f",
                }
            ]
        }
    )

    status: int = Field(description="The HTTP status code, repeated.")
    code: str = Field(
        description=(
            "Stable machine-readable code: invalid_input, processing_failed, not_found, "
            "conflict, unauthenticated, forbidden, payload_too_large, unsupported_media_type, "
            "method_not_allowed, internal_error; on the real-time streams also invalid_frame "
            "and too_many_streams."
        )
    )
    detail: str = Field(description="What went wrong, for a person.")
    field: str | None = Field(default=None, description="The offending field, when there is one.")
    errors: list[FieldProblem] = Field(
        default_factory=list, description="Every field problem found (validation errors)."
    )
    request_id: str | None = Field(default=None, description="Quote this when reporting it.")
