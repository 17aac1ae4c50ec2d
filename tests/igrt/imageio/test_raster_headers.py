"""Decoded size of PNG and TIFF frames from their headers, without decoding them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from igrt.errors import ImageReadError
from igrt.imageio.raster_headers import read_raster_size


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize(
    ("shape", "dtype", "channels", "bytes_per_pixel"),
    [
        ((30, 20), np.uint16, 1, 2),
        ((30, 20), np.uint8, 1, 1),
        ((30, 20, 3), np.uint8, 3, 3),
        ((30, 20, 4), np.uint16, 4, 8),
    ],
)
def test_sizes_channels_and_depth_from_the_header(
    tmp_path: Path,
    suffix: str,
    shape: tuple[int, ...],
    dtype: type,
    channels: int,
    bytes_per_pixel: int,
) -> None:
    import cv2

    path = tmp_path / f"frame{suffix}"
    assert cv2.imwrite(str(path), np.zeros(shape, dtype))
    size = read_raster_size(path)
    assert (size.rows, size.columns, size.channels) == (30, 20, channels)
    assert size.bytes_per_pixel == bytes_per_pixel


def test_other_and_broken_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"II*\x00\xff\xff\xff\x00")  # directory far beyond the file
    with pytest.raises(ImageReadError, match="beyond the file"):
        read_raster_size(path)
    path.write_bytes(b"GIF89a")
    with pytest.raises(ImageReadError, match="neither a PNG nor a TIFF"):
        read_raster_size(path)
