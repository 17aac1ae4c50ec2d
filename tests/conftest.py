"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.shared_data import shared_data_dir
from tests.dicom_validation import DicomValidator, dciodvfy_validator


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; tests that need it skip with a reason where it is absent."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data folder {root} is absent (set IGRT_SHARED_DATA)")
    return root


@pytest.fixture
def dciodvfy(tmp_path: Path) -> DicomValidator:
    """Validate a DICOM file with dicom3tools' ``dciodvfy``: 0 errors required."""
    return dciodvfy_validator(tmp_path)
