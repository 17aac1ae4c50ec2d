"""Where a registration looks and measures, taken from the treatment plan.

The reference point is the plan's treatment isocentre (RT Plan), the clip box the extent of a
named structure (RT Structure Set ROI: the liver, or the GTV grown by a margin) or, without
structures, the automatic box around the chosen hemidiaphragm's dome. Every source must share
the planning CT's Frame of Reference (a plan for another CT would place the isocentre
centimetres off), and the clip box must contain the isocentre: a box elsewhere would align
anatomy that is not the target. :func:`register_with_plan` records where both came from in the
result (``reference_point_source``, ``clip_box_source`` and ``extra["plan_focus"]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from igrt.errors import FrameOfReferenceError, InvalidInputError
from igrt.imageio.results import LoadedVolume
from igrt.imageio.rt_plan import LoadedRtPlan
from igrt.imageio.rt_structures import LoadedStructureSet
from igrt.volume import Volume
from registration.clip_box import ClipBox
from registration.errors import ClipBoxError, FrameOfReferenceMismatchError
from registration.result import RigidRegistrationResult
from registration.rigid import PlanningReference, register_cbct_to_ct

__all__ = ["PlanFocus", "plan_focus", "register_with_plan"]


@dataclass(frozen=True, eq=False)
class PlanFocus:
    """The isocentre and clip box of a registration, with their provenance.

    Attributes
    ----------
    isocentre_lps_mm : numpy.ndarray
        Treatment isocentre, LPS mm (planning CT frame).
    isocentre_source : str
        E.g. ``"RT Plan 1.2.3 (beams 1 AP, 2 LAT)"``.
    clip_box : ClipBox or None
        The clip box, LPS mm; ``None`` for the automatic dome box (chosen by the engine, whose
        containment of the isocentre is then checked on the result).
    clip_box_source : str
        E.g. ``"RT Structure Set 1.2.4 ROI 'Liver' + 5 mm"``.
    frame_of_reference_uid : str
        The planning CT's Frame of Reference UID, shared by every source.
    """

    isocentre_lps_mm: npt.NDArray[np.float64]
    isocentre_source: str
    clip_box: ClipBox | None
    clip_box_source: str
    frame_of_reference_uid: str

    def to_dict(self, clip_box: ClipBox | None = None) -> dict[str, Any]:
        """JSON-ready provenance, with the containment check of ``clip_box`` (or its own)."""
        box = clip_box if clip_box is not None else self.clip_box
        return {
            "isocentre_lps_mm": [float(v) for v in self.isocentre_lps_mm],
            "isocentre_source": self.isocentre_source,
            "clip_box_source": self.clip_box_source,
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "isocentre_in_clip_box": None if box is None else _contains(box, self.isocentre_lps_mm),
        }


def _contains(box: ClipBox, point: npt.NDArray[np.float64]) -> bool:
    return bool(np.all(point >= box.lower_lps_mm) and np.all(point <= box.upper_lps_mm))


def _check_same_frame(ct_uid: str, other_uid: str | None, what: str) -> None:
    if other_uid != ct_uid:
        raise FrameOfReferenceMismatchError(
            f"the {what} is in Frame of Reference {other_uid or '(none stated)'} but the planning "
            f"CT in {ct_uid}: they do not belong together",
            field="frame_of_reference_uid",
        )


def _require_containment(box: ClipBox, isocentre: npt.NDArray[np.float64], source: str) -> None:
    if not _contains(box, isocentre):
        raise ClipBoxError(
            f"the clip box from {source} (LPS {np.round(box.lower_lps_mm, 1).tolist()} to "
            f"{np.round(box.upper_lps_mm, 1).tolist()}) does not contain the treatment isocentre "
            f"{np.round(isocentre, 1).tolist()}: choose the structure around the target or a "
            "larger margin",
            field="roi",
        )


def plan_focus(
    planning_ct: Volume | LoadedVolume,
    plan: LoadedRtPlan,
    *,
    structures: LoadedStructureSet | None = None,
    roi: str | None = None,
    roi_margin_mm: float = 0.0,
    beam: str | None = None,
) -> PlanFocus:
    """The isocentre (plan) and clip box (structure ROI, or automatic) for a registration.

    Parameters
    ----------
    planning_ct : igrt.volume.Volume or igrt.imageio.LoadedVolume
        The planning CT; must carry its Frame of Reference UID (DICOM).
    plan : LoadedRtPlan
        The RT Plan; with several distinct isocentres, ``beam`` chooses one.
    structures : LoadedStructureSet, optional
        The RT Structure Set; needed for ``roi``, and for a plan that states no Frame of
        Reference of its own.
    roi : str, optional
        Name of the ROI whose extent (plus ``roi_margin_mm``) is the clip box; the automatic
        box around the dome otherwise.
    roi_margin_mm : float, optional
        Margin added on every face of the ROI's extent, mm (a site choice: e.g. the GTV + 10 mm).
    beam : str, optional
        Beam number or name whose isocentre to use when the plan has several.

    Raises
    ------
    FrameOfReferenceMismatchError
        The plan or the ROI is in another Frame of Reference than the CT.
    FrameOfReferenceError
        The CT carries no Frame of Reference UID, or the plan's cannot be established.
    InvalidInputError
        Several isocentres and no beam; no such ROI; ``roi`` without structures; bad margin.
    ClipBoxError
        The ROI's box is too small or does not contain the isocentre.
    """
    volume = planning_ct.volume if isinstance(planning_ct, LoadedVolume) else planning_ct
    ct_uid = volume.frame_of_reference_uid
    if not ct_uid:
        raise FrameOfReferenceError(
            "the planning CT carries no Frame of Reference UID, so the plan cannot be checked "
            "against it: give the CT as a DICOM series",
            field="planning_ct",
        )
    structure_uid = structures.sop_instance_uid if structures is not None else None
    structure_frame = structures.frame_of_reference_uid if structures is not None else None
    _check_same_frame(ct_uid, plan.frame_of_reference_via(structure_uid, structure_frame), "plan")
    chosen = plan.isocentre(beam)
    isocentre = np.asarray(chosen.position_lps_mm, dtype=np.float64)
    isocentre_source = f"RT Plan {plan.sop_instance_uid} (beams {', '.join(chosen.beams)})"
    if roi is None:
        return PlanFocus(isocentre, isocentre_source, None, "automatic dome box", ct_uid)
    if structures is None:
        raise InvalidInputError("an ROI needs the RT Structure Set", field="structures")
    if not np.isfinite(roi_margin_mm) or roi_margin_mm < 0:
        raise InvalidInputError(
            "roi_margin_mm must be a non-negative number", field="roi_margin_mm"
        )
    extent = structures.roi(roi)
    _check_same_frame(ct_uid, extent.frame_of_reference_uid, f"ROI {extent.name!r}")
    source = f"RT Structure Set {structures.sop_instance_uid} ROI {extent.name!r}"
    if roi_margin_mm:
        source += f" + {roi_margin_mm:g} mm"
    box = ClipBox(extent.lower_lps_mm, extent.upper_lps_mm).expanded(roi_margin_mm)
    _require_containment(box, isocentre, source)
    return PlanFocus(isocentre, isocentre_source, box, source, ct_uid)


def register_with_plan(
    planning_ct: Volume | LoadedVolume | PlanningReference,
    cbct: Volume | LoadedVolume,
    focus: PlanFocus,
    **options: Any,
) -> RigidRegistrationResult:
    """:func:`~registration.rigid.register_cbct_to_ct` at the plan's isocentre and clip box.

    ``options`` go to :func:`~registration.rigid.register_cbct_to_ct` (not ``clip_box`` or
    ``isocentre_lps_mm``, which the focus sets). The result names the sources, and reports
    whether the clip box used contains the isocentre (``extra["plan_focus"]``).

    Raises
    ------
    ClipBoxError
        The automatic dome box does not contain the plan's isocentre (give an ROI).
    InvalidInputError
        ``clip_box`` or ``isocentre_lps_mm`` among ``options``.
    """
    if {"clip_box", "isocentre_lps_mm"} & options.keys():
        raise InvalidInputError("the plan focus sets the clip box and the isocentre")
    result = register_cbct_to_ct(
        planning_ct,
        cbct,
        clip_box=focus.clip_box,
        isocentre_lps_mm=focus.isocentre_lps_mm,
        **options,
    )
    _require_containment(result.clip_box, focus.isocentre_lps_mm, result.clip_box_source)
    return dataclasses.replace(
        result,
        reference_point_source=focus.isocentre_source,
        clip_box_source=focus.clip_box_source
        if focus.clip_box is not None
        else f"{result.clip_box_source} (plan isocentre inside)",
        extra={**result.extra, "plan_focus": focus.to_dict(result.clip_box)},
    )
