"""The printable report of a stored motion assessment (:mod:`igrt.motion_report`).

The service stores an assessment as its dome track and the JSON of its analysis, decision and
margins, not as the objects the report draws. The report is therefore rebuilt from the stored
track with the library's own steps (:func:`igrt.motion_assessment.trace_from_track`,
:func:`igrt.breathing_analysis.analyse_breathing`,
:func:`igrt.decision.recommend_motion_management`, :func:`igrt.margins.suggest_margins`), under
the protocol the assessment was made with, and the rebuilt decision must equal the stored one:
a report that would print anything else than the decision on record is refused
(:class:`ReportUnavailableError`), never printed.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from api.assessment import json_safe
from api.enums import AssessmentStatusValues
from igrt.errors import IgrtError, ProcessingError
from igrt.motion_assessment import DomeHint, MotionAssessment, trace_from_track
from igrt.motion_report import ReportContext, write_assessment_pdf
from igrt.protocol_file import LoadedProtocol
from igrt.tracking import DomeObservation, DomeTrack, TrackingStatusValues

__all__ = ["ReportUnavailableError", "StoredAssessment", "write_stored_assessment_pdf"]

_PYPLOT = threading.Lock()
"""matplotlib's pyplot (which the report's pages use) is not thread-safe: one report at a time."""


class ReportUnavailableError(IgrtError):
    """The stored assessment has no decision to print, or it cannot be reproduced exactly."""


class StoredAssessment:
    """What the service stored of one assessment (the row's columns the report needs).

    Parameters
    ----------
    upload_id : str
        The assessed upload (the assessment's source is ``"upload <id>"``).
    status : str
        ``completed``, ``tracked`` or ``failed``; only a completed one has a decision.
    context : str
        The assessment context (free breathing, compression, breath-hold trial).
    track : list of dict
        The stored observations (:meth:`igrt.tracking.DomeObservation.to_dict`).
    result : dict or None
        The stored analysis, decision, protocol, setup-error model and margins.
    dome_hint : dict or None
        ``column_px``, ``row_px`` and ``given_by`` of the hint the tracker started from.
    """

    def __init__(
        self,
        *,
        upload_id: str,
        status: str,
        context: str,
        track: list[dict[str, Any]],
        result: dict[str, Any] | None,
        dome_hint: dict[str, Any] | None,
    ) -> None:
        self.upload_id = upload_id
        self.status = status
        self.context = context
        self.track = track
        self.result = result
        self.dome_hint = dome_hint


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _observation(stored: dict[str, Any]) -> DomeObservation:
    curve = np.asarray(stored.get("dome_curve_px") or [], dtype=np.float64).reshape(-1, 2)
    return DomeObservation(
        frame_index=int(stored["frame_index"]),
        time_s=float(stored["time_s"]),
        status=TrackingStatusValues(stored["status"]),
        confidence=float(stored["confidence"]),
        apex_column=_number(stored.get("apex_column")),
        apex_row=_number(stored.get("apex_row")),
        apex_u_mm=_number(stored.get("apex_u_mm")),
        apex_v_mm=_number(stored.get("apex_v_mm")),
        si_isocentre_mm=_number(stored.get("si_isocentre_mm")),
        dome_columns=curve[:, 0],
        dome_rows=curve[:, 1],
        gantry_deg=float(stored.get("gantry_deg") or 0.0),
        apex_at_edge_onset=bool(stored.get("apex_at_edge_onset", True)),
    )


def _same(rebuilt: Any, stored: Any) -> bool:
    """Equal as JSON, floats to 1e-9 relative (the stored values went through JSON)."""
    if isinstance(rebuilt, dict) and isinstance(stored, dict):
        return rebuilt.keys() == stored.keys() and all(_same(rebuilt[k], stored[k]) for k in stored)
    if isinstance(rebuilt, list) and isinstance(stored, list):
        return len(rebuilt) == len(stored) and all(
            _same(a, b) for a, b in zip(rebuilt, stored, strict=True)
        )
    if isinstance(rebuilt, float) and isinstance(stored, int | float):
        return math.isclose(rebuilt, stored, rel_tol=1e-9, abs_tol=1e-12)
    return bool(rebuilt == stored)


def _rebuild(stored: StoredAssessment, protocol: LoadedProtocol) -> MotionAssessment:
    from igrt.breathing_analysis import analyse_breathing
    from igrt.decision import BreathHoldEvidence, recommend_motion_management
    from igrt.margins import suggest_margins

    result = stored.result or {}
    if stored.status != AssessmentStatusValues.COMPLETED.value or not result:
        raise ReportUnavailableError(
            f"the assessment is {stored.status}: there is no decision to report"
        )
    recorded = result.get("protocol") or {}
    if recorded.get("sha256") != protocol.sha256:
        raise ReportUnavailableError(
            f"the assessment was made under protocol {recorded.get('version')!r} "
            f"(sha256 {str(recorded.get('sha256'))[:12]}), not the one this service runs "
            f"({protocol.protocol.version!r}, sha256 {protocol.sha256[:12]}): its report cannot "
            "be rebuilt here"
        )
    source = f"upload {stored.upload_id}"
    track = DomeTrack(tuple(_observation(o) for o in stored.track))
    trace = trace_from_track(track, source=source)
    analysis = analyse_breathing(trace, protocol=protocol.protocol)
    decision = recommend_motion_management(
        analysis, protocol=protocol.protocol, context=stored.context
    )
    given = ((result.get("decision") or {}).get("inputs") or {}).get("hold_evidence")
    if not _same(json_safe(decision.to_dict()), result.get("decision")) and given:
        # The assessment was given breath-hold evidence (an ABC session, a spirometer log).
        decision = recommend_motion_management(
            analysis,
            protocol=protocol.protocol,
            context=stored.context,
            hold_evidence=BreathHoldEvidence(**given),
        )
    if not _same(json_safe(decision.to_dict()), result.get("decision")) or not _same(
        json_safe(analysis.to_dict()), result.get("analysis")
    ):
        raise ReportUnavailableError(
            "the stored decision cannot be reproduced from the stored track: no report is "
            "printed that could differ from the decision on record"
        )
    margins, margins_reason = None, None
    try:
        margins = suggest_margins(analysis, protocol=protocol.protocol, decision=decision)
    except ProcessingError as error:
        margins_reason = str(error)
    hint = stored.dome_hint
    return MotionAssessment(
        source=source,
        trace=trace,
        analysis=analysis,
        decision=decision,
        margins=margins,
        margins_reason=margins_reason,
        track=track,
        setup_error_model=dict(result.get("setup_error_model_mm") or {}),
        protocol=recorded,
        dome_hint=None
        if hint is None
        else DomeHint(hint["column_px"], hint["row_px"], hint.get("given_by"), "request"),
    )


def write_stored_assessment_pdf(
    stored: StoredAssessment,
    protocol: LoadedProtocol,
    target: Path,
    *,
    patient_name: str,
    patient_id: str,
    reviewer: str | None,
    created: datetime | None = None,
) -> Path:
    """Write the report of a stored assessment to ``target`` (a ``.pdf`` path).

    Raises
    ------
    ReportUnavailableError
        No decision (tracked or failed), another protocol, or a decision that cannot be
        reproduced from the stored track.
    """
    assessment = _rebuild(stored, protocol)
    context = ReportContext(
        patient_name=patient_name,
        patient_id=patient_id,
        reviewer=reviewer,
        created=created or datetime.now(UTC),
    )
    with _PYPLOT:
        return write_assessment_pdf(assessment, target, context)
