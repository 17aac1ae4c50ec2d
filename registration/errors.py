"""Errors raised by the registration engine.

Every error derives from :mod:`igrt.errors`, so a caller can catch
:class:`~igrt.errors.IgrtError`, or one of its two families:

- :class:`~igrt.errors.InvalidInputError` (the input cannot be registered as given):
  :class:`NoOverlapError`, :class:`ClipBoxError`, :class:`FrameOfReferenceMismatchError`
  (and its :class:`IsocentreRequiredError`),
  and :class:`~igrt.errors.GeometryError` for missing or inconsistent orientation.
- :class:`~igrt.errors.ProcessingError` (the input was acceptable, the result is not
  trustworthy): :class:`NotConvergedError`.

SimpleITK reports its own failures as :class:`RuntimeError` and OpenCV as ``cv2.error``; both are
mapped to :class:`RegistrationProcessingError` at this package's boundary
(:func:`foreign_errors_mapped`), so no foreign exception leaves ``registration``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from igrt.errors import FrameOfReferenceError, InvalidInputError, ProcessingError

__all__ = [
    "ClipBoxError",
    "FrameOfReferenceMismatchError",
    "IsocentreRequiredError",
    "NoOverlapError",
    "NotConvergedError",
    "RegistrationProcessingError",
    "foreign_errors_mapped",
]


class NoOverlapError(InvalidInputError):
    """The planning CT and the CBCT do not share enough of space to be registered."""


class ClipBoxError(InvalidInputError):
    """The clip box is malformed, or lies (partly) outside the planning CT or the CBCT."""


class FrameOfReferenceMismatchError(FrameOfReferenceError):
    """The two volumes carry different DICOM Frame of Reference UIDs."""


class IsocentreRequiredError(FrameOfReferenceMismatchError):
    """A CBCT in another Frame of Reference came without the isocentre that places it.

    See :mod:`registration.cbct_placement`; ``field`` names the missing input.
    """


class RegistrationProcessingError(ProcessingError):
    """A library call inside the registration failed (a mapped foreign error)."""


class NotConvergedError(ProcessingError):
    """The registration ran but its result cannot be trusted (status ``FAILED``).

    Parameters
    ----------
    message : str
        What went wrong.
    reasons : tuple of str, optional
        The quality reasons that made the result fail.
    """

    def __init__(self, message: str, *, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons


@contextlib.contextmanager
def foreign_errors_mapped(action: str) -> Iterator[None]:
    """Turn SimpleITK's ``RuntimeError`` and OpenCV's ``cv2.error`` into our errors.

    Parameters
    ----------
    action : str
        What was being done, for the message (``"resampling the CBCT"``).

    Raises
    ------
    RegistrationProcessingError
        In place of a foreign ``RuntimeError`` (SimpleITK) or ``cv2.error``. Errors of this
        project (:class:`~igrt.errors.IgrtError`) pass through unchanged.
    """
    try:
        yield
    except (InvalidInputError, ProcessingError):
        raise
    except Exception as error:
        if not _is_foreign(error):
            raise
        raise RegistrationProcessingError(f"{action} failed: {error}") from error


def _is_foreign(error: Exception) -> bool:
    """Whether ``error`` is SimpleITK's ``RuntimeError`` or OpenCV's ``cv2.error``.

    Only code that has imported OpenCV can raise ``cv2.error``, so OpenCV is looked up among the
    loaded modules rather than imported (~20 ms of a fresh ``igrt register`` that never uses it).
    """
    cv2 = sys.modules.get("cv2")
    return isinstance(error, RuntimeError) or (cv2 is not None and isinstance(error, cv2.error))
