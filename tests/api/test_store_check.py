"""``igrt store check [--repair]``: orphan files and rows whose file is missing.

A temporary service stores a fluoroscopy upload; the test then makes the store disagree with
the database the ways a crash or a bad restore would (an old orphan file, a fresh one, a row
whose file is gone, a foreign file, a staging leftover) and runs the command line on it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.db.models import Upload
from api.storage import FileStore
from igrt.cli.main import main
from igrt.cli.store import EXIT_INCONSISTENT
from tests.api.conftest import InProcessApi, make_settings, start_in_process

_TWO_HOURS_S = 7200.0


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessApi]:
    for name in ("IGRT_DATABASE_URL", "IGRT_TOKEN_PEPPER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IGRT_DATA_DIR", str(tmp_path / "data"))
    yield from start_in_process(make_settings(tmp_path / "data"))


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _run(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, list[str], Any]:
    code = main(["store", "check", *arguments])
    lines = capsys.readouterr().out.strip().splitlines()
    return code, lines[:-1], json.loads(lines[-1])


def test_store_check_finds_orphans_and_missing_files_and_repairs_only_orphans(
    service: InProcessApi, make_dicom: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    api = service
    patient = api.create_patient()
    session_id = api.create_session(patient["id"])["id"]
    upload = api.upload(session_id, make_dicom())
    assert upload.status_code == 201, upload.text
    upload_id = upload.json()["id"]
    settings = api.settings
    store = FileStore(settings.store_dir, settings.temp_dir)

    code, findings, summary = _run(capsys)
    assert code == 0, findings
    assert summary["consistent"]
    assert summary["stored_files"] == 2
    assert summary["references"] == 2

    # A kill -9 between storing a file and committing its row: an orphan (old enough).
    staged = store.temp_path(".mha")
    staged.write_bytes(b"orphan " * 1000)
    orphan = store.store(staged)
    _age(store.path(orphan.relative_path), _TWO_HOURS_S)
    # One stored a moment ago: a running service may be about to commit its row.
    fresh = store.temp_path(".dcm")
    fresh.write_bytes(b"fresh " * 100)
    young = store.store(fresh)
    # A row whose file is gone (a bad restore): the upload's canonical sequence.
    sessions = api.client.app.state.service.sessions  # type: ignore[attr-defined]
    with sessions() as db:
        row = db.get(Upload, upload_id)
        assert row is not None
        sequence_path = row.sequence_path
    missing = store.path(sequence_path)
    backup = settings.data_dir / "backup.mha"
    shutil.copyfile(missing, backup)
    missing.unlink()
    # A file that is no store address, and a staging leftover of a crashed request.
    foreign = settings.store_dir / "ab" / "notes.txt"
    foreign.parent.mkdir(exist_ok=True)
    foreign.write_text("not ours")
    leftover = settings.temp_dir / "staged-0123456789abcdef.zip"
    leftover.write_bytes(b"partial")
    _age(leftover, _TWO_HOURS_S)

    code, findings, summary = _run(capsys)
    assert code == EXIT_INCONSISTENT
    assert summary["orphan_files"] == 1
    assert summary["orphan_bytes"] == 7000
    assert summary["missing_files"] == 1
    assert summary["foreign_files"] == 1
    assert summary["recent_unnamed_files"] == 1
    assert summary["staging_leftovers"] == 1
    assert summary["removed"] == 0
    assert any(f"uploads {upload_id} sequence_path" in line for line in findings), findings
    assert store.path(orphan.relative_path).exists()  # a check alone changes nothing

    code, findings, summary = _run(capsys, "--repair")
    assert code == EXIT_INCONSISTENT  # the missing file and the foreign one need a person
    assert summary["removed"] == 2
    assert not store.path(orphan.relative_path).exists()
    assert not leftover.exists()
    assert store.path(young.relative_path).exists()
    assert foreign.exists()
    # The row whose file is missing is reported, never deleted.
    kept = api.client.get(f"/api/v1/uploads/{upload_id}", headers=api.headers())
    assert kept.status_code == 200
    assert any("row kept" in line for line in findings), findings

    # A person restores the file and removes the foreign one; the fresh file is named by no
    # row and, once old, goes too.
    shutil.copyfile(backup, missing)
    foreign.unlink()
    _age(store.path(young.relative_path), _TWO_HOURS_S)
    code, findings, summary = _run(capsys, "--repair")
    assert code == 0, findings
    assert summary["removed"] == 1
    assert summary["consistent"]
    code, findings, summary = _run(capsys, "--min-age", "0s")
    assert code == 0
    assert summary["stored_files"] == 2
    assert not findings


def test_store_check_never_removes_a_file_a_row_names_meanwhile(
    service: InProcessApi, make_dicom: Any
) -> None:
    from api.store_check import check_store, repair_store

    api = service
    patient = api.create_patient()
    session_id = api.create_session(patient["id"])["id"]
    settings = api.settings
    store = FileStore(settings.store_dir, settings.temp_dir)
    content = make_dicom()
    # The same bytes as the upload below, stored (and aged) before its row exists.
    staged = store.temp_path(".dcm")
    staged.write_bytes(content)
    early = store.store(staged)
    _age(store.path(early.relative_path), _TWO_HOURS_S)
    sessions = api.client.app.state.service.sessions  # type: ignore[attr-defined]
    with sessions() as db:
        report = check_store(db, store, min_age_s=3600)
    assert [item.relative_path for item in report.orphans] == [early.relative_path]
    # The service commits a row naming that content between the check and the repair.
    assert api.upload(session_id, content).status_code == 201
    with sessions() as db:
        repair_store(db, store, report)
    assert report.kept_named_meanwhile == [early.relative_path]
    assert report.removed == []
    assert store.path(early.relative_path).exists()
