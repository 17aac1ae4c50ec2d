"""Where a CBCT sits on the planning CT before it is registered: shared frame or isocentre.

A CBCT reconstructed in the planning CT's Frame of Reference (same Frame of Reference UID: the
simulator's default, or a CBCT a system has already moved into the plan's frame) is registered
as it is. A linac's CBCT comes in the treatment room's own frame (its own Frame of Reference
UID), so its coordinates mean nothing on the planning CT until the two frames are related: the
couch places the plan's treatment isocentre at the machine isocentre, so the CBCT is placed by
making its machine isocentre coincide with the plan's isocentre. Both frames are DICOM patient
LPS of the same patient in the same patient position, so their axes are parallel and the
placement is a translation; whatever rotation the patient has on the couch today is the setup
error the registration then measures.

``planning_from_cbct_frame`` (4x4) maps a point in the CBCT's own coordinates (LPS mm) to the
planning-CT coordinates (LPS mm) at which it sits once placed:
``p_planning = p_cbct - cbct_isocentre + planning_isocentre``. The registration's
``cbct_from_ct`` then maps a planning-CT point to the *placed* CBCT (planning frame), and a
point in the CBCT's own coordinates goes to the planning-CT anatomy imaged there by
``ct_from_cbct_frame = ct_from_cbct @ planning_from_cbct_frame`` (the DICOM REG's matrix).

The machine isocentre in the CBCT's coordinates
-----------------------------------------------
It is an explicit input, ``cbct_isocentre_lps_mm``, with the default
:data:`DEFAULT_CBCT_ISOCENTRE_LPS_MM` = (0, 0, 0): the CBCT is reconstructed about the centre of
rotation, which is the origin of the reconstruction's coordinates (RTK's geometry: "isocenter is
at (0,0,0)", RTKConsortium/RTK issue 497; XVI and OBI/TrueBeam reconstructions centred on the
machine isocentre; this project's room system, :mod:`igrt.geometry`, has its origin there too).
Not verified here against a vendor's exported CBCT series (none is in the shared data, and the
vendor readers of :mod:`igrt.imageio` read projections, not reconstructions): a site whose
system exports another convention gives the isocentre explicitly.
The result records which was used (``cbct_isocentre_source``).

Without the plan's isocentre (in planning-CT LPS mm) a CBCT in another frame cannot be placed:
:class:`~registration.errors.IsocentreRequiredError`, never a guess such as aligning centres.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from igrt.errors import InvalidInputError
from igrt.volume import Volume
from registration.errors import IsocentreRequiredError

__all__ = [
    "DEFAULT_CBCT_ISOCENTRE_LPS_MM",
    "CbctPlacement",
    "FrameRelationValues",
    "place_cbct",
]

FloatArray = npt.NDArray[np.float64]

DEFAULT_CBCT_ISOCENTRE_LPS_MM: tuple[float, float, float] = (0.0, 0.0, 0.0)
"""The machine isocentre in a room-frame CBCT's own LPS coordinates, mm, when none is given:
the origin of the reconstruction (see the module docstring for the provenance)."""

DEFAULT_CBCT_ISOCENTRE_SOURCE = (
    "default: the CBCT's LPS origin (0, 0, 0), where a linac reconstruction centred on the "
    "machine isocentre places it"
)


class FrameRelationValues(enum.Enum):
    """How the CBCT's coordinates relate to the planning CT's."""

    SHARED = "shared frame"
    """Both carry the same Frame of Reference UID: the CBCT is registered as it is."""

    ASSUMED_SHARED = "assumed shared"
    """One or both carry no Frame of Reference UID (MHA, NIfTI) and no CBCT isocentre was given:
    the CBCT's coordinates are taken as planning-CT coordinates (as before this module)."""

    PLACED_BY_ISOCENTRE = "placed by the treatment isocentre"
    """Another frame: the CBCT's machine isocentre is put on the plan's isocentre."""


@dataclass(frozen=True, eq=False)
class CbctPlacement:
    """The frames of a registration and how the CBCT was placed on the planning CT.

    Parameters
    ----------
    relation : FrameRelationValues
        Shared, assumed shared, or placed by the isocentre.
    planning_frame_of_reference_uid, cbct_frame_of_reference_uid : str or None
        The two images' Frame of Reference UIDs as they came (``None`` when not stated).
    planning_from_cbct_frame : numpy.ndarray
        4x4: a CBCT point in its own coordinates (LPS mm) to the planning-CT coordinates where
        it sits once placed (identity unless placed by the isocentre).
    planning_isocentre_lps_mm : numpy.ndarray or None
        The plan's treatment isocentre, planning-CT LPS mm (placement only).
    cbct_isocentre_lps_mm : numpy.ndarray or None
        The machine isocentre in the CBCT's own LPS mm (placement only).
    cbct_isocentre_source : str or None
        ``"given"`` or the default's description (placement only).
    """

    relation: FrameRelationValues
    planning_frame_of_reference_uid: str | None
    cbct_frame_of_reference_uid: str | None
    planning_from_cbct_frame: FloatArray
    planning_isocentre_lps_mm: FloatArray | None = None
    cbct_isocentre_lps_mm: FloatArray | None = None
    cbct_isocentre_source: str | None = None

    @property
    def placed(self) -> bool:
        """Whether the CBCT was moved onto the planning CT by the isocentre."""
        return self.relation is FrameRelationValues.PLACED_BY_ISOCENTRE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of both frames and the placement."""
        return {
            "relation": self.relation.value,
            "planning_ct_frame_of_reference_uid": self.planning_frame_of_reference_uid,
            "cbct_frame_of_reference_uid": self.cbct_frame_of_reference_uid,
            "planning_isocentre_lps_mm": _list_or_none(self.planning_isocentre_lps_mm),
            "cbct_isocentre_lps_mm": _list_or_none(self.cbct_isocentre_lps_mm),
            "cbct_isocentre_source": self.cbct_isocentre_source,
            "planning_from_cbct_frame": [
                [float(v) for v in row] for row in self.planning_from_cbct_frame
            ],
            "convention": "planning_from_cbct_frame maps a point in the CBCT's own LPS "
            "coordinates to the planning-CT LPS coordinates where it sits once placed; "
            "cbct_from_ct maps planning-CT anatomy to the placed CBCT (planning frame); "
            "ct_from_cbct_frame = ct_from_cbct @ planning_from_cbct_frame",
        }


def _list_or_none(values: FloatArray | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def _point(value: npt.ArrayLike, field: str) -> FloatArray:
    try:
        point = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{field}: {error}", field=field) from None
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise InvalidInputError(f"{field} must be 3 finite numbers", field=field)
    return point


def place_cbct(
    planning_ct: Volume,
    cbct: Volume,
    *,
    isocentre_lps_mm: npt.ArrayLike | None,
    cbct_isocentre_lps_mm: npt.ArrayLike | None = None,
) -> tuple[Volume, CbctPlacement]:
    """The CBCT in planning-CT coordinates, and how it got there.

    Parameters
    ----------
    planning_ct, cbct : igrt.volume.Volume
        The two images as read (their Frame of Reference UIDs decide).
    isocentre_lps_mm : array_like of float or None
        The plan's treatment isocentre, planning-CT LPS mm; needed when the frames differ.
    cbct_isocentre_lps_mm : array_like of float, optional
        The machine isocentre in the CBCT's own LPS mm. When the frames differ it defaults to
        :data:`DEFAULT_CBCT_ISOCENTRE_LPS_MM`; given for a CBCT without a Frame of Reference
        UID it states that the CBCT is in its own frame (placed by the isocentre); refused for
        a CBCT that shares the planning CT's frame (there is nothing to place).

    Returns
    -------
    tuple of (igrt.volume.Volume, CbctPlacement)
        The CBCT with its origin moved into planning-CT coordinates and the planning CT's Frame
        of Reference UID (the same object when nothing moves), and the record.

    Raises
    ------
    IsocentreRequiredError
        The CBCT is in another frame and no treatment isocentre was given.
    InvalidInputError
        A point that is not 3 finite numbers, or a CBCT isocentre for a shared frame.
    """
    ct_uid = planning_ct.frame_of_reference_uid or None
    cbct_uid = cbct.frame_of_reference_uid or None
    identity = np.eye(4)
    if ct_uid is not None and ct_uid == cbct_uid:
        if cbct_isocentre_lps_mm is not None:
            raise InvalidInputError(
                f"the CBCT shares the planning CT's Frame of Reference ({ct_uid}): it is not "
                "placed by an isocentre, so cbct_isocentre_lps_mm does not apply",
                field="cbct_isocentre_lps_mm",
            )
        return cbct, CbctPlacement(FrameRelationValues.SHARED, ct_uid, cbct_uid, identity)
    other_frame = ct_uid is not None and cbct_uid is not None
    if not other_frame and cbct_isocentre_lps_mm is None:
        return cbct, CbctPlacement(FrameRelationValues.ASSUMED_SHARED, ct_uid, cbct_uid, identity)
    if isocentre_lps_mm is None:
        why = (
            f"the CBCT is in Frame of Reference {cbct_uid} (the treatment room's) and the "
            f"planning CT in {ct_uid}"
            if other_frame
            else "the CBCT is stated to be in its own frame (cbct_isocentre_lps_mm given)"
        )
        raise IsocentreRequiredError(
            f"{why}: placing the CBCT on the planning CT needs the treatment isocentre in "
            "planning-CT LPS mm (isocentre_lps_mm; igrt register --isocentre or --plan; the "
            "request's isocentre_lps_mm or plan), which was not given",
            field="isocentre_lps_mm",
        )
    planning_isocentre = _point(isocentre_lps_mm, "isocentre_lps_mm")
    if cbct_isocentre_lps_mm is None:
        cbct_isocentre = np.array(DEFAULT_CBCT_ISOCENTRE_LPS_MM, dtype=np.float64)
        source = DEFAULT_CBCT_ISOCENTRE_SOURCE
    else:
        cbct_isocentre = _point(cbct_isocentre_lps_mm, "cbct_isocentre_lps_mm")
        source = "given"
    planning_from_cbct_frame = np.eye(4)
    planning_from_cbct_frame[:3, 3] = planning_isocentre - cbct_isocentre
    placed = Volume(
        cbct.array,
        spacing_mm=cbct.spacing_mm,
        origin_lps_mm=cbct.origin_lps_mm + planning_from_cbct_frame[:3, 3],
        direction=cbct.direction,
        frame_of_reference_uid=planning_ct.frame_of_reference_uid,
    )
    return placed, CbctPlacement(
        FrameRelationValues.PLACED_BY_ISOCENTRE,
        ct_uid,
        cbct_uid,
        planning_from_cbct_frame,
        planning_isocentre,
        cbct_isocentre,
        source,
    )
