"""Registration engine: CBCT to planning CT (3D rigid), kV/MV pairs to DRRs (2D/2D).

3D rigid CBCT-to-CT registration focused on the liver and the right diaphragm dome
(:func:`register_cbct_to_ct`): an automatic or given clip box (:class:`ClipBox`), an exhaustive
coarse translation search (capture range +/-25 mm) followed by Gauss-Newton refinement with an
intensity-fitted normalised cross-correlation, 3 or 6 degrees of freedom, an independent dome
check (:func:`find_dome_apex`), and a result (:class:`RigidRegistrationResult`) that names
every transform by its direction and every number by its unit and frame, with a quality status
that is never silently ``GOOD``. The 2D/2D registration is not implemented yet.
"""

from registration.clip_box import DEFAULT_DOME_BOX_EXTENT_MM, ClipBox
from registration.dome import DomeApex, DomeNotFoundError, find_dome_apex
from registration.errors import (
    ClipBoxError,
    FrameOfReferenceMismatchError,
    NoOverlapError,
    NotConvergedError,
    RegistrationProcessingError,
)
from registration.overlays import OverlayImages, PlaneValues, RegistrationOverlays, make_overlays
from registration.protocol import DEFAULT_REGISTRATION_PROTOCOL, RegistrationProtocol
from registration.result import (
    DomeCheck,
    DomeCheckValues,
    LevelRecord,
    QualityValues,
    RepositioningFlag,
    RigidRegistrationResult,
)
from registration.rigid import (
    PlanningReference,
    prepare_planning_reference,
    register_cbct_to_ct,
    register_cbct_to_ct_files,
)

__all__ = [
    "DEFAULT_DOME_BOX_EXTENT_MM",
    "DEFAULT_REGISTRATION_PROTOCOL",
    "ClipBox",
    "ClipBoxError",
    "DomeApex",
    "DomeCheck",
    "DomeCheckValues",
    "DomeNotFoundError",
    "FrameOfReferenceMismatchError",
    "LevelRecord",
    "NoOverlapError",
    "NotConvergedError",
    "OverlayImages",
    "PlaneValues",
    "PlanningReference",
    "QualityValues",
    "RegistrationOverlays",
    "RegistrationProcessingError",
    "RegistrationProtocol",
    "RepositioningFlag",
    "RigidRegistrationResult",
    "find_dome_apex",
    "make_overlays",
    "prepare_planning_reference",
    "register_cbct_to_ct",
    "register_cbct_to_ct_files",
]
