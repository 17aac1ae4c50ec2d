"""Tests for igrt.trace: the SI breathing trace, its validation and its CSV format."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fixtures.breathing import regular
from igrt.errors import InvalidInputError
from igrt.trace import CSV_HEADER, BreathingTrace

NAN = float("nan")


def _trace(**overrides: object) -> BreathingTrace:
    values: dict[str, object] = {
        "times_s": [0.0, 0.1, 0.2, 0.3],
        "si_mm": [0.0, -1.0, NAN, -0.5],
    }
    values.update(overrides)
    return BreathingTrace(**values)  # type: ignore[arg-type]


# --- construction -----------------------------------------------------------------------------


def test_defaults_mark_nan_samples_lost_with_zero_confidence() -> None:
    trace = _trace()
    assert trace.valid is not None
    assert trace.confidence is not None
    assert trace.valid.tolist() == [True, True, False, True]
    assert trace.confidence.tolist() == [1.0, 1.0, 0.0, 1.0]
    assert trace.n_samples == 4
    assert trace.n_lost_frames == 1
    assert trace.lost_fraction == pytest.approx(0.25)
    assert trace.duration_s == pytest.approx(0.3)
    assert trace.sample_rate_hz == pytest.approx(10.0)
    assert trace.tracking_sd_mm is None


def test_arrays_are_copied_and_read_only() -> None:
    times = np.array([0.0, 1.0, 2.0])
    si = np.array([0.0, -2.0, 0.0])
    trace = BreathingTrace(times, si)
    times[0] = -5.0
    si[1] = 99.0
    assert trace.times_s[0] == 0.0
    assert trace.si_mm[1] == -2.0
    with pytest.raises(ValueError, match="read-only"):
        trace.si_mm[0] = 1.0
    assert trace.times_s.dtype == np.float64


def test_explicit_valid_mask_stores_lost_positions_as_nan() -> None:
    trace = _trace(si_mm=[0.0, -1.0, -2.0, -0.5], valid=np.array([True, False, True, True]))
    assert math.isnan(trace.si_mm[1])
    assert trace.si_mm[2] == -2.0
    assert trace.n_lost_frames == 1


def test_confidence_nan_allowed_for_lost_frames_only() -> None:
    trace = _trace(confidence=[0.9, 0.8, NAN, 0.7])
    assert trace.confidence is not None
    assert trace.confidence.tolist() == [0.9, 0.8, 0.0, 0.7]
    with pytest.raises(InvalidInputError) as info:
        _trace(confidence=[NAN, 0.8, 0.0, 0.7])
    assert info.value.field == "confidence"


def test_tracking_sd_is_stored_as_float() -> None:
    trace = _trace(tracking_sd_mm=1)
    assert trace.tracking_sd_mm == 1.0
    assert isinstance(trace.tracking_sd_mm, float)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"times_s": [0.0, 0.2, 0.1, 0.3]}, "times_s"),
        ({"times_s": [0.0, 0.1, 0.1, 0.3]}, "times_s"),
        ({"times_s": [0.0, NAN, 0.2, 0.3]}, "times_s"),
        ({"times_s": [0.0], "si_mm": [0.0]}, "times_s"),
        ({"times_s": [[0.0, 0.1], [0.2, 0.3]]}, "times_s"),
        ({"times_s": ["a", "b", "c", "d"]}, "times_s"),
        ({"si_mm": [0.0, 1.0, 2.0]}, "si_mm"),
        ({"si_mm": [0.0, NAN, 1.0, 2.0], "valid": np.array([True] * 4)}, "si_mm"),
        ({"si_mm": [0.0, math.inf, 1.0, 2.0], "valid": np.array([True] * 4)}, "si_mm"),
        ({"valid": [1, 1, 0, 1]}, "valid"),
        ({"valid": np.array([True, True, False])}, "valid"),
        ({"confidence": [0.5, 1.2, 0.0, 0.5]}, "confidence"),
        ({"confidence": [0.5, -0.1, 0.0, 0.5]}, "confidence"),
        ({"confidence": [0.5, 0.5, 0.5]}, "confidence"),
        ({"tracking_sd_mm": -0.1}, "tracking_sd_mm"),
        ({"tracking_sd_mm": math.nan}, "tracking_sd_mm"),
        ({"tracking_sd_mm": True}, "tracking_sd_mm"),
        ({"source": 3}, "source"),
    ],
)
def test_invalid_input_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        _trace(**overrides)
    assert info.value.field == field


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_round_trip_is_exact_including_lost_frames(tmp_path: Path) -> None:
    signal = regular(8.0, 4.0, 10.0, 12.5, noise_sd_mm=0.3, seed=3)
    si = signal.si_mm.copy()
    si[[5, 6, 40]] = np.nan
    confidence = np.linspace(0.2, 1.0, si.size)
    trace = BreathingTrace(
        signal.times_s, si, confidence, tracking_sd_mm=0.25, source="synthetic, seed 3"
    )
    path = trace.to_csv(tmp_path / "trace.csv")
    back = BreathingTrace.from_csv(path)
    np.testing.assert_array_equal(back.times_s, trace.times_s)
    np.testing.assert_array_equal(back.si_mm, trace.si_mm)  # NaN compare equal here
    assert back.confidence is not None
    assert trace.confidence is not None
    np.testing.assert_array_equal(back.confidence, trace.confidence)
    assert back.valid is not None
    assert back.valid.tolist() == trace.valid.tolist()  # type: ignore[union-attr]
    assert back.n_lost_frames == 3
    assert back.tracking_sd_mm == 0.25
    assert back.source == "synthetic, seed 3"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[2] == CSV_HEADER
    assert lines[3 + 5].split(",")[1] == "nan"


def test_from_csv_reads_empty_fields_as_lost_frames(tmp_path: Path) -> None:
    path = tmp_path / "lost.csv"
    path.write_text(
        "# a comment line without value\n"
        " Time_s , SI_mm , Confidence \n"
        "0.0,0.5,0.9\n"
        "\n"
        "0.1,,\n"
        "0.2,NaN,0.1\n"
        "0.3,-1.5,1\n",
        encoding="utf-8",
    )
    trace = BreathingTrace.from_csv(path, tracking_sd_mm=0.4)
    assert trace.valid is not None
    assert trace.valid.tolist() == [True, False, False, True]
    assert trace.confidence is not None
    assert trace.confidence.tolist() == [0.9, 0.0, 0.1, 1.0]
    assert trace.si_mm[3] == -1.5
    assert trace.tracking_sd_mm == 0.4
    assert trace.source == "read from lost.csv"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("time,si,confidence\n0,0,1\n0.1,0,1\n", "path"),
        ("time_s;si_mm;confidence\n0;0;1\n", "path"),
        ("time_s,si_mm,confidence\n0,0\n0.1,0,1\n", "path"),
        ("time_s,si_mm,confidence\n0,zero,1\n0.1,0,1\n", "path"),
        ("# only metadata\n", "path"),
        ("# tracking_sd_mm=abc\ntime_s,si_mm,confidence\n0,0,1\n0.1,0,1\n", "path"),
        ("time_s,si_mm,confidence\n0,0,\n0.1,0,1\n", "confidence"),
        ("time_s,si_mm,confidence\n0.1,0,1\n0.0,0,1\n", "times_s"),
        ("time_s,si_mm,confidence\n0,0,1\n0.1,0,1.5\n", "confidence"),
    ],
)
def test_from_csv_rejects_malformed_files(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError) as info:
        BreathingTrace.from_csv(path)
    assert info.value.field == field


def test_from_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        BreathingTrace.from_csv(tmp_path / "absent.csv")
    assert info.value.field == "path"


def test_to_csv_refuses_a_multiline_source(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        _trace(source="line one\nline two").to_csv(tmp_path / "x.csv")
    assert info.value.field == "source"


def test_to_csv_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        _trace().to_csv(tmp_path / "missing-folder" / "x.csv")
    assert info.value.field == "path"
