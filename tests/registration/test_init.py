"""The package's public names load on first use, each from the submodule that defines it."""

from __future__ import annotations

import importlib

import pytest

import registration
from tests.fresh_imports import modules_imported_by


def test_every_public_name_loads_from_the_submodule_that_defines_it() -> None:
    assert set(registration._HOME) == set(registration.__all__)
    for name in registration.__all__:
        home = importlib.import_module(f"registration.{registration._HOME[name]}")
        assert getattr(registration, name) is getattr(home, name)
    assert set(registration.__all__) <= set(dir(registration))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'register_nothing'"):
        _ = registration.register_nothing  # type: ignore[attr-defined]


def test_the_3d_registration_loads_neither_the_2d_modules_nor_pydicom() -> None:
    # pydicom (about 0.2 s in a fresh process) is for the DICOM export only.
    loaded = modules_imported_by(
        "from registration import prepare_planning_reference, register_cbct_to_ct"
    )
    assert not {"pydicom", "registration.pair2d", "registration.drr", "fastapi"} & loaded


def test_the_3d_registration_and_its_overlays_load_no_opencv() -> None:
    # The review PNGs are written by registration.overlays itself (OpenCV: ~20 ms per command).
    loaded = modules_imported_by("from registration import register_cbct_to_ct, make_overlays")
    assert "cv2" not in loaded
