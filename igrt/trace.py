"""A tracked superior-inferior breathing trace: times, positions, confidence and lost frames.

Sign convention
---------------
``si_mm`` is the position of the liver / diaphragm dome along the patient's head-foot axis,
**positive = superior (head-wards)**, the sense of DICOM LPS ``+z``, at the isocentre plane
(already divided by the imager magnification). Inhalation moves the dome inferior, so end-inhale
extremes are the *minima* of the trace and end-exhale extremes its *maxima*. The zero is
arbitrary (for example the first end-exhale position).

CSV format
----------
:meth:`BreathingTrace.to_csv` writes, and :meth:`BreathingTrace.from_csv` reads, UTF-8 text::

    # tracking_sd_mm=0.3
    # source=dome tracker v1 on fluoro series 1.2.3
    time_s,si_mm,confidence
    0.0,-0.12,0.97
    0.1,nan,0.0
    0.2,-0.85,0.95

- Optional metadata lines before the header start with ``#`` and read ``key=value``; the keys
  ``tracking_sd_mm`` (a number) and ``source`` (free text) are understood, others are ignored.
- The header is exactly ``time_s,si_mm,confidence`` (case and surrounding spaces ignored).
- One row per frame, comma-separated, ``.`` as the decimal mark, times strictly increasing.
- A **lost frame** (the tracker found no dome) has ``si_mm`` written as ``nan`` (an empty field
  is read the same way); its confidence may be empty or ``nan`` (read as 0) or a number.
- Blank lines are ignored. Numbers are written with Python's shortest round-trip repr, so
  ``from_csv(to_csv(trace))`` reproduces the trace exactly.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from igrt.errors import InvalidInputError

__all__ = ["CSV_HEADER", "BreathingTrace"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

CSV_HEADER = "time_s,si_mm,confidence"
"""Header line of the breathing-trace CSV format."""

_MISSING = {"", "nan", "+nan", "-nan"}


def _float_array(value: npt.ArrayLike, name: str) -> FloatArray:
    try:
        array: FloatArray = np.array(value, dtype=np.float64)  # a copy: the caller keeps theirs
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be numeric", field=name) from exc
    if array.ndim != 1:
        raise InvalidInputError(
            f"{name} must be one-dimensional, got shape {array.shape}", field=name
        )
    return array


@dataclass(frozen=True, eq=False)
class BreathingTrace:
    """Superior-inferior positions of the dome over time, with per-sample confidence.

    Arrays are copied and made read-only on construction. The positions of lost frames are
    stored as NaN, whatever was passed in.

    Parameters
    ----------
    times_s : array_like of float
        Sample times, shape ``(n,)``, s; finite and strictly increasing, ``n >= 2``.
        Sampling need not be uniform.
    si_mm : array_like of float
        SI position of each sample, shape ``(n,)``, mm, positive = superior. Must be finite
        where the sample is valid; NaN marks a lost frame.
    confidence : array_like of float or None, optional
        Tracker confidence of each sample in ``[0, 1]``, shape ``(n,)``. ``None`` gives 1 for
        valid and 0 for lost samples. Lost samples may carry NaN (stored as 0).
    valid : array_like of bool or None, optional
        Per-sample status, ``False`` for a lost frame. ``None`` means "valid where ``si_mm``
        is finite".
    tracking_sd_mm : float or None, optional
        The tracker's 1-SD random error of one position, mm, from its validation (e.g. 1.3 mm
        for kV-fluoro dome tracking, Mageras 2000). ``None`` when unknown: the analysis then
        estimates the noise from the trace itself.
    source : str, optional
        Provenance in plain words (tracker, image series, scaling).

    Raises
    ------
    InvalidInputError
        If shapes differ, times are not finite or not strictly increasing, a valid sample has
        a non-finite position, a confidence lies outside ``[0, 1]`` (or is NaN for a valid
        sample), or ``tracking_sd_mm`` is negative or not finite.

    Examples
    --------
    >>> trace = BreathingTrace([0.0, 0.1, 0.2], [0.0, float("nan"), -1.0])
    >>> trace.valid.tolist(), trace.confidence.tolist()
    ([True, False, True], [1.0, 0.0, 1.0])
    >>> trace.n_lost_frames, trace.lost_fraction
    (1, 0.3333333333333333)
    """

    times_s: FloatArray
    si_mm: FloatArray
    confidence: FloatArray | None = None
    valid: BoolArray | None = None
    tracking_sd_mm: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        times = _float_array(self.times_s, "times_s")
        si = _float_array(self.si_mm, "si_mm")
        if times.size < 2:
            raise InvalidInputError("a trace needs at least two samples", field="times_s")
        if not np.all(np.isfinite(times)):
            raise InvalidInputError("times_s must be finite", field="times_s")
        if np.any(np.diff(times) <= 0):
            raise InvalidInputError("times_s must be strictly increasing", field="times_s")
        if si.shape != times.shape:
            raise InvalidInputError(
                f"si_mm has shape {si.shape} but times_s has {times.shape}", field="si_mm"
            )
        if self.valid is None:
            valid = np.isfinite(si)
        else:
            raw_valid = np.asarray(self.valid)
            if raw_valid.dtype != np.bool_:
                raise InvalidInputError("valid must be an array of booleans", field="valid")
            valid = np.array(raw_valid, dtype=np.bool_)
            if valid.shape != times.shape:
                raise InvalidInputError(
                    f"valid has shape {valid.shape} but times_s has {times.shape}", field="valid"
                )
            if not np.all(np.isfinite(si[valid])):
                raise InvalidInputError(
                    "si_mm must be finite for every valid sample (mark lost frames invalid)",
                    field="si_mm",
                )
        if self.confidence is None:
            confidence = valid.astype(np.float64)
        else:
            confidence = _float_array(self.confidence, "confidence")
            if confidence.shape != times.shape:
                raise InvalidInputError(
                    f"confidence has shape {confidence.shape} but times_s has {times.shape}",
                    field="confidence",
                )
            if not np.all(np.isfinite(confidence[valid])):
                raise InvalidInputError(
                    "confidence must be finite for every valid sample", field="confidence"
                )
            confidence = np.where(np.isnan(confidence) & ~valid, 0.0, confidence)
            if np.any(~np.isfinite(confidence)) or np.any((confidence < 0) | (confidence > 1)):
                raise InvalidInputError("confidence must lie in [0, 1]", field="confidence")
        if self.tracking_sd_mm is not None:
            sd = self.tracking_sd_mm
            if isinstance(sd, bool) or not isinstance(sd, int | float) or not math.isfinite(sd):
                raise InvalidInputError(
                    f"tracking_sd_mm must be a finite number or None, got {sd!r}",
                    field="tracking_sd_mm",
                )
            if sd < 0:
                raise InvalidInputError(
                    f"tracking_sd_mm must not be negative, got {sd!r}", field="tracking_sd_mm"
                )
            object.__setattr__(self, "tracking_sd_mm", float(sd))
        if not isinstance(self.source, str):
            raise InvalidInputError("source must be a string", field="source")
        si = np.where(valid, si, np.nan)
        for array in (times, si, confidence, valid):
            array.flags.writeable = False
        object.__setattr__(self, "times_s", times)
        object.__setattr__(self, "si_mm", si)
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "valid", valid)

    # --- derived values ---------------------------------------------------------------------

    @property
    def n_samples(self) -> int:
        """Number of samples, lost frames included."""
        return int(self.times_s.size)

    @property
    def n_lost_frames(self) -> int:
        """Number of samples marked invalid (lost frames)."""
        assert self.valid is not None  # set in __post_init__
        return int(np.count_nonzero(~self.valid))

    @property
    def lost_fraction(self) -> float:
        """Fraction of samples that are lost frames."""
        return self.n_lost_frames / self.n_samples

    @property
    def duration_s(self) -> float:
        """Time from the first to the last sample, s."""
        return float(self.times_s[-1] - self.times_s[0])

    @property
    def sample_interval_s(self) -> float:
        """Median interval between consecutive samples, s."""
        return float(np.median(np.diff(self.times_s)))

    @property
    def sample_rate_hz(self) -> float:
        """Sampling rate from the median sample interval, Hz."""
        return 1.0 / self.sample_interval_s

    # --- CSV ----------------------------------------------------------------------------------

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the trace in the CSV format of the module docstring.

        Parameters
        ----------
        path : path-like
            Output file; overwritten if it exists.

        Returns
        -------
        pathlib.Path
            The path written.

        Raises
        ------
        InvalidInputError
            If the file cannot be written, or ``source`` spans several lines.
        """
        if "\n" in self.source or "\r" in self.source:
            raise InvalidInputError("source must be a single line to go into a CSV", field="source")
        assert self.confidence is not None  # set in __post_init__
        lines: list[str] = []
        if self.tracking_sd_mm is not None:
            lines.append(f"# tracking_sd_mm={self.tracking_sd_mm!r}")
        if self.source:
            lines.append(f"# source={self.source}")
        lines.append(CSV_HEADER)
        for t, si, c in zip(
            self.times_s.tolist(), self.si_mm.tolist(), self.confidence.tolist(), strict=True
        ):
            lines.append(f"{t!r},{'nan' if math.isnan(si) else repr(si)},{c!r}")
        out = Path(path)
        try:
            out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot write {out}: {exc}", field="path") from exc
        return out

    @classmethod
    def from_csv(
        cls, path: str | os.PathLike[str], *, tracking_sd_mm: float | None = None
    ) -> BreathingTrace:
        """Read a trace written in the CSV format of the module docstring.

        Parameters
        ----------
        path : path-like
            The CSV file.
        tracking_sd_mm : float or None, optional
            Overrides the ``tracking_sd_mm`` metadata line of the file, mm.

        Returns
        -------
        BreathingTrace
            Lost frames (``nan`` or empty ``si_mm``) are marked invalid.

        Raises
        ------
        InvalidInputError
            If the file is missing or unreadable, the header is not ``time_s,si_mm,confidence``,
            a row does not have three fields, a value is not a number, or the values break the
            rules of :class:`BreathingTrace` (``field="path"`` for file-format problems).
        """
        source_path = Path(path)
        try:
            text = source_path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read {source_path}: {exc}", field="path") from exc
        metadata: dict[str, str] = {}
        rows: list[tuple[float, float, float]] = []
        header_seen = False
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            if not header_seen:
                if line.startswith("#"):
                    key, _, value = line[1:].partition("=")
                    metadata[key.strip()] = value.strip()
                    continue
                names = [name.strip().lower() for name in line.split(",")]
                if names != CSV_HEADER.split(","):
                    raise InvalidInputError(
                        f"{source_path.name}, line {number}: header {line!r} is not {CSV_HEADER!r}",
                        field="path",
                    )
                header_seen = True
                continue
            fields = [value.strip().lower() for value in line.split(",")]
            if len(fields) != 3:
                raise InvalidInputError(
                    f"{source_path.name}, line {number}: expected 3 comma-separated fields, "
                    f"got {len(fields)}",
                    field="path",
                )
            try:
                time_s = float(fields[0])
                si = math.nan if fields[1] in _MISSING else float(fields[1])
                confidence = math.nan if fields[2] in _MISSING else float(fields[2])
            except ValueError:
                raise InvalidInputError(
                    f"{source_path.name}, line {number}: non-numeric value in {line!r}",
                    field="path",
                ) from None
            rows.append((time_s, si, confidence))
        if not header_seen:
            raise InvalidInputError(
                f"{source_path.name}: no {CSV_HEADER!r} header found", field="path"
            )
        if tracking_sd_mm is None and "tracking_sd_mm" in metadata:
            try:
                tracking_sd_mm = float(metadata["tracking_sd_mm"])
            except ValueError:
                raise InvalidInputError(
                    f"{source_path.name}: tracking_sd_mm metadata "
                    f"{metadata['tracking_sd_mm']!r} is not a number",
                    field="path",
                ) from None
        values = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return cls(
            times_s=values[:, 0],
            si_mm=values[:, 1],
            confidence=values[:, 2],
            valid=np.isfinite(values[:, 1]),
            tracking_sd_mm=tracking_sd_mm,
            source=metadata.get("source", f"read from {source_path.name}"),
        )
