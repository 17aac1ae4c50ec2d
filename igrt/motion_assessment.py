"""Breathing-motion assessment end to end: recording in, decision and its evidence out.

The Python API behind ``igrt motion assess``, in two lines for a notebook::

    from igrt.motion_assessment import assess_motion
    assessment = assess_motion("fluoro.dcm")        # tracking + analysis + decision + margins

Inputs: a multi-frame DICOM fluoroscopy file, MHA/NRRD, a folder of PNG/TIFF frames, a vendor
projection folder (Elekta XVI ``.his`` + ``_Frames.xml``, Varian OBI ``.hnd`` + XML, TrueBeam
``.xim``; :mod:`igrt.imageio.vendor_projections`), a
:class:`~igrt.sequence.FluoroSequence`, a CSV trace (``time_s,si_mm,confidence``) or a
:class:`~igrt.trace.BreathingTrace`. Geometry comes from the file where it has it, and from a
:class:`GeometryOptions` otherwise; what the pixels mean (:class:`~igrt.sequence.IntensityValues`)
from the file where it says, and from the caller's ``intensity`` otherwise (a folder of frames
never says). A :class:`DomeHint` (a person's click on the dome in the first frame) starts the
tracker there, and the assessment records it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from igrt.breathing_analysis import BreathingAnalysis, analyse_breathing
from igrt.decision import AssessmentContextValues, MotionDecision, recommend_motion_management
from igrt.errors import GeometryError, ImageReadError, InvalidInputError, ProcessingError
from igrt.geometry import ProjectionGeometry
from igrt.margins import MarginSuggestion, suggest_margins
from igrt.protocol import DEFAULT_PROTOCOL, MotionProtocol
from igrt.protocol_file import LoadedProtocol
from igrt.sequence import FluoroSequence, IntensityValues
from igrt.trace import BreathingTrace
from igrt.tracking import DomeTrack, TrackerSettings, TrackingStatusValues, track_dome

__all__ = [
    "TRACKER_SD_MM",
    "DomeHint",
    "GeometryOptions",
    "MotionAssessment",
    "assess_motion",
    "geometry_record",
    "load_recording",
    "trace_from_track",
    "write_text_atomically",
]

TRACKER_SD_MM = 0.25
"""1-SD random error of one tracked dome position, mm: the dome tracker's RMS error on the
simulated real-CT clips of ``benchmarks/tracking.py`` (fixed gantry, 512x512)."""

_IMAGE_SUFFIXES = {".mha", ".mhd", ".nrrd", ".nii", ".gz"}
_FRAME_SUFFIXES = {".png", ".tif", ".tiff"}


@dataclass(frozen=True)
class GeometryOptions:
    """Imaging geometry for recordings that do not carry it (frame folders, foreign files).

    Nothing is assumed: the panel pixel pitch of frames without geometry must be stated (a
    folder of PNG frames says nothing about the panel, its binning or its distances), and the
    geometry used is written into the result.

    Parameters
    ----------
    sad_mm, sdd_mm : float
        Source-to-isocentre and source-to-detector distances, mm (XVI by default, recorded).
    pixel_pitch_mm : float or None
        Panel pixel pitch of the frames as stored (after any binning), mm; ``None``: not
        stated, and a recording without geometry is refused.
    gantry_deg : float
        kV source angle, degrees.
    fps : float or None
        Frame rate when the file has no frame times, 1/s.
    """

    sad_mm: float = 1000.0
    sdd_mm: float = 1536.0
    pixel_pitch_mm: float | None = None
    gantry_deg: float = 0.0
    fps: float | None = None

    def geometry(self, detector_shape: tuple[int, int]) -> ProjectionGeometry:
        """The geometry of a panel of ``detector_shape`` (rows, columns).

        Raises
        ------
        GeometryError
            If the pixel pitch was not stated.
        """
        if self.pixel_pitch_mm is None:
            raise GeometryError(
                "the recording carries no imaging geometry: state the panel pixel pitch "
                "(--pixel-mm, after binning) and, if not an XVI, --sad-mm and --sdd-mm"
            )
        return ProjectionGeometry(
            sad_mm=self.sad_mm,
            sdd_mm=self.sdd_mm,
            pixel_pitch_mm=(self.pixel_pitch_mm, self.pixel_pitch_mm),
            detector_shape=detector_shape,
            gantry_deg=self.gantry_deg,
        )


def geometry_record(sequence: FluoroSequence, options: GeometryOptions | None) -> dict[str, Any]:
    """The geometry a sequence was measured with and where it came from (for the result)."""
    first = sequence.geometries[0]
    stated = None
    if options is not None and options.pixel_pitch_mm is not None:
        try:
            stated = options.geometry(first.detector_shape)
        except GeometryError:
            stated = None
    same = stated is not None and (
        stated.sad_mm,
        stated.sdd_mm,
        tuple(stated.pixel_pitch_mm),
    ) == (first.sad_mm, first.sdd_mm, tuple(first.pixel_pitch_mm))
    return {
        "source": "stated by the user (the recording has none)" if same else "recording",
        "sad_mm": float(first.sad_mm),
        "sdd_mm": float(first.sdd_mm),
        "pixel_pitch_mm": [float(v) for v in first.pixel_pitch_mm],
        "detector_shape": [int(v) for v in first.detector_shape],
        "magnification": float(first.sdd_mm / first.sad_mm),
    }


@dataclass(frozen=True)
class DomeHint:
    """A person's hint: the dome apex is near this pixel of the recording's first frame.

    Automatic dome detection can lock onto another edge (the top of the lung, a clavicle); a
    therapist who points at the dome once fixes that for the whole recording. The tracker
    searches only within ``TrackerSettings.seed_radius_px`` of the hint on the first frame.

    Parameters
    ----------
    column_px, row_px : float
        Panel pixel of the first frame (column from the left, row from the top; pixel centres
        at integers).
    given_by : str or None, optional
        Who gave it (a name or token name), for the record.
    source : str or None, optional
        Where it came from (``--dome-hint``, a sidecar file, a request), for the record.

    Raises
    ------
    InvalidInputError
        A coordinate that is not a finite number >= 0.
    """

    column_px: float
    row_px: float
    given_by: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        for name in ("column_px", "row_px"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInputError(f"dome hint {name} must be a number", field="dome_hint")
            if not math.isfinite(value) or value < 0:
                raise InvalidInputError(
                    f"dome hint {name} must be finite and >= 0, got {value!r}", field="dome_hint"
                )
            object.__setattr__(self, name, float(value))

    @classmethod
    def parse(cls, text: str, *, source: str | None = None) -> DomeHint:
        """A hint from ``"COLUMN,ROW"`` (pixels of the first frame).

        Examples
        --------
        >>> DomeHint.parse("120,88.5")
        DomeHint(column_px=120.0, row_px=88.5, given_by=None, source=None)
        """
        parts = text.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            column, row = (float(part) for part in parts)
        except ValueError:
            raise InvalidInputError(
                f"a dome hint is COLUMN,ROW in pixels of the first frame, got {text!r}",
                field="dome_hint",
            ) from None
        return cls(column, row, source=source)

    def check_on_panel(self, detector_shape: tuple[int, int]) -> None:
        """Refuse a hint outside a panel of ``detector_shape`` (rows, columns).

        Raises
        ------
        InvalidInputError
            When the hint is not on the panel.
        """
        rows, columns = detector_shape
        if self.column_px > columns - 1 or self.row_px > rows - 1:
            raise InvalidInputError(
                f"the dome hint (column {self.column_px:g}, row {self.row_px:g}) is outside the "
                f"first frame ({columns} columns x {rows} rows; pixels count from 0)",
                field="dome_hint",
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the hint."""
        return {
            "column_px": self.column_px,
            "row_px": self.row_px,
            "given_by": self.given_by,
            "source": self.source,
        }


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
    geometry : dict or None
        The imaging geometry used for images (with its source); ``None`` for a trace.
    protocol : dict
        The protocol applied: version, file hash and path (``None`` for the built-in one) and
        every value with its provenance.
    dome_hint : DomeHint or None
        The hint the tracker started from; ``None`` when the dome was found automatically.
    """

    source: str
    trace: BreathingTrace
    analysis: BreathingAnalysis
    decision: MotionDecision
    margins: MarginSuggestion | None
    margins_reason: str | None
    track: DomeTrack | None
    setup_error_model: dict[str, float]
    protocol: dict[str, Any]
    geometry: dict[str, Any] | None = None
    dome_hint: DomeHint | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready document of the whole assessment (units in every key)."""
        document: dict[str, Any] = {
            "source": self.source,
            "decision": self.decision.to_dict(),
            "analysis": self.analysis.to_dict(),
            "margins": self.margins.to_dict() if self.margins is not None else None,
            "margins_reason": self.margins_reason,
            "setup_error_model_mm": self.setup_error_model,
            "protocol": self.protocol,
            "geometry": self.geometry,
            "dome_hint": self.dome_hint.to_dict() if self.dome_hint is not None else None,
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
                "first_apex_column_row_px": _first_apex(self.track),
            }
        return document

    def summary(self) -> str:
        """A few lines a therapist reads."""
        a, d = self.analysis, self.decision
        lines = [f"{self.source}: {d.recommendation.value.replace('_', ' ').upper()}"]
        if self.dome_hint is not None:
            by = f" by {self.dome_hint.given_by}" if self.dome_hint.given_by else ""
            lines.append(
                f"  tracked from a dome hint{by} at column {self.dome_hint.column_px:g}, "
                f"row {self.dome_hint.row_px:g} of the first frame"
            )
        if a.excursion_median_mm is not None:
            uncertainty = a.excursion_uncertainty_mm or 0.0
            lines.append(
                f"  excursion {a.excursion_median_mm:.1f} +/- {uncertainty:.1f} mm (median of "
                f"{a.n_cycles} cycles), period {a.period_median_s or float('nan'):.1f} s, "
                f"drift {a.drift_mm_per_min or 0.0:+.1f} mm/min"
            )
        if self.geometry is not None:
            g = self.geometry
            lines.append(
                f"  geometry ({g['source']}): SAD {g['sad_mm']:g} mm, SDD {g['sdd_mm']:g} mm, "
                f"pixel {g['pixel_pitch_mm'][0]:g} mm"
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
        written["json"] = write_text_atomically(out / "assessment.json", text)
        return written


def _first_apex(track: DomeTrack) -> list[float] | None:
    """Panel pixel ``[column, row]`` of the first apex found (to compare with a hint)."""
    for observation in track.observations:
        apex = [float(observation.apex_column), float(observation.apex_row)]
        if observation.status is not TrackingStatusValues.LOST and all(map(math.isfinite, apex)):
            return apex
    return None


def _json_default(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_text_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file, fsync and rename.

    Readers (and a re-run after a crash) see the old file or the whole new one, never a part.
    """
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
    path: str | os.PathLike[str],
    options: GeometryOptions | None = None,
    *,
    intensity: IntensityValues | None = None,
) -> FluoroSequence | BreathingTrace:
    """Read a recording: images become a sequence, a CSV a trace.

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM or MetaImage file, a folder of PNG/TIFF frames, or a CSV trace.
    options : GeometryOptions, optional
        Geometry and frame rate for recordings that lack them.
    intensity : IntensityValues or None, optional
        What the pixels mean, for files that do not say: needed for a folder of frames and
        for a MetaImage or DICOM file that does not state it; it must agree with a file that
        does.

    Raises
    ------
    ImageReadError
        If the file or folder cannot be read, or is of no supported kind, or does not say what
        its pixels mean and ``intensity`` is not given.
    InvalidInputError
        If ``intensity`` contradicts what the file states.
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
        if intensity is None:
            raise ImageReadError(
                f"{source} is a folder of frames, which do not say what their pixels mean: pass "
                "intensity (raw panel signal, line integrals, or display grey levels with the "
                "lung dark)",
                field="intensity",
            )
        shape = _image_shape(frames[0])
        return imageio.read_fluoro_frames(
            frames, options.geometry(shape), fps=options.fps, intensity=intensity
        )
    if suffix == ".csv":
        return BreathingTrace.from_csv(source)
    if suffix in _IMAGE_SUFFIXES:
        return imageio.read_fluoro_mha(
            source,
            fallback_geometry=_fallback(source, options),
            fallback_fps=options.fps,
            intensity=intensity,
        )
    return imageio.read_fluoro_dicom(
        source,
        fallback_geometry=_fallback(source, options),
        fallback_fps=options.fps,
        intensity=intensity,
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
    """The breathing trace of a dome track: lost frames stay lost (NaN), never filled in.

    Frames whose edge still needs confirmation as the dome (chosen without anatomy or a hint,
    not yet seen to breathe) are not valid samples: no decision rests on them.
    """
    usable = (TrackingStatusValues.TRACKED, TrackingStatusValues.LOW_CONFIDENCE)
    valid = np.array([o.status in usable for o in track.observations])
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
    systematic_setup_sd_mm: float | None = None,
    random_setup_sd_mm: float | None = None,
    protocol_file: LoadedProtocol | None = None,
    intensity: IntensityValues | None = None,
    dome_hint: DomeHint | None = None,
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
        errors after image guidance, mm); ``None`` takes the protocol's (the site's model).
    protocol_file : LoadedProtocol, optional
        The site protocol file ``protocol`` came from: its version, hash and path are recorded.
    intensity : IntensityValues or None, optional
        What the pixels of a file mean, when it does not say (see :func:`load_recording`).
    dome_hint : DomeHint or None, optional
        Start the tracker at this pixel of the first frame (it replaces any seed in
        ``tracker``); recorded with the assessment.

    Raises
    ------
    InvalidInputError
        Unreadable or unsuitable input (including geometry problems); a dome hint off the
        first frame or given for a trace.
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
        load_recording(recording, geometry, intensity=intensity)
        if isinstance(recording, str | os.PathLike)
        else recording
    )
    track: DomeTrack | None = None
    geometry_used: dict[str, Any] | None = None
    if isinstance(loaded, FluoroSequence):
        geometry_used = geometry_record(loaded, geometry)
        track = track_dome(loaded, _hinted(tracker, dome_hint, loaded))
        if track.tracked_fraction == 0.0:
            raise ProcessingError(f"{source}: the diaphragm dome was not found on any frame")
        trace = trace_from_track(track, source=f"igrt dome tracker on {source}")
    elif isinstance(loaded, BreathingTrace):
        if dome_hint is not None:
            raise InvalidInputError(
                f"{source} is a breathing trace: there is no image to give a dome hint on",
                field="dome_hint",
            )
        trace = loaded
    else:
        raise InvalidInputError(f"cannot assess a {type(loaded).__name__}", field="recording")
    analysis = analyse_breathing(trace, protocol=protocol)
    decision = recommend_motion_management(analysis, protocol=protocol, context=context)
    systematic = (
        protocol.systematic_setup_sd_mm
        if systematic_setup_sd_mm is None
        else systematic_setup_sd_mm
    )
    random = protocol.random_setup_sd_mm if random_setup_sd_mm is None else random_setup_sd_mm
    margins: MarginSuggestion | None = None
    margins_reason: str | None = None
    try:
        margins = suggest_margins(
            analysis,
            systematic_setup_sd_mm=systematic,
            random_setup_sd_mm=random,
            protocol=protocol,
            decision=decision,
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
            "systematic_setup_sd_mm": systematic,
            "random_setup_sd_mm": random,
        },
        geometry=geometry_used,
        protocol={
            "version": protocol.version,
            "sha256": None if protocol_file is None else protocol_file.sha256,
            "file": None if protocol_file is None else protocol_file.path,
            "values": protocol.to_dict(),
        },
        dome_hint=dome_hint,
    )


def _hinted(
    tracker: TrackerSettings | None, hint: DomeHint | None, sequence: FluoroSequence
) -> TrackerSettings | None:
    """The tracker settings seeded at the hint (checked to lie on the first frame)."""
    if hint is None:
        return tracker
    hint.check_on_panel(sequence.geometries[0].detector_shape)
    return replace(
        tracker if tracker is not None else TrackerSettings(),
        seed_column_row=(hint.column_px, hint.row_px),
    )
