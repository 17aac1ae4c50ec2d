"""Prometheus ``/metrics`` (needs a token unless ``IGRT_METRICS_PUBLIC=true``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from api.deps import BEARER, ServiceDep, get_principal
from api.errors import PROBLEM_RESPONSES
from api.metrics import CONTENT_TYPE

__all__ = ["router"]

router = APIRouter(tags=["operations"])


async def _metrics_access(
    request: Request,
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> None:
    if not service.settings.metrics_public:
        await get_principal(request, service, credentials, None)  # scrapers use tokens


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."},
        401: PROBLEM_RESPONSES[401],
    },
    dependencies=[Depends(_metrics_access)],
)
def metrics(service: ServiceDep) -> Response:
    """Request counts and latencies by route template, upload counts and bytes."""
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)
