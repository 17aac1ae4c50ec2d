"""Consistency of the file store with the database: orphan files and rows without their file.

A file is stored (atomically, fsync'ed) before the row naming it is committed, so a crash
between the two (kill -9, power loss) leaves a file no row names: an *orphan*, never read and
never collected. The reverse, a row whose file is missing, cannot arise from a crash (the file
is durable before the commit); it means the store was damaged or restored from another backup
than the database, and the row may be one a clinician saw and acted on.

:func:`check_store` lists both, plus files in the store that are not store addresses (foreign)
and leftover staging files. :func:`repair_store` removes orphan files and staging leftovers
only, and only those older than ``min_age_s``: a running service stores a file a moment before
it commits its row, so a young orphan may be one that is about to be named. Each orphan is
re-checked against the database right before it is removed. Rows are never deleted or changed
(uploads, assessments, reviews and results are immutable records): rows whose file is missing
are reported for a person to resolve (restore the file from a backup).

``igrt store check [--repair]`` (:mod:`igrt.cli.store`) runs both on the service's data.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from api.db.models import (
    DicomInstance,
    DicomQuarantineItem,
    RegistrationJob,
    Upload,
    VolumeUpload,
)
from api.storage import FileStore

__all__ = ["FileReference", "StoreFile", "StoreReport", "check_store", "repair_store"]

# Every column holding a store address: (model, column name). Registration overlays are a JSON
# map of addresses, read separately.
_PATH_COLUMNS: tuple[tuple[Any, str], ...] = (
    (Upload, "stored_path"),
    (Upload, "sequence_path"),
    (VolumeUpload, "stored_path"),
    (VolumeUpload, "volume_path"),
    (RegistrationJob, "dicom_reg_path"),
    (DicomInstance, "stored_path"),
    (DicomQuarantineItem, "stored_path"),
)


@dataclass(frozen=True)
class FileReference:
    """One row's reference to a stored file."""

    table: str
    row_id: str
    column: str
    relative_path: str


@dataclass(frozen=True)
class StoreFile:
    """A file found in the store folder (or in staging)."""

    relative_path: str
    size_bytes: int
    age_s: float


@dataclass
class StoreReport:
    """What :func:`check_store` found and :func:`repair_store` removed."""

    stored_files: int = 0
    references: int = 0
    orphans: list[StoreFile] = field(default_factory=list)
    young_orphans: list[StoreFile] = field(default_factory=list)
    missing: list[FileReference] = field(default_factory=list)
    foreign: list[StoreFile] = field(default_factory=list)
    staging_leftovers: list[StoreFile] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept_named_meanwhile: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """No missing file, no orphan and no foreign file (young orphans aside)."""
        left = {item.relative_path for item in self.orphans} - set(self.removed)
        return not (self.missing or left or self.foreign)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary with every item listed."""
        document = asdict(self)
        document["consistent"] = self.consistent
        return document


def _references(db: Session) -> Iterator[FileReference]:
    for model, column in _PATH_COLUMNS:
        attribute = getattr(model, column)
        rows = db.execute(select(model.id, attribute).where(attribute.is_not(None)))
        for row_id, path in rows:
            yield FileReference(model.__tablename__, str(row_id), column, str(path))
    jobs = db.execute(
        select(RegistrationJob.id, RegistrationJob.overlay_paths).where(
            RegistrationJob.overlay_paths.is_not(None)
        )
    )
    for row_id, overlays in jobs:
        for key, path in sorted((overlays or {}).items()):
            yield FileReference(
                RegistrationJob.__tablename__, str(row_id), f"overlay_paths[{key}]", str(path)
            )


def _walk(folder: Path, base: Path, now: float) -> Iterator[StoreFile]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() or path.is_symlink():
            info = path.lstat()
            yield StoreFile(
                path.relative_to(base).as_posix(), info.st_size, max(0.0, now - info.st_mtime)
            )


def _is_address(store: FileStore, relative_path: str) -> bool:
    try:
        store.path(relative_path)
    except ValueError:
        return False
    return True


def check_store(db: Session, store: FileStore, *, min_age_s: float) -> StoreReport:
    """Compare the store's files with every row that names one (reads only).

    Parameters
    ----------
    db : Session
        A session on the service's database.
    store : FileStore
        The service's file store.
    min_age_s : float
        Orphans younger than this (by modification time), s, are listed apart
        (``young_orphans``): a running service may be about to commit their row.
    """
    now = time.time()
    report = StoreReport()
    named: dict[str, list[FileReference]] = defaultdict(list)
    for reference in _references(db):
        named[reference.relative_path].append(reference)
        report.references += 1
    files = {item.relative_path: item for item in _walk(store.root, store.root, now)}
    report.stored_files = len(files)
    for relative_path, item in files.items():
        if not _is_address(store, relative_path):
            report.foreign.append(item)
        elif relative_path not in named:
            (report.orphans if item.age_s >= min_age_s else report.young_orphans).append(item)
    for relative_path, references in sorted(named.items()):
        if relative_path not in files:
            report.missing.extend(references)
    if store.temp_dir.is_dir():
        for item in _walk(store.temp_dir, store.temp_dir, now):
            if item.age_s >= min_age_s:
                report.staging_leftovers.append(item)
    return report


def _still_unnamed(db: Session, relative_path: str) -> bool:
    for model, column in _PATH_COLUMNS:
        attribute = getattr(model, column)
        if db.scalar(select(model.id).where(attribute == relative_path).limit(1)) is not None:
            return False
    # Overlay maps are JSON: compare as text (an address is hex, a slash and a suffix, so it
    # cannot appear inside another one).
    overlay_text = cast(RegistrationJob.overlay_paths, String)
    named = db.scalar(
        select(RegistrationJob.id).where(overlay_text.contains(relative_path)).limit(1)
    )
    return named is None


def repair_store(db: Session, store: FileStore, report: StoreReport) -> StoreReport:
    """Remove the report's orphan files and staging leftovers; rows are never touched.

    Each orphan is looked up in the database again right before it is removed, and kept when a
    row names it meanwhile. Fills ``report.removed`` (and ``kept_named_meanwhile``).
    """
    for item in report.orphans:
        db.rollback()  # a fresh snapshot for each re-check
        if not _still_unnamed(db, item.relative_path):
            report.kept_named_meanwhile.append(item.relative_path)
            continue
        target = store.path(item.relative_path)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
            report.removed.append(item.relative_path)
    for item in report.staging_leftovers:
        target = store.temp_dir / item.relative_path
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
            report.removed.append(f"tmp/{item.relative_path}")
    for folder in sorted(store.temp_dir.glob("staged-*"), reverse=True):
        if folder.is_dir():
            with contextlib.suppress(OSError):
                folder.rmdir()  # empty staging folders of a crashed registration
    # The store's prefix folders stay, even empty: the service may be storing into one.
    return report
