"""The composition root: ``igrt`` starts without the libraries its sub-commands import."""

from __future__ import annotations

from tests.fresh_imports import heavy_modules_imported_by


def test_building_the_parser_loads_no_heavy_library() -> None:
    # Every command pays for what the root imports: the web service, DICOM, SimpleITK, scipy
    # and OpenCV are for the sub-commands that use them.
    code = "from igrt.cli.main import build_parser\nbuild_parser()"
    assert heavy_modules_imported_by(code) == []
