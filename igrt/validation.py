"""Checks of scalar parameters shared by every module that validates its inputs."""

from __future__ import annotations

import math

import numpy as np

from igrt.errors import InvalidInputError

__all__ = ["non_negative_number", "positive_number", "real_number"]


def real_number(value: object, name: str) -> float:
    """``value`` as a finite float; booleans and non-numbers are refused.

    Raises
    ------
    InvalidInputError
        Naming ``name`` as the field, if ``value`` is not a finite real number.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise InvalidInputError(f"{name} must be a real number, got {value!r}", field=name)
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} must be finite, got {value!r}", field=name)
    return number


def positive_number(value: object, name: str) -> float:
    """A finite real number above zero (see :func:`real_number`)."""
    number = real_number(value, name)
    if number <= 0:
        raise InvalidInputError(f"{name} must be positive, got {value!r}", field=name)
    return number


def non_negative_number(value: object, name: str) -> float:
    """A finite real number at or above zero (see :func:`real_number`)."""
    number = real_number(value, name)
    if number < 0:
        raise InvalidInputError(f"{name} must not be negative, got {value!r}", field=name)
    return number
