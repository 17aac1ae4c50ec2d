"""A zip upload holding one vendor kV recording (Elekta XVI, Varian OBI or TrueBeam).

The ``zip`` upload format takes either PNG/TIFF frames or, detected here, the frames and
geometry XML of one vendor recording (``.his`` + ``_Frames.xml``, ``.hnd`` + the scan XML,
``.xim`` + ``Scan.xml``); its geometry and frame times then come from the files
(:mod:`igrt.imageio.vendor_projections`). Only allow-listed file endings are extracted, by
their base name, into an empty staging folder; sizes are bounded as they are written.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from igrt.errors import ImageReadError, InvalidInputError
from igrt.imageio.vendor_projections import VENDOR_SUFFIXES, read_vendor_projections
from igrt.sequence import FluoroSequence

__all__ = ["holds_vendor_frames", "read_vendor_zip"]

_EXTRACTED_SUFFIXES = frozenset({*VENDOR_SUFFIXES, ".xml"})
_MAX_XML_FILES = 8
_CHUNK = 1024 * 1024


def _relevant(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and not info.filename.startswith("__MACOSX/")
        and not PurePosixPath(info.filename).name.startswith(".")
        and PurePosixPath(info.filename).suffix.lower() in _EXTRACTED_SUFFIXES
    ]


def holds_vendor_frames(archive: zipfile.ZipFile) -> bool:
    """Whether the zip holds vendor projection frames (``.his``, ``.hnd`` or ``.xim``)."""
    return any(
        PurePosixPath(info.filename).suffix.lower() in VENDOR_SUFFIXES
        for info in _relevant(archive)
    )


def _checked_entries(archive: zipfile.ZipFile, max_frames: int) -> list[zipfile.ZipInfo]:
    entries = _relevant(archive)
    names = [PurePosixPath(info.filename).name.lower() for info in entries]
    if len(set(names)) != len(names):
        raise InvalidInputError(
            "the zip holds two files of the same name: give one recording", field="file"
        )
    if len({PurePosixPath(info.filename).parent for info in entries}) > 1:
        raise InvalidInputError(
            "the zip's frames and geometry files are in several folders: give one recording",
            field="file",
        )
    n_xml = sum(name.endswith(".xml") for name in names)
    if len(entries) - n_xml > max_frames or n_xml > _MAX_XML_FILES:
        raise InvalidInputError(
            f"the zip holds more than {max_frames} frame files or {_MAX_XML_FILES} XML files",
            field="file",
        )
    return entries


def _extract(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], folder: Path, max_bytes: int
) -> None:
    budget = max_bytes
    try:
        for info in entries:
            if info.file_size > budget:
                raise InvalidInputError(
                    "the zip's files are larger than the decoded-size limit", field="file"
                )
            target = folder / PurePosixPath(info.filename).name
            with archive.open(info) as source, target.open("xb") as sink:
                while chunk := source.read(_CHUNK):
                    budget -= len(chunk)
                    if budget < 0:  # the declared size can lie
                        raise InvalidInputError(
                            "the zip's files are larger than the decoded-size limit",
                            field="file",
                        )
                    sink.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise ImageReadError(
            f"cannot extract the zip ({type(exc).__name__})", field="file"
        ) from exc


def read_vendor_zip(
    archive: zipfile.ZipFile,
    folder: Path,
    *,
    max_frames: int,
    max_bytes: int,
    fps: float | None,
) -> FluoroSequence:
    """Extract the vendor recording in ``archive`` into ``folder`` (created) and read it.

    Parameters
    ----------
    archive : zipfile.ZipFile
        The uploaded zip.
    folder : pathlib.Path
        A staging folder that does not exist yet.
    max_frames : int
        Most frame files accepted.
    max_bytes : int
        Most bytes extracted in total (the service's decoded-size limit: a Varian frame
        decodes to at most four times its compressed size, the service checks the decoded
        frames again afterwards).
    fps : float or None
        Frame rate, for formats whose files state no frame times.

    Raises
    ------
    InvalidInputError
        Too many or too large files, several recordings, unreadable frames, missing geometry
        (``field`` is ``file``, or ``fps`` when the frame rate is needed).
    """
    entries = _checked_entries(archive, max_frames)
    folder.mkdir()
    _extract(archive, entries, folder, max_bytes)
    return read_vendor_projections(folder, fps=fps)
