"""Storing real-valued pixels as integers with a DICOM Rescale Slope and Intercept.

``value = stored * slope + intercept`` (PS3.3 C.11.1.1.2). Integer data that fits the stored
type is kept exactly (slope 1, intercept 0); anything else is spread linearly over the full
integer range, so the worst-case error is half a slope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from igrt.imageio._dicom_attributes import ds_float

__all__ = ["IntegerEncoding", "encode_as_integers"]


@dataclass(frozen=True, eq=False)
class IntegerEncoding:
    """Integer pixels plus the linear map back to the original values.

    Attributes
    ----------
    stored : numpy.ndarray
        Integer array of the requested dtype, same shape as the input.
    slope : float
        Rescale Slope, exactly representable as a DICOM DS.
    intercept : float
        Rescale Intercept, exactly representable as a DICOM DS.
    """

    stored: npt.NDArray[Any]
    slope: float
    intercept: float

    @property
    def is_identity(self) -> bool:
        """Whether the stored integers are the values themselves."""
        return self.slope == 1.0 and self.intercept == 0.0

    @property
    def max_error(self) -> float:
        """Worst-case absolute quantisation error, in the units of the values."""
        return 0.0 if self.is_identity else self.slope / 2.0


def encode_as_integers(values: npt.NDArray[Any], dtype: type[np.integer[Any]]) -> IntegerEncoding:
    """Encode finite ``values`` as ``dtype`` integers with a slope and intercept.

    Parameters
    ----------
    values : numpy.ndarray
        Finite integer or floating values, any shape.
    dtype : numpy integer type
        ``numpy.int16`` or ``numpy.uint16`` (or any integer type).

    Returns
    -------
    IntegerEncoding
        Exact (identity map) when every value is an integer inside the range of ``dtype``.
    """
    info = np.iinfo(dtype)
    array = np.asarray(values)
    low = float(array.min())
    high = float(array.max())
    integral = np.issubdtype(array.dtype, np.integer) or bool(np.all(array == np.round(array)))
    if integral and low >= info.min and high <= info.max:
        return IntegerEncoding(array.astype(dtype), 1.0, 0.0)
    span = float(info.max) - float(info.min)
    # Round the slope up a hair so the DS-rounded value still covers [low, high].
    slope = ds_float((high - low) / span * (1.0 + 1e-9)) if high > low else 1.0
    intercept = ds_float(low - float(info.min) * slope)
    scaled = np.rint((array.astype(np.float64) - intercept) / slope)
    stored = np.clip(scaled, info.min, info.max).astype(dtype)
    return IntegerEncoding(stored, slope, intercept)
