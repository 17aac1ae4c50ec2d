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

The names are loaded on first use: a 3D registration does not pay for the 2D/2D modules, and
the DICOM export (pydicom) is imported when it is first needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from igrt.lazy_names import lazy_attribute

if TYPE_CHECKING:
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
    from registration.overlays import (
        OverlayImages,
        PlaneValues,
        RegistrationOverlays,
        make_overlays,
    )
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

_HOME = {
    "DEFAULT_CBCT_ISOCENTRE_LPS_MM": "cbct_placement",
    "DEFAULT_DOME_BOX_EXTENT_MM": "clip_box",
    "DEFAULT_REGISTRATION_PROTOCOL": "protocol",
    "KV_ATTENUATION": "attenuation",
    "MV_ATTENUATION": "attenuation",
    "SPATIAL_REGISTRATION_SOP_CLASS_UID": "dicom_reg",
    "AttenuationModel": "attenuation",
    "BeamVolume": "drr",
    "CbctPlacement": "cbct_placement",
    "ClipBox": "clip_box",
    "ClipBoxError": "errors",
    "DomeApex": "dome",
    "DomeCheck": "result",
    "DomeCheckValues": "result",
    "DomeNotFoundError": "dome",
    "FrameOfReferenceMismatchError": "errors",
    "FrameRelationValues": "cbct_placement",
    "ImagingModalityValues": "attenuation",
    "IsocentreRequiredError": "errors",
    "KvView": "pair2d",
    "LevelRecord": "result",
    "NoOverlapError": "errors",
    "NotConvergedError": "errors",
    "OverlayImages": "overlays",
    "Pair2DResult": "pair2d",
    "PairReference": "pair2d",
    "PlaneValues": "overlays",
    "PlanningReference": "rigid",
    "QualityValues": "result",
    "ReadSpatialRegistration": "dicom_reg",
    "RegistrationOverlays": "overlays",
    "RegistrationProcessingError": "errors",
    "RegistrationProtocol": "protocol",
    "RepositioningFlag": "result",
    "RigidRegistrationResult": "result",
    "ViewMatch": "pair2d",
    "find_dome_apex": "dome",
    "generate_drr": "drr",
    "make_overlays": "overlays",
    "place_cbct": "cbct_placement",
    "prepare_beam_volume": "drr",
    "prepare_pair_reference": "pair2d",
    "prepare_planning_reference": "rigid",
    "read_spatial_registration": "dicom_reg",
    "register_cbct_to_ct": "rigid",
    "register_cbct_to_ct_files": "rigid",
    "register_pair_to_drrs": "pair2d",
    "render_drr": "drr",
    "write_spatial_registration": "dicom_reg",
}
"""The submodule (of this package) that defines each public name."""


def __getattr__(name: str) -> Any:
    """Import the submodule defining ``name`` on first access (PEP 562)."""
    return lazy_attribute(__name__, _HOME, globals(), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
