"""What each role may do beyond reading and writing the sessions it is given (least privilege).

A treatment console needs its sessions, their frames and their results: it streams, uploads
fluoroscopy and CBCTs, and reads assessments and registrations by id. It does not need to list or
search every patient, download original files (which carry the patient's identity), or upload a
planning CT (a planning department's act). People (therapists, physicists) do all of that.

The table :data:`ROLE_PERMISSIONS` is the one place to change: a new role is one entry. Routes
ask for a permission with :func:`api.deps.require_permission` (403 otherwise).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from api.enums import RoleValues
from api.errors import ApiError
from api.security import Principal

__all__ = ["ROLE_PERMISSIONS", "PermissionValues", "check_permission", "has_permission"]


class PermissionValues(enum.StrEnum):
    """Actions beyond a session's own data."""

    READ_PATIENTS = "read_patients"
    """List, search and read patients, and the worklist of every patient's sessions."""

    DOWNLOAD_ORIGINALS = "download_originals"
    """Download uploaded files byte for byte (DICOM headers carry the patient's identity)."""

    UPLOAD_PLANNING_CT = "upload_planning_ct"
    """Upload a planning CT."""

    DOWNLOAD_REPORTS = "download_reports"
    """Download printable reports (they carry the patient's name and ID on every page)."""

    RESOLVE_QUARANTINE = "resolve_quarantine"
    """Release a quarantined DICOM series to a patient's session, or discard it (a physicist's
    act: attaching images to a patient is the one step the receiver refused to take)."""


_PHYSICIST_ONLY = frozenset({PermissionValues.RESOLVE_QUARANTINE})
_PEOPLE = frozenset(PermissionValues) - _PHYSICIST_ONLY

ROLE_PERMISSIONS: Mapping[RoleValues, frozenset[PermissionValues]] = {
    RoleValues.CONSOLE: frozenset(),
    RoleValues.THERAPIST: _PEOPLE,
    RoleValues.PHYSICIST: _PEOPLE | _PHYSICIST_ONLY,
    RoleValues.PHYSICIAN: _PEOPLE,
}
"""Permissions of each role (a role missing here has none)."""


def has_permission(principal: Principal, permission: PermissionValues) -> bool:
    """Whether the caller's role grants ``permission``."""
    return permission in ROLE_PERMISSIONS.get(principal.role, frozenset())


def check_permission(principal: Principal, permission: PermissionValues) -> None:
    """403 unless the caller's role grants ``permission``."""
    if not has_permission(principal, permission):
        raise ApiError(
            403, f"the {principal.role.value} role may not {permission.value.replace('_', ' ')}"
        )
