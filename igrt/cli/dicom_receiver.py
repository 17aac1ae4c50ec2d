"""``igrt dicom-receiver``: run the DICOM receiver (C-STORE / C-ECHO SCP) on the service's data.

Settings come from ``IGRT_DICOM_*`` (see :class:`api.dicom.receiver.DicomReceiverSettings`)
and the service's ``IGRT_DATA_DIR`` / ``IGRT_DATABASE_URL``; the flags override them. It runs
beside ``igrt serve`` on the same database and file store, until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any


def register(commands: Any) -> None:
    """Add the ``dicom-receiver`` sub-command to ``commands`` (an argparse sub-parser action)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "dicom-receiver",
        help="receive CT, CBCT, RT and fluoroscopy objects over DICOM (C-STORE SCP)",
        description=(
            "Receive DICOM objects (C-STORE, C-ECHO) from the allowed senders, store them "
            "durably, file them to the patient's session (or quarantine them) and queue the "
            "same processing as an upload."
        ),
    )
    parser.add_argument("--ae-title", help="our AE title (IGRT_DICOM_AE_TITLE, default IGRT)")
    parser.add_argument("--host", help="interface to bind (IGRT_DICOM_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port, 0 for any (IGRT_DICOM_PORT, 11112)")
    parser.add_argument(
        "--allow",
        action="append",
        metavar="AE=ROLE",
        help="a calling AE title allowed to send, with its role planning|treatment "
        "(repeatable; replaces IGRT_DICOM_ALLOWED_AES)",
    )
    parser.add_argument("--max-instance-mb", type=float, help="largest instance, MiB")
    parser.add_argument("--max-associations", type=int, help="simultaneous associations")
    parser.add_argument(
        "--series-settle-s", type=float, help="quiet seconds before a CT series becomes a volume"
    )
    parser.add_argument(
        "--fraction-window-hours",
        type=float,
        help="how recent a fraction session must be for a treatment image",
    )
    parser.set_defaults(handler=_run)


def _overrides(arguments: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {
        "ae_title": arguments.ae_title,
        "host": arguments.host,
        "port": arguments.port,
        "max_associations": arguments.max_associations,
        "series_settle_s": arguments.series_settle_s,
        "fraction_window_hours": arguments.fraction_window_hours,
    }
    if arguments.allow:
        values["allowed_aes"] = ",".join(arguments.allow)
    if arguments.max_instance_mb is not None:
        values["max_instance_bytes"] = int(arguments.max_instance_mb * 1024 * 1024)
    return {name: value for name, value in values.items() if value is not None}


def _run(arguments: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from api.core.config import Settings
    from api.core.logging import configure_logging
    from api.dicom.receiver import DicomReceiver, DicomReceiverSettings
    from igrt.errors import InvalidInputError

    service_settings = Settings()
    try:
        settings = DicomReceiverSettings(**_overrides(arguments))
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise InvalidInputError(
            str(problem["msg"]), field=str(problem["loc"][0]) if problem["loc"] else None
        ) from exc
    configure_logging(service_settings.log_level, service_settings.log_format)
    receiver = DicomReceiver.from_settings(service_settings, settings)
    receiver.start()
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    print(
        f"igrt dicom-receiver: {settings.ae_title} listening on {settings.host}:{receiver.port}",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        receiver.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
