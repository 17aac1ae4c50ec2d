"""Image I/O: volumes (DICOM series, MHA/NRRD/NIfTI), kV frame sequences, RT Images.

kV frame sequences are read from XA, MHA or PNG/TIFF files; single RT Images (portal images,
DRRs) come with their projection geometry.

Every reader returns geometry in the project's conventions (volumes in DICOM LPS with the voxel
centre as origin; projection geometry per frame in IEC 61217 terms) and raises only ``igrt``
errors: :class:`~igrt.errors.ImageReadError` for files that cannot be read (the message names
the file) and :class:`~igrt.errors.GeometryError` when the geometry is missing or inconsistent.
Foreign exceptions from pydicom, SimpleITK and OpenCV are wrapped at this boundary.
"""

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
