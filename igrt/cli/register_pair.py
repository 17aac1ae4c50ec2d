"""``igrt register-pair``: a kV/MV image pair registered to DRRs of the planning CT.

Each view is a DICOM RT Image (a portal image, or a kV image whose source angle is given with
``--kv-source-deg``) or a projection recording with geometry (multi-frame DICOM, MHA, a vendor
folder: its first frame). The isocentre comes from ``--isocentre`` or ``--plan`` (as for
``igrt register``). Writes ``result.json``: the same document as the 3D path (quality, reasons,
anatomy displacement and couch correction in LPS and IEC 61217, repositioning flag,
uncertainty), plus the per-view matches and where the isocentre came from. Exit codes: 0
success, 2 bad input, 3 a failed registration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from igrt.errors import InvalidInputError

__all__ = ["register"]

EXIT_REGISTRATION_FAILED = 3


def register(commands: Any) -> None:
    """Add the ``register-pair`` sub-command to ``commands``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "register-pair",
        help="register a kV/MV image pair to DRRs of the planning CT",
        description="Register two (or more) projection images at different gantry angles to "
        "DRRs of the planning CT: a 3D translation and the IEC 61217 couch correction.",
    )
    parser.add_argument("ct", type=Path, help="planning CT: DICOM folder or MHA/NRRD/NIfTI")
    parser.add_argument("views", type=Path, nargs="+", metavar="VIEW", help="RT Image or recording")
    parser.add_argument("--out", type=Path, default=Path("pair_registration_output"))
    parser.add_argument("--patient-position", default=None, help="e.g. HFS (default: the CT's)")
    parser.add_argument("--isocentre", default=None, metavar="X,Y,Z", help="LPS mm")
    parser.add_argument("--plan", type=Path, help="RT Plan: the treatment isocentre")
    parser.add_argument("--plan-beam", help="beam whose isocentre to use (several isocentres)")
    parser.add_argument(
        "--structures", type=Path, help="RT Structure Set the plan references (its frame)"
    )
    parser.add_argument(
        "--modalities",
        default=None,
        help="beam of each view, comma-separated kv or mv (default: kv for every view)",
    )
    parser.add_argument(
        "--intensity",
        choices=("raw", "line_integral"),
        default="raw",
        help="what the RT Images' pixels mean (default raw panel signal)",
    )
    parser.add_argument(
        "--kv-source-deg",
        default=None,
        help="kV source angle of each RT Image view, comma-separated (RT Images state only the "
        "treatment gantry angle); empty entries take the file's",
    )
    parser.set_defaults(handler=_run)


def _per_view(text: str | None, n_views: int, name: str) -> list[str]:
    if text is None:
        return [""] * n_views
    values = [part.strip() for part in text.split(",")]
    if len(values) != n_views:
        raise InvalidInputError(
            f"--{name} needs one value per view ({n_views}), got {len(values)}", field=name
        )
    return values


def _views(arguments: argparse.Namespace) -> list[Any]:
    from igrt.imageio import read_rt_image
    from igrt.motion_assessment import load_recording
    from igrt.sequence import FluoroSequence, IntensityValues
    from registration import ImagingModalityValues, KvView

    n_views = len(arguments.views)
    modalities = [m or "kv" for m in _per_view(arguments.modalities, n_views, "modalities")]
    angles = _per_view(arguments.kv_source_deg, n_views, "kv-source-deg")
    views = []
    for path, modality, angle in zip(arguments.views, modalities, angles, strict=True):
        if _is_rt_image(path):
            try:
                source_deg = float(angle) if angle else None
            except ValueError:
                raise InvalidInputError(f"bad angle {angle!r}", field="kv-source-deg") from None
            image = read_rt_image(path, imaging_source_gantry_deg=source_deg)
            intensity = IntensityValues(arguments.intensity)
            views.append(
                KvView.from_rt_image(image, intensity=intensity, modality=modality.upper())
            )
            continue
        recording = load_recording(path)
        if not isinstance(recording, FluoroSequence):
            raise InvalidInputError(f"{path} is a trace, not an image", field="views")
        view = KvView.from_sequence(recording)
        beam = ImagingModalityValues.parse(modality.upper())
        views.append(KvView(view.image, view.geometry, view.intensity, beam))
    return views


def _is_rt_image(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() != ".dcm":
        return False
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except (OSError, pydicom.errors.InvalidDicomError):
        return False
    return str(header.get("Modality", "")) == "RTIMAGE"


def _isocentre(ct: Any, arguments: argparse.Namespace) -> tuple[list[float], str]:
    from igrt.cli.register import _parse_isocentre
    from igrt.imageio.rt_plan import read_rt_plan
    from igrt.imageio.rt_structures import read_structure_set
    from registration.plan_focus import plan_focus

    if (arguments.plan is None) == (arguments.isocentre is None):
        raise InvalidInputError(
            "give the isocentre with --isocentre or --plan (one of them)", field="isocentre"
        )
    if arguments.plan is None:
        point = _parse_isocentre(arguments.isocentre)
        assert point is not None
        return list(point), "given"
    structures = None if arguments.structures is None else read_structure_set(arguments.structures)
    focus = plan_focus(
        ct, read_rt_plan(arguments.plan), structures=structures, beam=arguments.plan_beam
    )
    return [float(v) for v in focus.isocentre_lps_mm], focus.isocentre_source


def _run(arguments: argparse.Namespace) -> int:
    from igrt.imageio import read_volume
    from registration import QualityValues, register_pair_to_drrs

    ct = read_volume(arguments.ct)
    position = arguments.patient_position or ct.patient_position
    if position is None:
        raise InvalidInputError(
            "the CT states no patient position; pass --patient-position (e.g. HFS)",
            field="patient_position",
        )
    isocentre, source = _isocentre(ct, arguments)
    result = register_pair_to_drrs(
        ct, _views(arguments), isocentre_lps_mm=isocentre, patient_position=position
    )
    document = {"kind": "pair_2d", "isocentre_source": source, **result.to_dict()}
    out: Path = arguments.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(document, indent=2) + "\n")
    except OSError as error:
        raise InvalidInputError(f"cannot write to {out}: {error}", field="out") from error
    print(f"quality: {result.quality.value}")
    for reason in result.reasons:
        print(f"  - {reason}")
    print(f"isocentre from: {source}")
    if result.quality is QualityValues.FAILED:
        print(f"igrt: registration failed; details in {out / 'result.json'}", file=sys.stderr)
        return EXIT_REGISTRATION_FAILED
    couch = result.couch_correction_iec_support_mm
    assert couch is not None
    print(
        f"couch correction (IEC patient support): lateral X {couch[0]:+.1f} mm, "
        f"longitudinal Y {couch[1]:+.1f} mm, vertical Z {couch[2]:+.1f} mm"
    )
    print(f"uncertainty (1 SD): {result.uncertainty_mm:.2f} mm")
    flag = result.repositioning
    if flag is not None and flag.required:
        print(f"REPOSITION: offset beyond {flag.threshold_mm:g} mm")
    print(f"written: {out}")
    return 0
