"""Persistence on SQLite and PostgreSQL: migrations, constraints, immutability, restarts."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from api.core.config import Settings
from api.db.engine import make_engine, make_session_factory, normalise_url
from api.db.migrate import current_revision, head_revision, upgrade
from api.db.models import AuditEvent, ImmutableRowError, Patient, TreatmentSession
from api.enums import RoleValues
from tests.api.conftest import make_settings, postgres_schema_url, start_in_process


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "data", database_url)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_migrations_reach_head_and_are_idempotent(engine: Engine) -> None:
    assert current_revision(engine) == head_revision() == "0013_retries"
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert {
        "patients",
        "treatment_sessions",
        "uploads",
        "api_tokens",
        "audit_events",
        "motion_assessments",
        "reviews",
        "volume_uploads",
        "registration_jobs",
    } <= tables


def test_migrations_upgrade_step_by_step_and_downgrade(settings: Settings) -> None:
    from alembic import command

    from api.db.migrate import alembic_config

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    config = alembic_config(engine)
    try:
        command.upgrade(config, "0001")
        assert current_revision(engine) == "0001"
        command.upgrade(config, "head")
        command.downgrade(config, "base")
        assert "patients" not in inspect(engine).get_table_names()
        command.upgrade(config, "head")
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_the_models_match_the_migrations(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from api.db.base import Base

    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def _patient_with_session(engine: Engine) -> tuple[str, str]:
    with make_session_factory(engine)() as db:
        patient = Patient(external_id="MRN-P-1")
        session = TreatmentSession(
            patient=patient,
            kind="fraction",
            fraction_number=1,
            patient_position="HFS",
            protocol_version="v1",
        )
        db.add_all([patient, session])
        db.commit()
        return patient.id, session.id


def test_rows_round_trip_with_aware_utc_timestamps(engine: Engine) -> None:
    patient_id, session_id = _patient_with_session(engine)
    with make_session_factory(engine)() as db:
        session = db.get(TreatmentSession, session_id)
        assert session is not None
        assert session.patient.id == patient_id
        assert session.created_at.tzinfo is not None
        assert session.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("column", "value"),
    [("kind", "holiday"), ("patient_position", "SIT"), ("fraction_number", None)],
)
def test_check_constraints_hold_in_the_database(engine: Engine, column: str, value: object) -> None:
    patient_id, _ = _patient_with_session(engine)
    values = {"kind": "fraction", "fraction_number": 2, "patient_position": "HFS", column: value}
    with make_session_factory(engine)() as db:
        db.add(TreatmentSession(patient_id=patient_id, protocol_version="v1", **values))
        with pytest.raises(IntegrityError):
            db.commit()


def test_foreign_keys_hold_in_the_database(engine: Engine) -> None:
    with make_session_factory(engine)() as db:
        db.add(
            TreatmentSession(
                patient_id="no-such-patient",
                kind="simulation",
                patient_position="HFS",
                protocol_version="v1",
            )
        )
        with pytest.raises(IntegrityError):
            db.commit()


def test_audit_events_are_append_only(engine: Engine) -> None:
    with make_session_factory(engine)() as db:
        event = AuditEvent(action="test", resource_type="test", resource_id="x")
        db.add(event)
        db.commit()
        event.action = "changed"
        with pytest.raises(ImmutableRowError):
            db.commit()
        db.rollback()
        db.delete(event)
        with pytest.raises(ImmutableRowError):
            db.commit()
    # Bypassing the ORM hits the database triggers.
    for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError):
            _execute(engine, statement)
    with make_session_factory(engine)() as db:
        assert db.scalars(select(AuditEvent.action)).all() == ["test"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE uploads SET n_frames = 1",
        "DELETE FROM uploads",
        "UPDATE motion_assessments SET recommendation = 'no_device'",
        "DELETE FROM motion_assessments",
        "UPDATE reviews SET outcome = 'approved'",
        "DELETE FROM reviews",
    ],
)
def test_uploads_assessments_and_reviews_are_immutable_in_the_database(
    engine: Engine, statement: str
) -> None:
    with engine.connect() as connection:
        _insert_upload(connection)
        connection.execute(
            text(
                "INSERT INTO motion_assessments (id, session_id, upload_id, status, context, "
                "protocol_version, tracked_fraction, track, recommendation, software_version, "
                "created_at) SELECT 'a', session_id, id, 'completed', 'free_breathing', 'v1', 1.0, "
                "'[]', 'abdominal_compression', '0.1.0', CURRENT_TIMESTAMP FROM uploads"
            )
        )
        connection.execute(
            text(
                "INSERT INTO api_tokens (id, name, role, token_hash, token_prefix, created_at) "
                "VALUES ('t', 't', 'therapist', 'h', 'igrt_x', CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO reviews (id, subject_type, subject_id, session_id, outcome, reason, "
                "decision, reviewer_role, created_at, created_by) SELECT 'r', "
                "'motion_assessment', 'a', session_id, 'overridden', 'why', 'no_device', "
                "'therapist', CURRENT_TIMESTAMP, 't' FROM uploads"
            )
        )
        connection.commit()
    with pytest.raises(DBAPIError):
        _execute(engine, statement)


def _execute(engine: Engine, statement: str) -> None:
    with engine.connect() as connection:
        connection.execute(text(statement))
        connection.commit()


def _insert_upload(connection: object) -> None:
    patient_id, session_id = "p-" + "0" * 34, "s-" + "0" * 34
    execute = connection.execute  # type: ignore[attr-defined]
    execute(
        text(
            "INSERT INTO patients (id, external_id, is_demo, created_at) "
            "VALUES (:id, :id, false, CURRENT_TIMESTAMP)"
        ),
        {"id": patient_id},
    )
    execute(
        text(
            "INSERT INTO treatment_sessions (id, patient_id, kind, patient_position, "
            "protocol_version, created_at) VALUES (:id, :p, 'simulation', 'HFS', 'v1', "
            "CURRENT_TIMESTAMP)"
        ),
        {"id": session_id, "p": patient_id},
    )
    execute(
        text(
            "INSERT INTO uploads (id, session_id, kind, format, content_type, size_bytes, "
            "sha256, stored_path, sequence_sha256, sequence_path, n_frames, rows, columns, "
            "dtype, intensity, geometry, geometry_source, created_at) VALUES ('u', :s, "
            "'fluoroscopy', 'raw', 'application/octet-stream', 1, 'x', 'x', 'x', 'x', 1, 1, "
            "1, 'uint16', 'raw', '{}', 'request', CURRENT_TIMESTAMP)"
        ),
        {"s": session_id},
    )


def test_tokens_are_stored_only_as_keyed_hashes(settings: Settings, engine: Engine) -> None:
    from tests.api.conftest import create_token

    token = create_token(settings, RoleValues.CONSOLE)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM api_tokens")).mappings().all()
    assert len(rows) == 1
    assert token not in str(dict(rows[0]))
    assert token[len("igrt_") :] not in str(dict(rows[0]))


def test_an_app_restart_keeps_everything(
    settings: Settings, make_dicom: Callable[..., bytes]
) -> None:
    runs = start_in_process(settings)
    api = next(runs)
    patient = api.create_patient()
    session = api.create_session(patient["id"], kind="fraction", fraction_number=3)
    upload = api.upload(session["id"], make_dicom())
    assert upload.status_code == 201, upload.text
    tokens = api.tokens
    runs.close()

    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(settings)) as client:
        # A person reads the patient and the original file (a console may not since issue 12).
        headers = {"Authorization": f"Bearer {tokens[RoleValues.THERAPIST]}"}
        assert client.get(f"/api/v1/patients/{patient['id']}", headers=headers).json() == patient
        assert client.get(f"/api/v1/sessions/{session['id']}", headers=headers).json() == session
        again = client.get(f"/api/v1/uploads/{upload.json()['id']}", headers=headers)
        assert again.json() == upload.json()
        file = client.get(f"/api/v1/uploads/{upload.json()['id']}/file", headers=headers)
        assert file.content == make_dicom()


def test_a_bare_postgresql_url_uses_psycopg_3() -> None:
    assert normalise_url("postgresql://u@h:5432/db").startswith("postgresql+psycopg://")
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from postgres_schema_url()


@pytest.mark.postgres
def test_replicas_starting_together_migrate_one_after_the_other(postgres_url: str) -> None:
    # Separate processes, like replicas (Alembic's context is process-global). Without the
    # advisory lock in the migration environment the later ones fail on "duplicate key value
    # violates unique constraint" creating the same tables.
    script = (
        "import sys, time; from api.db.engine import make_engine; "
        "from api.db.migrate import upgrade; engine = make_engine(sys.argv[1]); "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); upgrade(engine)"
    )
    start_at = time.time() + 4.0  # all imported and connected by then: a real race
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgres_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [replica.communicate(timeout=120)[0].decode() for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0, 0], outputs
    engine = make_engine(postgres_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_the_retries_migration_counts_one_run_for_every_job_that_started(
    settings: Settings,
) -> None:
    from alembic import command

    from api.db.migrate import alembic_config
    from api.db.models import RegistrationJob
    from api.enums import RegistrationStatusValues
    from tests.api.fake_results import add_registration

    apps = start_in_process(settings)
    api = next(apps)
    session_id = api.create_session(api.create_patient("MRN-P-13")["id"])["id"]
    ids = {
        status: add_registration(api, session_id, status=status)
        for status in (RegistrationStatusValues.QUEUED, RegistrationStatusValues.FAILED)
    }
    apps.close()
    engine = make_engine(settings.database_url)
    config = alembic_config(engine)
    try:
        command.downgrade(config, "0012_cbctiso")
        command.upgrade(config, "head")
        with make_session_factory(engine)() as db:
            attempts = {
                status: db.get_one(RegistrationJob, job_id).attempts
                for status, job_id in ids.items()
            }
            interruptions = [job.interruptions for job in db.query(RegistrationJob)]
    finally:
        engine.dispose()
    assert attempts == {RegistrationStatusValues.QUEUED: 0, RegistrationStatusValues.FAILED: 1}
    assert interruptions == [[], []]
