"""The treatment plan's isocentre and clip box for a registration job (as ``igrt register --plan``).

A registration request may name a received RT Plan (and RT Structure Set, ROI, margin, beam) by
DICOM instance id. The job keeps that request (``RegistrationJob.plan_request``); the worker
reads both files from the store and composes :func:`registration.plan_focus.plan_focus`,
:func:`registration.prepare_planning_reference` and
:func:`registration.plan_focus.register_with_plan` exactly as the CLI does, so the result says
where the isocentre and the clip box came from.

The request is also checked when it is made (:func:`check_plan_request`): the plan and ROI are
read and matched against the planning CT's Frame of Reference (from its stored geometry), so a
plan for another CT, a plan without isocentre, an ambiguous isocentre or a missing ROI is
refused at once rather than as a failed job. The worker's focus on the real CT is the one used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from api.storage import FileStore
from igrt.volume import Volume

if TYPE_CHECKING:
    from igrt.imageio import LoadedVolume
    from registration.plan_focus import PlanFocus

__all__ = ["PlanSources", "check_plan_request", "plan_focus_from_store"]


@dataclass(frozen=True)
class PlanSources:
    """The stored files and choices a plan-aware registration reads.

    Attributes
    ----------
    plan_path : str
        The RT Plan, relative to the file store root.
    structures_path : str or None
        The RT Structure Set, relative to the store root (needed for ``roi``).
    roi : str or None
        The ROI whose extent is the clip box; the automatic dome box otherwise.
    roi_margin_mm : float
        Margin added on every face of the ROI's extent, mm.
    beam : str or None
        Beam number or name choosing one of several isocentres.
    """

    plan_path: str
    structures_path: str | None
    roi: str | None
    roi_margin_mm: float
    beam: str | None

    @classmethod
    def from_request(
        cls, request: dict[str, Any], plan_path: str, structures_path: str | None
    ) -> PlanSources:
        """From a job's ``plan_request`` and the stored paths of the instances it names."""
        return cls(
            plan_path=plan_path,
            structures_path=structures_path,
            roi=request.get("roi"),
            roi_margin_mm=float(request.get("roi_margin_mm") or 0.0),
            beam=request.get("beam"),
        )


def plan_focus_from_store(
    store: FileStore, planning_ct: Volume | LoadedVolume, sources: PlanSources
) -> PlanFocus:
    """Read the plan (and structures) from the store; the focus for ``planning_ct``.

    Raises
    ------
    IgrtError
        What :func:`~igrt.imageio.rt_plan.read_rt_plan`,
        :func:`~igrt.imageio.rt_structures.read_structure_set` and
        :func:`~registration.plan_focus.plan_focus` raise: not a plan, no isocentre, several
        isocentres without a beam, no such ROI, another Frame of Reference, a box without the
        isocentre.
    """
    from igrt.imageio.rt_plan import read_rt_plan
    from igrt.imageio.rt_structures import read_structure_set
    from registration.plan_focus import plan_focus

    structures = (
        None
        if sources.structures_path is None
        else read_structure_set(store.path(sources.structures_path))
    )
    return plan_focus(
        planning_ct,
        read_rt_plan(store.path(sources.plan_path)),
        structures=structures,
        roi=sources.roi,
        roi_margin_mm=sources.roi_margin_mm,
        beam=sources.beam,
    )


def _frame_stand_in(geometry: dict[str, Any]) -> Volume:
    """A two-voxel volume in the planning CT's Frame of Reference.

    :func:`~registration.plan_focus.plan_focus` reads only the CT's Frame of Reference UID; the
    stored geometry holds it, so the request is checked without decoding the CT's voxels.
    """
    uid = geometry.get("frame_of_reference_uid")
    return Volume(
        np.zeros((2, 2, 2), dtype=np.float32),
        geometry.get("spacing_mm") or (1.0, 1.0, 1.0),
        geometry.get("origin_lps_mm") or (0.0, 0.0, 0.0),
        frame_of_reference_uid=str(uid) if uid else None,
    )


def check_plan_request(
    store: FileStore, planning_ct_geometry: dict[str, Any], sources: PlanSources
) -> dict[str, Any]:
    """Check a plan request against the planning CT's stored geometry; its provenance.

    Returns
    -------
    dict
        :meth:`PlanFocus.to_dict` of the focus the request gives (isocentre and sources).

    Raises
    ------
    IgrtError
        As :func:`plan_focus_from_store` (messages may name the stored file's path).
    """
    return plan_focus_from_store(store, _frame_stand_in(planning_ct_geometry), sources).to_dict()
