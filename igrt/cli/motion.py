"""``igrt motion assess`` and ``igrt motion batch``: offline breathing-motion assessment."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from igrt.errors import InvalidInputError, ProcessingError
from igrt.margins import DEFAULT_RANDOM_SETUP_SD_MM, DEFAULT_SYSTEMATIC_SETUP_SD_MM

_RECORDING_SUFFIXES = {".dcm", ".mha", ".mhd", ".nrrd", ".csv"}
_FRAME_FOLDER_SUFFIXES = {".png", ".tif", ".tiff", ".his", ".hnd", ".xim"}
_SUMMARY_COLUMNS = (
    "recording",
    "status",
    "recommendation",
    "excursion_median_mm",
    "excursion_uncertainty_mm",
    "excursion_p95_mm",
    "period_median_s",
    "drift_mm_per_min",
    "n_cycles",
    "lost_fraction",
    "protocol_version",
    "message",
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
    _add_options(assess)
    assess.set_defaults(handler=_assess)

    batch = actions.add_parser(
        "batch",
        help="assess every recording in a folder, in parallel, resumably",
        description="Assess every recording below DIR with local processes. Finished "
        "recordings are skipped on a re-run, so an interrupted batch resumes.",
    )
    batch.add_argument("folder", type=Path, metavar="DIR")
    batch.add_argument("--out", type=Path, required=True, help="output folder")
    batch.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    _add_options(batch)
    batch.set_defaults(handler=_batch)


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
        "pdf": arguments.pdf,
        "patient_name": arguments.patient_name,
        "patient_id": arguments.patient_id,
        "reviewer": arguments.reviewer,
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
        if settings["pdf"]:
            _write_report(assessment, path, out / "report.pdf", settings)
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


def _recordings(folder: Path) -> list[Path]:
    """Recording files below ``folder`` and folders of PNG/TIFF frames, sorted."""
    found: list[Path] = []
    for path in sorted(folder.rglob("*")):
        recording_file = path.is_file() and path.suffix.lower() in _RECORDING_SUFFIXES
        frame_folder = path.is_dir() and any(
            p.suffix.lower() in _FRAME_FOLDER_SUFFIXES for p in path.iterdir()
        )
        if recording_file or frame_folder:
            found.append(path)
    return found


def _batch(arguments: argparse.Namespace) -> int:
    folder: Path = arguments.folder
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} is not a folder", field="folder")
    if arguments.workers < 1:
        raise InvalidInputError("--workers must be at least 1", field="workers")
    recordings = _recordings(folder)
    if not recordings:
        raise InvalidInputError(f"no recordings found below {folder}", field="folder")
    out: Path = arguments.out
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(arguments)
    pending = [
        p for p in recordings if not (_output_folder(out, p, folder) / "assessment.json").exists()
    ]
    done = len(recordings) - len(pending)
    if done:
        print(f"resuming: {done} of {len(recordings)} already assessed", file=sys.stderr)
    failures_path = out / "failures.csv"
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=arguments.workers) as pool:
        futures = {
            pool.submit(_assess_one, p, _output_folder(out, p, folder), settings): p
            for p in pending
        }
        for count, future in enumerate(as_completed(futures), start=1):
            row = future.result()
            if row["status"] != "ok":
                _append_row(failures_path, row)
            elapsed = time.monotonic() - started
            bar = "#" * round(30 * (done + count) / len(recordings))
            print(
                f"\r[{bar:<30}] {done + count}/{len(recordings)}  {elapsed:5.0f} s",
                end="",
                file=sys.stderr,
                flush=True,
            )
    print(file=sys.stderr)
    rows = _summary_rows(recordings, out, folder)
    summary = out / "summary.csv"
    with summary.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=_SUMMARY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    failed = sum(row["status"] != "ok" for row in rows)
    print(f"{len(rows) - failed} assessed, {failed} failed; summary: {summary}")
    return 0 if failed == 0 else 3


def _append_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=_SUMMARY_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _summary_rows(recordings: list[Path], out: Path, root: Path) -> list[dict[str, Any]]:
    """One row per recording, read back from the written results (so resumed runs count)."""
    import json

    failures: dict[str, dict[str, Any]] = {}
    failures_path = out / "failures.csv"
    if failures_path.exists():
        with failures_path.open() as stream:
            failures = {row["recording"]: row for row in csv.DictReader(stream)}
    rows = []
    for path in recordings:
        result = _output_folder(out, path, root) / "assessment.json"
        if not result.exists():
            rows.append(
                failures.get(
                    str(path), {"recording": str(path), "status": "failed", "message": "no result"}
                )
            )
            continue
        document = json.loads(result.read_text())
        analysis, decision = document["analysis"], document["decision"]
        rows.append(
            {
                "recording": str(path),
                "status": "ok",
                "recommendation": decision.get("recommendation"),
                "excursion_median_mm": analysis.get("excursion_median_mm"),
                "excursion_uncertainty_mm": analysis.get("excursion_uncertainty_mm"),
                "excursion_p95_mm": analysis.get("excursion_p95_mm"),
                "period_median_s": analysis.get("period_median_s"),
                "drift_mm_per_min": analysis.get("drift_mm_per_min"),
                "n_cycles": analysis.get("n_cycles"),
                "lost_fraction": document["trace"].get("lost_fraction"),
                "protocol_version": decision.get("protocol_version"),
                "message": "",
            }
        )
    return rows
