"""What a rigid CBCT-to-CT registration reports.

Every number carries its unit and frame in its name, and the result says how far it can be
trusted (:class:`QualityValues`): a ``FAILED`` result carries no displacement, no couch
correction and no repositioning decision (``None``), only the transform the optimiser ended on
(for the review images) and the reasons.

Frames and directions
---------------------
``cbct_from_ct`` maps a planning-CT anatomical point (LPS mm) to where it lies in the CBCT
(LPS mm, planning frame of reference: for a CBCT in the room's own frame, the CBCT placed on the
planning CT by the treatment isocentre, :mod:`registration.cbct_placement`); ``ct_from_cbct`` is
its inverse. ``ct_from_cbct_frame`` takes a point in the CBCT's *own* coordinates to the
planning-CT anatomy imaged there (``ct_from_cbct @ planning_from_cbct_frame``; the DICOM REG's
matrix); ``cbct_placement`` records both Frame of Reference UIDs and the placement. The anatomy
displacement is ``cbct_from_ct @ c - c`` at the reference point ``c`` (the treatment
isocentre); the couch correction is its negative (``igrt.frame_of_reference``). IEC 61217
patient-support components follow from the session's patient position.

Rotations (6 degrees of freedom): ``anatomy_rotation_lps_deg = (a_x, a_y, a_z)``: active,
right-handed rotations of the anatomy about the LPS x, y, z axes through the reference point,
x first, then y, then z (fixed axes), ``R = Rz Ry Rx`` (:mod:`registration.transforms`). The
same rotation along IEC patient-support axes, ``anatomy_rotation_iec_support_deg``, is
``(b_X, b_Y, b_Z)`` with ``R_iec = M R M^T = Rz(b_Z) Ry(b_Y) Rx(b_X)`` about IEC X (lateral,
the couch's pitch axis), Y (longitudinal, roll) and Z (vertical, couch rotation), and
``M = iec_support_from_lps_matrix(position)``; the couch's rotational correction is the inverse
rotation, ``couch_rotation_correction_iec_support_deg``. A console may use another order or
sign convention: convert explicitly (``STYLE.md`` pitfall 7).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from igrt.frame_of_reference import (
    AnatomyDisplacement,
    CouchCorrection,
    IecAxisValues,
    PatientPositionValues,
    iec_support_from_lps_matrix,
)
from registration.cbct_placement import CbctPlacement
from registration.clip_box import ClipBox
from registration.dome import DomeApex
from registration.errors import NotConvergedError
from registration.overlays import RegistrationOverlays
from registration.protocol import RegistrationProtocol
from registration.transforms import euler_deg_from_rotation

__all__ = [
    "DomeCheck",
    "DomeCheckValues",
    "LevelRecord",
    "QualityValues",
    "RepositioningFlag",
    "RigidRegistrationResult",
]

FloatArray = npt.NDArray[np.float64]


class QualityValues(enum.Enum):
    """How far a registration result can be trusted."""

    GOOD = "good"
    """Every check passed: the numbers may be used."""

    QUESTIONABLE = "questionable"
    """The numbers exist but a check raised a warning: review the overlays before using them."""

    FAILED = "failed"
    """No trustworthy result: no displacement or correction is reported."""


class DomeCheckValues(enum.Enum):
    """Outcome of the independent diaphragm-dome check."""

    AGREES = "agrees"
    """The dome's SI offset matches the registration's within the tolerance."""

    DISAGREES = "disagrees"
    """They differ by more than the tolerance (a warning)."""

    UNAVAILABLE = "unavailable"
    """The dome could not be found in one of the images (a warning)."""


@dataclass(frozen=True)
class DomeCheck:
    """The registration's superior-inferior offset compared with the dome's own.

    Parameters
    ----------
    status : DomeCheckValues
        Outcome.
    tolerance_mm : float
        Largest accepted disagreement, mm.
    ct_apex : DomeApex or None
        Apex found in the planning CT.
    cbct_apex : DomeApex or None
        Apex found in the CBCT (independently of the registration: searched around the
        planning apex within the capture range).
    dome_si_offset_mm : float or None
        ``cbct_apex.z - ct_apex.z``: the dome's superior (+) offset today, mm.
    registration_si_mm : float or None
        LPS z component of the registration's anatomy displacement *at the planning apex*, mm.
    disagreement_mm : float or None
        ``|dome_si_offset_mm - registration_si_mm|``, mm.
    reason : str
        Human-readable explanation.
    """

    status: DomeCheckValues
    tolerance_mm: float
    ct_apex: DomeApex | None = None
    cbct_apex: DomeApex | None = None
    dome_si_offset_mm: float | None = None
    registration_si_mm: float | None = None
    disagreement_mm: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "status": self.status.value,
            "tolerance_mm": float(self.tolerance_mm),
            "ct_apex": None if self.ct_apex is None else self.ct_apex.to_dict(),
            "cbct_apex": None if self.cbct_apex is None else self.cbct_apex.to_dict(),
            "dome_si_offset_mm": _float_or_none(self.dome_si_offset_mm),
            "registration_si_mm": _float_or_none(self.registration_si_mm),
            "disagreement_mm": _float_or_none(self.disagreement_mm),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RepositioningFlag:
    """Whether the anatomy displacement calls for repositioning, per IEC patient-support axis.

    Parameters
    ----------
    required : bool
        Whether the offset (by the protocol's rule) or a rotation calls for repositioning.
    threshold_mm : float
        Per-axis threshold, mm (a component equal to it does not exceed it).
    exceeding_axes : tuple of IecAxisValues
        The IEC patient-support axes whose component exceeds the threshold.
    vector_mm : float or None
        Length of the 3D displacement, mm.
    exceeds_vector : bool
        Whether that length exceeds the threshold.
    rule : str
        The protocol's rule: ``per_axis``, ``vector`` or ``per_axis_or_vector``.
    rotation_iec_deg : tuple of float or None
        Anatomy rotation about the IEC axes when estimated (6 DOF), degrees.
    rotation_tolerance_deg : float or None
        The protocol's rotation tolerance, degrees.
    exceeding_rotation_axes : tuple of IecAxisValues
        IEC axes about which the rotation exceeds the tolerance.
    """

    required: bool
    threshold_mm: float
    exceeding_axes: tuple[IecAxisValues, ...]
    vector_mm: float | None = None
    exceeds_vector: bool = False
    rule: str = "per_axis"
    rotation_iec_deg: tuple[float, ...] | None = None
    rotation_tolerance_deg: float | None = None
    exceeding_rotation_axes: tuple[IecAxisValues, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: per IEC axis, the 3D vector, the rule applied and rotations."""
        return {
            "required": self.required,
            "threshold_mm": float(self.threshold_mm),
            "exceeding_axes": [axis.value for axis in self.exceeding_axes],
            "per_axis": {axis.value: axis in self.exceeding_axes for axis in IecAxisValues},
            "vector_mm": None if self.vector_mm is None else float(self.vector_mm),
            "exceeds_vector": self.exceeds_vector,
            "rule": self.rule,
            "rotation_iec_deg": None
            if self.rotation_iec_deg is None
            else [float(a) for a in self.rotation_iec_deg],
            "rotation_tolerance_deg": self.rotation_tolerance_deg,
            "exceeding_rotation_axes": [axis.value for axis in self.exceeding_rotation_axes],
        }


@dataclass(frozen=True)
class LevelRecord:
    """One stage of the coarse-to-fine registration.

    Parameters
    ----------
    name : str
        ``"search 4 mm"``, ``"refine 4 mm"``, ``"refine 2 mm"`` or ``"refine 1 mm"``.
    spacing_mm : float
        Lattice spacing, mm.
    iterations : int
        Gauss-Newton iterations (0 for the exhaustive search).
    ncc : float
        Normalised cross-correlation at the end of the stage.
    displacement_lps_mm : tuple of float
        Anatomy displacement at the reference point after the stage, LPS mm.
    stop_condition : str
        Why the stage ended.
    """

    name: str
    spacing_mm: float
    iterations: int
    ncc: float
    displacement_lps_mm: tuple[float, float, float]
    stop_condition: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "name": self.name,
            "spacing_mm": float(self.spacing_mm),
            "iterations": int(self.iterations),
            "ncc": float(self.ncc),
            "displacement_lps_mm": [float(v) for v in self.displacement_lps_mm],
            "stop_condition": self.stop_condition,
        }


@dataclass(frozen=True, eq=False)
class RigidRegistrationResult:
    """Result of :func:`registration.rigid.register_cbct_to_ct` (see the module docstring).

    Parameters
    ----------
    cbct_from_ct : numpy.ndarray
        4x4: planning-CT point (LPS mm) to CBCT point (LPS mm). For a ``FAILED`` result, the
        transform the optimiser ended on (for review only).
    reference_point_lps_mm : numpy.ndarray
        Where the displacement is evaluated (the treatment isocentre), LPS mm.
    reference_point_source : str
        ``"isocentre"`` (given) or ``"cbct-centre"`` (the CBCT grid centre, where a linac
        reconstructs the isocentre).
    patient_position : PatientPositionValues
        The session's patient position (IEC conversions).
    degrees_of_freedom : int
        3 (translations) or 6 (rotations too).
    quality : QualityValues
        Trust in the result.
    reasons : tuple of str
        Every warning or failure, empty for ``GOOD``.
    anatomy_displacement : AnatomyDisplacement or None
        Displacement of the anatomy at the reference point (``None`` when ``FAILED``).
    couch_correction : CouchCorrection or None
        The couch translation that undoes it (``None`` when ``FAILED``).
    anatomy_rotation_lps_deg : tuple of float or None
        See the module docstring; ``None`` for 3 degrees of freedom or ``FAILED``.
    anatomy_rotation_iec_support_deg : tuple of float or None
        The same rotation along IEC patient-support axes.
    couch_rotation_correction_iec_support_deg : tuple of float or None
        The inverse rotation along IEC patient-support axes.
    repositioning : RepositioningFlag or None
        Per-axis repositioning decision (``None`` when ``FAILED``).
    uncertainty_mm : float
        1 SD of the displacement at the reference point (length of the vector of per-axis SDs),
        from a delete-one-octant jackknife of the final level plus a 0.1 mm floor
        (:data:`registration.rigid.UNCERTAINTY_FLOOR_MM`), mm (NaN if unavailable).
    uncertainty_lps_mm : tuple of float
        Per-axis 1 SD along LPS, mm.
    ncc_before, ncc_after : float
        Normalised cross-correlation of the clip-box template with the CBCT at the identity
        (as acquired) and at the result (1 mm level; -1 when nothing overlapped).
    overlap_fraction : float
        Fraction of clip-box points inside the CBCT's field of view at the result.
    iterations : int
        Gauss-Newton iterations over all levels.
    stop_condition : str
        Why the final level stopped.
    levels : tuple of LevelRecord
        The coarse-to-fine history.
    dome_check : DomeCheck
        The independent dome check.
    clip_box : ClipBox
        The clip box used, LPS mm.
    clip_box_source : str
        ``"given"`` or ``"automatic around the right dome apex"``.
    protocol : RegistrationProtocol
        Thresholds applied.
    runtime_s : float
        Wall time of the registration (excluding the planning-CT preparation), s.
    overlays : RegistrationOverlays or None
        Review images (``None`` when not requested).
    intensity_gain, intensity_offset : float
        CBCT value ~ gain x CT value + offset, from the final intensity fit.
    extra : dict
        Further JSON-able details.
    cbct_placement : CbctPlacement or None
        Both Frames of Reference and how the CBCT was placed on the planning CT (``None``
        only for results built by hand: then the CBCT is taken to share the planning frame).
    """

    cbct_from_ct: FloatArray
    reference_point_lps_mm: FloatArray
    reference_point_source: str
    patient_position: PatientPositionValues
    degrees_of_freedom: int
    quality: QualityValues
    reasons: tuple[str, ...]
    anatomy_displacement: AnatomyDisplacement | None
    couch_correction: CouchCorrection | None
    anatomy_rotation_lps_deg: tuple[float, float, float] | None
    anatomy_rotation_iec_support_deg: tuple[float, float, float] | None
    couch_rotation_correction_iec_support_deg: tuple[float, float, float] | None
    repositioning: RepositioningFlag | None
    uncertainty_mm: float
    uncertainty_lps_mm: tuple[float, float, float]
    ncc_before: float
    ncc_after: float
    overlap_fraction: float
    iterations: int
    stop_condition: str
    levels: tuple[LevelRecord, ...]
    dome_check: DomeCheck
    clip_box: ClipBox
    clip_box_source: str
    protocol: RegistrationProtocol
    runtime_s: float
    overlays: RegistrationOverlays | None = None
    intensity_gain: float = 1.0
    intensity_offset: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    cbct_placement: CbctPlacement | None = None

    @property
    def ct_from_cbct(self) -> FloatArray:
        """4x4: CBCT point (LPS mm, planning frame) to the planning-CT point imaged there."""
        inverse: FloatArray = np.asarray(np.linalg.inv(self.cbct_from_ct), dtype=np.float64)
        return inverse

    @property
    def planning_from_cbct_frame(self) -> FloatArray:
        """4x4: CBCT point in its own coordinates to planning-CT coordinates once placed."""
        if self.cbct_placement is None:
            return np.eye(4)
        return np.array(self.cbct_placement.planning_from_cbct_frame, dtype=np.float64)

    @property
    def ct_from_cbct_frame(self) -> FloatArray:
        """4x4: CBCT point in its *own* coordinates (LPS mm) to the planning-CT point there.

        Equals :attr:`ct_from_cbct` when the CBCT shares the planning frame.
        """
        composed: FloatArray = self.ct_from_cbct @ self.planning_from_cbct_frame
        return composed

    @property
    def trusted(self) -> bool:
        """Whether the result is not ``FAILED`` (``QUESTIONABLE`` still needs review)."""
        return self.quality is not QualityValues.FAILED

    def require_trusted(self) -> RigidRegistrationResult:
        """Return ``self`` unless the result ``FAILED``.

        Raises
        ------
        NotConvergedError
            If ``quality`` is ``FAILED``; its ``reasons`` are the result's.
        """
        if self.quality is QualityValues.FAILED:
            raise NotConvergedError(
                "the registration failed: " + "; ".join(self.reasons), reasons=self.reasons
            )
        return self

    @property
    def anatomy_displacement_iec_support_mm(self) -> tuple[float, float, float] | None:
        """Anatomy displacement along IEC patient-support axes (X, Y, Z), mm."""
        if self.anatomy_displacement is None:
            return None
        return self.anatomy_displacement.iec_support_mm(self.patient_position)

    @property
    def couch_correction_iec_support_mm(self) -> tuple[float, float, float] | None:
        """Couch correction along IEC patient-support axes (X, Y, Z), mm."""
        if self.couch_correction is None:
            return None
        return self.couch_correction.iec_support_mm(self.patient_position)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (floats, strings, lists; no pixels)."""
        displacement = self.anatomy_displacement
        correction = self.couch_correction
        return {
            "quality": self.quality.value,
            "reasons": list(self.reasons),
            "patient_position": self.patient_position.value,
            "degrees_of_freedom": int(self.degrees_of_freedom),
            "reference_point_lps_mm": [float(v) for v in self.reference_point_lps_mm],
            "reference_point_source": self.reference_point_source,
            "anatomy_displacement_lps_mm": None
            if displacement is None
            else list(displacement.lps_mm),
            "anatomy_displacement_iec_support_mm": _list_or_none(
                self.anatomy_displacement_iec_support_mm
            ),
            "couch_correction_lps_mm": None if correction is None else list(correction.lps_mm),
            "couch_correction_iec_support_mm": _list_or_none(self.couch_correction_iec_support_mm),
            "anatomy_rotation_lps_deg": _list_or_none(self.anatomy_rotation_lps_deg),
            "anatomy_rotation_iec_support_deg": _list_or_none(
                self.anatomy_rotation_iec_support_deg
            ),
            "couch_rotation_correction_iec_support_deg": _list_or_none(
                self.couch_rotation_correction_iec_support_deg
            ),
            "rotation_convention": "active; about the axes through the reference point, x then "
            "y then z (fixed axes): R = Rz Ry Rx; IEC: R_iec = M R M^T with "
            "M = iec_support_from_lps_matrix(patient_position)",
            "repositioning": None if self.repositioning is None else self.repositioning.to_dict(),
            "uncertainty_mm": _float_or_none(self.uncertainty_mm),
            "uncertainty_lps_mm": [_float_or_none(v) for v in self.uncertainty_lps_mm],
            "metric": "normalised cross-correlation (clip box, 1 mm, intensity-fitted)",
            "ncc_before": float(self.ncc_before),
            "ncc_after": float(self.ncc_after),
            "overlap_fraction": float(self.overlap_fraction),
            "iterations": int(self.iterations),
            "stop_condition": self.stop_condition,
            "levels": [level.to_dict() for level in self.levels],
            "dome_check": self.dome_check.to_dict(),
            "clip_box": self.clip_box.to_dict(),
            "clip_box_source": self.clip_box_source,
            "cbct_from_ct": [[float(v) for v in row] for row in self.cbct_from_ct],
            "ct_from_cbct": [[float(v) for v in row] for row in self.ct_from_cbct],
            "ct_from_cbct_frame": [[float(v) for v in row] for row in self.ct_from_cbct_frame],
            "frames": None if self.cbct_placement is None else self.cbct_placement.to_dict(),
            "intensity_gain": float(self.intensity_gain),
            "intensity_offset": float(self.intensity_offset),
            "protocol": self.protocol.to_dict(),
            "runtime_s": float(self.runtime_s),
            "overlays": None if self.overlays is None else self.overlays.to_dict(),
            "extra": self.extra,
        }


def rotations_from_matrix(
    rotation_lps: FloatArray, position: PatientPositionValues
) -> tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]:
    """Anatomy rotation (LPS and IEC) and the couch's corrective rotation (IEC), degrees."""
    to_iec = iec_support_from_lps_matrix(position)
    rotation_iec = to_iec @ rotation_lps @ to_iec.T
    lps = euler_deg_from_rotation(rotation_lps)
    iec = euler_deg_from_rotation(rotation_iec)
    correction = euler_deg_from_rotation(rotation_iec.T)
    return (
        (float(lps[0]), float(lps[1]), float(lps[2])),
        (float(iec[0]), float(iec[1]), float(iec[2])),
        (float(correction[0]), float(correction[1]), float(correction[2])),
    )


def _float_or_none(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(value)


def _list_or_none(values: tuple[float, float, float] | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]
