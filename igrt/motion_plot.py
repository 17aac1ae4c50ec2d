"""The one-page picture of a motion assessment a therapist reads (PNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from igrt.motion_assessment import MotionAssessment

__all__ = ["draw_assessment", "plot_assessment"]

_DECISION_COLOURS = {
    "no_device": "#1b7837",
    "active_breathing_control": "#2166ac",
    "abdominal_compression": "#2166ac",
    "gating_or_larger_margin": "#b35806",
    "reassess": "#b2182b",
}


def plot_assessment(assessment: MotionAssessment, path: str | os.PathLike[str]) -> Path:
    """Draw the trace, its cycles, holds, lost frames, excursion and the 5 mm threshold.

    Parameters
    ----------
    assessment : MotionAssessment
        What to draw.
    path : path-like
        PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(11, 5.4), dpi=110)
    try:
        draw_assessment(axes, assessment)
        figure.tight_layout()
        out = Path(path)
        figure.savefig(out)
    finally:
        plt.close(figure)
    return out


def draw_assessment(axes: Axes, assessment: MotionAssessment) -> None:
    """Draw the trace, cycles, holds, lost frames and thresholds on ``axes`` (PNG and PDF)."""
    trace, analysis, decision = assessment.trace, assessment.analysis, assessment.decision
    axes.plot(trace.times_s, trace.si_mm, color="#333333", linewidth=1.2, label="dome SI")
    lost = ~(trace.valid if trace.valid is not None else np.isfinite(trace.si_mm))
    if lost.any():
        low = float(np.nanmin(trace.si_mm)) if np.isfinite(trace.si_mm).any() else 0.0
        axes.plot(
            trace.times_s[lost],
            np.full(int(lost.sum()), low - 1.0),
            "|",
            color="#b2182b",
            markersize=10,
            label=f"lost frames ({int(lost.sum())})",
        )
    inliers = [c for c in analysis.cycles if not c.is_outlier]
    outliers = [c for c in analysis.cycles if c.is_outlier]
    if inliers:
        axes.plot(
            [c.inhale_s for c in inliers],
            [c.inhale_mm for c in inliers],
            "v",
            color="#2166ac",
            markersize=6,
            label="end-inhale",
        )
        axes.plot(
            [c.exhale_start_s for c in inliers],
            [c.exhale_start_mm for c in inliers],
            "^",
            color="#1b7837",
            markersize=6,
            label="end-exhale",
        )
    if outliers:
        axes.plot(
            [c.inhale_s for c in outliers],
            [c.inhale_mm for c in outliers],
            "x",
            color="#999999",
            markersize=7,
            label="outlier cycle (excluded)",
        )
    for number, hold in enumerate(analysis.holds):
        axes.axvspan(
            hold.start_s,
            hold.end_s,
            color="#fdb863",
            alpha=0.35,
            label="breath hold" if number == 0 else None,
        )
        axes.annotate(
            f"hold {hold.duration_s:.1f} s\ndrift {hold.drift_mm:+.1f} mm",
            xy=(0.5 * (hold.start_s + hold.end_s), hold.level_mm),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    if inliers:
        exhale_level = float(np.median([c.exhale_start_mm for c in inliers]))
        threshold_mm = float(
            decision.thresholds.get(
                "motion_threshold_mm",
                decision.thresholds.get("compression_residual_threshold_mm", 5.0),
            )
        )
        axes.axhline(exhale_level, color="#1b7837", linestyle=":", linewidth=1)
        axes.axhline(
            exhale_level - threshold_mm,
            color="#e08214",
            linestyle="--",
            linewidth=1.4,
            label=f"{threshold_mm:g} mm below end-exhale (threshold)",
        )
        if analysis.excursion_median_mm is not None:
            right = float(trace.times_s[-1])
            axes.annotate(
                "",
                xy=(right, exhale_level - analysis.excursion_median_mm),
                xytext=(right, exhale_level),
                arrowprops={"arrowstyle": "<->", "color": "#2166ac", "linewidth": 1.5},
            )
    recommendation = decision.recommendation.value
    excursion = (
        f"{analysis.excursion_median_mm:.1f} ± {analysis.excursion_uncertainty_mm or 0:.1f} mm"
        if analysis.excursion_median_mm is not None
        else "not measurable"
    )
    axes.set_title(
        f"{recommendation.replace('_', ' ').upper()}    excursion {excursion}    "
        f"({assessment.source}, protocol {decision.protocol_version})",
        color=_DECISION_COLOURS.get(recommendation, "black"),
        fontsize=11,
        loc="left",
    )
    axes.set_xlabel("time (s)")
    axes.set_ylabel("dome superior-inferior position (mm, superior +)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=6, fontsize=8, frameon=False)
    details = [
        f"period {analysis.period_median_s:.1f} s" if analysis.period_median_s else None,
        f"drift {analysis.drift_mm_per_min:+.1f} mm/min"
        if analysis.drift_mm_per_min is not None
        else None,
        f"amplitude CV {analysis.amplitude_cv:.2f}" if analysis.amplitude_cv is not None else None,
        f"{analysis.n_cycles} cycles",
    ]
    flags = [issue.flag.value.replace("_", " ") for issue in analysis.quality]
    if flags:
        details.append("quality: " + ", ".join(flags))
    axes.text(
        0.01,
        0.02,
        "   ".join(d for d in details if d),
        transform=axes.transAxes,
        fontsize=8,
        color="#444444",
    )
