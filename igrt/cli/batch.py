"""``igrt motion batch``: assess every recording below a folder on a Dask cluster, resumably.

Where the work runs
    ``--scheduler tcp://HOST:8786`` sends it to a running ``dask.distributed`` scheduler. Its
    workers need igrt installed and must see DIR and ``--out`` at the same paths (a shared file
    system): each worker reads its recording and writes its result itself. Without a scheduler,
    a local cluster of ``--workers`` processes (one thread each: tracking is CPU-bound) does the
    same on this machine.

Resuming
    Each recording's outcome is one file in its output folder, written atomically (temporary
    file, fsync, rename): ``assessment.json`` when assessed, ``failure.json`` when the recording
    was refused (bad input) or gave no trustworthy result. A recording with either is done: a
    re-run skips it (``--retry-failed`` runs the failed ones again), and the task itself looks
    again before working, so a task the scheduler re-runs after losing a worker does not assess
    a finished recording twice. ``summary.csv`` and ``failures.csv`` are rebuilt from those files
    at the end (and written atomically): one row per recording, whatever happened before.

    An unexpected error of a worker (a crash, a bug) is reported in this run's ``failures.csv``
    but leaves no ``failure.json``: the next run tries that recording again.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from igrt.cli.motion import _assess_one, _output_folder, _settings
from igrt.errors import InvalidInputError, ProcessingError

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "ASSESSED_FILE",
    "FAILED_FILE",
    "BatchPlan",
    "add_batch_arguments",
    "assess_recording",
    "dask_client",
    "plan_batch",
    "run_batch",
    "run_batch_command",
]

ASSESSED_FILE = "assessment.json"
"""A recording's folder holds this once it was assessed."""

FAILED_FILE = "failure.json"
"""A recording's folder holds this once it was refused or failed (status and message)."""

_RECORDING_SUFFIXES = frozenset({".dcm", ".mha", ".mhd", ".nrrd", ".csv"})
_FRAME_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".his", ".hnd", ".xim"})
"""A folder holding files of these kinds is one recording (frames, or vendor projections)."""
_SCHEDULER_SCHEMES = frozenset({"tcp", "tls"})
_SCHEDULER_CONNECT_TIMEOUT_S = 20.0
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


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The batch command's own arguments (the assessment options are added by the caller)."""
    parser.add_argument("folder", type=Path, metavar="DIR")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a dask.distributed scheduler (tcp://HOST:8786); its workers must see DIR and "
        "--out at the same paths",
    )
    where.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes of the local cluster used without --scheduler (default: one per CPU)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="assess again the recordings an earlier run marked failed",
    )


@dataclass(frozen=True)
class BatchPlan:
    """The recordings below ``root`` and the output folder of each below ``out``."""

    root: Path
    out: Path
    recordings: tuple[Path, ...]

    def folder_of(self, recording: Path) -> Path:
        """Where ``recording``'s results go."""
        return _output_folder(self.out, recording, self.root)


def plan_batch(root: Path, out: Path) -> BatchPlan:
    """Find the recordings below ``root`` (never inside ``out``).

    Raises
    ------
    InvalidInputError
        If ``root`` is not a folder, holds no recording, or two recordings would share an
        output folder (``a/b.csv`` and ``a__b.csv``, or ``x.csv`` and ``x.dcm``).
    """
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder", field="folder")
    recordings = tuple(_recordings(root, exclude=out))
    if not recordings:
        raise InvalidInputError(f"no recordings found below {root}", field="folder")
    plan = BatchPlan(root, out, recordings)
    owners: dict[Path, Path] = {}
    for recording in recordings:
        other = owners.setdefault(plan.folder_of(recording), recording)
        if other != recording:
            raise InvalidInputError(
                f"{other} and {recording} would share the output folder "
                f"{plan.folder_of(recording)}: rename one",
                field="folder",
            )
    return plan


def _recordings(root: Path, exclude: Path) -> Iterator[Path]:
    """Recording files and folders of PNG/TIFF frames below ``root``, sorted, not in ``exclude``."""
    excluded = exclude.resolve()
    for path in sorted(root.rglob("*")):
        if path.resolve().is_relative_to(excluded):
            continue
        recording_file = path.is_file() and path.suffix.lower() in _RECORDING_SUFFIXES
        frame_folder = path.is_dir() and any(
            p.suffix.lower() in _FRAME_SUFFIXES for p in path.iterdir()
        )
        if recording_file or frame_folder:
            yield path


def assess_recording(recording: Path, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Assess ``recording`` into ``folder`` unless it is done already (runs on a worker).

    Returns the summary row; ``status`` is ``"done_before"`` when an outcome file was found.
    A refused or failed recording leaves ``failure.json``; an unexpected error propagates (and
    leaves nothing, so a later run tries again).
    """
    if (folder / ASSESSED_FILE).exists() or (folder / FAILED_FILE).exists():
        return {"recording": str(recording), "status": "done_before"}
    for stale in folder.glob(".*.json.*"):  # a write that a killed worker left half-way
        stale.unlink(missing_ok=True)
    from igrt.motion_assessment import write_text_atomically

    row = {k: v for k, v in _assess_one(recording, folder, settings).items() if k != "_summary"}
    if row["status"] != "ok":
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomically(folder / FAILED_FILE, json.dumps(row, indent=1))
    return row


def _task_key(recording: Path, folder: Path, settings: dict[str, Any]) -> str:
    """The same recording, output and settings make the same task on a shared scheduler."""
    identity = json.dumps(
        [str(recording.resolve()), str(folder.resolve()), settings], sort_keys=True
    )
    return f"igrt-assess-{hashlib.sha256(identity.encode()).hexdigest()[:32]}"


class _ProgressBar:
    """``[#####     ] done/total  elapsed s`` on one line of stderr."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.started = time.monotonic()

    def advance(self) -> None:
        self.done += 1
        bar = "#" * round(30 * self.done / self.total)
        elapsed = time.monotonic() - self.started
        print(
            f"\r[{bar:<30}] {self.done}/{self.total}  {elapsed:5.0f} s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def finish(self) -> None:
        print(file=sys.stderr)


def run_batch(
    client: Client,
    plan: BatchPlan,
    settings: dict[str, Any],
    *,
    retry_failed: bool = False,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Assess the recordings of ``plan`` not done yet on ``client``'s workers.

    Writes ``summary.csv`` (every recording) and ``failures.csv`` (those not assessed) into
    ``plan.out`` and returns the summary rows.
    """
    plan.out.mkdir(parents=True, exist_ok=True)
    pending = _pending(plan, retry_failed)
    done = len(plan.recordings) - len(pending)
    if done:
        print(
            f"resuming: {done} of {len(plan.recordings)} already done "
            "(--retry-failed runs the failed ones again)",
            file=sys.stderr,
        )
    progress = _ProgressBar(len(plan.recordings), done) if show_progress else None
    errors = _run_pending(client, plan, pending, settings, progress)
    rows = [_summary_row(plan, recording, errors) for recording in plan.recordings]
    _write_csv(plan.out / "summary.csv", rows)
    failures = [row for row in rows if row["status"] != "ok"]
    if failures:
        _write_csv(plan.out / "failures.csv", failures)
    else:
        (plan.out / "failures.csv").unlink(missing_ok=True)  # an earlier run's, now assessed
    return rows


def _pending(plan: BatchPlan, retry_failed: bool) -> list[Path]:
    pending = []
    for recording in plan.recordings:
        folder = plan.folder_of(recording)
        if retry_failed:
            (folder / FAILED_FILE).unlink(missing_ok=True)
        if not (folder / ASSESSED_FILE).exists() and not (folder / FAILED_FILE).exists():
            pending.append(recording)
    return pending


def _run_pending(
    client: Client,
    plan: BatchPlan,
    pending: list[Path],
    settings: dict[str, Any],
    progress: _ProgressBar | None,
) -> dict[Path, dict[str, Any]]:
    """Run every pending recording; the rows of those whose task raised (not durable)."""
    from distributed import as_completed

    if not pending:
        return {}

    futures = {
        client.submit(
            assess_recording,
            recording,
            plan.folder_of(recording),
            settings,
            key=_task_key(recording, plan.folder_of(recording), settings),
            pure=False,
        ): recording
        for recording in pending
    }
    errors: dict[Path, dict[str, Any]] = {}
    for future in as_completed(futures):
        recording = futures[future]
        try:
            future.result()
        except Exception as error:  # a worker's crash or bug: report it, retry next run
            errors[recording] = {
                "recording": str(recording),
                "status": "failed",
                "message": f"worker error ({type(error).__name__}): {error}",
            }
        future.release()
        if progress is not None:
            progress.advance()
    if progress is not None:
        progress.finish()
    return errors


def _summary_row(
    plan: BatchPlan, recording: Path, errors: dict[Path, dict[str, Any]]
) -> dict[str, Any]:
    """One recording's row, read back from its outcome file (so resumed runs count)."""
    folder = plan.folder_of(recording)
    row: dict[str, Any] = {"recording": str(recording)}
    try:
        if (folder / ASSESSED_FILE).exists():
            return {**row, **_assessed_row(json.loads((folder / ASSESSED_FILE).read_text()))}
        if (folder / FAILED_FILE).exists():
            failure = json.loads((folder / FAILED_FILE).read_text())
            return {**row, "status": failure["status"], "message": failure["message"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        return {**row, "status": "failed", "message": f"unreadable result in {folder}: {error}"}
    return errors.get(recording, {**row, "status": "failed", "message": "no result"})


def _assessed_row(document: dict[str, Any]) -> dict[str, Any]:
    analysis, decision = document["analysis"], document["decision"]
    return {
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


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    # Imported here: this module is loaded to build every sub-command's parser, and the
    # assessment's import (scipy.signal, scipy.stats) cost ``igrt register`` about a second.
    from igrt.motion_assessment import write_text_atomically

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_SUMMARY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(path, text.getvalue())


def _scheduler_address(address: str) -> str:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in _SCHEDULER_SCHEMES or not parts.hostname or port is None:
        raise InvalidInputError(
            f"--scheduler must look like tcp://HOST:PORT (or tls://), not {address!r}",
            field="scheduler",
        )
    return f"{parts.scheme}://{parts.netloc}"


@contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    connect_timeout_s: float = _SCHEDULER_CONNECT_TIMEOUT_S,
) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, or of a local cluster of ``workers``.

    Raises
    ------
    InvalidInputError
        If the scheduler address is malformed or unreachable, or ``workers`` < 1.
    ProcessingError
        If ``dask.distributed`` is not installed (the ``batch`` extra).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise ProcessingError(
            "igrt motion batch runs on dask.distributed: pip install 'igrt[batch]'"
        ) from error
    if scheduler is not None:
        address = _scheduler_address(scheduler)
        try:
            client = Client(address, timeout=connect_timeout_s)
        except (OSError, TimeoutError) as error:
            raise InvalidInputError(
                f"cannot reach the Dask scheduler at {address}: {error}", field="scheduler"
            ) from error
        with client:
            yield client
        return
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if n_workers < 1:
        raise InvalidInputError("--workers must be at least 1", field="workers")
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            # A Dask scheduler runs whatever code its clients send: loopback only.
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def run_batch_command(arguments: argparse.Namespace) -> int:
    """``igrt motion batch``: 0 when every recording was assessed, 3 when some failed."""
    plan = plan_batch(arguments.folder, arguments.out)
    settings = _settings(arguments)
    with dask_client(arguments.scheduler, arguments.workers) as client:
        rows = run_batch(client, plan, settings, retry_failed=arguments.retry_failed)
    failed = sum(row["status"] != "ok" for row in rows)
    print(f"{len(rows) - failed} assessed, {failed} failed; summary: {plan.out / 'summary.csv'}")
    return 0 if failed == 0 else 3
