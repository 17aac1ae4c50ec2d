"""``igrt motion assess`` and ``igrt motion batch``: offline breathing-motion assessment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from igrt.errors import InvalidInputError, ProcessingError
from igrt.margins import DEFAULT_RANDOM_SETUP_SD_MM, DEFAULT_SYSTEMATIC_SETUP_SD_MM


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
        "frames, or a CSV trace (time_s,si_mm,confidence).",
    )
    assess.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    assess.add_argument(
        "--out",
        type=Path,
        default=Path("motion-assessment"),
        help="output folder; one sub-folder per input (default %(default)s)",
    )
    _add_options(assess)
    assess.set_defaults(handler=_assess)

    from igrt.cli.batch import add_batch_arguments, run_batch_command

    batch = actions.add_parser(
        "batch",
        help="assess every recording in a folder on a Dask cluster, resumably",
        description="Assess every recording below DIR on a local Dask cluster, or on the "
        "workers of --scheduler. Finished recordings are skipped on a re-run, so an "
        "interrupted batch resumes.",
    )
    add_batch_arguments(batch)
    _add_options(batch)
    batch.set_defaults(handler=run_batch_command)


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--context",
        choices=("free_breathing", "abdominal_compression", "breath_hold_trial"),
        default="free_breathing",
    )
    parser.add_argument("--patient-position", default="HFS")
    parser.add_argument("--hemidiaphragm", choices=("right", "left"), default="right")
    geometry = parser.add_argument_group("geometry for recordings that lack it")
    geometry.add_argument("--sad-mm", type=float, default=1000.0)
    geometry.add_argument("--sdd-mm", type=float, default=1536.0)
    geometry.add_argument("--pixel-mm", type=float, default=0.8, help="panel pixel pitch")
    geometry.add_argument("--gantry-deg", type=float, default=0.0)
    geometry.add_argument("--fps", type=float, default=None)
    margins = parser.add_argument_group("setup-error model for the margin suggestion")
    margins.add_argument(
        "--systematic-setup-sd-mm", type=float, default=DEFAULT_SYSTEMATIC_SETUP_SD_MM
    )
    margins.add_argument("--random-setup-sd-mm", type=float, default=DEFAULT_RANDOM_SETUP_SD_MM)
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")


def _settings(arguments: argparse.Namespace) -> dict[str, Any]:
    """Picklable keyword arguments for :func:`_assess_one`."""
    return {
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
        "plot": not arguments.no_plot,
    }


def _assess_one(path: Path, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Assess one recording into ``out``; returns its summary row (never raises IgrtError)."""
    from igrt.motion_assessment import GeometryOptions, assess_motion
    from igrt.tracking import HemidiaphragmValues, TrackerSettings

    row: dict[str, Any] = {"recording": str(path)}
    try:
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
        )
        assessment.write(out, plot=settings["plot"])
    except InvalidInputError as error:
        return {**row, "status": "bad_input", "message": str(error)}
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


def _output_folder(out: Path, path: Path, root: Path | None = None) -> Path:
    relative = path.relative_to(root) if root is not None else Path(path.name)
    return out / relative.with_suffix("").as_posix().replace("/", "__")


def _assess(arguments: argparse.Namespace) -> int:
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
