"""Vendor kV projection readers against RTK's on the same files.

TrueBeam: a real ``.xim`` (``../shared/data/vendor``). XVI and OBI: files written by
``fixtures.vendor_files`` from a simulated breathing sequence. Pixels must be bit-exact and the
geometry within 1e-6 of RTK's reading.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fixtures import breathing
from fixtures.fluoro import simulate_fluoro
from fixtures.motion import BreathingMotionModel
from fixtures.panel import PanelPhysics
from fixtures.phantom import make_phantom
from fixtures.vendor_files import write_his_folder, write_hnd_folder, write_xim_folder
from igrt.errors import GeometryError, ImageReadError
from igrt.geometry import xvi_geometry
from igrt.imageio.vendor_projections import read_vendor_projections, vendor_suffix
from igrt.imageio.vendor_xim import read_xim_frame, read_xim_sequence
from igrt.sequence import FluoroSequence

GEOMETRY_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def itk() -> Any:
    """RTK, the reference reader; skips without it, fails under ``IGRT_REQUIRE_RTK=1`` (CI)."""
    try:
        import itk
    except ImportError:
        itk = None
    if itk is None or not hasattr(itk, "RTK"):
        reason = "itk-rtk is not installed (pip install .[sim])"
        if os.environ.get("IGRT_REQUIRE_RTK") == "1":
            pytest.fail(f"IGRT_REQUIRE_RTK=1 but {reason}")
        pytest.skip(reason)
    return itk


@pytest.fixture(scope="module")
def simulated() -> FluoroSequence:
    """Six seconds of simulated breathing on a slowly turning gantry, panel offset."""
    geometry = replace(xvi_geometry(binning=8, gantry_deg=350.0), detector_offset_mm=(115.0, 2.5))
    simulation = simulate_fluoro(
        BreathingMotionModel.from_anatomy(make_phantom()),
        breathing.regular(10.0, 4.0, 30.0, 50.0),
        duration_s=6.0,
        fps=2.5,
        geometry=geometry,
        gantry_speed_deg_per_s=6.0,
        physics=PanelPhysics(photons_per_pixel=20000.0),
        grid_spacing_mm=(3.0, 2.0),
        seed=3,
    )
    return simulation.sequence


def _rtk_image(itk: Any, path: Path, io_name: str, pixel: Any) -> Any:
    io = getattr(itk.RTK, io_name).New()
    reader = itk.ImageFileReader[itk.Image[pixel, 2]].New(FileName=str(path), ImageIO=io)
    reader.Update()
    return reader.GetOutput()


def _rtk_pixels(itk: Any, path: Path, io_name: str, pixel: Any) -> np.ndarray:
    return np.asarray(itk.array_from_image(_rtk_image(itk, path, io_name, pixel)))


def _rtk_geometry(itk: Any, folder: Path, suffix: str) -> Any:
    rtk = itk.RTK
    files = [str(p) for p in sorted(folder.glob(f"*{suffix}"))]
    if suffix == ".his":
        reader = rtk.ElektaXVI5GeometryXMLFileReader.New()
        reader.SetFilename(str(folder / "_Frames.xml"))
        reader.GenerateOutputInformation()
        return reader.GetGeometry()
    cls, xml = {
        ".hnd": (rtk.VarianObiGeometryReader, "ImgParameters.xml"),
        ".xim": (rtk.VarianProBeamGeometryReader, "Scan.xml"),
    }[suffix]
    reader = cls.New()
    reader.SetXMLFileName(str(folder / xml))
    reader.SetProjectionsFileNames(files)
    reader.UpdateOutputData()
    return reader.GetGeometry()


def _assert_geometry_matches_rtk(sequence: FluoroSequence, rtk_geometry: Any) -> None:
    def column(name: str) -> np.ndarray:
        return np.array(list(getattr(rtk_geometry, f"Get{name}")()), dtype=np.float64)

    ours = sequence.geometries
    angle_gap = np.deg2rad([g.gantry_deg for g in ours]) - column("GantryAngles")
    np.testing.assert_allclose(np.angle(np.exp(1j * angle_gap)), 0.0, atol=GEOMETRY_TOLERANCE)
    checks = {
        "SourceToIsocenterDistances": [g.sad_mm for g in ours],
        "SourceToDetectorDistances": [g.sdd_mm for g in ours],
        "ProjectionOffsetsX": [g.detector_offset_mm[0] for g in ours],
        "ProjectionOffsetsY": [-g.detector_offset_mm[1] for g in ours],
    }
    for name, values in checks.items():
        np.testing.assert_allclose(values, column(name), atol=GEOMETRY_TOLERANCE, err_msg=name)
    # What our geometry cannot express must be absent from RTK's reading too.
    for name in ("InPlaneAngles", "OutOfPlaneAngles", "SourceOffsetsX", "SourceOffsetsY"):
        np.testing.assert_allclose(column(name), 0.0, atol=GEOMETRY_TOLERANCE, err_msg=name)


_WRITERS: dict[str, tuple[Callable[[FluoroSequence, Path], Path], str, str]] = {
    ".his": (write_his_folder, "HisImageIO", "US"),
    ".hnd": (write_hnd_folder, "HndImageIO", "UI"),
    ".xim": (write_xim_folder, "XimImageIO", "UI"),
}


@pytest.mark.parametrize("suffix", sorted(_WRITERS))
def test_written_recording_reads_bit_exact_and_like_rtk(
    itk: Any, simulated: FluoroSequence, tmp_path: Path, suffix: str
) -> None:
    write, io_name, pixel = _WRITERS[suffix]
    folder = write(simulated, tmp_path / suffix[1:])
    ours = read_vendor_projections(folder, fps=2.5)
    # Round trip: the simulated frames, times and geometry come back.
    np.testing.assert_array_equal(ours.frames, simulated.frames)
    np.testing.assert_allclose(ours.timestamps_s, simulated.timestamps_s, atol=1e-6)
    # Against RTK, file by file: pixels bit-exact (RTK keeps file row order), geometry 1e-6.
    files = sorted(folder.glob(f"*{suffix}"))
    for index, path in enumerate(files):
        image = _rtk_image(itk, path, io_name, getattr(itk, pixel))
        reference = np.asarray(itk.array_from_image(image))
        np.testing.assert_array_equal(np.asarray(ours.frames[index])[::-1], reference)
        np.testing.assert_allclose(
            ours.geometries[index].pixel_pitch_mm,
            tuple(image.GetSpacing()),
            atol=GEOMETRY_TOLERANCE,
            err_msg="pixel pitch",
        )
    _assert_geometry_matches_rtk(ours, _rtk_geometry(itk, folder, suffix))


@pytest.mark.shared_data
def test_real_truebeam_xim_is_bit_exact_with_rtk(itk: Any, shared_data: Path) -> None:
    path = shared_data / "vendor" / "varian_xim" / "FilterBowtie.xim"
    frame = read_xim_frame(path)
    np.testing.assert_array_equal(frame.pixels, _rtk_pixels(itk, path, "XimImageIO", itk.UI))
    assert frame.properties["KVSourceRtn"] == pytest.approx(180.00331750778412)
    sequence = read_xim_sequence(path)
    geometry = sequence.geometries[0]
    # No Scan.xml beside it: SAD and SDD from the frame's source and panel positions (cm).
    assert geometry.sad_mm == pytest.approx(1000.0, abs=0.01)
    assert geometry.sdd_mm == pytest.approx(1500.0, abs=0.05)
    assert geometry.detector_offset_mm[0] == pytest.approx(-160.0, abs=0.01)  # half fan
    assert geometry.pixel_pitch_mm == pytest.approx((0.388, 0.388))


# --- hostile and incomplete input ----------------------------------------------------------


@pytest.fixture
def small_sequence() -> FluoroSequence:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 4000, (2, 16, 16)).astype(np.uint16)
    geometry = xvi_geometry(binning=64)
    return FluoroSequence(frames, [0.0, 0.2], (geometry, geometry.with_gantry(5.0)))


def test_his_without_frames_xml_is_a_geometry_error(
    small_sequence: FluoroSequence, tmp_path: Path
) -> None:
    folder = write_his_folder(small_sequence, tmp_path / "his")
    (folder / "_Frames.xml").unlink()
    with pytest.raises(GeometryError, match="_Frames.xml"):
        read_vendor_projections(folder)


def test_his_frame_count_must_match_the_xml(small_sequence: FluoroSequence, tmp_path: Path) -> None:
    folder = write_his_folder(small_sequence, tmp_path / "his")
    next(iter(sorted(folder.glob("*.his")))).unlink()
    with pytest.raises(GeometryError, match="lists 2 frames"):
        read_vendor_projections(folder)


def test_his_header_claiming_a_huge_panel_is_refused_before_reading(
    small_sequence: FluoroSequence, tmp_path: Path
) -> None:
    folder = write_his_folder(small_sequence, tmp_path / "his")
    path = sorted(folder.glob("*.his"))[0]
    data = bytearray(path.read_bytes())
    struct.pack_into("<2H", data, 16, 60000, 60000)
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="outside"):
        read_vendor_projections(folder)


def test_xml_with_entities_is_refused(small_sequence: FluoroSequence, tmp_path: Path) -> None:
    folder = write_his_folder(small_sequence, tmp_path / "his")
    xml = folder / "_Frames.xml"
    text = xml.read_text().replace(
        "<ProjectionSet>", '<!DOCTYPE x [<!ENTITY a "aaaa">]>\n<ProjectionSet>'
    )
    xml.write_text(text)
    with pytest.raises(ImageReadError, match="DOCTYPE"):
        read_vendor_projections(folder)


@pytest.mark.parametrize("suffix", [".hnd", ".xim"])
def test_truncated_varian_frame_is_an_image_read_error(
    small_sequence: FluoroSequence, tmp_path: Path, suffix: str
) -> None:
    folder = _WRITERS[suffix][0](small_sequence, tmp_path / suffix[1:])
    path = sorted(folder.glob(f"*{suffix}"))[0]
    data = path.read_bytes()
    cut = 1024 + 60 + 4 * 17 + 40 if suffix == ".hnd" else 8 + 24 + 4 + 60 + 4 + 4 * 17 + 40
    path.write_bytes(data[:cut])  # inside the compressed differences
    with pytest.raises(ImageReadError, match="truncated"):
        read_vendor_projections(folder, fps=5.0)


def test_xim_with_an_unknown_property_type_is_refused(
    small_sequence: FluoroSequence, tmp_path: Path
) -> None:
    folder = write_xim_folder(small_sequence, tmp_path / "xim")
    path = sorted(folder.glob("*.xim"))[0]
    data = path.read_bytes()
    marker = b"KVSourceRtn" + struct.pack("<i", 1)
    path.write_bytes(data.replace(marker, b"KVSourceRtn" + struct.pack("<i", 9)))
    with pytest.raises(ImageReadError, match="unknown type 9"):
        read_vendor_projections(folder)


def test_hnd_without_scan_xml_or_fps(small_sequence: FluoroSequence, tmp_path: Path) -> None:
    folder = write_hnd_folder(small_sequence, tmp_path / "hnd")
    with pytest.raises(ImageReadError, match="fps"):
        read_vendor_projections(folder)
    (folder / "ImgParameters.xml").unlink()
    with pytest.raises(GeometryError, match="CalibratedSAD"):
        read_vendor_projections(folder, fps=5.0)


def test_mixed_vendor_folder_is_refused(small_sequence: FluoroSequence, tmp_path: Path) -> None:
    folder = write_his_folder(small_sequence, tmp_path / "mixed")
    write_xim_folder(small_sequence, folder)
    with pytest.raises(ImageReadError, match="mixes"):
        vendor_suffix(folder)
