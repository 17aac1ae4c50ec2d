"""``igrt simulate fluoro|cbct``: write simulated acquisitions with their ground truth."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from igrt.errors import InvalidInputError

_BREATHING_KINDS = ("regular", "irregular", "holds", "real")
_PATIENT_ID = "IGRT-SIM-0001"
_PATIENT_NAME = "Simulated^Patient"


def register(commands: Any) -> None:
    """Add ``simulate fluoro`` and ``simulate cbct`` to ``commands``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "simulate",
        help="write simulated fluoroscopy or CBCT with ground truth",
        description="Simulate acquisitions of a breathing patient with known ground truth.",
    )
    kinds = parser.add_subparsers(dest="modality", required=True, metavar="MODALITY")

    fluoro = kinds.add_parser(
        "fluoro",
        help="kV fluoroscopy (fixed gantry) or a CBCT projection sequence (rotating gantry)",
    )
    _add_common(fluoro)
    fluoro.add_argument("--amplitude-mm", type=float, default=12.0, help="liver SI peak-to-peak")
    fluoro.add_argument("--period-s", type=float, default=4.0, help="mean breathing period")
    fluoro.add_argument("--duration-s", type=float, default=20.0)
    fluoro.add_argument("--fps", type=float, default=7.5, help="frames per second")
    fluoro.add_argument("--breathing", choices=_BREATHING_KINDS, default="regular")
    fluoro.add_argument(
        "--trace", type=Path, help="real trace CSV for --breathing real (default: the first)"
    )
    fluoro.add_argument("--gantry", choices=("fixed", "rotating"), default="fixed")
    fluoro.add_argument("--gantry-deg", type=float, default=0.0, help="kV source angle at t = 0")
    fluoro.add_argument(
        "--gantry-speed-deg-per-s",
        type=float,
        default=3.0,
        help="rotation speed with --gantry rotating (3 deg/s: 360 deg in 2 min)",
    )
    fluoro.add_argument(
        "--photons-per-pixel", type=float, default=5000.0, help="incident photons per pixel"
    )
    fluoro.add_argument("--intensity", choices=("raw", "log"), default="raw")
    fluoro.set_defaults(handler=_simulate_fluoro)

    cbct = kinds.add_parser("cbct", help="a planning CT and a CBCT at a known rigid offset")
    _add_common(cbct)
    cbct.add_argument(
        "--shift-mm",
        type=_triple,
        default=(0.0, 0.0, 0.0),
        help="anatomy displacement of the CBCT day relative to the plan, LPS mm: x,y,z",
    )
    cbct.add_argument(
        "--rotation-deg", type=_triple, default=(0.0, 0.0, 0.0), help="rotation about LPS x,y,z"
    )
    cbct.add_argument(
        "--method",
        choices=("fast", "rtk"),
        default="fast",
        help="fast: image-domain CBCT artefacts; rtk: forward projection + FDK (needs [sim])",
    )
    cbct.add_argument(
        "--cbct-frame",
        choices=("planning", "room"),
        default="planning",
        help="planning: the CBCT in the planning CT's Frame of Reference (registers as it is); "
        "room: as a linac writes it, its own Frame of Reference with the machine isocentre at "
        "its LPS origin (register it with --isocentre, the truth's isocentre_lps_mm, or --plan)",
    )
    cbct.set_defaults(handler=_simulate_cbct)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--anatomy", choices=("ct", "phantom"), default="ct")
    parser.add_argument("--patient-position", default="HFS", help="DICOM patient position")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")


def _triple(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers x,y,z, got {text!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected three finite numbers x,y,z, got {text!r}")
    return (values[0], values[1], values[2])


def _anatomy(name: str) -> Any:
    if name == "phantom":
        from fixtures.phantom import PhantomParameters, make_phantom

        # Enough air around the body that a CBCT field of view centred on the liver stays
        # inside the phantom's grid.
        return make_phantom(PhantomParameters(air_margin_mm=45.0))
    from fixtures.anatomy import load_chest_ct

    return load_chest_ct()


def _breathing(arguments: argparse.Namespace) -> Any:
    from fixtures import breathing

    rate_hz = max(50.0, 4.0 * arguments.fps)
    kind = arguments.breathing
    if kind == "regular":
        return breathing.regular(
            arguments.amplitude_mm,
            arguments.period_s,
            arguments.duration_s,
            rate_hz,
            seed=arguments.seed,
        )
    if kind == "irregular":
        return breathing.irregular(
            arguments.amplitude_mm,
            arguments.period_s,
            arguments.duration_s,
            rate_hz,
            drift_mm_per_min=1.0,
            seed=arguments.seed,
        )
    if kind == "holds":
        signal = breathing.breath_holds(
            arguments.amplitude_mm, arguments.period_s, rate_hz, seed=arguments.seed
        )
        if signal.duration_s < arguments.duration_s:
            raise InvalidInputError(
                f"the breath-hold protocol lasts {signal.duration_s:.0f} s; "
                f"ask for at most that with --duration-s",
                field="duration_s",
            )
        return signal
    trace = arguments.trace or _calmest_real_trace(breathing.list_real_traces())
    return breathing.replay_real_trace(
        trace, arguments.amplitude_mm, rate_hz, duration_s=arguments.duration_s
    )


def _calmest_real_trace(traces: list[Path]) -> Path:
    """The lower-abdominal marker of a calm session: the most liver-like of the real traces."""
    for trace in traces:
        if trace.name == "201205101522-LAC-1-N-138-6.csv":
            return trace
    if not traces:
        raise InvalidInputError("no real breathing traces found; pass --trace", field="trace")
    return traces[0]


def _simulate_fluoro(arguments: argparse.Namespace) -> int:
    from fixtures.fluoro import simulate_fluoro
    from fixtures.panel import PanelPhysics
    from igrt.geometry import xvi_geometry
    from igrt.imageio import write_fluoro_dicom, write_fluoro_mha
    from igrt.sequence import IntensityValues

    signal = _breathing(arguments)
    rotating = arguments.gantry == "rotating"
    simulation = simulate_fluoro(
        _anatomy(arguments.anatomy),
        signal,
        duration_s=arguments.duration_s,
        fps=arguments.fps,
        geometry=xvi_geometry(gantry_deg=arguments.gantry_deg),
        gantry_speed_deg_per_s=arguments.gantry_speed_deg_per_s if rotating else 0.0,
        physics=PanelPhysics(photons_per_pixel=arguments.photons_per_pixel),
        patient_position=arguments.patient_position,
        intensity=IntensityValues.RAW
        if arguments.intensity == "raw"
        else IntensityValues.LINE_INTEGRAL,
        seed=arguments.seed,
    )
    out: Path = arguments.out
    out.mkdir(parents=True, exist_ok=True)
    uid_seed = f"igrt-sim-fluoro-{arguments.anatomy}-{arguments.seed}"
    write_fluoro_dicom(
        simulation.sequence,
        out / "fluoro.dcm",
        uid_seed=uid_seed,
        patient_position=arguments.patient_position,
        patient_id=_PATIENT_ID,
        patient_name=_PATIENT_NAME,
    )
    write_fluoro_mha(simulation.sequence, out / "fluoro.mha")
    first = simulation.sequence.geometries[0]
    document = {
        "kind": "fluoro" if not rotating else "cbct_projections",
        "anatomy": arguments.anatomy,
        "breathing": {
            "kind": arguments.breathing,
            "amplitude_mm": arguments.amplitude_mm,
            "period_s": arguments.period_s,
        },
        "seed": arguments.seed,
        "geometry": {
            "sad_mm": first.sad_mm,
            "sdd_mm": first.sdd_mm,
            "pixel_pitch_mm": list(first.pixel_pitch_mm),
            "detector_shape_rows_columns": list(first.detector_shape),
            "detector_offset_mm": list(first.detector_offset_mm),
        },
        "truth": simulation.truth.to_dict(),
    }
    (out / "truth.json").write_text(json.dumps(document, indent=1))
    truth = simulation.truth
    print(
        f"wrote {simulation.sequence.n_frames} frames to {out}: fluoro.dcm, fluoro.mha, "
        f"truth.json; dome apex SI range {truth.apex_si_isocentre_mm.min():.1f} to "
        f"{truth.apex_si_isocentre_mm.max():.1f} mm at the isocentre"
    )
    return 0


def _simulate_cbct(arguments: argparse.Namespace) -> int:
    from fixtures.cbct import in_room_frame, simulate_cbct
    from fixtures.fluoro import default_isocentre_lps_mm
    from fixtures.motion import BreathingMotionModel
    from igrt.imageio import write_ct_series, write_volume_mha
    from igrt.imageio._dicom_attributes import make_uid
    from igrt.volume import Volume

    anatomy = _anatomy(arguments.anatomy)
    isocentre = default_isocentre_lps_mm(BreathingMotionModel.from_anatomy(anatomy))
    uid_seed = f"igrt-sim-cbct-{arguments.anatomy}-{arguments.seed}"
    planning_ct = anatomy.ct_hu
    room_frame = arguments.cbct_frame == "room"
    if room_frame and planning_ct.frame_of_reference_uid is None:
        # Both files must state their frames (MHA too), or a reader would take them as one.
        planning_ct = Volume(
            planning_ct.array,
            planning_ct.spacing_mm,
            planning_ct.origin_lps_mm,
            planning_ct.direction,
            frame_of_reference_uid=make_uid(uid_seed, "frame", "planning"),
        )
    simulation = simulate_cbct(
        planning_ct,
        isocentre_lps_mm=isocentre,
        anatomy_displacement_lps_mm=arguments.shift_mm,
        rotation_deg=arguments.rotation_deg,
        method=arguments.method,
        seed=arguments.seed,
    )
    if room_frame:
        simulation = in_room_frame(simulation, make_uid(uid_seed, "frame", "room"))
    out: Path = arguments.out
    out.mkdir(parents=True, exist_ok=True)
    # In the planning frame the CBCT shares the planning CT's Frame of Reference (the anatomy
    # moved, not the coordinates); in the room frame it keeps its own.
    frame_of_reference_uid: str | None = None
    for name, volume, modality in (
        ("planning_ct", planning_ct, "CT"),
        ("cbct", simulation.cbct_hu, "CT"),
    ):
        write_volume_mha(volume, out / f"{name}.mha")
        written = write_ct_series(
            volume,
            out / name,
            patient_position=arguments.patient_position,
            series_description=f"igrt simulated {name}",
            uid_seed=f"{uid_seed}-{name}",
            frame_of_reference_uid=frame_of_reference_uid,
            modality=modality,
            overwrite=True,
            patient_id=_PATIENT_ID,
            patient_name=_PATIENT_NAME,
        )
        frame_of_reference_uid = None if room_frame else written.frame_of_reference_uid
    document = {
        "kind": "cbct",
        "anatomy": arguments.anatomy,
        "seed": arguments.seed,
        "patient_position": arguments.patient_position,
        "cbct_frame": arguments.cbct_frame,
        "truth": simulation.truth.to_dict(),
    }
    (out / "truth.json").write_text(json.dumps(document, indent=1))
    print(f"wrote planning_ct/, cbct/ (DICOM), planning_ct.mha, cbct.mha, truth.json to {out}")
    return 0
