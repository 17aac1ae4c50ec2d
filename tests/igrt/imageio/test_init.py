"""The package's public names load on first use, each from the submodule that defines it."""

from __future__ import annotations

import importlib

import pytest

import igrt.imageio as imageio
from tests.fresh_imports import heavy_modules_imported_by


def test_every_public_name_loads_from_the_submodule_that_defines_it() -> None:
    assert set(imageio._HOME) == set(imageio.__all__)
    for name in imageio.__all__:
        home = importlib.import_module(f"igrt.imageio.{imageio._HOME[name]}")
        assert getattr(imageio, name) is getattr(home, name)
    assert set(imageio.__all__) <= set(dir(imageio))


def test_an_unknown_name_is_an_attribute_error_and_submodules_still_import() -> None:
    with pytest.raises(AttributeError, match="no attribute 'read_nothing'"):
        _ = imageio.read_nothing  # type: ignore[attr-defined]
    from igrt.imageio import _dicom_pixels

    assert _dicom_pixels.__name__ == "igrt.imageio._dicom_pixels"


def test_importing_the_package_loads_no_reader() -> None:
    assert heavy_modules_imported_by("import igrt.imageio") == []
