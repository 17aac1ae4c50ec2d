"""The content-addressed file store."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from api.storage import FileStore, PayloadTooLargeError


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    store = FileStore(tmp_path / "files", tmp_path / "tmp")
    store.prepare()
    return store


def test_store_moves_a_staged_file_under_its_digest(store: FileStore) -> None:
    staged = store.temp_path(".dcm")
    size = store.copy_to_staging(io.BytesIO(b"frames"), staged, limit_bytes=100)
    stored = store.store(staged)
    digest = hashlib.sha256(b"frames").hexdigest()
    assert size == 6
    assert stored.sha256 == digest
    assert stored.relative_path == f"{digest[:2]}/{digest}.dcm"
    assert store.path(stored.relative_path).read_bytes() == b"frames"
    assert not staged.exists()


def test_identical_content_is_stored_once(store: FileStore) -> None:
    paths = []
    for _ in range(2):
        staged = store.temp_path(".raw")
        staged.write_bytes(b"same")
        paths.append(store.store(staged).relative_path)
    assert paths[0] == paths[1]
    assert len([p for p in store.root.rglob("*") if p.is_file()]) == 1


def test_copy_refuses_more_than_the_limit_and_leaves_nothing(store: FileStore) -> None:
    staged = store.temp_path()
    with pytest.raises(PayloadTooLargeError):
        store.copy_to_staging(io.BytesIO(bytes(101)), staged, limit_bytes=100)
    assert not staged.exists()


@pytest.mark.parametrize(
    "address", ["../etc/passwd", "ab/../../x", "zz/" + "a" * 64, "aa/" + "a" * 64 + ".x/y", ""]
)
def test_only_store_addresses_resolve(store: FileStore, address: str) -> None:
    with pytest.raises(ValueError, match="store address"):
        store.path(address)


def test_staging_cleans_up_and_prepare_removes_leftovers(store: FileStore) -> None:
    with store.staging(".zip") as staged:
        staged.write_bytes(b"x")
    assert not staged.exists()
    leftover = store.temp_path(".dcm")
    leftover.write_bytes(b"crashed mid-upload")
    store.prepare()
    assert not leftover.exists()
    assert store.writable()
