"""igrt: image guidance and respiratory-motion assessment for liver SBRT.

The domain core: imaging geometry, frames of reference, image and sequence types, image I/O,
and (in later modules) tracking, breathing analysis and motion-management decisions. It imports
neither the web service (``api``) nor the registration engine (``registration``).
"""

from igrt.errors import (
    FrameOfReferenceError,
    GeometryError,
    IgrtError,
    ImageReadError,
    InvalidInputError,
    ProcessingError,
)
from igrt.frame_of_reference import (
    AnatomyDisplacement,
    CouchCorrection,
    PatientPositionValues,
    iec_support_from_lps,
    lps_from_iec_support,
)
from igrt.geometry import ProjectionGeometry, obi_geometry, xvi_geometry
from igrt.sequence import FluoroSequence, IntensityValues
from igrt.volume import Volume

__version__ = "0.1.0"

__all__ = [
    "AnatomyDisplacement",
    "CouchCorrection",
    "FluoroSequence",
    "FrameOfReferenceError",
    "GeometryError",
    "IgrtError",
    "ImageReadError",
    "IntensityValues",
    "InvalidInputError",
    "PatientPositionValues",
    "ProcessingError",
    "ProjectionGeometry",
    "Volume",
    "iec_support_from_lps",
    "lps_from_iec_support",
    "obi_geometry",
    "xvi_geometry",
]
