"""Small, exact breathing traces for the clinical-logic tests (issue 13).

Every trace is SI position in mm (positive = superior, 0 = end-exhale), built from whole Lujan
cycles ``-A sin^6(pi u / T)`` so each breath's amplitude is known exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def lujan_cycles(
    amplitudes_mm: Sequence[float],
    *,
    period_s: float = 4.0,
    sample_rate_hz: float = 10.0,
    drift_mm_per_min: float = 0.0,
    noise_sd_mm: float = 0.0,
    seed: int = 0,
) -> tuple[FloatArray, FloatArray]:
    """One Lujan cycle per amplitude, then a linear drift and optional white noise."""
    u = np.arange(0.0, period_s, 1.0 / sample_rate_hz)
    shape = np.sin(np.pi * u / period_s) ** 6
    si = np.concatenate([-a * shape for a in amplitudes_mm])
    times = np.arange(si.size) / sample_rate_hz
    si = si + drift_mm_per_min * times / 60.0
    if noise_sd_mm:
        si = si + np.random.default_rng(seed).normal(0.0, noise_sd_mm, si.size)
    return times, si


def exhale_hold_trial(
    *,
    amplitude_mm: float = 10.0,
    holds_s: Sequence[float] = (25.0, 25.0),
    creep_mm: float = 0.5,
    free_cycles: int = 6,
    recovery_cycles: int = 4,
    period_s: float = 4.0,
    sample_rate_hz: float = 10.0,
) -> tuple[FloatArray, FloatArray]:
    """Free breathing, then breath holds at end-exhale (the seed's exhale CT level)."""
    u = np.arange(0.0, period_s, 1.0 / sample_rate_hz)
    cycle = -amplitude_mm * np.sin(np.pi * u / period_s) ** 6
    parts = [np.tile(cycle, free_cycles)]
    for hold_s in holds_s:
        parts.append(np.linspace(0.0, creep_mm, round(hold_s * sample_rate_hz)))
        parts.append(np.tile(cycle, recovery_cycles))
    si = np.concatenate(parts)
    return np.arange(si.size) / sample_rate_hz, si


def write_csv(path: Path, times_s: FloatArray, si_mm: FloatArray) -> Path:
    """A ``time_s,si_mm,confidence`` CSV as ``igrt motion assess`` reads it."""
    rows = "\n".join(f"{t:.4f},{s:.5f},1.0" for t, s in zip(times_s, si_mm, strict=True))
    path.write_text("time_s,si_mm,confidence\n" + rows + "\n")
    return path
