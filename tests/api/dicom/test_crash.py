"""A kill -9 of the receiver process between instances loses none that it acknowledged."""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from api.db.engine import make_engine, make_session_factory
from api.db.models import DicomInstance, VolumeUpload
from api.dicom.receiver import Status
from tests.api.dicom.conftest import Clinic, send

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

_PROJECT_ROOT = Path(__file__).resolve().parents[3]


class ReceiverProcess:
    """``igrt dicom-receiver`` in its own process, on a port the OS picked."""

    def __init__(self, data_dir: Path) -> None:
        env = {
            **os.environ,
            "IGRT_DATA_DIR": str(data_dir),
            "IGRT_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(_PROJECT_ROOT),
        }
        command = [sys.executable, "-m", "igrt.cli.main", "dicom-receiver", "--port", "0"]
        command += ["--allow", "CTSIM=planning", "--series-settle-s", "0.3"]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
        line = lines.get(timeout=180)
        assert "listening on" in line, line
        self.port = int(line.rsplit(":", 1)[1])

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


@pytest.fixture
def processes() -> Iterator[list[ReceiverProcess]]:
    started: list[ReceiverProcess] = []
    yield started
    for process in started:
        process.stop()


def _stored(clinic: Clinic) -> dict[str, DicomInstance]:
    engine = make_engine(clinic.settings.database_url)
    try:
        with make_session_factory(engine)() as db:
            return {row.sop_instance_uid: row for row in db.scalars(select(DicomInstance))}
    finally:
        engine.dispose()


def _intact(clinic: Clinic, row: DicomInstance) -> bool:
    path = clinic.settings.store_dir / row.stored_path
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256


def test_kill_9_between_instances_loses_no_acknowledged_instance(
    clinic: Clinic, identified_ct: list[Path], processes: list[ReceiverProcess]
) -> None:
    first = ReceiverProcess(clinic.settings.data_dir)
    processes.append(first)
    kill_after = 8

    def kill_on_ack(index: int, status: int) -> None:
        if index == kill_after - 1 and status == Status.SUCCESS:
            first.kill()  # at once: nothing gets a chance to finish "later"

    statuses = send(first.port, identified_ct, on_status=kill_on_ack)
    acknowledged = [
        str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        for path, status in zip(identified_ct, statuses, strict=True)
        if status == Status.SUCCESS
    ]
    assert len(acknowledged) == kill_after
    assert all(status != Status.SUCCESS for status in statuses[kill_after:])
    stored = _stored(clinic)
    assert set(acknowledged) <= set(stored)
    assert all(_intact(clinic, row) for row in stored.values())

    second = ReceiverProcess(clinic.settings.data_dir)
    processes.append(second)
    assert send(second.port, identified_ct) == [Status.SUCCESS] * len(identified_ct)
    stored = _stored(clinic)
    assert len(stored) == len(identified_ct)
    assert all(_intact(clinic, row) for row in stored.values())
    # The restarted receiver finished what the killed one had queued: the series is a volume.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if {row.processing_status for row in _stored(clinic).values()} == {"done"}:
            break
        time.sleep(0.5)
    engine = make_engine(clinic.settings.database_url)
    try:
        with make_session_factory(engine)() as db:
            sizes = [volume.geometry["size_ijk"][2] for volume in db.scalars(select(VolumeUpload))]
    finally:
        engine.dispose()
    assert len(identified_ct) in sizes
