"""Which modules a piece of code imports, run in a fresh interpreter.

Import cost is paid once per process: a command such as ``igrt register`` pays for every module
its path imports (scipy.ndimage, SimpleITK, pydicom: tenths of a second each). Tests use
:func:`modules_imported_by` to keep the heavy ones off the paths that do not need them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["HEAVY_MODULES", "heavy_modules_imported_by", "modules_imported_by"]

HEAVY_MODULES = (
    "SimpleITK",
    "api",
    "cv2",
    "fastapi",
    "matplotlib",
    "pydicom",
    "pynetdicom",
    "scipy",
    "sqlalchemy",
    "uvicorn",
)
"""Top-level packages whose import costs a fresh process noticeably (or that only the web
service needs)."""

_ROOT = Path(__file__).resolve().parent.parent


def modules_imported_by(code: str, *argv: str) -> set[str]:
    """Names of the modules loaded after running ``code`` in a fresh interpreter.

    ``argv`` becomes the snippet's ``sys.argv[1:]``. The project root comes first on the path,
    so the code under test is this checkout's.
    """
    probe = f"{code}\nimport json as _json, sys as _sys\nprint(_json.dumps(sorted(_sys.modules)))"
    inherited = os.environ.get("PYTHONPATH")
    path = str(_ROOT) if not inherited else os.pathsep.join([str(_ROOT), inherited])
    environment = {**os.environ, "PYTHONPATH": path}
    completed = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    loaded: list[str] = json.loads(completed.stdout.splitlines()[-1])
    return set(loaded)


def heavy_modules_imported_by(code: str, *argv: str) -> list[str]:
    """Which of :data:`HEAVY_MODULES` running ``code`` loads, sorted."""
    top_level = {name.split(".")[0] for name in modules_imported_by(code, *argv)}
    return sorted(top_level & set(HEAVY_MODULES))
