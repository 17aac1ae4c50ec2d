"""The calling token (``/me``), so a console can check its credentials."""

from __future__ import annotations

from fastapi import APIRouter

from api.core.config import API_PREFIX
from api.deps import AnyRole
from api.errors import PROBLEM_RESPONSES
from api.schemas.tokens import PrincipalPublic

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["tokens"], responses=PROBLEM_RESPONSES)


@router.get("/me", operation_id="who_am_i")
def who_am_i(principal: AnyRole) -> PrincipalPublic:
    """The token's id, name and role."""
    return PrincipalPublic.model_validate(principal)
