"""The printable PDF of a motion assessment: content of every page, the file, the CLI flag."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from fixtures import breathing
from igrt.cli.main import main
from igrt.motion_assessment import MotionAssessment, assess_motion
from igrt.motion_report import (
    ReportContext,
    protocol_provenance,
    report_figures,
    write_assessment_pdf,
)
from igrt.trace import BreathingTrace

CONTEXT = ReportContext(
    patient_name="Doe^Jane",
    patient_id="P-0042",
    reviewer="A. Physicist",
    created=datetime(2026, 12, 7, 9, 30, tzinfo=UTC),
)


@pytest.fixture(scope="module")
def trace_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    signal = breathing.regular(12.0, 4.0, 60.0, 25.0)
    path = tmp_path_factory.mktemp("report") / "trace.csv"
    BreathingTrace(signal.times_s, signal.si_mm).to_csv(path)
    return path


@pytest.fixture(scope="module")
def assessment(trace_csv: Path) -> MotionAssessment:
    return assess_motion(trace_csv)


def _texts(figure: plt.Figure) -> list[str]:
    texts = [text.get_text() for text in figure.texts]
    for axes in figure.axes:
        texts.append(axes.get_title(loc="left"))
    return texts


def test_every_page_names_the_patient_and_the_protocol(assessment: MotionAssessment) -> None:
    figures = list(report_figures(assessment, CONTEXT))
    try:
        assert len(figures) >= 2
        version = assessment.decision.protocol_version
        for number, figure in enumerate(figures, start=1):
            footer = [t for t in _texts(figure) if "Patient" in t]
            assert footer, f"page {number} has no footer"
            assert "Doe^Jane" in footer[0]
            assert "P-0042" in footer[0]
            assert version in footer[0]
            assert f"page {number} of {len(figures)}" in footer[0]
        text = "\n".join(line for figure in figures[:-1] for line in _texts(figure))
        assert assessment.decision.recommendation.value.replace("_", " ").upper() in text
        assert "motion_threshold_mm = 5: CLINICAL.md" in text  # threshold with provenance
        assert "reviewer: A. Physicist" in text
        assert "2026-12-07T09:30:00+00:00" in text
        assert "internal_margin_mm" in text  # margins
        assert figures[-1].axes, "the last page holds the trace plot"
    finally:
        for figure in figures:
            plt.close(figure)


def test_pdf_file_has_one_page_per_figure_and_is_reproducible(
    assessment: MotionAssessment, tmp_path: Path
) -> None:
    first = write_assessment_pdf(assessment, tmp_path / "a.pdf", CONTEXT).read_bytes()
    second = write_assessment_pdf(assessment, tmp_path / "b.pdf", CONTEXT).read_bytes()
    assert first.startswith(b"%PDF")
    assert first == second  # no creation date: same assessment, same bytes
    figures = list(report_figures(assessment, CONTEXT))
    for figure in figures:
        plt.close(figure)
    assert first.count(b"/Type /Page\n") + first.count(b"/Type /Page ") >= len(figures) - 1
    with pytest.raises(ValueError, match=r"\.pdf"):
        write_assessment_pdf(assessment, tmp_path / "report.png", CONTEXT)


def test_every_protocol_threshold_has_a_provenance() -> None:
    provenance = protocol_provenance()
    assert provenance["motion_threshold_mm"].startswith("CLINICAL.md")
    assert "Protocol choice" in provenance["min_abc_holds"]


def test_cli_assess_pdf(trace_csv: Path, tmp_path: Path) -> None:
    code = main(
        ["motion", "assess", str(trace_csv), "--out", str(tmp_path), "--pdf",
         "--patient-name", "Doe^Jane", "--patient-id", "P-0042", "--reviewer", "A. Physicist"]
    )  # fmt: skip
    assert code == 0
    assert (tmp_path / "trace" / "report.pdf").read_bytes().startswith(b"%PDF")
