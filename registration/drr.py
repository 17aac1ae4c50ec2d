"""Fast cone-beam digitally reconstructed radiographs (DRRs) of a planning CT.

Method
------
The planning CT (HU, any direction cosines) is converted to linear attenuation at the imaging
beam's energy (:mod:`registration.attenuation`: kV by default, MV for portal images; bilinear)
and resampled **once per gantry angle and beam** with SimpleITK onto a *beam grid*
(:func:`prepare_beam_volume`): a lattice whose array axes are ``(long, depth, lat)`` —

- ``long`` along the detector ``v`` axis (IEC fixed ``-Y``, towards the couch foot),
- ``depth`` along the central ray, from the source towards the detector,
- ``lat`` along the detector ``u`` axis,

centred on the treatment isocentre. The CT's direction cosines are honoured by that
resampling (``STYLE.md`` pitfall 4): the beam grid's own direction (in LPS) is
``(axes in IEC fixed) @ iec_support_from_lps_matrix(patient_position)``, with the couch at
0 degrees so that IEC fixed and patient-support axes coincide.

A cone-beam line integral is then a sum over depth planes (:func:`render_drr`): each plane
perpendicular to the central ray maps onto the panel by the pure scaling ``SDD / d`` (``d`` its
distance from the source), i.e. one bilinear ``cv2.warpAffine`` per plane, and the per-pixel
ray obliquity ``sqrt(1 + (u^2 + v^2) / SDD^2)`` multiplies the sum. A rigid *translation* of the
anatomy only moves the grid's origin, so DRRs of the anatomy displaced by any vector cost one
projection and no resampling (the 2D/2D registration iterates on that).

The CT is extended beyond its first and last slice (array axis ``k``) by replicating them over
:data:`SLICE_PADDING_MM`, so rays leaving the scanned length see tissue rather than an air gap
(the same convention as the simulator in ``fixtures``).

Speed (2 cores, XVI panel binned 4x, 256x256): about 10-30 ms per DRR once the beam volume is
prepared; the preparation (one resampling) is done once per plan and angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError, InvalidInputError
from igrt.frame_of_reference import PatientPositionValues, iec_support_from_lps_matrix
from igrt.geometry import ProjectionGeometry
from igrt.imageio import LoadedVolume
from igrt.volume import Volume
from registration.attenuation import (
    BONE_CONTRAST_FACTOR,
    KV_ATTENUATION,
    MU_WATER_PER_MM,
    AttenuationModel,
    mu_per_mm_from_hu,
)
from registration.errors import foreign_errors_mapped

__all__ = [
    "BONE_CONTRAST_FACTOR",
    "MU_WATER_PER_MM",
    "SLICE_PADDING_MM",
    "BeamVolume",
    "beam_axes_iec_fixed",
    "generate_drr",
    "mu_per_mm_from_hu",
    "prepare_beam_volume",
    "project_depth_planes",
    "render_drr",
]

FloatArray = npt.NDArray[np.float64]

SLICE_PADDING_MM = 60.0
"""Length by which the first and last CT slices are replicated beyond the scan, mm."""

_WARP_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


def beam_axes_iec_fixed(gantry_deg: float) -> FloatArray:
    """Rows: unit vectors of the beam grid's ``(long, depth, lat)`` axes in IEC fixed axes.

    Parameters
    ----------
    gantry_deg : float
        kV source angle (IEC 61217), degrees.

    Examples
    --------
    >>> beam_axes_iec_fixed(0.0).round(6).tolist()
    [[0.0, -1.0, 0.0], [-0.0, 0.0, -1.0], [1.0, 0.0, -0.0]]
    """
    g = math.radians(gantry_deg)
    long_axis = [0.0, -1.0, 0.0]
    depth_axis = [-math.sin(g), 0.0, -math.cos(g)]
    lat_axis = [math.cos(g), 0.0, -math.sin(g)]
    return np.array([long_axis, depth_axis, lat_axis], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class BeamVolume:
    """Attenuation of a planning CT resampled onto a grid aligned with the beam at one angle.

    Build it with :func:`prepare_beam_volume`.

    Parameters
    ----------
    planes_mu_per_mm : numpy.ndarray
        Linear attenuation, 1/mm, float32, stored as depth planes: shape
        ``(n_depth, n_long, n_lat)`` (C-contiguous, one plane per projection warp).
    origin_mm : tuple of float
        ``(long, depth, lat)`` of voxel ``[0, 0, 0]`` relative to the isocentre, mm.
    long_mm : float
        Spacing along ``long``, mm.
    transverse_mm : float
        Spacing along ``depth`` and ``lat``, mm.
    gantry_deg : float
        The angle the grid is aligned with, degrees.
    isocentre_lps_mm : numpy.ndarray
        Treatment isocentre in the planning CT, LPS mm (placed at the machine isocentre).
    patient_position : PatientPositionValues
        How the patient lies on the couch (couch angle 0).
    beam_from_lps : numpy.ndarray
        3x3 rotation taking LPS components to beam-grid components ``(long, depth, lat)``.
    attenuation : AttenuationModel, optional
        The beam whose attenuation the grid holds (kV by default).
    """

    planes_mu_per_mm: npt.NDArray[np.float32]
    origin_mm: tuple[float, float, float]
    long_mm: float
    transverse_mm: float
    gantry_deg: float
    isocentre_lps_mm: FloatArray
    patient_position: PatientPositionValues
    beam_from_lps: FloatArray
    attenuation: AttenuationModel = KV_ATTENUATION

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size ``(n_long, n_depth, n_lat)``."""
        n_depth, n_long, n_lat = self.planes_mu_per_mm.shape
        return (n_long, n_depth, n_lat)

    def matches(self, geometry: ProjectionGeometry) -> bool:
        """Whether ``geometry`` has this grid's gantry angle (within 1e-6 degree)."""
        return abs(math.remainder(geometry.gantry_deg - self.gantry_deg, 360.0)) < 1e-6


def _as_volume(value: Volume | LoadedVolume) -> Volume:
    if isinstance(value, LoadedVolume):
        return value.volume
    if isinstance(value, Volume):
        return value
    raise InvalidInputError(
        f"planning_ct must be an igrt Volume or LoadedVolume, got {type(value).__name__}",
        field="planning_ct",
    )


def _as_point(value: npt.ArrayLike, name: str) -> FloatArray:
    point = np.asarray(value, dtype=np.float64).reshape(-1)
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise InvalidInputError(f"{name} must be 3 finite numbers (LPS mm)", field=name)
    return point


def _ct_corners_lps(ct: Volume) -> FloatArray:
    ni, nj, nk = ct.shape_ijk
    corners = np.array(
        [[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)],
        dtype=np.float64,
    )
    return ct.lps_from_index(corners)


def prepare_beam_volume(
    planning_ct: Volume | LoadedVolume,
    geometry: ProjectionGeometry,
    isocentre_lps_mm: npt.ArrayLike,
    patient_position: PatientPositionValues | str,
    *,
    transverse_mm: float = 1.25,
    long_mm: float = 1.0,
    margin_mm: float = 30.0,
    threads: int = 2,
    attenuation: AttenuationModel = KV_ATTENUATION,
) -> BeamVolume:
    """Resample the planning CT's attenuation onto a beam grid for ``geometry``'s angle.

    Parameters
    ----------
    planning_ct : igrt.volume.Volume or igrt.imageio.LoadedVolume
        Planning CT in HU, any direction cosines.
    geometry : ProjectionGeometry
        The imager; its gantry angle orients the grid, and its panel bounds the region kept.
    isocentre_lps_mm : array_like of float
        Treatment isocentre in the CT, LPS mm.
    patient_position : PatientPositionValues or str
        DICOM Patient Position (couch angle 0).
    transverse_mm, long_mm : float, optional
        Grid spacing across the beam (depth and lat) and along ``long``, mm.
    margin_mm : float, optional
        Extra extent kept around the panel's cone, room for displacements, mm.
    threads : int, optional
        Threads for the SimpleITK resampling.
    attenuation : AttenuationModel, optional
        HU to attenuation at the imaging beam's energy
        (:data:`~registration.attenuation.KV_ATTENUATION` by default,
        :data:`~registration.attenuation.MV_ATTENUATION` for a portal image).

    Returns
    -------
    BeamVolume
        Attenuation on the beam grid.

    Raises
    ------
    InvalidInputError
        If an argument is unusable or the CT does not reach into the panel's cone.
    FrameOfReferenceError
        If the patient position is unknown.
    """
    import SimpleITK as sitk

    ct = _as_volume(planning_ct)
    iso = _as_point(isocentre_lps_mm, "isocentre_lps_mm")
    position = PatientPositionValues.parse(patient_position)
    for name, value in (("transverse_mm", transverse_mm), ("long_mm", long_mm)):
        if not math.isfinite(value) or value <= 0:
            raise InvalidInputError(f"{name} must be finite and positive", field=name)
    if not math.isfinite(margin_mm) or margin_mm < 0:
        raise InvalidInputError("margin_mm must be finite and >= 0", field="margin_mm")
    if not isinstance(attenuation, AttenuationModel):
        raise InvalidInputError(
            "attenuation must be a registration.attenuation.AttenuationModel",
            field="attenuation",
        )
    iec_from_lps = iec_support_from_lps_matrix(position)
    beam_from_lps: FloatArray = beam_axes_iec_fixed(geometry.gantry_deg) @ iec_from_lps

    # Extent of the CT (slices extended by the padding) in beam coordinates about the isocentre.
    pad = math.ceil(SLICE_PADDING_MM / float(ct.spacing_mm[2]))
    ni, nj, nk = ct.shape_ijk
    corners_index = np.array(
        [[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (-pad, nk - 1 + pad)],
        dtype=np.float64,
    )
    corners_beam = (ct.lps_from_index(corners_index) - iso) @ beam_from_lps.T
    low = corners_beam.min(axis=0)
    high = corners_beam.max(axis=0)
    # The panel's cone, back-projected over the CT's depth range (plus the margin).
    u_mm, v_mm = geometry.detector_mm_from_pixel(
        np.array([-0.5, geometry.detector_shape[1] - 0.5]),
        np.array([-0.5, geometry.detector_shape[0] - 0.5]),
    )
    scales = (geometry.sad_mm + np.array([low[1], high[1]])) / geometry.sdd_mm
    if np.any(scales <= 0):
        raise InvalidInputError("the planning CT extends behind the kV source", field="planning_ct")
    lat_reach = np.outer(scales, u_mm)
    long_reach = np.outer(scales, v_mm)
    low[0] = max(low[0], float(long_reach.min()) - margin_mm)
    high[0] = min(high[0], float(long_reach.max()) + margin_mm)
    low[2] = max(low[2], float(lat_reach.min()) - margin_mm)
    high[2] = min(high[2], float(lat_reach.max()) + margin_mm)
    if np.any(high <= low):
        raise InvalidInputError(
            "the planning CT does not reach into the imager's field of view around the "
            f"isocentre {np.round(iso, 1).tolist()} (LPS mm)",
            field="isocentre_lps_mm",
        )
    spacing = np.array([long_mm, transverse_mm, transverse_mm])
    shape = np.ceil((high - low) / spacing).astype(int) + 1

    # ITK axes (i, j, k) = (lat, depth, long); their LPS unit vectors are rows of beam_from_lps.
    direction_lps = beam_from_lps.T[:, [2, 1, 0]]
    mu = mu_per_mm_from_hu(np.asarray(ct.array), attenuation)
    padded = np.pad(mu, ((pad, pad), (0, 0), (0, 0)), mode="edge")
    with foreign_errors_mapped("resampling the planning CT onto the beam grid"):
        image = sitk.GetImageFromArray(padded)
        image.SetSpacing([float(s) for s in ct.spacing_mm])
        image.SetDirection([float(d) for d in ct.direction.ravel()])
        image.SetOrigin([float(o) for o in ct.lps_from_index([[0.0, 0.0, -pad]])[0]])
        reference = sitk.Image([int(n) for n in shape[::-1]], sitk.sitkFloat32)
        reference.SetSpacing([float(s) for s in spacing[::-1]])
        reference.SetDirection([float(d) for d in direction_lps.ravel()])
        reference.SetOrigin([float(o) for o in iso + low @ beam_from_lps])
        resampler = sitk.ResampleImageFilter()
        resampler.SetReferenceImage(reference)
        resampler.SetInterpolator(sitk.sitkLinear)
        resampler.SetDefaultPixelValue(0.0)
        resampler.SetOutputPixelType(sitk.sitkFloat32)
        resampler.SetNumberOfThreads(int(threads))
        # ITK arrays come out (k, j, i) = (long, depth, lat): the grid's own axis order.
        grid = sitk.GetArrayFromImage(resampler.Execute(image))
    planes = np.ascontiguousarray(grid.transpose(1, 0, 2), dtype=np.float32)
    return BeamVolume(
        planes_mu_per_mm=planes,
        origin_mm=(float(low[0]), float(low[1]), float(low[2])),
        long_mm=float(long_mm),
        transverse_mm=float(transverse_mm),
        gantry_deg=float(geometry.gantry_deg),
        isocentre_lps_mm=iso,
        patient_position=position,
        beam_from_lps=beam_from_lps,
        attenuation=attenuation,
    )


def render_drr(
    beam_volume: BeamVolume,
    geometry: ProjectionGeometry,
    *,
    anatomy_displacement_lps_mm: npt.ArrayLike = (0.0, 0.0, 0.0),
) -> npt.NDArray[np.float32]:
    """Attenuation line integrals ``∫ mu dl`` (dimensionless) on every panel pixel.

    Parameters
    ----------
    beam_volume : BeamVolume
        The planning CT on a beam grid at ``geometry``'s angle.
    geometry : ProjectionGeometry
        Imager (SAD, SDD, panel, offsets); its gantry angle must be the grid's.
    anatomy_displacement_lps_mm : array_like of float, optional
        Render the anatomy translated by this vector (LPS mm) relative to the plan, i.e. as
        imaged when the anatomy is displaced by it with respect to the machine isocentre.

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` float32 line integrals (bright = attenuating, like
        :attr:`igrt.sequence.IntensityValues.LINE_INTEGRAL`); rows run along ``v``.

    Raises
    ------
    GeometryError
        If the gantry angles differ or the grid reaches behind the source.
    """
    if not beam_volume.matches(geometry):
        raise GeometryError(
            f"the beam volume was prepared for gantry {beam_volume.gantry_deg} deg, not "
            f"{geometry.gantry_deg} deg",
            field="gantry_deg",
        )
    shift_beam = beam_volume.beam_from_lps @ _as_point(
        anatomy_displacement_lps_mm, "anatomy_displacement_lps_mm"
    )
    origin_mm = (
        beam_volume.origin_mm[0] + float(shift_beam[0]),
        beam_volume.origin_mm[1] + float(shift_beam[1]),
        beam_volume.origin_mm[2] + float(shift_beam[2]),
    )
    with foreign_errors_mapped("projecting the beam volume"):
        return project_depth_planes(
            beam_volume.planes_mu_per_mm,
            origin_mm=origin_mm,
            transverse_mm=beam_volume.transverse_mm,
            long_mm=beam_volume.long_mm,
            geometry=geometry,
        )


def project_depth_planes(
    planes_mu_per_mm: npt.NDArray[np.float32],
    *,
    origin_mm: tuple[float, float, float],
    transverse_mm: float,
    long_mm: float,
    geometry: ProjectionGeometry,
) -> npt.NDArray[np.float32]:
    """Cone-beam line integrals of a beam-aligned attenuation grid on the panel.

    Every plane perpendicular to the central ray maps onto the panel by a pure ``SDD / d``
    scaling, so each is one bilinear warp; the per-pixel ray obliquity multiplies the sum.
    Exact ray sums for a volume piecewise constant along depth.

    Parameters
    ----------
    planes_mu_per_mm : numpy.ndarray
        Attenuation, 1/mm, shape ``(n_depth, n_long, n_lat)``: depth along the beam (source
        to panel), long along the panel's ``v`` axis, lat along its ``u`` axis.
    origin_mm : tuple of float
        ``(long, depth, lat)`` of voxel ``[0, 0, 0]`` relative to the isocentre, mm.
    transverse_mm, long_mm : float
        Spacing along depth and lat, and along long, mm.
    geometry : ProjectionGeometry
        The panel and distances (its gantry angle must be the grid's).

    Raises
    ------
    GeometryError
        If the grid reaches behind the source.
    """
    long0, depth0, lat0 = origin_mm
    h_t, h_long = transverse_mm, long_mm
    rows, cols = geometry.detector_shape
    pitch_u, pitch_v = geometry.pixel_pitch_mm
    u0 = geometry.detector_offset_mm[0] - (cols - 1) / 2.0 * pitch_u
    v0 = geometry.detector_offset_mm[1] - (rows - 1) / 2.0 * pitch_v
    planes = planes_mu_per_mm
    accumulator = np.zeros((rows, cols), dtype=np.float32)
    for j in range(planes.shape[0]):
        distance_mm = geometry.sad_mm + depth0 + j * h_t
        if distance_mm <= 0:
            raise GeometryError("the anatomy extends behind the source")
        scale = distance_mm / geometry.sdd_mm
        # Output pixel (c, r) samples plane j at (lat, long) index coordinates.
        matrix = np.array(
            [
                [scale * pitch_u / h_t, 0.0, (scale * u0 - lat0) / h_t],
                [0.0, scale * pitch_v / h_long, (scale * v0 - long0) / h_long],
            ]
        )
        accumulator += cv2.warpAffine(
            planes[j],
            matrix,
            (cols, rows),
            flags=_WARP_FLAGS,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
    u_mm, v_mm = geometry.detector_mm_from_pixel(np.arange(cols)[None, :], np.arange(rows)[:, None])
    obliquity = np.sqrt(1.0 + (u_mm**2 + v_mm**2) / geometry.sdd_mm**2)
    drr: npt.NDArray[np.float32] = (accumulator * (h_t * obliquity)).astype(np.float32)
    return drr


def generate_drr(
    planning_ct: Volume | LoadedVolume,
    geometry: ProjectionGeometry,
    isocentre_lps_mm: npt.ArrayLike,
    patient_position: PatientPositionValues | str,
    *,
    anatomy_displacement_lps_mm: npt.ArrayLike = (0.0, 0.0, 0.0),
    transverse_mm: float = 1.25,
    long_mm: float = 1.0,
    threads: int = 2,
    attenuation: AttenuationModel = KV_ATTENUATION,
) -> npt.NDArray[np.float32]:
    """One DRR of the planning CT: :func:`prepare_beam_volume` then :func:`render_drr`.

    Parameters
    ----------
    planning_ct : igrt.volume.Volume or igrt.imageio.LoadedVolume
        Planning CT in HU, any direction cosines.
    geometry : ProjectionGeometry
        The imager at its gantry angle.
    isocentre_lps_mm : array_like of float
        Treatment isocentre in the CT, LPS mm.
    patient_position : PatientPositionValues or str
        DICOM Patient Position (couch angle 0).
    anatomy_displacement_lps_mm : array_like of float, optional
        Translation of the anatomy relative to the plan, LPS mm.
    transverse_mm, long_mm : float, optional
        Beam-grid spacing, mm.
    threads : int, optional
        Resampling threads.
    attenuation : AttenuationModel, optional
        HU to attenuation at the imaging beam's energy (kV by default).

    Returns
    -------
    numpy.ndarray
        ``(rows, columns)`` float32 line integrals.

    Examples
    --------
    >>> from fixtures.phantom import make_phantom
    >>> from igrt.geometry import xvi_geometry
    >>> ct = make_phantom().ct_hu
    >>> drr = generate_drr(ct, xvi_geometry(binning=4), ct.centre_lps_mm, "HFS")
    >>> drr.shape, bool(drr.max() > 1.0)
    ((256, 256), True)
    """
    beam = prepare_beam_volume(
        planning_ct,
        geometry,
        isocentre_lps_mm,
        patient_position,
        transverse_mm=transverse_mm,
        long_mm=long_mm,
        threads=threads,
        attenuation=attenuation,
    )
    return render_drr(beam, geometry, anatomy_displacement_lps_mm=anatomy_displacement_lps_mm)
