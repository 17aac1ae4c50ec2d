"""Fixtures of the service tests: settings on a temporary data dir, SQLite and PostgreSQL
databases, tokens, a small simulated fluoroscopy, and in-process clients.

PostgreSQL tests (marker ``postgres``) use ``IGRT_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each in a schema of its own that is dropped
afterwards; they skip with the reason when the server cannot be reached, or fail when
``IGRT_REQUIRE_POSTGRES`` is set (as ``.ci/run`` does: CI machines run PostgreSQL).
"""

from __future__ import annotations

import io
import os
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.core.config import Settings
from api.enums import RoleValues
from igrt.sequence import FluoroSequence

POSTGRES_URL = os.environ.get("IGRT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MAX_UPLOAD_BYTES = 3_000_000
PATIENT_ID = "MRN-TEST-0001"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgres: needs PostgreSQL at IGRT_TEST_POSTGRES_URL (skips when absent)"
    )


# --- databases ------------------------------------------------------------------------------

_postgres_state: dict[str, str | None] = {}


def postgres_unreachable_reason() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per run)."""
    if "reason" not in _postgres_state:
        try:
            import psycopg
        except ImportError:
            _postgres_state["reason"] = "psycopg is not installed (pip install 'psycopg[binary]')"
        else:
            try:
                psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
                _postgres_state["reason"] = None
            except Exception as exc:
                _postgres_state["reason"] = (
                    f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__})"
                )
    return _postgres_state["reason"]


def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections work in a fresh schema, dropped on exit (a generator)."""
    reason = postgres_unreachable_reason()
    if reason is not None:
        if os.environ.get("IGRT_REQUIRE_POSTGRES"):
            pytest.fail(f"IGRT_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
    import psycopg

    schema = f"igrt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """``""`` (SQLite in the data dir) or a PostgreSQL URL with a private schema."""
    if request.param == "sqlite":
        yield ""
    else:
        yield from postgres_schema_url()


# --- settings and tokens --------------------------------------------------------------------


def make_settings(data_dir: Path, database_url: str = "", **overrides: Any) -> Settings:
    """Test settings: no demo data, no first-run token, a 3 MB upload limit."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "demo_data": False,
        "first_run_token": False,
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "log_format": "json",
    }
    values.update(overrides)
    return Settings(**values)


def create_token(settings: Settings, role: RoleValues, name: str | None = None) -> str:
    """Make a token straight in the database (migrating it first), as the CLI does."""
    from api.db.engine import make_engine, make_session_factory
    from api.db.migrate import upgrade
    from api.security import create_api_token, load_pepper

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        with make_session_factory(engine)() as db:
            _, token = create_api_token(
                db, load_pepper(settings), name=name or f"test {role.value}", role=role
            )
            db.commit()
    finally:
        engine.dispose()
    return token


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


# --- simulated fluoroscopy ------------------------------------------------------------------


@pytest.fixture(scope="session")
def fluoro_sequence() -> FluoroSequence:
    """10 frames (2 s at 5 fps) of the phantom on an XVI panel binned 4x (256 x 256)."""
    from fixtures import breathing
    from fixtures.fluoro import simulate_fluoro
    from fixtures.phantom import make_phantom
    from igrt.geometry import xvi_geometry

    signal = breathing.regular(12.0, 4.0, 2.0, 50.0)
    simulation = simulate_fluoro(
        make_phantom(),
        signal,
        duration_s=2.0,
        fps=5.0,
        geometry=xvi_geometry(binning=4),
        grid_spacing_mm=(2.5, 2.0),
        seed=1,
    )
    return simulation.sequence


@pytest.fixture(scope="session")
def make_dicom(
    fluoro_sequence: FluoroSequence, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., bytes]:
    """``make_dicom(patient_id=PATIENT_ID, patient_position="HFS")`` -> DICOM bytes."""
    from igrt.imageio import write_fluoro_dicom

    folder = tmp_path_factory.mktemp("dicom")
    cache: dict[tuple[str, str], bytes] = {}

    def make(patient_id: str = PATIENT_ID, patient_position: str = "HFS") -> bytes:
        key = (patient_id, patient_position)
        if key not in cache:
            path = folder / f"{uuid.uuid4().hex}.dcm"
            write_fluoro_dicom(
                fluoro_sequence,
                path,
                patient_id=patient_id,
                patient_name="Test^Patient",
                patient_position=patient_position,
                uid_seed=f"igrt-test-{patient_id}-{patient_position}",
            )
            cache[key] = path.read_bytes()
        return cache[key]

    return make


@pytest.fixture(scope="session")
def breathing_simulation() -> Any:
    """30 s at 2 fps (60 frames, 7.5 cycles of 12 mm breathing), XVI binned 4x: enough for a
    motion decision."""
    from fixtures import breathing
    from fixtures.fluoro import simulate_fluoro
    from fixtures.phantom import make_phantom
    from igrt.geometry import xvi_geometry

    signal = breathing.regular(12.0, 4.0, 30.0, 50.0)
    return simulate_fluoro(
        make_phantom(),
        signal,
        duration_s=30.0,
        fps=2.0,
        geometry=xvi_geometry(binning=4),
        grid_spacing_mm=(2.5, 2.0),
        seed=2,
    )


@pytest.fixture(scope="session")
def make_breathing_dicom(
    breathing_simulation: Any, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., bytes]:
    """``make_breathing_dicom(patient_id=PATIENT_ID)`` -> DICOM bytes of the 30 s recording."""
    from igrt.imageio import write_fluoro_dicom

    folder = tmp_path_factory.mktemp("breathing")
    cache: dict[str, bytes] = {}

    def make(patient_id: str = PATIENT_ID) -> bytes:
        if patient_id not in cache:
            path = folder / f"{uuid.uuid4().hex}.dcm"
            write_fluoro_dicom(
                breathing_simulation.sequence,
                path,
                patient_id=patient_id,
                patient_name="Test^Patient",
                uid_seed=f"igrt-test-breathing-{patient_id}",
            )
            cache[patient_id] = path.read_bytes()
        return cache[patient_id]

    return make


@pytest.fixture(scope="session")
def mha_bytes(fluoro_sequence: FluoroSequence, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The sequence as an igrt MetaImage (geometry and times in the header)."""
    from igrt.imageio import write_fluoro_mha

    path = tmp_path_factory.mktemp("mha") / "fluoro.mha"
    write_fluoro_mha(fluoro_sequence, path)
    return path.read_bytes()


@pytest.fixture(scope="session")
def raw_bytes(fluoro_sequence: FluoroSequence) -> bytes:
    """The frames as headerless little-endian uint16."""
    return fluoro_sequence.frames.astype("<u2").tobytes()


@pytest.fixture(scope="session")
def zip_bytes(fluoro_sequence: FluoroSequence) -> bytes:
    """The frames as 16-bit PNGs in a zip, named so that natural order matters."""
    import zipfile

    import cv2

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, frame in enumerate(fluoro_sequence.frames):
            ok, encoded = cv2.imencode(".png", frame)
            assert ok
            archive.writestr(f"frames/f{index}.png", encoded.tobytes())
    return buffer.getvalue()


# --- simulated planning CT and CBCT --------------------------------------------------------

DISPLACEMENT_LPS_MM = (3.2, -4.7, 7.9)
"""The anatomy displacement of the simulated CBCT, LPS mm (the couch correction is minus it)."""


@dataclass(frozen=True)
class Volumes:
    """The test images as upload bytes, and the isocentre they were simulated about."""

    planning_zip: bytes
    planning_mha: bytes
    cbct_mha: bytes
    isocentre_lps_mm: tuple[float, float, float]


@pytest.fixture(scope="session")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Volumes:
    from fixtures.fraction import simulate_phantom_fraction
    from igrt.imageio import write_ct_series, write_volume_mha

    folder = tmp_path_factory.mktemp("volumes")
    simulation = simulate_phantom_fraction(DISPLACEMENT_LPS_MM)
    ct, isocentre = simulation.planning_ct, simulation.isocentre_lps_mm
    write_volume_mha(simulation.cbct, folder / "cbct.mha", patient_position="HFS")
    write_volume_mha(ct, folder / "ct.mha", patient_position="HFS")
    written = write_ct_series(
        ct, folder / "ct", patient_id="MRN-TEST-0001", patient_name="Test^Patient"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in written.paths:
            archive.write(path, f"series/{path.name}")
    return Volumes(
        planning_zip=buffer.getvalue(),
        planning_mha=(folder / "ct.mha").read_bytes(),
        cbct_mha=(folder / "cbct.mha").read_bytes(),
        isocentre_lps_mm=(float(isocentre[0]), float(isocentre[1]), float(isocentre[2])),
    )


# --- in-process clients ---------------------------------------------------------------------


@dataclass
class InProcessApi:
    """A started app (lifespan run) with one token per role."""

    client: TestClient
    settings: Settings
    tokens: dict[RoleValues, str] = field(default_factory=dict)

    def headers(self, role: RoleValues = RoleValues.THERAPIST) -> dict[str, str]:
        return bearer(self.tokens[role])

    def create_patient(self, external_id: str = PATIENT_ID) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/patients", json={"external_id": external_id}, headers=self.headers()
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def create_session(self, patient_id: str, **body: Any) -> dict[str, Any]:
        payload = {"kind": "simulation", "patient_position": "HFS", **body}
        response = self.client.post(
            f"/api/v1/patients/{patient_id}/sessions", json=payload, headers=self.headers()
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def upload(
        self,
        session_id: str,
        content: bytes,
        *,
        fmt: str = "dicom",
        content_type: str = "application/dicom",
        filename: str = "fluoro.dcm",
        role: RoleValues = RoleValues.CONSOLE,
        **form: Any,
    ) -> Any:
        return self.client.post(
            f"/api/v1/sessions/{session_id}/uploads/fluoroscopy",
            files={"file": (filename, content, content_type)},
            data={"format": fmt, **{k: str(v) for k, v in form.items()}},
            headers=self.headers(role),
        )


def start_in_process(settings: Settings) -> Iterator[InProcessApi]:
    """Start the app in-process on ``settings`` with a token per role (a generator)."""
    from api.main import create_app

    tokens = {role: create_token(settings, role) for role in RoleValues}
    with TestClient(create_app(settings)) as client:
        yield InProcessApi(client=client, settings=settings, tokens=tokens)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[InProcessApi]:
    """The app on SQLite in a temporary data dir."""
    yield from start_in_process(make_settings(tmp_path / "data"))
