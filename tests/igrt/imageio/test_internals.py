"""Private helpers whose properties the public functions rely on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igrt.frame_of_reference import PatientPositionValues
from igrt.imageio._dicom_attributes import ds_float, ds_string, make_uid
from igrt.imageio._positioner_angles import (
    gantry_deg_from_primary_angle,
    primary_angle_from_gantry_deg,
    wrap_deg,
)
from igrt.imageio._rescale import encode_as_integers

angles = st.floats(min_value=0.0, max_value=359.999, allow_nan=False)
positions = st.sampled_from(list(PatientPositionValues))


@settings(derandomize=True, deadline=None)
@given(gantry_deg=angles, position=positions)
def test_primary_angle_conversion_inverts(
    gantry_deg: float, position: PatientPositionValues
) -> None:
    primary = primary_angle_from_gantry_deg(gantry_deg, position)
    assert -180.0 <= primary < 180.0
    back = gantry_deg_from_primary_angle(primary, position)
    assert abs(wrap_deg(back - gantry_deg)) < 1e-9


@settings(derandomize=True, deadline=None)
@given(gantry_deg=angles, position=positions)
def test_receptor_faces_the_source_across_the_patient(
    gantry_deg: float, position: PatientPositionValues
) -> None:
    # Opposite sources give receptor angles 180 deg apart, whatever the position.
    a = primary_angle_from_gantry_deg(gantry_deg, position)
    b = primary_angle_from_gantry_deg(gantry_deg + 180.0, position)
    assert abs(abs(wrap_deg(a - b)) - 180.0) < 1e-9


@pytest.mark.parametrize(
    ("position", "expected"),
    [("HFS", 180.0), ("HFP", 0.0), ("FFS", 180.0), ("FFP", 0.0)],
)
def test_source_above_the_couch(position: str, expected: float) -> None:
    # Source above: the receptor is below the couch, at the back of a supine patient.
    assert abs(wrap_deg(primary_angle_from_gantry_deg(0.0, position) - expected)) < 1e-9


@settings(derandomize=True, deadline=None)
@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_ds_strings_fit_sixteen_characters_and_round_trip(value: float) -> None:
    text = ds_string(value)
    assert len(text) <= 16
    assert ds_float(value) == float(text)
    assert math.isclose(float(text), value, rel_tol=1e-9, abs_tol=1e-9)


@settings(derandomize=True, deadline=None)
@given(st.lists(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False), min_size=1, max_size=50))
def test_rescale_error_is_at_most_half_a_slope(values: list[float]) -> None:
    array = np.asarray(values)
    encoding = encode_as_integers(array, np.uint16)
    decoded = encoding.stored.astype(np.float64) * encoding.slope + encoding.intercept
    assert np.abs(decoded - array).max() <= encoding.max_error * (1 + 1e-6) + 1e-9


def test_integers_in_range_are_kept_exactly() -> None:
    array = np.array([-1024, 0, 3071], np.int32)
    encoding = encode_as_integers(array, np.int16)
    assert encoding.is_identity
    np.testing.assert_array_equal(encoding.stored, array)


def test_seeded_uids_are_stable_and_distinct() -> None:
    assert make_uid("seed", "series") == make_uid("seed", "series")
    assert make_uid("seed", "series") != make_uid("seed", "study")
    assert make_uid(None, "x") != make_uid(None, "x")
