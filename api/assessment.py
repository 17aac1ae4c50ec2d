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
from igrt.decision import AssessmentContextValues, recommend_motion_management
from igrt.errors import ProcessingError
from igrt.frame_of_reference import PatientPositionValues
from igrt.margins import (
    DEFAULT_RANDOM_SETUP_SD_MM,
    DEFAULT_SYSTEMATIC_SETUP_SD_MM,
    suggest_margins,
)
from igrt.motion_assessment import trace_from_track
from igrt.protocol import DEFAULT_PROTOCOL
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
    track: DomeTrack, source: str, context: str, protocol_version: str
) -> tuple[AssessmentStatusValues, str | None, str | None, dict[str, Any] | None]:
    if protocol_version != DEFAULT_PROTOCOL.version:
        return (
            AssessmentStatusValues.TRACKED,
            f"protocol version {protocol_version!r} is not known to this service (it knows "
            f"{DEFAULT_PROTOCOL.version!r}); no decision was made",
            None,
            None,
        )
    trace = trace_from_track(track, source=source)
    analysis = analyse_breathing(trace, protocol=DEFAULT_PROTOCOL)
    decision = recommend_motion_management(
        analysis, protocol=DEFAULT_PROTOCOL, context=AssessmentContextValues(context)
    )
    document: dict[str, Any] = {"analysis": analysis.to_dict(), "decision": decision.to_dict()}
    try:
        # The department's setup-error model is not known to the service yet: the defaults
        # (also the CLI's) are used, and the result names them.
        document["margins"] = suggest_margins(
            analysis,
            systematic_setup_sd_mm=DEFAULT_SYSTEMATIC_SETUP_SD_MM,
            random_setup_sd_mm=DEFAULT_RANDOM_SETUP_SD_MM,
            protocol=DEFAULT_PROTOCOL,
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
        status, reason, recommendation, result = _analyse(track, source, context, protocol_version)
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
