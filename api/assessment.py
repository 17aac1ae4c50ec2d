"""Run a breathing-motion assessment on a stored fluoroscopy upload.

Always: the diaphragm dome is tracked on every frame (:func:`igrt.tracking.track_dome`) and the
track is kept. Then, when the session's protocol version is one this service knows, the
breathing is analysed, a motion-management decision made and margins suggested. Anything short
of that is recorded with a ``status`` and a ``reason``, never as a number to act on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import igrt
from api.enums import AssessmentStatusValues
from igrt.breathing_analysis import analyse_breathing
from igrt.decision import (
    AssessmentContextValues,
    BreathHoldEvidence,
    recommend_motion_management,
)
from igrt.errors import ProcessingError
from igrt.frame_of_reference import PatientPositionValues
from igrt.margins import suggest_margins
from igrt.motion_assessment import trace_from_track
from igrt.protocol_file import LoadedProtocol, builtin_protocol
from igrt.sequence import FluoroSequence
from igrt.tracking import DomeTrack, TrackerSettings, track_dome

__all__ = ["AssessmentOutcome", "assess_sequence", "json_safe"]


@dataclass(frozen=True)
class AssessmentOutcome:
    """What to store for one assessment."""

    status: AssessmentStatusValues
    reason: str | None
    tracked_fraction: float
    track: list[dict[str, Any]]
    recommendation: str | None
    result: dict[str, Any] | None
    software_version: str = igrt.__version__


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars made Python and non-finite floats made None (JSON columns)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _analyse(
    track: DomeTrack,
    source: str,
    context: str,
    protocol_version: str,
    active: LoadedProtocol,
    hold_evidence: BreathHoldEvidence | None,
) -> tuple[AssessmentStatusValues, str | None, str | None, dict[str, Any] | None]:
    protocol = active.protocol
    if protocol_version != protocol.version:
        return (
            AssessmentStatusValues.TRACKED,
            f"protocol version {protocol_version!r} is not the one active on this service "
            f"({protocol.version!r}); no decision was made",
            None,
            None,
        )
    trace = trace_from_track(track, source=source)
    analysis = analyse_breathing(trace, protocol=protocol)
    context_value = AssessmentContextValues(context)
    decision = recommend_motion_management(
        analysis,
        protocol=protocol,
        context=context_value,
        hold_evidence=None
        if context_value is AssessmentContextValues.ABDOMINAL_COMPRESSION
        else hold_evidence,
    )
    document: dict[str, Any] = {
        "analysis": analysis.to_dict(),
        "decision": decision.to_dict(),
        "protocol": active.to_dict(),
        # the site's setup-error model comes from the active protocol
        "setup_error_model_mm": {
            "systematic_setup_sd_mm": protocol.systematic_setup_sd_mm,
            "random_setup_sd_mm": protocol.random_setup_sd_mm,
        },
    }
    try:
        document["margins"] = suggest_margins(
            analysis, protocol=protocol, decision=decision
        ).to_dict()
    except ProcessingError as error:
        document["margins"] = None
        document["margins_reason"] = str(error)
    result = json_safe(document)
    return AssessmentStatusValues.COMPLETED, None, decision.recommendation.value, result


def assess_sequence(
    sequence: FluoroSequence,
    *,
    patient_position: PatientPositionValues,
    context: str,
    protocol_version: str,
    source: str,
    protocol: LoadedProtocol | None = None,
    hold_evidence: BreathHoldEvidence | None = None,
    dome_hint_column_row: tuple[float, float] | None = None,
) -> AssessmentOutcome:
    """Track the dome, then analyse and decide when possible.

    ``dome_hint_column_row`` (a pixel of the first frame, checked by the caller) starts the
    tracker there instead of at the automatic detection.

    Raises
    ------
    InvalidInputError
        The sequence cannot be tracked at all (e.g. a single frame).
    """
    try:
        settings = TrackerSettings(
            patient_position=patient_position, seed_column_row=dome_hint_column_row
        )
        track = track_dome(sequence, settings)
    except ProcessingError as exc:
        return AssessmentOutcome(AssessmentStatusValues.FAILED, str(exc), 0.0, [], None, None)
    observations = [json_safe(o.to_dict()) for o in track.observations]
    if track.tracked_fraction == 0.0:
        return AssessmentOutcome(
            AssessmentStatusValues.FAILED,
            "the diaphragm dome was not tracked on any frame",
            0.0,
            observations,
            None,
            None,
        )
    try:
        status, reason, recommendation, result = _analyse(
            track, source, context, protocol_version, protocol or builtin_protocol(), hold_evidence
        )
    except ProcessingError as exc:
        status, reason, recommendation, result = (
            AssessmentStatusValues.TRACKED,
            f"the breathing analysis gave no trustworthy result: {exc}",
            None,
            None,
        )
    return AssessmentOutcome(
        status, reason, float(track.tracked_fraction), observations, recommendation, result
    )
