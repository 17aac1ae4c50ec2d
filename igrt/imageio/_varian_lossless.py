"""Varian's lossless 32-bit pixel compression, shared by OBI ``.hnd`` and TrueBeam ``.xim``.

The first ``columns + 1`` pixels are stored raw (little-endian uint32). Every later pixel ``i``
is stored as the signed difference ``d = p[i] - p[i-1] - p[i-columns] + p[i-columns-1]`` in 1, 2
or 4 bytes; a lookup table gives the byte count of four differences per byte (2 bits each:
0 -> 1, 1 -> 2, 2 -> 4 bytes, 3 is invalid). Arithmetic is modulo 2**32, as in the vendor's and
RTK's decoders.

Decoding is vectorised: with ``q[i] = p[i] - p[i-columns]``, ``q[i] - q[i-1] = d[i]``, so ``q``
is a running sum of the differences and each column of ``p`` a running sum of ``q``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from igrt.errors import ImageReadError

__all__ = ["decode_varian_lossless", "n_differences"]

_BYTES_PER_CODE = np.array([1, 2, 4, 0], dtype=np.int64)


def n_differences(rows: int, columns: int) -> int:
    """How many stored differences a ``rows x columns`` frame needs."""
    return rows * columns - (columns + 1)


def _codes(lut: bytes, needed: int, path: Path) -> npt.NDArray[np.int64]:
    table = np.frombuffer(lut, dtype=np.uint8)
    codes = np.stack([(table >> shift) & 3 for shift in (0, 2, 4, 6)], axis=1).reshape(-1)
    if codes.size < needed:
        raise ImageReadError(
            f"{path}: the compression table covers {codes.size} pixels, the frame needs {needed}",
            field="path",
        )
    codes = codes[:needed].astype(np.int64)
    if np.any(codes == 3):
        raise ImageReadError(f"{path}: invalid code in the compression table", field="path")
    return codes


def _differences(
    sizes: npt.NDArray[np.int64], data: npt.NDArray[np.uint8], path: Path
) -> npt.NDArray[np.uint64]:
    ends = np.cumsum(sizes)
    total = int(ends[-1]) if ends.size else 0
    if data.size < total:
        raise ImageReadError(
            f"{path}: truncated pixel data ({data.size} of {total} compressed bytes)",
            field="path",
        )
    starts = ends - sizes
    differences = np.zeros(sizes.size, dtype=np.int64)
    for size, dtype in ((1, "<i1"), (2, "<i2"), (4, "<i4")):
        chosen = sizes == size
        if not np.any(chosen):
            continue
        gathered = data[starts[chosen, np.newaxis] + np.arange(size)]
        differences[chosen] = np.ascontiguousarray(gathered).view(dtype).reshape(-1)
    # uint64 arithmetic wraps modulo 2**64, which reduces to the format's modulo 2**32.
    return differences.astype(np.uint64)


def decode_varian_lossless(
    lut: bytes, payload: bytes, rows: int, columns: int, path: Path
) -> npt.NDArray[np.uint32]:
    """Decode one frame.

    Parameters
    ----------
    lut : bytes
        The lookup table (2 bits per difference).
    payload : bytes
        The raw first ``columns + 1`` pixels followed by the packed differences; trailing
        bytes beyond what the frame needs are ignored.
    rows, columns : int
        Frame size (at least 2 rows), already checked against the readers' ceilings.
    path : pathlib.Path
        Named in error messages.

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` uint32, in file row order.

    Raises
    ------
    ImageReadError
        Table or pixel data too short, or an invalid table code.
    """
    if rows < 2:
        raise ImageReadError(f"{path}: a compressed frame needs at least 2 rows", field="path")
    head = columns + 1
    if len(payload) < 4 * head:
        raise ImageReadError(f"{path}: truncated pixel data (first row)", field="path")
    first = np.frombuffer(payload, dtype="<u4", count=head).astype(np.uint64)
    codes = _codes(lut, n_differences(rows, columns), path)
    data = np.frombuffer(payload, dtype=np.uint8, offset=4 * head)
    differences = _differences(_BYTES_PER_CODE[codes], data, path)
    q = np.empty(rows * columns - columns, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping is the format's arithmetic
        q[0] = first[columns] - first[0]
        q[1:] = q[0] + np.cumsum(differences, dtype=np.uint64)
        pixels = np.empty((rows, columns), dtype=np.uint64)
        pixels[0] = first[:columns]
        pixels[1:] = first[:columns] + np.cumsum(
            q.reshape(rows - 1, columns), axis=0, dtype=np.uint64
        )
    return (pixels & np.uint64(0xFFFFFFFF)).astype(np.uint32)
