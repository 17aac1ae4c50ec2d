"""What a token may learn about itself."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.enums import RoleValues

__all__ = ["PrincipalPublic"]


class PrincipalPublic(BaseModel):
    """The calling token: id, name and role (never the token itself)."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "token_id": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
                    "name": "linac-3 console",
                    "role": "console",
                }
            ]
        },
    )

    token_id: str
    name: str = Field(description="Name given at `igrt token create --name`.")
    role: RoleValues
