"""Image I/O: volumes (DICOM series, MHA/NRRD/NIfTI), kV frame sequences, RT Images.

kV frame sequences are read from XA, MHA or PNG/TIFF files; single RT Images (portal images,
DRRs) come with their projection geometry.

Every reader returns geometry in the project's conventions (volumes in DICOM LPS with the voxel
centre as origin; projection geometry per frame in IEC 61217 terms) and raises only ``igrt``
errors: :class:`~igrt.errors.ImageReadError` for files that cannot be read (the message names
the file) and :class:`~igrt.errors.GeometryError` when the geometry is missing or inconsistent.
Foreign exceptions from pydicom, SimpleITK and OpenCV are wrapped at this boundary.

The names below are loaded on first use: reading an MHA volume should not pay for pydicom,
SimpleITK and OpenCV (about 0.3 s of a fresh ``igrt register``), which the DICOM and
fluoroscopy readers import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from igrt.lazy_names import lazy_attribute

if TYPE_CHECKING:
    from igrt.imageio.dicom_series import write_ct_series
    from igrt.imageio.fluoro_dicom import read_fluoro_dicom, write_fluoro_dicom
    from igrt.imageio.fluoro_files import read_fluoro_frames, read_fluoro_mha, write_fluoro_mha
    from igrt.imageio.results import LoadedRtImage, LoadedVolume, WrittenDicom
    from igrt.imageio.rtimage import read_rt_image
    from igrt.imageio.volume_io import read_volume, write_volume_mha

__all__ = [
    "LoadedRtImage",
    "LoadedVolume",
    "WrittenDicom",
    "read_fluoro_dicom",
    "read_fluoro_frames",
    "read_fluoro_mha",
    "read_rt_image",
    "read_volume",
    "write_ct_series",
    "write_fluoro_dicom",
    "write_fluoro_mha",
    "write_volume_mha",
]

_HOME = {
    "LoadedRtImage": "results",
    "LoadedVolume": "results",
    "WrittenDicom": "results",
    "read_fluoro_dicom": "fluoro_dicom",
    "read_fluoro_frames": "fluoro_files",
    "read_fluoro_mha": "fluoro_files",
    "read_rt_image": "rtimage",
    "read_volume": "volume_io",
    "write_ct_series": "dicom_series",
    "write_fluoro_dicom": "fluoro_dicom",
    "write_fluoro_mha": "fluoro_files",
    "write_volume_mha": "volume_io",
}
"""The submodule (of this package) that defines each public name."""


def __getattr__(name: str) -> Any:
    """Import the submodule defining ``name`` on first access (PEP 562)."""
    return lazy_attribute(__name__, _HOME, globals(), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
