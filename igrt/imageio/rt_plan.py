"""The treatment isocentre(s) of a DICOM RT Plan or RT Ion Plan.

Each beam's first control point states its ``IsocenterPosition`` (300A,012C), LPS mm in the
plan's Frame of Reference. Beams sharing a position (within 0.01 mm) form one isocentre; a plan
with several distinct isocentres needs an explicit choice of beam (never "the first").

The plan's Frame of Reference UID is its own (Frame of Reference module) when it states one;
otherwise that of the RT Structure Set it references, which the caller resolves
(:meth:`LoadedRtPlan.frame_of_reference_via`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from igrt.errors import FrameOfReferenceError, GeometryError, ImageReadError, InvalidInputError
from igrt.imageio._dicom_attributes import optional_floats, optional_text
from igrt.imageio._dicom_file import read_dicom_file
from igrt.imageio._failures import MALFORMED_VALUE_ERRORS, foreign_errors

__all__ = ["LoadedRtPlan", "PlanIsocentre", "read_rt_plan"]

RT_PLAN_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan",
    "1.2.840.10008.5.1.4.1.1.481.8": "RT Ion Plan",
}
_SAME_ISOCENTRE_MM = 0.01
_MAX_BEAMS = 500


@dataclass(frozen=True)
class PlanIsocentre:
    """One distinct isocentre of a plan.

    Attributes
    ----------
    position_lps_mm : tuple of float
        LPS mm in the plan's Frame of Reference.
    beams : tuple of str
        The beams (``"number name"``) that use it.
    """

    position_lps_mm: tuple[float, float, float]
    beams: tuple[str, ...]


@dataclass(frozen=True)
class LoadedRtPlan:
    """What the registration needs from an RT Plan.

    Attributes
    ----------
    path : pathlib.Path
        The file read.
    sop_instance_uid : str
        The plan's SOP Instance UID.
    label : str or None
        RT Plan Label.
    patient_id : str or None
        Patient ID.
    frame_of_reference_uid : str or None
        The plan's own Frame of Reference UID, when it states one.
    referenced_structure_set_uids : tuple of str
        SOP Instance UIDs of the RT Structure Sets it references.
    isocentres : tuple of PlanIsocentre
        The distinct isocentres, in beam order.
    """

    path: Path
    sop_instance_uid: str
    label: str | None
    patient_id: str | None
    frame_of_reference_uid: str | None
    referenced_structure_set_uids: tuple[str, ...]
    isocentres: tuple[PlanIsocentre, ...] = field(default=())

    def isocentre(self, beam: str | None = None) -> PlanIsocentre:
        """The plan's isocentre; with several, the one of ``beam`` (its number or name).

        Raises
        ------
        InvalidInputError
            Several isocentres and no beam named, or no beam of that number or name.
        """
        if beam is None:
            if len(self.isocentres) == 1:
                return self.isocentres[0]
            listing = "; ".join(
                f"{np.round(i.position_lps_mm, 1).tolist()} ({', '.join(i.beams)})"
                for i in self.isocentres
            )
            raise InvalidInputError(
                f"{self.path} has {len(self.isocentres)} distinct isocentres: {listing}; name "
                "the beam whose isocentre to use",
                field="plan_beam",
            )
        wanted = beam.strip().lower()
        for candidate in self.isocentres:
            for label in candidate.beams:
                number, _, name = label.partition(" ")
                if wanted in (number.lower(), name.strip().lower()):
                    return candidate
        raise InvalidInputError(f"{self.path} has no beam {beam!r}", field="plan_beam")

    def frame_of_reference_via(
        self, structure_set_uid: str | None, structure_set_frame_uid: str | None
    ) -> str:
        """The plan's Frame of Reference UID, its own or its referenced structure set's.

        Raises
        ------
        FrameOfReferenceError
            The plan states none and does not reference the structure set given.
        """
        if self.frame_of_reference_uid:
            return self.frame_of_reference_uid
        if (
            structure_set_uid
            and structure_set_uid in self.referenced_structure_set_uids
            and structure_set_frame_uid
        ):
            return structure_set_frame_uid
        raise FrameOfReferenceError(
            f"{self.path} states no Frame of Reference UID and does not reference the given "
            "RT Structure Set: its isocentre cannot be placed in the planning CT; give the "
            "structure set the plan references",
            field="plan",
        )


def _beam_isocentres(dataset: object, path: Path) -> list[tuple[str, tuple[float, float, float]]]:
    beams = getattr(dataset, "BeamSequence", None) or getattr(dataset, "IonBeamSequence", None)
    if not beams:
        raise GeometryError(f"{path} has no beams (Beam or Ion Beam Sequence)", field="plan")
    if len(beams) > _MAX_BEAMS:
        raise ImageReadError(f"{path}: more than {_MAX_BEAMS} beams", field="plan")
    found = []
    for beam in beams:
        label = f"{beam.get('BeamNumber', '?')} {optional_text(beam, 'BeamName') or ''}".strip()
        points = beam.get("ControlPointSequence") or []
        position = optional_floats(points[0], "IsocenterPosition", path) if points else None
        if position is None:
            continue
        if len(position) != 3:
            raise GeometryError(
                f"{path}: beam {label} has an isocentre of {len(position)} values",
                field="IsocenterPosition",
            )
        found.append((label, (position[0], position[1], position[2])))
    if not found:
        raise GeometryError(f"{path}: no beam states an isocentre position", field="plan")
    return found


def _distinct(beams: list[tuple[str, tuple[float, float, float]]]) -> tuple[PlanIsocentre, ...]:
    groups: list[tuple[tuple[float, float, float], list[str]]] = []
    for label, position in beams:
        for anchor, labels in groups:
            if np.max(np.abs(np.subtract(anchor, position))) <= _SAME_ISOCENTRE_MM:
                labels.append(label)
                break
        else:
            groups.append((position, [label]))
    return tuple(PlanIsocentre(position, tuple(labels)) for position, labels in groups)


def read_rt_plan(path: str | os.PathLike[str]) -> LoadedRtPlan:
    """Read the isocentres and identity of an RT Plan or RT Ion Plan.

    Raises
    ------
    ImageReadError
        Not DICOM, or not an RT (Ion) Plan.
    GeometryError
        No beams, or no beam with an isocentre (a plan without isocentre).
    """
    source, dataset = read_dicom_file(path)
    with foreign_errors(source, "read RT Plan", catch=MALFORMED_VALUE_ERRORS):
        sop_class = str(dataset.get("SOPClassUID", ""))
        if sop_class not in RT_PLAN_SOP_CLASSES:
            raise ImageReadError(
                f"{source} is not an RT Plan (SOP Class {sop_class or 'missing'})", field="plan"
            )
        references = tuple(
            str(item.get("ReferencedSOPInstanceUID", ""))
            for item in dataset.get("ReferencedStructureSetSequence") or []
        )
        return LoadedRtPlan(
            path=source,
            sop_instance_uid=str(dataset.SOPInstanceUID),
            label=optional_text(dataset, "RTPlanLabel"),
            patient_id=optional_text(dataset, "PatientID"),
            frame_of_reference_uid=optional_text(dataset, "FrameOfReferenceUID"),
            referenced_structure_set_uids=tuple(uid for uid in references if uid),
            isocentres=_distinct(_beam_isocentres(dataset, source)),
        )
