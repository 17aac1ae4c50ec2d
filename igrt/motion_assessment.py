"""Breathing-motion assessment end to end: recording in, decision and its evidence out.

The Python API behind ``igrt motion assess``, in two lines for a notebook::

    from igrt.motion_assessment import assess_motion
    assessment = assess_motion("fluoro.dcm")        # tracking + analysis + decision + margins

Inputs: a multi-frame DICOM fluoroscopy file, MHA/NRRD, a folder of PNG/TIFF frames, a vendor
projection folder (Elekta XVI ``.his`` + ``_Frames.xml``, Varian OBI ``.hnd`` + XML, TrueBeam
``.xim``; :mod:`igrt.imageio.vendor_projections`), a
:class:`~igrt.sequence.FluoroSequence`, a CSV trace (``time_s,si_mm,confidence``) or a
:class:`~igrt.trace.BreathingTrace`. Geometry comes from the file where it has it, and from a
:class:`GeometryOptions` otherwise.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igrt.breathing_analysis import BreathingAnalysis, analyse_breathing
from igrt.decision import AssessmentContextValues, MotionDecision, recommend_motion_management
from igrt.errors import GeometryError, ImageReadError, InvalidInputError, ProcessingError
from igrt.geometry import ProjectionGeometry
from igrt.margins import MarginSuggestion, suggest_margins
from igrt.protocol import DEFAULT_PROTOCOL, MotionProtocol
from igrt.sequence import FluoroSequence
from igrt.trace import BreathingTrace
from igrt.tracking import DomeTrack, TrackerSettings, TrackingStatusValues, track_dome

__all__ = [
    "TRACKER_SD_MM",
    "GeometryOptions",
    "MotionAssessment",
    "assess_motion",
    "load_recording",
    "trace_from_track",
]

TRACKER_SD_MM = 0.25
"""1-SD random error of one tracked dome position, mm: the dome tracker's RMS error on the
simulated real-CT clips of ``benchmarks/tracking.py`` (fixed gantry, 512x512)."""

_IMAGE_SUFFIXES = {".mha", ".mhd", ".nrrd", ".nii", ".gz"}
_FRAME_SUFFIXES = {".png", ".tif", ".tiff"}


@dataclass(frozen=True)
class GeometryOptions:
    """Imaging geometry for recordings that do not carry it (frame folders, foreign files).

    Parameters
    ----------
    sad_mm, sdd_mm : float
        Source-to-isocentre and source-to-detector distances, mm (XVI by default).
    pixel_pitch_mm : float
        Panel pixel pitch of the frames as stored (after any binning), mm.
    gantry_deg : float
        kV source angle, degrees.
    fps : float or None
        Frame rate when the file has no frame times, 1/s.
    """

    sad_mm: float = 1000.0
    sdd_mm: float = 1536.0
    pixel_pitch_mm: float = 0.8
    gantry_deg: float = 0.0
    fps: float | None = None

    def geometry(self, detector_shape: tuple[int, int]) -> ProjectionGeometry:
        """The geometry of a panel of ``detector_shape`` (rows, columns)."""
        return ProjectionGeometry(
            sad_mm=self.sad_mm,
            sdd_mm=self.sdd_mm,
            pixel_pitch_mm=(self.pixel_pitch_mm, self.pixel_pitch_mm),
            detector_shape=detector_shape,
            gantry_deg=self.gantry_deg,
        )


@dataclass(frozen=True, eq=False)
class MotionAssessment:
    """A breathing-motion assessment and everything that supports it.

    Attributes
    ----------
    source : str
        What was assessed (file name or description).
    trace : BreathingTrace
        Dome SI position over time, mm at the isocentre, superior positive.
    analysis : BreathingAnalysis
        Cycles, excursion, period, drift, holds, uncertainty, quality flags.
    decision : MotionDecision
        The motion-management recommendation with inputs, thresholds and rationale.
    margins : MarginSuggestion or None
        SI margins implied by the motion; ``None`` when the analysis cannot be trusted
        (``margins_reason`` says why).
    track : DomeTrack or None
        Per-frame tracking when the input was images.
    setup_error_model : dict
        The setup-error SDs the margins assume, mm.
    """

    source: str
    trace: BreathingTrace
    analysis: BreathingAnalysis
    decision: MotionDecision
    margins: MarginSuggestion | None
    margins_reason: str | None
    track: DomeTrack | None
    setup_error_model: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready document of the whole assessment (units in every key)."""
        document: dict[str, Any] = {
            "source": self.source,
            "decision": self.decision.to_dict(),
            "analysis": self.analysis.to_dict(),
            "margins": self.margins.to_dict() if self.margins is not None else None,
            "margins_reason": self.margins_reason,
            "setup_error_model_mm": self.setup_error_model,
            "trace": {
                "n_samples": self.trace.n_samples,
                "lost_fraction": self.trace.lost_fraction,
                "tracking_sd_mm": self.trace.tracking_sd_mm,
                "source": self.trace.source,
            },
        }
        if self.track is not None:
            document["tracking"] = {
                "tracked_fraction": self.track.tracked_fraction,
                "n_frames": len(self.track.observations),
                "n_lost": sum(
                    o.status is TrackingStatusValues.LOST for o in self.track.observations
                ),
            }
        return document

    def summary(self) -> str:
        """A few lines a therapist reads."""
        a, d = self.analysis, self.decision
        lines = [f"{self.source}: {d.recommendation.value.replace('_', ' ').upper()}"]
        if a.excursion_median_mm is not None:
            uncertainty = a.excursion_uncertainty_mm or 0.0
            lines.append(
                f"  excursion {a.excursion_median_mm:.1f} +/- {uncertainty:.1f} mm (median of "
                f"{a.n_cycles} cycles), period {a.period_median_s or float('nan'):.1f} s, "
                f"drift {a.drift_mm_per_min or 0.0:+.1f} mm/min"
            )
        lines.extend(f"  {sentence}" for sentence in d.rationale)
        if self.margins is not None:
            lines.append(
                f"  margins (SI): internal {self.margins.internal_margin_mm:.1f} mm, "
                f"PTV {self.margins.ptv_margin_mm:.1f} mm"
            )
        return "\n".join(lines)

    def write(self, folder: str | os.PathLike[str], *, plot: bool = True) -> dict[str, Path]:
        """Write ``assessment.json``, ``trace.csv`` and (optionally) ``motion.png``.

        Files are written atomically (temporary file, then rename), so an interrupted batch
        never leaves a half-written result that looks complete.
        """
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        written = {"trace": self.trace.to_csv(out / "trace.csv")}
        if plot:
            from igrt.motion_plot import plot_assessment

            written["plot"] = plot_assessment(self, out / "motion.png")
        text = json.dumps(self.to_dict(), indent=1, default=_json_default)
        written["json"] = _write_atomically(out / "assessment.json", text)
        return written


def _json_default(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_atomically(path: Path, text: str) -> Path:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_recording(
    path: str | os.PathLike[str], options: GeometryOptions | None = None
) -> FluoroSequence | BreathingTrace:
    """Read a recording: images become a sequence, a CSV a trace.

    Raises
    ------
    ImageReadError
        If the file or folder cannot be read, or is of no supported kind.
    GeometryError
        If the recording has no geometry and ``options`` gives none that fits.
    """
    from igrt import imageio
    from igrt.imageio.vendor_projections import read_vendor_projections, vendor_suffix

    options = options if options is not None else GeometryOptions()
    source = Path(path)
    if not source.exists():
        raise ImageReadError(f"no such file or folder: {source}", field="input")
    suffix = source.suffix.lower()
    if vendor_suffix(source) is not None:
        return read_vendor_projections(source, fps=options.fps)
    if source.is_dir():
        frames = sorted(p for p in source.iterdir() if p.suffix.lower() in _FRAME_SUFFIXES)
        if not frames:
            raise ImageReadError(
                f"{source} holds no PNG or TIFF frames (DICOM: pass the multi-frame file)",
                field="input",
            )
        shape = _image_shape(frames[0])
        return imageio.read_fluoro_frames(frames, options.geometry(shape), fps=options.fps)
    if suffix == ".csv":
        return BreathingTrace.from_csv(source)
    if suffix in _IMAGE_SUFFIXES:
        return imageio.read_fluoro_mha(
            source, fallback_geometry=_fallback(source, options), fallback_fps=options.fps
        )
    return imageio.read_fluoro_dicom(
        source, fallback_geometry=_fallback(source, options), fallback_fps=options.fps
    )


def _image_shape(path: Path) -> tuple[int, int]:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 2:
        raise ImageReadError(f"{path} is not a single-channel image", field="input")
    return (int(image.shape[0]), int(image.shape[1]))


def _fallback(path: Path, options: GeometryOptions) -> ProjectionGeometry | None:
    """A geometry from the options sized like the file's frames (None if unreadable)."""
    shape: tuple[int, int] | None = None
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        import SimpleITK as sitk

        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            size = reader.GetSize()
            shape = (int(size[1]), int(size[0]))
        except RuntimeError:
            return None
    else:
        import pydicom

        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            shape = (int(header.Rows), int(header.Columns))
        except Exception:
            return None
    try:
        return options.geometry(shape)
    except GeometryError:
        return None


def trace_from_track(track: DomeTrack, *, source: str) -> BreathingTrace:
    """The breathing trace of a dome track: lost frames stay lost (NaN), never filled in."""
    valid = np.array([o.status is not TrackingStatusValues.LOST for o in track.observations])
    return BreathingTrace(
        times_s=track.times_s,
        si_mm=track.si_isocentre_mm,
        confidence=np.where(valid, track.confidence, 0.0),
        valid=valid,
        tracking_sd_mm=TRACKER_SD_MM,
        source=source,
    )


def assess_motion(
    recording: str | os.PathLike[str] | FluoroSequence | BreathingTrace,
    *,
    geometry: GeometryOptions | None = None,
    context: AssessmentContextValues | str = AssessmentContextValues.FREE_BREATHING,
    protocol: MotionProtocol = DEFAULT_PROTOCOL,
    tracker: TrackerSettings | None = None,
    systematic_setup_sd_mm: float = 1.0,
    random_setup_sd_mm: float = 1.5,
) -> MotionAssessment:
    """Track, analyse and decide on one recording.

    Parameters
    ----------
    recording : path, FluoroSequence or BreathingTrace
        What to assess.
    geometry : GeometryOptions, optional
        Geometry and frame rate for recordings that lack them.
    context : AssessmentContextValues or str, optional
        Free breathing, under abdominal compression, or a breath-hold trial.
    protocol : MotionProtocol, optional
        Thresholds; the default protocol by default.
    tracker : TrackerSettings, optional
        Dome-tracker settings (hemidiaphragm, patient position, seed).
    systematic_setup_sd_mm, random_setup_sd_mm : float, optional
        Setup-error model for the margin suggestion (SD of systematic and random setup
        errors after image guidance, mm); state your own centre's values.

    Raises
    ------
    InvalidInputError
        Unreadable or unsuitable input (including geometry problems).
    ProcessingError
        When the dome cannot be found on the first frames.
    """
    if isinstance(recording, str | os.PathLike):
        source = Path(recording).name
    elif isinstance(recording, BreathingTrace) and recording.source:
        source = recording.source
    else:
        source = type(recording).__name__
    loaded = (
        load_recording(recording, geometry)
        if isinstance(recording, str | os.PathLike)
        else recording
    )
    track: DomeTrack | None = None
    if isinstance(loaded, FluoroSequence):
        track = track_dome(loaded, tracker)
        if track.tracked_fraction == 0.0:
            raise ProcessingError(f"{source}: the diaphragm dome was not found on any frame")
        trace = trace_from_track(track, source=f"igrt dome tracker on {source}")
    elif isinstance(loaded, BreathingTrace):
        trace = loaded
    else:
        raise InvalidInputError(f"cannot assess a {type(loaded).__name__}", field="recording")
    analysis = analyse_breathing(trace, protocol=protocol)
    decision = recommend_motion_management(analysis, protocol=protocol, context=context)
    margins: MarginSuggestion | None = None
    margins_reason: str | None = None
    try:
        margins = suggest_margins(
            analysis,
            systematic_setup_sd_mm=systematic_setup_sd_mm,
            random_setup_sd_mm=random_setup_sd_mm,
            protocol=protocol,
        )
    except ProcessingError as error:
        margins_reason = str(error)
    return MotionAssessment(
        source=source,
        trace=trace,
        analysis=analysis,
        decision=decision,
        margins=margins,
        margins_reason=margins_reason,
        track=track,
        setup_error_model={
            "systematic_setup_sd_mm": systematic_setup_sd_mm,
            "random_setup_sd_mm": random_setup_sd_mm,
        },
    )
