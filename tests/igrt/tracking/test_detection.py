"""Dome detection on one frame: how far anatomy's dome is trusted."""

from __future__ import annotations

from fixtures.fluoro import FluoroSimulation
from igrt.tracking.detection import (
    HemidiaphragmValues,
    detect_dome,
)

from .conftest import first_frame_view


def test_anatomy_confirms_a_clear_dome_and_flags_a_faint_one(
    regular_clip: FluoroSimulation,
) -> None:
    image, view = first_frame_view(regular_clip)
    clear = detect_dome(image, view, HemidiaphragmValues.RIGHT)
    assert clear.confirmed
    assert clear.candidate is not None
    assert clear.required_contrast_to_noise is None
    contrast = clear.candidate.contrast_to_noise

    faint = detect_dome(
        image, view, HemidiaphragmValues.RIGHT, min_contrast_to_noise=1.5 * contrast
    )
    assert not faint.confirmed
    assert faint.candidate == clear.candidate
    assert faint.required_contrast_to_noise == 0.75 * contrast
    assert "faint" in faint.reason

    # Below half the minimum anatomy's dome is not offered: only the edge-strength search is.
    too_faint = detect_dome(
        image, view, HemidiaphragmValues.RIGHT, min_contrast_to_noise=2.5 * contrast
    )
    assert not too_faint.confirmed
    assert too_faint.required_contrast_to_noise is None
    assert "edge strength" in too_faint.reason
