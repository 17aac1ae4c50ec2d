"""Builds the FastAPI application.

Until the service issue lands this is the minimal app the README's run command starts: a health
endpoint that reports the version, so a console integrator can check connectivity.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, Field

import igrt

__all__ = ["Health", "create_app"]


class Health(BaseModel):
    """Liveness report."""

    status: str = Field(examples=["ok"])
    version: str = Field(examples=[igrt.__version__])


def create_app() -> FastAPI:
    """Create the application with every router mounted."""
    app = FastAPI(
        title="igrt",
        version=igrt.__version__,
        summary="Diaphragm tracking, breathing-motion assessment and registration for liver SBRT.",
    )

    @app.get("/healthz", operation_id="health", tags=["operations"])
    def health() -> Health:
        """Liveness: the process is up and answering."""
        return Health(status="ok", version=igrt.__version__)

    return app
