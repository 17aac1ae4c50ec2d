"""The dome tracker on simulated clips of known truth, and its typed errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fixtures.fluoro import FluoroSimulation
from fixtures.panel import PanelPhysics, log_normalise
from igrt.errors import GeometryError, InvalidInputError
from igrt.geometry import ProjectionGeometry
from igrt.sequence import FluoroSequence, IntensityValues
from igrt.tracking import (
    DomeTracker,
    HemidiaphragmValues,
    TrackerSettings,
    TrackingStatusValues,
    track_dome,
)
from igrt.tracking.detection import detect_dome

from .conftest import GEOMETRY, first_frame_view


def _errors_mm(clip: FluoroSimulation, si_mm: np.ndarray) -> np.ndarray:
    return si_mm - clip.truth.apex_si_isocentre_mm


def test_tracks_every_frame_within_sub_millimetre_error(regular_clip: FluoroSimulation) -> None:
    track = track_dome(regular_clip.sequence)
    assert track.tracked_fraction == 1.0
    assert all(o.apex_at_edge_onset for o in track.observations)
    errors = _errors_mm(regular_clip, track.si_isocentre_mm)
    # 1.04 mm pixels at the isocentre here; the benchmark measures the 0.52 mm clinical panel.
    assert np.sqrt(np.mean(errors**2)) < 0.5
    assert np.abs(errors - errors.mean()).max() < 0.6
    # Static ribs crossing the template pull the match towards zero motion: the phantom's
    # strong ribs cost about 4 % of the excursion at this coarse pixel size.
    np.testing.assert_allclose(np.ptp(track.si_isocentre_mm), 12.0, atol=0.6)


def test_follows_the_right_dome_on_the_patients_right(regular_clip: FluoroSimulation) -> None:
    track = track_dome(regular_clip.sequence)
    # HFS at gantry 0 seen from the source: the patient's right is towards low columns.
    np.testing.assert_allclose(track.apex_pixel[:, 0], regular_clip.truth.apex_pixel[:, 0], atol=4)


def test_left_hemidiaphragm_on_request(midline_clip: FluoroSimulation) -> None:
    right = track_dome(midline_clip.sequence)
    left = track_dome(
        midline_clip.sequence, TrackerSettings(hemidiaphragm=HemidiaphragmValues.LEFT)
    )
    np.testing.assert_allclose(right.apex_pixel[:, 0], midline_clip.truth.apex_pixel[:, 0], atol=4)
    assert left.apex_pixel[0, 0] > right.apex_pixel[0, 0] + 40
    assert left.apex_pixel[0, 1] > right.apex_pixel[0, 1]  # the left dome sits lower


def test_raw_and_log_frames_give_the_same_positions(regular_clip: FluoroSimulation) -> None:
    raw = regular_clip.sequence
    physics = PanelPhysics(photons_per_pixel=20000.0)
    log = FluoroSequence(
        np.stack([log_normalise(frame, physics) for frame in raw.frames]),
        raw.timestamps_s,
        raw.geometries,
        IntensityValues.LINE_INTEGRAL,
    )
    np.testing.assert_allclose(
        track_dome(log).si_isocentre_mm, track_dome(raw).si_isocentre_mm, atol=0.05
    )
    # Mislabelled meaning: line integrals declared raw invert the edge. The stated meaning is
    # trusted and the opposite polarity is never scored as a dome, so nothing is TRACKED where
    # the dome is (the user must state what the pixels mean).
    mislabelled = FluoroSequence(log.frames, log.timestamps_s, log.geometries, IntensityValues.RAW)
    track = track_dome(mislabelled)
    truth_rows = regular_clip.truth.apex_pixel[:, 1]
    on_dome = [
        o.status is TrackingStatusValues.TRACKED and abs(o.apex_row - row) < 5.0
        for o, row in zip(track.observations, truth_rows, strict=True)
    ]
    assert not any(on_dome)


def test_streaming_and_batch_agree_exactly(regular_clip: FluoroSimulation) -> None:
    sequence = regular_clip.sequence
    tracker = DomeTracker(intensity=sequence.intensity)
    streamed = [
        tracker.update(sequence.frames[i], float(sequence.timestamps_s[i]), sequence.geometries[i])
        for i in range(sequence.n_frames)
    ]
    batch = track_dome(sequence)
    assert [o.si_isocentre_mm for o in streamed] == list(batch.si_isocentre_mm)


def test_reports_lost_when_the_dome_vanishes_then_reacquires(
    regular_clip: FluoroSimulation,
) -> None:
    frames = regular_clip.sequence.frames.copy()
    blank = np.full(frames.shape[1:], int(np.median(frames)), frames.dtype)
    noise = np.random.default_rng(0).integers(-50, 50, blank.shape)
    frames[10:13] = (blank + noise).astype(frames.dtype)
    sequence = FluoroSequence(
        frames, regular_clip.sequence.timestamps_s, regular_clip.sequence.geometries
    )
    track = track_dome(sequence)
    statuses = track.statuses
    assert all(s is TrackingStatusValues.LOST for s in statuses[10:13])
    assert np.all(np.isnan(track.si_isocentre_mm[10:13]))
    assert all(s is TrackingStatusValues.TRACKED for s in statuses[14:])
    errors = _errors_mm(regular_clip, track.si_isocentre_mm)[14:]
    assert np.abs(errors).max() < 1.0


def test_seed_selects_the_dome_near_it(midline_clip: FluoroSimulation) -> None:
    right = track_dome(midline_clip.sequence)
    left = track_dome(
        midline_clip.sequence, TrackerSettings(hemidiaphragm=HemidiaphragmValues.LEFT)
    )
    seeded = track_dome(
        midline_clip.sequence,
        TrackerSettings(seed_column_row=(left.apex_pixel[0, 0], left.apex_pixel[0, 1])),
    )
    assert abs(seeded.apex_pixel[0, 0] - left.apex_pixel[0, 0]) < 3
    assert abs(seeded.apex_pixel[0, 0] - right.apex_pixel[0, 0]) > 40


def test_single_frame_is_not_a_sequence(regular_clip: FluoroSimulation) -> None:
    with pytest.raises(InvalidInputError, match="two frames"):
        track_dome(regular_clip.sequence.subset([0]))


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (np.zeros((256, 256), bool), InvalidInputError),
        (np.zeros((256, 256, 3), np.uint16), InvalidInputError),
        (np.zeros((128, 128), np.uint16), GeometryError),
        (np.full((256, 256), np.nan, np.float32), InvalidInputError),
        (np.full((256, 256), 1000, np.uint16), InvalidInputError),
    ],
)
def test_bad_frames_raise_typed_errors(frame: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        DomeTracker().update(frame, 0.0, GEOMETRY)


def test_time_must_move_forward(regular_clip: FluoroSimulation) -> None:
    tracker = DomeTracker()
    frame = regular_clip.sequence.frames[0]
    tracker.update(frame, 1.0, GEOMETRY)
    with pytest.raises(InvalidInputError, match="not after"):
        tracker.update(frame, 1.0, GEOMETRY)


def test_settings_are_validated() -> None:
    with pytest.raises(InvalidInputError):
        TrackerSettings(roi_half_height_mm=0.0)
    with pytest.raises(InvalidInputError):
        TrackerSettings(tracked_confidence=0.4, lost_confidence=0.6)


def test_feet_first_trace_is_superior_positive(regular_clip: FluoroSimulation) -> None:
    """A feet-first supine patient seen at gantry 0 is the head-first image turned by 180 deg.

    The head is then at the panel's bottom and the patient's right on the other side: the
    tracker must find the same dome and report the same superior-positive trace.
    """
    head_first = regular_clip.sequence
    turned = FluoroSequence(
        np.ascontiguousarray(head_first.frames[:, ::-1, ::-1]),
        head_first.timestamps_s,
        head_first.geometries,
        head_first.intensity,
    )
    hfs = track_dome(head_first)
    ffs = track_dome(turned, TrackerSettings(patient_position="FFS"))
    assert ffs.tracked_fraction == hfs.tracked_fraction == 1.0
    np.testing.assert_allclose(ffs.si_isocentre_mm, hfs.si_isocentre_mm, atol=0.15)
    rows = GEOMETRY.detector_shape[0]
    np.testing.assert_allclose(ffs.apex_pixel[:, 1], rows - 1 - hfs.apex_pixel[:, 1], atol=0.3)
    assert np.corrcoef(ffs.si_isocentre_mm, regular_clip.truth.signal_si_mm)[0, 1] > 0.99


def test_a_faint_dome_placed_by_anatomy_is_followed_and_confirmed_by_its_motion(
    regular_clip: FluoroSimulation,
) -> None:
    # Held to 1.5x the dome's own contrast-to-noise, anatomy's dome is faint: it is followed
    # unconfirmed (not LOST, not swapped for the strongest edge elsewhere) and its breathing
    # motion then confirms it.
    sequence = regular_clip.sequence
    image, view = first_frame_view(regular_clip)
    dome = detect_dome(image, view, HemidiaphragmValues.RIGHT).candidate
    assert dome is not None
    settings = TrackerSettings(min_contrast_to_noise=1.5 * dome.contrast_to_noise)
    faint = track_dome(sequence, settings)
    usual = track_dome(sequence)
    assert faint.tracked_fraction == 1.0
    np.testing.assert_allclose(faint.apex_pixel, usual.apex_pixel)


def _edge_sequence(
    apex_rows: np.ndarray, *, blank: tuple[int, ...] = (), stronger_from: int | None = None
) -> FluoroSequence:
    """A dome-shaped edge at ``apex_rows`` (one per frame, 0.2 s apart, 1 mm pixels at the
    isocentre), attenuation-ordered. No lung field: the edge is chosen by strength and
    confirmed by its motion. Frames in ``blank`` show nothing; from ``stronger_from`` on, a
    stronger static-shaped edge runs 25 mm below the dome.
    """
    geometry = ProjectionGeometry(
        sad_mm=1000.0,
        sdd_mm=1500.0,
        pixel_pitch_mm=(1.5, 1.5),
        detector_shape=(256, 256),
        gantry_deg=0.0,
    )
    times = np.arange(apex_rows.size) * 0.2
    rows, columns = np.mgrid[0:256, 0:256].astype(np.float64)
    curve = 0.004 * (columns - 128.0) ** 2
    rng = np.random.default_rng(3)
    frames = []
    for index, apex_row in enumerate(apex_rows):
        frame = 1000.0 + 100.0 / (1.0 + np.exp(-(rows - apex_row - curve)))
        if stronger_from is not None and index >= stronger_from:
            frame += 300.0 / (1.0 + np.exp(-(rows - apex_row - 25.0 - curve)))
        if index in blank:
            frame = np.full(frame.shape, 1050.0)
        frames.append(frame + rng.normal(0.0, 3.0, frame.shape))
    return FluoroSequence(
        np.stack(frames).astype(np.float32),
        times,
        [geometry] * len(times),
        IntensityValues.LINE_INTEGRAL,
    )


def _breathing_rows(n_frames: int) -> np.ndarray:
    """An apex breathing 8 mm (16 mm peak to peak) with a 4 s period, 0.2 s per frame."""
    return 100.0 + 8.0 * np.sin(2.0 * np.pi * np.arange(n_frames) * 0.2 / 4.0)


def test_after_a_loss_the_dome_is_found_again_where_it_was_not_at_a_stronger_edge() -> None:
    apex_rows = _breathing_rows(30)
    sequence = _edge_sequence(apex_rows, blank=(10, 11), stronger_from=12)
    track = track_dome(sequence)
    statuses = track.statuses
    assert statuses[9] is TrackingStatusValues.TRACKED
    assert statuses[11] is TrackingStatusValues.LOST
    found = np.array([o.apex_row for o in track.observations])
    assert all(s is TrackingStatusValues.TRACKED for s in statuses[12:])
    np.testing.assert_allclose(found[12:], apex_rows[12:], atol=2.0)


def test_a_dome_that_outruns_the_search_is_found_again_on_the_same_frame() -> None:
    # A 14 mm step between two frames (a cough, the patient moving): more than a frame's
    # search (12 mm at 60 mm/s), within reach of the look near the last position.
    apex_rows = _breathing_rows(20)
    apex_rows[10:] += 14.0
    track = track_dome(_edge_sequence(apex_rows))
    found = np.array([o.apex_row for o in track.observations])
    assert all(s is TrackingStatusValues.TRACKED for s in track.statuses[1:])
    np.testing.assert_allclose(found[10:], apex_rows[10:], atol=2.0)


def _turning(sequence: FluoroSequence, deg_per_frame: float) -> FluoroSequence:
    """The same frames as projections of a gantry turning ``deg_per_frame`` between them."""
    geometries = [
        dataclasses.replace(geometry, gantry_deg=index * deg_per_frame)
        for index, geometry in enumerate(sequence.geometries)
    ]
    return FluoroSequence(sequence.frames, sequence.timestamps_s, geometries, sequence.intensity)


def test_on_a_turning_gantry_a_stronger_static_edge_near_the_dome_does_not_take_it_over() -> None:
    # Seen laterally, a rib or the other dome can lie a few millimetres above the dome's
    # highest position: per column the strongest edge in the search would jump onto it there
    # and stay while the dome breathes away.
    apex_rows = _breathing_rows(40)
    sequence = _edge_sequence(apex_rows)
    rows, columns = np.mgrid[0:256, 0:256].astype(np.float64)
    static = 110.0 / (1.0 + np.exp(-(rows - 85.0 - 0.004 * (columns - 128.0) ** 2)))
    frames = np.array(sequence.frames, np.float32)
    frames[10:] += static.astype(np.float32)
    track = track_dome(
        _turning(
            FluoroSequence(frames, sequence.timestamps_s, sequence.geometries, sequence.intensity),
            1.2,
        )
    )
    found = np.array([o.apex_row for o in track.observations])
    usable = [s is not TrackingStatusValues.LOST for s in track.statuses]
    assert all(usable[1:])
    np.testing.assert_allclose(found[10:], apex_rows[10:], atol=2.0)
