"""Vendor kV projection recordings (Elekta XVI, Varian OBI and TrueBeam) by what a path holds.

Readers of our own rather than RTK's: the three formats are small (a fixed header, a
difference code, typed properties, a short XML), reading them here keeps ``igrt`` free of ITK
and lets every size be checked against the file before anything is allocated. RTK's readers are
the reference in the tests (pixels bit-exact, geometry to 1e-6).
"""

from __future__ import annotations

from pathlib import Path

from igrt.errors import ImageReadError
from igrt.imageio.vendor_his import read_his_sequence
from igrt.imageio.vendor_hnd import read_hnd_sequence
from igrt.imageio.vendor_xim import read_xim_sequence
from igrt.sequence import FluoroSequence

__all__ = ["VENDOR_SUFFIXES", "read_vendor_projections", "vendor_suffix"]

VENDOR_SUFFIXES = (".his", ".hnd", ".xim")
"""File endings of the vendor projection formats."""


def vendor_suffix(path: str | Path) -> str | None:
    """The vendor format a file or folder holds (``".his"``, ...), or ``None``.

    A folder holding frames of more than one vendor format is refused.
    """
    source = Path(path)
    if source.is_file():
        suffix = source.suffix.lower()
        return suffix if suffix in VENDOR_SUFFIXES else None
    if not source.is_dir():
        return None
    found = {p.suffix.lower() for p in source.iterdir() if p.suffix.lower() in VENDOR_SUFFIXES}
    if len(found) > 1:
        raise ImageReadError(
            f"{source} mixes {', '.join(sorted(found))} frames: give one recording", field="input"
        )
    return found.pop() if found else None


def read_vendor_projections(path: str | Path, *, fps: float | None = None) -> FluoroSequence:
    """Read a vendor kV recording: one frame file or its folder.

    XVI: ``.his`` + ``_Frames.xml``; OBI: ``.hnd`` + the scan XML; TrueBeam: ``.xim`` with an
    optional ``Scan.xml``.

    Parameters
    ----------
    path : str or pathlib.Path
        The frame file or folder; the geometry XML is found beside the frames.
    fps : float, optional
        Frame rate for formats whose files state no frame times (OBI; TrueBeam frames without
        start times). XVI times come from ``_Frames.xml`` and ``fps`` is not used.

    Raises
    ------
    ImageReadError
        Not a vendor recording, or unreadable frames.
    GeometryError
        Missing or inconsistent geometry files.
    """
    suffix = vendor_suffix(path)
    if suffix == ".his":
        return read_his_sequence(path)
    if suffix == ".hnd":
        return read_hnd_sequence(path, fps=fps)
    if suffix == ".xim":
        return read_xim_sequence(path, fps=fps)
    raise ImageReadError(f"{path} holds no {', '.join(VENDOR_SUFFIXES)} frames", field="input")
