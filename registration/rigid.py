"""Rigid CBCT-to-planning-CT registration focused on the liver and the right diaphragm dome.

Method
------
1. **Planning side, once per plan** (:func:`prepare_planning_reference`): the right dome apex is
   found from HU (:mod:`registration.dome`); the clip box is given or placed around it
   (:data:`registration.clip_box.DEFAULT_DOME_BOX_EXTENT_MM`); the CT inside the box is
   resampled to a 1 mm identity-direction lattice, clipped to [-1000, 300] HU (bone and its
   CBCT streaks do not dominate the liver's edges), smoothed to about a CBCT's resolution
   (Gaussian, sigma 0.65 mm) and block-averaged to 2 and 4 mm. Each level
   keeps its template points and their fixed steepest-descent images (1 mm: the 20 % of voxels
   with the strongest gradient; 2 mm: the strongest 30 %; 4 mm: all).
2. **CBCT values onto the CT's HU** (:mod:`registration._intensity`): a CBCT's stored values
   are not calibrated HU (``HU + 1000``, vendor units, gain errors), and both images are
   clipped to one HU window before any comparison. The CBCT crop is first mapped linearly so
   that its air/lung and soft-tissue class medians (Otsu split) match the CT's in the box;
   clipping unmapped values cut through the soft tissue and moved the edges by 1.7 mm on
   RTK-FDK CBCTs stored as ``0.85 (HU + 1000)``.
3. **Metric domain = clip box** (``STYLE.md`` pitfall 11): the template points are planning-CT
   points in the box; the CBCT is only sampled where they map to, and CBCT voxels outside its
   reconstructed field of view are invalid (NaN) and leave the sums. Nothing is initialised by
   aligning image centres: both images share the planning frame (a CBCT in the room's frame is
   first placed by the treatment isocentre, :mod:`registration.cbct_placement`), so the start
   is the identity.
4. **Capture range** (:mod:`registration._search`): an exhaustive search of every translation
   on a 4 mm lattice within ``capture_range_mm`` + 8 mm, by masked normalised
   cross-correlation computed with FFTs (17^3 shifts in ~20 ms), sub-voxel by parabolas.
5. **Local refinement** (:mod:`registration._gauss_newton`): inverse-compositional
   Gauss-Newton at 4, 2 and 1 mm, always 6 degrees of freedom (a translation-only fit absorbs
   a rotation into the translation: 1-2 mm for 2 degrees), with a per-iteration fit of the
   CBCT's gain, offset and linear shading (a normalised cross-correlation robust to the
   CBCT's HU scale, offset and cupping).
6. **Uncertainty**: delete-one-octant jackknife of the final level at the reference point
   (spread of the estimate when one eighth of the clip box is left out: it grows when parts of
   the box disagree, through noise, artefacts or deformation, and does not assume independent
   voxel noise as the inverse Hessian would), plus a 0.1 mm floor for common biases.
7. **Dome check**: the dome apex found independently in the CBCT (searched around the planning
   apex within the capture range, never around the registration's answer); its SI offset is
   compared with the registration's SI displacement at the planning apex.
8. **Quality**: every check that fails adds a reason; ``FAILED`` results carry no numbers.
   Rotations are always reported. ``degrees_of_freedom`` says what the couch corrects: with 3
   the rotation is not applied, the displacement given is the one right at the isocentre, and
   a rotation above the rotation tolerance (the protocol's ``rotation_tolerance_deg`` when it
   has one, else :data:`ROTATION_TOLERANCE_DEG`) makes the result QUESTIONABLE.

Determinism: no random sampling anywhere; the 1 mm template points are chosen by a gradient
threshold (ties all kept); resampling (SimpleITK) and FFTs (scipy) run on ``threads`` threads
and give the same bits whatever their number; the long reductions avoid BLAS (whose threads
would also be slow on a busy machine, see :func:`registration._grid.map_points`). Two runs, or
runs with 1 and 2 threads, return identical transforms (``tests/registration``).

Speed (real chest CT, 260 x 260 x 200 CBCT, ``benchmarks/registration.py``): about 0.35-0.45 s
of CPU time per registration with a prepared reference (overlays included), the preparation
about 0.5 s once per plan; measured as CPU time because the machine is shared (wall time there
is several times longer under load).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from igrt.errors import FrameOfReferenceError, InvalidInputError
from igrt.frame_of_reference import AnatomyDisplacement, PatientPositionValues
from igrt.imageio import LoadedVolume, read_volume
from igrt.volume import Volume
from registration._gauss_newton import (
    LevelOutcome,
    TemplateLevel,
    build_level,
    jackknife_covariance,
    refine,
    similarity,
)
from registration._grid import (
    CT_PADDING_BELOW_HU,
    IsoGrid,
    SampledImage,
    block_mean,
    crop_volume,
    inner,
    nan_gaussian,
    padding_value_of,
    resample_onto,
)
from registration._intensity import IntensityLandmarks, LinearMap, landmarks_of
from registration._search import masked_ncc_search
from registration.cbct_placement import CbctPlacement, place_cbct
from registration.clip_box import ClipBox, volume_bounds_lps_mm
from registration.dome import DomeApex, DomeNotFoundError, find_dome_apex
from registration.errors import ClipBoxError, NoOverlapError, NotConvergedError
from registration.overlays import make_overlays
from registration.protocol import DEFAULT_REGISTRATION_PROTOCOL, RegistrationProtocol
from registration.result import (
    DomeCheck,
    DomeCheckValues,
    LevelRecord,
    QualityValues,
    RepositioningFlag,
    RigidRegistrationResult,
    rotations_from_matrix,
)

__all__ = [
    "PlanningReference",
    "prepare_planning_reference",
    "register_cbct_to_ct",
    "register_cbct_to_ct_files",
]

FloatArray = npt.NDArray[np.float64]

CLIP_WINDOW = (-1000.0, 300.0)
"""Values are clipped to this window in both images before any comparison (CT HU scale)."""
TEMPLATE_SMOOTHING_MM = 0.65
"""Gaussian sigma applied to the 1 mm planning-CT template, mm (FWHM 1.5 mm)."""
KEEP_FRACTION_1MM = 0.2
"""Fraction of 1 mm template voxels kept (largest gradient magnitude)."""
KEEP_FRACTION_2MM = 0.3
"""Fraction of 2 mm template voxels kept (largest gradient magnitude). The 2 mm level only
brings the estimate into the 1 mm level's basin; keeping 30 % instead of every voxel changed the
final error by at most 0.002 mm on fast and RTK-FDK cases and saved about 0.07 s per
registration (``benchmarks/registration.py``)."""
UNCERTAINTY_FLOOR_MM = 0.1
"""Added in quadrature to the jackknife (vector length, mm): biases common to every octant of
the clip box, which a jackknife cannot see (resolution mismatch between CT and CBCT,
interpolation, reconstruction geometry). The largest such bias measured on simulated CBCTs was
0.07 mm (RTK reconstructions, ``benchmarks/registration.py``); 0.1 mm rounds it up."""
_SEARCH_SPACING_MM = 4.0
_SEARCH_EXTRA_MARGIN_MM = 8.0
_LEVELS: tuple[tuple[float, int, float], ...] = (
    # (spacing mm, iteration limit, convergence tolerance mm)
    (4.0, 20, 0.05),
    (2.0, 15, 0.02),
    (1.0, 10, 0.01),
)
_NOT_CONVERGED_FAIL_MM = 0.1
_FITTED_DOF = 6
ROTATION_TOLERANCE_DEG = 1.0
"""Largest rotation about any axis (degrees) a translation-only (3-DOF) correction leaves
uncorrected before the result is QUESTIONABLE; used while
:class:`~registration.protocol.RegistrationProtocol` has no ``rotation_tolerance_deg``.
Site choice: 1 degree turns a point 50 mm from the isocentre (the clip box's reach) by 0.9 mm,
under half of the 2 mm SBRT positioning tolerance (AAPM MPPG 9.a)."""
_DOME_SEARCH_EXTRA_MM = 20.0
_OVERLAY_MARGIN_MM = 20.0
_MIN_CLIP_BOX_IN_CBCT = 0.25


@dataclass(frozen=True, eq=False)
class PlanningReference:
    """Everything the registration needs from the planning CT, computed once per plan.

    Build it with :func:`prepare_planning_reference` and pass it to
    :func:`register_cbct_to_ct` in place of the planning CT to skip the preparation at every
    fraction.

    Parameters
    ----------
    planning_ct : igrt.volume.Volume
        The planning CT (HU).
    clip_box : ClipBox
        Clip box, LPS mm.
    clip_box_source : str
        ``"given"`` or ``"automatic around the right dome apex"``.
    dome : DomeApex or None
        Right dome apex found in the planning CT, or ``None``.
    dome_problem : str or None
        Why the dome was not found, if it was not.
    search_template : numpy.ndarray
        4 mm template ``(k, j, i)`` of the exhaustive search (NaN invalid).
    search_grid : IsoGrid
        Its lattice.
    levels : tuple
        Template points of the 4, 2 and 1 mm levels.
    preparation_s : float
        Wall time of the preparation, s.
    ct_landmarks : IntensityLandmarks or None
        Air/lung and soft-tissue class medians of the clipped CT in the box (HU): the target
        of the CBCT's intensity map (:mod:`registration._intensity`).
    """

    planning_ct: Volume
    clip_box: ClipBox
    clip_box_source: str
    dome: DomeApex | None
    dome_problem: str | None
    search_template: npt.NDArray[np.float32]
    search_grid: IsoGrid
    levels: tuple[TemplateLevel, ...]
    preparation_s: float
    ct_landmarks: IntensityLandmarks | None = None


def _as_volume(value: Volume | LoadedVolume, name: str) -> tuple[Volume, str | None]:
    if isinstance(value, LoadedVolume):
        return value.volume, value.patient_position
    if isinstance(value, Volume):
        return value, None
    raise InvalidInputError(
        f"{name} must be an igrt Volume or LoadedVolume, got {type(value).__name__}", field=name
    )


def prepare_planning_reference(
    planning_ct: Volume | LoadedVolume,
    *,
    clip_box: ClipBox | None = None,
    threads: int = 2,
) -> PlanningReference:
    """Analyse the planning CT once: dome apex, clip box and the template pyramid.

    Parameters
    ----------
    planning_ct : igrt.volume.Volume or igrt.imageio.LoadedVolume
        Planning CT in HU, any direction cosines.
    clip_box : ClipBox, optional
        Clip box in LPS mm; by default placed around the right dome apex found in the CT.
    threads : int, optional
        Threads for resampling.

    Returns
    -------
    PlanningReference
        The prepared reference.

    Raises
    ------
    ClipBoxError
        If the clip box is not inside the planning CT, or no clip box is given and no dome is
        found to place one.
    InvalidInputError
        If ``planning_ct`` is not a volume (NaN voxels are refused by
        :class:`~igrt.volume.Volume` itself).
    """
    started = time.perf_counter()
    ct, _ = _as_volume(planning_ct, "planning_ct")
    _check_threads(threads)
    dome: DomeApex | None = None
    dome_problem: str | None = None
    try:
        dome = find_dome_apex(ct, invalid_below=CT_PADDING_BELOW_HU, threads=threads)
    except DomeNotFoundError as error:
        dome_problem = str(error)
    ct_lower, ct_upper = volume_bounds_lps_mm(ct)
    ct_box = ClipBox(ct_lower, ct_upper) if np.all(ct_upper - ct_lower >= 20.0) else None
    if clip_box is None:
        if dome is None or ct_box is None:
            raise ClipBoxError(
                f"no clip box given and none can be placed: {dome_problem or 'CT too small'}",
                field="clip_box",
            )
        automatic = ClipBox.around(dome.position_lps_mm).intersection(ct_box)
        if automatic is None:
            raise ClipBoxError("the automatic clip box misses the planning CT", field="clip_box")
        box, source = automatic, "automatic around the right dome apex"
    else:
        if not isinstance(clip_box, ClipBox):
            raise ClipBoxError(
                f"clip_box must be a ClipBox, got {type(clip_box).__name__}", field="clip_box"
            )
        inside = clip_box.fraction_inside(ct_lower, ct_upper)
        if inside < 0.99:
            raise ClipBoxError(
                f"the clip box {clip_box!r} lies {100 * (1 - inside):.0f} % outside the planning "
                f"CT (LPS {np.round(ct_lower, 1).tolist()} to {np.round(ct_upper, 1).tolist()})",
                field="clip_box",
            )
        box, source = clip_box, "given"
    grid_1mm = IsoGrid.covering(box.lower_lps_mm, box.upper_lps_mm, 1.0, 4)
    crop = crop_volume(
        ct,
        grid_1mm.origin_lps_mm,
        grid_1mm.upper_lps_mm,
        margin_voxels=2,
        invalid_below=CT_PADDING_BELOW_HU,
    )
    if crop is None:  # pragma: no cover - excluded by the inside check above
        raise ClipBoxError("the clip box misses the planning CT", field="clip_box")
    template_1mm = np.clip(resample_onto(crop, grid_1mm, threads=threads), *CLIP_WINDOW)
    ct_landmarks = landmarks_of(template_1mm)
    # Bring the planning CT to about a CBCT's resolution (Gaussian, 1.5 mm FWHM) so that the
    # blurrier CBCT's edges are not compared with sharper ones (a bias of up to 0.07 mm).
    template_1mm = nan_gaussian(template_1mm.astype(np.float64), TEMPLATE_SMOOTHING_MM).astype(
        np.float32
    )
    centre = box.centre_lps_mm
    levels = []
    search_template: npt.NDArray[np.float32] | None = None
    search_grid: IsoGrid | None = None
    for spacing, _, _ in _LEVELS:
        factor = round(spacing)
        grid = grid_1mm.coarsened(factor) if factor > 1 else grid_1mm
        values = block_mean(template_1mm, (factor, factor, factor)) if factor > 1 else template_1mm
        keep = {1: KEEP_FRACTION_1MM, 2: KEEP_FRACTION_2MM}.get(factor, 1.0)
        level = build_level(values, grid, centre, keep_fraction=keep)
        if level.n_points < 1000:
            raise ClipBoxError(
                f"the clip box holds too little valid planning CT ({level.n_points} points at "
                f"{spacing} mm)",
                field="clip_box",
            )
        levels.append(level)
        if spacing == _SEARCH_SPACING_MM:
            search_template, search_grid = values, grid
    assert search_template is not None
    assert search_grid is not None
    return PlanningReference(
        planning_ct=ct,
        clip_box=box,
        clip_box_source=source,
        dome=dome,
        dome_problem=dome_problem,
        search_template=search_template,
        search_grid=search_grid,
        levels=tuple(levels),
        preparation_s=time.perf_counter() - started,
        ct_landmarks=ct_landmarks,
    )


def _check_threads(threads: int) -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 64:
        raise InvalidInputError(
            f"threads must be an integer in [1, 64], got {threads!r}", field="threads"
        )


def _search_margin_voxels(protocol: RegistrationProtocol) -> int:
    return math.ceil((protocol.capture_range_mm + _SEARCH_EXTRA_MARGIN_MM) / _SEARCH_SPACING_MM)


def register_cbct_to_ct(
    planning_ct: Volume | LoadedVolume | PlanningReference,
    cbct: Volume | LoadedVolume,
    *,
    patient_position: PatientPositionValues | str | None = None,
    clip_box: ClipBox | None = None,
    degrees_of_freedom: Literal[3, 6] = 6,
    isocentre_lps_mm: npt.ArrayLike | None = None,
    cbct_isocentre_lps_mm: npt.ArrayLike | None = None,
    protocol: RegistrationProtocol | None = None,
    cbct_padding_value: float | Literal["auto"] | None = "auto",
    overlays: bool = True,
    raise_on_failure: bool = False,
    threads: int = 2,
) -> RigidRegistrationResult:
    """Register a CBCT to the planning CT rigidly, focused on the liver and the right dome.

    Parameters
    ----------
    planning_ct : igrt.volume.Volume, igrt.imageio.LoadedVolume or PlanningReference
        Planning CT in HU (or its prepared reference, see :func:`prepare_planning_reference`).
    cbct : igrt.volume.Volume or igrt.imageio.LoadedVolume
        The day's CBCT, any direction cosines; its HU may be wrong. In the planning CT's
        Frame of Reference (same UID) it is registered as it is; in another one (a linac's
        room frame) it is first placed by the treatment isocentre
        (:mod:`registration.cbct_placement`: ``isocentre_lps_mm`` is then required).
    patient_position : PatientPositionValues or str, optional
        The session's DICOM Patient Position (IEC conversions). Taken from the CBCT's file
        (a :class:`~igrt.imageio.LoadedVolume`) when omitted.
    clip_box : ClipBox, optional
        Region whose anatomy is aligned, LPS mm; automatic around the right dome by default.
        Must be ``None`` when ``planning_ct`` is a :class:`PlanningReference`.
    degrees_of_freedom : {3, 6}, optional
        What the couch corrects: rotations too (6, default) or translations only (3). The fit
        always has 6 degrees of freedom and always reports the rotations: with 3 the
        displacement is still the one right at the isocentre, and a rotation above the
        protocol's rotation tolerance makes the result QUESTIONABLE (a translation-only fit
        would absorb the rotation into the translation).
    isocentre_lps_mm : array_like of float, optional
        Treatment isocentre (the reference point of the displacement), planning-CT LPS mm; the
        CBCT grid centre by default (a linac reconstructs its CBCT about the isocentre) for a
        CBCT in the planning frame. Required for a CBCT in another frame, which it places.
    cbct_isocentre_lps_mm : array_like of float, optional
        The machine isocentre in the CBCT's own LPS mm, for a CBCT in another frame;
        :data:`~registration.cbct_placement.DEFAULT_CBCT_ISOCENTRE_LPS_MM` (its origin) by
        default. Given for a CBCT without a Frame of Reference UID, it states that the CBCT is
        in its own frame. The result's ``cbct_placement`` records the frames and what was used.
    protocol : RegistrationProtocol, optional
        Thresholds (:data:`~registration.protocol.DEFAULT_REGISTRATION_PROTOCOL`).
    cbct_padding_value : float, "auto" or None, optional
        CBCT value written outside its reconstructed field of view; ``"auto"`` detects it
        (:func:`registration._grid.padding_value_of`), ``None`` treats every voxel as data.
    overlays : bool, optional
        Build the review images (about 30 ms).
    raise_on_failure : bool, optional
        Raise :class:`~registration.errors.NotConvergedError` instead of returning a
        ``FAILED`` result.
    threads : int, optional
        Threads for resampling and FFTs (the result does not depend on it).

    Returns
    -------
    RigidRegistrationResult
        Displacement, couch correction, rotations, quality, dome check, overlays.

    Raises
    ------
    NoOverlapError
        If the two volumes do not share space.
    ClipBoxError
        If the clip box lies outside the planning CT or outside the CBCT.
    IsocentreRequiredError
        If the CBCT is in another Frame of Reference and ``isocentre_lps_mm`` is not given
        (a :class:`~registration.errors.FrameOfReferenceMismatchError`).
    FrameOfReferenceError
        If no or an unknown patient position is given.
    InvalidInputError
        For any other unusable argument (NaN voxels are refused by
        :class:`~igrt.volume.Volume` itself).
    NotConvergedError
        With ``raise_on_failure=True``, when the result is ``FAILED``.

    Examples
    --------
    >>> from fixtures.phantom import make_phantom
    >>> from fixtures.cbct import simulate_cbct
    >>> ct = make_phantom().ct_hu
    >>> cbct = simulate_cbct(ct, isocentre_lps_mm=(-60.0, -10.0, 10.0),
    ...                      anatomy_displacement_lps_mm=(0.0, 0.0, 5.0)).cbct_hu
    >>> result = register_cbct_to_ct(ct, cbct, patient_position="HFS", overlays=False)
    >>> result.quality.value, np.round(result.anatomy_displacement.lps_mm, 1) + 0.0
    ('good', array([0., 0., 5.]))
    >>> np.round(result.couch_correction_iec_support_mm, 1) + 0.0
    array([ 0., -5.,  0.])
    """
    started = time.perf_counter()
    protocol = DEFAULT_REGISTRATION_PROTOCOL if protocol is None else protocol
    if not isinstance(protocol, RegistrationProtocol):
        raise InvalidInputError("protocol must be a RegistrationProtocol", field="protocol")
    if degrees_of_freedom not in (3, 6) or isinstance(degrees_of_freedom, bool):
        raise InvalidInputError(
            f"degrees_of_freedom must be 3 or 6, got {degrees_of_freedom!r}",
            field="degrees_of_freedom",
        )
    _check_threads(threads)
    cbct_volume, position_from_file = _as_volume(cbct, "cbct")
    position_value = patient_position if patient_position is not None else position_from_file
    if position_value is None:
        raise FrameOfReferenceError(
            "the patient position is needed to express the correction on IEC axes; pass "
            "patient_position (e.g. 'HFS')",
            field="patient_position",
        )
    position = PatientPositionValues.parse(position_value)
    if isinstance(planning_ct, PlanningReference):
        if clip_box is not None and clip_box != planning_ct.clip_box:
            raise ClipBoxError(
                "the clip box is fixed by the PlanningReference; prepare a new one",
                field="clip_box",
            )
        prepared: PlanningReference | None = planning_ct
        ct = planning_ct.planning_ct
    else:
        ct, _ = _as_volume(planning_ct, "planning_ct")
        prepared = None
    # From here on the CBCT is in planning-CT coordinates (moved there when its frame is
    # another); the placement says how, for the result and the DICOM REG.
    cbct_volume, placement = place_cbct(
        ct,
        cbct_volume,
        isocentre_lps_mm=isocentre_lps_mm,
        cbct_isocentre_lps_mm=cbct_isocentre_lps_mm,
    )
    _check_overlap(ct, cbct_volume)
    if prepared is None:
        reference = prepare_planning_reference(ct, clip_box=clip_box, threads=threads)
        started = time.perf_counter()
    else:
        reference = prepared
    box = reference.clip_box
    cbct_lower, cbct_upper = volume_bounds_lps_mm(cbct_volume)
    if box.fraction_inside(cbct_lower, cbct_upper) < _MIN_CLIP_BOX_IN_CBCT:
        raise ClipBoxError(
            f"the clip box {box!r} lies mostly outside the CBCT (LPS "
            f"{np.round(cbct_lower, 1).tolist()} to {np.round(cbct_upper, 1).tolist()})",
            field="clip_box",
        )
    reference_point, reference_source = _reference_point(isocentre_lps_mm, cbct_volume)
    padding = padding_value_of(cbct_volume) if cbct_padding_value == "auto" else cbct_padding_value
    if padding is not None and not (isinstance(padding, int | float) and math.isfinite(padding)):
        raise InvalidInputError(
            f"cbct_padding_value must be a finite number, 'auto' or None, got {padding!r}",
            field="cbct_padding_value",
        )
    engine = _Engine(reference, cbct_volume, padding, protocol, _FITTED_DOF, threads)
    outcome = engine.run(reference_point)
    dome_check = _dome_check(
        reference, cbct_volume, padding, outcome.cbct_from_ct, protocol, threads
    )
    result = _assemble(
        reference=reference,
        cbct=cbct_volume,
        padding=padding,
        outcome=outcome,
        dome_check=dome_check,
        reference_point=reference_point,
        reference_source=reference_source,
        placement=placement,
        position=position,
        dof=degrees_of_freedom,
        protocol=protocol,
        want_overlays=overlays,
        started=started,
    )
    if raise_on_failure and result.quality is QualityValues.FAILED:
        raise NotConvergedError(
            "the registration failed: " + "; ".join(result.reasons), reasons=result.reasons
        )
    return result


def register_cbct_to_ct_files(
    planning_ct_path: str | Path,
    cbct_path: str | Path,
    **options: Any,
) -> RigidRegistrationResult:
    """Read both images with :func:`igrt.imageio.read_volume` and register them.

    The patient position comes from the CBCT's file unless ``patient_position`` is passed.
    Readers raise :class:`~igrt.errors.GeometryError` for a missing or inconsistent orientation
    and :class:`~igrt.errors.ImageReadError` for unreadable files. Other keyword arguments are
    those of :func:`register_cbct_to_ct`.
    """
    planning = read_volume(planning_ct_path)
    day = read_volume(cbct_path)
    if options.get("patient_position") is None and day.patient_position is None:
        options["patient_position"] = planning.patient_position
    return register_cbct_to_ct(planning, day, **options)


# --- the engine ----------------------------------------------------------------------------


def _check_overlap(ct: Volume, cbct: Volume) -> None:
    ct_lower, ct_upper = volume_bounds_lps_mm(ct)
    cbct_lower, cbct_upper = volume_bounds_lps_mm(cbct)
    common = np.minimum(ct_upper, cbct_upper) - np.maximum(ct_lower, cbct_lower)
    if np.any(common < 20.0):
        raise NoOverlapError(
            "the planning CT (LPS "
            f"{np.round(ct_lower, 1).tolist()} to {np.round(ct_upper, 1).tolist()}) and the CBCT "
            f"({np.round(cbct_lower, 1).tolist()} to {np.round(cbct_upper, 1).tolist()}) do not "
            "overlap by 20 mm along every axis",
            field="cbct",
        )


def _reference_point(
    isocentre_lps_mm: npt.ArrayLike | None, cbct: Volume
) -> tuple[FloatArray, str]:
    if isocentre_lps_mm is None:
        return cbct.centre_lps_mm.copy(), "cbct-centre"
    try:
        point = np.asarray(isocentre_lps_mm, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"isocentre_lps_mm: {error}", field="isocentre_lps_mm") from None
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise InvalidInputError(
            "isocentre_lps_mm must be 3 finite numbers", field="isocentre_lps_mm"
        )
    return point, "isocentre"


@dataclass(frozen=True, eq=False)
class _Outcome:
    cbct_from_ct: FloatArray
    levels: tuple[LevelRecord, ...]
    final: LevelOutcome | None
    ncc_before: float
    search_ncc: float
    search_runner_up: float
    search_at_edge: bool
    covariance: FloatArray | None
    failure: str | None
    gain: float
    offset: float


class _Engine:
    """One registration's moving-image pyramid and its coarse-to-fine run."""

    def __init__(
        self,
        reference: PlanningReference,
        cbct: Volume,
        padding: float | None,
        protocol: RegistrationProtocol,
        dof: int,
        threads: int,
    ) -> None:
        self.reference = reference
        self.protocol = protocol
        self.dof = dof
        self.threads = threads
        self.margin_voxels = _search_margin_voxels(protocol)
        margin_mm = self.margin_voxels * _SEARCH_SPACING_MM + 8.0
        box = reference.clip_box
        crop = crop_volume(
            cbct,
            box.lower_lps_mm - margin_mm,
            box.upper_lps_mm + margin_mm,
            margin_voxels=1,
            padding_value=padding,
        )
        if crop is None:
            raise ClipBoxError("the clip box misses the CBCT", field="clip_box")
        self.intensity_map = _cbct_to_hu_map(reference.ct_landmarks, crop.array)
        self.intensity_map.apply_in_place(crop.array)
        np.clip(crop.array, *CLIP_WINDOW, out=crop.array)
        self.moving: dict[float, SampledImage] = {
            spacing: crop.coarsened(spacing) for spacing, _, _ in _LEVELS
        }

    def run(self, reference_point: FloatArray) -> _Outcome:
        levels_by_spacing = dict(
            zip([s for s, _, _ in _LEVELS], self.reference.levels, strict=True)
        )
        finest = levels_by_spacing[_LEVELS[-1][0]]
        ncc_before, _ = similarity(finest, self.moving[_LEVELS[-1][0]], np.eye(4))
        search_grid = self.reference.search_grid.expanded(self.margin_voxels)
        moving_lattice = (
            self.moving[_SEARCH_SPACING_MM]
            .sample(search_grid.points_lps_mm())
            .reshape(search_grid.shape_kji)
            .astype(np.float32)
        )
        found = masked_ncc_search(
            self.reference.search_template, moving_lattice, threads=self.threads
        )
        if found is None:
            return _Outcome(
                np.eye(4), (), None, ncc_before, -1.0, -1.0, False, None,
                "the clip box and the CBCT's field of view do not overlap enough for any "
                f"translation within the capture range (+/-{self.protocol.capture_range_mm} mm)",
                1.0, 0.0,
            )  # fmt: skip
        shift_mm = (found.shift_voxels - self.margin_voxels) * _SEARCH_SPACING_MM
        transform = np.eye(4)
        transform[:3, 3] = shift_mm
        records = [
            LevelRecord(
                f"search {_SEARCH_SPACING_MM:g} mm",
                _SEARCH_SPACING_MM,
                0,
                found.ncc,
                _displacement_at(transform, reference_point),
                f"exhaustive over +/-{self.margin_voxels * _SEARCH_SPACING_MM:g} mm; runner-up "
                f"NCC {found.runner_up_ncc:.3f}",
            )
        ]
        outcome: LevelOutcome | None = None
        for (spacing, max_iterations, tolerance), level in zip(
            _LEVELS, self.reference.levels, strict=True
        ):
            outcome = refine(
                level,
                self.moving[spacing],
                transform,
                dof=self.dof,
                max_iterations=max_iterations,
                tolerance_mm=tolerance,
            )
            transform = outcome.cbct_from_ct
            records.append(
                LevelRecord(
                    f"refine {spacing:g} mm",
                    spacing,
                    outcome.iterations,
                    outcome.ncc,
                    _displacement_at(transform, reference_point),
                    outcome.stop_condition,
                )
            )
        assert outcome is not None
        covariance = jackknife_covariance(
            finest,
            self.moving[_LEVELS[-1][0]],
            outcome,
            dof=self.dof,
            reference_lps_mm=reference_point,
        )
        gain, offset = _intensity_fit(finest, outcome)
        # The overlays compare the stored CBCT values: undo the map to HU.
        gain, offset = (
            gain / self.intensity_map.gain,
            (offset - self.intensity_map.offset) / self.intensity_map.gain,
        )
        return _Outcome(
            transform,
            tuple(records),
            outcome,
            ncc_before,
            found.ncc,
            found.runner_up_ncc,
            found.at_edge,
            covariance,
            None,
            gain,
            offset,
        )


def _cbct_to_hu_map(
    ct_landmarks: IntensityLandmarks | None, cbct_values: npt.NDArray[np.float32]
) -> LinearMap:
    """Linear map of the CBCT's stored values onto the CT's HU before the clip window."""
    cbct_landmarks = landmarks_of(cbct_values)
    if ct_landmarks is None or cbct_landmarks is None:
        return LinearMap()
    return LinearMap.between(cbct_landmarks, ct_landmarks)


def _intensity_fit(level: TemplateLevel, final: LevelOutcome) -> tuple[float, float]:
    """CBCT ~ gain x CT + offset on the final level at its result (for the overlays)."""
    sampling = final.final
    if sampling is None or sampling.sampled.size < 10:
        return 1.0, 0.0
    template = level.values if sampling.all_valid else level.values[sampling.valid]
    ct_values = template - template.mean()
    cbct_values = sampling.sampled
    variance = inner(ct_values, ct_values)
    if variance <= 0:
        return 1.0, 0.0
    slope = inner(ct_values, cbct_values - cbct_values.mean()) / variance
    intercept = float(cbct_values.mean()) - slope * float(template.mean())
    return float(slope), float(intercept)


def _displacement_at(cbct_from_ct: FloatArray, point: FloatArray) -> tuple[float, float, float]:
    moved = cbct_from_ct[:3, :3] @ point + cbct_from_ct[:3, 3] - point
    return (float(moved[0]), float(moved[1]), float(moved[2]))


# --- dome check ----------------------------------------------------------------------------


def _dome_check(
    reference: PlanningReference,
    cbct: Volume,
    padding: float | None,
    cbct_from_ct: FloatArray,
    protocol: RegistrationProtocol,
    threads: int,
) -> DomeCheck:
    tolerance = protocol.dome_check_tolerance_mm
    ct_apex = reference.dome
    if ct_apex is None:
        return DomeCheck(
            DomeCheckValues.UNAVAILABLE,
            tolerance,
            reason=f"no dome found in the planning CT: {reference.dome_problem}",
        )
    # The capture range plus a margin around the planning apex; along z also the tissue run
    # below and the lung run above that a lung-base column needs to qualify.
    reach = protocol.capture_range_mm + _DOME_SEARCH_EXTRA_MM
    below = np.array([reach, reach, reach + 20.0])
    above = np.array([reach, reach, reach + 15.0])
    search = ClipBox(ct_apex.position_lps_mm - below, ct_apex.position_lps_mm + above)
    try:
        cbct_apex = find_dome_apex(
            cbct,
            search_box=search,
            hint_lps_mm=ct_apex.position_lps_mm,
            padding_value=padding,
            invalid_below=None,
            threads=threads,
        )
    except (DomeNotFoundError, InvalidInputError) as error:
        return DomeCheck(
            DomeCheckValues.UNAVAILABLE,
            tolerance,
            ct_apex=ct_apex,
            reason=f"no dome found in the CBCT near the planning apex: {error}",
        )
    dome_offset = cbct_apex.si_mm - ct_apex.si_mm
    registration_si = _displacement_at(cbct_from_ct, ct_apex.position_lps_mm)[2]
    disagreement = abs(dome_offset - registration_si)
    agrees = disagreement <= tolerance
    return DomeCheck(
        DomeCheckValues.AGREES if agrees else DomeCheckValues.DISAGREES,
        tolerance,
        ct_apex=ct_apex,
        cbct_apex=cbct_apex,
        dome_si_offset_mm=dome_offset,
        registration_si_mm=registration_si,
        disagreement_mm=disagreement,
        reason=(
            f"dome SI offset {dome_offset:+.2f} mm vs registration {registration_si:+.2f} mm "
            f"at the dome: {'within' if agrees else 'beyond'} {tolerance} mm"
        ),
    )


# --- quality and the result ----------------------------------------------------------------


def rotation_tolerance_deg(protocol: RegistrationProtocol) -> float:
    """The protocol's rotation tolerance when it has one, else :data:`ROTATION_TOLERANCE_DEG`."""
    value = getattr(protocol, "rotation_tolerance_deg", None)
    return ROTATION_TOLERANCE_DEG if value is None else float(value)


class _Findings:
    """Failures (the result is FAILED) and warnings (QUESTIONABLE), in the order found."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.warnings: list[str] = []

    def quality(self) -> QualityValues:
        if self.failures:
            return QualityValues.FAILED
        return QualityValues.QUESTIONABLE if self.warnings else QualityValues.GOOD

    def reasons(self) -> tuple[str, ...]:
        return tuple(self.failures + self.warnings)


def _check_convergence(final: LevelOutcome, findings: _Findings) -> None:
    if final.valid_fraction == 0.0:
        findings.failures.append(final.stop_condition)
    elif not final.converged:
        far = final.last_step_mm > _NOT_CONVERGED_FAIL_MM
        (findings.failures if far else findings.warnings).append(
            f"the 1 mm level did not converge: {final.stop_condition}"
        )


def _check_similarity(
    ncc_after: float, protocol: RegistrationProtocol, findings: _Findings
) -> None:
    if ncc_after < protocol.min_ncc:
        findings.failures.append(
            f"similarity too low (NCC {ncc_after:.3f} < {protocol.min_ncc}): the CBCT does "
            "not show the clip box's anatomy"
        )
    elif ncc_after < protocol.good_ncc:
        findings.warnings.append(f"similarity low (NCC {ncc_after:.3f} < {protocol.good_ncc})")


def _check_overlap_fraction(
    overlap: float, protocol: RegistrationProtocol, findings: _Findings
) -> None:
    if overlap < protocol.min_overlap_fraction:
        findings.failures.append(
            f"only {100 * overlap:.0f} % of the clip box lies in the CBCT's field of view "
            f"at the result (< {100 * protocol.min_overlap_fraction:.0f} %)"
        )
    elif overlap < protocol.good_overlap_fraction:
        findings.warnings.append(
            f"only {100 * overlap:.0f} % of the clip box lies in the CBCT's field of view"
        )


def _check_search(outcome: _Outcome, protocol: RegistrationProtocol, findings: _Findings) -> None:
    if outcome.search_at_edge:
        findings.failures.append(
            "the coarse search peaked at the edge of the capture range "
            f"(+/-{protocol.capture_range_mm} mm): the displacement may be larger"
        )
    elif outcome.search_runner_up > outcome.search_ncc - protocol.min_search_ambiguity:
        findings.warnings.append(
            f"ambiguous coarse search: a second peak (NCC {outcome.search_runner_up:.3f}) "
            f"rivals the best ({outcome.search_ncc:.3f})"
        )


def _check_capture_range(
    displacement_lps: FloatArray, protocol: RegistrationProtocol, findings: _Findings
) -> None:
    if np.any(np.abs(displacement_lps) > protocol.capture_range_mm + 4.0):
        findings.failures.append(
            f"displacement {np.round(displacement_lps, 1).tolist()} mm lies beyond the capture "
            f"range (+/-{protocol.capture_range_mm} mm)"
        )


def _uncertainty_of(
    outcome: _Outcome, protocol: RegistrationProtocol, findings: _Findings
) -> tuple[tuple[float, float, float], float]:
    """Per-axis and vector 1-SD uncertainty at the reference point (jackknife plus floor)."""
    if outcome.covariance is None:
        if outcome.final is not None and not findings.failures:
            findings.warnings.append(
                "no uncertainty estimate (too few octants of the clip box hold data)"
            )
        return (math.nan, math.nan, math.nan), math.nan
    floor_per_axis = UNCERTAINTY_FLOOR_MM / math.sqrt(3.0)
    sd = np.sqrt(np.clip(np.diag(outcome.covariance), 0.0, None) + floor_per_axis**2)
    uncertainty = float(np.linalg.norm(sd))
    if uncertainty > protocol.max_uncertainty_mm:
        findings.warnings.append(
            f"uncertainty {uncertainty:.2f} mm above {protocol.max_uncertainty_mm} mm"
        )
    return (float(sd[0]), float(sd[1]), float(sd[2])), uncertainty


def _check_rotations(
    rotation_lps: tuple[float, float, float],
    dof: int,
    protocol: RegistrationProtocol,
    findings: _Findings,
) -> None:
    """Rotations beyond what a couch corrects; with 3 DOF, rotations beyond the tolerance."""
    largest = max(abs(a) for a in rotation_lps)
    rounded_deg = np.round(rotation_lps, 2).tolist()
    if largest > protocol.max_rotation_deg:
        findings.warnings.append(
            f"rotation {rounded_deg} deg exceeds {protocol.max_rotation_deg} deg about an axis: "
            "consider a new set-up"
        )
    tolerance = rotation_tolerance_deg(protocol)
    if dof == 3 and largest > tolerance:
        findings.warnings.append(
            f"rotation {rounded_deg} deg (LPS x, y, z) exceeds the {tolerance:g} deg rotation "
            "tolerance and a 3-DOF correction does not apply it: the translation given is "
            "right at the isocentre only; consider a 6-DOF correction or a new set-up"
        )


def _findings_of(
    outcome: _Outcome,
    displacement_lps: FloatArray,
    protocol: RegistrationProtocol,
) -> _Findings:
    findings = _Findings()
    if outcome.failure is not None:
        findings.failures.append(outcome.failure)
    final = outcome.final
    if final is not None:
        _check_convergence(final, findings)
        _check_similarity(final.ncc, protocol, findings)
        _check_overlap_fraction(final.valid_fraction, protocol, findings)
        _check_search(outcome, protocol, findings)
        _check_capture_range(displacement_lps, protocol, findings)
    return findings


def _repositioning_of(
    displacement: AnatomyDisplacement | None,
    rotation_iec_deg: tuple[float, float, float],
    protocol: RegistrationProtocol,
    position: PatientPositionValues,
) -> RepositioningFlag | None:
    """The protocol's repositioning rule (translation per axis and 3D, rotations) or None."""
    if displacement is None:
        return None
    return protocol.repositioning_flag(displacement, position, rotation_iec_deg)


def _assemble(
    *,
    reference: PlanningReference,
    cbct: Volume,
    padding: float | None,
    outcome: _Outcome,
    dome_check: DomeCheck,
    reference_point: FloatArray,
    reference_source: str,
    placement: CbctPlacement,
    position: PatientPositionValues,
    dof: int,
    protocol: RegistrationProtocol,
    want_overlays: bool,
    started: float,
) -> RigidRegistrationResult:
    # The displacement of the 6-DOF fit at the isocentre is the translation that is right
    # there whether or not the couch applies the rotation.
    displacement_lps = np.array(_displacement_at(outcome.cbct_from_ct, reference_point))
    findings = _findings_of(outcome, displacement_lps, protocol)
    uncertainty_lps, uncertainty = _uncertainty_of(outcome, protocol, findings)
    if dome_check.status is not DomeCheckValues.AGREES:
        findings.warnings.append(f"dome check {dome_check.status.value}: {dome_check.reason}")
    rotation_lps, rotation_iec, rotation_correction = rotations_from_matrix(
        outcome.cbct_from_ct[:3, :3], position
    )
    if outcome.final is not None:
        _check_rotations(rotation_lps, dof, protocol, findings)
    quality = findings.quality()
    failed = quality is QualityValues.FAILED
    displacement = None if failed else AnatomyDisplacement(tuple(displacement_lps))
    overlay_images = (
        make_overlays(
            reference.planning_ct,
            cbct,
            outcome.cbct_from_ct,
            centre_lps_mm=reference_point,
            half_extent_mm=0.5 * reference.clip_box.size_mm + _OVERLAY_MARGIN_MM,
            cbct_gain=outcome.gain,
            cbct_offset=outcome.offset,
            cbct_padding_value=padding,
        )
        if want_overlays
        else None
    )
    final = outcome.final
    return RigidRegistrationResult(
        cbct_from_ct=outcome.cbct_from_ct,
        reference_point_lps_mm=reference_point,
        reference_point_source=reference_source,
        cbct_placement=placement,
        patient_position=position,
        degrees_of_freedom=dof,
        quality=quality,
        reasons=findings.reasons(),
        anatomy_displacement=displacement,
        couch_correction=None if displacement is None else displacement.couch_correction(),
        anatomy_rotation_lps_deg=None if failed else rotation_lps,
        anatomy_rotation_iec_support_deg=None if failed else rotation_iec,
        couch_rotation_correction_iec_support_deg=(
            None if failed or dof == 3 else rotation_correction
        ),
        repositioning=_repositioning_of(displacement, rotation_iec, protocol, position),
        uncertainty_mm=uncertainty,
        uncertainty_lps_mm=uncertainty_lps,
        ncc_before=outcome.ncc_before,
        ncc_after=-1.0 if final is None else final.ncc,
        overlap_fraction=0.0 if final is None else final.valid_fraction,
        iterations=sum(record.iterations for record in outcome.levels),
        stop_condition=(
            final.stop_condition if final is not None else (outcome.failure or "not run")
        ),
        levels=outcome.levels,
        dome_check=dome_check,
        clip_box=reference.clip_box,
        clip_box_source=reference.clip_box_source,
        protocol=protocol,
        runtime_s=time.perf_counter() - started,
        overlays=overlay_images,
        intensity_gain=outcome.gain,
        intensity_offset=outcome.offset,
        extra={
            "search_ncc": outcome.search_ncc,
            "search_runner_up_ncc": outcome.search_runner_up,
            "preparation_s": reference.preparation_s,
            "rotation_tolerance_deg": rotation_tolerance_deg(protocol),
            "rotations_fitted": True,
            "rotations_applied": dof == 6,
        },
    )
