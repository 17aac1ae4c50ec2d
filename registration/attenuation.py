"""From CT numbers to linear attenuation at the imaging beam's energy: kV and MV.

A DRR is a sum of linear attenuation coefficients, and those depend on the beam that makes the
image it is compared with. At the ~60 keV effective energy of a 100-120 kVp beam the
photoelectric effect makes bone attenuate much more than its density alone would; at the
~2 MeV effective energy of a 6 MV treatment beam Compton scattering dominates and attenuation
follows electron density, so bone stands out far less from soft tissue (portal images have low
bone contrast). Both are modelled as the usual bilinear map of HU, with one slope below 0 HU
(air to water: a density mixture) and another above (water to bone):

``mu = MU_WATER * (1 + s * HU / 1000)``, ``s = 1`` below 0 HU, ``s = bone_slope`` above, clipped
at 0.

=========  =====================  ==========  =================================================
beam       ``mu_water_per_mm``    bone_slope  source
=========  =====================  ==========  =================================================
kV         0.0206 /mm (60 keV)    1.3         NIST XCOM water and cortical bone at 60 keV.
MV         0.0049 /mm (2 MeV)     0.55        NIST XCOM water at 2 MeV; above 0 HU, relative
                                              electron density rises about 0.55 per 1000 HU
                                              (typical CT-to-electron-density calibration:
                                              cortical bone ~1.7 at ~1250 HU).
=========  =====================  ==========  =================================================

Gradient matching (:mod:`registration.pair2d`) is insensitive to the gain and offset of an
image, but not to the *relative* weight of bone and soft-tissue edges, which is what the slope
sets.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from igrt.errors import InvalidInputError

__all__ = [
    "BONE_CONTRAST_FACTOR",
    "KV_ATTENUATION",
    "MU_WATER_PER_MM",
    "MV_ATTENUATION",
    "AttenuationModel",
    "ImagingModalityValues",
    "mu_per_mm_from_hu",
]


@dataclass(frozen=True)
class AttenuationModel:
    """Bilinear map from HU to linear attenuation at one effective beam energy.

    Parameters
    ----------
    name : str
        What the model describes (reported with results), e.g. ``"kV 60 keV"``.
    mu_water_per_mm : float
        Linear attenuation of water, 1/mm.
    bone_slope : float
        Relative slope of the map above 0 HU (1 below).

    Raises
    ------
    InvalidInputError
        If a number is not finite and positive or the name is empty.
    """

    name: str
    mu_water_per_mm: float
    bone_slope: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError("an attenuation model needs a name", field="name")
        for field_name in ("mu_water_per_mm", "bone_slope"):
            value = getattr(self, field_name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise InvalidInputError(
                    f"{field_name} must be a finite positive number, got {value!r}",
                    field=field_name,
                )
            object.__setattr__(self, field_name, float(value))

    def mu_per_mm(self, hu: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Linear attenuation (1/mm, float32) of CT numbers ``hu``."""
        values = np.asarray(hu, dtype=np.float32)
        slope = np.where(values > 0, np.float32(self.bone_slope), np.float32(1.0))
        mu = np.float32(self.mu_water_per_mm) * (
            np.float32(1.0) + slope * values / np.float32(1000.0)
        )
        clipped: npt.NDArray[np.float32] = np.maximum(mu, np.float32(0.0)).astype(np.float32)
        return clipped


MU_WATER_PER_MM = 0.0206
"""Linear attenuation of water at 60 keV (about a 100-120 kVp beam's effective energy), 1/mm."""

BONE_CONTRAST_FACTOR = 1.3
"""Extra slope of the positive side of the HU scale at 60 keV (cortical bone, NIST XCOM)."""

KV_ATTENUATION = AttenuationModel("kV 60 keV", MU_WATER_PER_MM, BONE_CONTRAST_FACTOR)
"""A kV imager (100-120 kVp)."""

MV_ATTENUATION = AttenuationModel("MV 2 MeV", 0.0049, 0.55)
"""A 6 MV treatment beam imaged on its portal imager (EPID)."""


class ImagingModalityValues(enum.Enum):
    """Which beam made a projection image, and hence which attenuation its DRR must use."""

    KV = "kV"
    """A kV imager (on-board imager, XVI, a kV image stored as RT Image)."""

    MV = "MV"
    """The treatment beam on the portal imager (EPID): low bone contrast."""

    @property
    def attenuation(self) -> AttenuationModel:
        """The attenuation model of this beam (module table)."""
        return KV_ATTENUATION if self is ImagingModalityValues.KV else MV_ATTENUATION

    @classmethod
    def parse(cls, value: ImagingModalityValues | str) -> ImagingModalityValues:
        """``"kV"``/``"MV"`` (any case) or a member.

        Raises
        ------
        InvalidInputError
            For anything else (``field`` is ``"modality"``).
        """
        if isinstance(value, ImagingModalityValues):
            return value
        if isinstance(value, str):
            for member in cls:
                if value.strip().upper() == member.value.upper():
                    return member
        raise InvalidInputError(
            f"modality must be one of {[m.value for m in cls]}, got {value!r}", field="modality"
        )


def mu_per_mm_from_hu(
    hu: npt.ArrayLike, attenuation: AttenuationModel = KV_ATTENUATION
) -> npt.NDArray[np.float32]:
    """Linear attenuation (1/mm) from Hounsfield units (bilinear), kV by default.

    Parameters
    ----------
    hu : numpy.ndarray
        CT numbers, HU.
    attenuation : AttenuationModel, optional
        The beam (:data:`KV_ATTENUATION` or :data:`MV_ATTENUATION`).

    Returns
    -------
    numpy.ndarray
        ``MU_WATER * (1 + s * HU / 1000)`` clipped at 0, ``s = bone_slope`` above 0 HU, float32.
    """
    return attenuation.mu_per_mm(hu)
