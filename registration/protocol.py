"""Thresholds the CBCT-to-CT registration applies, with where each value comes from.

=================================  =========  ==================================================
field                              default    justification
=================================  =========  ==================================================
``repositioning_threshold_mm``     3.0 mm     Seed (Lee 2009, CLINICAL.md §4): the patient is
                                              repositioned when the liver offset exceeds 3 mm.
                                              Not defined here: the default is
                                              ``igrt.protocol.DEFAULT_PROTOCOL``'s, the one
                                              source of truth; ``from_motion_protocol``
                                              follows another motion protocol.
``dome_check_tolerance_mm``        2.0 mm     AAPM MPPG 9.a SBRT positioning tolerance (2 mm):
                                              an independent dome estimate further than that
                                              from the registration's SI offset at the dome
                                              means one of them is wrong at a clinically
                                              relevant level.
``capture_range_mm``               25.0 mm    Issue 5: at least +/-25 mm (liver breathing
                                              amplitude reaches 23 mm, Eccles 2011). The
                                              exhaustive search covers it plus a margin.
``max_uncertainty_mm``             1.0 mm     Protocol choice: a 1 SD of 1 mm keeps the 95 %
                                              interval within the 2 mm SBRT tolerance.
``min_ncc``                        0.3        Protocol choice: below, CT and CBCT do not show
                                              the same anatomy in the clip box (FAILED).
``good_ncc``                       0.7        Protocol choice: simulated CBCTs with realistic
                                              artefacts reach 0.9-0.99; 0.7 leaves room for
                                              poorer real scans before a result is
                                              QUESTIONABLE.
``min_overlap_fraction``           0.5        Below half of the clip box in the CBCT's field of
                                              view the result is FAILED.
``good_overlap_fraction``          0.8        Between the two: QUESTIONABLE.
``max_rotation_deg``               5.0        Protocol choice: rotations above 5 degrees are
                                              beyond what a 6-DOF couch corrects (typically 3
                                              degrees) and suggest a set-up to redo:
                                              QUESTIONABLE.
``repositioning_rule``             axis or   Site choice: the seed says "offsets in liver
                                   vector     position more than 3 mm", not per axis; (2.9,
                                              2.9, 2.9) mm is a 5 mm offset. Flag when any
                                              IEC axis **or** the 3D vector exceeds the
                                              threshold (``per_axis`` or ``vector`` alone
                                              are the alternatives).
``rotation_tolerance_deg``         3.0        Site choice: rotations (6 DOF estimate) are
                                              always reported; beyond 3 degrees about an IEC
                                              axis (a typical 6-DOF couch range) the flag
                                              asks for repositioning.
``min_search_ambiguity``           0.02       A second NCC peak of the coarse search within
                                              0.02 of the best, more than 8 mm away, makes
                                              the capture ambiguous: QUESTIONABLE.
=================================  =========  ==================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from igrt.errors import InvalidInputError
from igrt.frame_of_reference import AnatomyDisplacement, IecAxisValues, PatientPositionValues
from igrt.protocol import DEFAULT_PROTOCOL, MotionProtocol

if TYPE_CHECKING:
    from registration.result import RepositioningFlag

__all__ = ["DEFAULT_REGISTRATION_PROTOCOL", "REPOSITIONING_RULES", "RegistrationProtocol"]

REPOSITIONING_RULES = ("per_axis", "vector", "per_axis_or_vector")
"""How the 3 mm rule reads an offset: any IEC axis, the 3D vector, or either."""


@dataclass(frozen=True)
class RegistrationProtocol:
    """Thresholds of the rigid CBCT-to-CT registration (see the module table).

    Parameters
    ----------
    repositioning_threshold_mm : float
        Repositioning is flagged when any IEC axis of the displacement exceeds this, mm; by
        default the motion protocol's (``igrt.protocol.DEFAULT_PROTOCOL``).
    dome_check_tolerance_mm : float
        Largest accepted difference between the dome's SI offset and the registration's, mm.
    capture_range_mm : float
        Largest displacement along each axis the coarse search covers, mm (10-60).
    max_uncertainty_mm : float
        Largest accepted uncertainty (1 SD, vector length at the reference point), mm.
    min_ncc, good_ncc : float
        Final normalised cross-correlation below ``min_ncc``: FAILED; below ``good_ncc``:
        QUESTIONABLE.
    min_overlap_fraction, good_overlap_fraction : float
        Fraction of clip-box points inside the CBCT's field of view at the result, same rule.
    max_rotation_deg : float
        Rotations (6 DOF) above this about any axis make the result QUESTIONABLE, degrees.
    min_search_ambiguity : float
        Smallest accepted NCC gap between the coarse search's peak and a distinct runner-up.
    rotation_tolerance_deg : float
        Rotation about an IEC axis beyond which repositioning is flagged, degrees.
    repositioning_rule : str
        ``"per_axis_or_vector"`` (default), ``"per_axis"`` or ``"vector"``.

    Raises
    ------
    InvalidInputError
        If a value is not finite, negative, or out of order (``min_* > good_*``).
    """

    repositioning_threshold_mm: float = DEFAULT_PROTOCOL.repositioning_threshold_mm
    dome_check_tolerance_mm: float = 2.0
    capture_range_mm: float = 25.0
    max_uncertainty_mm: float = 1.0
    min_ncc: float = 0.3
    good_ncc: float = 0.7
    min_overlap_fraction: float = 0.5
    good_overlap_fraction: float = 0.8
    max_rotation_deg: float = 5.0
    min_search_ambiguity: float = 0.02
    rotation_tolerance_deg: float = 3.0
    repositioning_rule: str = "per_axis_or_vector"

    def __post_init__(self) -> None:
        if self.repositioning_rule not in REPOSITIONING_RULES:
            raise InvalidInputError(
                f"repositioning_rule must be one of {list(REPOSITIONING_RULES)}, got "
                f"{self.repositioning_rule!r}",
                field="repositioning_rule",
            )
        for name, value in asdict(self).items():
            if name == "repositioning_rule":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise InvalidInputError(
                    f"{name} must be a finite non-negative number, got {value!r}", field=name
                )
        if not 10.0 <= self.capture_range_mm <= 60.0:
            raise InvalidInputError(
                f"capture_range_mm must lie in [10, 60], got {self.capture_range_mm}",
                field="capture_range_mm",
            )
        if self.min_ncc > self.good_ncc or self.good_ncc > 1.0:
            raise InvalidInputError("need min_ncc <= good_ncc <= 1", field="min_ncc")
        if self.min_overlap_fraction > self.good_overlap_fraction or self.good_overlap_fraction > 1:
            raise InvalidInputError(
                "need min_overlap_fraction <= good_overlap_fraction <= 1",
                field="min_overlap_fraction",
            )

    @classmethod
    def from_motion_protocol(
        cls, motion_protocol: MotionProtocol, **thresholds: Any
    ) -> RegistrationProtocol:
        """The registration thresholds that apply under ``motion_protocol``.

        Parameters
        ----------
        motion_protocol : igrt.protocol.MotionProtocol
            The session's clinical protocol; its ``repositioning_threshold_mm`` is used.
        **thresholds : float or str
            Any other field of this class (``repositioning_threshold_mm`` cannot be given:
            it would contradict the clinical protocol).

        Raises
        ------
        InvalidInputError
            If ``motion_protocol`` is not a MotionProtocol, ``repositioning_threshold_mm`` or an
            unknown field is given, or a value is invalid.
        """
        if not isinstance(motion_protocol, MotionProtocol):
            raise InvalidInputError(
                "motion_protocol must be an igrt.protocol.MotionProtocol", field="motion_protocol"
            )
        known = {name for name in cls.__dataclass_fields__ if name != "repositioning_threshold_mm"}
        for name in thresholds:
            if name not in known:
                raise InvalidInputError(
                    f"{name!r} is not a registration threshold that may be set here", field=name
                )
        return cls(
            repositioning_threshold_mm=motion_protocol.repositioning_threshold_mm, **thresholds
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able thresholds."""
        return {
            name: value if isinstance(value, str) else float(value)
            for name, value in asdict(self).items()
        }

    def repositioning_flag(
        self,
        displacement: AnatomyDisplacement,
        position: PatientPositionValues | str,
        rotation_iec_deg: tuple[float, float, float] | None = None,
    ) -> RepositioningFlag:
        """Whether the anatomy displacement (and rotation, if estimated) calls for repositioning.

        The translation is judged per IEC axis and as a 3D vector; ``repositioning_rule`` says
        which of the two decide. Rotations beyond ``rotation_tolerance_deg`` about an IEC
        patient-support axis also ask for repositioning. Values equal to a limit do not exceed it.
        """
        from registration.result import RepositioningFlag

        threshold = self.repositioning_threshold_mm
        axes = displacement.exceeds(threshold, position)
        vector_mm = displacement.magnitude_mm
        exceeds_vector = vector_mm > threshold
        by_rule = {
            "per_axis": bool(axes),
            "vector": exceeds_vector,
            "per_axis_or_vector": bool(axes) or exceeds_vector,
        }[self.repositioning_rule]
        rotations = () if rotation_iec_deg is None else tuple(float(a) for a in rotation_iec_deg)
        exceeding_rotations = tuple(
            axis
            for axis, angle in zip(IecAxisValues, rotations, strict=False)
            if abs(angle) > self.rotation_tolerance_deg
        )
        return RepositioningFlag(
            required=by_rule or bool(exceeding_rotations),
            threshold_mm=threshold,
            exceeding_axes=axes,
            vector_mm=vector_mm,
            exceeds_vector=exceeds_vector,
            rule=self.repositioning_rule,
            rotation_iec_deg=rotations or None,
            rotation_tolerance_deg=self.rotation_tolerance_deg,
            exceeding_rotation_axes=exceeding_rotations,
        )


DEFAULT_REGISTRATION_PROTOCOL = RegistrationProtocol()
"""The defaults of the module table."""
