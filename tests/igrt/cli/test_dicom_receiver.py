"""``igrt dicom-receiver`` refuses to start without a valid list of allowed senders."""

from __future__ import annotations

from pathlib import Path

import pytest

from igrt.cli.main import EXIT_BAD_INPUT, main


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "configure at least one calling AE"),
        (["--allow", "CTSIM"], "needs a role"),
        (["--allow", "CTSIM=reception"], "reception"),
        (["--allow", "A_TITLE_FAR_TOO_LONG=planning"], "not an AE title"),
        (["--ae-title", " IGRT", "--allow", "CTSIM=planning"], "not an AE title"),
    ],
)
def test_bad_sender_configuration_is_refused(
    arguments: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IGRT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("IGRT_DICOM_ALLOWED_AES", raising=False)
    assert main(["dicom-receiver", "--port", "0", *arguments]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
