"""``igrt register``: rigid CBCT-to-planning-CT registration from files.

Reads both images (DICOM folders or MHA/NRRD/NIfTI files), registers the CBCT to the planning CT
(:func:`registration.register_cbct_to_ct`) and writes into ``--out``:

- ``result.json``: the full result (:meth:`RigidRegistrationResult.to_dict`), also when the
  registration failed, with the command's wall time split into ``read``, ``prepare`` (the
  planning CT's reference), ``register`` and ``write`` (``timing_s``; written last), and the
  same split of its CPU time (``timing_cpu_s``);
- ``overlay_<plane>_<before|after>_<checkerboard|blend>.png``: review images;
- ``registration.dcm``: a DICOM Spatial Registration object (only for a result that did not
  fail; :mod:`registration.dicom_reg` says which way its matrix goes).

With ``--plan RTPLAN.dcm`` the displacement is measured at the plan's treatment isocentre, and
with ``--structures RTSTRUCT.dcm --roi NAME [--roi-margin-mm M]`` the clip box is that ROI's
extent (:mod:`registration.plan_focus`): the CT, plan and ROI must share one Frame of Reference
and the box must contain the isocentre; ``result.json`` says where both came from.

A CBCT in another Frame of Reference than the planning CT (a linac's CBCT, in the treatment
room's frame) is placed on the planning CT by the treatment isocentre (``--plan`` or
``--isocentre``, planning-CT LPS mm), the machine isocentre being the CBCT's LPS origin unless
``--cbct-isocentre`` says where it is (:mod:`registration.cbct_placement`); without a treatment
isocentre such a pair is refused (exit 2). ``result.json``'s ``frames`` records both Frame of
Reference UIDs and the placement, and the DICOM REG relates the CBCT's own frame.

It prints the quality, the couch correction along IEC 61217 patient-support axes and the
repositioning decision. Exit codes: 0 success (``GOOD`` or ``QUESTIONABLE``, the latter with its
reasons), 2 bad input, 3 a failed registration.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igrt.errors import InvalidInputError

if TYPE_CHECKING:
    from igrt.imageio import LoadedVolume
    from registration import RigidRegistrationResult

__all__ = ["register"]

EXIT_REGISTRATION_FAILED = 3


def register(commands: Any) -> None:
    """Add the ``register`` sub-command to ``commands`` (an argparse sub-parser action)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "register",
        help="register a CBCT to the planning CT (rigid, liver clip box)",
        description="Register a CBCT to the planning CT rigidly, focused on the liver and the "
        "right diaphragm dome; print the couch correction on IEC 61217 axes.",
    )
    parser.add_argument("ct", type=Path, help="planning CT: DICOM folder or MHA/NRRD/NIfTI file")
    parser.add_argument("cbct", type=Path, help="CBCT: DICOM folder or MHA/NRRD/NIfTI file")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("registration_output"),
        help="output folder (default %(default)s)",
    )
    parser.add_argument(
        "--patient-position",
        default=None,
        help="DICOM patient position, e.g. HFS (default: from the CBCT's, else the CT's, file)",
    )
    parser.add_argument(
        "--dof",
        type=int,
        choices=(3, 6),
        default=6,
        help="degrees of freedom the couch corrects (default 6; rotations are always fitted and "
        "reported, and with 3 a rotation above the protocol's tolerance makes the result "
        "questionable)",
    )
    parser.add_argument(
        "--isocentre",
        default=None,
        metavar="X,Y,Z",
        help="treatment isocentre in planning-CT LPS mm, e.g. --isocentre=-60,-10,10 (default: "
        "the --plan's isocentre, else the CBCT grid centre for a CBCT in the planning CT's "
        "frame; required for a CBCT in another frame without --plan)",
    )
    parser.add_argument(
        "--cbct-isocentre",
        default=None,
        metavar="X,Y,Z",
        help="the machine isocentre in the CBCT's own LPS mm, for a CBCT in another Frame of "
        "Reference (default 0,0,0: the origin of a reconstruction centred on the isocentre); "
        "given for a CBCT without a Frame of Reference UID, it places that CBCT too",
    )
    plan = parser.add_argument_group(
        "from the treatment plan (the planning CT must be DICOM, in the plan's frame of reference)"
    )
    plan.add_argument("--plan", type=Path, help="RT Plan: the treatment isocentre")
    plan.add_argument(
        "--plan-beam", help="beam number or name whose isocentre to use when the plan has several"
    )
    plan.add_argument("--structures", type=Path, help="RT Structure Set holding --roi")
    plan.add_argument("--roi", help="ROI whose extent is the clip box, e.g. LIVER or GTV")
    plan.add_argument(
        "--roi-margin-mm",
        type=float,
        default=0.0,
        help="margin around the ROI's extent, mm (default %(default)s; e.g. 10 for a GTV)",
    )
    parser.set_defaults(handler=_run)


class _Stopwatch:
    """Wall and CPU time between laps, s, by name.

    Wall time from ``time.perf_counter``, CPU time (every thread of this process) from
    ``time.process_time``: on a shared machine the wall time includes waiting for other jobs,
    the CPU time is what the step costs.
    """

    def __init__(self) -> None:
        self._started = self._last = time.perf_counter()
        self._cpu_started = self._cpu_last = time.process_time()
        self._laps: dict[str, float] = {}
        self._cpu_laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now, cpu_now = time.perf_counter(), time.process_time()
        self._laps[name] = now - self._last
        self._cpu_laps[name] = cpu_now - self._cpu_last
        self._last, self._cpu_last = now, cpu_now

    def laps(self) -> dict[str, float]:
        return {**self._laps, "total": time.perf_counter() - self._started}

    def cpu_laps(self) -> dict[str, float]:
        return {**self._cpu_laps, "total": time.process_time() - self._cpu_started}


def _parse_isocentre(
    text: str | None, option: str = "isocentre"
) -> tuple[float, float, float] | None:
    """``"x,y,z"`` (LPS mm) as three finite floats."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        flag = "--" + option.replace("_", "-")
        raise InvalidInputError(
            f"{flag} needs three numbers x,y,z in LPS mm, got {text!r}", field=option
        )
    return (values[0], values[1], values[2])


def _check_plan_arguments(arguments: argparse.Namespace) -> None:
    if arguments.plan is not None and arguments.isocentre is not None:
        raise InvalidInputError(
            "give the isocentre either with --isocentre or from --plan, not both",
            field="isocentre",
        )
    if arguments.plan is None and any(
        value is not None for value in (arguments.structures, arguments.roi, arguments.plan_beam)
    ):
        raise InvalidInputError(
            "--structures, --roi and --plan-beam need --plan (the isocentre the clip box must "
            "contain)",
            field="plan",
        )
    if (arguments.roi is None) != (arguments.structures is None):
        raise InvalidInputError("--roi and --structures go together", field="roi")


def _plan_focus(ct: Any, arguments: argparse.Namespace) -> Any:
    from igrt.imageio.rt_plan import read_rt_plan
    from igrt.imageio.rt_structures import read_structure_set
    from registration.plan_focus import plan_focus

    structures = None if arguments.structures is None else read_structure_set(arguments.structures)
    return plan_focus(
        ct,
        read_rt_plan(arguments.plan),
        structures=structures,
        roi=arguments.roi,
        roi_margin_mm=arguments.roi_margin_mm,
        beam=arguments.plan_beam,
    )


def _format_mm(values: tuple[float, float, float] | None) -> str:
    if values is None:
        return "none"
    x, y, z = values
    return f"lateral X {x:+.1f} mm, longitudinal Y {y:+.1f} mm, vertical Z {z:+.1f} mm"


def _write_outputs(
    out: Path, result: RigidRegistrationResult, ct: LoadedVolume, cbct: LoadedVolume
) -> None:
    """Overlay PNGs and, for a result that did not fail, the DICOM Spatial Registration."""
    from registration import PlaneValues, QualityValues, write_spatial_registration

    out.mkdir(parents=True, exist_ok=True)
    if result.overlays is not None:
        for stage in ("before", "after"):
            for plane in PlaneValues:
                images = result.overlays.image(plane, stage=stage)
                for kind in ("checkerboard", "blend"):
                    name = f"overlay_{plane.value}_{stage}_{kind}.png"
                    (out / name).write_bytes(images.png(kind))
    if result.quality is not QualityValues.FAILED:
        write_spatial_registration(
            result, out / "registration.dcm", planning_ct=ct, cbct=cbct, overwrite=True
        )


_ENGINE_MODULES = ("registration.rigid", "registration.dicom_reg")
"""What ``_run`` needs beyond the readers: scipy.ndimage, SimpleITK and pydicom."""


def _import_engine() -> None:
    for name in _ENGINE_MODULES:
        importlib.import_module(name)


def _run(arguments: argparse.Namespace) -> int:
    isocentre = _parse_isocentre(arguments.isocentre)
    cbct_isocentre = _parse_isocentre(arguments.cbct_isocentre, "cbct_isocentre")
    _check_plan_arguments(arguments)
    # Everything the command uses is imported before the clock starts (the DICOM REG writer
    # too): the laps time reading and computing, not loading libraries.
    _import_engine()
    from igrt.imageio import read_volume
    from registration import QualityValues, prepare_planning_reference, register_cbct_to_ct

    clock = _Stopwatch()
    ct = read_volume(arguments.ct)
    cbct = read_volume(arguments.cbct)
    clock.lap("read")

    position = arguments.patient_position or cbct.patient_position or ct.patient_position
    if position is None:
        raise InvalidInputError(
            "neither file states the patient position; pass --patient-position (e.g. HFS)",
            field="patient_position",
        )
    focus = _plan_focus(ct, arguments) if arguments.plan is not None else None
    # The reference is prepared once with its clip box: the plan's ROI box when there is one.
    reference = prepare_planning_reference(
        ct, clip_box=focus.clip_box if focus is not None else None
    )
    clock.lap("prepare")
    options: dict[str, Any] = {
        "patient_position": position,
        "degrees_of_freedom": arguments.dof,
        "overlays": True,
        "cbct_isocentre_lps_mm": cbct_isocentre,
    }
    if focus is not None:
        from registration.plan_focus import register_with_plan

        result = register_with_plan(reference, cbct, focus, **options)
    else:
        result = register_cbct_to_ct(reference, cbct, isocentre_lps_mm=isocentre, **options)
    clock.lap("register")
    out: Path = arguments.out
    try:
        _write_outputs(out, result, ct, cbct)
        clock.lap("write")
        document = {
            **result.to_dict(),
            "timing_s": clock.laps(),
            "timing_cpu_s": clock.cpu_laps(),
        }
        (out / "result.json").write_text(json.dumps(document, indent=2) + "\n")
    except OSError as error:
        raise InvalidInputError(f"cannot write to {out}: {error}", field="out") from error

    print(f"quality: {result.quality.value}")
    print(f"isocentre from: {result.reference_point_source}")
    placement = result.cbct_placement
    if placement is not None and placement.placed:
        assert placement.cbct_isocentre_lps_mm is not None
        x, y, z = (float(v) for v in placement.cbct_isocentre_lps_mm)
        print(
            f"CBCT frame {placement.cbct_frame_of_reference_uid} placed on the planning CT's "
            f"{placement.planning_frame_of_reference_uid}: its machine isocentre "
            f"({x:g}, {y:g}, {z:g}) mm ({placement.cbct_isocentre_source}) on the treatment "
            "isocentre"
        )
    print(f"clip box from: {result.clip_box_source}")
    for reason in result.reasons:
        print(f"  - {reason}")
    if result.quality is QualityValues.FAILED:
        print(f"igrt: registration failed; details in {out / 'result.json'}", file=sys.stderr)
        return EXIT_REGISTRATION_FAILED
    print(
        f"anatomy displacement (IEC patient support): "
        f"{_format_mm(result.anatomy_displacement_iec_support_mm)}"
    )
    print(
        f"couch correction (IEC patient support): "
        f"{_format_mm(result.couch_correction_iec_support_mm)}"
    )
    if result.couch_rotation_correction_iec_support_deg is not None:
        rx, ry, rz = result.couch_rotation_correction_iec_support_deg
        print(f"couch rotation correction (IEC X, Y, Z): {rx:+.2f}, {ry:+.2f}, {rz:+.2f} deg")
    print(f"uncertainty (1 SD): {result.uncertainty_mm:.2f} mm")
    flag = result.repositioning
    if flag is not None:
        if flag.required:
            axes = ", ".join(axis.value for axis in flag.exceeding_axes)
            print(f"REPOSITION: offset beyond {flag.threshold_mm:g} mm along {axes}")
        else:
            print(f"no repositioning needed (every axis within {flag.threshold_mm:g} mm)")
    print(f"written: {out}")
    return 0
