"""Plain builders of small sequences and rotations for the image I/O tests."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from igrt.geometry import ProjectionGeometry
from igrt.sequence import FluoroSequence, IntensityValues


def rotation_matrix(rx_deg: float, ry_deg: float, rz_deg: float) -> npt.NDArray[np.float64]:
    """A proper rotation (det +1) built from three elementary rotations."""
    ax, ay, az = (math.radians(a) for a in (rx_deg, ry_deg, rz_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx, dtype=np.float64)


def fixed_sequence(panel: ProjectionGeometry, n_frames: int = 6) -> FluoroSequence:
    """Fluoroscopy at one gantry angle, irregular frame times, raw uint16 frames."""
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 65536, (n_frames, *panel.detector_shape), dtype=np.uint16)
    timestamps = 12.3 + np.cumsum(rng.uniform(0.06, 0.08, n_frames))
    return FluoroSequence.with_fixed_geometry(frames, timestamps, panel)


def rotating_sequence(
    panel: ProjectionGeometry,
    n_frames: int = 40,
    intensity: IntensityValues = IntensityValues.RAW,
) -> FluoroSequence:
    """A CBCT-like rotation over more than 360 deg with per-frame panel offsets (flex)."""
    rng = np.random.default_rng(4)
    frames: npt.NDArray[Any]
    if intensity is IntensityValues.RAW:
        frames = rng.integers(0, 65536, (n_frames, *panel.detector_shape), dtype=np.uint16)
    else:
        frames = rng.normal(2.0, 1.5, (n_frames, *panel.detector_shape))
    timestamps = np.arange(n_frames) / 5.5 + 0.1
    geometries = tuple(
        replace(
            panel,
            gantry_deg=float(181.7 + 9.35 * i),
            detector_offset_mm=(115.0 + 0.37 * math.sin(i / 3.0), -0.11 * i),
        )
        for i in range(n_frames)
    )
    return FluoroSequence(frames, timestamps, geometries, intensity)
