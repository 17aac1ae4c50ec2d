"""Throughput of the DICOM receiver (``igrt dicom-receiver``) against DCMTK's ``storescp``.

Run ``.venv/bin/python benchmarks/dicom_receiver.py [--quick] [--repeats 2]`` from the project
root; needs DCMTK (``apt-get install dcmtk``: ``storescu``, ``storescp``) and ../shared/data.

Workloads, both sent by DCMTK's ``storescu`` in one association (``-R``, plus ``-xv`` for JPEG
2000 so the series goes as stored):

1. **CT series**: 200 slices synthesised from the real JPEG 2000 series
   (``dicom/ct_series_j2k``, 20 slices cycled; compressed pixel data kept byte for byte) with new
   Study, Series and SOP Instance UIDs, positions 2 mm apart, and a known Patient ID.
2. **Fluoroscopy**: one 500-frame XA object (uncompressed uint16), the phantom simulated on the
   XVI panel binned 2x (512 x 512) for 50 frames and cycled with continuing frame times.

Receivers, each in a fresh data directory per run, pinned to CPU 0 with ``taskset`` (``storescu``
on CPU 1) so that each has one core:

* ``igrt``: ``igrt dicom-receiver`` on SQLite, as deployed: every instance fsync'ed into the
  content-addressed store and its row committed (SQLite WAL, synchronous FULL) before the
  acknowledgement; then filed (patient, session) and processed after the acknowledgement.
* ``storescp``: DCMTK's ``storescp +B +xa`` (bit-preserving: writes the received dataset straight to
  a file, the fastest mode its documentation offers), no fsync, no database: the baseline an
  expert would set up for raw receive speed.

Both receivers get the same maximum PDU (``--max-pdu``, 128 KiB: storescp's largest). Reported:
instances/s and MB/s (file bytes / wall time of ``storescu``, 1 MB = 10^6 bytes), median of the
repeats, plus for ``igrt`` a check that every acknowledged instance has a committed row and a
stored file. The machine is shared (2 cores, other jobs running): timings are noisy. Prints a
table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATIENT_ID = "BENCH-DICOM-0001"
MAX_PDU = 131072
_CLI = (sys.executable, "-m", "igrt.cli.main")


def _pinned(cpu: int, command: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu), *command] if taskset and (os.cpu_count() or 1) > 1 else command


# --- workloads ------------------------------------------------------------------------------


def synthesise_ct(shared: Path, folder: Path, n_slices: int) -> list[Path]:
    """``n_slices`` instances cycling the real series' JPEG 2000 slices, with new UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    sources = [
        pydicom.dcmread(path) for path in sorted((shared / "dicom" / "ct_series_j2k").iterdir())
    ]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    origin = [float(v) for v in sources[0].ImagePositionPatient]
    paths = []
    for index in range(n_slices):
        dataset = sources[index % len(sources)].copy()
        uid = generate_uid()
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = uid
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.FrameOfReferenceUID = frame
        dataset.PatientID, dataset.PatientName = PATIENT_ID, "BENCH^DICOM"
        dataset.InstanceNumber = index + 1
        dataset.ImagePositionPatient = [origin[0], origin[1], origin[2] - 2.0 * index]
        dataset.SliceLocation = origin[2] - 2.0 * index
        path = folder / f"ct{index:04d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def synthesise_fluoro(folder: Path, n_frames: int, binning: int) -> Path:
    """One XA object of ``n_frames`` frames: 50 simulated frames cycled, times continuing."""
    import numpy as np

    from fixtures import breathing
    from fixtures.fluoro import simulate_fluoro
    from fixtures.phantom import make_phantom
    from igrt.geometry import xvi_geometry
    from igrt.imageio import write_fluoro_dicom
    from igrt.sequence import FluoroSequence

    fps, simulated = 5.0, min(50, n_frames)
    signal = breathing.regular(12.0, 4.0, simulated / fps, 50.0)
    clip = simulate_fluoro(
        make_phantom(),
        signal,
        duration_s=simulated / fps,
        fps=fps,
        geometry=xvi_geometry(binning=binning),
        grid_spacing_mm=(2.5, 2.0),
        seed=3,
    ).sequence
    picks = [i % clip.n_frames for i in range(n_frames)]
    sequence = FluoroSequence(
        clip.frames[picks],
        np.arange(n_frames, dtype=np.float64) / fps,
        tuple(clip.geometries[i] for i in picks),
        clip.intensity,
    )
    path = folder / "fluoro.dcm"
    write_fluoro_dicom(sequence, path, patient_id=PATIENT_ID, patient_name="BENCH^DICOM")
    return path


# --- receivers ------------------------------------------------------------------------------


@dataclass
class Running:
    process: subprocess.Popen[str]
    port: int
    data_dir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _make_clinic(data_dir: Path) -> None:
    from api.core.config import Settings
    from api.db.engine import make_engine, make_session_factory
    from api.db.migrate import upgrade
    from api.db.models import Patient, TreatmentSession

    settings = Settings(data_dir=data_dir, demo_data=False, first_run_token=False)
    data_dir.mkdir(parents=True)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with make_session_factory(engine)() as db:
        patient = Patient(external_id=PATIENT_ID, name="Dicom Bench")
        db.add(patient)
        db.add(
            TreatmentSession(
                patient=patient, kind="simulation", patient_position="HFS", protocol_version="v1"
            )
        )
        db.commit()
    engine.dispose()


def start_igrt(data_dir: Path) -> Running:
    _make_clinic(data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IGRT_")}
    env.update(
        IGRT_DATA_DIR=str(data_dir),
        IGRT_LOG_LEVEL="WARNING",
        IGRT_DICOM_MAX_PDU_BYTES=str(MAX_PDU),
        PYTHONPATH=str(ROOT),
    )
    command = [*_CLI, "dicom-receiver", "--port", "0", "--allow", "STORESCU=planning"]
    command += ["--series-settle-s", "5"]
    process = subprocess.Popen(
        _pinned(0, command), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    line = lines.get(timeout=300)
    return Running(process, int(line.rsplit(":", 1)[1]), data_dir)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_storescp(data_dir: Path) -> Running:
    data_dir.mkdir(parents=True)
    port = _free_port()
    command = ["storescp", "+B", "+xa", "-aet", "IGRT", "-pdu", str(MAX_PDU), "-od", str(data_dir)]
    command.append(str(port))
    process = subprocess.Popen(
        _pinned(0, command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    time.sleep(1.0)  # storescp prints nothing when listening; it binds at once
    return Running(process, port, data_dir)


def storescu(port: int, files: list[Path], j2k: bool) -> float:
    options = ["-R", "-xv"] if j2k else ["-R"]
    command = ["storescu", *options, "-aet", "STORESCU", "-aec", "IGRT", "127.0.0.1", str(port)]
    start = time.perf_counter()
    result = subprocess.run(
        _pinned(1, [*command, *map(str, files)]), capture_output=True, text=True, timeout=3600
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"storescu failed: {result.stderr[-2000:]}")
    return elapsed


def _igrt_stored(data_dir: Path) -> int:
    import hashlib

    from sqlalchemy import select

    from api.core.config import Settings
    from api.db.engine import make_engine, make_session_factory
    from api.db.models import DicomInstance

    settings = Settings(data_dir=data_dir)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as db:
            rows = list(db.scalars(select(DicomInstance)))
    finally:
        engine.dispose()
    intact = 0
    for row in rows:
        path = settings.store_dir / row.stored_path
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256:
            intact += 1
    return intact


# --- the run ----------------------------------------------------------------------------


def measure(name: str, files: list[Path], j2k: bool, repeats: int, scratch: Path) -> dict[str, Any]:
    total_bytes = sum(path.stat().st_size for path in files)
    results: dict[str, Any] = {"instances": len(files), "mb": total_bytes / 1e6}
    for receiver, start in (("igrt", start_igrt), ("storescp", start_storescp)):
        times, stored = [], []
        for repeat in range(repeats):
            running = start(scratch / f"{name}-{receiver}-{repeat}")
            try:
                times.append(storescu(running.port, files, j2k))
                if receiver == "igrt":
                    stored.append(_igrt_stored(running.data_dir))
            finally:
                running.stop()
                shutil.rmtree(running.data_dir, ignore_errors=True)
        seconds = statistics.median(times)
        results[receiver] = {
            "seconds": [round(t, 3) for t in times],
            "instances_per_s": round(len(files) / seconds, 2),
            "mb_per_s": round(total_bytes / 1e6 / seconds, 2),
        }
        if stored:
            results[receiver]["stored_intact"] = stored
            results[receiver]["all_acknowledged_stored"] = all(n == len(files) for n in stored)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 slices and 100 frames")
    parser.add_argument("--repeats", type=int, default=2)
    arguments = parser.parse_args()
    from fixtures.shared_data import shared_data_dir

    shared = shared_data_dir()
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            print(f"{tool} missing: apt-get install dcmtk", file=sys.stderr)
            return 2
    n_slices, n_frames = (50, 100) if arguments.quick else (200, 500)
    with tempfile.TemporaryDirectory(prefix="igrt-dicom-bench-") as temp:
        scratch = Path(temp)
        (scratch / "ct").mkdir()
        ct = synthesise_ct(shared, scratch / "ct", n_slices)
        fluoro = synthesise_fluoro(scratch, n_frames, binning=2)
        workloads = {
            f"ct_series_{n_slices}_j2k": measure("ct", ct, True, arguments.repeats, scratch),
            f"fluoroscopy_{n_frames}_frames": measure(
                "fluoro", [fluoro], False, arguments.repeats, scratch
            ),
        }
    print(f"{'workload':<26} {'receiver':<9} {'inst/s':>8} {'MB/s':>8}  runs (s)")
    for name, result in workloads.items():
        for receiver in ("igrt", "storescp"):
            row = result[receiver]
            print(
                f"{name:<26} {receiver:<9} {row['instances_per_s']:>8.2f} {row['mb_per_s']:>8.2f}"
                f"  {row['seconds']}"
            )
        print(f"{'':<26} ({result['instances']} instances, {result['mb']:.1f} MB)")
    document = {
        "benchmark": "dicom_receiver",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "max_pdu_bytes": MAX_PDU,
        "repeats": arguments.repeats,
        "workloads": workloads,
        "note": "shared 2-core machine; one core per receiver (taskset); timings noisy",
    }
    print(json.dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
