"""Speed of the kV fluoroscopy simulator, and its line integrals against RTK's Joseph projector.

Run ``.venv/bin/python benchmarks/simulator.py [--quick]`` from the project root. It prints
readable tables and ends with one JSON line (``null`` where a number could not be measured).

What is measured, on the real chest CT (:func:`fixtures.anatomy.load_chest_ct`, head-first
supine, isocentre :func:`fixtures.fluoro.default_isocentre_lps_mm`):

1. **Fluoroscopy clip** (the clip the project promises): 20 s at 7.5 fps on the default
   512x512 XVI panel, fixed gantry 0, regular 12 mm breathing, through
   :func:`fixtures.fluoro.simulate_fluoro`. The wall time *including* the one-time building is
   measured directly; the time *excluding* it subtracts separately timed runs of
   ``BreathingMotionModel.from_anatomy`` and ``BeamGrid.build`` with the same arguments.
   A sequential per-frame breakdown times ``ConeBeamProjector.line_integral`` and
   ``fixtures.panel.expose`` on their own.
2. **Rotating gantry**: 10 s at 5 fps, 6 deg/s, timed the same way.
3. **RTK baseline** (``itk-rtk``, ``JosephForwardProjectionImageFilter``): line integrals of
   the same static attenuation (the CT through :func:`fixtures.projector.mu_per_mm_from_hu`,
   signal 0) for the same geometry, seconds per projection measured interleaved with ours in
   the same run, and the agreement of the two images (mean absolute difference relative to the
   mean line integral, correlation, and the sub-pixel shift by ``cv2.phaseCorrelate``). A small
   sphere phantom first checks that both projectors put a sphere where
   :meth:`igrt.geometry.ProjectionGeometry.project_iec_fixed` says.

Mapping our geometry onto RTK
-----------------------------
RTK's fixed frame is taken to be IEC 61217 fixed with its origin at the isocentre (couch at 0,
so IEC patient support = IEC fixed). ``ThreeDCircularProjectionGeometry.AddProjection(SID=SAD,
SDD, gantry_deg, offset_u, -offset_v)``: RTK puts the source at ``R_y(g) (0, 0, SID)`` =
``SAD (sin g, 0, cos g)`` and the detector ``u`` axis along ``R_y(g) e_x = (cos g, 0, -sin g)``,
exactly :mod:`igrt.geometry`; RTK's detector ``v`` is ``+Y`` (towards the gantry) where ours is
``-Y``, so the panel-centre offset along ``v`` changes sign and RTK's rows come out in reverse
order (flipped back here). RTK's projection offsets place the projection-image origin (physical
point 0) on the detector plane relative to the piercing point, so a projection image with origin
``-(n - 1) / 2 * pitch`` per axis, unit direction and the panel pitch as spacing has its centre at
``detector_offset_mm``, like ours. The attenuation volume keeps the CT's own voxel grid (no
resampling): its origin is ``R (origin_lps - isocentre)`` and its direction ``R @ direction``,
with ``R`` = :func:`igrt.frame_of_reference.iec_support_from_lps_matrix` (RTK honours
direction cosines; the CT's ``j`` axis points anterior, and the sphere check uses a flipped axis
too). Like :meth:`fixtures.projector.BeamGrid.build`, the CT is extended 60 mm beyond its
first and last slice by replicating them.

Reading the agreement
---------------------
The geometry agrees exactly (sphere centroids within 0.001 px of RTK's; a water sphere's total
attenuation within 1e-5). What remains is interpolation, plus a small negative bias of ours with
two causes: ``BeamGrid.build`` interpolates HU and only then applies the convex HU-to-attenuation
map (clipped at -1000 HU, steeper above 0 HU), which gives less than interpolating attenuation
(a 1000 HU sphere in air loses 3.6 %, the CT about 0.1 %); and the beam grid stops 25 mm outside
the body's bounding box, while RTK also integrates the clipped-positive noise of the air beyond
it (about 0.1 % in the AP view, nothing laterally where the body fills the CT's width).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

# The project root first: run as a script, this folder would come first and its
# registration.py would shadow the registration package (which the projector imports).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from fixtures.anatomy import Anatomy, load_chest_ct
from fixtures.breathing import regular
from fixtures.fluoro import default_isocentre_lps_mm, simulate_fluoro
from fixtures.labels import LIVER
from fixtures.motion import BreathingMotionModel
from fixtures.panel import PanelPhysics, expose
from fixtures.projector import BeamGrid, ConeBeamProjector, mu_per_mm_from_hu
from igrt.frame_of_reference import (
    PatientPositionValues,
    iec_support_from_lps_matrix,
    iec_support_from_lps_point,
)
from igrt.geometry import ProjectionGeometry, xvi_geometry
from igrt.volume import Volume

T = TypeVar("T")
FloatImage = npt.NDArray[np.float32]

POSITION = PatientPositionValues.HFS
BREATHING_AMPLITUDE_MM = 12.0
BREATHING_PERIOD_S = 4.0
SIGNAL_RATE_HZ = 50.0
FLUORO_FPS = 7.5
ROTATING_FPS = 5.0
ROTATING_SPEED_DEG_PER_S = 6.0
GRID_SPACING_MM = (1.25, 1.0)  # simulate_fluoro's default (transverse, longitudinal)
PAD_MM = 60.0  # BeamGrid.build extends the CT this far beyond its end slices
NOT_INSTALLED = "not installed"


# --- small helpers ------------------------------------------------------------------------------


def timed(function: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """Call ``function`` and return its result and the wall time in seconds."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a left-aligned text table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    line = "  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def fmt(value: float | None, spec: str = ".3f") -> str:
    """Format a number, or the RTK placeholder for ``None``."""
    return NOT_INSTALLED if value is None else format(value, spec)


def rounded(value: float | None, digits: int = 4) -> float | None:
    """Round for the JSON line, keeping ``None``."""
    return None if value is None else round(float(value), digits)


def relative_mad(image: FloatImage, reference: FloatImage) -> float:
    """Mean absolute difference relative to the mean of ``reference``."""
    return float(np.abs(image.astype(np.float64) - reference).mean() / reference.mean())


def correlation(image: FloatImage, reference: FloatImage) -> float:
    """Pearson correlation of two images."""
    return float(np.corrcoef(image.ravel().astype(np.float64), reference.ravel())[0, 1])


def phase_shift_px(reference: FloatImage, image: FloatImage) -> tuple[float, float]:
    """Sub-pixel shift ``(columns, rows)`` of ``image`` relative to ``reference``.

    ``cv2.phaseCorrelate`` with a Hann window (the line-integral images are not periodic).
    """
    rows, cols = reference.shape
    window = cv2.createHanningWindow((cols, rows), cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(reference.astype(np.float64), image.astype(np.float64), window)
    return float(dx), float(dy)


def gradient_shift_px(reference: FloatImage, image: FloatImage) -> tuple[float, float]:
    """Least-squares translation ``(columns, rows)`` from image gradients (a cross-check).

    Solves ``image - reference = -grad(reference) . d`` over the interior pixels; valid for
    shifts well below a pixel.
    """
    ref = reference.astype(np.float64)
    grad_rows, grad_cols = np.gradient(ref)
    inner = (slice(4, -4), slice(4, -4))
    design = np.stack([-grad_cols[inner].ravel(), -grad_rows[inner].ravel()], axis=1)
    residual = (image.astype(np.float64) - ref)[inner].ravel()
    shift = np.linalg.lstsq(design, residual, rcond=None)[0]
    return float(shift[0]), float(shift[1])


def centroid_px(image: FloatImage) -> npt.NDArray[np.float64]:
    """Intensity centroid ``(column, row)`` of the positive part of an image."""
    rows, cols = np.indices(image.shape)
    weight = np.clip(image.astype(np.float64), 0.0, None)
    return np.array([(cols * weight).sum(), (rows * weight).sum()]) / weight.sum()


# --- RTK ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rtk:
    """The loaded ``itk`` and ``itk.RTK`` modules and the image type used."""

    itk: Any
    rtk: Any
    image_type: Any
    version: str


def load_rtk() -> tuple[Rtk | None, float]:
    """Import itk-rtk (loading its wrappers takes seconds); ``None`` when it is not installed."""
    started = time.perf_counter()
    try:
        import itk
        from itk import RTK as rtk  # noqa: N811

        rtk.ThreeDCircularProjectionGeometry.New()  # force the lazy loading now
        image_type = itk.Image[itk.F, 3]
    except (ImportError, AttributeError):
        return None, time.perf_counter() - started
    try:
        version = importlib.metadata.version("itk-rtk")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return Rtk(itk, rtk, image_type, version), time.perf_counter() - started


def rtk_attenuation_volume(
    loaded: Rtk,
    ct_hu: Volume,
    isocentre_lps_mm: npt.NDArray[np.float64],
    position: PatientPositionValues,
) -> Any:
    """The CT as an RTK attenuation volume (1/mm) in RTK's frame, on the CT's own voxel grid.

    RTK frame = IEC 61217 fixed about the isocentre: ``q = R (p_lps - isocentre)``. The CT is
    padded by :data:`PAD_MM` of replicated end slices, as ``BeamGrid.build`` does.
    """
    iec_from_lps = iec_support_from_lps_matrix(position)
    pad = math.ceil(PAD_MM / float(ct_hu.spacing_mm[2]))
    padded = np.pad(ct_hu.array.astype(np.float32), ((pad, pad), (0, 0), (0, 0)), mode="edge")
    image = loaded.itk.image_from_array(np.ascontiguousarray(mu_per_mm_from_hu(padded)))
    image.SetSpacing([float(s) for s in ct_hu.spacing_mm])
    first_voxel_lps = ct_hu.lps_from_index([[0.0, 0.0, float(-pad)]])[0]
    image.SetOrigin([float(v) for v in iec_from_lps @ (first_voxel_lps - isocentre_lps_mm)])
    direction = np.ascontiguousarray(iec_from_lps @ ct_hu.direction)
    image.SetDirection(loaded.itk.matrix_from_array(direction))
    return image


def rtk_line_integral(
    loaded: Rtk, volume: Any, geometry: ProjectionGeometry
) -> tuple[FloatImage, float]:
    """RTK Joseph line integrals on our panel (rows as ours) and the filter's wall time, s."""
    rtk = loaded.rtk
    rows, cols = geometry.detector_shape
    pitch_u, pitch_v = geometry.pixel_pitch_mm
    trajectory = rtk.ThreeDCircularProjectionGeometry.New()
    trajectory.AddProjection(
        geometry.sad_mm,
        geometry.sdd_mm,
        geometry.gantry_deg,
        geometry.detector_offset_mm[0],
        -geometry.detector_offset_mm[1],  # RTK's v is IEC +Y, ours -Y
    )
    source = rtk.ConstantImageSource[loaded.image_type].New()
    source.SetOrigin([-(cols - 1) / 2.0 * pitch_u, -(rows - 1) / 2.0 * pitch_v, 0.0])
    source.SetSpacing([pitch_u, pitch_v, 1.0])
    source.SetSize([cols, rows, 1])
    source.SetConstant(0.0)
    source.Update()
    forward = rtk.JosephForwardProjectionImageFilter[loaded.image_type, loaded.image_type].New()
    forward.SetInput(0, source.GetOutput())
    forward.SetInput(1, volume)
    forward.SetGeometry(trajectory)
    _, seconds = timed(forward.Update)
    projection = loaded.itk.array_from_image(forward.GetOutput())[0]
    image: FloatImage = np.ascontiguousarray(projection[::-1], dtype=np.float32)
    return image, seconds


# --- 0. the sphere geometry check ---------------------------------------------------------------


def sphere_model(hu_inside: float) -> tuple[BreathingMotionModel, npt.NDArray[np.float64]]:
    """A 6 mm sphere off every axis in a 120 mm cube whose ``j`` axis points anterior."""
    spacing_mm, shape = 2.0, (60, 60, 60)
    direction = np.diag([1.0, -1.0, 1.0])
    origin = np.array([-59.0, 59.0, -59.0])
    blank = Volume(np.zeros(shape, np.float32), (spacing_mm,) * 3, origin, direction)
    k, j, i = np.indices(shape)
    points = blank.lps_from_index(np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float))
    centre = np.array([15.0, -10.0, 12.0])
    inside = (((points - centre) ** 2).sum(axis=1) <= 6.0**2).reshape(shape)
    hu = np.where(inside, hu_inside, -1000.0).astype(np.float32)
    labels = np.where(inside, LIVER, 0).astype(np.uint8)
    anatomy = Anatomy(
        Volume(hu, (spacing_mm,) * 3, origin, direction),
        Volume(labels, (spacing_mm,) * 3, origin, direction),
        name="sphere",
    )
    model = BreathingMotionModel(
        anatomy=anatomy,
        static_hu=np.zeros(shape, np.float32),
        moving_hu=hu,
        apex_lps_mm=np.zeros(3),
        lung_apex_z_mm=1000.0,
        plateau_above_apex_mm=500.0,
        ap_ratio=0.0,
    )
    return model, centre


def sphere_check(loaded: Rtk | None) -> list[dict[str, Any]]:
    """Centroids of a projected sphere (ours, RTK) against exact point projection."""
    isocentre = np.array([3.0, -2.0, 4.0])
    results = []
    for material, hu_inside in (("water", 0.0), ("bone", 1000.0)):
        model, centre = sphere_model(hu_inside)
        volume = (
            rtk_attenuation_volume(loaded, model.anatomy.ct_hu, isocentre, POSITION)
            if loaded
            else None
        )
        for gantry_deg, offset in ((0.0, (0.0, 0.0)), (90.0, (0.0, 0.0)), (90.0, (115.0, 20.0))):
            geometry = replace(
                xvi_geometry(binning=4, gantry_deg=gantry_deg), detector_offset_mm=offset
            )
            grid = BeamGrid.build(
                model,
                isocentre,
                POSITION,
                gantry_deg=gantry_deg,
                rotating=False,
                transverse_mm=1.0,
                long_mm=1.0,
            )
            ours = ConeBeamProjector(grid).line_integral(geometry, 0.0)
            u, v = geometry.project_iec_fixed(
                iec_support_from_lps_point(centre, isocentre, POSITION)
            )
            column, row = geometry.pixel_from_detector_mm(u, v)
            expected = np.array([column[0], row[0]])
            ours_error = float(np.linalg.norm(centroid_px(ours) - expected))
            rtk_error = ours_vs_rtk = mass_ratio = None
            if loaded is not None:
                reference, _ = rtk_line_integral(loaded, volume, geometry)
                rtk_error = float(np.linalg.norm(centroid_px(reference) - expected))
                ours_vs_rtk = float(np.linalg.norm(centroid_px(ours) - centroid_px(reference)))
                mass_ratio = float(ours.sum() / reference.sum())
            results.append(
                {
                    "material": material,
                    "gantry_deg": gantry_deg,
                    "detector_offset_mm": list(offset),
                    "ours_centroid_error_px": ours_error,
                    "rtk_centroid_error_px": rtk_error,
                    "ours_vs_rtk_centroid_px": ours_vs_rtk,
                    "mass_ratio_ours_over_rtk": mass_ratio,
                }
            )
    return results


# --- 1-2. the simulator's speed -----------------------------------------------------------------


@dataclass(frozen=True)
class ClipTiming:
    """Wall times of one simulated clip (run from the anatomy, so it builds everything)."""

    duration_s: float
    fps: float
    n_frames: int
    wall_s: float
    """``simulate_fluoro`` wall time, including the model and grid building (measured)."""
    build_s: float
    """The same building timed on its own: ``from_anatomy`` plus ``BeamGrid.build``."""

    @property
    def frames_wall_s(self) -> float:
        """Wall time of the frames alone (derived: ``wall_s - build_s``)."""
        return self.wall_s - self.build_s

    @property
    def ms_per_frame(self) -> float:
        """Amortised frame time excluding the building, ms (frames in parallel on all cores)."""
        return 1000.0 * self.frames_wall_s / self.n_frames


def run_clip(
    anatomy: Anatomy,
    isocentre: npt.NDArray[np.float64],
    *,
    duration_s: float,
    fps: float,
    gantry_speed_deg_per_s: float,
) -> tuple[int, float]:
    """Simulate one raw clip from the anatomy; return its frame count and wall time, s."""
    signal = regular(BREATHING_AMPLITUDE_MM, BREATHING_PERIOD_S, duration_s, SIGNAL_RATE_HZ)
    simulation, seconds = timed(
        simulate_fluoro,
        anatomy,
        signal,
        duration_s=duration_s,
        fps=fps,
        geometry=xvi_geometry(),
        gantry_speed_deg_per_s=gantry_speed_deg_per_s,
        isocentre_lps_mm=isocentre,
        patient_position=POSITION,
        grid_spacing_mm=GRID_SPACING_MM,
    )
    return len(simulation.truth.times_s), seconds


def build_grid(
    model: BreathingMotionModel,
    isocentre: npt.NDArray[np.float64],
    gantry_deg: float,
    *,
    rotating: bool,
) -> tuple[BeamGrid, float]:
    """``BeamGrid.build`` with simulate_fluoro's arguments, and its wall time, s."""
    return timed(
        BeamGrid.build,
        model,
        isocentre,
        POSITION,
        gantry_deg=gantry_deg,
        rotating=rotating,
        transverse_mm=GRID_SPACING_MM[0],
        long_mm=GRID_SPACING_MM[1],
    )


def frame_breakdown(grid: BeamGrid, geometry: ProjectionGeometry, n: int) -> tuple[float, float]:
    """Median sequential ms of ``line_integral`` (static layer cached) and of ``expose``."""
    projector = ConeBeamProjector(grid)
    projector.line_integral(geometry, 0.0)  # fills the static-layer cache, as frame 0 does
    physics = PanelPhysics()
    rng = np.random.default_rng(0)
    pitch_mm = float(np.mean(geometry.pixel_pitch_mm))
    integral_s, expose_s = [], []
    for signal_mm in np.linspace(-BREATHING_AMPLITUDE_MM, 0.0, n):
        line_integral, seconds = timed(projector.line_integral, geometry, float(signal_mm))
        integral_s.append(seconds)
        _, seconds = timed(expose, line_integral, physics, pitch_mm, rng)
        expose_s.append(seconds)
    return 1000.0 * statistics.median(integral_s), 1000.0 * statistics.median(expose_s)


# --- 3. RTK on the real CT ----------------------------------------------------------------------


@dataclass(frozen=True)
class CtCase:
    """One projection compared with RTK."""

    name: str
    geometry: ProjectionGeometry
    grid: BeamGrid
    fixed_grid: bool
    """True when the grid was built at this angle (no in-plane rotation of the slices)."""


def compare_case(
    loaded: Rtk | None, volume: Any, case: CtCase, repeats: int
) -> tuple[dict[str, Any], FloatImage | None]:
    """Time ours and RTK interleaved; agreement of the last images. Returns RTK's image too."""
    cold_s, warm_s, rtk_s = [], [], []
    ours: FloatImage | None = None
    reference: FloatImage | None = None
    for _ in range(repeats):
        projector = ConeBeamProjector(case.grid)  # empty static-layer cache
        ours, seconds = timed(projector.line_integral, case.geometry, 0.0)
        cold_s.append(seconds)
        _, seconds = timed(projector.line_integral, case.geometry, 0.0)
        warm_s.append(seconds)
        if loaded is not None:
            reference, seconds = rtk_line_integral(loaded, volume, case.geometry)
            rtk_s.append(seconds)
    assert ours is not None
    result: dict[str, Any] = {
        "case": case.name,
        "gantry_deg": case.geometry.gantry_deg,
        "detector_offset_mm": list(case.geometry.detector_offset_mm),
        "grid_built_at_this_angle": case.fixed_grid,
        "ours_ms_full_volume": 1000.0 * statistics.median(cold_s),
        "ours_ms_per_frame": 1000.0 * statistics.median(warm_s),
        "rtk_ms": None,
        "speedup_full_volume": None,
        "speedup_per_frame": None,
        "rel_mad": None,
        "bias_rel": None,
        "correlation": None,
        "phase_shift_px": None,
        "gradient_shift_px": None,
    }
    if reference is not None:
        rtk_ms = 1000.0 * statistics.median(rtk_s)
        dx, dy = phase_shift_px(reference, ours)
        gx, gy = gradient_shift_px(reference, ours)
        result.update(
            rtk_ms=rtk_ms,
            speedup_full_volume=rtk_ms / result["ours_ms_full_volume"],
            speedup_per_frame=rtk_ms / result["ours_ms_per_frame"],
            rel_mad=relative_mad(ours, reference),
            bias_rel=float((ours.astype(np.float64) - reference).mean() / reference.mean()),
            correlation=correlation(ours, reference),
            phase_shift_px=[dx, dy],
            gradient_shift_px=[gx, gy],
        )
    return result, reference


def phase_correlation_calibration(image: FloatImage) -> list[float]:
    """Shift an image by a known ``(+0.30, -0.20)`` px and return what phase correlation finds."""
    matrix = np.array([[1.0, 0.0, 0.30], [0.0, 1.0, -0.20]])
    moved = cv2.warpAffine(
        image, matrix, image.shape[::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return list(phase_shift_px(image, np.asarray(moved, np.float32)))


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables and the final JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short subset (under a minute)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    fixed_duration_s, rotating_duration_s = (4.0, 1.0) if args.quick else (20.0, 10.0)
    repeats = 1 if args.quick else 3
    panel = xvi_geometry()
    rows, cols = panel.detector_shape
    print(f"simulator benchmark ({'quick' if args.quick else 'full'}): real chest CT, HFS")
    print(
        f"cores {os.cpu_count()}, OpenCV threads {cv2.getNumThreads()}, panel {rows}x{cols} at "
        f"{panel.pixel_pitch_mm[0]} mm, SAD {panel.sad_mm:.0f} mm, SDD {panel.sdd_mm:.0f} mm, "
        f"beam grid {GRID_SPACING_MM[0]} x {GRID_SPACING_MM[1]} mm (transverse x long)"
    )

    anatomy, load_s = timed(load_chest_ct)
    model, model_s = timed(BreathingMotionModel.from_anatomy, anatomy)
    isocentre = default_isocentre_lps_mm(model)
    print(
        f"CT {anatomy.ct_hu.array.shape[::-1]} voxels (i, j, k) loaded in {load_s:.1f} s; "
        f"isocentre LPS {np.round(isocentre, 1).tolist()} mm"
    )

    # 1. fixed gantry clip
    n_fixed, fixed_wall_s = run_clip(
        anatomy, isocentre, duration_s=fixed_duration_s, fps=FLUORO_FPS, gantry_speed_deg_per_s=0.0
    )
    grid_0, grid_0_s = build_grid(model, isocentre, 0.0, rotating=False)
    fixed = ClipTiming(fixed_duration_s, FLUORO_FPS, n_fixed, fixed_wall_s, model_s + grid_0_s)
    integral_ms, expose_ms = frame_breakdown(grid_0, panel, 3 if args.quick else 7)

    # 2. rotating gantry clip
    n_rotating, rotating_wall_s = run_clip(
        anatomy,
        isocentre,
        duration_s=rotating_duration_s,
        fps=ROTATING_FPS,
        gantry_speed_deg_per_s=ROTATING_SPEED_DEG_PER_S,
    )
    grid_rotating, grid_rotating_s = build_grid(model, isocentre, 0.0, rotating=True)
    rotating = ClipTiming(
        rotating_duration_s, ROTATING_FPS, n_rotating, rotating_wall_s, model_s + grid_rotating_s
    )

    speed_rows = []
    for label, clip in (
        ("fixed gantry 0", fixed),
        (f"rotating {ROTATING_SPEED_DEG_PER_S:g} deg/s", rotating),
    ):
        speed_rows.append(
            [
                label,
                f"{clip.duration_s:g} s @ {clip.fps:g} fps",
                str(clip.n_frames),
                f"{clip.wall_s:.1f}",
                f"{clip.build_s:.1f}",
                f"{clip.frames_wall_s:.1f}",
                f"{clip.n_frames / clip.wall_s:.2f}",
                f"{clip.n_frames / clip.frames_wall_s:.2f}",
                f"{clip.ms_per_frame:.0f}",
                f"{clip.duration_s / clip.wall_s:.2f}",
            ]
        )
    print_table(
        "simulate_fluoro, 512x512 raw frames, regular 12 mm breathing (wall times in s; frames "
        "rendered by 2 threads)",
        [
            "clip",
            "length",
            "frames",
            "wall incl. build",
            "build (model+grid)",
            "frames only",
            "fps incl.",
            "fps excl.",
            "ms/frame excl.",
            "x real time",
        ],
        speed_rows,
    )
    print(
        f"one-time building: from_anatomy {model_s:.1f} s, BeamGrid.build fixed {grid_0_s:.1f} s, "
        f"rotating {grid_rotating_s:.1f} s; 'frames only' = wall incl. - building (derived)"
    )
    print(
        f"per frame, sequential, fixed gantry: line_integral {integral_ms:.0f} ms "
        f"(static layer cached), expose {expose_ms:.0f} ms"
    )

    # 3. RTK
    loaded, rtk_import_s = load_rtk()
    if loaded is None:
        print(f"\nRTK (itk-rtk): {NOT_INSTALLED}; its columns and JSON fields are null")
    else:
        threads = loaded.itk.MultiThreaderBase.GetGlobalDefaultNumberOfThreads()
        print(
            f"\nRTK itk-rtk {loaded.version} loaded in {rtk_import_s:.1f} s, ITK threads {threads}"
        )

    spheres = sphere_check(loaded)
    print_table(
        "geometry check: 6 mm sphere (2 mm voxels, flipped j axis) on a 256x256 panel, "
        "centroid vs ProjectionGeometry.project_iec_fixed (px)",
        [
            "sphere",
            "gantry",
            "offset (u, v) mm",
            "ours err",
            "RTK err",
            "ours-RTK",
            "mass ours/RTK",
        ],
        [
            [
                s["material"],
                f"{s['gantry_deg']:g}",
                str(tuple(s["detector_offset_mm"])),
                f"{s['ours_centroid_error_px']:.3f}",
                fmt(s["rtk_centroid_error_px"]),
                fmt(s["ours_vs_rtk_centroid_px"], ".4f"),
                fmt(s["mass_ratio_ours_over_rtk"], ".4f"),
            ]
            for s in spheres
        ],
    )

    grid_90, grid_90_s = build_grid(model, isocentre, 90.0, rotating=False)
    cases = [
        CtCase("gantry 0", panel, grid_0, True),
        CtCase("gantry 90", panel.with_gantry(90.0), grid_90, True),
        CtCase(
            "gantry 0, panel offset (115, 0) mm",
            replace(panel, detector_offset_mm=(115.0, 0.0)),
            grid_0,
            True,
        ),
        CtCase("gantry 45, rotated grid", panel.with_gantry(45.0), grid_rotating, False),
    ]
    volume = rtk_attenuation_volume(loaded, anatomy.ct_hu, isocentre, POSITION) if loaded else None
    results = []
    calibration: list[float] | None = None
    for case in cases:
        result, reference = compare_case(loaded, volume, case, repeats)
        results.append(result)
        if calibration is None and reference is not None:
            calibration = phase_correlation_calibration(reference)
    del grid_rotating

    def shift_text(shift: list[float] | None) -> str:
        return NOT_INSTALLED if shift is None else f"({shift[0]:+.3f}, {shift[1]:+.3f})"

    print_table(
        f"line integrals of the static CT (signal 0) vs RTK Joseph, 512x512 panel; times in ms, "
        f"median of {repeats}, interleaved",
        [
            "case",
            "ours full",
            "ours frame",
            "RTK",
            "speedup full",
            "speedup frame",
            "rel MAD",
            "bias",
            "corr",
            "phase shift px",
            "LSQ shift px",
        ],
        [
            [
                r["case"],
                f"{r['ours_ms_full_volume']:.0f}",
                f"{r['ours_ms_per_frame']:.0f}",
                fmt(r["rtk_ms"], ".0f"),
                fmt(r["speedup_full_volume"], ".2f"),
                fmt(r["speedup_per_frame"], ".2f"),
                fmt(r["rel_mad"], ".4f"),
                fmt(r["bias_rel"], "+.4f"),
                fmt(r["correlation"], ".6f"),
                shift_text(r["phase_shift_px"]),
                shift_text(r["gradient_shift_px"]),
            ]
            for r in results
        ],
    )
    print(
        "ours full = a fresh projector (both layers projected); ours frame = the next call "
        "(static layer cached; a rotated grid rotates both layers every call); "
        f"BeamGrid.build at 90 deg took {grid_90_s:.1f} s"
    )
    if calibration is not None:
        print(
            "phase-correlation check: a known (+0.300, -0.200) px shift of the RTK image is "
            f"found as ({calibration[0]:+.3f}, {calibration[1]:+.3f}) px"
        )

    fixed_cases = [r for r in results if r["grid_built_at_this_angle"]]
    rotated_case = next(r for r in results if not r["grid_built_at_this_angle"])
    have_rtk = loaded is not None

    def median_of(key: str, chosen: list[dict[str, Any]]) -> float | None:
        return statistics.median(r[key] for r in chosen) if have_rtk else None

    summary: dict[str, Any] = {
        "benchmark": "simulator",
        "mode": "quick" if args.quick else "full",
        "cores": os.cpu_count(),
        "fluoro_clip_duration_s": fixed.duration_s,
        "fluoro_clip_fps": fixed.fps,
        "fluoro_clip_frames": fixed.n_frames,
        "fluoro_clip_wall_s": rounded(fixed.wall_s, 2),
        "fluoro_build_s": rounded(fixed.build_s, 2),
        "fluoro_frames_wall_s": rounded(fixed.frames_wall_s, 2),
        "fluoro_frames_per_s": rounded(fixed.n_frames / fixed.wall_s, 3),
        "fluoro_frames_per_s_excluding_build": rounded(fixed.n_frames / fixed.frames_wall_s, 3),
        "fluoro_ms_per_frame": rounded(fixed.ms_per_frame, 1),
        "fluoro_line_integral_ms_sequential": rounded(integral_ms, 1),
        "fluoro_expose_ms_sequential": rounded(expose_ms, 1),
        "model_build_s": rounded(model_s, 2),
        "grid_build_fixed_s": rounded(grid_0_s, 2),
        "grid_build_rotating_s": rounded(grid_rotating_s, 2),
        "rotating_clip_duration_s": rotating.duration_s,
        "rotating_clip_frames": rotating.n_frames,
        "rotating_clip_wall_s": rounded(rotating.wall_s, 2),
        "rotating_frames_wall_s": rounded(rotating.frames_wall_s, 2),
        "rotating_ms_per_frame": rounded(rotating.ms_per_frame, 1),
        "rtk_version": loaded.version if loaded else None,
        "rtk_import_s": rounded(rtk_import_s, 2) if loaded else None,
        "rtk_ms_per_projection": rounded(median_of("rtk_ms", fixed_cases), 1),
        "ours_ms_per_projection": rounded(
            statistics.median(r["ours_ms_full_volume"] for r in fixed_cases), 1
        ),
        "speedup_vs_rtk": rounded(median_of("speedup_full_volume", fixed_cases), 3),
        "speedup_vs_rtk_per_fluoro_frame": rounded(median_of("speedup_per_frame", fixed_cases), 3),
        "speedup_vs_rtk_rotated_grid": rounded(rotated_case["speedup_per_frame"], 3),
        "line_integral_rel_mad_vs_rtk": rounded(
            max(r["rel_mad"] for r in results) if have_rtk else None, 5
        ),
        "line_integral_bias_vs_rtk": rounded(
            min(r["bias_rel"] for r in results) if have_rtk else None, 5
        ),
        "line_integral_correlation_vs_rtk": rounded(
            min(r["correlation"] for r in results) if have_rtk else None, 6
        ),
        "shift_px_vs_rtk": rounded(
            max(math.hypot(*r["phase_shift_px"]) for r in results) if have_rtk else None, 4
        ),
        "gradient_shift_px_vs_rtk": rounded(
            max(math.hypot(*r["gradient_shift_px"]) for r in results) if have_rtk else None, 4
        ),
        "phase_correlation_calibration_px": (
            [rounded(v) for v in calibration] if calibration is not None else None
        ),
        "sphere_centroid_error_px_ours": rounded(max(s["ours_centroid_error_px"] for s in spheres)),
        "sphere_centroid_error_px_rtk": rounded(
            max(s["rtk_centroid_error_px"] for s in spheres) if have_rtk else None
        ),
        "sphere_mass_ratio_water": rounded(
            spheres[0]["mass_ratio_ours_over_rtk"] if have_rtk else None
        ),
        "sphere_mass_ratio_bone": rounded(
            spheres[-1]["mass_ratio_ours_over_rtk"] if have_rtk else None
        ),
        "rtk_cases": [
            {
                key: (
                    [rounded(v) for v in value]
                    if isinstance(value, list) and key.endswith("shift_px")
                    else rounded(value, 5)
                    if isinstance(value, float)
                    else value
                )
                for key, value in r.items()
            }
            for r in results
        ],
        "runtime_s": round(time.perf_counter() - started, 1),
    }
    print(
        "\nJSON headline: rtk/ours ms and speedups are medians over the three fixed-grid cases; "
        "rel MAD, bias, correlation and shift are the worst case of all four"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
