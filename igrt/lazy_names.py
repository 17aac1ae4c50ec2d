"""A package's public names, imported from the submodule that defines them on first use.

Importing a package should not import everything it offers: ``igrt register`` needs neither
pydicom nor the 2D/2D modules, and a fresh process pays for each import (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_attribute"]


def lazy_attribute(
    package: str, homes: Mapping[str, str], namespace: MutableMapping[str, Any], name: str
) -> Any:
    """``name`` of ``package``, imported from its submodule ``homes[name]`` and remembered.

    Raises
    ------
    AttributeError
        ``name`` is not one of the package's public names.
    """
    home = homes.get(name)
    if home is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{package}.{home}"), name)
    namespace[name] = value  # later look-ups skip the package's __getattr__
    return value
