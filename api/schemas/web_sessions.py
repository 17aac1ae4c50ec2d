"""The review page's sign-in: what the browser sends and what it learns."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.enums import RoleValues

__all__ = ["WebSessionCreate", "WebSessionPublic"]


class WebSessionCreate(BaseModel):
    """Sign in with an API token (made with ``igrt token create``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"token": "igrt_3q2-7wEXAMPLEonlyEXAMPLEonlyEXAMPLEonly"}]},
    )

    token: str = Field(min_length=1, max_length=200, description="The therapist's API token.")


class WebSessionPublic(BaseModel):
    """The signed-in user and the CSRF token to send with every change."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token_id": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
                    "name": "A. Therapist",
                    "role": "therapist",
                    "csrf_token": "9f2c0b5e4a7d41c3b8e6f0a1d2c3b4a5" * 2,
                    "expires_at": "2026-11-28T21:40:00Z",
                }
            ]
        },
    )

    token_id: str
    name: str
    role: RoleValues
    csrf_token: str = Field(description="Send as the `X-CSRF-Token` header on POST and DELETE.")
    expires_at: datetime = Field(description="When the sign-in ends (UTC).")
