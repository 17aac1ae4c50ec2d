"""MetaImage and NRRD headers read with an allow-list; voxels read with a bounded inflate."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from isal import isal_zlib

from igrt.errors import GeometryError, ImageReadError, UnsafeHeaderError
from igrt.imageio import header_allowlist
from igrt.imageio.header_allowlist import (
    MAX_HEADER_BYTES,
    CompressionValues,
    read_image_header,
    read_image_voxels,
)
from tests.igrt.imageio.builders import rotation_matrix


def _image() -> sitk.Image:
    values = np.random.default_rng(3).integers(-1000, 3000, (3, 4, 5)).astype(np.int16)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.5, 0.7, 2.0))
    image.SetOrigin((-10.0, 20.5, 300.25))
    image.SetDirection(rotation_matrix(10.0, -20.0, 35.0).ravel().tolist())
    image.SetMetaData("FrameOfReferenceUID", "1.2.3")
    return image


@pytest.mark.parametrize("name", ["v.mha", "v.nrrd", "v.mhd"])
@pytest.mark.parametrize("compress", [True, False])
def test_files_simpleitk_writes_read_back_exactly(
    tmp_path: Path, name: str, compress: bool
) -> None:
    image = _image()
    path = tmp_path / name
    sitk.WriteImage(image, str(path), useCompression=compress)
    header = read_image_header(path, allow_sibling_data_file=name.endswith(".mhd"))
    voxels = read_image_voxels(header)
    np.testing.assert_array_equal(voxels, sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(header.spacing_mm, image.GetSpacing())
    np.testing.assert_allclose(header.origin_mm, image.GetOrigin())
    np.testing.assert_allclose(header.direction.ravel(), image.GetDirection(), atol=1e-12)
    assert header.metadata["FrameOfReferenceUID"] == "1.2.3"
    assert header.compression is (CompressionValues.ZLIB if compress else CompressionValues.RAW)


def test_a_file_simpleitk_rewrote_keeps_its_extra_itk_keys_readable(tmp_path: Path) -> None:
    sitk.WriteImage(_image(), str(tmp_path / "a.nrrd"))
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "a.nrrd")), str(tmp_path / "b.mha"))
    assert "ITK_original_direction" in (tmp_path / "b.mha").read_bytes().decode("latin-1")
    read_image_voxels(read_image_header(tmp_path / "b.mha"))


def test_nrrd_in_ras_space_is_converted_to_lps_as_itk_does(tmp_path: Path) -> None:
    path = tmp_path / "ras.nrrd"
    path.write_bytes(
        b"NRRD0004\ntype: short\ndimension: 3\nspace: right-anterior-superior\nsizes: 2 2 2\n"
        b"space directions: (0.5,0,0) (0,0.5,0) (0,0,2)\nspace origin: (10,20,30)\n"
        b"endian: big\nencoding: raw\n\n" + np.arange(8, dtype=">i2").tobytes()
    )
    header = read_image_header(path)
    itk = sitk.ReadImage(str(path))
    np.testing.assert_allclose(header.origin_mm, itk.GetOrigin())
    np.testing.assert_allclose(header.direction.ravel(), itk.GetDirection())
    np.testing.assert_array_equal(read_image_voxels(header), sitk.GetArrayFromImage(itk))


_BASE = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\n"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (_BASE + "ElementDataFile = /etc/passwd\n", "ElementDataFile"),
        (_BASE + "ElementDataFile = ../secret.raw\n", "ElementDataFile"),
        (_BASE + "ElementDataFile = LIST 2D\n/etc/passwd\n", "ElementDataFile"),
        (_BASE + "ElementDataFile = slice%03d.raw 1 2 1\n", "ElementDataFile"),
        (_BASE + "HeaderSize = -1\nElementDataFile = LOCAL\n", "HeaderSize"),
        (_BASE + "ElementDataFile : /etc/passwd\nElementDataFile = LOCAL\n", "ElementDataFile"),
        (
            _BASE + "Comment = x\rElementDataFile = /etc/passwd\nElementDataFile = LOCAL\n",
            "line ending",
        ),
        (_BASE + "NDims = 3\nElementDataFile = LOCAL\n", "NDims"),
        (_BASE + "Surprise = 1\nElementDataFile = LOCAL\n", "Surprise"),
        (_BASE + "Comment = \x00\nElementDataFile = LOCAL\n", "header"),
        (_BASE.replace("MET_UCHAR", "MET_LONG_LONG") + "ElementDataFile = LOCAL\n", "ElementType"),
        (_BASE.replace("3\n", "4\n", 1) + "ElementDataFile = LOCAL\n", "NDims"),
        (_BASE + "BinaryData = False\nElementDataFile = LOCAL\n", "BinaryData"),
        (_BASE, "ElementDataFile"),
        (
            "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n"
            "data file: /etc/passwd\n\n",
            "data file",
        ),
        (
            "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndatafile: LIST\n\n",
            "datafile",
        ),
        (
            "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\nbyte skip: -1\n\n",
            "byte skip",
        ),
        ("NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: ascii\n\n", "encoding"),
        (
            "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 3 2 2\nkinds: RGB-color domain domain\n"
            "encoding: raw\n\n",
            "kinds",
        ),
        ("NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\nEvil:=1\n\n", "Evil"),
    ],
)
def test_unsafe_headers_are_refused_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "hostile.mha"
    path.write_bytes(text.encode("latin-1") + bytes(8))
    with pytest.raises(UnsafeHeaderError) as caught:
        read_image_header(path)
    assert caught.value.field == key


def test_a_header_longer_than_the_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.mha"
    lines = [f"IGRT_Pad{chr(65 + i // 1000)}_{i % 1000:03d} = {'1 ' * 500}" for i in range(1100)]
    path.write_text(_BASE + "\n".join(lines) + "\nElementDataFile = LOCAL\n")
    assert path.stat().st_size > MAX_HEADER_BYTES
    with pytest.raises(UnsafeHeaderError, match="first 1048576 bytes"):
        read_image_header(path)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("ElementSpacing = 1e30 1 1", "ElementSpacing"),
        ("ElementSpacing = 0 1 1", "ElementSpacing"),
        ("ElementSpacing = -1 1 1", "ElementSpacing"),
        ("ElementSpacing = nan 1 1", "ElementSpacing"),
        ("Offset = 1e300 0 0", "Offset"),
        ("TransformMatrix = 1 0 0 1 0 0 0 0 1", "TransformMatrix"),
        ("TransformMatrix = 2 0 0 0 1 0 0 0 1", "TransformMatrix"),
    ],
)
def test_bad_geometry_is_refused_before_the_voxels(tmp_path: Path, line: str, key: str) -> None:
    path = tmp_path / "g.mha"
    path.write_text(_BASE + line + "\nElementDataFile = LOCAL\n")  # and no voxels at all
    with pytest.raises(GeometryError) as caught:
        read_image_header(path)
    assert caught.value.field == key


def test_channels_are_counted_and_refused(tmp_path: Path) -> None:
    path = tmp_path / "rgb.mha"
    path.write_text(_BASE + "ElementNumberOfChannels = 64\nElementDataFile = LOCAL\n")
    with pytest.raises(ImageReadError, match="64 components.*512 bytes"):
        read_image_header(path)


def test_a_sibling_data_file_only_when_allowed_and_only_beside_the_header(tmp_path: Path) -> None:
    sitk.WriteImage(_image(), str(tmp_path / "pair.mhd"))
    with pytest.raises(UnsafeHeaderError, match="must be LOCAL"):
        read_image_header(tmp_path / "pair.mhd")
    read_image_header(tmp_path / "pair.mhd", allow_sibling_data_file=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.raw").write_bytes(bytes(8))
    os.symlink(outside / "secret.raw", tmp_path / "link.raw")
    (tmp_path / "link.mhd").write_text(_BASE + "ElementDataFile = link.raw\n")
    with pytest.raises(UnsafeHeaderError, match="not a file beside the header"):
        read_image_header(tmp_path / "link.mhd", allow_sibling_data_file=True)


def test_compressed_voxels_never_inflate_beyond_the_declared_size(tmp_path: Path) -> None:
    path = tmp_path / "bomb.mha"
    bomb = zlib.compress(bytes(64 << 20))
    path.write_bytes((_BASE + "CompressedData = True\nElementDataFile = LOCAL\n").encode() + bomb)
    header = read_image_header(path)
    with pytest.raises(ImageReadError, match="inflate beyond the 8 bytes"):
        read_image_voxels(header)


class _CountingInflater:
    """ISA-L's decompressor (the one the reader uses), recording what each call hands out."""

    def __init__(self, wbits: int) -> None:
        self._inner = isal_zlib.decompressobj(wbits)
        self.pieces: list[int] = []

    @property
    def eof(self) -> bool:
        return self._inner.eof

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inner.unconsumed_tail

    def decompress(self, data: bytes, max_length: int) -> bytes:
        piece = self._inner.decompress(data, max_length)
        self.pieces.append(len(piece))
        return piece


@pytest.fixture
def inflaters(monkeypatch: pytest.MonkeyPatch) -> list[_CountingInflater]:
    """Every decompressor the reader makes during the test, in order."""
    made: list[_CountingInflater] = []

    def make(wbits: int) -> _CountingInflater:
        made.append(_CountingInflater(wbits))
        return made[-1]

    monkeypatch.setattr(
        header_allowlist, "isal_zlib", SimpleNamespace(decompressobj=make, error=isal_zlib.error)
    )
    return made


@pytest.mark.parametrize("name", ["v.mha", "v.nrrd"])
def test_zlib_and_gzip_voxels_are_inflated_by_isa_l(
    tmp_path: Path, name: str, inflaters: list[_CountingInflater]
) -> None:
    # ISA-L inflates zlib (MetaImage) and gzip (NRRD) streams 1.6 times as fast as zlib.
    image = _image()
    sitk.WriteImage(image, str(tmp_path / name), useCompression=True)
    values = read_image_voxels(read_image_header(tmp_path / name))
    np.testing.assert_array_equal(values, sitk.GetArrayFromImage(image))
    assert len(inflaters) == 1
    assert sum(inflaters[0].pieces) == values.nbytes


def test_a_corrupt_stream_is_an_image_read_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.mha"
    stream = bytearray(zlib.compress(bytes(range(8))))
    stream[0] ^= 0xFF  # no longer a zlib or gzip header
    path.write_bytes((_BASE + "CompressedData = True\nElementDataFile = LOCAL\n").encode() + stream)
    with pytest.raises(ImageReadError, match="cannot read the voxels"):
        read_image_voxels(read_image_header(path))


def test_a_bomb_larger_than_one_inflate_call_stops_one_byte_past_its_budget(
    tmp_path: Path, inflaters: list[_CountingInflater]
) -> None:
    # 20 MiB declared, 64 MiB of zeros sent: several inflate calls' worth either way.
    path = tmp_path / "bomb.mha"
    header = "ObjectType = Image\nNDims = 3\nDimSize = 1024 1024 20\nElementType = MET_UCHAR\n"
    bomb = zlib.compress(bytes(64 << 20))
    path.write_bytes((header + "CompressedData = True\nElementDataFile = LOCAL\n").encode() + bomb)
    with pytest.raises(ImageReadError, match=f"inflate beyond the {20 << 20} bytes"):
        read_image_voxels(read_image_header(path))
    assert [sum(inflater.pieces) for inflater in inflaters] == [(20 << 20) + 1]


def test_a_volume_spanning_several_inflate_calls_reads_back_exactly_in_bounded_pieces(
    tmp_path: Path, inflaters: list[_CountingInflater]
) -> None:
    # 40 MB that compress about 250-fold: one 8 MB read holds far more than one call's output.
    values = (np.arange(40 << 20, dtype=np.int64) // 4096 % 251).astype(np.uint8)
    values = values.reshape(40, 1024, 1024)
    path = tmp_path / "big.mha"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path), useCompression=True)
    np.testing.assert_array_equal(read_image_voxels(read_image_header(path)), values)
    # What one call holds in memory stays bounded however well the voxels compress.
    assert max(inflaters[0].pieces) <= 16 << 20


def test_truncated_trailing_and_oversized_voxels_are_refused(tmp_path: Path) -> None:
    for name, data in (("short", bytes(7)), ("long", bytes(9))):
        path = tmp_path / f"{name}.mha"
        path.write_bytes((_BASE + "ElementDataFile = LOCAL\n").encode() + data)
        with pytest.raises(ImageReadError, match="truncated, or trailing"):
            read_image_voxels(read_image_header(path))
    with pytest.raises(ImageReadError, match="more than the limit of 4"):
        read_image_voxels(read_image_header(tmp_path / "long.mha"), max_decoded_bytes=4)
