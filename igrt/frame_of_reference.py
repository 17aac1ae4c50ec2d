"""DICOM patient (LPS) and IEC 61217 patient-support coordinates, for all eight patient positions.

Coordinate systems used here
----------------------------
DICOM patient (LPS), mm:
    ``+x`` towards the patient's left, ``+y`` posterior, ``+z`` superior (towards the head).
    It is attached to the patient, so it does not depend on how the patient lies.
IEC 61217 patient support, mm, patient support angle (couch angle) 0 deg:
    ``X`` lateral, to the right of an observer standing at the foot of the couch and facing the
    gantry; ``Y`` longitudinal, towards the gantry; ``Z`` vertical, up. At couch angle 0 these
    axes are parallel to the IEC fixed (room) axes.

How a patient lies is given by the DICOM Patient Position (0018,5100), PS3.3 C.7.3.1.1.2:
*head first* / *feet first* says whether the head or the feet point towards the gantry
(IEC ``+Y``); *supine* is face up, *prone* face down, *decubitus right* lying on the right side
(right side down) and *decubitus left* lying on the left side. Each rotation below is built
from exactly those two facts, the IEC directions of the patient's head and face (the table
``_HEAD_AND_ANTERIOR_IEC``); the patient's left then follows from the right-handedness of LPS
(``left = superior x anterior``). For a head-first-supine patient an LPS displacement
``(x, y, z)`` is ``(x, z, -y)`` in IEC patient-support axes.

Displacement versus correction (``STYLE.md`` pitfall 2): :class:`AnatomyDisplacement` is where
the anatomy is today relative to the plan; :class:`CouchCorrection` is the couch translation that
undoes it, its negative. Neither is a bare "shift". The console's couch display (signs, units,
absolute couch positions) is a third convention that this module does not model.

Only translations are handled; rotations of the couch or of the patient are out of scope.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from igrt.errors import FrameOfReferenceError, GeometryError, InvalidInputError

__all__ = [
    "AnatomyDisplacement",
    "CouchCorrection",
    "IecAxisValues",
    "PatientPositionValues",
    "iec_support_from_lps",
    "iec_support_from_lps_matrix",
    "iec_support_from_lps_point",
    "lps_from_iec_support",
    "lps_from_iec_support_matrix",
    "lps_from_iec_support_point",
]


class PatientPositionValues(enum.Enum):
    """DICOM Patient Position (0018,5100) of a patient lying on the couch.

    Values are the DICOM code strings. "Head first" means the head points towards the gantry.
    """

    HFS = "HFS"
    """Head first, supine (face up)."""

    HFP = "HFP"
    """Head first, prone (face down)."""

    FFS = "FFS"
    """Feet first, supine (face up)."""

    FFP = "FFP"
    """Feet first, prone (face down)."""

    HFDR = "HFDR"
    """Head first, decubitus right (lying on the right side)."""

    HFDL = "HFDL"
    """Head first, decubitus left (lying on the left side)."""

    FFDR = "FFDR"
    """Feet first, decubitus right (lying on the right side)."""

    FFDL = "FFDL"
    """Feet first, decubitus left (lying on the left side)."""

    @classmethod
    def parse(cls, value: PatientPositionValues | str) -> PatientPositionValues:
        """Read a DICOM Patient Position code string, ignoring case and surrounding spaces.

        Parameters
        ----------
        value : PatientPositionValues or str
            A member (returned unchanged) or a code string such as ``"HFS"`` or ``" hfs "``.

        Returns
        -------
        PatientPositionValues
            The matching position.

        Raises
        ------
        FrameOfReferenceError
            If ``value`` is not one of the eight supported codes (``field="patient_position"``).
            Other DICOM codes (``LFP``, ``AFDR``, ...) are refused rather than guessed.

        Examples
        --------
        >>> PatientPositionValues.parse(" hfdr ")
        <PatientPositionValues.HFDR: 'HFDR'>
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise FrameOfReferenceError(
                f"patient position must be a DICOM code string, got {type(value).__name__}",
                field="patient_position",
            )
        code = value.strip().upper()
        try:
            return cls(code)
        except ValueError:
            supported = ", ".join(member.value for member in cls)
            raise FrameOfReferenceError(
                f"unsupported patient position {value!r}; expected one of {supported}",
                field="patient_position",
            ) from None


class IecAxisValues(enum.Enum):
    """An axis of the IEC 61217 patient-support system, in ``(X, Y, Z)`` order."""

    LATERAL = "lateral"
    """``X``: to the right of an observer at the foot of the couch facing the gantry."""

    LONGITUDINAL = "longitudinal"
    """``Y``: towards the gantry."""

    VERTICAL = "vertical"
    """``Z``: up."""


_IEC_AXES: tuple[IecAxisValues, IecAxisValues, IecAxisValues] = (
    IecAxisValues.LATERAL,
    IecAxisValues.LONGITUDINAL,
    IecAxisValues.VERTICAL,
)

_Direction = tuple[int, int, int]
_IEC_X: _Direction = (1, 0, 0)
_IEC_Y: _Direction = (0, 1, 0)
_IEC_Z: _Direction = (0, 0, 1)


def _negative(direction: _Direction) -> _Direction:
    return (-direction[0], -direction[1], -direction[2])


_HEAD_AND_ANTERIOR_IEC: dict[PatientPositionValues, tuple[_Direction, _Direction]] = {
    # position: (where the head points, where the face points), IEC patient support, couch 0.
    PatientPositionValues.HFS: (_IEC_Y, _IEC_Z),
    PatientPositionValues.HFP: (_IEC_Y, _negative(_IEC_Z)),
    PatientPositionValues.FFS: (_negative(_IEC_Y), _IEC_Z),
    PatientPositionValues.FFP: (_negative(_IEC_Y), _negative(_IEC_Z)),
    # Decubitus right: right side down, i.e. left = head x face = +Z.
    PatientPositionValues.HFDR: (_IEC_Y, _negative(_IEC_X)),
    PatientPositionValues.FFDR: (_negative(_IEC_Y), _IEC_X),
    # Decubitus left: left side down, i.e. left = head x face = -Z.
    PatientPositionValues.HFDL: (_IEC_Y, _IEC_X),
    PatientPositionValues.FFDL: (_negative(_IEC_Y), _negative(_IEC_X)),
}


def _rotation_from_head_and_face(
    head_iec: _Direction, anterior_iec: _Direction
) -> npt.NDArray[np.float64]:
    """IEC-support-from-LPS rotation; its columns are the IEC images of LPS ``+x, +y, +z``."""
    superior = np.asarray(head_iec, dtype=np.float64)
    anterior = np.asarray(anterior_iec, dtype=np.float64)
    left = np.cross(superior, anterior)  # LPS is right-handed: L = P x S = S x A
    matrix = np.column_stack((left, -anterior, superior)).astype(np.float64)
    matrix.flags.writeable = False
    return matrix


_IEC_SUPPORT_FROM_LPS: dict[PatientPositionValues, npt.NDArray[np.float64]] = {
    position: _rotation_from_head_and_face(head, anterior)
    for position, (head, anterior) in _HEAD_AND_ANTERIOR_IEC.items()
}


def iec_support_from_lps_matrix(position: PatientPositionValues | str) -> npt.NDArray[np.float64]:
    """The 3x3 rotation taking LPS components to IEC patient-support components (a copy).

    Parameters
    ----------
    position : PatientPositionValues or str
        DICOM Patient Position of the patient on the couch (couch angle 0).

    Returns
    -------
    numpy.ndarray
        ``R`` of shape ``(3, 3)`` with ``v_iec = R @ v_lps``; a proper rotation (``det = +1``)
        whose inverse is its transpose.

    Raises
    ------
    FrameOfReferenceError
        If ``position`` is not a supported patient position.

    Examples
    --------
    >>> iec_support_from_lps_matrix("HFS").astype(int).tolist()
    [[1, 0, 0], [0, 0, 1], [0, -1, 0]]
    """
    return _IEC_SUPPORT_FROM_LPS[PatientPositionValues.parse(position)].copy()


def lps_from_iec_support_matrix(position: PatientPositionValues | str) -> npt.NDArray[np.float64]:
    """The 3x3 rotation taking IEC patient-support components to LPS components (a copy).

    The transpose of :func:`iec_support_from_lps_matrix`; see there for parameters.
    """
    return _IEC_SUPPORT_FROM_LPS[PatientPositionValues.parse(position)].T.copy()


def _as_vectors(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    """Validate ``(3,)`` or ``(N, 3)`` finite components; return a float64 array of that shape."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise GeometryError(f"{name} must be numeric: {error}", field=name) from None
    if array.shape != (3,) and (array.ndim != 2 or array.shape[1] != 3):
        raise GeometryError(f"{name} must have shape (3,) or (N, 3), got {array.shape}", field=name)
    if not np.all(np.isfinite(array)):
        raise GeometryError(f"{name} must be finite (no NaN or infinity)", field=name)
    return array


def _rotate(
    matrix: npt.NDArray[np.float64], vectors: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Apply ``matrix`` to a ``(3,)`` vector or to each row of an ``(N, 3)`` array."""
    rotated: npt.NDArray[np.float64] = vectors @ matrix.T
    return rotated + 0.0  # turn the -0.0 of sign flips into 0.0


def iec_support_from_lps(
    vectors_lps_mm: npt.ArrayLike, position: PatientPositionValues | str
) -> npt.NDArray[np.float64]:
    """Express displacement vectors given along LPS axes along IEC patient-support axes.

    Parameters
    ----------
    vectors_lps_mm : array_like of float
        One vector ``(3,)`` or ``N`` vectors ``(N, 3)``, DICOM patient (LPS) components, mm.
        These are displacements (differences of points), so only the rotation applies.
    position : PatientPositionValues or str
        DICOM Patient Position of the patient on the couch (couch angle 0).

    Returns
    -------
    numpy.ndarray
        Same shape as the input: ``(lateral X, longitudinal Y, vertical Z)`` components in the
        IEC 61217 patient-support system, mm.

    Raises
    ------
    FrameOfReferenceError
        If ``position`` is not a supported patient position.
    GeometryError
        If the vectors are not of shape ``(3,)`` or ``(N, 3)``, or are not finite.

    Examples
    --------
    5 mm superior is 5 mm towards the gantry for a head-first patient, away from it for a
    feet-first one:

    >>> iec_support_from_lps([0.0, 0.0, 5.0], "HFS").tolist()
    [0.0, 5.0, 0.0]
    >>> iec_support_from_lps([0.0, 0.0, 5.0], "FFS").tolist()
    [0.0, -5.0, 0.0]
    """
    matrix = _IEC_SUPPORT_FROM_LPS[PatientPositionValues.parse(position)]
    return _rotate(matrix, _as_vectors(vectors_lps_mm, "vectors_lps_mm"))


def lps_from_iec_support(
    vectors_iec_mm: npt.ArrayLike, position: PatientPositionValues | str
) -> npt.NDArray[np.float64]:
    """Express displacement vectors given along IEC patient-support axes along LPS axes.

    The inverse of :func:`iec_support_from_lps`.

    Parameters
    ----------
    vectors_iec_mm : array_like of float
        ``(3,)`` or ``(N, 3)`` IEC patient-support components ``(X, Y, Z)``, mm.
    position : PatientPositionValues or str
        DICOM Patient Position of the patient on the couch (couch angle 0).

    Returns
    -------
    numpy.ndarray
        Same shape as the input: DICOM patient (LPS) components, mm.

    Raises
    ------
    FrameOfReferenceError
        If ``position`` is not a supported patient position.
    GeometryError
        If the vectors are not of shape ``(3,)`` or ``(N, 3)``, or are not finite.

    Examples
    --------
    >>> lps_from_iec_support([0.0, 0.0, 5.0], "HFS").tolist()
    [0.0, -5.0, 0.0]
    """
    matrix = _IEC_SUPPORT_FROM_LPS[PatientPositionValues.parse(position)]
    return _rotate(matrix.T, _as_vectors(vectors_iec_mm, "vectors_iec_mm"))


def iec_support_from_lps_point(
    points_lps_mm: npt.ArrayLike,
    isocentre_lps_mm: npt.ArrayLike,
    position: PatientPositionValues | str,
) -> npt.NDArray[np.float64]:
    """Express points given in LPS as positions relative to the isocentre along IEC axes.

    Parameters
    ----------
    points_lps_mm : array_like of float
        ``(3,)`` or ``(N, 3)`` points in DICOM patient coordinates (LPS), mm.
    isocentre_lps_mm : array_like of float
        ``(3,)`` treatment isocentre in the same DICOM patient coordinates, mm.
    position : PatientPositionValues or str
        DICOM Patient Position of the patient on the couch (couch angle 0).

    Returns
    -------
    numpy.ndarray
        Same shape as ``points_lps_mm``: ``(X, Y, Z)`` of each point relative to the isocentre,
        along IEC 61217 patient-support axes, mm.

    Raises
    ------
    FrameOfReferenceError
        If ``position`` is not a supported patient position.
    GeometryError
        If the points are not ``(3,)`` or ``(N, 3)``, the isocentre not ``(3,)``, or any value
        is not finite.

    Examples
    --------
    >>> iec_support_from_lps_point([10.0, 20.0, 35.0], [10.0, 20.0, 30.0], "HFS").tolist()
    [0.0, 5.0, 0.0]
    """
    matrix = _IEC_SUPPORT_FROM_LPS[PatientPositionValues.parse(position)]
    points = _as_vectors(points_lps_mm, "points_lps_mm")
    isocentre = _as_isocentre(isocentre_lps_mm)
    return _rotate(matrix, points - isocentre)


def lps_from_iec_support_point(
    points_iec_mm: npt.ArrayLike,
    isocentre_lps_mm: npt.ArrayLike,
    position: PatientPositionValues | str,
) -> npt.NDArray[np.float64]:
    """Express points given relative to the isocentre along IEC axes as LPS points.

    The inverse of :func:`iec_support_from_lps_point`.

    Parameters
    ----------
    points_iec_mm : array_like of float
        ``(3,)`` or ``(N, 3)`` positions relative to the isocentre, IEC patient-support
        components ``(X, Y, Z)``, mm.
    isocentre_lps_mm : array_like of float
        ``(3,)`` treatment isocentre in DICOM patient coordinates (LPS), mm.
    position : PatientPositionValues or str
        DICOM Patient Position of the patient on the couch (couch angle 0).

    Returns
    -------
    numpy.ndarray
        Same shape as ``points_iec_mm``: DICOM patient coordinates (LPS), mm.

    Raises
    ------
    FrameOfReferenceError
        If ``position`` is not a supported patient position.
    GeometryError
        If the points are not ``(3,)`` or ``(N, 3)``, the isocentre not ``(3,)``, or any value
        is not finite.

    Examples
    --------
    >>> lps_from_iec_support_point([0.0, 5.0, 0.0], [10.0, 20.0, 30.0], "HFS").tolist()
    [10.0, 20.0, 35.0]
    """
    matrix = _IEC_SUPPORT_FROM_LPS[PatientPositionValues.parse(position)]
    points = _as_vectors(points_iec_mm, "points_iec_mm")
    isocentre = _as_isocentre(isocentre_lps_mm)
    return _rotate(matrix.T, points) + isocentre


def _as_isocentre(isocentre_lps_mm: npt.ArrayLike) -> npt.NDArray[np.float64]:
    isocentre = _as_vectors(isocentre_lps_mm, "isocentre_lps_mm")
    if isocentre.shape != (3,):
        raise GeometryError(
            f"isocentre_lps_mm must have shape (3,), got {isocentre.shape}",
            field="isocentre_lps_mm",
        )
    return isocentre


def _as_lps_triple(value: npt.ArrayLike, name: str) -> tuple[float, float, float]:
    array = _as_vectors(value, name)
    if array.shape != (3,):
        raise GeometryError(f"{name} must have 3 components, got shape {array.shape}", field=name)
    return (float(array[0]), float(array[1]), float(array[2]))


@dataclass(frozen=True)
class _LpsTranslation:
    """A translation stored along LPS axes; shared by the two named result types below."""

    lps_mm: tuple[float, float, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "lps_mm", _as_lps_triple(self.lps_mm, "lps_mm"))

    @property
    def magnitude_mm(self) -> float:
        """Length of the translation in mm (the same in every frame)."""
        return math.hypot(*self.lps_mm)

    def iec_support_mm(self, position: PatientPositionValues | str) -> tuple[float, float, float]:
        """Components ``(lateral X, longitudinal Y, vertical Z)`` along IEC patient-support axes.

        Parameters
        ----------
        position : PatientPositionValues or str
            DICOM Patient Position of the patient on the couch (couch angle 0).

        Returns
        -------
        tuple of float
            IEC 61217 patient-support components, mm.

        Raises
        ------
        FrameOfReferenceError
            If ``position`` is not a supported patient position.
        """
        x, y, z = iec_support_from_lps(self.lps_mm, position).tolist()
        return (x, y, z)

    def exceeds(
        self, threshold_mm: float, position: PatientPositionValues | str
    ) -> tuple[IecAxisValues, ...]:
        """IEC patient-support axes along which the component is larger than a tolerance.

        Parameters
        ----------
        threshold_mm : float
            Per-axis tolerance, mm, finite and non-negative. A component whose magnitude equals
            the tolerance does not exceed it.
        position : PatientPositionValues or str
            DICOM Patient Position of the patient on the couch (couch angle 0).

        Returns
        -------
        tuple of IecAxisValues
            The exceeding axes in ``(lateral, longitudinal, vertical)`` order; empty if none.
            A displacement and its couch correction exceed along the same axes.

        Raises
        ------
        InvalidInputError
            If ``threshold_mm`` is negative or not finite.
        FrameOfReferenceError
            If ``position`` is not a supported patient position.
        """
        threshold = float(threshold_mm)
        if not math.isfinite(threshold) or threshold < 0:
            raise InvalidInputError(
                f"threshold_mm must be finite and non-negative, got {threshold_mm!r}",
                field="threshold_mm",
            )
        components = self.iec_support_mm(position)
        return tuple(
            axis
            for axis, component in zip(_IEC_AXES, components, strict=True)
            if abs(component) > threshold
        )


@dataclass(frozen=True)
class AnatomyDisplacement(_LpsTranslation):
    """Where the anatomy is today relative to the plan, as a translation.

    Parameters
    ----------
    lps_mm : tuple of float
        Displacement of the anatomy (today minus plan) along DICOM patient (LPS) axes, mm.
        Any 3-element array-like is accepted and stored as a tuple of floats.

    Raises
    ------
    GeometryError
        If ``lps_mm`` does not have exactly 3 finite components.

    Examples
    --------
    The target sits 5 mm superior today; the patient is head-first supine:

    >>> displacement = AnatomyDisplacement((0.0, 0.0, 5.0))
    >>> displacement.iec_support_mm("HFS")
    (0.0, 5.0, 0.0)
    >>> displacement.couch_correction().iec_support_mm("HFS")
    (0.0, -5.0, 0.0)
    >>> displacement.exceeds(3.0, "HFS")
    (<IecAxisValues.LONGITUDINAL: 'longitudinal'>,)
    """

    @classmethod
    def from_iec_support(
        cls, iec_mm: npt.ArrayLike, position: PatientPositionValues | str
    ) -> AnatomyDisplacement:
        """Build from IEC patient-support components ``(X, Y, Z)`` in mm for ``position``."""
        iec = _as_lps_triple(iec_mm, "iec_mm")
        return cls(_as_lps_triple(lps_from_iec_support(iec, position), "iec_mm"))

    def couch_correction(self) -> CouchCorrection:
        """The couch translation that undoes this displacement: its negative."""
        x, y, z = self.lps_mm
        return CouchCorrection((-x + 0.0, -y + 0.0, -z + 0.0))


@dataclass(frozen=True)
class CouchCorrection(_LpsTranslation):
    """The couch translation that brings the anatomy back to its planned position.

    Parameters
    ----------
    lps_mm : tuple of float
        Translation the couch move gives the patient, along DICOM patient (LPS) axes, mm; the
        negative of the :class:`AnatomyDisplacement` it corrects. Use
        :meth:`iec_support_mm` for the table-top move along IEC axes. Any 3-element array-like
        is accepted and stored as a tuple of floats.

    Raises
    ------
    GeometryError
        If ``lps_mm`` does not have exactly 3 finite components.
    """

    @classmethod
    def from_iec_support(
        cls, iec_mm: npt.ArrayLike, position: PatientPositionValues | str
    ) -> CouchCorrection:
        """Build from IEC patient-support components ``(X, Y, Z)`` in mm for ``position``."""
        iec = _as_lps_triple(iec_mm, "iec_mm")
        return cls(_as_lps_triple(lps_from_iec_support(iec, position), "iec_mm"))

    def anatomy_displacement(self) -> AnatomyDisplacement:
        """The anatomy displacement this correction undoes: its negative."""
        x, y, z = self.lps_mm
        return AnatomyDisplacement((-x + 0.0, -y + 0.0, -z + 0.0))
