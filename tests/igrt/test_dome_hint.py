"""``igrt.motion_assessment.DomeHint`` and the pixel meaning a frame folder must be given."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fixtures import breathing
from igrt.errors import ImageReadError, InvalidInputError
from igrt.motion_assessment import DomeHint, GeometryOptions, assess_motion, load_recording
from igrt.sequence import IntensityValues
from igrt.trace import BreathingTrace


def test_a_hint_is_a_pixel_on_the_panel() -> None:
    hint = DomeHint.parse(" 12, 40 ", source="--dome-hint")
    assert (hint.column_px, hint.row_px, hint.source) == (12.0, 40.0, "--dome-hint")
    hint.check_on_panel((41, 13))  # the last row and column (from 0) are on the panel
    with pytest.raises(InvalidInputError, match="outside the first frame"):
        hint.check_on_panel((40, 13))
    with pytest.raises(InvalidInputError, match="outside the first frame"):
        hint.check_on_panel((41, 12))
    assert hint.to_dict() == {
        "column_px": 12.0,
        "row_px": 40.0,
        "given_by": None,
        "source": "--dome-hint",
    }


@pytest.mark.parametrize("text", ["", "1", "1,2,3", "x,2", "1;2"])
def test_malformed_hint_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError, match="COLUMN,ROW") as raised:
        DomeHint.parse(text)
    assert raised.value.field == "dome_hint"


@pytest.mark.parametrize(
    ("column", "row"), [(-1.0, 2.0), (1.0, float("nan")), (float("inf"), 1.0), (True, 1.0)]
)
def test_hint_values_that_are_no_pixel_are_refused(column: float, row: float) -> None:
    with pytest.raises(InvalidInputError):
        DomeHint(column, row)


def test_a_trace_has_no_image_to_hint_on() -> None:
    signal = breathing.regular(8.0, 4.0, 40.0, 10.0)
    trace = BreathingTrace(signal.times_s, signal.si_mm)
    with pytest.raises(InvalidInputError, match="no image"):
        assess_motion(trace, dome_hint=DomeHint(10.0, 10.0))


def test_a_frame_folder_must_be_told_what_its_pixels_mean(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for index in range(2):
        frame = rng.integers(0, 255, (16, 20), dtype=np.uint8)
        assert cv2.imwrite(str(tmp_path / f"f{index}.png"), frame)
    with pytest.raises(ImageReadError, match="pass intensity") as raised:
        load_recording(tmp_path)
    assert raised.value.field == "intensity"
    sequence = load_recording(
        tmp_path, GeometryOptions(pixel_pitch_mm=0.8, fps=5.0), intensity=IntensityValues.DISPLAY
    )
    assert not isinstance(sequence, BreathingTrace)
    assert sequence.intensity is IntensityValues.DISPLAY
    assert sequence.frames.shape == (2, 16, 20)
