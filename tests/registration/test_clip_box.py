"""ClipBox: validation, geometry helpers, and the automatic dome box."""

from __future__ import annotations

import json

import numpy as np
import pytest

from igrt.errors import InvalidInputError
from igrt.volume import Volume
from registration import DEFAULT_DOME_BOX_EXTENT_MM, ClipBox, ClipBoxError
from registration.clip_box import volume_bounds_lps_mm


def test_geometry_of_a_box() -> None:
    box = ClipBox((-100.0, -80.0, -240.0), (0.0, 30.0, -150.0))
    assert box.size_mm.tolist() == [100.0, 110.0, 90.0]
    assert box.centre_lps_mm.tolist() == [-50.0, -25.0, -195.0]
    assert box.expanded(5.0).size_mm.tolist() == [110.0, 120.0, 100.0]
    assert box.translated((1.0, 2.0, 3.0)).lower_lps_mm.tolist() == [-99.0, -78.0, -237.0]
    assert json.loads(json.dumps(box.to_dict())) == box.to_dict()
    assert box == ClipBox(box.lower_lps_mm, box.upper_lps_mm)
    assert hash(box) == hash(ClipBox(box.lower_lps_mm, box.upper_lps_mm))


def test_fraction_inside_and_intersection() -> None:
    box = ClipBox((0.0, 0.0, 0.0), (100.0, 100.0, 100.0))
    assert box.fraction_inside((0.0, 0.0, 0.0), (100.0, 100.0, 100.0)) == pytest.approx(1.0)
    assert box.fraction_inside((50.0, -10.0, -10.0), (200.0, 200.0, 200.0)) == pytest.approx(0.5)
    assert box.fraction_inside((200.0, 0.0, 0.0), (300.0, 100.0, 100.0)) == 0.0
    common = box.intersection(ClipBox((50.0, 50.0, 50.0), (150.0, 150.0, 150.0)))
    assert common is not None
    assert common.lower_lps_mm.tolist() == [50.0, 50.0, 50.0]
    assert box.intersection(ClipBox((90.0, 0.0, 0.0), (190.0, 100.0, 100.0))) is None


def test_automatic_box_around_the_apex() -> None:
    apex = np.array([-50.0, -20.0, -177.0])
    box = ClipBox.around(apex)
    below = np.array([pair[0] for pair in DEFAULT_DOME_BOX_EXTENT_MM])
    above = np.array([pair[1] for pair in DEFAULT_DOME_BOX_EXTENT_MM])
    np.testing.assert_allclose(box.lower_lps_mm, apex + below)
    np.testing.assert_allclose(box.upper_lps_mm, apex + above)
    # The dome edge (apex) lies inside with lung above it and liver below.
    assert box.upper_lps_mm[2] - apex[2] >= 25.0
    assert apex[2] - box.lower_lps_mm[2] >= 50.0


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ((0.0, 0.0, 0.0), (10.0, 100.0, 100.0)),  # too thin
        ((0.0, 0.0, 0.0), (-100.0, 100.0, 100.0)),  # inverted
        ((0.0, 0.0, float("nan")), (100.0, 100.0, 100.0)),
        ((0.0, 0.0), (100.0, 100.0, 100.0)),
        ("abc", (100.0, 100.0, 100.0)),
    ],
)
def test_malformed_boxes_are_refused(lower: object, upper: object) -> None:
    with pytest.raises(ClipBoxError):
        ClipBox(lower, upper)  # type: ignore[arg-type]


def test_clip_box_error_is_an_invalid_input() -> None:
    assert issubclass(ClipBoxError, InvalidInputError)


def test_volume_bounds_follow_direction_cosines() -> None:
    volume = Volume(
        np.zeros((3, 4, 5), np.float32),
        spacing_mm=(1.0, 2.0, 3.0),
        origin_lps_mm=(10.0, 20.0, 30.0),
        direction=np.diag([1.0, -1.0, 1.0]),
    )
    lower, upper = volume_bounds_lps_mm(volume)
    assert lower.tolist() == [10.0, 14.0, 30.0]
    assert upper.tolist() == [14.0, 20.0, 36.0]
