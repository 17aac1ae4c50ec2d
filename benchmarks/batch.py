"""``igrt motion batch`` on Dask: speed-up of 2 workers over 1 on 200 short recordings.

Run ``.venv/bin/python benchmarks/batch.py [--quick] [--recordings N]`` from the project root.
It prints a table and ends with one JSON line.

Recordings
----------
Four distinct short fluoroscopy clips of the digital phantom
(:func:`fixtures.fluoro.simulate_fluoro`, XVI panel binned 4x to 256x256, 5 fps, 12 s, regular
breathing of 6, 9, 12 and 15 mm), written as multi-frame DICOM and copied round-robin to
``--recordings`` files (200; ``--quick`` 40). Each is assessed as ``igrt motion batch`` does
(dome tracking, breathing analysis, decision, margins, ``assessment.json`` and ``trace.csv``),
without the PNG plot (``--no-plot``), so that tracking, not matplotlib, is what is measured.

Runs, in one process, in this order, each into a fresh output folder
---------------------------------------------------------------------
- **dask 1 worker** and **dask 2 workers**: :func:`igrt.cli.batch.dask_client` (a local cluster of
  worker processes, one thread each, as the command makes it) and :func:`igrt.cli.batch.run_batch`.
  The cluster's start is timed apart from the batch, and includes each worker importing igrt
  (worker processes are spawned, not forked: a cost the pool's forked processes do not pay);
  the speed-up is the ratio of batch times (and, for reference, of the times including the
  start).
- **pool 2 processes**: the implementation this replaced, ``concurrent.futures.ProcessPoolExecutor``
  with 2 processes over the same per-recording function (the baseline for Dask's overhead).

Every run must give the same summary (every recording assessed, identical numbers), or the
benchmark fails. Target (issue 15): speed-up >= 1.7 with 2 workers. The machine's load average
is printed before and after, and the CPU time the worker processes used: on a shared machine the
second worker may find no free core, which CPU/wall (cores actually used) shows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project, not benchmarks/

TARGET_SPEED_UP = 1.7
AMPLITUDES_MM = (6.0, 9.0, 12.0, 15.0)


def _make_recordings(folder: Path, n: int) -> None:
    from fixtures import breathing
    from fixtures.fluoro import simulate_fluoro
    from fixtures.phantom import make_phantom
    from igrt.geometry import xvi_geometry
    from igrt.imageio import write_fluoro_dicom

    phantom = make_phantom()
    clips = []
    for index, amplitude_mm in enumerate(AMPLITUDES_MM):
        simulation = simulate_fluoro(
            phantom,
            breathing.regular(amplitude_mm, 4.0, 12.0, 50.0),
            duration_s=12.0,
            fps=5.0,
            geometry=xvi_geometry(binning=4),
            grid_spacing_mm=(2.5, 2.0),
            seed=index,
        )
        path = folder.parent / f"clip{index}.dcm"
        write_fluoro_dicom(
            simulation.sequence, path, patient_id=f"B{index}", patient_name="Bench", uid_seed="b"
        )
        clips.append(path)
    folder.mkdir()
    for index in range(n):
        shutil.copy(clips[index % len(clips)], folder / f"rec{index:04d}.dcm")


def _settings() -> dict[str, Any]:
    from igrt.cli.main import build_parser
    from igrt.cli.motion import _settings as settings_of

    arguments = build_parser().parse_args(["motion", "batch", "in", "--out", "o", "--no-plot"])
    return settings_of(arguments)


def _dask_run(folder: Path, out: Path, workers: int) -> dict[str, Any]:
    from igrt.cli.batch import dask_client, plan_batch, run_batch

    plan = plan_batch(folder, out)
    started = time.perf_counter()
    with dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
        client.run(_import_igrt)
        cpu_before = client.run(time.process_time)
        ready = time.perf_counter()
        rows = run_batch(client, plan, _settings(), show_progress=False)
        finished = time.perf_counter()
        cpu_after = client.run(time.process_time)
    cpu_s = sum(cpu_after[worker] - cpu_before[worker] for worker in cpu_before)
    return {"start_s": ready - started, "batch_s": finished - ready, "cpu_s": cpu_s, "rows": rows}


def _import_igrt() -> None:
    import igrt.cli.batch
    import igrt.imageio
    import igrt.motion_assessment  # noqa: F401


def _pool_run(folder: Path, out: Path, workers: int) -> dict[str, Any]:
    from igrt.cli.batch import assess_recording, plan_batch, run_batch

    plan = plan_batch(folder, out)
    settings = _settings()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        ready = time.perf_counter()
        futures = [
            pool.submit(assess_recording, r, plan.folder_of(r), settings) for r in plan.recordings
        ]
        for future in futures:
            future.result()
        finished = time.perf_counter()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's, joined
    cpu_s = sum(
        getattr(children_after, field) - getattr(children_before, field)
        for field in ("ru_utime", "ru_stime")
    )
    # The summary as the command writes it (nothing is pending any more: no cluster needed).
    rows = run_batch(_NoClient(), plan, settings, show_progress=False)
    return {"start_s": ready - started, "batch_s": finished - ready, "cpu_s": cpu_s, "rows": rows}


class _NoClient:
    """run_batch with nothing pending never submits."""

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the pool run left a recording unassessed")


def _comparable(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (Path(r["recording"]).name, r["status"], r["excursion_median_mm"], r["recommendation"])
        for r in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 recordings instead of 200")
    parser.add_argument("--recordings", type=int, default=None)
    arguments = parser.parse_args()
    n = arguments.recordings or (40 if arguments.quick else 200)
    os.environ.setdefault("MPLBACKEND", "Agg")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="igrt-bench-batch-") as scratch:
        folder = Path(scratch) / "in"
        print(f"simulating 4 clips and copying them to {n} recordings ...", flush=True)
        _make_recordings(folder, n)
        runs = {
            "dask 1 worker": _dask_run(folder, Path(scratch) / "dask1", 1),
            "dask 2 workers": _dask_run(folder, Path(scratch) / "dask2", 2),
            "pool 2 processes": _pool_run(folder, Path(scratch) / "pool2", 2),
        }
    load_after = os.getloadavg()
    reference = _comparable(runs["dask 1 worker"]["rows"])
    for name, run in runs.items():
        assert all(r["status"] == "ok" for r in run["rows"]), f"{name}: a recording failed"
        assert _comparable(run["rows"]) == reference, f"{name}: results differ from 1 worker"

    one, two = runs["dask 1 worker"], runs["dask 2 workers"]
    speed_up = one["batch_s"] / two["batch_s"]
    speed_up_with_start = (one["start_s"] + one["batch_s"]) / (two["start_s"] + two["batch_s"])
    print()
    header = f"{'run':<18} {'start s':>8} {'batch s':>8} {'rec/s':>7} {'speed-up':>9}"
    print(f"{header} {'CPU s/rec':>10} {'CPU/wall':>9}")
    for name, run in runs.items():
        print(
            f"{name:<18} {run['start_s']:8.1f} {run['batch_s']:8.1f} "
            f"{n / run['batch_s']:7.2f} {one['batch_s'] / run['batch_s']:9.2f} "
            f"{run['cpu_s'] / n:10.3f} {run['cpu_s'] / run['batch_s']:9.2f}"
        )
    print(
        "CPU s/rec: CPU time of the worker processes per recording (Dask's own threads "
        "included); CPU/wall: cores the run actually got (2.0 would be both, all the time)"
    )
    print()
    print(
        f"speed-up of 2 Dask workers over 1: {speed_up:.2f} (target >= {TARGET_SPEED_UP}); "
        f"{speed_up_with_start:.2f} counting the cluster's start"
    )
    print(
        f"load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f} on "
        f"{os.cpu_count()} CPUs: a load above the CPU count means other work shared the cores"
    )
    print(
        json.dumps(
            {
                "benchmark": "batch",
                "recordings": n,
                "dask_1_worker_batch_s": round(one["batch_s"], 2),
                "dask_2_workers_batch_s": round(two["batch_s"], 2),
                "pool_2_processes_batch_s": round(runs["pool 2 processes"]["batch_s"], 2),
                "dask_1_worker_cpu_s_per_recording": round(one["cpu_s"] / n, 4),
                "dask_2_workers_cpu_s_per_recording": round(two["cpu_s"] / n, 4),
                "pool_2_processes_cpu_s_per_recording": round(
                    runs["pool 2 processes"]["cpu_s"] / n, 4
                ),
                "dask_1_worker_start_s": round(one["start_s"], 2),
                "dask_2_workers_start_s": round(two["start_s"], 2),
                "speed_up_2_over_1": round(speed_up, 3),
                "speed_up_2_over_1_with_start": round(speed_up_with_start, 3),
                "target_speed_up": TARGET_SPEED_UP,
                "meets_target": speed_up >= TARGET_SPEED_UP,
                "load_average_before": round(load_before[0], 2),
                "load_average_after": round(load_after[0], 2),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
