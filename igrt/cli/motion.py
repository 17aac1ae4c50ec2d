"""``igrt motion assess`` and ``igrt motion batch``: offline breathing-motion assessment."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igrt.errors import InvalidInputError, ProcessingError

if TYPE_CHECKING:
    from igrt.motion_assessment import DomeHint

_INTENSITY_FIELDS = {"intensity", "IGRT_Intensity", "PixelIntensityRelationship"}
"""Error fields of a missing or contradicted pixel meaning (``igrt.imageio`` readers)."""
_HINT_SUFFIX = ".hint.json"
_HINT_KEYS = {"column_px", "row_px", "given_by"}
_HINT_MAX_BYTES = 4096
_INTENSITY_HELP = (
    "what the pixels mean, for files that do not say (a folder of PNG/TIFF frames never does; "
    "a MetaImage or DICOM without the project's header key or Pixel Intensity Relationship): "
    "raw panel signal, line integrals -ln(I/I0), or display grey levels with the lung dark. "
    "A file that says otherwise is refused"
)


def register(commands: Any) -> None:
    """Add ``motion assess`` and ``motion batch`` to ``commands``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "motion",
        help="assess breathing motion and recommend motion management",
        description="Track the diaphragm dome, analyse breathing, recommend a device.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    assess = actions.add_parser(
        "assess",
        help="assess one or more recordings",
        description="Assess recordings: multi-frame DICOM, MHA/NRRD, a folder of PNG/TIFF "
        "frames, a vendor projection folder (XVI .his + _Frames.xml, OBI .hnd + XML, TrueBeam "
        ".xim + Scan.xml; --fps where the files state no frame times), or a CSV trace "
        "(time_s,si_mm,confidence).",
    )
    assess.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    assess.add_argument(
        "--out",
        type=Path,
        default=Path("motion-assessment"),
        help="output folder; one sub-folder per input (default %(default)s)",
    )
    assess.add_argument(
        "--dome-hint",
        metavar="COLUMN,ROW",
        help="the dome apex is near this pixel of the first frame (column from the left, row "
        "from the top, from 0): tracking starts there instead of at the automatic detection. "
        "One input only; recorded in assessment.json",
    )
    _add_options(assess)
    assess.set_defaults(handler=_assess, hint_sidecars=False)

    from igrt.cli.batch import add_batch_arguments, run_batch_command

    batch = actions.add_parser(
        "batch",
        help="assess every recording in a folder on a Dask cluster, resumably",
        description="Assess every recording below DIR on a local Dask cluster, or on the "
        "workers of --scheduler. Finished recordings are skipped on a re-run, so an "
        "interrupted batch resumes. A dome hint for "
        "one recording goes in a sidecar file beside it, named after it plus "
        f"'{_HINT_SUFFIX}' (patient07.dcm -> patient07.dcm{_HINT_SUFFIX}; a frame folder "
        f"frames/ -> frames{_HINT_SUFFIX}) holding "
        '{"column_px": 120, "row_px": 88, "given_by": "A. Therapist"} (pixels of the first '
        "frame; given_by optional). A hint added after a recording was assessed is used only "
        "once its output sub-folder is removed.",
    )
    add_batch_arguments(batch)
    _add_options(batch)
    batch.set_defaults(handler=run_batch_command, hint_sidecars=True)


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--context",
        choices=("free_breathing", "abdominal_compression", "breath_hold_trial"),
        default="free_breathing",
    )
    parser.add_argument("--patient-position", default="HFS")
    parser.add_argument("--hemidiaphragm", choices=("right", "left"), default="right")
    parser.add_argument(
        "--intensity", choices=("raw", "line_integral", "display"), help=_INTENSITY_HELP
    )
    geometry = parser.add_argument_group("geometry for recordings that lack it")
    geometry.add_argument("--sad-mm", type=float, default=1000.0)
    geometry.add_argument("--sdd-mm", type=float, default=1536.0)
    geometry.add_argument(
        "--pixel-mm",
        type=float,
        default=None,
        help="panel pixel pitch after binning; required for frames without geometry",
    )
    geometry.add_argument("--gantry-deg", type=float, default=0.0)
    geometry.add_argument("--fps", type=float, default=None)
    parser.add_argument(
        "--protocol",
        type=Path,
        default=None,
        metavar="FILE",
        help="site protocol (TOML); default: the built-in seed-derived protocol",
    )
    margins = parser.add_argument_group("setup-error model (default: the protocol's)")
    margins.add_argument("--systematic-setup-sd-mm", type=float, default=None)
    margins.add_argument("--random-setup-sd-mm", type=float, default=None)
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    report = parser.add_argument_group("printable report")
    report.add_argument(
        "--pdf", action="store_true", help="also write report.pdf (decision, trace, margins)"
    )
    report.add_argument(
        "--patient-name", default=None, help="default: the DICOM input's Patient's Name"
    )
    report.add_argument("--patient-id", default=None, help="default: the DICOM input's Patient ID")
    report.add_argument("--reviewer", default=None, help="who reviewed the assessment")


def _settings(arguments: argparse.Namespace) -> dict[str, Any]:
    """Picklable keyword arguments for :func:`_assess_one`.

    ``dome_hint`` is the command line's hint (``assess``); ``hint_sidecars`` says whether to
    look for a hint file beside each recording (``batch``).
    """
    return {
        "intensity": arguments.intensity,
        "dome_hint": getattr(arguments, "dome_hint", None),
        "hint_sidecars": arguments.hint_sidecars,
        "context": arguments.context,
        "patient_position": arguments.patient_position,
        "hemidiaphragm": arguments.hemidiaphragm,
        "geometry": {
            "sad_mm": arguments.sad_mm,
            "sdd_mm": arguments.sdd_mm,
            "pixel_pitch_mm": arguments.pixel_mm,
            "gantry_deg": arguments.gantry_deg,
            "fps": arguments.fps,
        },
        "systematic_setup_sd_mm": arguments.systematic_setup_sd_mm,
        "random_setup_sd_mm": arguments.random_setup_sd_mm,
        "protocol": None if arguments.protocol is None else str(arguments.protocol),
        "plot": not arguments.no_plot,
        "pdf": arguments.pdf,
        "patient_name": arguments.patient_name,
        "patient_id": arguments.patient_id,
        "reviewer": arguments.reviewer,
    }


def _assess_one(path: Path, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Assess one recording into ``out``; returns its summary row (never raises IgrtError)."""
    from igrt.motion_assessment import GeometryOptions, assess_motion
    from igrt.protocol import DEFAULT_PROTOCOL
    from igrt.protocol_file import load_protocol_file
    from igrt.sequence import IntensityValues
    from igrt.tracking import HemidiaphragmValues, TrackerSettings

    row: dict[str, Any] = {"recording": str(path)}
    try:
        loaded = None if settings["protocol"] is None else load_protocol_file(settings["protocol"])
        intensity = settings.get("intensity")
        assessment = assess_motion(
            path,
            geometry=GeometryOptions(**settings["geometry"]),
            context=settings["context"],
            tracker=TrackerSettings(
                hemidiaphragm=HemidiaphragmValues(settings["hemidiaphragm"]),
                patient_position=settings["patient_position"],
            ),
            systematic_setup_sd_mm=settings["systematic_setup_sd_mm"],
            random_setup_sd_mm=settings["random_setup_sd_mm"],
            protocol=DEFAULT_PROTOCOL if loaded is None else loaded.protocol,
            protocol_file=loaded,
            intensity=IntensityValues(intensity) if intensity else None,
            dome_hint=_dome_hint(path, settings),
        )
        assessment.write(out, plot=settings["plot"])
        if settings["pdf"]:
            _write_report(assessment, path, out / "report.pdf", settings)
    except InvalidInputError as error:
        message = str(error)
        if error.field in _INTENSITY_FIELDS:
            message += " (on the command line: --intensity raw|line_integral|display)"
        return {**row, "status": "bad_input", "message": message}
    except ProcessingError as error:
        return {**row, "status": "failed", "message": str(error)}
    analysis = assessment.analysis
    return {
        **row,
        "status": "ok",
        "recommendation": assessment.decision.recommendation.value,
        "excursion_median_mm": analysis.excursion_median_mm,
        "excursion_uncertainty_mm": analysis.excursion_uncertainty_mm,
        "excursion_p95_mm": analysis.excursion_p95_mm,
        "period_median_s": analysis.period_median_s,
        "drift_mm_per_min": analysis.drift_mm_per_min,
        "n_cycles": analysis.n_cycles,
        "lost_fraction": assessment.trace.lost_fraction,
        "protocol_version": assessment.decision.protocol_version,
        "message": assessment.summary().replace("\n", " | "),
        "_summary": assessment.summary(),
    }


def _dome_hint(path: Path, settings: dict[str, Any]) -> DomeHint | None:
    """The command line's hint, or the recording's sidecar hint in a batch, or None."""
    from igrt.motion_assessment import DomeHint

    if settings.get("dome_hint"):
        return DomeHint.parse(settings["dome_hint"], source="--dome-hint")
    if settings.get("hint_sidecars"):
        return read_hint_sidecar(path)
    return None


def hint_sidecar_path(recording: Path) -> Path:
    """Where a batch looks for a recording's dome hint: beside it, its name + ``.hint.json``."""
    return recording.with_name(recording.name + _HINT_SUFFIX)


def read_hint_sidecar(recording: Path) -> DomeHint | None:
    """The dome hint in the recording's sidecar file, or None when there is none.

    Raises
    ------
    InvalidInputError
        A sidecar that is not a small JSON object of ``column_px``, ``row_px`` (numbers) and an
        optional ``given_by`` (text), or whose numbers are no pixel.
    """
    from igrt.motion_assessment import DomeHint

    sidecar = hint_sidecar_path(recording)
    if not sidecar.is_file():
        return None
    with sidecar.open("rb") as stream:
        content = stream.read(_HINT_MAX_BYTES + 1)
    if len(content) > _HINT_MAX_BYTES:
        raise InvalidInputError(f"{sidecar} is larger than a dome hint", field="dome_hint")
    try:
        document = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{sidecar} is not JSON: {exc}", field="dome_hint") from None
    if not isinstance(document, dict) or not {"column_px", "row_px"} <= document.keys():
        raise InvalidInputError(
            f'{sidecar} must hold {{"column_px": ..., "row_px": ...}}', field="dome_hint"
        )
    unknown = sorted(set(document) - _HINT_KEYS)
    if unknown:
        raise InvalidInputError(f"{sidecar}: unknown keys {unknown}", field="dome_hint")
    given_by = document.get("given_by")
    if given_by is not None and (not isinstance(given_by, str) or len(given_by) > 100):
        raise InvalidInputError(
            f"{sidecar}: given_by must be text of at most 100 characters", field="dome_hint"
        )
    try:
        return DomeHint(document["column_px"], document["row_px"], given_by, str(sidecar))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{sidecar}: {exc}", field="dome_hint") from None


def _write_report(assessment: Any, path: Path, target: Path, settings: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    from igrt.motion_report import ReportContext, write_assessment_pdf

    name, identifier = _dicom_patient(path)
    context = ReportContext(
        patient_name=settings["patient_name"] or name,
        patient_id=settings["patient_id"] or identifier,
        reviewer=settings["reviewer"],
        created=datetime.now(UTC),
    )
    write_assessment_pdf(assessment, target, context)


def _dicom_patient(path: Path) -> tuple[str, str]:
    """Patient's Name and ID of a DICOM input (empty for other inputs or unreadable headers)."""
    if not path.is_file() or path.suffix.lower() != ".dcm":
        return "", ""
    import pydicom

    try:
        header = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["PatientName", "PatientID"]
        )
    except (OSError, pydicom.errors.InvalidDicomError):
        return "", ""
    return str(header.get("PatientName", "") or ""), str(header.get("PatientID", "") or "")


def _output_folder(out: Path, path: Path, root: Path | None = None) -> Path:
    relative = path.relative_to(root) if root is not None else Path(path.name)
    return out / relative.with_suffix("").as_posix().replace("/", "__")


def _assess(arguments: argparse.Namespace) -> int:
    if arguments.dome_hint is not None and len(arguments.inputs) > 1:
        raise InvalidInputError(
            "--dome-hint is a pixel of one recording's first frame: give one input (for many, "
            f"use 'igrt motion batch' with {_HINT_SUFFIX} sidecar files)",
            field="dome_hint",
        )
    if arguments.dome_hint is not None:
        from igrt.motion_assessment import DomeHint

        DomeHint.parse(arguments.dome_hint)  # a malformed hint is a usage error, not per input
    settings = _settings(arguments)
    codes = []
    for path in arguments.inputs:
        row = _assess_one(path, _output_folder(arguments.out, path), settings)
        if row["status"] == "ok":
            print(row["_summary"])
            print(f"  -> {_output_folder(arguments.out, path)}")
            codes.append(0)
        else:
            print(
                f"igrt: {path}: {row['status'].replace('_', ' ')}: {row['message']}",
                file=sys.stderr,
            )
            codes.append(2 if row["status"] == "bad_input" else 3)
    return max(codes)
