"""IEC 61217 kV gantry angle <-> DICOM XA Positioner Primary Angle, for each patient position.

Gantry angle ``g`` (``igrt.geometry``): the kV *source* sits at ``(sin g, 0, cos g)`` in IEC
fixed axes (``X`` right of an observer at the couch foot facing the gantry, ``Y`` towards the
gantry, ``Z`` up); couch angle 0 is assumed, so IEC fixed and patient-support axes coincide.

XA Positioner Primary Angle ``a`` (PS3.3 C.8.7.5.1.2): the position of the *image receptor*
about the patient, measured in the patient's transverse plane: 0 deg when the receptor faces
the patient's chest (anterior), +90 deg at the patient's left (LAO), -90 deg at the right (RAO).
With ``L`` and ``A`` the IEC directions of the patient's left and anterior, the receptor sits
along ``d = sin(a) L + cos(a) A`` and ``d = -source``. For a head-first-supine patient
``a = g + 180`` (wrapped): at gantry 0 the source is above the patient and the receptor behind.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from igrt.frame_of_reference import PatientPositionValues, iec_support_from_lps_matrix

__all__ = ["gantry_deg_from_primary_angle", "primary_angle_from_gantry_deg", "wrap_deg"]


def wrap_deg(angle_deg: float) -> float:
    """Wrap an angle to ``[-180, 180)`` degrees."""
    return (angle_deg + 180.0) % 360.0 - 180.0


def _left_and_anterior(
    position: PatientPositionValues | str,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    # Columns of the IEC-from-LPS rotation are the IEC images of LPS +x (left), +y (posterior).
    matrix = iec_support_from_lps_matrix(position)
    return matrix[:, 0], -matrix[:, 1]


def primary_angle_from_gantry_deg(
    gantry_deg: float, position: PatientPositionValues | str
) -> float:
    """XA Positioner Primary Angle (receptor, patient-based) of a kV source at ``gantry_deg``.

    Returns a value in ``[-180, 180)`` degrees.
    """
    left, anterior = _left_and_anterior(position)
    g = math.radians(gantry_deg)
    receptor = -np.array([math.sin(g), 0.0, math.cos(g)])
    return wrap_deg(math.degrees(math.atan2(float(receptor @ left), float(receptor @ anterior))))


def gantry_deg_from_primary_angle(angle_deg: float, position: PatientPositionValues | str) -> float:
    """IEC kV gantry angle in ``[0, 360)`` degrees of a receptor at XA primary ``angle_deg``."""
    left, anterior = _left_and_anterior(position)
    a = math.radians(angle_deg)
    source = -(math.sin(a) * left + math.cos(a) * anterior)
    gantry = math.degrees(math.atan2(float(source[0]), float(source[2]))) % 360.0
    return 0.0 if gantry == 360.0 else gantry
