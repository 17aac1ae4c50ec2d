"""Plain builders of small sequences, rotations and RT Images for the image I/O tests."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import RTImageStorage, generate_uid

from igrt.geometry import ProjectionGeometry
from igrt.imageio._dicom_attributes import new_part10_dataset
from igrt.sequence import FluoroSequence, IntensityValues


def rotation_matrix(rx_deg: float, ry_deg: float, rz_deg: float) -> npt.NDArray[np.float64]:
    """A proper rotation (det +1) built from three elementary rotations."""
    ax, ay, az = (math.radians(a) for a in (rx_deg, ry_deg, rz_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx, dtype=np.float64)


def fixed_sequence(panel: ProjectionGeometry, n_frames: int = 6) -> FluoroSequence:
    """Fluoroscopy at one gantry angle, irregular frame times, raw uint16 frames."""
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 65536, (n_frames, *panel.detector_shape), dtype=np.uint16)
    timestamps = 12.3 + np.cumsum(rng.uniform(0.06, 0.08, n_frames))
    return FluoroSequence.with_fixed_geometry(frames, timestamps, panel)


def rotating_sequence(
    panel: ProjectionGeometry,
    n_frames: int = 40,
    intensity: IntensityValues = IntensityValues.RAW,
) -> FluoroSequence:
    """A CBCT-like rotation over more than 360 deg with per-frame panel offsets (flex)."""
    rng = np.random.default_rng(4)
    frames: npt.NDArray[Any]
    if intensity is IntensityValues.RAW:
        frames = rng.integers(0, 65536, (n_frames, *panel.detector_shape), dtype=np.uint16)
    else:
        frames = rng.normal(2.0, 1.5, (n_frames, *panel.detector_shape))
    timestamps = np.arange(n_frames) / 5.5 + 0.1
    geometries = tuple(
        replace(
            panel,
            gantry_deg=float(181.7 + 9.35 * i),
            detector_offset_mm=(115.0 + 0.37 * math.sin(i / 3.0), -0.11 * i),
        )
        for i in range(n_frames)
    )
    return FluoroSequence(frames, timestamps, geometries, intensity)


def rt_image_dataset(
    pixels: npt.NDArray[np.uint16],
    *,
    sid_mm: float = 1500.0,
    sad_mm: float = 1000.0,
    spacing_row_col_mm: tuple[float, float] = (0.392, 0.392),
    position_mm: tuple[float, float] | None = None,
    gantry_deg: float | None = 0.0,
    image_kind: str = "PORTAL",
) -> Dataset:
    """An RT Image as a vendor would write it; the image is centred on the beam by default.

    ``position_mm`` is RT Image Position: ``(x, y)`` of the first pixel's centre in the image
    receptor plane, ``y`` up (the first row is the top of the image).
    """
    rows, columns = pixels.shape
    if position_mm is None:
        position_mm = (
            -(columns - 1) / 2.0 * spacing_row_col_mm[1],
            (rows - 1) / 2.0 * spacing_row_col_mm[0],
        )
    sop_uid = generate_uid(entropy_srcs=["rt-image-test", str(position_mm), str(gantry_deg)])
    dataset = new_part10_dataset(RTImageStorage, sop_uid)
    dataset.SOPClassUID = RTImageStorage
    dataset.SOPInstanceUID = sop_uid
    dataset.Modality = "RTIMAGE"
    dataset.ImageType = ["ORIGINAL", "PRIMARY", image_kind]
    dataset.PatientID = "P1"
    dataset.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.7"
    dataset.RTImageLabel = f"{image_kind} image"
    dataset.RTImagePlane = "NORMAL"
    dataset.XRayImageReceptorTranslation = ["0.0", "0.0", f"{sad_mm - sid_mm:.6g}"]
    dataset.XRayImageReceptorAngle = "0.0"
    dataset.ImagePlanePixelSpacing = [f"{v:.10g}" for v in spacing_row_col_mm]
    dataset.RTImagePosition = [f"{v:.10g}" for v in position_mm]
    dataset.RadiationMachineSAD = f"{sad_mm:.10g}"
    dataset.RTImageSID = f"{sid_mm:.10g}"
    if gantry_deg is not None:
        dataset.GantryAngle = f"{gantry_deg:.10g}"
    dataset.PatientSupportAngle = "0.0"
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows = rows
    dataset.Columns = columns
    dataset.BitsAllocated = 16
    dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 0
    dataset.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return dataset


def write_rt_image(path: Path, pixels: npt.NDArray[np.uint16], **kwargs: Any) -> Path:
    """Write :func:`rt_image_dataset` to ``path`` and return it."""
    rt_image_dataset(pixels, **kwargs).save_as(path, enforce_file_format=True)
    return path
