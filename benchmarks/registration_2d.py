"""Accuracy and speed of the 2D/2D registration of kV and MV-kV pairs to DRRs of the planning CT.

Run ``.venv/bin/python benchmarks/registration_2d.py [--quick] [--cases N] [--binning B]`` from
the project root. It prints one line per case, a table per pair type and ends with one JSON
line.

Cases: the real chest CT (:func:`fixtures.anatomy.load_chest_ct`), head-first supine, isocentre
20 mm below the right dome apex; each case draws (seeded, ``numpy.random.default_rng(2026)``)
an anatomy displacement uniform in +/-15 mm per LPS axis, and both pair types are registered
on the same displacements:

- ``kV-kV``: an XVI kV pair at gantry 0 and 90 degrees (:func:`fixtures.fluoro.simulate_fluoro`,
  breathing held at end-exhale, raw panel counts with quantum noise and scatter; the
  simulator's isocentre is moved by ``-shift``).
- ``MV-kV``: an MV portal image at gantry 0 on an aS1000-like EPID (1024 x 768 at 0.392 mm,
  SID 1500 mm, binned like the kV panel; :func:`fixtures.portal.simulate_portal_image`: a 6 MV
  attenuation map that is not the registration's, low bone contrast, EPID noise) with the kV
  image at gantry 90. The MV view's DRR uses the registration's MV attenuation.

Timings (2 threads): ``prepare_s`` resamples the CT onto one beam grid per view, once per plan;
``drr_pair_s`` renders both DRRs once; ``register_s`` is the whole per-fraction registration
(its DRR pairs re-rendered at every iteration and the matches). Target: DRR pair plus match
<= 0.5 s; error <= 0.5 mm per axis. ``--quick`` runs 3 cases per pair type.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.anatomy import load_chest_ct
from fixtures.fluoro import default_isocentre_lps_mm, simulate_fluoro
from fixtures.motion import BreathingMotionModel
from fixtures.portal import simulate_portal_image
from igrt.geometry import ProjectionGeometry, xvi_geometry
from igrt.sequence import IntensityValues
from registration import (
    ImagingModalityValues,
    KvView,
    PairReference,
    prepare_pair_reference,
    register_pair_to_drrs,
)
from registration.drr import render_drr

QUICK_CASES = 3
TARGET_ERROR_MM = 0.5


class _Still:
    def sample(self, times_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.zeros_like(times_s)


def epid_geometry(binning: int, gantry_deg: float) -> ProjectionGeometry:
    """aS1000-like EPID: 1024 x 768 at 0.392 mm, SID 1500 mm, binned ``binning`` times."""
    full = ProjectionGeometry(
        sad_mm=1000.0,
        sdd_mm=1500.0,
        pixel_pitch_mm=(0.392, 0.392),
        detector_shape=(768, 1024),
        gantry_deg=gantry_deg,
    )
    return full.binned(binning)


@dataclass
class PairRun:
    """Cases of one pair type."""

    name: str
    reference: PairReference
    geometries: list[ProjectionGeometry]
    prepare_s: float
    drr_pair_s: float = 0.0
    errors: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    failures: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "cases": len(self.times),
            "failures": self.failures,
            "median_max_axis_error_mm": statistics.median(self.errors) if self.errors else None,
            "max_axis_error_mm": max(self.errors) if self.errors else None,
            "prepare_s": self.prepare_s,
            "drr_pair_s": self.drr_pair_s,
            "register_s_median": statistics.median(self.times) if self.times else None,
            "register_s_max": max(self.times) if self.times else None,
        }


def _prepare(
    name: str,
    model: BreathingMotionModel,
    iso: npt.NDArray[np.float64],
    geometries: list[ProjectionGeometry],
    modalities: list[ImagingModalityValues],
) -> PairRun:
    started = time.perf_counter()
    reference = prepare_pair_reference(
        model.anatomy.ct_hu,
        geometries,
        isocentre_lps_mm=iso,
        patient_position="HFS",
        modalities=modalities,
    )
    run = PairRun(name, reference, geometries, time.perf_counter() - started)
    drr_times = []
    for _ in range(3):
        started = time.perf_counter()
        for geometry, modality in zip(geometries, modalities, strict=True):
            render_drr(reference.beam_volume_for(geometry, modality), geometry)
        drr_times.append(time.perf_counter() - started)
    run.drr_pair_s = statistics.median(drr_times)
    return run


def _kv_view(
    model: BreathingMotionModel,
    geometry: ProjectionGeometry,
    iso: npt.NDArray[np.float64],
    shift: npt.NDArray[np.float64],
    seed: int,
) -> KvView:
    sequence = simulate_fluoro(
        model,
        _Still(),
        duration_s=1.0,
        fps=1.0,
        geometry=geometry,
        isocentre_lps_mm=iso - shift,
        intensity=IntensityValues.RAW,
        seed=seed,
    ).sequence
    return KvView.from_sequence(sequence)


def _register(run: PairRun, case: int, shift: npt.NDArray[np.float64], views: list[KvView]) -> None:
    started = time.perf_counter()
    result = register_pair_to_drrs(run.reference, views)
    run.times.append(time.perf_counter() - started)
    modalities = "+".join(f"{v.modality.value}@{v.gantry_deg:g}" for v in result.views)
    if result.anatomy_displacement is None:
        run.failures += 1
        print(f"{run.name} case {case}: FAILED {result.reasons}")
        return
    error = np.asarray(result.anatomy_displacement.lps_mm) - shift
    run.errors.append(float(np.max(np.abs(error))))
    print(
        f"{run.name} case {case} ({modalities}): shift {np.round(shift, 2).tolist()} mm, error "
        f"{np.round(error, 2).tolist()} mm, {result.quality.value}, {result.iterations} "
        f"iterations, {run.times[-1] * 1000:.0f} ms, shared-axis disagreement "
        f"{result.shared_axis_disagreement_mm:.2f} mm, NCC "
        f"{'/'.join(f'{v.ncc_after:.2f}' for v in result.views)}"
    )


def _print_table(runs: list[PairRun]) -> None:
    header = (
        f"{'pair':<7}{'cases':>6}{'failed':>7}{'median err mm':>14}{'max err mm':>11}"
        f"{'<=0.5 mm':>9}{'prep s':>8}{'DRR pair ms':>12}{'reg ms med':>11}{'reg ms max':>11}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        s = run.summary()
        median = s["median_max_axis_error_mm"]
        worst = s["max_axis_error_mm"]
        within = "yes" if worst is not None and worst <= TARGET_ERROR_MM else "no"
        print(
            f"{run.name:<7}{s['cases']:>6}{s['failures']:>7}"
            f"{'-' if median is None else f'{median:.3f}':>14}"
            f"{'-' if worst is None else f'{worst:.3f}':>11}{within:>9}{s['prepare_s']:>8.2f}"
            f"{s['drr_pair_s'] * 1000:>12.0f}{s['register_s_median'] * 1000:>11.0f}"
            f"{s['register_s_max'] * 1000:>11.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, help="cases per pair type (default 8)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CASES} cases per pair type")
    parser.add_argument("--binning", type=int, default=4, choices=(2, 4))
    arguments = parser.parse_args(argv)
    n_cases = QUICK_CASES if arguments.quick else arguments.cases
    model = BreathingMotionModel.from_anatomy(load_chest_ct())
    iso = default_isocentre_lps_mm(model)
    kv, mv = ImagingModalityValues.KV, ImagingModalityValues.MV
    kv_pair = [xvi_geometry(binning=arguments.binning, gantry_deg=g) for g in (0.0, 90.0)]
    mv_kv_pair = [epid_geometry(arguments.binning, 0.0), kv_pair[1]]
    runs = [
        _prepare("kV-kV", model, iso, kv_pair, [kv, kv]),
        _prepare("MV-kV", model, iso, mv_kv_pair, [mv, kv]),
    ]
    rng = np.random.default_rng(2026)
    for case in range(n_cases):
        shift = rng.uniform(-15.0, 15.0, size=3)
        kv_views = [_kv_view(model, g, iso, shift, seed=case) for g in kv_pair]
        _register(runs[0], case, shift, kv_views)
        portal = simulate_portal_image(
            model.anatomy.ct_hu,
            mv_kv_pair[0],
            isocentre_lps_mm=iso,
            anatomy_displacement_lps_mm=shift,
            seed=case,
        )
        mv_view = KvView(portal.astype(np.float32), mv_kv_pair[0], IntensityValues.RAW, mv)
        _register(runs[1], case, shift, [mv_view, kv_views[1]])
    print()
    _print_table(runs)
    kv_summary = runs[0].summary()
    summary = {
        "cases": n_cases,
        "binning": arguments.binning,
        "failures": kv_summary["failures"],
        "median_max_axis_error_mm": kv_summary["median_max_axis_error_mm"],
        "max_axis_error_mm": kv_summary["max_axis_error_mm"],
        "prepare_s": kv_summary["prepare_s"],
        "drr_pair_s": kv_summary["drr_pair_s"],
        "register_s_median": kv_summary["register_s_median"],
        "register_s_max": kv_summary["register_s_max"],
        "quick": bool(arguments.quick),
        "mv_kv": runs[1].summary(),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
