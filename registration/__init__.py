"""Registration engine: CBCT to planning CT (3D rigid), kV/MV pairs to DRRs (2D/2D).

3D rigid CBCT-to-CT registration focused on the liver and the right diaphragm dome
(:func:`register_cbct_to_ct`): an automatic or given clip box (:class:`ClipBox`), an exhaustive
coarse translation search (capture range +/-25 mm) followed by Gauss-Newton refinement with an
intensity-fitted normalised cross-correlation, 3 or 6 degrees of freedom, an independent dome
check (:func:`find_dome_apex`), and a result (:class:`RigidRegistrationResult`) that names
every transform by its direction and every number by its unit and frame, with a quality status
that is never silently ``GOOD``.

2D/2D: fast cone-beam DRRs of the planning CT at any gantry angle (:func:`generate_drr`,
:func:`prepare_beam_volume`, :func:`render_drr`), with kV or MV attenuation
(:class:`ImagingModalityValues`, :mod:`registration.attenuation`), and the registration of an
orthogonal kV, MV or mixed MV-kV pair to them (:func:`register_pair_to_drrs`,
:class:`Pair2DResult`; views from arrays, fluoroscopy or DICOM RT Images,
:meth:`KvView.from_rt_image`) with a consistency check on the longitudinal axis both views
share. Export: the rigid result as a DICOM Spatial Registration object
(:func:`write_spatial_registration`, :func:`read_spatial_registration`).
"""

from registration.attenuation import (
    KV_ATTENUATION,
    MV_ATTENUATION,
    AttenuationModel,
    ImagingModalityValues,
)
from registration.cbct_placement import (
    DEFAULT_CBCT_ISOCENTRE_LPS_MM,
    CbctPlacement,
    FrameRelationValues,
    place_cbct,
)
from registration.clip_box import DEFAULT_DOME_BOX_EXTENT_MM, ClipBox
from registration.dicom_reg import (
    SPATIAL_REGISTRATION_SOP_CLASS_UID,
    ReadSpatialRegistration,
    read_spatial_registration,
    write_spatial_registration,
)
from registration.dome import DomeApex, DomeNotFoundError, find_dome_apex
from registration.drr import BeamVolume, generate_drr, prepare_beam_volume, render_drr
from registration.errors import (
    ClipBoxError,
    FrameOfReferenceMismatchError,
    IsocentreRequiredError,
    NoOverlapError,
    NotConvergedError,
    RegistrationProcessingError,
)
from registration.overlays import OverlayImages, PlaneValues, RegistrationOverlays, make_overlays
from registration.pair2d import (
    KvView,
    Pair2DResult,
    PairReference,
    ViewMatch,
    prepare_pair_reference,
    register_pair_to_drrs,
)
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
    "DEFAULT_CBCT_ISOCENTRE_LPS_MM",
    "DEFAULT_DOME_BOX_EXTENT_MM",
    "DEFAULT_REGISTRATION_PROTOCOL",
    "KV_ATTENUATION",
    "MV_ATTENUATION",
    "SPATIAL_REGISTRATION_SOP_CLASS_UID",
    "AttenuationModel",
    "BeamVolume",
    "CbctPlacement",
    "ClipBox",
    "ClipBoxError",
    "DomeApex",
    "DomeCheck",
    "DomeCheckValues",
    "DomeNotFoundError",
    "FrameOfReferenceMismatchError",
    "FrameRelationValues",
    "ImagingModalityValues",
    "IsocentreRequiredError",
    "KvView",
    "LevelRecord",
    "NoOverlapError",
    "NotConvergedError",
    "OverlayImages",
    "Pair2DResult",
    "PairReference",
    "PlaneValues",
    "PlanningReference",
    "QualityValues",
    "ReadSpatialRegistration",
    "RegistrationOverlays",
    "RegistrationProcessingError",
    "RegistrationProtocol",
    "RepositioningFlag",
    "RigidRegistrationResult",
    "ViewMatch",
    "find_dome_apex",
    "generate_drr",
    "make_overlays",
    "place_cbct",
    "prepare_beam_volume",
    "prepare_pair_reference",
    "prepare_planning_reference",
    "read_spatial_registration",
    "register_cbct_to_ct",
    "register_cbct_to_ct_files",
    "register_pair_to_drrs",
    "render_drr",
    "write_spatial_registration",
]
