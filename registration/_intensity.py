"""Private: bring a CBCT's uncalibrated values onto the planning CT's HU scale before clipping.

Both images are clipped to one HU window before they are compared
(:data:`registration.rigid.CLIP_WINDOW`), so the CBCT must be on the CT's scale first. A CBCT's
stored values are not calibrated HU: vendors store ``HU + 1000``, attenuation in their own
units, or HU with a gain error of 10-20 % from scatter and beam hardening. Clipping such values
at 300 "HU" cuts through the soft tissue (or the lung) instead of the bone, and moves every
lung/tissue edge the metric aligns: on RTK-FDK CBCTs stored as ``0.85 (HU + 1000)`` this alone
gave a 1.7 mm error at the isocentre, along the dome's normal (``benchmarks/registration.py``).

The map is linear, from two landmarks found the same way in both images: an Otsu split of the
values (into air/lung and soft tissue) and the median of each class. Medians of classes are
insensitive to the clip box's content proportions and to noise; the Gauss-Newton intensity
model then absorbs what remains (gain, offset, linear shading), and :func:`refit` re-maps once
from the fitted gain and offset at the solution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["IntensityLandmarks", "LinearMap", "landmarks_of"]

_HISTOGRAM_BINS = 256
_MIN_VALUES = 100
_MAX_SAMPLES = 250_000
"""Values used at most (a regular stride through the image): a class median from 2.5e5 values
is within about 0.2 HU of the whole image's, and the CBCT's crop holds 6-7e6 voxels."""


@dataclass(frozen=True)
class IntensityLandmarks:
    """Medians of the low (air/lung) and high (soft tissue) classes of an image, its own units."""

    low: float
    high: float

    @property
    def contrast(self) -> float:
        """``high - low``."""
        return self.high - self.low


@dataclass(frozen=True)
class LinearMap:
    """``hu = gain * stored + offset``."""

    gain: float = 1.0
    offset: float = 0.0

    @classmethod
    def between(cls, source: IntensityLandmarks, target: IntensityLandmarks) -> LinearMap:
        """The map taking ``source``'s landmarks onto ``target``'s (identity if degenerate)."""
        if not source.contrast > 0 or not target.contrast > 0:
            return cls()
        gain = target.contrast / source.contrast
        return cls(gain, target.low - gain * source.low)

    def then(self, other: LinearMap) -> LinearMap:
        """``other`` applied after this map."""
        return LinearMap(other.gain * self.gain, other.gain * self.offset + other.offset)

    def apply_in_place(self, values: npt.NDArray[np.float32]) -> None:
        """Map ``values`` (NaN stays NaN)."""
        if self.gain != 1.0:
            values *= np.float32(self.gain)
        if self.offset != 0.0:
            values += np.float32(self.offset)


def landmarks_of(values: npt.NDArray[np.floating]) -> IntensityLandmarks | None:
    """Class medians of an Otsu split of the finite ``values`` (subsampled, see _MAX_SAMPLES).

    Returns ``None`` when there are too few values or they do not split into two classes.
    """
    flat = values.reshape(-1)
    step = max(1, flat.size // _MAX_SAMPLES)
    sample = flat[::step]
    sample = sample[np.isfinite(sample)].astype(np.float64)
    if sample.size < _MIN_VALUES:
        return None
    # The 0.5-99.5 % range: a few streak or padding extremes must not stretch the histogram.
    lower, upper = np.percentile(sample, [0.5, 99.5])
    if not upper > lower:
        return None
    counts, edges = np.histogram(sample, bins=_HISTOGRAM_BINS, range=(lower, upper))
    centres = 0.5 * (edges[:-1] + edges[1:])
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_low = sum_low / weight_low
        mean_high = (sum_low[-1] - sum_low) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    threshold = float(edges[int(np.argmax(between)) + 1])
    low = sample[sample < threshold]
    high = sample[sample >= threshold]
    if low.size < _MIN_VALUES // 2 or high.size < _MIN_VALUES // 2:
        return None
    return IntensityLandmarks(float(np.median(low)), float(np.median(high)))
