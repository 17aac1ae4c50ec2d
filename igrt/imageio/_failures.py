"""Foreign errors (pydicom, SimpleITK, OpenCV, the OS) mapped to ``igrt`` errors at the boundary.

Inside a :func:`foreign_errors` block, a foreign exception becomes an
:class:`~igrt.errors.ImageReadError` (or the class asked for) whose message names the file;
errors this project raises on purpose pass through unchanged. Keep such blocks narrow (around
the foreign call only), so a programming error elsewhere is not disguised as a bad file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom.errors import InvalidDicomError

from igrt.errors import IgrtError, ImageReadError, InvalidInputError

__all__ = [
    "FOREIGN_ERRORS",
    "MALFORMED_VALUE_ERRORS",
    "describe",
    "foreign_errors",
    "with_file_context",
]

FOREIGN_ERRORS: tuple[type[Exception], ...] = (
    InvalidDicomError,
    OSError,
    EOFError,
    ValueError,
    RuntimeError,  # SimpleITK raises RuntimeError for every ITK exception
    struct.error,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    OverflowError,
)
"""Exception types that pydicom, SimpleITK and numpy raise for unreadable or malformed data.

Use it only around a direct call into a foreign library: it includes types (``KeyError``,
``AttributeError``, ``TypeError``) that would also catch programming errors.
"""

MALFORMED_VALUE_ERRORS: tuple[type[Exception], ...] = (ValueError, OverflowError, struct.error)
"""What pydicom raises when it converts a malformed value lazily, on attribute access."""

_MAX_MESSAGE_CHARS = 300


def describe(exc: BaseException) -> str:
    """One-line description of a foreign exception (ITK messages span several lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # ITK puts the useful sentence last, after the source-file location.
    text = lines[-1] if lines else ""
    if text.startswith("ITK ERROR:") and len(lines) > 1:
        text = " ".join(lines[-2:])
    text = text[:_MAX_MESSAGE_CHARS]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def foreign_errors(
    path: Path | str,
    action: str,
    *,
    error: type[InvalidInputError] = ImageReadError,
    catch: tuple[type[Exception], ...] = FOREIGN_ERRORS,
) -> Iterator[None]:
    """Re-raise foreign exceptions from the block as ``error`` naming ``path``.

    Parameters
    ----------
    path : pathlib.Path or str
        The file or folder being read or written; it appears in the message.
    action : str
        What was being done, e.g. ``"read DICOM file"``; the message reads
        ``"cannot <action> <path>: <cause>"``.
    error : type, optional
        The ``igrt`` error class to raise; :class:`~igrt.errors.ImageReadError` by default.
    catch : tuple of exception types, optional
        What to map; :data:`FOREIGN_ERRORS` by default, :data:`MALFORMED_VALUE_ERRORS` around
        code of ours that reads attribute values.

    Raises
    ------
    InvalidInputError
        Of class ``error``, chained to the foreign exception.
    """
    try:
        yield
    except IgrtError:
        raise
    except catch as exc:
        raise error(f"cannot {action} {path}: {describe(exc)}", field="path") from exc


def with_file_context(exc: InvalidInputError, path: Path | str) -> InvalidInputError:
    """A copy of an ``igrt`` input error whose message starts with the file it came from."""
    copy = type(exc)(f"{path}: {exc}", field=exc.field)
    copy.__cause__ = exc
    return copy
