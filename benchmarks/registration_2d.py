"""Accuracy and speed of the 2D/2D registration of kV pairs to DRRs of the planning CT.

Run ``.venv/bin/python benchmarks/registration_2d.py [--cases N] [--binning B]`` from the
project root. It prints one line per case and ends with one JSON line.

Cases: the real chest CT (:func:`fixtures.anatomy.load_chest_ct`), head-first supine, isocentre
20 mm below the right dome apex; each case draws (seeded, ``numpy.random.default_rng(2026)``)
an anatomy displacement uniform in +/-15 mm per LPS axis and simulates an XVI kV pair at gantry
0 and 90 degrees (:func:`fixtures.fluoro.simulate_fluoro`, breathing held at end-exhale, raw
panel counts with quantum noise and scatter; the simulator's isocentre is moved by ``-shift``).

Timings (2 threads): ``prepare_s`` resamples the CT onto one beam grid per view, once per plan;
``drr_pair_s`` renders both DRRs once; ``register_s`` is the whole per-fraction registration
(its DRR pairs re-rendered at every iteration and the matches). Target: DRR pair plus match
<= 0.5 s; error <= 0.5 mm per axis.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.anatomy import load_chest_ct
from fixtures.fluoro import default_isocentre_lps_mm, simulate_fluoro
from fixtures.motion import BreathingMotionModel
from igrt.geometry import xvi_geometry
from igrt.sequence import IntensityValues
from registration import prepare_pair_reference, register_pair_to_drrs
from registration.drr import render_drr


class _Still:
    def sample(self, times_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.zeros_like(times_s)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--binning", type=int, default=4, choices=(2, 4))
    arguments = parser.parse_args(argv)
    model = BreathingMotionModel.from_anatomy(load_chest_ct())
    iso = default_isocentre_lps_mm(model)
    geometries = [xvi_geometry(binning=arguments.binning, gantry_deg=g) for g in (0.0, 90.0)]
    started = time.perf_counter()
    reference = prepare_pair_reference(
        model.anatomy.ct_hu, geometries, isocentre_lps_mm=iso, patient_position="HFS"
    )
    prepare_s = time.perf_counter() - started
    drr_times = []
    for _ in range(3):
        started = time.perf_counter()
        for beam, geometry in zip(reference.beam_volumes, geometries, strict=True):
            render_drr(beam, geometry)
        drr_times.append(time.perf_counter() - started)
    rng = np.random.default_rng(2026)
    errors: list[float] = []
    times: list[float] = []
    failures = 0
    for case in range(arguments.cases):
        shift = rng.uniform(-15.0, 15.0, size=3)
        views = [
            simulate_fluoro(
                model,
                _Still(),
                duration_s=1.0,
                fps=1.0,
                geometry=geometry,
                isocentre_lps_mm=iso - shift,
                intensity=IntensityValues.RAW,
                seed=case,
            ).sequence
            for geometry in geometries
        ]
        started = time.perf_counter()
        result = register_pair_to_drrs(reference, views)
        times.append(time.perf_counter() - started)
        if result.anatomy_displacement is None:
            failures += 1
            print(f"case {case}: FAILED {result.reasons}")
            continue
        error = np.asarray(result.anatomy_displacement.lps_mm) - shift
        errors.append(float(np.max(np.abs(error))))
        print(
            f"case {case}: shift {np.round(shift, 2).tolist()} mm, error "
            f"{np.round(error, 2).tolist()} mm, {result.quality.value}, "
            f"{result.iterations} iterations, {times[-1] * 1000:.0f} ms, shared-axis "
            f"disagreement {result.shared_axis_disagreement_mm:.2f} mm"
        )
    summary = {
        "cases": arguments.cases,
        "binning": arguments.binning,
        "failures": failures,
        "median_max_axis_error_mm": statistics.median(errors) if errors else None,
        "max_axis_error_mm": max(errors) if errors else None,
        "prepare_s": prepare_s,
        "drr_pair_s": statistics.median(drr_times),
        "register_s_median": statistics.median(times),
        "register_s_max": max(times),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
