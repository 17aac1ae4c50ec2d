"""Cone-beam projection geometry of a kV imager (one frame).

Coordinate systems used here
----------------------------
IEC 61217 fixed (room) system, origin at the isocentre, mm:
    ``X`` to the right of an observer at the foot of the couch facing the gantry,
    ``Y`` towards the gantry, ``Z`` up.
Gantry angle ``gantry_deg`` is the angle of the **kV source** about ``Y`` in the IEC sense
(clockwise seen from the foot of the couch): the source sits at
``SAD * (sin g, 0, cos g)``; at 0 deg it is above the couch, at 90 deg at ``+X``.
Detector plane, mm, origin at the piercing point of the central ray:
    ``u`` along ``(cos g, 0, -sin g)`` (``+X`` at gantry 0, i.e. the image is seen from the
    source, beam's-eye view), ``v`` along ``-Y`` (towards the couch foot, so image rows run
    from head to foot for a head-first patient).
Detector pixels ``(column, row)``: the panel centre sits at ``detector_offset_mm`` from the
piercing point; pixel centres are spaced ``pixel_pitch_mm``.

Motion measured on the panel is magnified by ``SDD / SAD`` at the isocentre plane
(``STYLE.md`` pitfall 5); the conversions here are the only place that factor is applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError

__all__ = [
    "ProjectionGeometry",
    "obi_geometry",
    "xvi_geometry",
]


def _pair(value: object, name: str) -> tuple[float, float]:
    """Two finite numbers from a sequence, or a GeometryError naming ``name``."""
    try:
        items = list(value)  # type: ignore[call-overload]
        if len(items) != 2:
            raise ValueError
        pair = (float(items[0]), float(items[1]))
    except (TypeError, ValueError):
        raise GeometryError(
            f"{name} must be a pair of numbers, got {value!r}", field=name
        ) from None
    if not all(math.isfinite(v) for v in pair):
        raise GeometryError(f"{name} must be finite, got {value!r}", field=name)
    return pair


def _require_finite_positive(value: float, name: str) -> None:
    if not math.isfinite(value) or value <= 0:
        raise GeometryError(f"{name} must be a finite positive number, got {value!r}", field=name)


@dataclass(frozen=True)
class ProjectionGeometry:
    """Geometry of one cone-beam projection.

    Parameters
    ----------
    sad_mm : float
        Source-to-axis (isocentre) distance, mm.
    sdd_mm : float
        Source-to-detector distance, mm; at least ``sad_mm``. Equality is a virtual image plane
        through the isocentre (magnification 1), as in a DRR or an RT Image stored at
        ``RTImageSID == RadiationMachineSAD``; a detector nearer the source than the isocentre
        is refused, since no imager puts one between the source and the patient.
    pixel_pitch_mm : tuple of float
        Detector pixel spacing ``(along u, along v)`` in mm on the panel.
    detector_shape : tuple of int
        Panel size in pixels, ``(rows, columns)`` like a numpy image.
    detector_offset_mm : tuple of float, optional
        Position ``(u, v)`` of the panel centre relative to the central-ray piercing point, mm
        (an XVI medium field of view shifts the panel laterally by about 115 mm).
    gantry_deg : float, optional
        kV source angle in the IEC 61217 gantry convention, degrees.

    Raises
    ------
    GeometryError
        If any distance or pitch is not finite and positive, ``sdd_mm < sad_mm``, or the
        detector shape is not two positive integers.

    Examples
    --------
    >>> g = xvi_geometry(binning=2)
    >>> round(g.pixel_at_isocentre_mm[1], 4)
    0.5208
    >>> g.isocentre_mm_from_detector_mm(15.36)
    10.0
    """

    sad_mm: float
    sdd_mm: float
    pixel_pitch_mm: tuple[float, float]
    detector_shape: tuple[int, int]
    detector_offset_mm: tuple[float, float] = (0.0, 0.0)
    gantry_deg: float = 0.0

    def __post_init__(self) -> None:
        _require_finite_positive(self.sad_mm, "sad_mm")
        _require_finite_positive(self.sdd_mm, "sdd_mm")
        # sdd == sad is allowed on purpose (a DRR's virtual plane at the isocentre); nothing
        # here or in the DRR renderer divides by (sdd - sad), so equality is safe.
        if self.sdd_mm < self.sad_mm:
            raise GeometryError(
                f"sdd_mm ({self.sdd_mm}) must be at least sad_mm ({self.sad_mm}): "
                "the image plane lies at or beyond the isocentre",
                field="sdd_mm",
            )
        pitch = _pair(self.pixel_pitch_mm, "pixel_pitch_mm")
        for value in pitch:
            _require_finite_positive(value, "pixel_pitch_mm")
        shape = _pair(self.detector_shape, "detector_shape")
        if any(int(n) != n or n < 1 for n in shape):
            raise GeometryError(
                f"detector_shape must be two positive integers (rows, columns), "
                f"got {self.detector_shape!r}",
                field="detector_shape",
            )
        offset = _pair(self.detector_offset_mm, "detector_offset_mm")
        if not math.isfinite(self.gantry_deg):
            raise GeometryError("gantry_deg must be finite", field="gantry_deg")
        object.__setattr__(self, "pixel_pitch_mm", pitch)
        object.__setattr__(self, "detector_shape", (int(shape[0]), int(shape[1])))
        object.__setattr__(self, "detector_offset_mm", offset)

    # --- scalar properties -------------------------------------------------------------

    @property
    def magnification(self) -> float:
        """Geometric magnification of the isocentre plane on the panel, ``SDD / SAD``."""
        return self.sdd_mm / self.sad_mm

    @property
    def pixel_at_isocentre_mm(self) -> tuple[float, float]:
        """Size ``(u, v)`` of one detector pixel back-projected to the isocentre plane, mm."""
        return (
            self.pixel_pitch_mm[0] / self.magnification,
            self.pixel_pitch_mm[1] / self.magnification,
        )

    @property
    def detector_size_mm(self) -> tuple[float, float]:
        """Panel extent ``(u, v)`` in mm."""
        rows, cols = self.detector_shape
        return (cols * self.pixel_pitch_mm[0], rows * self.pixel_pitch_mm[1])

    # --- derived geometries ------------------------------------------------------------

    def with_gantry(self, gantry_deg: float) -> ProjectionGeometry:
        """Same imager at another gantry angle."""
        return replace(self, gantry_deg=float(gantry_deg))

    def binned(self, factor: int) -> ProjectionGeometry:
        """The geometry after ``factor x factor`` pixel binning (panel size must divide)."""
        rows, cols = self.detector_shape
        if factor < 1 or rows % factor or cols % factor:
            raise GeometryError(f"cannot bin a {rows}x{cols} panel by {factor}", field="binning")
        return replace(
            self,
            detector_shape=(rows // factor, cols // factor),
            pixel_pitch_mm=(self.pixel_pitch_mm[0] * factor, self.pixel_pitch_mm[1] * factor),
        )

    # --- conversions between panel pixels, panel mm and isocentre mm -------------------

    def detector_mm_from_pixel(
        self, column: npt.ArrayLike, row: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Panel position ``(u, v)`` in mm of (sub-)pixel coordinates ``(column, row)``."""
        rows, cols = self.detector_shape
        u = (np.asarray(column, np.float64) - (cols - 1) / 2.0) * self.pixel_pitch_mm[0]
        v = (np.asarray(row, np.float64) - (rows - 1) / 2.0) * self.pixel_pitch_mm[1]
        return u + self.detector_offset_mm[0], v + self.detector_offset_mm[1]

    def pixel_from_detector_mm(
        self, u_mm: npt.ArrayLike, v_mm: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Sub-pixel ``(column, row)`` of panel positions ``(u, v)`` in mm."""
        rows, cols = self.detector_shape
        column = (np.asarray(u_mm, np.float64) - self.detector_offset_mm[0]) / self.pixel_pitch_mm[
            0
        ] + (cols - 1) / 2.0
        row = (np.asarray(v_mm, np.float64) - self.detector_offset_mm[1]) / self.pixel_pitch_mm[
            1
        ] + (rows - 1) / 2.0
        return column, row

    def isocentre_mm_from_detector_mm(self, detector_mm: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Scale a length or position on the panel to the isocentre plane (divide by SDD/SAD)."""
        return np.asarray(detector_mm, np.float64) / self.magnification

    def detector_mm_from_isocentre_mm(self, isocentre_mm: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Scale a length or position in the isocentre plane to the panel (times SDD/SAD)."""
        return np.asarray(isocentre_mm, np.float64) * self.magnification

    # --- 3D -----------------------------------------------------------------------------

    @property
    def source_direction(self) -> npt.NDArray[np.float64]:
        """Unit vector from the isocentre towards the source, IEC fixed coordinates."""
        g = math.radians(self.gantry_deg)
        return np.array([math.sin(g), 0.0, math.cos(g)])

    @property
    def u_axis(self) -> npt.NDArray[np.float64]:
        """Unit vector of the detector ``u`` axis, IEC fixed coordinates."""
        g = math.radians(self.gantry_deg)
        return np.array([math.cos(g), 0.0, -math.sin(g)])

    @property
    def v_axis(self) -> npt.NDArray[np.float64]:
        """Unit vector of the detector ``v`` axis, IEC fixed coordinates (towards the foot)."""
        return np.array([0.0, -1.0, 0.0])

    def project_iec_fixed(
        self, points_iec_fixed_mm: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Project points ``(N, 3)`` given in IEC fixed mm to panel ``(u, v)`` mm.

        Raises
        ------
        GeometryError
            If a point lies at or behind the source plane.
        """
        points = np.atleast_2d(np.asarray(points_iec_fixed_mm, np.float64))
        if points.ndim != 2 or points.shape[1] != 3:
            raise GeometryError(f"points must be (N, 3), got shape {points.shape}", field="points")
        if not np.all(np.isfinite(points)):
            raise GeometryError("points must be finite", field="points")
        depth_mm = self.sad_mm - points @ self.source_direction
        if np.any(depth_mm <= 0):
            raise GeometryError("a point lies at or behind the source; it cannot be projected")
        scale = self.sdd_mm / depth_mm
        return scale * (points @ self.u_axis), scale * (points @ self.v_axis)


def xvi_geometry(*, binning: int = 2, gantry_deg: float = 0.0) -> ProjectionGeometry:
    """Elekta XVI kV imager: SAD 1000 mm, SDD 1536 mm, 1024x1024 panel at 0.4 mm.

    Parameters
    ----------
    binning : int, optional
        Pixel binning factor; fluoroscopy is commonly read out binned 2x (512x512, 0.8 mm).
    gantry_deg : float, optional
        kV source angle, degrees.
    """
    full = ProjectionGeometry(
        sad_mm=1000.0,
        sdd_mm=1536.0,
        pixel_pitch_mm=(0.4, 0.4),
        detector_shape=(1024, 1024),
        gantry_deg=gantry_deg,
    )
    return full.binned(binning) if binning != 1 else full


def obi_geometry(*, binning: int = 1, gantry_deg: float = 0.0) -> ProjectionGeometry:
    """Varian OBI / TrueBeam kV imager: SAD 1000 mm, SDD 1500 mm, 1024x768 panel at 0.388 mm."""
    full = ProjectionGeometry(
        sad_mm=1000.0,
        sdd_mm=1500.0,
        pixel_pitch_mm=(0.388, 0.388),
        detector_shape=(768, 1024),
        gantry_deg=gantry_deg,
    )
    return full.binned(binning) if binning != 1 else full
