"""A local, content-addressed file store with atomic writes.

A file is first written to ``<data_dir>/tmp`` (same file system), flushed and fsync'ed; then it
is renamed to ``files/<sha[:2]>/<sha><suffix>`` (the suffix tells readers such as SimpleITK
the format) and the directory is fsync'ed. A reader therefore sees
either nothing or the whole file, and a file the service acknowledged survives a crash. Files
are immutable: storing the same bytes twice keeps the first copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["FileStore", "PayloadTooLargeError", "StoredFile", "sha256_of"]

_CHUNK = 1024 * 1024
_STORED_NAME = re.compile(r"^([0-9a-f]{64})(\.[a-z0-9]{1,8})?$")


class PayloadTooLargeError(Exception):
    """A stream exceeded the size it was allowed."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"the upload exceeds the limit of {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


@dataclass(frozen=True)
class StoredFile:
    """A file in the store: its digest, size and path relative to the store root."""

    sha256: str
    size_bytes: int
    relative_path: str


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> tuple[str, int]:
    """Digest and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class FileStore:
    """Content-addressed files under ``root``, staged in ``temp_dir``."""

    def __init__(self, root: Path, temp_dir: Path) -> None:
        self.root = root
        self.temp_dir = temp_dir

    def prepare(self) -> None:
        """Create the folders and remove stale temporary files of an earlier run."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.temp_dir.glob("staged-*"):
            with contextlib.suppress(OSError):
                if stale.is_dir():
                    for child in stale.iterdir():
                        child.unlink()
                    stale.rmdir()
                else:
                    stale.unlink()

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh path in the staging folder (the caller creates and removes the file)."""
        return self.temp_dir / f"staged-{secrets.token_hex(12)}{suffix}"

    @contextlib.contextmanager
    def staging(self, suffix: str = "") -> Iterator[Path]:
        """A staging path that is removed on exit if it still exists (i.e. was not stored)."""
        path = self.temp_path(suffix)
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                if path.is_dir():
                    for child in path.iterdir():
                        child.unlink()
                    path.rmdir()
                else:
                    path.unlink()

    def copy_to_staging(self, source: BinaryIO, destination: Path, *, limit_bytes: int) -> int:
        """Copy a stream to ``destination`` (fsync'ed); at most ``limit_bytes`` bytes.

        Raises
        ------
        PayloadTooLargeError
            The stream is longer than ``limit_bytes`` (the partial file is removed).
        """
        size = 0
        try:
            with destination.open("xb") as handle:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    if size > limit_bytes:
                        raise PayloadTooLargeError(limit_bytes)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            destination.unlink(missing_ok=True)
            raise
        return size

    def store(self, staged: Path) -> StoredFile:
        """Move a staged file into the store under its sha256 and suffix (atomic, durable).

        The staged file is consumed. When the store already holds the same content, the
        existing file is kept.
        """
        with staged.open("rb+") as handle:
            os.fsync(handle.fileno())
        sha256, size = sha256_of(staged)
        suffix = staged.suffix.lower()
        if not _STORED_NAME.match(sha256 + suffix):
            raise ValueError(f"unsupported suffix {suffix!r}")
        relative = f"{sha256[:2]}/{sha256}{suffix}"
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and target.stat().st_size == size:
            staged.unlink()
        else:
            os.replace(staged, target)
            os.chmod(target, 0o440)
            _fsync_directory(target.parent)
        return StoredFile(sha256=sha256, size_bytes=size, relative_path=relative)

    def path(self, relative_path: str) -> Path:
        """Absolute path of a stored file; refuses anything that is not a store address."""
        prefix, _, name = relative_path.partition("/")
        if not _STORED_NAME.match(name) or prefix != name[:2]:
            raise ValueError(f"not a store address: {relative_path!r}")
        return self.root / prefix / name

    def writable(self) -> bool:
        """Whether a file can be created, fsync'ed and removed in the staging folder."""
        probe = self.temp_path(".probe")
        try:
            with probe.open("xb") as handle:
                handle.write(b"ok")
                os.fsync(handle.fileno())
            probe.unlink()
        except OSError:
            return False
        return True
