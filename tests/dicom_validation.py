"""Validate DICOM files the tests write with dicom3tools' ``dciodvfy`` (0 errors required).

``dciodvfy`` checks a file against its IOD (every module, Type 1/2/2C attribute and value
representation). Tests skip with the reason when it is missing, unless
``IGRT_REQUIRE_DICOM3TOOLS=1`` (as ``.ci/run`` sets, after installing Debian's ``dicom3tools``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

__all__ = ["DicomValidator", "dciodvfy_validator"]

DicomValidator = Callable[[Path | bytes], list[str]]


def dciodvfy_validator(tmp_path: Path) -> DicomValidator:
    """A function that runs ``dciodvfy`` on a file (or bytes) and fails the test on an error.

    Returns the warnings, for tests that want to look at them.
    """
    executable = shutil.which("dciodvfy")
    if executable is None:
        reason = "dciodvfy (Debian package dicom3tools) is not installed"
        if os.environ.get("IGRT_REQUIRE_DICOM3TOOLS") == "1":
            pytest.fail(f"IGRT_REQUIRE_DICOM3TOOLS=1 but {reason}")
        pytest.skip(reason)

    def validate(source: Path | bytes) -> list[str]:
        path = source if isinstance(source, Path) else tmp_path / "dciodvfy-input.dcm"
        if isinstance(source, bytes):
            path.write_bytes(source)
        completed = subprocess.run(
            [executable, str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        lines = (completed.stdout + completed.stderr).splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        assert not errors, f"dciodvfy found errors in {path.name}:\n" + "\n".join(errors)
        return [line for line in lines if line.startswith("Warning")]

    return validate
