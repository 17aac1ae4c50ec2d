"""2D/2D registration of an orthogonal kV, MV or mixed MV-kV image pair to DRRs of the plan.

Views and beams
---------------
A view is an image with its :class:`~igrt.geometry.ProjectionGeometry` and the beam that made
it (:class:`~registration.attenuation.ImagingModalityValues`): ``KV`` for the on-board kV
imager, ``MV`` for a portal image of the treatment beam (EPID). Any two views at gantry angles
at least 15 degrees apart make a pair, e.g. MV at gantry 0 with kV at gantry 90. Each view's
DRR uses its own beam's HU-to-attenuation map (:mod:`registration.attenuation`), so an MV
view is matched to a DRR with MV's low bone contrast. The geometry may come from a DICOM RT
Image (:meth:`KvView.from_rt_image`, :func:`igrt.imageio.read_rt_image`), including a virtual
image plane at the isocentre (``SDD == SAD``) such as a TPS's DRR. The result reports each
view's modality (:attr:`ViewMatch.modality`).

Method
------
1. **Planning side, once per plan, angle and beam** (:func:`prepare_pair_reference`): the
   planning CT is resampled onto one beam grid per view
   (:func:`registration.drr.prepare_beam_volume`).
2. **Per view**, the image and its DRR are turned into gradient images (Gaussian, sigma 1 px,
   then Sobel ``d/du`` and ``d/dv`` as two channels): gradients ignore the offset and gain
   between a measured image and a DRR, and the pair of signed components keeps the edges'
   polarity. The 2D translation of the image relative to the DRR is the peak of their
   normalised cross-correlation (``cv2.matchTemplate``, ``TM_CCOEFF_NORMED``, channels
   summed), found coarse to fine (panel binned 4x, 2x, 1x): an exhaustive search covering the
   capture range at the coarsest level, then +/-2 px at each finer level, sub-pixel by a
   parabola through the peak and its neighbours.
3. **Panel to isocentre** (``STYLE.md`` pitfall 5): a panel translation ``(du, dv)`` mm is
   ``(du, dv) * SAD / SDD`` at the isocentre plane, along the view's ``u`` and ``v`` axes in IEC
   fixed coordinates (:mod:`igrt.geometry`).
4. **Combination into 3D**: the two views give four equations for three unknowns (least
   squares on the IEC fixed axes, couch at 0 degrees, so IEC fixed = IEC patient support).
   Both views see the longitudinal axis (IEC ``Y``, the detector's ``-v`` at every gantry
   angle): the two estimates of it are reported, with their disagreement, and a disagreement
   above the tolerance makes the result ``QUESTIONABLE``.
5. **Iteration**: the DRRs are re-rendered with the anatomy at the current 3D estimate (a
   translation only moves the beam grid's origin: no resampling) and matched again, until the
   update is below 0.05 mm (at most :data:`MAX_ITERATIONS`). This removes the error of a
   single magnification for structures off the isocentre plane and of the out-of-plane shift.
6. **Uncertainty**: per view, the template is split into quadrants that are matched on their
   own; the spread of the quadrant estimates (standard error of their mean) gives each
   equation's standard deviation, propagated through the least squares, with a 0.1 mm floor
   added in quadrature, and at least half the shared-axis disagreement on that axis.

Frames and directions
---------------------
The result's ``anatomy_displacement`` is where the anatomy lies today relative to the plan (LPS
mm, at the isocentre); ``couch_correction`` is its negative; both are expressed along IEC
patient-support axes for the session's patient position. A per-view ``isocentre_shift_uv_mm``
is the anatomy's displacement projected on that view's detector ``(u, v)`` axes, at the
isocentre plane.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError, InvalidInputError
from igrt.frame_of_reference import (
    AnatomyDisplacement,
    CouchCorrection,
    PatientPositionValues,
    iec_support_from_lps_matrix,
)
from igrt.geometry import ProjectionGeometry
from igrt.imageio import LoadedRtImage, LoadedVolume
from igrt.sequence import FluoroSequence, IntensityValues
from igrt.volume import Volume
from registration.attenuation import ImagingModalityValues
from registration.drr import BeamVolume, prepare_beam_volume, render_drr
from registration.errors import NotConvergedError, foreign_errors_mapped
from registration.protocol import DEFAULT_REGISTRATION_PROTOCOL, RegistrationProtocol
from registration.result import QualityValues, RepositioningFlag

__all__ = [
    "DEFAULT_SHARED_AXIS_TOLERANCE_MM",
    "MAX_ITERATIONS",
    "KvView",
    "Pair2DResult",
    "PairReference",
    "ViewMatch",
    "prepare_pair_reference",
    "register_pair_to_drrs",
]

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

DEFAULT_SHARED_AXIS_TOLERANCE_MM = 1.0
"""Largest accepted disagreement between the two views' longitudinal estimates, mm."""

MAX_ITERATIONS = 5
"""Most DRR re-renderings (the first match included)."""

UNCERTAINTY_FLOOR_MM = 0.1
"""Added in quadrature to every axis's standard deviation (common biases), mm."""

_CONVERGED_MM = 0.05
_FINE_SEARCH_PX = 2
_PYRAMID = (4, 2, 1)


@dataclass(frozen=True, eq=False)
class KvView:
    """One projection image (kV or MV), the geometry and the beam it was acquired with.

    The name is historical: an MV portal image is a view too (``modality=MV``).

    Parameters
    ----------
    image : numpy.ndarray
        ``(rows, columns)`` pixel values; rows run along the detector ``v`` axis.
    geometry : ProjectionGeometry
        Imager at the acquisition's gantry angle (the source's); its detector shape must match
        the image.
    intensity : IntensityValues, optional
        ``RAW`` panel signal (bright where little attenuates; converted with ``-ln``) or
        ``LINE_INTEGRAL`` (bright where much attenuates, like a DRR).
    modality : ImagingModalityValues or str, optional
        The beam that made the image: ``KV`` (default) or ``MV`` (portal image); its DRR is
        computed with that beam's attenuation.

    Raises
    ------
    InvalidInputError
        If the image is not 2D and finite, or the intensity or modality is unknown.
    GeometryError
        If its shape differs from the geometry's detector shape.
    """

    image: Float32Array
    geometry: ProjectionGeometry
    intensity: IntensityValues = IntensityValues.LINE_INTEGRAL
    modality: ImagingModalityValues = ImagingModalityValues.KV

    def __post_init__(self) -> None:
        if not isinstance(self.geometry, ProjectionGeometry):
            raise InvalidInputError("a view needs a ProjectionGeometry", field="geometry")
        if not isinstance(self.intensity, IntensityValues):
            raise InvalidInputError(
                f"intensity must be an IntensityValues member, got {self.intensity!r}",
                field="intensity",
            )
        object.__setattr__(self, "modality", ImagingModalityValues.parse(self.modality))
        image = np.asarray(self.image, dtype=np.float32)
        if image.ndim != 2 or not np.all(np.isfinite(image)):
            raise InvalidInputError("a view needs a finite 2D image", field="image")
        if image.shape != self.geometry.detector_shape:
            raise GeometryError(
                f"image shape {image.shape} differs from the detector shape "
                f"{self.geometry.detector_shape}",
                field="detector_shape",
            )
        object.__setattr__(self, "image", image)

    @classmethod
    def from_sequence(cls, sequence: FluoroSequence, index: int = 0) -> KvView:
        """The frame ``index`` of a fluoroscopy sequence, with its own geometry."""
        if not 0 <= index < sequence.n_frames:
            raise InvalidInputError(
                f"frame {index} is outside the sequence's {sequence.n_frames} frames",
                field="index",
            )
        return cls(
            np.asarray(sequence.frames[index], dtype=np.float32),
            sequence.geometries[index],
            sequence.intensity,
        )

    @classmethod
    def from_rt_image(
        cls,
        rt_image: LoadedRtImage,
        *,
        intensity: IntensityValues,
        modality: ImagingModalityValues | str,
    ) -> KvView:
        """A view whose image and geometry come from a DICOM RT Image.

        Parameters
        ----------
        rt_image : igrt.imageio.LoadedRtImage
            What :func:`igrt.imageio.read_rt_image` returned; its geometry (SID, SAD, pixel
            spacing, RT Image Position, source angle) is the view's.
        intensity : IntensityValues
            What the stored pixel values mean (RT Images do not say): ``RAW`` panel signal or
            ``LINE_INTEGRAL``-like (bright where much attenuates, e.g. a DRR), whatever the
            Photometric Interpretation.
        modality : ImagingModalityValues or str
            The beam that made the image (``MV`` for a portal image). Not guessed from the
            file: an RT Image's Image Type does not say it reliably.

        Raises
        ------
        InvalidInputError
            If ``rt_image`` is not a LoadedRtImage, or the intensity or modality is unknown.
        """
        if not isinstance(rt_image, LoadedRtImage):
            raise InvalidInputError(
                "rt_image must be what igrt.imageio.read_rt_image returns", field="rt_image"
            )
        return cls(
            rt_image.image, rt_image.geometry, intensity, ImagingModalityValues.parse(modality)
        )

    def line_integral(self) -> Float32Array:
        """The image as attenuation line integrals up to an additive constant."""
        if self.intensity is IntensityValues.RAW:
            values: Float32Array = -np.log(np.maximum(self.image, 1.0)).astype(np.float32)
            return values
        return self.image


@dataclass(frozen=True, eq=False)
class PairReference:
    """The planning CT prepared for DRRs at the views' angles (one grid per angle and beam).

    Parameters
    ----------
    beam_volumes : tuple of BeamVolume
        One per prepared gantry angle and beam (kV or MV attenuation).
    isocentre_lps_mm : numpy.ndarray
        Treatment isocentre, LPS mm.
    patient_position : PatientPositionValues
        Patient orientation on the couch.
    preparation_s : float
        Wall time of the preparation, s.
    """

    beam_volumes: tuple[BeamVolume, ...]
    isocentre_lps_mm: FloatArray
    patient_position: PatientPositionValues
    preparation_s: float

    def beam_volume_for(
        self,
        geometry: ProjectionGeometry,
        modality: ImagingModalityValues | str = ImagingModalityValues.KV,
    ) -> BeamVolume:
        """The beam grid prepared at ``geometry``'s gantry angle for ``modality``'s beam.

        Raises
        ------
        GeometryError
            If no grid was prepared at that angle for that beam.
        InvalidInputError
            If the modality is unknown.
        """
        beam_type = ImagingModalityValues.parse(modality)
        for beam in self.beam_volumes:
            if beam.matches(geometry) and beam.attenuation == beam_type.attenuation:
                return beam
        prepared = [f"{b.gantry_deg:g} deg {b.attenuation.name}" for b in self.beam_volumes]
        raise GeometryError(
            f"no DRR grid prepared at gantry {geometry.gantry_deg:g} deg for a "
            f"{beam_type.value} view (prepared: {prepared})",
            field="gantry_deg",
        )


def prepare_pair_reference(
    planning_ct: Volume | LoadedVolume,
    geometries: Sequence[ProjectionGeometry],
    *,
    isocentre_lps_mm: npt.ArrayLike,
    patient_position: PatientPositionValues | str,
    capture_range_mm: float = DEFAULT_REGISTRATION_PROTOCOL.capture_range_mm,
    threads: int = 2,
    modalities: Sequence[ImagingModalityValues | str] | None = None,
) -> PairReference:
    """Resample the planning CT once per view angle and beam for fast DRRs.

    Parameters
    ----------
    planning_ct : igrt.volume.Volume or igrt.imageio.LoadedVolume
        Planning CT in HU, any direction cosines.
    geometries : sequence of ProjectionGeometry
        The imagers (one per view).
    isocentre_lps_mm : array_like of float
        Treatment isocentre in the CT, LPS mm.
    patient_position : PatientPositionValues or str
        DICOM Patient Position (couch angle 0).
    capture_range_mm : float, optional
        Largest displacement the DRRs must cover, mm (grid margin).
    threads : int, optional
        Resampling threads.
    modalities : sequence of ImagingModalityValues or str, optional
        The beam of each geometry (same order and length); all ``KV`` by default.

    Returns
    -------
    PairReference
        The prepared beam grids.

    Raises
    ------
    InvalidInputError
        No geometry, an unknown modality, or ``modalities`` not matching ``geometries``.
    """
    started = time.perf_counter()
    position = PatientPositionValues.parse(patient_position)
    geometry_list = list(geometries)
    if modalities is None:
        beam_types = [ImagingModalityValues.KV] * len(geometry_list)
    else:
        beam_types = [ImagingModalityValues.parse(m) for m in modalities]
        if len(beam_types) != len(geometry_list):
            raise InvalidInputError(
                f"{len(beam_types)} modalities for {len(geometry_list)} geometries: give one "
                "per geometry",
                field="modalities",
            )
    beams: list[BeamVolume] = []
    for geometry, beam_type in zip(geometry_list, beam_types, strict=True):
        if any(
            beam.matches(geometry) and beam.attenuation == beam_type.attenuation for beam in beams
        ):
            continue
        beams.append(
            prepare_beam_volume(
                planning_ct,
                geometry,
                isocentre_lps_mm,
                position,
                margin_mm=capture_range_mm + 5.0,
                threads=threads,
                attenuation=beam_type.attenuation,
            )
        )
    if not beams:
        raise InvalidInputError("at least one geometry is needed", field="geometries")
    return PairReference(
        beam_volumes=tuple(beams),
        isocentre_lps_mm=beams[0].isocentre_lps_mm,
        patient_position=position,
        preparation_s=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class ViewMatch:
    """What one view measured.

    Parameters
    ----------
    gantry_deg : float
        Source angle of the view (kV source or treatment beam), degrees.
    modality : ImagingModalityValues
        The beam that made the view's image (kV or MV).
    isocentre_shift_uv_mm : tuple of float
        The anatomy's displacement seen by this view along its detector ``(u, v)`` axes, scaled
        to the isocentre plane, mm (the final 3D estimate projected plus this view's residual).
    residual_panel_mm : tuple of float
        The last match's translation on the panel, ``(u, v)`` mm (near 0 at convergence).
    uncertainty_uv_mm : tuple of float
        1 SD of the view's ``(u, v)`` measurement at the isocentre plane, mm.
    ncc_before, ncc_after : float
        Gradient normalised cross-correlation of the image with the DRR at the plan and at the
        result.
    at_search_edge : bool
        Whether the coarse search peaked on the edge of the capture range (a failure).
    """

    gantry_deg: float
    modality: ImagingModalityValues
    isocentre_shift_uv_mm: tuple[float, float]
    residual_panel_mm: tuple[float, float]
    uncertainty_uv_mm: tuple[float, float]
    ncc_before: float
    ncc_after: float
    at_search_edge: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "gantry_deg": float(self.gantry_deg),
            "modality": self.modality.value,
            "isocentre_shift_uv_mm": [float(v) for v in self.isocentre_shift_uv_mm],
            "residual_panel_mm": [float(v) for v in self.residual_panel_mm],
            "uncertainty_uv_mm": [float(v) for v in self.uncertainty_uv_mm],
            "ncc_before": float(self.ncc_before),
            "ncc_after": float(self.ncc_after),
            "at_search_edge": bool(self.at_search_edge),
        }


@dataclass(frozen=True, eq=False)
class Pair2DResult:
    """Result of :func:`register_pair_to_drrs` (see the module docstring for frames).

    Parameters
    ----------
    quality : QualityValues
        Trust in the result (``FAILED`` carries no displacement, correction or flag).
    reasons : tuple of str
        Every warning or failure; empty for ``GOOD``.
    patient_position : PatientPositionValues
        The session's patient position.
    isocentre_lps_mm : numpy.ndarray
        Treatment isocentre (where the displacement is measured), LPS mm.
    anatomy_displacement : AnatomyDisplacement or None
        The anatomy's displacement relative to the plan, LPS mm.
    couch_correction : CouchCorrection or None
        The couch translation that undoes it.
    repositioning : RepositioningFlag or None
        Per-axis repositioning decision.
    estimate_lps_mm : numpy.ndarray
        The last 3D estimate of the anatomy displacement, LPS mm, kept even when ``FAILED``
        (for review only).
    shared_axis_estimates_mm : tuple of float
        Each view's estimate of the longitudinal displacement (IEC ``Y``, superior for a
        head-first patient), mm, in view order.
    shared_axis_disagreement_mm : float
        Largest difference between those estimates, mm.
    shared_axis_tolerance_mm : float
        Tolerance applied to it, mm.
    uncertainty_iec_support_mm : tuple of float
        1 SD per IEC patient-support axis, mm.
    uncertainty_mm : float
        Length of that vector, mm.
    views : tuple of ViewMatch
        Per-view measurements.
    iterations : int
        DRR renderings per view.
    converged : bool
        Whether the last update was below 0.05 mm.
    runtime_s : float
        Wall time (DRRs and matching, excluding the preparation), s.
    protocol : RegistrationProtocol
        Thresholds applied.
    """

    quality: QualityValues
    reasons: tuple[str, ...]
    patient_position: PatientPositionValues
    isocentre_lps_mm: FloatArray
    anatomy_displacement: AnatomyDisplacement | None
    couch_correction: CouchCorrection | None
    repositioning: RepositioningFlag | None
    estimate_lps_mm: FloatArray
    shared_axis_estimates_mm: tuple[float, ...]
    shared_axis_disagreement_mm: float
    shared_axis_tolerance_mm: float
    uncertainty_iec_support_mm: tuple[float, float, float]
    uncertainty_mm: float
    views: tuple[ViewMatch, ...]
    iterations: int
    converged: bool
    runtime_s: float
    protocol: RegistrationProtocol
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def anatomy_displacement_iec_support_mm(self) -> tuple[float, float, float] | None:
        """Anatomy displacement along IEC patient-support axes (X, Y, Z), mm."""
        if self.anatomy_displacement is None:
            return None
        return self.anatomy_displacement.iec_support_mm(self.patient_position)

    @property
    def couch_correction_iec_support_mm(self) -> tuple[float, float, float] | None:
        """Couch correction along IEC patient-support axes (X, Y, Z), mm."""
        if self.couch_correction is None:
            return None
        return self.couch_correction.iec_support_mm(self.patient_position)

    def require_trusted(self) -> Pair2DResult:
        """Return ``self`` unless ``FAILED``.

        Raises
        ------
        NotConvergedError
            If the result ``FAILED``.
        """
        if self.quality is QualityValues.FAILED:
            raise NotConvergedError(
                "the 2D/2D registration failed: " + "; ".join(self.reasons),
                reasons=self.reasons,
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no pixels)."""
        displacement = self.anatomy_displacement
        correction = self.couch_correction
        anatomy_iec = self.anatomy_displacement_iec_support_mm
        couch_iec = self.couch_correction_iec_support_mm
        return {
            "quality": self.quality.value,
            "reasons": list(self.reasons),
            "patient_position": self.patient_position.value,
            "isocentre_lps_mm": [float(v) for v in self.isocentre_lps_mm],
            "anatomy_displacement_lps_mm": None
            if displacement is None
            else list(displacement.lps_mm),
            "anatomy_displacement_iec_support_mm": None
            if anatomy_iec is None
            else list(anatomy_iec),
            "couch_correction_lps_mm": None if correction is None else list(correction.lps_mm),
            "couch_correction_iec_support_mm": None if couch_iec is None else list(couch_iec),
            "repositioning": None if self.repositioning is None else self.repositioning.to_dict(),
            "estimate_lps_mm": [float(v) for v in self.estimate_lps_mm],
            "shared_axis": "IEC Y (longitudinal)",
            "shared_axis_estimates_mm": [float(v) for v in self.shared_axis_estimates_mm],
            "shared_axis_disagreement_mm": float(self.shared_axis_disagreement_mm),
            "shared_axis_tolerance_mm": float(self.shared_axis_tolerance_mm),
            "uncertainty_iec_support_mm": [float(v) for v in self.uncertainty_iec_support_mm],
            "uncertainty_mm": float(self.uncertainty_mm),
            "metric": "normalised cross-correlation of gradient images",
            "views": [view.to_dict() for view in self.views],
            "iterations": int(self.iterations),
            "converged": bool(self.converged),
            "runtime_s": float(self.runtime_s),
            "protocol": self.protocol.to_dict(),
        }


# --- matching --------------------------------------------------------------------------------


def _gradients(image: Float32Array) -> Float32Array:
    """Two-channel ``(d/du, d/dv)`` image of a smoothed line-integral image."""
    smooth = cv2.GaussianBlur(image, (0, 0), 1.0)
    gu = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gv = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    stacked: Float32Array = np.ascontiguousarray(np.dstack([gu, gv]), dtype=np.float32)
    return stacked


def _downsample(image: Float32Array, factor: int) -> Float32Array:
    if factor == 1:
        return image
    rows, cols = image.shape
    resized = cv2.resize(image, (cols // factor, rows // factor), interpolation=cv2.INTER_AREA)
    return np.asarray(resized, dtype=np.float32)


def _parabola(minus: float, centre: float, plus: float) -> float:
    denominator = minus - 2.0 * centre + plus
    if denominator >= 0.0:
        return 0.0
    return float(np.clip(0.5 * (minus - plus) / denominator, -0.5, 0.5))


@dataclass(frozen=True)
class _Match:
    shift_px: tuple[float, float]  # (column, row) of the image relative to the DRR
    ncc: float
    at_edge: bool


def _match_window(
    image_g: Float32Array,
    drr_g: Float32Array,
    centre_px: tuple[int, int],
    margin: int,
    radius: int,
    region: tuple[slice, slice] | None = None,
) -> _Match:
    """Match the DRR template (cropped by ``margin``) around the integer shift ``centre_px``."""
    rows, cols = drr_g.shape[:2]
    template = drr_g[margin : rows - margin, margin : cols - margin]
    row0, col0 = margin, margin
    if region is not None:
        template = template[region]
        row0 += region[0].start or 0
        col0 += region[1].start or 0
    t_rows, t_cols = template.shape[:2]
    cx, cy = centre_px
    top, left = row0 + cy - radius, col0 + cx - radius
    window = image_g[top : top + t_rows + 2 * radius, left : left + t_cols + 2 * radius]
    scores = cv2.matchTemplate(window, np.ascontiguousarray(template), cv2.TM_CCOEFF_NORMED)
    peak_row, peak_col = np.unravel_index(int(np.argmax(scores)), scores.shape)
    peak = float(scores[peak_row, peak_col])
    at_edge = peak_row in (0, scores.shape[0] - 1) or peak_col in (0, scores.shape[1] - 1)
    dx = dy = 0.0
    if 0 < peak_col < scores.shape[1] - 1:
        dx = _parabola(
            float(scores[peak_row, peak_col - 1]), peak, float(scores[peak_row, peak_col + 1])
        )
    if 0 < peak_row < scores.shape[0] - 1:
        dy = _parabola(
            float(scores[peak_row - 1, peak_col]), peak, float(scores[peak_row + 1, peak_col])
        )
    return _Match(
        shift_px=(cx + int(peak_col) - radius + dx, cy + int(peak_row) - radius + dy),
        ncc=peak,
        at_edge=bool(at_edge),
    )


def _ncc_at_zero(image_g: Float32Array, drr_g: Float32Array, margin: int) -> float:
    rows, cols = drr_g.shape[:2]
    a = image_g[margin : rows - margin, margin : cols - margin]
    b = drr_g[margin : rows - margin, margin : cols - margin]
    return float(cv2.matchTemplate(a, np.ascontiguousarray(b), cv2.TM_CCOEFF_NORMED)[0, 0])


@dataclass(frozen=True)
class _ViewOutcome:
    shift_px: tuple[float, float]
    ncc: float
    at_edge: bool
    sd_px: tuple[float, float]


def _match_view(
    image: Float32Array,
    drr: Float32Array,
    search_px: int,
    *,
    coarse: bool,
    with_quadrants: bool,
) -> _ViewOutcome:
    """Translation (px) of ``image`` relative to ``drr``: coarse-to-fine gradient NCC."""
    margin_full = search_px + 2 * _FINE_SEARCH_PX + 4
    estimate = (0.0, 0.0)
    at_edge = False
    levels = _PYRAMID if coarse else (1,)
    match = _Match((0.0, 0.0), -1.0, False)
    image_g = drr_g = np.zeros((1, 1, 2), np.float32)
    for level_index, factor in enumerate(levels):
        image_g = _gradients(_downsample(image, factor))
        drr_g = _gradients(_downsample(drr, factor))
        margin = math.ceil(margin_full / factor)
        if level_index == 0:
            radius = math.ceil(search_px / factor) if coarse else _FINE_SEARCH_PX
            centre = (0, 0)
        else:
            previous = levels[level_index - 1] / factor
            centre = (round(estimate[0] * previous), round(estimate[1] * previous))
            radius = _FINE_SEARCH_PX
        match = _match_window(image_g, drr_g, centre, margin, radius)
        if level_index == 0 and coarse:
            at_edge = match.at_edge
        estimate = match.shift_px
    sd = (0.0, 0.0)
    if with_quadrants:
        rows, cols = drr_g.shape[:2]
        half_r = (rows - 2 * margin_full) // 2
        half_c = (cols - 2 * margin_full) // 2
        centre = (round(estimate[0]), round(estimate[1]))
        shifts = []
        for rs in (slice(0, half_r), slice(half_r, 2 * half_r)):
            for cs in (slice(0, half_c), slice(half_c, 2 * half_c)):
                part = _match_window(image_g, drr_g, centre, margin_full, _FINE_SEARCH_PX, (rs, cs))
                shifts.append(part.shift_px)
        spread = np.std(np.asarray(shifts), axis=0, ddof=1) / math.sqrt(len(shifts))
        sd = (float(spread[0]), float(spread[1]))
    return _ViewOutcome(estimate, match.ncc, at_edge, sd)


# --- registration ----------------------------------------------------------------------------


def _as_views(
    views: Sequence[KvView | FluoroSequence],
) -> tuple[KvView, ...]:
    converted = tuple(
        KvView.from_sequence(view) if isinstance(view, FluoroSequence) else view for view in views
    )
    if len(converted) < 2 or not all(isinstance(view, KvView) for view in converted):
        raise InvalidInputError(
            "a 2D/2D registration needs at least two views (KvView or FluoroSequence)",
            field="views",
        )
    return converted


def _check_angles(views: tuple[KvView, ...]) -> None:
    directions = np.array([view.geometry.u_axis for view in views])
    # The views' u axes span the transverse plane only if two of them are not parallel.
    if np.linalg.matrix_rank(directions, tol=0.2) < 2:
        raise GeometryError(
            "the views' gantry angles are (nearly) parallel: a 3D shift needs two directions "
            "at least 15 degrees apart (orthogonal is best)",
            field="gantry_deg",
        )


def register_pair_to_drrs(
    planning: Volume | LoadedVolume | PairReference,
    views: Sequence[KvView | FluoroSequence],
    *,
    isocentre_lps_mm: npt.ArrayLike | None = None,
    patient_position: PatientPositionValues | str | None = None,
    protocol: RegistrationProtocol | None = None,
    shared_axis_tolerance_mm: float = DEFAULT_SHARED_AXIS_TOLERANCE_MM,
    raise_on_failure: bool = False,
    threads: int = 2,
) -> Pair2DResult:
    """Register a kV (or MV) image pair to DRRs of the planning CT: a 3D translation.

    Parameters
    ----------
    planning : igrt.volume.Volume, igrt.imageio.LoadedVolume or PairReference
        The planning CT in HU, or its prepared beam grids (:func:`prepare_pair_reference`).
    views : sequence of KvView or FluoroSequence
        Two (or more) images at different gantry angles, e.g. 0 and 90 degrees, kV or MV
        (:attr:`KvView.modality`) in any mix; a :class:`~igrt.sequence.FluoroSequence`
        contributes its first frame as a kV view.
    isocentre_lps_mm : array_like of float, optional
        Treatment isocentre in the CT, LPS mm (needed unless ``planning`` is prepared).
    patient_position : PatientPositionValues or str, optional
        DICOM Patient Position (needed unless ``planning`` is prepared).
    protocol : RegistrationProtocol, optional
        Capture range, NCC thresholds, uncertainty limit and repositioning threshold.
    shared_axis_tolerance_mm : float, optional
        Largest accepted disagreement of the views on the longitudinal axis, mm.
    raise_on_failure : bool, optional
        Raise :class:`~registration.errors.NotConvergedError` instead of returning ``FAILED``.
    threads : int, optional
        Resampling threads (preparation only).

    Returns
    -------
    Pair2DResult
        Displacement, couch correction, repositioning flag, shared-axis check, quality.

    Raises
    ------
    InvalidInputError
        Unusable views or arguments.
    GeometryError
        Parallel views, or a view at an angle (or of a beam) the reference was not prepared
        for.
    """
    protocol = DEFAULT_REGISTRATION_PROTOCOL if protocol is None else protocol
    if not math.isfinite(shared_axis_tolerance_mm) or shared_axis_tolerance_mm <= 0:
        raise InvalidInputError(
            "shared_axis_tolerance_mm must be finite and positive", field="shared_axis_tolerance_mm"
        )
    view_list = _as_views(views)
    _check_angles(view_list)
    if isinstance(planning, PairReference):
        reference = planning
    else:
        if isocentre_lps_mm is None or patient_position is None:
            raise InvalidInputError(
                "isocentre_lps_mm and patient_position are needed with a planning CT",
                field="isocentre_lps_mm" if isocentre_lps_mm is None else "patient_position",
            )
        reference = prepare_pair_reference(
            planning,
            [view.geometry for view in view_list],
            isocentre_lps_mm=isocentre_lps_mm,
            patient_position=patient_position,
            capture_range_mm=protocol.capture_range_mm,
            threads=threads,
            modalities=[view.modality for view in view_list],
        )
    started = time.perf_counter()
    with foreign_errors_mapped("the 2D/2D registration"):
        return _register(
            reference, view_list, protocol, shared_axis_tolerance_mm, raise_on_failure, started
        )


def _register(
    reference: PairReference,
    views: tuple[KvView, ...],
    protocol: RegistrationProtocol,
    tolerance_mm: float,
    raise_on_failure: bool,
    started: float,
) -> Pair2DResult:
    position = reference.patient_position
    iec_from_lps = iec_support_from_lps_matrix(position)
    beams = [reference.beam_volume_for(view.geometry, view.modality) for view in views]
    images = [view.line_integral() for view in views]
    # Rows: the (u, v) axes of every view in IEC fixed coordinates (couch at 0).
    design = np.concatenate([np.stack([v.geometry.u_axis, v.geometry.v_axis]) for v in views])
    estimate_iec = np.zeros(3)
    outcomes: list[_ViewOutcome] = []
    ncc_before: list[float] = []
    residual_iso = np.zeros(2 * len(views))
    iterations = 0
    converged = False
    for iteration in range(MAX_ITERATIONS):
        iterations = iteration + 1
        first = iteration == 0
        estimate_lps = iec_from_lps.T @ estimate_iec
        outcomes = []
        for view, beam, image in zip(views, beams, images, strict=True):
            geometry = view.geometry
            drr = render_drr(beam, geometry, anatomy_displacement_lps_mm=estimate_lps)
            pixel_iso = min(geometry.pixel_at_isocentre_mm)
            search_px = math.ceil(protocol.capture_range_mm / pixel_iso) if first else 3
            outcome = _match_view(image, drr, search_px, coarse=first, with_quadrants=True)
            if first:
                margin = search_px + 2 * _FINE_SEARCH_PX + 4
                ncc_before.append(_ncc_at_zero(_gradients(image), _gradients(drr), margin))
            outcomes.append(outcome)
        residual_iso = np.concatenate(
            [
                np.array(
                    [
                        o.shift_px[0] * v.geometry.pixel_at_isocentre_mm[0],
                        o.shift_px[1] * v.geometry.pixel_at_isocentre_mm[1],
                    ]
                )
                for o, v in zip(outcomes, views, strict=True)
            ]
        )
        update, *_ = np.linalg.lstsq(design, residual_iso, rcond=None)
        estimate_iec = estimate_iec + update
        if first and any(o.at_edge for o in outcomes):
            break
        if float(np.linalg.norm(update)) < _CONVERGED_MM:
            converged = True
            break

    # Measurements per view (isocentre plane) and the shared longitudinal axis (v = -Y).
    before_update = estimate_iec - update
    measured = design @ before_update + residual_iso
    shared = tuple(float(-measured[2 * k + 1]) for k in range(len(views)))
    disagreement = float(max(shared) - min(shared))
    sd_rows = np.concatenate(
        [
            np.array(
                [
                    o.sd_px[0] * v.geometry.pixel_at_isocentre_mm[0],
                    o.sd_px[1] * v.geometry.pixel_at_isocentre_mm[1],
                ]
            )
            for o, v in zip(outcomes, views, strict=True)
        ]
    )
    weights = 1.0 / np.maximum(sd_rows, 0.02) ** 2
    covariance = np.linalg.inv(design.T @ (design * weights[:, None]))
    sd_iec = np.sqrt(np.diag(covariance) + UNCERTAINTY_FLOOR_MM**2)
    sd_iec[1] = max(float(sd_iec[1]), 0.5 * disagreement)
    uncertainty = (float(sd_iec[0]), float(sd_iec[1]), float(sd_iec[2]))
    uncertainty_mm = float(np.linalg.norm(sd_iec))

    failures: list[str] = []
    warnings: list[str] = []
    matches: list[ViewMatch] = []
    for k, (view, outcome) in enumerate(zip(views, outcomes, strict=True)):
        gantry = view.geometry.gantry_deg
        name = f"{view.modality.value} view at gantry {gantry:g} deg"
        if outcome.at_edge:
            failures.append(
                f"{name}: the best match lies at the edge of the "
                f"+/-{protocol.capture_range_mm:g} mm capture range"
            )
        if outcome.ncc < protocol.min_ncc:
            failures.append(f"{name}: gradient NCC {outcome.ncc:.2f} below {protocol.min_ncc:g}")
        elif outcome.ncc < protocol.good_ncc:
            warnings.append(f"{name}: gradient NCC {outcome.ncc:.2f} below {protocol.good_ncc:g}")
        pitch_u, pitch_v = view.geometry.pixel_pitch_mm
        matches.append(
            ViewMatch(
                gantry_deg=float(gantry),
                modality=view.modality,
                isocentre_shift_uv_mm=(float(measured[2 * k]), float(measured[2 * k + 1])),
                residual_panel_mm=(outcome.shift_px[0] * pitch_u, outcome.shift_px[1] * pitch_v),
                uncertainty_uv_mm=(float(sd_rows[2 * k]), float(sd_rows[2 * k + 1])),
                ncc_before=ncc_before[k] if k < len(ncc_before) else float("nan"),
                ncc_after=float(outcome.ncc),
                at_search_edge=outcome.at_edge,
            )
        )
    if disagreement > tolerance_mm:
        warnings.append(
            f"the views disagree on the longitudinal (IEC Y) displacement by "
            f"{disagreement:.2f} mm (tolerance {tolerance_mm:g} mm)"
        )
    if not converged and not failures:
        warnings.append(f"the estimate still moved after {iterations} iterations")
    if uncertainty_mm > protocol.max_uncertainty_mm:
        warnings.append(
            f"uncertainty {uncertainty_mm:.2f} mm exceeds {protocol.max_uncertainty_mm:g} mm"
        )
    estimate_lps = iec_from_lps.T @ estimate_iec
    quality = (
        QualityValues.FAILED
        if failures
        else QualityValues.QUESTIONABLE
        if warnings
        else QualityValues.GOOD
    )
    displacement: AnatomyDisplacement | None = None
    correction: CouchCorrection | None = None
    flag: RepositioningFlag | None = None
    if quality is not QualityValues.FAILED:
        displacement = AnatomyDisplacement(
            (float(estimate_lps[0]), float(estimate_lps[1]), float(estimate_lps[2]))
        )
        correction = displacement.couch_correction()
        flag = protocol.repositioning_flag(displacement, position)
    result = Pair2DResult(
        quality=quality,
        reasons=tuple(failures + warnings),
        patient_position=position,
        isocentre_lps_mm=np.array(reference.isocentre_lps_mm, dtype=np.float64),
        anatomy_displacement=displacement,
        couch_correction=correction,
        repositioning=flag,
        estimate_lps_mm=np.asarray(estimate_lps, dtype=np.float64),
        shared_axis_estimates_mm=shared,
        shared_axis_disagreement_mm=disagreement,
        shared_axis_tolerance_mm=float(tolerance_mm),
        uncertainty_iec_support_mm=uncertainty,
        uncertainty_mm=uncertainty_mm,
        views=tuple(matches),
        iterations=iterations,
        converged=converged,
        runtime_s=time.perf_counter() - started,
        protocol=protocol,
    )
    if raise_on_failure and quality is QualityValues.FAILED:
        raise NotConvergedError(
            "the 2D/2D registration failed: " + "; ".join(result.reasons), reasons=result.reasons
        )
    return result
