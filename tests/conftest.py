"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.shared_data import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; tests that need it skip with a reason where it is absent."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data folder {root} is absent (set IGRT_SHARED_DATA)")
    return root
