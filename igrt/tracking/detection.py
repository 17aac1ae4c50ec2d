"""Finding a diaphragm dome on one frame with no user input.

In an attenuation image the dome is the sharpest long edge of the thorax: dark lung above,
bright liver below, curving down on both sides of its apex. :func:`find_domes` scores every
candidate apex by the mean downward-rising gradient along parabolas of a few curvatures centred
on it, keeps the local maxima, and :func:`choose_dome` picks the hemidiaphragm asked for. On
large frames the maxima are looked for at half resolution and refined with exact
full-resolution scores around them, about four times cheaper than scoring every pixel.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from igrt.errors import InvalidInputError
from igrt.sequence import IntensityValues
from igrt.tracking import lung_field
from igrt.tracking.lung_field import LungField

__all__ = [
    "DetectionView",
    "DomeCandidate",
    "DomeDetection",
    "HemidiaphragmValues",
    "attenuation_image",
    "choose_dome",
    "detect_dome",
    "find_domes",
]

_CURVATURES_PER_PX = (0.002, 0.004, 0.008, 0.016)
_SMOOTHING_SIGMA_PX = 2.0
_MAX_DOME_HEIGHT_DIFFERENCE_MM = 60.0
_PEAK_RADIUS_PX = 15
"""Candidate apices closer than this (pixels, along rows and along columns) are one dome."""
# Coarse-to-fine search: only worth it, and only tested against the full search, on large
# frames with the default parabola width.
_COARSE_MIN_SIDE_PX = 256
_COARSE_MIN_HALF_WIDTH_PX = 16
_COARSE_FACTOR = 2  # coarse pixel side, full-resolution pixels
_COARSE_STEP_PX = 2  # parabola sampled every this many coarse columns
# Coarse local maxima (radius in coarse pixels) and how many per requested candidate are
# refined: fewer than 5 missed weaker domes of the exact search on simulated clips.
_COARSE_PEAK_RADIUS = 2
_COARSE_PEAKS_PER_CANDIDATE = 5
_REFINE_RADIUS_PX = 2  # refinement window half size, full-resolution pixels
_MAX_REFINE_STEPS = 6


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


def _vertical_gradient(image: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Smoothed rise of the values down the rows (values per pixel)."""
    smooth = cv2.GaussianBlur(image, (0, 0), _SMOOTHING_SIGMA_PX)
    gradient: npt.NDArray[np.float32] = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) * (1.0 / 8.0)
    return gradient


def _edge_strength(gradient: npt.NDArray[np.float32], polarity: int) -> npt.NDArray[np.float32]:
    """The gradient's rise in the polarity's direction, negative parts clipped to zero."""
    # Negating a float is exact, so both polarities come bit-identical from one gradient.
    signed = gradient if polarity > 0 else -gradient
    strength: npt.NDArray[np.float32] = np.maximum(signed, 0.0, dtype=np.float32)
    return strength


def _parabola_offsets(
    curvature: float, half_width_px: int, shape: tuple[int, int], step_px: int = 2
) -> list[tuple[int, int]]:
    """``(row, column)`` offsets, pixels, of the parabola samples that can fall on the image."""
    rows, cols = shape
    offsets = []
    for dc in range(-half_width_px, half_width_px + 1, step_px):
        dr = round(curvature * dc * dc)
        if dr >= rows or abs(dc) >= cols:
            continue
        offsets.append((dr, dc))
    return offsets


def _parabola_scores(
    strength: npt.NDArray[np.float32], curvature: float, half_width_px: int, step_px: int = 2
) -> npt.NDArray[np.float32]:
    """Mean edge strength along the parabola centred on every pixel.

    Samples every ``step_px`` columns out to ``half_width_px``; samples off the image count as
    zero strength (so apices near the border score lower).
    """
    rows, cols = strength.shape
    total = np.zeros_like(strength)
    offsets = _parabola_offsets(curvature, half_width_px, strength.shape, step_px)
    for dr, dc in offsets:
        # total[r, c] += strength[r + dr, c + dc]
        total[: rows - dr, max(0, -dc) : cols - max(0, dc)] += strength[
            dr:, max(0, dc) : cols - max(0, -dc)
        ]
    total /= max(len(offsets), 1)
    return total


@dataclass(frozen=True)
class _PaddedStrength:
    """Edge strength with zero margins, so any parabola sample is a plain index.

    ``values[r + dr, c + dc + half_width_px]`` is ``strength[r + dr, c + dc]``, or zero where
    that is off the image, for every offset of :func:`_parabola_offsets`.
    """

    values: npt.NDArray[np.float32]
    shape: tuple[int, int]
    half_width_px: int
    offsets: tuple[npt.NDArray[np.intp], ...]
    """``(n, 2)`` row and column offsets, pixels, per curvature of ``_CURVATURES_PER_PX``."""

    @classmethod
    def of(cls, strength: npt.NDArray[np.float32], half_width_px: int) -> _PaddedStrength:
        rows, cols = strength.shape
        offsets = tuple(
            np.array(_parabola_offsets(c, half_width_px, (rows, cols)), np.intp).reshape(-1, 2)
            for c in _CURVATURES_PER_PX
        )
        below = max((int(o[:, 0].max()) for o in offsets if o.size), default=0)
        values = np.zeros((rows + below, cols + 2 * half_width_px), np.float32)
        values[:rows, half_width_px : half_width_px + cols] = strength
        return cls(values, (rows, cols), half_width_px, offsets)


def _local_parabola_scores(
    padded: _PaddedStrength, rows_px: npt.NDArray[np.intp], cols_px: npt.NDArray[np.intp]
) -> npt.NDArray[np.float32]:
    """:func:`_parabola_scores` for every curvature, at scattered pixels only.

    Returns an array ``(len(_CURVATURES_PER_PX), rows_px.size)`` bit-identical to the full-image
    scores at those pixels: the same samples are summed in the same order in float32 (an
    off-image sample adds an exact zero).
    """
    result = np.empty((len(_CURVATURES_PER_PX), rows_px.size), np.float32)
    for k, offsets in enumerate(padded.offsets):
        samples = padded.values[
            rows_px[None, :] + offsets[:, :1],
            cols_px[None, :] + (offsets[:, 1:] + padded.half_width_px),
        ]
        # Reducing over axis 0 adds the samples one offset after another, like the full search.
        total = np.add.reduce(samples, axis=0, dtype=np.float32)
        result[k] = total / max(len(offsets), 1)
    return result


def _window_parabola_scores(
    padded: _PaddedStrength, rows: slice, cols: slice
) -> npt.NDArray[np.float32]:
    """:func:`_parabola_scores` for every curvature on a rectangle of the image only.

    ``rows`` and ``cols`` are in-image slices with steps of 1; returns
    ``(len(_CURVATURES_PER_PX), height, width)``, bit-identical to the full-image scores.
    """
    r0, r1 = rows.start, rows.stop
    c0, c1 = cols.start + padded.half_width_px, cols.stop + padded.half_width_px
    result = np.empty((len(_CURVATURES_PER_PX), r1 - r0, c1 - c0), np.float32)
    for k, offsets in enumerate(padded.offsets):
        total = np.zeros((r1 - r0, c1 - c0), np.float32)
        for dr, dc in offsets.tolist():
            total += padded.values[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
        result[k] = total / max(len(offsets), 1)
    return result


def find_domes(
    image: npt.NDArray[np.float32],
    *,
    half_width_px: int = 48,
    region: tuple[slice, slice] | None = None,
    max_candidates: int = 4,
    apex_mask: npt.NDArray[np.bool_] | None = None,
    polarity: int | None = None,
) -> list[DomeCandidate]:
    """Dome-shaped edges on an image, strongest first.

    On frames of at least ``_COARSE_MIN_SIDE_PX`` pixels a side the apices are searched at half
    resolution and then refined at full resolution (see :func:`_coarse_to_fine_peaks`); the
    returned candidates are full-resolution apices, scores and curvatures either way.

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
    apex_mask : numpy.ndarray of bool, optional
        Same shape as ``image``: where apices may lie (e.g. near a lung field's inferior
        boundary), combined with ``region``.
    polarity : {1, -1}, optional
        The dome's edge direction when the image's meaning is known (+1: values rise from lung
        to liver). Only that polarity is scored: the opposite one (a lung apex, the underside of
        a clavicle) is never a dome. Both are tried, and the stronger kept, when not given.

    Raises
    ------
    InvalidInputError
        If the image is not 2D, holds NaN, or is constant.
    """
    coarse = min(image.shape) >= _COARSE_MIN_SIDE_PX and half_width_px >= _COARSE_MIN_HALF_WIDTH_PX
    return _find_domes(
        image,
        half_width_px=half_width_px,
        region=region,
        max_candidates=max_candidates,
        coarse=coarse,
        apex_mask=apex_mask,
        polarities=(1, -1) if polarity is None else (polarity,),
    )


def _find_domes_exact(
    image: npt.NDArray[np.float32],
    *,
    half_width_px: int = 48,
    region: tuple[slice, slice] | None = None,
    max_candidates: int = 4,
) -> list[DomeCandidate]:
    """:func:`find_domes` scoring every pixel at full resolution, whatever the frame size.

    The reference the coarse-to-fine search is tested against.
    """
    return _find_domes(
        image,
        half_width_px=half_width_px,
        region=region,
        max_candidates=max_candidates,
        coarse=False,
    )


def _find_domes(
    image: npt.NDArray[np.float32],
    *,
    half_width_px: int,
    region: tuple[slice, slice] | None,
    max_candidates: int,
    coarse: bool,
    apex_mask: npt.NDArray[np.bool_] | None = None,
    polarities: tuple[int, ...] = (1, -1),
) -> list[DomeCandidate]:
    if image.ndim != 2 or min(image.shape) < 8:
        raise InvalidInputError(f"a frame must be a 2D image, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise InvalidInputError("the frame holds NaN or infinite pixels", field="frames")
    if float(np.ptp(image)) == 0.0:
        raise InvalidInputError("the frame is constant: no dome can be seen", field="frames")
    gradient = _vertical_gradient(image)
    spread = 1.4826 * float(np.median(np.abs(gradient - np.median(gradient))))
    spread = max(spread, 1e-12)
    mask = np.zeros(image.shape, bool)
    rows_slice, cols_slice = region if region is not None else (slice(None), slice(None))
    mask[rows_slice, cols_slice] = True
    if apex_mask is not None:
        if apex_mask.shape != image.shape:
            raise InvalidInputError("apex_mask must have the image's shape", field="apex_mask")
        mask &= apex_mask
    # Apices whose parabola would leave the frame are not domes we can follow.
    mask[:, : half_width_px // 2] = False
    mask[:, image.shape[1] - half_width_px // 2 :] = False
    strengths = {polarity: _edge_strength(gradient, polarity) for polarity in polarities}
    if coarse and len(polarities) == 1:
        (only,) = polarities
        padded = _PaddedStrength.of(strengths[only], half_width_px)
        starts = _coarse_peaks(strengths[only], mask, half_width_px)
        peaks = {only: _fine_peaks(padded, mask, starts, max_candidates)}
    elif coarse:
        peaks = _coarse_to_fine_peaks_both(strengths, mask, half_width_px, max_candidates)
    else:
        peaks = {
            polarity: _exact_peaks(strength, mask, half_width_px, max_candidates)
            for polarity, strength in strengths.items()
        }
    candidates: list[DomeCandidate] = []
    for polarity in polarities:
        for r, c, curvature, score in peaks[polarity]:
            candidates.append(
                DomeCandidate(
                    apex_column=float(c),
                    apex_row=float(r),
                    curvature_per_px=curvature,
                    score=score,
                    polarity=polarity,
                    contrast_to_noise=score / spread,
                )
            )
    candidates.sort(key=lambda candidate: candidate.score, reverse=True)
    # The true polarity gives a far stronger dome; keep the winner's polarity only.
    if candidates:
        polarity = candidates[0].polarity
        candidates = [c for c in candidates if c.polarity == polarity]
    return candidates[:max_candidates]


_Peak = tuple[int, int, float, float]
"""``(row, column, curvature_per_px, score)`` of an apex at full resolution."""


def _best_over_curvatures(
    strength: npt.NDArray[np.float32],
    curvatures: tuple[float, ...],
    half_width_px: int,
    step_px: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp]]:
    """Highest parabola score on every pixel and the index of its curvature (first on ties)."""
    best_score = _parabola_scores(strength, curvatures[0], half_width_px, step_px)
    best_index = np.zeros(strength.shape, np.intp)
    for index, curvature in enumerate(curvatures[1:], start=1):
        scores = _parabola_scores(strength, curvature, half_width_px, step_px)
        better = scores > best_score
        best_score = np.where(better, scores, best_score)
        best_index[better] = index
    return best_score, best_index


def _exact_peaks(
    strength: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_],
    half_width_px: int,
    max_candidates: int,
) -> list[_Peak]:
    """The strongest local maxima of the parabola score inside ``mask``, every pixel scored."""
    best_score, best_index = _best_over_curvatures(
        strength, _CURVATURES_PER_PX, half_width_px, step_px=2
    )
    scores_in = np.where(mask, best_score, np.float32(0.0))
    size = 2 * _PEAK_RADIUS_PX + 1
    peaks = scores_in == cv2.dilate(scores_in, np.ones((size, size), np.uint8))
    peak_rows, peak_cols = np.nonzero(peaks & (scores_in > 0))
    order = np.argsort(scores_in[peak_rows, peak_cols])[::-1][:max_candidates]
    result: list[_Peak] = []
    for index in order:
        r, c = int(peak_rows[index]), int(peak_cols[index])
        curvature = _CURVATURES_PER_PX[int(best_index[r, c])]
        result.append((r, c, float(np.float32(curvature)), float(scores_in[r, c])))
    return result


def _coarse_to_fine_peaks_both(
    strengths: dict[int, npt.NDArray[np.float32]],
    mask: npt.NDArray[np.bool_],
    half_width_px: int,
    max_candidates: int,
) -> dict[int, list[_Peak]]:
    """:func:`_exact_peaks` of both polarities, found at half resolution then refined.

    Only the polarity of the strongest apex is returned by :func:`find_domes`, so the other
    polarity is refined for its strongest apex alone, and in full only if that apex wins.
    """
    starts = {p: _coarse_peaks(strength, mask, half_width_px) for p, strength in strengths.items()}
    # Ties go to +1, as in the stable sort of find_domes.
    lead, other = sorted((1, -1), key=lambda p: starts[p][0][2] if starts[p] else 0.0)[::-1]
    padded = {p: _PaddedStrength.of(strength, half_width_px) for p, strength in strengths.items()}
    peaks = {
        lead: _fine_peaks(padded[lead], mask, starts[lead], max_candidates),
        other: _fine_peaks(padded[other], mask, starts[other], 1),
    }
    if peaks[other] and (not peaks[lead] or peaks[other][0][3] >= peaks[lead][0][3]):
        peaks[other] = _fine_peaks(padded[other], mask, starts[other], max_candidates)
    return peaks


def _coarse_peaks(
    strength: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_], half_width_px: int
) -> list[tuple[int, int, float]]:
    """Local maxima of the parabola score at half resolution, strongest first.

    Returns ``(row, column, coarse score)``, the row and column being the full-resolution
    pixel at the top left of the coarse pixel's 2 x 2 block.

    Notes
    -----
    The edge strength (not the image) is averaged over 2 x 2 blocks, so a coarse score is the
    full-resolution score smoothed over a block rather than the score of a different edge
    detector. Parabolas keep their shape in panel pixels: half the half width, twice the
    curvature, and every second coarse column (every fourth pixel) sampled, which costs about an
    eighth of the full search.
    """
    factor = _COARSE_FACTOR
    rows, cols = strength.shape[0] // factor, strength.shape[1] // factor
    # INTER_AREA at an integer fraction of the size is the block mean.
    coarse_strength = np.asarray(
        cv2.resize(
            strength[: factor * rows, : factor * cols], (cols, rows), interpolation=cv2.INTER_AREA
        ),
        np.float32,
    )
    # A block may hold an apex if any of its pixels may.
    coarse_mask = (
        cv2.resize(
            mask[: factor * rows, : factor * cols].astype(np.uint8) * np.uint8(255),
            (cols, rows),
            interpolation=cv2.INTER_AREA,
        )
        > 0
    )
    # Only the coarse score is needed: the curvature is chosen again at full resolution.
    scores_in = np.zeros((rows, cols), np.float32)
    for curvature in _CURVATURES_PER_PX:
        scores = _parabola_scores(
            coarse_strength, factor * curvature, half_width_px // factor, step_px=_COARSE_STEP_PX
        )
        np.maximum(scores_in, scores, out=scores_in)
    scores_in[~coarse_mask] = 0.0
    # A much smaller neighbourhood than the full search's: the smoothed coarse score can merge a
    # weak dome into the slope of a strong one; :func:`_verified_peaks` drops the extra maxima.
    size = 2 * _COARSE_PEAK_RADIUS + 1
    peaks = scores_in == cv2.dilate(scores_in, np.ones((size, size), np.uint8))
    peak_rows, peak_cols = np.nonzero(peaks & (scores_in > 0))
    peak_scores = scores_in[peak_rows, peak_cols]
    order = np.argsort(peak_scores)[::-1]
    return [
        (factor * int(peak_rows[i]), factor * int(peak_cols[i]), float(peak_scores[i]))
        for i in order
    ]


def _fine_peaks(
    padded: _PaddedStrength,
    mask: npt.NDArray[np.bool_],
    starts: list[tuple[int, int, float]],
    max_candidates: int,
) -> list[_Peak]:
    """Full-resolution peaks grown from the strongest coarse peaks.

    :func:`_refine_peaks` moves them to full-resolution local maxima and
    :func:`_verified_peaks` keeps those that are maxima of the exact score over the same
    neighbourhood as the full search, strongest first.
    """
    # Refine more than asked for: the full-resolution order can differ from the coarse one.
    chosen = starts[: _COARSE_PEAKS_PER_CANDIDATE * max_candidates]
    refined = _refine_peaks(padded, mask, [(r, c) for r, c, _ in chosen])
    return _verified_peaks(padded, mask, refined, max_candidates)


def _refine_peaks(
    padded: _PaddedStrength, mask: npt.NDArray[np.bool_], starts: list[tuple[int, int]]
) -> list[_Peak]:
    """Best full-resolution apex around each coarse peak, by local hill climbing.

    Parameters
    ----------
    padded : _PaddedStrength
        Full-resolution edge strength.
    mask : numpy.ndarray of bool
        Where apices may lie; the score is zero elsewhere.
    starts : list of tuple of int
        ``(row, column)``, full-resolution pixels, of the top-left pixel of each coarse peak's
        2 x 2 block.

    Notes
    -----
    Every start scores the window of ``_REFINE_RADIUS_PX`` around its block; if the best pixel
    is on an edge of the window that the image does not clip, the window is moved onto it and
    scored again (at most ``_MAX_REFINE_STEPS`` times). All windows are scored in one batch per
    step.
    """
    n_rows, n_cols = padded.shape
    radius = _REFINE_RADIUS_PX
    # Inclusive (first row, last row, first column, last column) of each window.
    windows = [(r - radius, r + 1 + radius, c - radius, c + 1 + radius) for r, c in starts]
    results: list[_Peak | None] = [None] * len(starts)
    active = list(range(len(starts)))
    for _ in range(_MAX_REFINE_STEPS):
        if not active:
            break
        clipped = []
        pixel_rows, pixel_cols = [], []
        for i in active:
            r0, r1, c0, c1 = windows[i]
            r0, r1 = max(r0, 0), min(r1, n_rows - 1)
            c0, c1 = max(c0, 0), min(c1, n_cols - 1)
            clipped.append((r0, r1, c0, c1))
            grid_rows, grid_cols = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
            pixel_rows.append(grid_rows.ravel())
            pixel_cols.append(grid_cols.ravel())
        all_rows = np.concatenate(pixel_rows).astype(np.intp)
        all_cols = np.concatenate(pixel_cols).astype(np.intp)
        scores = _local_parabola_scores(padded, all_rows, all_cols)
        best_index = np.argmax(scores, axis=0)
        best = scores[best_index, np.arange(all_rows.size)]
        best = np.where(mask[all_rows, all_cols], best, np.float32(0.0))
        next_active = []
        offset = 0
        for i, (r0, r1, c0, c1), window_rows in zip(active, clipped, pixel_rows, strict=True):
            j = offset + int(np.argmax(best[offset : offset + window_rows.size]))
            offset += window_rows.size
            r, c = int(all_rows[j]), int(all_cols[j])
            previous = results[i]
            curvature = float(np.float32(_CURVATURES_PER_PX[int(best_index[j])]))
            results[i] = (r, c, curvature, float(best[j]))
            on_open_edge = (
                (r == r0 and r0 > 0)
                or (r == r1 and r1 < n_rows - 1)
                or (c == c0 and c0 > 0)
                or (c == c1 and c1 < n_cols - 1)
            )
            if on_open_edge and (previous is None or previous[:2] != (r, c)):
                windows[i] = (r - radius, r + radius, c - radius, c + radius)
                next_active.append(i)
        active = next_active
    return [result for result in results if result is not None and result[3] > 0]


def _verified_peaks(
    padded: _PaddedStrength,
    mask: npt.NDArray[np.bool_],
    peaks: list[_Peak],
    max_candidates: int,
) -> list[_Peak]:
    """The strongest apices that are maxima of the exact score within ``_PEAK_RADIUS_PX``.

    This is the full search's maximum-filter test, done only around the given apices. An apex
    that fails it is replaced by the best pixel of its neighbourhood, which is tested in turn,
    so the search climbs to a true peak rather than losing the dome.
    """
    n_rows, n_cols = padded.shape
    radius = _PEAK_RADIUS_PX
    queue = [(-score, r, c, curvature) for r, c, curvature, score in peaks]
    heapq.heapify(queue)
    accepted: list[_Peak] = []
    seen: set[tuple[int, int]] = set()
    while queue:
        negative_score, r, c, curvature = heapq.heappop(queue)
        score = -negative_score
        if len(accepted) >= max_candidates and score <= accepted[max_candidates - 1][3]:
            break
        if (r, c) in seen:
            continue
        seen.add((r, c))
        if any(
            abs(r - other[0]) <= radius and abs(c - other[1]) <= radius and other[3] > score
            for other in accepted
        ):
            continue
        rows = slice(max(r - radius, 0), min(r + radius + 1, n_rows))
        cols = slice(max(c - radius, 0), min(c + radius + 1, n_cols))
        scores = _window_parabola_scores(padded, rows, cols)
        best_index = np.argmax(scores, axis=0)
        best = np.where(mask[rows, cols], np.max(scores, axis=0), np.float32(0.0))
        j = np.unravel_index(int(np.argmax(best)), best.shape)
        if best[j] > score:
            top_r, top_c = rows.start + int(j[0]), cols.start + int(j[1])
            top_curvature = float(np.float32(_CURVATURES_PER_PX[int(best_index[j])]))
            heapq.heappush(queue, (-float(best[j]), top_r, top_c, top_curvature))
            continue
        accepted.append((r, c, curvature, score))
        accepted.sort(key=lambda peak: peak[3], reverse=True)
    return accepted[:max_candidates]


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


@dataclass(frozen=True)
class DomeDetection:
    """A dome found on one frame with no history, and how far it can be trusted.

    Attributes
    ----------
    candidate : DomeCandidate or None
        The dome, or None when nothing dome-like was found.
    confirmed : bool
        True when the dome was found where anatomy puts it (the inferior boundary of the
        requested lung field) or at a user's hint. False when it was chosen by edge strength
        alone: it may be a shoulder, a clavicle or a plate border, and needs confirmation (by
        the dome's breathing motion, or by a user).
    reason : str
        Why the detection is (or is not) confirmed, for the user.
    required_contrast_to_noise : float or None
        The contrast-to-noise the candidate was held to when lower than the caller's minimum
        (a faint dome placed by anatomy); None when it was held to the caller's.
    confirmable_by_motion : bool
        False when anatomy found where the dome should be but the image there is not lung
        over liver in the stated pixel meaning (an inverted or mislabelled image): an edge
        chosen elsewhere may move with breathing without being the dome, so only a user (or
        anatomy on a later frame) may confirm it.
    """

    candidate: DomeCandidate | None
    confirmed: bool
    reason: str
    required_contrast_to_noise: float | None = None
    confirmable_by_motion: bool = True


@dataclass(frozen=True)
class DetectionView:
    """What detection needs to know of a frame's orientation, in head-up panel pixels.

    Attributes
    ----------
    patient_right_towards_column : float
        Component of the patient's right along the panel's column axis (see
        :func:`choose_dome`).
    pixel_at_isocentre_mm : float
        Panel pixel size at the isocentre plane, mm.
    """

    patient_right_towards_column: float
    pixel_at_isocentre_mm: float


_FAINT_ANATOMY_FRACTION = 0.5
"""A dome placed by anatomy is followed, unconfirmed, down to this fraction of the minimum
contrast-to-noise: the lung field is evidence an edge found anywhere does not have."""
_NEARLY_FRONTAL_VIEW = 0.9  # within about 25 degrees of AP or PA
_FRONTAL_VIEW = 0.3  # |patient right . u| above this: the two lungs are side by side
_OPPOSITE_SIDE_FRACTION = 0.15
_APEX_WINDOW_MM = 5.0
_MIN_LUNG_OVER_LIVER = 0.8
_MAX_EDGE_ABOVE_FRACTION = 0.2
"""Share of the diaphragm along which a second contour may run just above the dome found
before the dome is ambiguous (radiographs with a clear single contour show up to ~0.17)."""
"""Share of the diaphragm stretch that must read as lung over liver (attenuation rising
downwards) on a nearly frontal view: a correctly stated image reads so on nearly all of it, an
inverted one on little of it."""


def detect_dome(
    image: npt.NDArray[np.float32],
    view: DetectionView,
    hemidiaphragm: HemidiaphragmValues,
    *,
    hint_column_row: tuple[float, float] | None = None,
    hint_radius_px: int = 40,
    min_contrast_to_noise: float = 3.0,
) -> DomeDetection:
    """Find the requested dome on an attenuation-ordered, head-up frame.

    With a hint, the strongest dome edge near it. Otherwise the lung fields are segmented
    (:func:`igrt.tracking.lung_field.find_lung_fields`), the field of the requested side is
    chosen, its inferior boundary is moved onto the image's edge, and the dome apex is the
    highest point of the boundary's diaphragm run. Only when that fails is the strongest
    dome-shaped edge of the right polarity taken, unconfirmed.

    Parameters
    ----------
    image : numpy.ndarray
        Values rising with attenuation (:func:`attenuation_image`), patient's head towards
        row 0.
    view : DetectionView
        Orientation and scale.
    hemidiaphragm : HemidiaphragmValues
        Which dome.
    hint_column_row : tuple of float, optional
        A user's hint, panel pixels of this (head-up) frame.
    hint_radius_px : int, optional
        How far from the hint the apex may be, pixels.
    min_contrast_to_noise : float, optional
        An apex found from the lung field is confirmed when it sits on an edge this far above
        the frame's gradient noise; down to half of it, it is returned unconfirmed (faint).
    """
    if hint_column_row is not None:
        column, row = hint_column_row
        region = (
            slice(max(0, round(row) - hint_radius_px), round(row) + hint_radius_px + 1),
            slice(max(0, round(column) - hint_radius_px), round(column) + hint_radius_px + 1),
        )
        found = find_domes(image, region=region, polarity=1, max_candidates=1)
        if found:
            return DomeDetection(found[0], True, "dome at the user's hint")
        return DomeDetection(None, False, "no dome edge near the user's hint")
    anatomical = _anatomical_dome(image, view, hemidiaphragm)
    placed = _placed_by_anatomy(anatomical, min_contrast_to_noise)
    if placed is not None:
        return placed
    candidates = find_domes(image, polarity=1)
    chosen = choose_dome(
        candidates,
        patient_right_towards_column=view.patient_right_towards_column,
        hemidiaphragm=hemidiaphragm,
        pixel_at_isocentre_mm=view.pixel_at_isocentre_mm,
    )
    if anatomical.contradicted:
        return DomeDetection(
            chosen,
            False,
            "the lung field's lower boundary is not lung over liver in the image's stated pixel "
            "meaning (is the image inverted, or its meaning wrong?): the edge chosen by "
            "strength needs a user's confirmation",
            confirmable_by_motion=False,
        )
    reason = (
        "no lung field with a diaphragm boundary was found: the dome was chosen by edge "
        "strength alone and needs confirmation"
    )
    return DomeDetection(chosen, False, reason)


def _placed_by_anatomy(
    anatomical: _AnatomicalDome, min_contrast_to_noise: float
) -> DomeDetection | None:
    """The detection of a dome anatomy placed; None when it placed none clear enough to follow.

    Confirmed when its edge is strong and it is the only diaphragm contour there. A faint edge
    (a dense lower lung, a low-contrast exposure) is followed, unconfirmed, down to
    ``_FAINT_ANATOMY_FRACTION`` of the minimum contrast-to-noise: still a far better guess than
    the strongest edge anywhere in the image. So is a dome with a second diaphragm contour just
    above it: which one is the dome top, a user or the breathing motion must say.
    """
    candidate = anatomical.candidate
    faint_floor = _FAINT_ANATOMY_FRACTION * min_contrast_to_noise
    if candidate is None or candidate.contrast_to_noise < faint_floor:
        return None
    faint = candidate.contrast_to_noise < min_contrast_to_noise
    required = faint_floor if faint else None
    place = "dome on the inferior boundary of the lung field"
    if anatomical.edge_above > _MAX_EDGE_ABOVE_FRACTION:
        return DomeDetection(
            candidate,
            False,
            f"{place}, but a second diaphragm contour runs just above it along "
            f"{anatomical.edge_above:.0%} of the diaphragm (the top of the dome over the "
            f"posterior recess?): which one is the dome needs confirmation",
            required_contrast_to_noise=required,
        )
    if faint:
        return DomeDetection(
            candidate,
            False,
            f"{place}, but its edge is faint (contrast-to-noise "
            f"{candidate.contrast_to_noise:.1f} < {min_contrast_to_noise:.1f}): needs "
            "confirmation",
            required_contrast_to_noise=required,
        )
    return DomeDetection(candidate, True, place)


class _AnatomicalDome(NamedTuple):
    """The dome where anatomy puts it, as :func:`_anatomical_dome` reads it.

    Attributes
    ----------
    candidate : DomeCandidate or None
        None when no field of that side is found, its boundary has no diaphragm run, the apex
        is not in the field's lower part or has no image above and below, or the image there
        is no dome edge with lung texture above liver (obliquely: clearly more texture above;
        frontally: not clearly less).
    contradicted : bool
        On a nearly frontal view, True when the field's lower boundary does not read as lung
        over liver (:func:`igrt.tracking.lung_field.lung_over_liver_fraction`): attenuation
        falls across it, so the image's stated pixel meaning is probably inverted.
    edge_above : float
        Share of the diaphragm along which a second diaphragm contour runs just above the one
        found (:func:`igrt.tracking.lung_field.edge_above_fraction`); 0 without a candidate.
    """

    candidate: DomeCandidate | None
    contradicted: bool = False
    edge_above: float = 0.0


_NOT_FOUND = _AnatomicalDome(None)


def _anatomical_dome(
    image: npt.NDArray[np.float32], view: DetectionView, hemidiaphragm: HemidiaphragmValues
) -> _AnatomicalDome:
    """The dome where anatomy puts it: the diaphragm run of the requested lung field's boundary."""
    side = float(np.sign(view.patient_right_towards_column))
    if hemidiaphragm is HemidiaphragmValues.LEFT:
        side = -side
    readings = lung_field.lung_field_readings(image, view.pixel_at_isocentre_mm)
    first = next(readings)
    found = _dome_of_fields(first, image, view, side)
    if found.candidate is not None or found.contradicted:
        return found
    # Only the first reading may contradict the image's meaning; a later one can only find a
    # dome that the first's grey level hid, in a field as large as the first reading calls
    # large (at another grey level, a bright band of an inverted image can read as a small
    # dark field over liver).
    least_mm2 = _MIN_RELATIVE_FIELD_AREA * max((f.area_mm2 for f in first), default=0.0)
    for fields in readings:
        large = [f for f in fields if f.area_mm2 >= least_mm2]
        found = _dome_of_fields(large, image, view, side)
        if found.candidate is not None and not found.contradicted:
            return found
    return _NOT_FOUND


def _dome_of_fields(
    fields: list[LungField], image: npt.NDArray[np.float32], view: DetectionView, side: float
) -> _AnatomicalDome:
    """:func:`_anatomical_dome` on one reading of the lung fields (``side`` of the dome)."""
    pixel_mm = view.pixel_at_isocentre_mm
    # Obliquely the 'field' may be both lungs and the mediastinum: there its side is not asked,
    # and only a nearly frontal view is read firmly enough to contradict the stated meaning.
    frontal = abs(view.patient_right_towards_column) >= _FRONTAL_VIEW
    nearly_frontal = abs(view.patient_right_towards_column) >= _NEARLY_FRONTAL_VIEW
    field = _field_on_side(fields, side if frontal else 0.0, image.shape[1])
    if field is None:
        inverted = nearly_frontal and _reads_as_lung_when_inverted(image, side, pixel_mm)
        return _AnatomicalDome(None, inverted)
    if frontal:
        field = _requested_part(field, side, image.shape[1])
        if field is None:
            return _NOT_FOUND
    # A NaN reading (no diaphragm run inside the image) cannot contradict anything.
    if nearly_frontal and (
        lung_field.lung_over_liver_fraction(field, image, pixel_mm) < _MIN_LUNG_OVER_LIVER
    ):
        return _AnatomicalDome(None, True)
    columns, rows = lung_field.refined_inferior_boundary(
        field, image, pixel_mm, -int(side) if frontal else 0
    )
    apex = _diaphragm_apex_of(field, columns, rows, image.shape[0], pixel_mm)
    if apex is None:
        return _NOT_FOUND
    candidate = _candidate_at(image, apex, pixel_mm)
    if candidate is None:
        return _NOT_FOUND
    texture = _texture_ratio(image, candidate, pixel_mm)
    # Frontally the edge's sign has already shown lung over liver along the whole diaphragm:
    # texture only has to not contradict it, which a display look-up table cannot make it do.
    # Obliquely it is the only evidence and must confirm.
    least = 1.0 / _MIN_TEXTURE_RATIO if nearly_frontal else _MIN_TEXTURE_RATIO
    if texture < least:
        return _NOT_FOUND
    edge_above = lung_field.edge_above_fraction(columns, rows, image, pixel_mm)
    return _AnatomicalDome(candidate, False, edge_above)


def _reads_as_lung_when_inverted(
    image: npt.NDArray[np.float32], side: float, pixel_mm: float
) -> bool:
    """Whether the image, inverted, has the requested lung field over liver.

    Asked only when the image as stated has no such field: a chest whose pixel meaning is
    inverted shows its lungs bright, and no dark field is found where they are.
    """
    inverted = np.asarray(float(image.max()) + float(image.min()) - image, np.float32)
    fields = lung_field.find_lung_fields(inverted, pixel_mm)
    field = _field_on_side(fields, side, image.shape[1])
    if field is None:
        return False
    return lung_field.lung_over_liver_fraction(field, inverted, pixel_mm) >= _MIN_LUNG_OVER_LIVER


def _diaphragm_apex_of(
    field: LungField,
    columns: npt.NDArray[np.intp],
    edge_rows: npt.NDArray[np.float64],
    n_rows: int,
    pixel_mm: float,
) -> tuple[float, float] | None:
    """The apex of a field's diaphragm on its boundary's edge, where a dome can be; else None."""
    apex = lung_field.diaphragm_apex(columns, edge_rows, pixel_mm)
    if (
        apex is None
        or not field.holds_dome_at(apex[1])
        or not _inside_vertically(apex[1], n_rows, pixel_mm)
    ):
        return None
    return apex


def _requested_part(field: LungField, side: float, n_columns: int) -> LungField | None:
    """The field without its columns well on the other side of the frame; None if too few.

    A field that joins both lungs across the mediastinum carries the other dome too, and its
    lower boundary there says nothing of the requested lung.
    """
    keep = _on_side(field.columns.astype(np.float64), side, n_columns)
    if keep.all():
        return field
    if np.count_nonzero(keep) < _MIN_PART_COLUMNS:
        return None
    return dataclasses.replace(
        field, columns=field.columns[keep], inferior_rows=field.inferior_rows[keep]
    )


_MIN_PART_COLUMNS = 5


def _on_side(
    columns: npt.NDArray[np.float64], side: float, n_columns: int
) -> npt.NDArray[np.bool_]:
    """Which columns are not well on the other side of the frame (as for a field's centre)."""
    offset = side * (columns - (n_columns - 1) / 2.0)
    on_side: npt.NDArray[np.bool_] = offset >= -_OPPOSITE_SIDE_FRACTION * n_columns
    return on_side


def _inside_vertically(row: float, n_rows: int, pixel_at_isocentre_mm: float) -> bool:
    """Whether a dome apex at ``row`` has image above and below it: lung over liver.

    A boundary on the first or last rows is where the image ends (a field cut by the edge, an
    inverted image's abdomen), not an edge seen on both sides.
    """
    margin = _EDGE_MARGIN_MM / pixel_at_isocentre_mm
    return margin <= row <= n_rows - 1 - margin


_EDGE_MARGIN_MM = 5.0


def _texture_ratio(
    image: npt.NDArray[np.float32], candidate: DomeCandidate, pixel_at_isocentre_mm: float
) -> float:
    """Texture above the apex over texture below it: lung over liver is clearly above 1.

    Aerated lung shows vessels and rib edges; the liver under the dome is homogeneous. The
    ratio depends on the display look-up table (a darker one flattens the lung's vessels), so
    it confirms lung over liver only where nothing else can (oblique views) and otherwise only
    vetoes an apex with clearly less texture above than below. NaN when the apex is too close
    to the image's edge to tell.
    """
    half = round(_TEXTURE_WINDOW_MM / pixel_at_isocentre_mm)
    gap = round(_TEXTURE_GAP_MM / pixel_at_isocentre_mm)
    coarse_sigma = _TEXTURE_SCALE_MM / pixel_at_isocentre_mm
    # Only the two windows are read: blur a patch around them, not the whole frame. Beyond 4
    # sigma of margin (cv2's kernel reaches 3) the patch's own border does not reach them.
    margin = math.ceil(4.0 * coarse_sigma)
    column, row = round(candidate.apex_column), round(candidate.apex_row)
    top, left = max(0, row - gap - half - margin), max(0, column - half - margin)
    image = image[top : row + gap + half + margin, left : column + half + 1 + margin]
    column, row = column - left, row - top
    columns = slice(max(0, column - half), column + half + 1)
    rows_above = slice(max(0, row - gap - half), max(0, row - gap))
    rows_below = slice(row + gap, row + gap + half)
    coarse = cv2.GaussianBlur(image, (0, 0), coarse_sigma)
    # All detail finer than the texture scale, and the same without the pixel grain: on a
    # clean radiograph the finest detail tells most, on a noisy fluoroscopy frame the noise
    # would look like texture on both sides and only the band-pass tells.
    fine = cv2.GaussianBlur(image, (0, 0), max(_NOISE_SCALE_MM / pixel_at_isocentre_mm, 0.5))
    ratios = []
    for detail in (image - coarse, fine - coarse):
        above, below = detail[rows_above, columns], detail[rows_below, columns]
        if above.size < 16 or below.size < 16:
            return math.nan
        ratios.append(float(above.std()) / max(float(below.std()), 1e-12))
    return max(ratios)


_TEXTURE_SCALE_MM = 3.0
_NOISE_SCALE_MM = 0.8
_TEXTURE_WINDOW_MM = 15.0
_TEXTURE_GAP_MM = 3.0
_MIN_TEXTURE_RATIO = 1.15


def _field_on_side(fields: list[LungField], side: float, n_columns: int) -> LungField | None:
    """The lung field of the requested side: the largest large one on that side of the frame.

    With none there (a patient far off-centre), the one furthest that way.

    A field whose centre lies well on the other side of the frame is the other lung or
    something outside the body (the requested lung was not segmented), not a match.
    """
    if not fields:
        return None
    if side == 0.0:
        return fields[0]
    large = [f for f in fields if f.area_mm2 >= _MIN_RELATIVE_FIELD_AREA * fields[0].area_mm2]
    centre = (n_columns - 1) / 2.0
    on_side = [f for f in large if side * (f.centroid_column_row[0] - centre) > 0.0]
    if on_side:
        # The lung is the largest dark region on its side; a smaller one further out is air
        # between the neck and a shoulder, or a piece of the lung cut off by a dense band.
        chosen = max(on_side, key=lambda f: f.area_mm2)
    else:
        chosen = max(large, key=lambda f: side * f.centroid_column_row[0])
    offset = side * (chosen.centroid_column_row[0] - centre)
    if offset < -_OPPOSITE_SIDE_FRACTION * n_columns:
        return None
    return chosen


_MIN_RELATIVE_FIELD_AREA = 0.3


def _candidate_at(
    image: npt.NDArray[np.float32],
    apex: tuple[float, float],
    pixel_at_isocentre_mm: float,
) -> DomeCandidate | None:
    """The dome edge around an apex taken from a lung boundary.

    The boundary (segmented at ~2 mm, snapped per column) places the dome; the dome-shaped edge
    strongest within ``_APEX_WINDOW_MM`` of it gives the sub-pixel apex, curvature and score.
    """
    column, row = apex
    half = max(4, round(_APEX_WINDOW_MM / pixel_at_isocentre_mm))
    region = (
        slice(max(0, round(row) - half), round(row) + half + 1),
        slice(max(0, round(column) - half), round(column) + half + 1),
    )
    found = find_domes(image, region=region, polarity=1, max_candidates=1)
    return found[0] if found else None
