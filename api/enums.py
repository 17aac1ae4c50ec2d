"""Enumerations shared by the database models and the HTTP schemas (values are stored)."""

from __future__ import annotations

import enum

__all__ = [
    "AssessmentStatusValues",
    "GeometrySourceValues",
    "RegistrationStatusValues",
    "ReviewOutcomeValues",
    "ReviewSubjectValues",
    "RoleValues",
    "SessionKindValues",
    "UploadFormatValues",
    "UploadKindValues",
    "VolumeFormatValues",
    "VolumeKindValues",
    "WorklistStatusValues",
]


class RoleValues(enum.StrEnum):
    """What an API token may do."""

    CONSOLE = "console"
    """A treatment console: creates sessions, uploads images, reads results."""

    THERAPIST = "therapist"
    """A radiation therapist: also creates patients (and reviews results)."""

    PHYSICIST = "physicist"
    """A medical physicist, the administrator: everything, including the audit trail."""

    PHYSICIAN = "physician"
    """A radiation oncologist: approves device choice and margins (motion-assessment reviews)
    when the active protocol names this role; reads results."""


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
    """A zip of PNG/TIFF frames, taken in natural name order, or of one vendor kV recording
    (XVI ``.his`` + ``_Frames.xml``, OBI ``.hnd`` + XML, TrueBeam ``.xim`` + ``Scan.xml``)
    whose geometry and frame times come from its files."""


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

    REGISTRATION = "registration"
    """A CBCT-to-planning-CT registration and its repositioning decision."""


class VolumeKindValues(enum.StrEnum):
    """What a volume upload holds."""

    PLANNING_CT = "planning_ct"
    """The planning CT (HU), the fixed reference of registrations."""

    CBCT = "cbct"
    """A day's cone-beam CT, reconstructed about the treatment isocentre."""


class VolumeFormatValues(enum.StrEnum):
    """File format of a volume upload."""

    DICOM_ZIP = "dicom_zip"
    """A zip of one DICOM image series (one file per slice; folders inside are fine)."""

    MHA = "mha"
    """One MetaImage file (``.mha``)."""

    NRRD = "nrrd"
    """One NRRD file (``.nrrd``, attached data)."""

    NIFTI = "nifti"
    """One NIfTI-1 file (``.nii``, or gzip-compressed ``.nii.gz``)."""


class RegistrationStatusValues(enum.StrEnum):
    """Where a registration job is."""

    QUEUED = "queued"
    """Accepted and waiting for a worker (or queued again after its worker died)."""

    RUNNING = "running"
    """A worker is registering the volumes."""

    COMPLETED = "completed"
    """Finished with a result (whose ``quality`` may still say it failed to converge)."""

    FAILED = "failed"
    """No result; ``reason`` says why (bad inputs, the time limit, or interrupted too often)."""


class WorklistStatusValues(enum.StrEnum):
    """Where a session stands on the review worklist (most urgent first)."""

    ALERT_DURING_MONITORING = "alert_during_monitoring"
    """The intrafraction alert fired on a stream of this session."""

    FLAGGED_FOR_REPOSITIONING = "flagged_for_repositioning"
    """A registration asks for a couch move beyond the threshold and is not reviewed yet."""

    AWAITING_REVIEW = "awaiting_review"
    """A motion assessment or registration has no review yet."""

    REVIEWED = "reviewed"
    """Every result has a standing review."""

    NO_RESULTS = "no_results"
    """Nothing to review yet (no assessment or finished registration)."""
