"""Enumerations shared by the database models and the HTTP schemas (values are stored)."""

from __future__ import annotations

import enum

__all__ = [
    "AssessmentStatusValues",
    "GeometrySourceValues",
    "ReviewOutcomeValues",
    "ReviewSubjectValues",
    "RoleValues",
    "SessionKindValues",
    "UploadFormatValues",
    "UploadKindValues",
]


class RoleValues(enum.StrEnum):
    """What an API token may do."""

    CONSOLE = "console"
    """A treatment console: creates sessions, uploads images, reads results."""

    THERAPIST = "therapist"
    """A radiation therapist: also creates patients (and reviews results)."""

    PHYSICIST = "physicist"
    """A medical physicist, the administrator: everything, including the audit trail."""


class SessionKindValues(enum.StrEnum):
    """Which day of the protocol a session is."""

    SIMULATION = "simulation"
    """Simulation day: breathing-motion assessment on kV fluoroscopy."""

    FRACTION = "fraction"
    """A treatment fraction: daily image guidance."""


class UploadKindValues(enum.StrEnum):
    """What an upload holds."""

    FLUOROSCOPY = "fluoroscopy"
    """A kV fluoroscopy (or CBCT projection) frame sequence."""


class UploadFormatValues(enum.StrEnum):
    """File format of a fluoroscopy upload."""

    DICOM = "dicom"
    """One multi-frame DICOM file (XA/XRF, or a single CR/DX radiograph)."""

    MHA = "mha"
    """One 3D MetaImage whose third axis is the frame index."""

    RAW = "raw"
    """Headerless little-endian uint16 frames with a declared shape."""

    ZIP = "zip"
    """A zip of PNG/TIFF frames, taken in natural name order."""


class GeometrySourceValues(enum.StrEnum):
    """Where an upload's projection geometry (and frame times) came from."""

    FILE = "file"
    """The file carried it."""

    REQUEST = "request"
    """The uploader's form fields supplied what the file lacked."""


class AssessmentStatusValues(enum.StrEnum):
    """How far a motion assessment got."""

    COMPLETED = "completed"
    """Dome tracked, breathing analysed, motion-management decision made."""

    TRACKED = "tracked"
    """Dome tracked, but no analysis or decision (``reason`` says why): no recommendation."""

    FAILED = "failed"
    """No trustworthy dome track (``reason`` says why): nothing to act on."""


class ReviewOutcomeValues(enum.StrEnum):
    """What a reviewer decided about a result."""

    APPROVED = "approved"
    """The result stands as computed."""

    OVERRIDDEN = "overridden"
    """The reviewer decided otherwise; ``reason`` says why (required)."""


class ReviewSubjectValues(enum.StrEnum):
    """What kind of result a review is about."""

    MOTION_ASSESSMENT = "motion_assessment"
    """A breathing-motion assessment and its motion-management decision."""
