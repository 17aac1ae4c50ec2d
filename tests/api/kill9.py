"""kill -9 of a real service during an upload, an assessment or a registration job.

Issue 12's target: kill -9 at random moments (seeded) during each of the three operations
loses no acknowledged record, leaves no orphaned row or file after the next start (or only
ones ``igrt store check --repair`` collects), and leaves no registration job ``running``.

:func:`run_kills` starts ``igrt serve`` (a subprocess, SQLite in a fresh data directory, no
demo data) and, per kill: a client thread repeats the operation back to back (each upload with
new bytes, so that each stores new files: the content-addressed store keeps one copy of equal
bytes), the server is killed with SIGKILL at a random moment, and restarted on the same data.
Then:

- *jobs left running*: registration jobs in the database still ``running`` under a worker
  other than the new process (read right after ``/healthz`` answers: the start-up recovery
  runs before it does);
- *lost*: records the client was answered 2xx for that the new process does not serve over
  HTTP as they were acknowledged (an upload's file by its SHA-256, an assessment's JSON, a
  registration job, and the result of one seen completed);
- once no job is queued or running: :func:`api.store_check.check_store` with ``min_age_s=0``
  (what ``igrt store check --repair --min-age 0`` runs), the orphans and staging leftovers it
  had to collect, then a second check that must find the store consistent (run beside the
  idle new process, as the command line may be).

With ``after_store`` the kill comes instead as soon as a new file appears in the store, before
the service can commit the row naming it: the few milliseconds that leave an orphan, which
random moments seldom hit.

``benchmarks/kill9.py`` runs 20 kills of each operation (and 5 after a store of each storing
one) and prints the table; :mod:`tests.api.test_kill9` runs three kills of an upload in CI.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import pydicom

from tests.api.live_server import LiveServer, service_environment

__all__ = [
    "OPERATIONS",
    "STORING_OPERATIONS",
    "Acknowledged",
    "KillInputs",
    "KillTally",
    "lost_reason",
    "make_inputs",
    "run_kills",
    "vary_dicom",
    "vary_mha",
]

OPERATIONS = ("upload", "assessment", "registration")
STORING_OPERATIONS = ("upload", "registration")
"""The operations that store files (an assessment is a row only)."""
SETTLE_TIMEOUT_S = 300.0
_POLL_S = 0.05
_TERMINAL = ("completed", "failed")
_MHA_TYPES = {
    "MET_SHORT": "<i2",
    "MET_USHORT": "<u2",
    "MET_FLOAT": "<f4",
    "MET_DOUBLE": "<f8",
    "MET_INT": "<i4",
    "MET_UCHAR": "u1",
    "MET_CHAR": "i1",
}


@dataclass(frozen=True)
class KillInputs:
    """Upload bytes: a fluoroscopy DICOM of ``patient_id``, a planning CT and a CBCT (MHA),
    and the isocentre they were simulated about."""

    patient_id: str
    fluoro_dicom: bytes
    planning_ct_mha: bytes
    cbct_mha: bytes
    isocentre_lps_mm: tuple[float, float, float]


@dataclass
class Acknowledged:
    """A record the client was answered 2xx for, and what it was answered."""

    kind: str  # "fluoroscopy", "volume", "assessment" or "registration"
    record_id: str
    sha256: str | None = None
    body: dict[str, Any] | None = None
    result: dict[str, Any] | None = None  # a registration seen completed: its result


@dataclass
class KillTally:
    """What the kills of one operation gave."""

    operation: str
    after_store: bool = False  # killed as soon as a file was stored, not at a random moment
    kills: int = 0
    kills_at_moment: int = 0  # kills at the intended moment (after_store: a file was stored)
    kills_in_flight: int = 0  # a request (or, for registrations, a job) was under way
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)
    orphans_collected: int = 0
    orphan_bytes_collected: int = 0
    staging_leftovers_collected: int = 0
    rows_without_file: int = 0
    left_after_repair: int = 0
    jobs_left_running: int = 0
    job_statuses: dict[str, int] = field(default_factory=dict)
    interrupted_jobs: int = 0  # failed: interrupted as many times as the attempts allow
    retried_jobs: int = 0  # run again after a kill (more than one attempt)
    refused: dict[int, int] = field(default_factory=dict)  # non-2xx answers (e.g. 503), by code
    restart_s: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.operation} (after store)" if self.after_store else self.operation

    @property
    def met(self) -> bool:
        """Issue 12's target: nothing lost, no orphan left, no job left running."""
        return not self.lost and self.left_after_repair == 0 and self.jobs_left_running == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "moment": "after a file is stored" if self.after_store else "random (seeded)",
            "kills": self.kills,
            "kills_at_moment": self.kills_at_moment,
            "kills_in_flight": self.kills_in_flight,
            "acknowledged": self.acknowledged,
            "lost": len(self.lost),
            "lost_records": self.lost,
            "orphans_collected": self.orphans_collected,
            "orphan_bytes_collected": self.orphan_bytes_collected,
            "staging_leftovers_collected": self.staging_leftovers_collected,
            "rows_without_file": self.rows_without_file,
            "left_after_repair": self.left_after_repair,
            "jobs_left_running": self.jobs_left_running,
            "job_statuses": dict(sorted(self.job_statuses.items())),
            "interrupted_jobs": self.interrupted_jobs,
            "retried_jobs": self.retried_jobs,
            "refused": {str(code): n for code, n in sorted(self.refused.items())},
            "restart_s_median": float(np.median(self.restart_s)) if self.restart_s else None,
            "seconds": round(self.seconds, 1),
            "met": self.met,
        }


# --- inputs ---------------------------------------------------------------------------------


def make_inputs(folder: Path, patient_id: str) -> KillInputs:
    """Simulated images of the phantom (2 s of fluoroscopy at 5 fps; a CT and a CBCT)."""
    from fixtures import breathing
    from fixtures.fluoro import simulate_fluoro
    from fixtures.fraction import simulate_phantom_fraction
    from fixtures.phantom import make_phantom
    from igrt.geometry import xvi_geometry
    from igrt.imageio import write_fluoro_dicom, write_volume_mha

    fluoro = simulate_fluoro(
        make_phantom(),
        breathing.regular(12.0, 4.0, 2.0, 50.0),
        duration_s=2.0,
        fps=5.0,
        geometry=xvi_geometry(binning=4),
        grid_spacing_mm=(2.5, 2.0),
        seed=1,
    )
    write_fluoro_dicom(
        fluoro.sequence,
        folder / "fluoro.dcm",
        patient_id=patient_id,
        patient_name="Kill^Nine",
        patient_position="HFS",
        uid_seed="igrt-kill9",
    )
    fraction = simulate_phantom_fraction((3.0, -2.0, 4.0))
    write_volume_mha(fraction.planning_ct, folder / "ct.mha", patient_position="HFS")
    write_volume_mha(fraction.cbct, folder / "cbct.mha", patient_position="HFS")
    iso = fraction.isocentre_lps_mm
    return KillInputs(
        patient_id=patient_id,
        fluoro_dicom=(folder / "fluoro.dcm").read_bytes(),
        planning_ct_mha=(folder / "ct.mha").read_bytes(),
        cbct_mha=(folder / "cbct.mha").read_bytes(),
        isocentre_lps_mm=(float(iso[0]), float(iso[1]), float(iso[2])),
    )


def vary_dicom(content: bytes, index: int) -> bytes:
    """The DICOM with the low bytes of its last two pixels changed by ``index`` (mod 65535).

    New bytes for the content-addressed store (which keeps one copy of equal bytes), the same
    image to within 255 grey levels in two corner pixels; uncompressed 16-bit pixel data ends
    the file.
    """
    dataset = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
    if dataset.file_meta.TransferSyntaxUID.is_compressed or dataset.BitsAllocated != 16:
        raise ValueError("vary_dicom needs uncompressed 16-bit pixel data")
    key = index % 65535 + 1
    varied = bytearray(content)
    varied[-2] ^= key & 0xFF  # the low byte of the last pixel (little endian)
    varied[-4] ^= key >> 8  # the low byte of the one before
    return bytes(varied)


def vary_mha(content: bytes, index: int) -> bytes:
    """The MetaImage with its last voxel raised by 1 + ``index`` mod 4093 (new bytes, same
    image but for one corner voxel); zlib-compressed data is recompressed."""
    marker = re.search(rb"ElementDataFile\s*=\s*LOCAL\r?\n", content)
    element_type = re.search(rb"ElementType\s*=\s*(\w+)", content)
    if marker is None or element_type is None:
        raise ValueError("vary_mha needs a MetaImage with its data in the file")
    header, data = content[: marker.end()], content[marker.end() :]
    compressed = re.search(rb"CompressedData\s*=\s*True", header) is not None
    dtype = np.dtype(_MHA_TYPES[element_type.group(1).decode()])
    voxels = np.frombuffer(zlib.decompress(data) if compressed else data, dtype=dtype).copy()
    voxels[-1] = voxels[-1] + index % 4093 + 1
    if not compressed:
        return header + voxels.tobytes()
    packed = zlib.compress(voxels.tobytes())
    header = re.sub(
        rb"CompressedDataSize\s*=\s*\d+", b"CompressedDataSize = %d" % len(packed), header
    )
    return header + packed


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# --- the operations -------------------------------------------------------------------------


@dataclass
class _Loop:
    """The client thread's state: what it was answered, and whether it was waiting."""

    acknowledged: list[Acknowledged] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)
    in_flight: bool = False
    job_status: str | None = None
    error: BaseException | None = None
    counter: int = 0


@dataclass
class _Context:
    """The records the operations need: tokens, a session, a fluoroscopy upload, volumes."""

    inputs: KillInputs
    tokens: dict[str, str]
    session_id: str = ""
    upload_id: str = ""
    volume_ids: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    def next_index(self) -> int:
        self.counter += 1
        return self.counter


class _Stop(Protocol):
    def is_set(self) -> bool: ...


def _request(
    loop: _Loop, client: httpx.Client, method: str, url: str, **kwargs: Any
) -> httpx.Response | None:
    """Send one request, marked in flight; None once the server is gone."""
    loop.in_flight = True
    try:
        return client.request(method, url, **kwargs)
    except httpx.TransportError:
        return None
    finally:
        loop.in_flight = False


def _refused(loop: _Loop, response: httpx.Response) -> None:
    loop.refused[response.status_code] = loop.refused.get(response.status_code, 0) + 1
    if response.status_code not in (429, 503):
        raise AssertionError(f"unexpected answer {response.status_code}: {response.text[:300]}")
    time.sleep(0.2)


def _uploads(client: httpx.Client, context: _Context, loop: _Loop, stop: _Stop) -> None:
    """Fluoroscopy DICOM and CBCT uploads, alternately, each with new bytes."""
    base = f"/api/v1/sessions/{context.session_id}/uploads"
    while not stop.is_set():
        index = context.next_index()
        if index % 2:
            content = vary_dicom(context.inputs.fluoro_dicom, index)
            kind, url = "fluoroscopy", f"{base}/fluoroscopy"
            files = {"file": ("fluoro.dcm", content, "application/dicom")}
            data = {"format": "dicom"}
        else:
            content = vary_mha(context.inputs.cbct_mha, index)
            kind, url = "volume", f"{base}/volume"
            files = {"file": ("cbct.mha", content, "application/octet-stream")}
            data = {"kind": "cbct", "format": "mha"}
        response = _request(loop, client, "POST", url, files=files, data=data)
        if response is None:
            return
        if response.status_code == 201:
            loop.acknowledged.append(Acknowledged(kind, response.json()["id"], _sha256(content)))
        else:
            _refused(loop, response)


def _assessments(client: httpx.Client, context: _Context, loop: _Loop, stop: _Stop) -> None:
    url = f"/api/v1/sessions/{context.session_id}/motion-assessments"
    while not stop.is_set():
        response = _request(loop, client, "POST", url, json={"upload_id": context.upload_id})
        if response is None:
            return
        if response.status_code == 201:
            body = response.json()
            loop.acknowledged.append(Acknowledged("assessment", body["id"], body=body))
        else:
            _refused(loop, response)


def _registrations(client: httpx.Client, context: _Context, loop: _Loop, stop: _Stop) -> None:
    """Submit a job, poll it to its end (its result read when completed), and again."""
    url = f"/api/v1/sessions/{context.session_id}/registrations"
    body = {
        "planning_ct_upload_id": context.volume_ids["planning_ct"],
        "cbct_upload_id": context.volume_ids["cbct"],
        "isocentre_lps_mm": list(context.inputs.isocentre_lps_mm),
    }
    while not stop.is_set():
        loop.job_status = None
        response = _request(loop, client, "POST", url, json=body)
        if response is None:
            return
        if response.status_code != 202:
            _refused(loop, response)
            continue
        job = Acknowledged("registration", response.json()["id"], body=response.json())
        loop.acknowledged.append(job)
        loop.job_status = str(job.body["status"]) if job.body else None
        location = f"/api/v1/registrations/{job.record_id}"
        while loop.job_status not in _TERMINAL:
            time.sleep(_POLL_S)
            polled = _request(loop, client, "GET", location)
            if polled is None:
                return
            loop.job_status = str(polled.json()["status"])
        if loop.job_status == "completed":
            result = _request(loop, client, "GET", f"{location}/result")
            if result is None:
                return
            if result.status_code == 200:
                job.result = result.json()


_LOOPS = {"upload": _uploads, "assessment": _assessments, "registration": _registrations}


# --- the service and its database -----------------------------------------------------------


@contextmanager
def _database(data_dir: Path) -> Iterator[Any]:
    """Sessions on the service's SQLite database (from this process, beside the service)."""
    from api.core.config import Settings
    from api.db.engine import make_engine, make_session_factory

    settings = Settings(data_dir=data_dir, database_url="", token_pepper=None)
    engine = make_engine(settings.database_url)
    try:
        yield settings, make_session_factory(engine)
    finally:
        engine.dispose()


def _create_tokens(data_dir: Path) -> dict[str, str]:
    from api.db.migrate import upgrade
    from api.enums import RoleValues
    from api.security import create_api_token, load_pepper

    data_dir.mkdir(parents=True, exist_ok=True)
    tokens: dict[str, str] = {}
    with _database(data_dir) as (settings, sessions):
        upgrade(sessions.kw["bind"])
        pepper = load_pepper(settings)
        with sessions() as db:
            for role in (RoleValues.CONSOLE, RoleValues.THERAPIST):
                _, token = create_api_token(db, pepper, name=f"kill9 {role.value}", role=role)
                tokens[role.value] = token
            db.commit()
    return tokens


def _jobs(data_dir: Path, *statuses: str) -> list[tuple[str, str, str | None]]:
    """(id, status, lease owner) of the registration jobs in these states."""
    from sqlalchemy import select

    from api.db.models import RegistrationJob

    with _database(data_dir) as (_, sessions), sessions() as db:
        rows = db.execute(
            select(RegistrationJob.id, RegistrationJob.status, RegistrationJob.lease_owner).where(
                RegistrationJob.status.in_(statuses)
            )
        ).all()
    return [(str(i), str(s), o) for i, s, o in rows]


def _owner_pid(owner: str | None) -> int | None:
    parts = (owner or "").split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _settle(data_dir: Path) -> None:
    """Wait until no registration job is queued or running (re-queued ones run after a start)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while _jobs(data_dir, "queued", "running"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"registration jobs still pending after {SETTLE_TIMEOUT_S} s")
        time.sleep(0.2)


def _collect_orphans(data_dir: Path, tally: KillTally) -> None:
    """``igrt store check --repair --min-age 0``: what it collects, and what is left after."""
    from api.storage import FileStore
    from api.store_check import check_store, repair_store

    with _database(data_dir) as (settings, sessions), sessions() as db:
        store = FileStore(settings.store_dir, settings.temp_dir)
        report = check_store(db, store, min_age_s=0.0)
        tally.orphans_collected += len(report.orphans)
        tally.orphan_bytes_collected += sum(item.size_bytes for item in report.orphans)
        tally.staging_leftovers_collected += len(report.staging_leftovers)
        tally.rows_without_file += len(report.missing)
        repair_store(db, store, report)
        db.rollback()
        after = check_store(db, store, min_age_s=0.0)
    tally.left_after_repair += (
        len(after.orphans)
        + len(after.missing)
        + len(after.foreign)
        + len(after.young_orphans)
        + len(after.staging_leftovers)
    )


# --- checking the acknowledged records ------------------------------------------------------


def lost_reason(client: httpx.Client, record: Acknowledged) -> str | None:
    """Why an acknowledged record is not served as it was acknowledged; None when it is."""
    paths = {
        "fluoroscopy": "/api/v1/uploads/{}",
        "volume": "/api/v1/volumes/{}",
        "assessment": "/api/v1/motion-assessments/{}",
        "registration": "/api/v1/registrations/{}",
    }
    url = paths[record.kind].format(record.record_id)
    response = client.get(url)
    if response.status_code != 200:
        return f"{record.kind} {record.record_id}: GET answered {response.status_code}"
    if record.sha256 is not None:
        served = client.get(f"{url}/file")
        if served.status_code != 200 or _sha256(served.content) != record.sha256:
            return f"{record.kind} {record.record_id}: its file is not the uploaded one"
    if record.kind == "assessment" and response.json() != record.body:
        return f"assessment {record.record_id}: served differently than acknowledged"
    if record.result is not None:
        result = client.get(f"{url}/result")
        if result.status_code != 200 or result.json() != record.result:
            return f"registration {record.record_id}: its result is not the one read before"
    return None


def _prepare(server: LiveServer, context: _Context, operation: str) -> None:
    """A patient and a fraction; the fluoroscopy upload or the volumes the operation needs."""
    with server.client(context.tokens["therapist"]) as client:
        patient = client.post("/api/v1/patients", json={"external_id": context.inputs.patient_id})
        patient.raise_for_status()
        session = client.post(
            f"/api/v1/patients/{patient.json()['id']}/sessions",
            json={"kind": "fraction", "fraction_number": 1, "patient_position": "HFS"},
        )
        session.raise_for_status()
        context.session_id = session.json()["id"]
        base = f"/api/v1/sessions/{context.session_id}/uploads"
        if operation == "assessment":
            upload = client.post(
                f"{base}/fluoroscopy",
                files={"file": ("fluoro.dcm", context.inputs.fluoro_dicom, "application/dicom")},
                data={"format": "dicom"},
            )
            upload.raise_for_status()
            context.upload_id = upload.json()["id"]
        if operation == "registration":
            for kind, content in (
                ("planning_ct", context.inputs.planning_ct_mha),
                ("cbct", context.inputs.cbct_mha),
            ):
                volume = client.post(
                    f"{base}/volume",
                    files={"file": (f"{kind}.mha", content, "application/octet-stream")},
                    data={"kind": kind, "format": "mha"},
                )
                volume.raise_for_status()
                context.volume_ids[kind] = volume.json()["id"]


class _AfterOne:
    """A stop signal raised once the loop was answered once (a warm-up operation)."""

    def __init__(self, loop: _Loop) -> None:
        self._loop = loop

    def is_set(self) -> bool:
        return bool(self._loop.acknowledged or self._loop.refused)


def _one_operation_s(server: LiveServer, context: _Context, operation: str) -> float:
    """How long one operation takes here (the kill window is a multiple of it)."""
    loop = _Loop()
    started = time.monotonic()
    with server.client(context.tokens["console"]) as client:
        _LOOPS[operation](client, context, loop, _AfterOne(loop))
    if not loop.acknowledged:
        raise RuntimeError(f"the warm-up {operation} was refused: {loop.refused}")
    return time.monotonic() - started


def _client_thread(
    runner: Callable[[httpx.Client, _Context, _Loop, _Stop], None],
    client: httpx.Client,
    context: _Context,
    loop: _Loop,
    stop: _Stop,
) -> None:
    try:
        runner(client, context, loop, stop)
    except BaseException as error:  # reported after the kill
        loop.error = error


def _stored_files(store_dir: Path) -> set[Path]:
    return {path for path in store_dir.rglob("*") if path.is_file()}


def _until_a_file_is_stored(store_dir: Path, timeout_s: float) -> Callable[[], bool]:
    """A kill moment: as soon as a new file is in the store (polled every millisecond), before
    the service can commit the row naming it; whether one came within ``timeout_s``."""
    before = _stored_files(store_dir)

    def wait() -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _stored_files(store_dir) - before:
                return True
            time.sleep(0.001)
        return False

    return wait


def _after(delay_s: float) -> Callable[[], bool]:
    def wait() -> bool:
        time.sleep(delay_s)
        return True

    return wait


def _kill_once(
    server: LiveServer,
    context: _Context,
    operation: str,
    moment: Callable[[], bool],
    tally: KillTally,
) -> tuple[list[Acknowledged], bool]:
    """Run the operation's loop, SIGKILL the server once ``moment`` returns; what was
    acknowledged, and whether a request (or a registration job) was under way at the kill."""
    loop = _Loop()
    stop = threading.Event()
    client = server.client(context.tokens["console"])
    thread = threading.Thread(
        target=_client_thread,
        args=(_LOOPS[operation], client, context, loop, stop),
        name=f"kill9-{operation}",
        daemon=True,
    )
    thread.start()
    tally.kills_at_moment += int(moment())
    in_flight = loop.in_flight or loop.job_status in ("queued", "running")
    server.kill()
    stop.set()
    thread.join(timeout=60)
    client.close()
    if loop.error is not None:
        raise RuntimeError(f"the client failed: {loop.error!r}") from loop.error
    tally.kills += 1
    tally.kills_in_flight += int(in_flight)
    for code, count in loop.refused.items():
        tally.refused[code] = tally.refused.get(code, 0) + count
    return loop.acknowledged, in_flight


def _check_restart(
    server: LiveServer,
    context: _Context,
    data_dir: Path,
    acknowledged: list[Acknowledged],
    tally: KillTally,
) -> None:
    """Restart; count jobs a dead worker left running, records lost and orphans collected."""
    restart = time.monotonic()
    server.start()
    tally.restart_s.append(time.monotonic() - restart)
    pid = server.process.pid if server.process else None
    stale = [job for job in _jobs(data_dir, "running") if _owner_pid(job[2]) != pid]
    tally.jobs_left_running += len(stale)
    with server.client(context.tokens["therapist"]) as reader:
        for record in acknowledged:
            if (why := lost_reason(reader, record)) is not None:
                tally.lost.append(why)
    _settle(data_dir)
    _collect_orphans(data_dir, tally)


def _tally_jobs(
    server: LiveServer, context: _Context, records: list[Acknowledged], tally: KillTally
) -> None:
    """The final status of every acknowledged registration job."""
    with server.client(context.tokens["therapist"]) as reader:
        for record in records:
            if record.kind != "registration":
                continue
            job = reader.get(f"/api/v1/registrations/{record.record_id}").json()
            status = str(job["status"])
            tally.job_statuses[status] = tally.job_statuses.get(status, 0) + 1
            tally.interrupted_jobs += int(
                status == "failed" and "interrupted" in str(job.get("reason"))
            )
            tally.retried_jobs += int(job["attempts"] > 1)


def run_kills(
    operation: str,
    kills: int,
    *,
    seed: int,
    workdir: Path,
    inputs: KillInputs,
    window_operations: float = 3.0,
    after_store: bool = False,
    log: Callable[[str], None] = lambda _line: None,
) -> KillTally:
    """Kill the service ``kills`` times during ``operation``; what was lost and left over.

    Parameters
    ----------
    operation : {"upload", "assessment", "registration"}
    kills : int
        How many times the server is killed (and restarted).
    seed : int
        Seeds the kill moments.
    workdir : Path
        An empty folder for the data directory and the server log.
    inputs : KillInputs
        The upload bytes (:func:`make_inputs`).
    window_operations : float
        The kill moment is uniform in [0, window_operations x one operation's duration] after
        the client starts (measured once before the kills).
    after_store : bool
        Kill instead as soon as a new file is in the store, before the row naming it can be
        committed (the moment that leaves an orphan); within three windows, else at their end.
    """
    if operation not in _LOOPS:
        raise ValueError(f"operation must be one of {OPERATIONS}")
    rng = random.Random(f"{seed}-{operation}")
    tally = KillTally(operation, after_store=after_store)
    started = time.monotonic()
    data_dir = workdir / "data"
    env = service_environment(
        data_dir, demo_data="false", first_run_token="false", log_level="WARNING"
    )
    context = _Context(inputs, _create_tokens(data_dir))
    with _database(data_dir) as (settings, _):
        store_dir = settings.store_dir
    server = LiveServer(env, workdir / "server.log").start()
    all_acknowledged: list[Acknowledged] = []
    try:
        _prepare(server, context, operation)
        window_s = window_operations * _one_operation_s(server, context, operation)
        _settle(data_dir)
        for kill in range(kills):
            delay_s = rng.uniform(0.0, window_s)
            moment = (
                _until_a_file_is_stored(store_dir, 3 * window_s) if after_store else _after(delay_s)
            )
            acknowledged, in_flight = _kill_once(server, context, operation, moment, tally)
            all_acknowledged.extend(acknowledged)
            _check_restart(server, context, data_dir, acknowledged, tally)
            log(
                f"{tally.label} kill {kill + 1}/{kills} "
                f"{'after a store' if after_store else f'at {delay_s:.2f} s'} "
                f"({'in flight' if in_flight else 'between requests'}): "
                f"{len(acknowledged)} acknowledged, {len(tally.lost)} lost so far, "
                f"{tally.orphans_collected} orphans collected so far"
            )
        # Everything acknowledged, once more, after every repair.
        with server.client(context.tokens["therapist"]) as reader:
            for record in all_acknowledged:
                if (why := lost_reason(reader, record)) is not None and why not in tally.lost:
                    tally.lost.append(why)
        _tally_jobs(server, context, all_acknowledged, tally)
    finally:
        server.stop()
    tally.acknowledged = len(all_acknowledged)
    tally.seconds = time.monotonic() - started
    return tally
