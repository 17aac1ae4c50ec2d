"""Finding a diaphragm dome on one frame with no user input.

In an attenuation image the dome is the sharpest long edge of the thorax: dark lung above,
bright liver below, curving down on both sides of its apex. :func:`find_domes` scores every
candidate apex by the mean downward-rising gradient along parabolas of a few curvatures centred
on it, keeps the local maxima, and :func:`choose_dome` picks the hemidiaphragm asked for.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from igrt.errors import InvalidInputError
from igrt.sequence import IntensityValues

__all__ = [
    "DomeCandidate",
    "HemidiaphragmValues",
    "attenuation_image",
    "choose_dome",
    "find_domes",
]

_CURVATURES_PER_PX = (0.002, 0.004, 0.008, 0.016)
_SMOOTHING_SIGMA_PX = 2.0
_MAX_DOME_HEIGHT_DIFFERENCE_MM = 60.0


class HemidiaphragmValues(enum.Enum):
    """Which dome to follow."""

    RIGHT = "right"
    """The right dome, over the liver: the liver SBRT surrogate."""

    LEFT = "left"


@dataclass(frozen=True)
class DomeCandidate:
    """A dome-shaped edge found on a frame.

    Attributes
    ----------
    apex_column, apex_row : float
        Panel pixel of the apex (steepest point of the edge on the apex column).
    curvature_per_px : float
        Parabola coefficient ``a`` in ``row = apex_row + a (column - apex_column)^2``.
    score : float
        Mean edge strength along the parabola (attenuation units per pixel).
    contrast_to_noise : float
        ``score`` over the robust spread of the frame's vertical gradient: how far the dome
        stands above texture and noise.
    polarity : int
        +1 if the image's values rise from lung to liver (an attenuation image), -1 if they
        fall (a raw panel image).
    """

    apex_column: float
    apex_row: float
    curvature_per_px: float
    score: float
    polarity: int
    contrast_to_noise: float


def attenuation_image(
    frame: npt.NDArray[Any], intensity: IntensityValues
) -> npt.NDArray[np.float32]:
    """Frame values as attenuation (rising from lung to liver) up to an offset.

    Raw panel counts become ``-ln(counts)``; line integrals pass through.
    """
    values = np.asarray(frame, dtype=np.float32)
    if intensity is IntensityValues.RAW:
        result: npt.NDArray[np.float32] = -np.log(np.maximum(values, 1.0))
        return result
    return values


def _edge_strength(image: npt.NDArray[np.float32], polarity: int) -> npt.NDArray[np.float32]:
    smooth = cv2.GaussianBlur(image, (0, 0), _SMOOTHING_SIGMA_PX)
    gradient = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) * (polarity / 8.0)
    strength: npt.NDArray[np.float32] = np.maximum(gradient, 0.0, dtype=np.float32)
    return strength


def _parabola_scores(
    strength: npt.NDArray[np.float32], curvature: float, half_width_px: int
) -> npt.NDArray[np.float32]:
    """Mean edge strength along the parabola centred on every pixel."""
    rows, cols = strength.shape
    total = np.zeros_like(strength)
    count = 0
    for dc in range(-half_width_px, half_width_px + 1, 2):
        dr = round(curvature * dc * dc)
        if dr >= rows or abs(dc) >= cols:
            continue
        # total[r, c] += strength[r + dr, c + dc]
        total[: rows - dr, max(0, -dc) : cols - max(0, dc)] += strength[
            dr:, max(0, dc) : cols - max(0, -dc)
        ]
        count += 1
    return (total / max(count, 1)).astype(np.float32)


def find_domes(
    image: npt.NDArray[np.float32],
    *,
    half_width_px: int = 48,
    region: tuple[slice, slice] | None = None,
    max_candidates: int = 4,
) -> list[DomeCandidate]:
    """Dome-shaped edges on an image, strongest first.

    Parameters
    ----------
    image : numpy.ndarray
        One frame as float values (either polarity; both are tried).
    half_width_px : int, optional
        Half width of the parabola scored around each candidate apex, pixels.
    region : tuple of slice, optional
        ``(rows, columns)`` where apices may lie (a user's seed region); the whole frame by
        default.
    max_candidates : int, optional
        How many well-separated candidates to return.

    Raises
    ------
    InvalidInputError
        If the image is not 2D, holds NaN, or is constant.
    """
    if image.ndim != 2 or min(image.shape) < 8:
        raise InvalidInputError(f"a frame must be a 2D image, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise InvalidInputError("the frame holds NaN or infinite pixels", field="frames")
    if float(np.ptp(image)) == 0.0:
        raise InvalidInputError("the frame is constant: no dome can be seen", field="frames")
    candidates: list[DomeCandidate] = []
    signed = _edge_strength(image, 1) - _edge_strength(image, -1)
    spread = 1.4826 * float(np.median(np.abs(signed - np.median(signed))))
    spread = max(spread, 1e-12)
    for polarity in (1, -1):
        strength = _edge_strength(image, polarity)
        best_score: npt.NDArray[np.float32] | None = None
        best_curvature = np.zeros(image.shape, np.float32)
        for curvature in _CURVATURES_PER_PX:
            scores = _parabola_scores(strength, curvature, half_width_px)
            if best_score is None:
                best_score = scores
                best_curvature[:] = curvature
            else:
                better = scores > best_score
                best_score = np.where(better, scores, best_score)
                best_curvature[better] = curvature
        assert best_score is not None
        mask = np.zeros(image.shape, bool)
        rows_slice, cols_slice = region if region is not None else (slice(None), slice(None))
        mask[rows_slice, cols_slice] = True
        # Apices whose parabola would leave the frame are not domes we can follow.
        mask[:, : half_width_px // 2] = False
        mask[:, image.shape[1] - half_width_px // 2 :] = False
        scores_in = np.where(mask, best_score, 0.0)
        peaks = scores_in == cv2.dilate(scores_in, np.ones((31, 31), np.uint8))
        peak_rows, peak_cols = np.nonzero(peaks & (scores_in > 0))
        order = np.argsort(scores_in[peak_rows, peak_cols])[::-1][:max_candidates]
        for index in order:
            r, c = int(peak_rows[index]), int(peak_cols[index])
            candidates.append(
                DomeCandidate(
                    apex_column=float(c),
                    apex_row=float(r),
                    curvature_per_px=float(best_curvature[r, c]),
                    score=float(scores_in[r, c]),
                    polarity=polarity,
                    contrast_to_noise=float(scores_in[r, c]) / spread,
                )
            )
    candidates.sort(key=lambda candidate: candidate.score, reverse=True)
    # The true polarity gives a far stronger dome; keep the winner's polarity only.
    if candidates:
        polarity = candidates[0].polarity
        candidates = [c for c in candidates if c.polarity == polarity]
    return candidates[:max_candidates]


def choose_dome(
    candidates: list[DomeCandidate],
    *,
    patient_right_towards_column: float,
    hemidiaphragm: HemidiaphragmValues,
    pixel_at_isocentre_mm: float,
    min_relative_score: float = 0.4,
) -> DomeCandidate | None:
    """Pick the requested hemidiaphragm among dome candidates.

    Parameters
    ----------
    candidates : list of DomeCandidate
        From :func:`find_domes`, strongest first.
    patient_right_towards_column : float
        Component of the patient's right along the panel's column axis (+1: right is towards
        higher columns, -1: lower, near 0: a lateral view where the domes overlap).
    hemidiaphragm : HemidiaphragmValues
        Which dome to return.
    pixel_at_isocentre_mm : float
        Pixel size at the isocentre, to judge lateral separation in mm.
    min_relative_score : float, optional
        A candidate weaker than this fraction of the strongest is not a dome.
    """
    if not candidates:
        return None
    strong = [c for c in candidates if c.score >= min_relative_score * candidates[0].score]
    if abs(patient_right_towards_column) < 0.3:
        # Lateral view: both domes project on each other; the right dome is usually the higher.
        return min(strong, key=lambda c: c.apex_row)
    sign = np.sign(patient_right_towards_column)
    if hemidiaphragm is HemidiaphragmValues.LEFT:
        sign = -sign
    # The two domes sit side by side at similar heights (the left 1-2 cm lower): only a
    # strong edge beside the strongest one, not above or below it, can be the other dome.
    strongest = best = strong[0]
    for candidate in strong[1:]:
        towards = sign * (candidate.apex_column - best.apex_column) * pixel_at_isocentre_mm
        height_mm = abs(candidate.apex_row - strongest.apex_row) * pixel_at_isocentre_mm
        if towards > 40.0 and height_mm < _MAX_DOME_HEIGHT_DIFFERENCE_MM:
            best = candidate
    return best
