"""A site's own motion protocol, read from a TOML file and validated.

A clinic writes the values it changes, each with where it comes from::

    version = "site-x-2026.1"

    [fields.motion_threshold_mm]
    value = 5.0
    kind = "seed"
    source = "Lee et al., JCO 2009"

    [fields.max_baseline_drift_mm_per_min]
    value = 2.0
    kind = "site_choice"
    source = "physics meeting 2026-03-02"

Every field not named keeps the default of :data:`igrt.protocol.DEFAULT_PROTOCOL` and its
provenance. The file is parsed with :mod:`tomllib`, checked with pydantic (no unknown keys, a
provenance for every value given), then by :class:`~igrt.protocol.MotionProtocol` itself. The
SHA-256 of the file's bytes is recorded with every result next to the version.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from igrt.errors import InvalidInputError
from igrt.protocol import DEFAULT_PROTOCOL, MotionProtocol, ProvenanceValues

__all__ = ["LoadedProtocol", "builtin_protocol", "load_protocol_file"]

_MAX_FILE_BYTES = 256 * 1024


class _FieldEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: bool | int | float | str | list[str]
    kind: ProvenanceValues
    source: str = Field(min_length=1, max_length=500)


class _ProtocolFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=100)
    fields: dict[str, _FieldEntry] = Field(default_factory=dict)


@dataclass(frozen=True)
class LoadedProtocol:
    """A protocol read from a file, with the file's SHA-256 (hex) and path."""

    protocol: MotionProtocol
    sha256: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        """Version, hash and path: what every result records."""
        return {"version": self.protocol.version, "sha256": self.sha256, "path": self.path}


def builtin_protocol() -> LoadedProtocol:
    """The built-in default protocol; its hash is that of its canonical JSON."""
    text = json.dumps(DEFAULT_PROTOCOL.to_dict(), sort_keys=True, separators=(",", ":"))
    return LoadedProtocol(DEFAULT_PROTOCOL, hashlib.sha256(text.encode()).hexdigest(), "built-in")


def load_protocol_file(path: str | os.PathLike[str]) -> LoadedProtocol:
    """Read, validate and build a site protocol.

    Raises
    ------
    InvalidInputError
        If the file is missing, too large, not TOML, has unknown keys or fields, a value without
        provenance, or a value the protocol refuses (``field`` names it).
    """
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as error:
        raise InvalidInputError(
            f"cannot read protocol file {source}: {error}", field="protocol"
        ) from None
    if len(data) > _MAX_FILE_BYTES:
        raise InvalidInputError(f"protocol file {source} is too large", field="protocol")
    try:
        document = tomllib.loads(data.decode("utf-8"))
        parsed = _ProtocolFile.model_validate(document)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InvalidInputError(
            f"protocol file {source} is not TOML: {error}", field="protocol"
        ) from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidInputError(
            f"protocol file {source}: {where}: {first['msg']}", field=where or "protocol"
        ) from None
    values: dict[str, Any] = {"version": parsed.version}
    provenance: dict[str, dict[str, str]] = {}
    for name, entry in parsed.fields.items():
        if name in {"version", "provenance"}:
            raise InvalidInputError(f"{name} cannot be set as a field", field=name)
        values[name] = tuple(entry.value) if isinstance(entry.value, list) else entry.value
        provenance[name] = {"kind": entry.kind.value, "source": entry.source}
    values["provenance"] = provenance
    protocol = MotionProtocol.from_dict(values)
    return LoadedProtocol(protocol, hashlib.sha256(data).hexdigest(), str(source))
