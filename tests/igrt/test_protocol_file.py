"""A site protocol file: TOML, validated, versioned, provenance per field, hash recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from igrt.errors import InvalidInputError
from igrt.protocol import DEFAULT_PROTOCOL, ProvenanceValues
from igrt.protocol_file import builtin_protocol, load_protocol_file

SITE = """
version = "site-x-2026.1"

[fields.max_baseline_drift_mm_per_min]
value = 2.0
kind = "site_choice"
source = "physics meeting 2026-03-02"

[fields.device_preference]
value = ["abdominal_compression", "active_breathing_control"]
kind = "site_choice"
source = "no ABC device"
"""


def test_a_site_file_changes_values_with_their_provenance(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    loaded = load_protocol_file(path)
    protocol = loaded.protocol
    assert protocol.version == "site-x-2026.1"
    assert protocol.max_baseline_drift_mm_per_min == 2.0
    assert protocol.device_preference[0] == "abdominal_compression"
    assert protocol.motion_threshold_mm == DEFAULT_PROTOCOL.motion_threshold_mm
    provenance = protocol.to_dict()["provenance"]
    assert provenance["max_baseline_drift_mm_per_min"]["source"] == "physics meeting 2026-03-02"
    assert provenance["motion_threshold_mm"]["kind"] == ProvenanceValues.SEED.value
    assert len(loaded.sha256) == 64
    assert loaded.to_dict()["version"] == "site-x-2026.1"
    assert builtin_protocol().sha256 != loaded.sha256


def test_every_field_has_a_provenance_in_to_dict() -> None:
    values = DEFAULT_PROTOCOL.to_dict()
    fields = set(values) - {"version", "provenance"}
    assert fields == set(values["provenance"])
    assert {p["kind"] for p in values["provenance"].values()} == {
        "seed",
        "literature",
        "site_choice",
    }


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("version = 'x'\n[fields.nope]\nvalue = 1\nkind = 'seed'\nsource = 's'\n", "nope"),
        ("version = 'x'\n[fields.min_cycles]\nvalue = 3\n", "fields.min_cycles.kind"),
        ("version = 'x'\nextra = 1\n", "extra"),
        ("not toml at all [", "protocol"),
        (
            "version = 'x'\n[fields.motion_threshold_mm]\nvalue = -1.0\nkind = 'seed'\n"
            "source = 's'\n",
            "motion_threshold_mm",
        ),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InvalidInputError) as caught:
        load_protocol_file(path)
    assert caught.value.field == field


def test_the_default_version_cannot_be_reused_with_other_values(tmp_path: Path) -> None:
    path = tmp_path / "sneaky.toml"
    path.write_text(SITE.replace("site-x-2026.1", DEFAULT_PROTOCOL.version))
    with pytest.raises(InvalidInputError, match="own version"):
        load_protocol_file(path)


def test_cli_records_the_protocol_file_version_and_hash(tmp_path: Path) -> None:
    import json

    from igrt.cli.main import main
    from tests.igrt.traces import lujan_cycles, write_csv

    path = tmp_path / "site.toml"
    path.write_text(SITE)
    trace = write_csv(tmp_path / "t.csv", *lujan_cycles([4.0] * 30, drift_mm_per_min=2.5))
    out = tmp_path / "out"
    assert main(["motion", "assess", str(trace), "--out", str(out), "--no-plot",
                 "--protocol", str(path)]) == 0  # fmt: skip
    document = json.loads((out / "t" / "assessment.json").read_text())
    assert document["protocol"]["version"] == "site-x-2026.1"
    assert document["protocol"]["sha256"] == load_protocol_file(path).sha256
    # 2.5 mm/min is within the default 3 mm/min but beyond the site's 2 mm/min
    assert document["decision"]["reason"] == "baseline_drift"
