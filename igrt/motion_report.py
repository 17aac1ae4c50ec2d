"""A printable PDF of a motion assessment, for the patient's chart.

Pages: the decision (recommendation, rationale, the thresholds applied with their provenance as
the protocol documents it, the measured inputs, the margins, reviewer and time), then the
breathing trace (:func:`igrt.motion_plot.draw_assessment`). Every page carries the patient's
name and ID, the protocol version, the page number and the report time.

Written with matplotlib's PDF backend: a dependency already, vector text and figures, nothing
to install for a report of a few pages of text and one plot (a layout library such as
reportlab would add a dependency and gain nothing here). The file's creation date is left out,
so the same assessment and context give the same bytes.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igrt.errors import InvalidInputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from igrt.motion_assessment import MotionAssessment

__all__ = ["ReportContext", "protocol_provenance", "report_figures", "write_assessment_pdf"]

_A4_INCHES = (8.27, 11.69)
_LINES_PER_PAGE = 58
_WRAP = 100
_NOT_STATED = "(not stated)"


@dataclass(frozen=True)
class ReportContext:
    """Who the report is about, who reviewed it and when.

    Attributes
    ----------
    patient_name, patient_id : str
        Printed on every page; empty is printed as "(not stated)".
    reviewer : str or None
        The person who reviewed the assessment; "not reviewed" when ``None``.
    created : datetime
        Report time (printed with its time zone when it has one).
    """

    patient_name: str
    patient_id: str
    reviewer: str | None
    created: datetime


def protocol_provenance() -> dict[str, str]:
    """Each protocol field's justification, from the table in :mod:`igrt.protocol`'s docstring."""
    import igrt.protocol

    provenance: dict[str, str] = {}
    field: str | None = None
    for line in (igrt.protocol.__doc__ or "").splitlines():
        match = re.match(r"^``(\w+)``\s+\S.*?\s{2,}(\S.*)$", line)
        if match:
            field = match.group(1)
            provenance[field] = match.group(2).strip()
        elif field and line.startswith(" " * 20) and line.strip() and not line.startswith("="):
            provenance[field] += " " + line.strip()
        elif not line.strip() or line.startswith("="):
            field = None
    return provenance


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _decision_lines(assessment: MotionAssessment, context: ReportContext) -> Iterator[str]:
    decision, analysis = assessment.decision, assessment.analysis
    yield f"# Breathing-motion assessment: {assessment.source}"
    yield ""
    yield f"## Decision: {decision.recommendation.value.replace('_', ' ').upper()}"
    yield f"reason: {decision.reason.value}; context: {decision.context.value}"
    for sentence in decision.rationale:
        yield from textwrap.wrap(f"- {sentence}", _WRAP, subsequent_indent="  ")
    yield ""
    yield "## Measured"
    uncertainty = analysis.excursion_uncertainty_mm
    if analysis.excursion_median_mm is not None:
        yield (
            f"excursion (median of {analysis.n_cycles} cycles) {analysis.excursion_median_mm:.1f}"
            f" mm +/- {uncertainty or 0.0:.1f} mm (1 SD)"
        )
    for key, value in decision.inputs.items():
        yield f"{key}: {_value(value)}"
    yield ""
    yield f"## Thresholds applied (protocol {decision.protocol_version}) and their provenance"
    provenance = protocol_provenance()
    for key, value in decision.thresholds.items():
        source = provenance.get(key, "see the protocol")
        yield from textwrap.wrap(
            f"{key} = {_value(value)}: {source}", _WRAP, subsequent_indent="    "
        )
    yield ""
    yield "## Margins (superior-inferior)"
    margins = assessment.margins
    if margins is None:
        yield f"none: {assessment.margins_reason}"
    else:
        for key, value in margins.to_dict().items():
            yield f"{key}: {_value(value)}"
    yield ""
    yield "## Review"
    yield f"reviewer: {context.reviewer or 'not reviewed'}"
    yield f"report time: {context.created.isoformat(timespec='seconds')}"


def _footer(
    figure: Figure, assessment: MotionAssessment, context: ReportContext, page: str
) -> None:
    name = context.patient_name or _NOT_STATED
    identifier = context.patient_id or _NOT_STATED
    figure.text(
        0.06,
        0.025,
        f"Patient {name}  ID {identifier}    protocol {assessment.decision.protocol_version}    "
        f"{context.created.isoformat(timespec='minutes')}    page {page}",
        fontsize=7.5,
        color="#333333",
    )


def _text_page(figure: Figure, lines: list[str]) -> None:
    top, step = 0.955, 0.0155
    for number, line in enumerate(lines):
        heading = line.startswith("#")
        figure.text(
            0.06,
            top - number * step,
            line.lstrip("# "),
            fontsize=11 if line.startswith("# ") else 9.5 if heading else 8,
            fontweight="bold" if heading else "normal",
            family="DejaVu Sans",
        )


def report_figures(assessment: MotionAssessment, context: ReportContext) -> Iterator[Figure]:
    """The report's pages as matplotlib figures, in order (the caller closes each).

    Text pages of the decision first (A4 portrait), then the breathing trace (A4 landscape);
    each carries the footer with patient, protocol version, time and page number.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from igrt.motion_plot import draw_assessment

    lines = list(_decision_lines(assessment, context))
    text_pages = [lines[i : i + _LINES_PER_PAGE] for i in range(0, len(lines), _LINES_PER_PAGE)]
    n_pages = len(text_pages) + 1
    for number, page_lines in enumerate(text_pages, start=1):
        figure = plt.figure(figsize=_A4_INCHES)
        _text_page(figure, page_lines)
        _footer(figure, assessment, context, f"{number} of {n_pages}")
        yield figure
    figure = plt.figure(figsize=(_A4_INCHES[1], _A4_INCHES[0]))
    draw_assessment(figure.add_axes((0.07, 0.2, 0.9, 0.7)), assessment)
    _footer(figure, assessment, context, f"{n_pages} of {n_pages}")
    yield figure


def write_assessment_pdf(
    assessment: MotionAssessment, path: str | os.PathLike[str], context: ReportContext
) -> Path:
    """Write the assessment's printable report (:func:`report_figures`, one page each).

    Parameters
    ----------
    assessment : MotionAssessment
        What to report.
    path : path-like
        The ``.pdf`` file to write (replaced).
    context : ReportContext
        Patient, reviewer and report time.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    InvalidInputError
        The path does not end in ``.pdf`` or cannot be written.
    """
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    out = Path(path)
    if out.suffix.lower() != ".pdf":
        raise InvalidInputError(f"a report path must end in .pdf, got {out.name}", field="path")
    metadata = {"CreationDate": None, "Title": "igrt motion assessment"}
    try:
        with PdfPages(out, metadata=metadata) as pdf:
            for figure in report_figures(assessment, context):
                pdf.savefig(figure)
                plt.close(figure)
    except OSError as error:
        raise InvalidInputError(f"cannot write {out}: {error}", field="path") from error
    return out
