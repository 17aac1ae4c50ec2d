"""Accuracy and speed of the diaphragm-dome tracker against two baselines, on simulated fluoro.

Run ``.venv/bin/python benchmarks/tracking.py [--quick] [--cache-dir DIR] [--repeats N]`` from the
project root. It prints one table per case, a summary table, and ends with one JSON line
(``null`` wherever a number was not measured).

Clips
-----
Every clip is simulated by :func:`fixtures.fluoro.simulate_fluoro` from the real chest CT
(:func:`fixtures.anatomy.load_chest_ct`, head-first supine, isocentre 20 mm below the right dome
apex), on the default XVI panel (512x512 at 0.8 mm, 2x binning), raw uint16 frames, 7.5 fps.
Full mode: regular breathing (Lujan, 4 s period) of 5, 12 and 25 mm; 12 mm at a low dose
(1000 instead of 5000 photons per pixel); synthetic irregular breathing
(:func:`fixtures.breathing.irregular`, 2 mm/min drift); two real external-marker traces replayed
at 12 mm (:func:`fixtures.breathing.replay_real_trace`; one at the low dose); a breath-hold clip
(:func:`fixtures.breathing.breath_holds`, one 10 s hold with 2 mm creep); and a rotating gantry
(6 deg/s for 20 s, 120 degrees). ``--quick``: an 8 s regular 12 mm clip at a fixed gantry and an
8 s rotating clip (48 degrees). Clips are cached as ``.npz`` under ``--cache-dir`` (default
``$IGRT_BENCH_CACHE`` or ``~/.cache/igrt-bench``), keyed by the case parameters and a hash of the
simulator's source files, so a changed simulator never reuses stale clips.

Methods compared, on the same frames in the same run
----------------------------------------------------
- **ours**: :class:`igrt.tracking.DomeTracker` fed frame by frame (``update``), default settings,
  no seed. A position counts when the status is TRACKED or LOW_CONFIDENCE; the tracked fraction
  counts TRACKED only. ``within_1mm_fraction`` counts every frame, a LOST frame as a failure.
- **naive**: per-column maximum vertical gradient. A fixed window (+-15 mm by +-35 mm at the
  isocentre) is centred, once, on the *true* apex column of frame 0 and on the row *our tracker*
  found on frame 0 (the true row when it found none). On every frame: ``-ln(counts)``, Gaussian
  blur (sigma 1 px), central difference down the rows, the row of the largest rise on each column
  (parabolic sub-pixel), and the topmost of those rows is the dome, converted to mm at the
  isocentre with the frame's geometry. It is told the edge polarity (attenuation rising from lung
  to liver). Its feature (the steepest point of the edge) is not the apex onset our tracker
  reports, so its bias-removed RMS is given too.
- **shroud**: RTK's Amsterdam Shroud (``itk-rtk``, ``rtk.AmsterdamShroudImageFilter``, default
  derivative sigma 4 mm and unsharp mask of 17 frames) on the ``-ln(counts)`` stack cropped to a
  +-40 mm box around the same start point as the naive tracker (the effect of RTK's 3D clip
  box). The stack keeps our row order (row down = inferior): the filter keeps rising
  attenuation along +v, which is then the dome's lung-to-liver edge (in RTK's own panel
  convention, v = IEC +Y, the rows would be reversed and the filter would keep the opposite
  edges, so this favours the baseline). Two signals are read from the shroud: ``argmin`` (the row
  of the strongest edge per frame) and ``reg1d`` (RTK's default ``Reg1D`` extraction, which is not
  in the Python wrapping, re-implemented here: the mean-squares 1D translation between
  consecutive shroud lines, by grid search over +-8 px at 0.05 px with a parabolic refinement,
  accumulated). The shroud has no mm scale, so it is compared by the Pearson correlation of its
  signal with the truth (sign from the geometry, never fitted); ours and naive get the same
  correlation. ``not installed`` / ``null`` when itk-rtk is missing.

Speed
-----
Everything runs on one core: BLAS/OpenMP thread variables are set to 1 before numpy is imported
(``threadpoolctl`` is used as well when installed), ``cv2.setNumThreads(1)``, ITK's default
thread count 1; the process CPU time over wall time of each timed pass is printed as a check.
Every ``DomeTracker.update`` and every naive update is timed with ``time.perf_counter_ns``,
interleaved frame by frame so both see the same machine load; each clip is run ``--repeats``
times (fresh trackers; results must be identical) and a frame's latency is the median over the
repeats (the machine is shared). p50/p99 exclude frame 0 (initialisation, reported separately)
but include any re-initialisation after a LOST frame. frames/s = 1000 / mean latency (ms) of the
frames after the first.

Headline (JSON top level): all frames of the fixed-gantry cases pooled; per-case values, the
worst case (including the rotating gantry) and per-angle-range errors of the rotating clip are in
nested dictionaries.
"""

from __future__ import annotations

import os

# One core: limit BLAS / OpenMP pools before numpy is imported (see the module docstring).
for _variable in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_variable] = "1"

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# The project root first: run as a script, this folder would come first and its
# registration.py would shadow the registration package (which the simulator imports).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

from fixtures import breathing  # noqa: E402
from fixtures.breathing import BreathingSignal  # noqa: E402
from fixtures.motion import BreathingMotionModel  # noqa: E402
from igrt.geometry import ProjectionGeometry, xvi_geometry  # noqa: E402
from igrt.tracking import DomeTracker, TrackingStatusValues  # noqa: E402

FloatArray = npt.NDArray[np.float64]

CACHE_FORMAT = 1
SIGNAL_RATE_HZ = 50.0
DEFAULT_DOSE = 5000.0
LOW_DOSE = 1000.0
TOLERANCE_MM = 1.0  # a frame "within tolerance" is reported and within this of the truth
NAIVE_HALF_WIDTH_MM = 15.0
NAIVE_HALF_HEIGHT_MM = 35.0
SHROUD_HALF_BOX_MM = 40.0
SHROUD_MAX_SHIFT_PX = 8.0
SHROUD_SHIFT_STEP_PX = 0.05
ANGLE_BIN_DEG = 15.0
NOT_INSTALLED = "not installed"
REAL_TRACES = ("201205101536-UCC-1-LT-142-6.csv", "201205101519-LAC-1-T-222-6.csv")
SIMULATOR_SOURCES = (
    "fixtures/fluoro.py",
    "fixtures/panel.py",
    "fixtures/projector.py",
    "fixtures/motion.py",
    "fixtures/breathing.py",
    "fixtures/anatomy.py",
    "igrt/geometry.py",
)
TARGETS = {
    "rms_error_mm": ("<=", 0.3),
    "max_error_mm": ("<=", 1.0),
    "tracked_fraction": (">=", 0.99),
    "frames_per_s": (">=", 2000.0),
    "p99_frame_latency_ms": ("<=", 2.0),
}


# --- cases and clips ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One simulated clip: breathing pattern, dose and gantry motion."""

    name: str
    breathing: str  # "regular", "irregular", "real_trace" or "breath_holds"
    amplitude_mm: float
    duration_s: float | None  # None: the whole breath-hold signal
    photons_per_pixel: float = DEFAULT_DOSE
    gantry_speed_deg_per_s: float = 0.0
    fps: float = 7.5
    period_s: float = 4.0
    trace: str | None = None
    seed: int = 0

    @property
    def rotating(self) -> bool:
        """True when the gantry turns during the clip."""
        return self.gantry_speed_deg_per_s != 0.0

    def describe(self) -> str:
        """One line for the tables."""
        pattern = {
            "regular": f"regular {self.amplitude_mm:g} mm / {self.period_s:g} s",
            "irregular": f"irregular {self.amplitude_mm:g} mm, 2 mm/min drift",
            "real_trace": f"real trace {self.trace} at {self.amplitude_mm:g} mm",
            "breath_holds": f"breath hold (10 s, 2 mm creep), {self.amplitude_mm:g} mm",
        }[self.breathing]
        gantry = (
            f"gantry {self.gantry_speed_deg_per_s:g} deg/s" if self.rotating else "fixed gantry 0"
        )
        return f"{pattern}; {self.photons_per_pixel:g} photons/px; {gantry}; {self.fps:g} fps"


def full_cases() -> list[Case]:
    """The cases of the full benchmark."""
    return [
        Case("regular_5mm", "regular", 5.0, 20.0, seed=11),
        Case("regular_12mm", "regular", 12.0, 20.0, seed=12),
        Case("regular_25mm", "regular", 25.0, 20.0, seed=13),
        Case("regular_12mm_low_dose", "regular", 12.0, 20.0, LOW_DOSE, seed=14),
        Case("irregular_12mm", "irregular", 12.0, 20.0, seed=15),
        Case("real_trace_12mm", "real_trace", 12.0, 20.0, trace=REAL_TRACES[0], seed=16),
        Case(
            "real_trace_12mm_low_dose",
            "real_trace",
            12.0,
            20.0,
            LOW_DOSE,
            trace=REAL_TRACES[1],
            seed=17,
        ),
        Case("breath_hold_12mm", "breath_holds", 12.0, None, seed=18),
        Case("rotating_12mm", "regular", 12.0, 20.0, gantry_speed_deg_per_s=6.0, seed=19),
    ]


def quick_cases() -> list[Case]:
    """The subset run by ``--quick``."""
    return [
        Case("regular_12mm_8s", "regular", 12.0, 8.0, seed=12),
        Case("rotating_12mm_8s", "regular", 12.0, 8.0, gantry_speed_deg_per_s=6.0, seed=19),
    ]


def breathing_signal(case: Case) -> BreathingSignal:
    """The SI breathing signal (mm, superior positive) driving a case, covering the clip."""
    length_s = (case.duration_s or 0.0) + 1.0
    if case.breathing == "regular":
        return breathing.regular(case.amplitude_mm, case.period_s, length_s, SIGNAL_RATE_HZ)
    if case.breathing == "irregular":
        return breathing.irregular(
            case.amplitude_mm,
            case.period_s,
            length_s,
            SIGNAL_RATE_HZ,
            drift_mm_per_min=2.0,
            seed=case.seed,
        )
    if case.breathing == "real_trace":
        traces = {path.name: path for path in breathing.list_real_traces()}
        path = traces.get(case.trace or "") or sorted(traces.values())[0]
        # A 30 s window gives the cycle measurement (and the amplitude scaling) >= 3 cycles.
        return breathing.replay_real_trace(
            path, case.amplitude_mm, SIGNAL_RATE_HZ, duration_s=max(30.0, length_s)
        )
    if case.breathing == "breath_holds":
        return breathing.breath_holds(
            case.amplitude_mm,
            case.period_s,
            SIGNAL_RATE_HZ,
            hold_durations_s=(10.0,),
            creep_mm=2.0,
            free_breathing_s=8.0,
            recovery_s=6.0,
            seed=case.seed,
        )
    raise ValueError(f"unknown breathing pattern {case.breathing!r}")


@dataclass(frozen=True, eq=False)
class Clip:
    """A simulated clip with its truth, as the benchmark uses it."""

    frames: npt.NDArray[np.uint16]
    times_s: FloatArray
    gantry_deg: FloatArray
    geometries: tuple[ProjectionGeometry, ...]
    truth_si_mm: FloatArray
    """True apex SI at the isocentre plane (``FluoroTruth.apex_si_isocentre_mm``), superior +."""
    truth_pixel: FloatArray
    """True apex ``(column, row)`` per frame."""
    simulate_s: float | None
    """Wall time of the simulation, or None when read from the cache."""
    load_s: float

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])


def simulator_hash(root: Path) -> str:
    """Hash of the simulator's source files (part of the cache key)."""
    digest = hashlib.sha256()
    for relative in SIMULATOR_SOURCES:
        path = root / relative
        digest.update(path.read_bytes() if path.exists() else b"absent")
    return digest.hexdigest()[:16]


def tracker_hash(root: Path) -> str:
    """Hash of the tracker's source files (the tracker under test is recorded with the run)."""
    digest = hashlib.sha256()
    for path in sorted((root / "igrt" / "tracking").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def cache_path(case: Case, cache_dir: Path, source_hash: str) -> Path:
    """Where a case's clip is cached."""
    key = json.dumps(
        {"case": asdict(case), "format": CACHE_FORMAT, "simulator": source_hash}, sort_keys=True
    )
    return cache_dir / f"{case.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


class ModelLoader:
    """Loads the chest CT motion model once, only when a clip must be simulated."""

    def __init__(self) -> None:
        self._model: BreathingMotionModel | None = None
        self.seconds = 0.0

    def get(self) -> BreathingMotionModel:
        """The motion model of the real chest CT."""
        if self._model is None:
            from fixtures.anatomy import load_chest_ct

            started = time.perf_counter()
            self._model = BreathingMotionModel.from_anatomy(load_chest_ct())
            self.seconds = time.perf_counter() - started
        return self._model


def geometries_for(gantry_deg: FloatArray, rotating: bool) -> tuple[ProjectionGeometry, ...]:
    """Per-frame geometries as ``simulate_fluoro`` builds them (XVI default panel)."""
    panel = xvi_geometry()
    if not rotating:
        return (panel,) * gantry_deg.size
    return tuple(panel.with_gantry(float(angle)) for angle in gantry_deg)


def load_clip(case: Case, cache_dir: Path, source_hash: str, models: ModelLoader) -> Clip:
    """The case's clip from the cache, simulating (and caching) it when absent."""
    from fixtures.fluoro import simulate_fluoro
    from fixtures.panel import PanelPhysics

    path = cache_path(case, cache_dir, source_hash)
    simulate_s: float | None = None
    started = time.perf_counter()
    if not path.exists():
        signal = breathing_signal(case)
        duration_s = case.duration_s if case.duration_s is not None else float(signal.times_s[-1])
        model = models.get()
        started = time.perf_counter()
        simulation = simulate_fluoro(
            model,
            signal,
            duration_s=duration_s,
            fps=case.fps,
            geometry=xvi_geometry(),
            gantry_speed_deg_per_s=case.gantry_speed_deg_per_s,
            physics=PanelPhysics(photons_per_pixel=case.photons_per_pixel),
            seed=case.seed,
        )
        simulate_s = time.perf_counter() - started
        truth = simulation.truth
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(
            partial,
            frames=simulation.sequence.frames,
            times_s=truth.times_s,
            gantry_deg=truth.gantry_deg,
            apex_si_isocentre_mm=truth.apex_si_isocentre_mm,
            apex_pixel=truth.apex_pixel,
        )
        partial.replace(path)
        for stale in cache_dir.glob(f"{case.name}-*.npz"):
            if stale != path and not stale.name.endswith(".partial.npz"):
                stale.unlink()  # the same case from an older simulator
        started = time.perf_counter()
    with np.load(path) as data:
        frames = np.ascontiguousarray(data["frames"])
        times_s = np.asarray(data["times_s"], np.float64)
        gantry_deg = np.asarray(data["gantry_deg"], np.float64)
        truth_si = np.asarray(data["apex_si_isocentre_mm"], np.float64)
        truth_pixel = np.asarray(data["apex_pixel"], np.float64)
    load_s = time.perf_counter() - started
    return Clip(
        frames=frames,
        times_s=times_s,
        gantry_deg=gantry_deg,
        geometries=geometries_for(gantry_deg, case.rotating),
        truth_si_mm=truth_si,
        truth_pixel=truth_pixel,
        simulate_s=simulate_s,
        load_s=load_s,
    )


# --- the naive baseline -------------------------------------------------------------------------


class NaiveColumnGradientTracker:
    """Topmost per-column maximum of the vertical gradient in a fixed window.

    Parameters
    ----------
    centre_column, centre_row : float
        Window centre on the panel (see the module docstring for where it comes from).
    geometry : ProjectionGeometry
        Geometry of the first frame (sets the window size in pixels).
    """

    def __init__(self, centre_column: float, centre_row: float, geometry: ProjectionGeometry):
        pixel_u, pixel_v = geometry.pixel_at_isocentre_mm
        rows, cols = geometry.detector_shape
        half_width = round(NAIVE_HALF_WIDTH_MM / pixel_u)
        half_height = round(NAIVE_HALF_HEIGHT_MM / pixel_v)
        self.top = max(0, round(centre_row) - half_height)
        self.bottom = min(rows, round(centre_row) + half_height + 1)
        self.left = max(0, round(centre_column) - half_width)
        self.right = min(cols, round(centre_column) + half_width + 1)

    def update(self, frame: npt.NDArray[Any], geometry: ProjectionGeometry) -> float:
        """SI position of the dome at the isocentre plane on this frame, mm (superior +)."""
        window = frame[self.top : self.bottom, self.left : self.right].astype(np.float32)
        attenuation = -np.log(np.maximum(window, 1.0))
        smooth = cv2.GaussianBlur(attenuation, (0, 0), 1.0)
        rise = smooth[2:] - smooth[:-2]  # rise[k] is centred on window row k + 1
        peak = np.argmax(rise, axis=0)
        columns = np.arange(rise.shape[1])
        inner = np.clip(peak, 1, rise.shape[0] - 2)
        y0, y1, y2 = rise[inner - 1, columns], rise[inner, columns], rise[inner + 1, columns]
        denominator = y0 - 2.0 * y1 + y2
        safe = (peak == inner) & (denominator < 0)
        offset = np.where(safe, 0.5 * (y0 - y2) / np.where(safe, denominator, -1.0), 0.0)
        rows = self.top + 1 + peak + offset
        best = int(np.argmin(rows))
        _, v_mm = geometry.detector_mm_from_pixel(self.left + best, rows[best])
        return float(-v_mm / geometry.magnification)


# --- RTK's Amsterdam Shroud ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rtk:
    """The loaded ``itk`` and ``itk.RTK`` modules."""

    itk: Any
    rtk: Any
    version: str
    import_s: float


def load_rtk() -> Rtk | None:
    """Import itk-rtk (seconds of wrapper loading), or None when it is not installed."""
    started = time.perf_counter()
    try:
        import itk
        from itk import RTK as rtk  # noqa: N811

        rtk.AmsterdamShroudImageFilter[itk.Image[itk.F, 3]].New()  # force the lazy loading
        itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(1)
    except (ImportError, AttributeError):
        return None
    try:
        version = importlib.metadata.version("itk-rtk")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return Rtk(itk, rtk, version, time.perf_counter() - started)


def best_shift_px(fixed: FloatArray, moving: FloatArray) -> float:
    """Translation ``s`` minimising the mean of ``(fixed(x) - moving(x + s))^2`` (Reg1D)."""
    n = fixed.size
    x = np.arange(n, dtype=np.float64)
    shifts = np.arange(
        -SHROUD_MAX_SHIFT_PX, SHROUD_MAX_SHIFT_PX + SHROUD_SHIFT_STEP_PX / 2, SHROUD_SHIFT_STEP_PX
    )
    positions = x[None, :] + shifts[:, None]
    valid = (positions >= 0) & (positions <= n - 1)
    clipped = np.clip(positions, 0, n - 1)
    low = np.minimum(np.floor(clipped).astype(int), n - 2)
    weight = clipped - low
    shifted = (1.0 - weight) * moving[low] + weight * moving[low + 1]
    squared = np.where(valid, (fixed[None, :] - shifted) ** 2, 0.0)
    mse = squared.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    k = int(np.argmin(mse))
    offset = 0.0
    if 0 < k < mse.size - 1:
        denominator = mse[k - 1] - 2.0 * mse[k] + mse[k + 1]
        if denominator > 0:
            offset = 0.5 * (mse[k - 1] - mse[k + 1]) / denominator
    return float(shifts[k] + offset * SHROUD_SHIFT_STEP_PX)


@dataclass(frozen=True)
class ShroudResult:
    """Breathing signals read from the Amsterdam Shroud of a clip (no mm scale)."""

    si_argmin: FloatArray
    """Superior-positive proxy: minus the row of the strongest edge per frame, px."""
    si_reg1d: FloatArray
    """Superior-positive proxy: accumulated Reg1D shifts, px."""
    filter_s: float
    extract_s: float


def amsterdam_shroud(loaded: Rtk, clip: Clip, centre_column: float, centre_row: float) -> Any:
    """RTK's shroud of the clip's ``-ln(counts)`` stack cropped to a box; ``(shroud, seconds)``."""
    geometry = clip.geometries[0]
    pixel_u, pixel_v = geometry.pixel_at_isocentre_mm
    rows, cols = geometry.detector_shape
    half_width = round(SHROUD_HALF_BOX_MM / pixel_u)
    half_height = round(SHROUD_HALF_BOX_MM / pixel_v)
    top, bottom = (
        max(0, round(centre_row) - half_height),
        min(rows, round(centre_row) + half_height),
    )
    left = max(0, round(centre_column) - half_width)
    right = min(cols, round(centre_column) + half_width)
    stack = -np.log(np.maximum(clip.frames[:, top:bottom, left:right].astype(np.float32), 1.0))
    image = loaded.itk.image_from_array(np.ascontiguousarray(stack, dtype=np.float32))
    image.SetSpacing([float(geometry.pixel_pitch_mm[0]), float(geometry.pixel_pitch_mm[1]), 1.0])
    image_type = loaded.itk.Image[loaded.itk.F, 3]
    shroud_filter = loaded.rtk.AmsterdamShroudImageFilter[image_type].New()
    shroud_filter.SetInput(image)
    started = time.perf_counter()
    shroud_filter.Update()
    seconds = time.perf_counter() - started
    # Output axes: x = row on the panel (v), y = projection; numpy gives [projection, v].
    shroud = np.asarray(loaded.itk.array_from_image(shroud_filter.GetOutput()), np.float64)
    if shroud.shape[0] != clip.n_frames:
        shroud = shroud.T
    return shroud, seconds


def shroud_signals(
    loaded: Rtk, clip: Clip, centre_column: float, centre_row: float
) -> ShroudResult:
    """Argmin and Reg1D breathing signals from the clip's Amsterdam Shroud."""
    shroud, filter_s = amsterdam_shroud(loaded, clip, centre_column, centre_row)
    started = time.perf_counter()
    # Kept edges are negative in the shroud; rows grow inferior, so SI ~ -row.
    si_argmin = -np.argmin(shroud, axis=1).astype(np.float64)
    displacement = np.zeros(clip.n_frames)
    for index in range(1, clip.n_frames):
        shift = best_shift_px(shroud[index - 1], shroud[index])
        displacement[index] = displacement[index - 1] + shift
    extract_s = time.perf_counter() - started
    return ShroudResult(si_argmin, -displacement, filter_s, extract_s)


# --- running and timing -------------------------------------------------------------------------


@contextlib.contextmanager
def blas_single_thread() -> Iterator[str]:
    """Limit BLAS pools with threadpoolctl when installed; yields how threads are limited."""
    if importlib.util.find_spec("threadpoolctl") is None:
        yield "env vars set before importing numpy (threadpoolctl not installed)"
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield "threadpoolctl limits=1 and env vars"


@dataclass
class PassResult:
    """One interleaved pass of ours and the naive baseline over a clip."""

    si_ours: FloatArray
    statuses: list[TrackingStatusValues]
    apex_pixel: FloatArray
    si_naive: FloatArray
    ours_ns: npt.NDArray[np.int64]
    naive_ns: npt.NDArray[np.int64]
    naive_start: tuple[float, float]
    cpu_over_wall: float


def run_pass(clip: Clip) -> PassResult:
    """Track every frame with ours and the naive baseline, timing each update."""
    n = clip.n_frames
    tracker = DomeTracker()
    naive: NaiveColumnGradientTracker | None = None
    si_ours = np.full(n, np.nan)
    si_naive = np.full(n, np.nan)
    apex_pixel = np.full((n, 2), np.nan)
    statuses: list[TrackingStatusValues] = []
    ours_ns = np.zeros(n, np.int64)
    naive_ns = np.zeros(n, np.int64)
    naive_start = (math.nan, math.nan)
    cpu_started, wall_started = time.process_time_ns(), time.perf_counter_ns()
    for index in range(n):
        frame, geometry = clip.frames[index], clip.geometries[index]
        time_s = float(clip.times_s[index])
        started = time.perf_counter_ns()
        observation = tracker.update(frame, time_s, geometry)
        ours_ns[index] = time.perf_counter_ns() - started
        statuses.append(observation.status)
        si_ours[index] = observation.si_isocentre_mm
        apex_pixel[index] = (observation.apex_column, observation.apex_row)
        if naive is None:
            start_row = observation.apex_row
            if not math.isfinite(start_row):
                start_row = float(clip.truth_pixel[0, 1])
            naive_start = (float(clip.truth_pixel[0, 0]), float(start_row))
            naive = NaiveColumnGradientTracker(*naive_start, geometry)
        started = time.perf_counter_ns()
        si_naive[index] = naive.update(frame, geometry)
        naive_ns[index] = time.perf_counter_ns() - started
    cpu_ns = time.process_time_ns() - cpu_started
    wall_ns = time.perf_counter_ns() - wall_started
    return PassResult(
        si_ours,
        statuses,
        apex_pixel,
        si_naive,
        ours_ns,
        naive_ns,
        naive_start,
        cpu_ns / max(wall_ns, 1),
    )


def accuracy(
    estimate: FloatArray, truth: FloatArray, reported: npt.NDArray[np.bool_]
) -> dict[str, Any]:
    """Error statistics (mm) over the reported frames, and the all-frames tolerance fraction."""
    error = estimate[reported] - truth[reported]
    n_frames = truth.size
    result: dict[str, Any] = {
        "frames": int(n_frames),
        "reported_frames": int(error.size),
        "rms_error_mm": None,
        "p95_error_mm": None,
        "max_error_mm": None,
        "mean_error_mm": None,
        "bias_removed_rms_mm": None,
        "correlation": None,
        "within_1mm_fraction": float(np.count_nonzero(np.abs(error) <= TOLERANCE_MM) / n_frames),
    }
    if error.size:
        result.update(
            rms_error_mm=float(np.sqrt(np.mean(error**2))),
            p95_error_mm=float(np.percentile(np.abs(error), 95)),
            max_error_mm=float(np.max(np.abs(error))),
            mean_error_mm=float(np.mean(error)),
            bias_removed_rms_mm=float(np.std(error)),
        )
    if error.size > 2:
        result["correlation"] = pearson(estimate[reported], truth[reported])
    return result


def pearson(a: FloatArray, b: FloatArray) -> float | None:
    """Pearson correlation, or None for a constant series."""
    if float(np.std(a)) == 0.0 or float(np.std(b)) == 0.0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def latency(nanoseconds: npt.NDArray[np.int64]) -> dict[str, float | None]:
    """Latency statistics of one case, ms; frame 0 (initialisation) reported on its own."""
    ms = nanoseconds.astype(np.float64) / 1e6
    steady = ms[1:]
    return {
        "init_latency_ms": float(ms[0]),
        "p50_frame_latency_ms": float(np.percentile(steady, 50)) if steady.size else None,
        "p99_frame_latency_ms": float(np.percentile(steady, 99)) if steady.size else None,
        "max_frame_latency_ms": float(steady.max()) if steady.size else None,
        "mean_frame_latency_ms": float(steady.mean()) if steady.size else None,
        "frames_per_s": float(1000.0 / steady.mean()) if steady.size else None,
        "frames_per_s_including_init": float(1000.0 * ms.size / ms.sum()),
    }


def angle_bins(
    clip: Clip, run: PassResult, reported: npt.NDArray[np.bool_]
) -> list[dict[str, Any]]:
    """Errors of ours and the naive baseline per range of gantry rotation since frame 0."""
    turned = np.abs(clip.gantry_deg - clip.gantry_deg[0])
    bins = []
    for low in np.arange(0.0, float(turned.max()) + 1e-9, ANGLE_BIN_DEG):
        inside = (turned >= low) & (turned < low + ANGLE_BIN_DEG)
        if not np.any(inside):
            continue
        ours = accuracy(run.si_ours[inside], clip.truth_si_mm[inside], reported[inside])
        naive = accuracy(
            run.si_naive[inside], clip.truth_si_mm[inside], np.ones(int(inside.sum()), bool)
        )
        tracked = [run.statuses[i] is TrackingStatusValues.TRACKED for i in np.flatnonzero(inside)]
        bins.append(
            {
                "from_deg": float(low),
                "to_deg": float(low + ANGLE_BIN_DEG),
                "frames": int(inside.sum()),
                "tracked_fraction": float(np.mean(tracked)),
                "ours_rms_error_mm": ours["rms_error_mm"],
                "ours_max_error_mm": ours["max_error_mm"],
                "ours_mean_error_mm": ours["mean_error_mm"],
                "ours_within_1mm_fraction": ours["within_1mm_fraction"],
                "naive_rms_error_mm": naive["rms_error_mm"],
                "naive_bias_removed_rms_mm": naive["bias_removed_rms_mm"],
            }
        )
    return bins


@dataclass
class CaseResult:
    """Everything measured on one case."""

    case: Case
    clip: Clip
    summary: dict[str, Any]
    ours_ms: FloatArray  # per-frame latency, median over repeats
    naive_ms: FloatArray
    ours_error: FloatArray  # reported frames only
    naive_error: FloatArray
    tracked: int
    notes: list[str] = field(default_factory=list)


def evaluate_case(case: Case, clip: Clip, loaded: Rtk | None, repeats: int) -> CaseResult:
    """Run ours, naive and shroud on a clip and gather the metrics."""
    runs = [run_pass(clip) for _ in range(repeats)]
    first = runs[0]
    for other in runs[1:]:
        same = np.array_equal(first.si_ours, other.si_ours, equal_nan=True) and np.array_equal(
            first.si_naive, other.si_naive
        )
        if not same:
            raise RuntimeError(f"{case.name}: repeated passes gave different positions")
    ours_ns = np.median(np.stack([r.ours_ns for r in runs]), axis=0)
    naive_ns = np.median(np.stack([r.naive_ns for r in runs]), axis=0)
    statuses = first.statuses
    reported = np.array([s is not TrackingStatusValues.LOST for s in statuses])
    tracked = sum(s is TrackingStatusValues.TRACKED for s in statuses)
    low = sum(s is TrackingStatusValues.LOW_CONFIDENCE for s in statuses)
    lost = int(np.count_nonzero(~reported))
    truth = clip.truth_si_mm
    everything = np.ones(clip.n_frames, bool)
    ours = accuracy(first.si_ours, truth, reported)
    naive = accuracy(first.si_naive, truth, everything)
    ours.update(
        tracked_fraction=tracked / clip.n_frames,
        low_confidence_fraction=low / clip.n_frames,
        lost_fraction=lost / clip.n_frames,
        reinitialisations=int(
            sum(
                statuses[i - 1] is TrackingStatusValues.LOST and statuses[i] is not statuses[i - 1]
                for i in range(1, len(statuses))
            )
        ),
        **latency(ours_ns.astype(np.int64)),
        latency_single_pass=latency(first.ours_ns),
        cpu_over_wall=statistics.median(r.cpu_over_wall for r in runs),
    )
    naive.update(**latency(naive_ns.astype(np.int64)), start_column_row=list(first.naive_start))

    shroud: dict[str, Any] = {
        "installed": loaded is not None,
        "correlation_reg1d": None,
        "correlation_argmin": None,
        "correlation": None,
        "filter_ms_per_frame": None,
        "extract_ms_per_frame": None,
    }
    if loaded is not None:
        result = shroud_signals(loaded, clip, *first.naive_start)
        reg1d = pearson(result.si_reg1d, truth)
        argmin = pearson(result.si_argmin, truth)
        known = [c for c in (reg1d, argmin) if c is not None]
        shroud.update(
            correlation_reg1d=reg1d,
            correlation_argmin=argmin,
            correlation=max(known) if known else None,
            filter_ms_per_frame=1000.0 * result.filter_s / clip.n_frames,
            extract_ms_per_frame=1000.0 * result.extract_s / clip.n_frames,
        )

    checks: dict[str, bool | None] = {}
    if ours["rms_error_mm"] is not None:
        naive_best_rms = min(naive["rms_error_mm"], naive["bias_removed_rms_mm"])
        checks["rms_below_naive"] = ours["rms_error_mm"] < naive_best_rms
        checks["max_below_naive"] = ours["max_error_mm"] < naive["max_error_mm"]
        checks["correlation_above_naive"] = (
            ours["correlation"] is not None
            and naive["correlation"] is not None
            and ours["correlation"] > naive["correlation"]
        )
        checks["correlation_above_shroud"] = (
            None
            if shroud["correlation"] is None
            else ours["correlation"] is not None and ours["correlation"] > shroud["correlation"]
        )
    better = bool(checks) and all(v for v in checks.values() if v is not None)

    notes = []
    error = np.abs(first.si_ours - truth)
    bad = np.flatnonzero(~reported | (error > TOLERANCE_MM))
    if bad.size:
        described = []
        for i in bad[:12]:
            status = statuses[i].value
            err = "" if not reported[i] else f" err {first.si_ours[i] - truth[i]:+.2f} mm"
            described.append(f"{i} ({status}{err}, gantry {clip.gantry_deg[i]:.0f})")
        more = f" ... and {bad.size - 12} more" if bad.size > 12 else ""
        notes.append(f"frames lost or > {TOLERANCE_MM:g} mm off: " + ", ".join(described) + more)
    slowest = np.argsort(ours_ns[1:])[::-1][:3] + 1
    notes.append(
        "slowest frames after the first (median ms over passes): "
        + ", ".join(f"{i} ({ours_ns[i] / 1e6:.2f})" for i in slowest)
        + f"; frames over 1 ms: {int(np.count_nonzero(ours_ns[1:] > 1e6))}/{clip.n_frames - 1}"
    )
    low_frames = [i for i, s in enumerate(statuses) if s is TrackingStatusValues.LOW_CONFIDENCE]
    if low_frames:
        notes.append(
            f"LOW_CONFIDENCE frames: {low_frames[:20]}{' ...' if len(low_frames) > 20 else ''}"
        )

    summary: dict[str, Any] = {
        "description": case.describe(),
        "frames": clip.n_frames,
        "gantry_range_deg": [float(clip.gantry_deg[0]), float(clip.gantry_deg[-1])],
        "truth_range_mm": float(np.ptp(truth)),
        "simulate_s": clip.simulate_s,
        "ours": ours,
        "naive": naive,
        "shroud": shroud,
        "better_than_baselines": better,
        "better_than_baselines_checks": checks,
    }
    if case.rotating:
        summary["angle_bins"] = angle_bins(clip, first, reported)
    return CaseResult(
        case=case,
        clip=clip,
        summary=summary,
        ours_ms=ours_ns / 1e6,
        naive_ms=naive_ns / 1e6,
        ours_error=first.si_ours[reported] - truth[reported],
        naive_error=first.si_naive - truth,
        tracked=tracked,
        notes=notes,
    )


# --- printing -----------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".3f", missing: str = "-") -> str:
    """Format a number, or ``missing`` for None."""
    return missing if value is None else format(value, spec)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a left-aligned text table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    line = "  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def print_case(result: CaseResult, loaded: Rtk | None) -> None:
    """The table of one case: ours vs naive vs shroud."""
    s = result.summary
    ours, naive, shroud = s["ours"], s["naive"], s["shroud"]
    header = [
        "method",
        "reported",
        "tracked",
        "RMS mm",
        "p95 mm",
        "max mm",
        "bias mm",
        "RMS-bias mm",
        "corr",
        "<=1mm all",
        "init ms",
        "p50 ms",
        "p99 ms",
        "frames/s",
    ]
    rows = [
        [
            "ours (DomeTracker)",
            f"{ours['reported_frames']}/{ours['frames']}",
            f"{100 * ours['tracked_fraction']:.1f}%",
            fmt(ours["rms_error_mm"]),
            fmt(ours["p95_error_mm"]),
            fmt(ours["max_error_mm"]),
            fmt(ours["mean_error_mm"], "+.3f"),
            fmt(ours["bias_removed_rms_mm"]),
            fmt(ours["correlation"], ".5f"),
            f"{100 * ours['within_1mm_fraction']:.1f}%",
            fmt(ours["init_latency_ms"], ".1f"),
            fmt(ours["p50_frame_latency_ms"], ".3f"),
            fmt(ours["p99_frame_latency_ms"], ".3f"),
            fmt(ours["frames_per_s"], ".0f"),
        ],
        [
            "naive column gradient",
            f"{naive['reported_frames']}/{naive['frames']}",
            "n/a",
            fmt(naive["rms_error_mm"]),
            fmt(naive["p95_error_mm"]),
            fmt(naive["max_error_mm"]),
            fmt(naive["mean_error_mm"], "+.3f"),
            fmt(naive["bias_removed_rms_mm"]),
            fmt(naive["correlation"], ".5f"),
            f"{100 * naive['within_1mm_fraction']:.1f}%",
            fmt(naive["init_latency_ms"], ".3f"),
            fmt(naive["p50_frame_latency_ms"], ".3f"),
            fmt(naive["p99_frame_latency_ms"], ".3f"),
            fmt(naive["frames_per_s"], ".0f"),
        ],
    ]
    missing = NOT_INSTALLED if loaded is None else "-"
    per_frame = (
        None
        if shroud["filter_ms_per_frame"] is None
        else shroud["filter_ms_per_frame"] + shroud["extract_ms_per_frame"]
    )
    for label, key in (
        ("RTK shroud + Reg1D", "correlation_reg1d"),
        ("RTK shroud + argmin", "correlation_argmin"),
    ):
        rows.append(
            [label, "no mm scale", "n/a", *["-"] * 5, fmt(shroud[key], ".5f", missing), *["-"] * 5]
        )
    checks = ", ".join(f"{k}={v}" for k, v in s["better_than_baselines_checks"].items())
    print_table(
        f"case {result.case.name}: {s['description']}; {s['frames']} frames, truth range "
        f"{s['truth_range_mm']:.1f} mm",
        header,
        rows,
    )
    sim = "cached" if s["simulate_s"] is None else f"simulated in {s['simulate_s']:.0f} s"
    print(
        f"  tracked {100 * ours['tracked_fraction']:.1f}%, low confidence "
        f"{100 * ours['low_confidence_fraction']:.1f}%, lost {100 * ours['lost_fraction']:.1f}% "
        f"({ours['reinitialisations']} re-initialisations); single pass p99 "
        f"{fmt(ours['latency_single_pass']['p99_frame_latency_ms'], '.3f')} ms; CPU/wall "
        f"{ours['cpu_over_wall']:.2f}; clip {sim}"
    )
    if per_frame is not None:
        print(
            f"  shroud: filter {shroud['filter_ms_per_frame']:.2f} ms/frame + extraction "
            f"{shroud['extract_ms_per_frame']:.2f} ms/frame (batch over the clip, not streaming)"
        )
    print(f"  better than baselines: {s['better_than_baselines']} ({checks})")
    for note in result.notes:
        print(f"  {note}")
    if "angle_bins" in s:
        print_table(
            f"  {result.case.name}: errors per range of gantry rotation since frame 0",
            [
                "rotation deg",
                "frames",
                "tracked",
                "ours RMS",
                "ours max",
                "ours bias",
                "ours <=1mm",
                "naive RMS",
                "naive RMS-bias",
            ],
            [
                [
                    f"{b['from_deg']:g}-{b['to_deg']:g}",
                    str(b["frames"]),
                    f"{100 * b['tracked_fraction']:.0f}%",
                    fmt(b["ours_rms_error_mm"]),
                    fmt(b["ours_max_error_mm"]),
                    fmt(b["ours_mean_error_mm"], "+.3f"),
                    f"{100 * b['ours_within_1mm_fraction']:.0f}%",
                    fmt(b["naive_rms_error_mm"]),
                    fmt(b["naive_bias_removed_rms_mm"]),
                ]
                for b in s["angle_bins"]
            ],
        )


# --- aggregation --------------------------------------------------------------------------------


def pooled(results: list[CaseResult]) -> dict[str, Any]:
    """Headline figures over several cases: errors and latencies of all their frames pooled."""
    if not results:
        return {}
    ours_error = np.concatenate([r.ours_error for r in results])
    naive_error = np.concatenate([r.naive_error for r in results])
    frames = sum(r.clip.n_frames for r in results)
    ours_ms = np.concatenate([r.ours_ms[1:] for r in results])
    naive_ms = np.concatenate([r.naive_ms[1:] for r in results])
    init_ms = [r.ours_ms[0] for r in results]

    def stats(error: FloatArray) -> dict[str, float | None]:
        if not error.size:
            return dict.fromkeys(("rms", "p95", "max", "mean", "bias_removed_rms"))
        return {
            "rms": float(np.sqrt(np.mean(error**2))),
            "p95": float(np.percentile(np.abs(error), 95)),
            "max": float(np.max(np.abs(error))),
            "mean": float(np.mean(error)),
            "bias_removed_rms": float(np.std(error)),
        }

    ours, naive = stats(ours_error), stats(naive_error)
    return {
        "frames": frames,
        "rms_error_mm": ours["rms"],
        "p95_error_mm": ours["p95"],
        "max_error_mm": ours["max"],
        "mean_error_mm": ours["mean"],
        "tracked_fraction": sum(r.tracked for r in results) / frames,
        "reported_fraction": ours_error.size / frames,
        "within_1mm_fraction": float(np.count_nonzero(np.abs(ours_error) <= TOLERANCE_MM) / frames),
        "frames_per_s": float(1000.0 / ours_ms.mean()),
        "p50_frame_latency_ms": float(np.percentile(ours_ms, 50)),
        "p99_frame_latency_ms": float(np.percentile(ours_ms, 99)),
        "max_frame_latency_ms": float(ours_ms.max()),
        "init_latency_ms_median": float(statistics.median(init_ms)),
        "init_latency_ms_max": float(max(init_ms)),
        "naive_rms_error_mm": naive["rms"],
        "naive_p95_error_mm": naive["p95"],
        "naive_max_error_mm": naive["max"],
        "naive_mean_error_mm": naive["mean"],
        "naive_bias_removed_rms_mm": naive["bias_removed_rms"],
        "naive_within_1mm_fraction": float(
            np.count_nonzero(np.abs(naive_error) <= TOLERANCE_MM) / frames
        ),
        "naive_frames_per_s": float(1000.0 / naive_ms.mean()),
        "naive_p99_frame_latency_ms": float(np.percentile(naive_ms, 99)),
        "speed_ratio_ours_over_naive": float(naive_ms.mean() / ours_ms.mean()),
    }


def rounded(value: Any, digits: int = 5) -> Any:
    """Round floats (recursively) for the JSON line; NaN becomes None."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    if isinstance(value, np.generic):
        return rounded(value.item(), digits)
    return value


def target_report(headline: dict[str, Any]) -> dict[str, Any]:
    """Each target: its value, threshold and whether it is met."""
    report = {}
    for key, (sense, threshold) in TARGETS.items():
        value = headline.get(key)
        met = (
            None if value is None else (value <= threshold if sense == "<=" else value >= threshold)
        )
        report[key] = {"value": value, "target": f"{sense} {threshold:g}", "met": met}
    return report


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables and the final JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short subset (under a minute warm)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("IGRT_BENCH_CACHE", Path.home() / ".cache" / "igrt-bench")),
        help="where simulated clips are cached",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed passes per clip")
    parser.add_argument("--no-rtk", action="store_true", help="skip the Amsterdam Shroud")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    repeats = args.repeats or (3 if args.quick else 5)
    cv2.setNumThreads(1)
    root = Path(__file__).resolve().parent.parent
    source_hash = simulator_hash(root)
    cases = quick_cases() if args.quick else full_cases()
    panel = xvi_geometry()

    with blas_single_thread() as blas:
        loaded = None if args.no_rtk else load_rtk()
        print(f"tracking benchmark ({'quick' if args.quick else 'full'}): real chest CT, HFS")
        print(
            f"cores {os.cpu_count()}, OpenCV threads {cv2.getNumThreads()}, BLAS: {blas}; panel "
            f"{panel.detector_shape[0]}x{panel.detector_shape[1]} at {panel.pixel_pitch_mm[0]} mm "
            f"({panel.pixel_at_isocentre_mm[1]:.3f} mm at the isocentre); {repeats} timed passes "
            f"per clip, per-frame latency = median over passes; cache {args.cache_dir}; "
            f"tracker sources sha256 {tracker_hash(root)}"
        )
        if loaded is None:
            print(f"RTK (itk-rtk): {NOT_INSTALLED}; shroud columns and JSON fields are null")
        else:
            print(
                f"RTK itk-rtk {loaded.version} loaded in {loaded.import_s:.1f} s, ITK threads "
                f"{loaded.itk.MultiThreaderBase.GetGlobalDefaultNumberOfThreads()}"
            )

        models = ModelLoader()
        results: list[CaseResult] = []
        for case in cases:
            clip = load_clip(case, args.cache_dir, source_hash, models)
            # The simulator resets OpenCV's thread count after rendering; pin it again.
            cv2.setNumThreads(1)
            result = evaluate_case(case, clip, loaded, repeats)
            results.append(result)
            print_case(result, loaded)
            del clip

    fixed = [r for r in results if not r.case.rotating]
    headline = pooled(fixed)
    default_dose = pooled([r for r in fixed if r.case.photons_per_pixel == DEFAULT_DOSE])
    all_cases = pooled(results)
    worst = max(
        results,
        key=lambda r: (
            r.summary["ours"]["rms_error_mm"]
            if r.summary["ours"]["rms_error_mm"] is not None
            else math.inf
        ),
    )

    print_table(
        "summary per case (ours vs naive vs shroud; shroud and correlations are unitless)",
        [
            "case",
            "tracked",
            "RMS",
            "p95",
            "max",
            "naive RMS",
            "naive RMS-bias",
            "naive max",
            "corr ours",
            "corr naive",
            "corr shroud",
            "p99 ms",
            "frames/s",
            "better",
        ],
        [
            [
                r.case.name,
                f"{100 * r.summary['ours']['tracked_fraction']:.1f}%",
                fmt(r.summary["ours"]["rms_error_mm"]),
                fmt(r.summary["ours"]["p95_error_mm"]),
                fmt(r.summary["ours"]["max_error_mm"]),
                fmt(r.summary["naive"]["rms_error_mm"]),
                fmt(r.summary["naive"]["bias_removed_rms_mm"]),
                fmt(r.summary["naive"]["max_error_mm"]),
                fmt(r.summary["ours"]["correlation"], ".5f"),
                fmt(r.summary["naive"]["correlation"], ".5f"),
                fmt(
                    r.summary["shroud"]["correlation"],
                    ".5f",
                    NOT_INSTALLED if loaded is None else "-",
                ),
                fmt(r.summary["ours"]["p99_frame_latency_ms"], ".3f"),
                fmt(r.summary["ours"]["frames_per_s"], ".0f"),
                str(r.summary["better_than_baselines"]),
            ]
            for r in results
        ],
    )
    targets = target_report(headline)
    print(
        "\nheadline = all frames of the fixed-gantry cases pooled: "
        + "; ".join(
            f"{k} {fmt(v['value'], '.4g')} ({v['target']}: {'met' if v['met'] else 'MISSED'})"
            for k, v in targets.items()
        )
    )
    print(
        f"all cases pooled (incl. rotating): RMS {fmt(all_cases['rms_error_mm'])} mm, max "
        f"{fmt(all_cases['max_error_mm'])} mm, tracked {100 * all_cases['tracked_fraction']:.1f}%;"
        f" worst case by RMS: {worst.case.name}; ours vs naive speed (same run, interleaved): "
        f"{headline['speed_ratio_ours_over_naive']:.2f}x"
    )

    if default_dose:
        print(
            f"fixed gantry, default dose only ({DEFAULT_DOSE:g} photons/px): RMS "
            f"{fmt(default_dose['rms_error_mm'])} mm, p95 {fmt(default_dose['p95_error_mm'])} mm,"
            f" max {fmt(default_dose['max_error_mm'])} mm, tracked "
            f"{100 * default_dose['tracked_fraction']:.1f}%, p99 "
            f"{fmt(default_dose['p99_frame_latency_ms'])} ms"
        )

    shroud_correlations = [
        r.summary["shroud"]["correlation"]
        for r in fixed
        if r.summary["shroud"]["correlation"] is not None
    ]
    ours_correlations = [
        r.summary["ours"]["correlation"]
        for r in fixed
        if r.summary["ours"]["correlation"] is not None
    ]
    naive_correlations = [
        r.summary["naive"]["correlation"]
        for r in fixed
        if r.summary["naive"]["correlation"] is not None
    ]
    summary: dict[str, Any] = {
        "benchmark": "tracking",
        "mode": "quick" if args.quick else "full",
        "cores": os.cpu_count(),
        "repeats": repeats,
        "tracker_source_sha256": tracker_hash(root),
        "headline_scope": "fixed-gantry cases pooled",
        **headline,
        "correlation_min": min(ours_correlations) if ours_correlations else None,
        "naive_correlation_min": min(naive_correlations) if naive_correlations else None,
        "shroud_installed": loaded is not None,
        "rtk_version": loaded.version if loaded else None,
        "shroud_correlation_min": min(shroud_correlations) if shroud_correlations else None,
        "shroud_correlation_max": max(shroud_correlations) if shroud_correlations else None,
        "better_than_baselines": {r.case.name: r.summary["better_than_baselines"] for r in results},
        "better_than_baselines_all": all(r.summary["better_than_baselines"] for r in results),
        "targets": targets,
        "all_cases_pooled": all_cases,
        "fixed_default_dose_pooled": default_dose or None,
        "worst_case": {
            "case": worst.case.name,
            "rms_error_mm": worst.summary["ours"]["rms_error_mm"],
            "p95_error_mm": worst.summary["ours"]["p95_error_mm"],
            "max_error_mm": worst.summary["ours"]["max_error_mm"],
            "tracked_fraction": worst.summary["ours"]["tracked_fraction"],
            "p99_frame_latency_ms": worst.summary["ours"]["p99_frame_latency_ms"],
        },
        "cases": {r.case.name: r.summary for r in results},
        "model_build_s": models.seconds or None,
        "runtime_s": time.perf_counter() - started,
    }
    print(json.dumps(rounded(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
