"""Liveness and readiness reports."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

import igrt

__all__ = ["Health", "Readiness", "ReadinessCheck"]


class Health(BaseModel):
    """Liveness report."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ok", "version": igrt.__version__}]}
    )

    status: str = Field(examples=["ok"])
    version: str = Field(examples=[igrt.__version__])


class ReadinessCheck(BaseModel):
    """One dependency the service needs to answer requests."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "database", "ok": True, "detail": "at 0001"}]}
    )

    name: str = Field(examples=["database"])
    ok: bool
    detail: str = Field(examples=["migrations at head 0001"])


class Readiness(BaseModel):
    """Readiness report: 200 when every check passes, 503 otherwise."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "checks": [
                        {"name": "database", "ok": True, "detail": "migrations at head 0001"},
                        {"name": "data_dir", "ok": True, "detail": "writable"},
                    ],
                }
            ]
        }
    )

    status: str = Field(examples=["ready", "not_ready"])
    checks: list[ReadinessCheck]
