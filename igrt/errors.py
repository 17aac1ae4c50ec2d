"""The project's exception hierarchy.

Every error raised on purpose by ``igrt``, ``registration``, ``fixtures`` and ``api`` derives
from :class:`IgrtError`, so a caller can catch one type. Below it, two families tell a caller
*whose fault* a failure is:

- :class:`InvalidInputError` (also a :class:`ValueError`): the input is wrong (shape, dtype,
  NaN, missing or inconsistent geometry, corrupt file). Retrying with the same input fails
  again; the HTTP layer maps it to a 4xx.
- :class:`ProcessingError` (also a :class:`RuntimeError`): the input was acceptable but the
  computation could not produce a trustworthy result (a tracker lost the dome, a registration
  did not converge).

HTTP status codes live in ``api/`` only; this module knows nothing of them.
"""

from __future__ import annotations

__all__ = [
    "FormatMismatchError",
    "FrameOfReferenceError",
    "GeometryError",
    "IgrtError",
    "ImageReadError",
    "InvalidInputError",
    "PatientMismatchError",
    "ProcessingError",
    "UnsafeHeaderError",
]


class IgrtError(Exception):
    """Root of every error this project raises on purpose."""


class InvalidInputError(IgrtError, ValueError):
    """The caller's input cannot be used as given.

    Parameters
    ----------
    message : str
        What is wrong, phrased for the person who supplied the input.
    field : str or None, optional
        Name of the offending argument, attribute or form field, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class GeometryError(InvalidInputError):
    """Imaging or volume geometry is missing, non-finite or inconsistent."""


class FrameOfReferenceError(InvalidInputError):
    """Unknown patient position, or data from different frames of reference mixed."""


class ImageReadError(InvalidInputError):
    """A file could not be read as an image (corrupt, truncated, unsupported encoding)."""


class UnsafeHeaderError(ImageReadError):
    """A file header asks for something refused on principle.

    Another file as the data source, a key off the allow-list, an over-long header; ``field``
    names the key.
    """


class FormatMismatchError(ImageReadError):
    """The file's content is of another format than the one declared for it."""


class PatientMismatchError(InvalidInputError):
    """The file names another patient than the one it is filed under.

    Parameters
    ----------
    message : str
        Names both identities (the file's and the expected one): for the user, never for logs.
    field : str or None, optional
        The offending argument or form field.
    """


class ProcessingError(IgrtError, RuntimeError):
    """Valid input, but no trustworthy result could be computed."""
