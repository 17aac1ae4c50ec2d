"""``igrt serve``: run the HTTP service under uvicorn."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(commands: Any) -> None:
    """Add the ``serve`` sub-command to ``commands`` (an argparse sub-parser action)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "serve", help="run the HTTP service", description="Run the HTTP service under uvicorn."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default %(default)s)")
    parser.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate")
    parser.add_argument("--ssl-keyfile", default=None, help="the certificate's private key")
    parser.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="trust X-Forwarded-Proto/For from these proxy addresses (behind a TLS proxy)",
    )
    parser.set_defaults(handler=_run)


def _run(arguments: argparse.Namespace) -> int:
    import uvicorn

    from api.core.config import Settings
    from api.db.single_process import SqliteProcessLock
    from api.errors import DatabaseInUseError
    from api.main import create_app
    from igrt.cli.main import EXIT_BAD_INPUT
    from igrt.errors import InvalidInputError

    if (arguments.ssl_certfile is None) != (arguments.ssl_keyfile is None):
        raise InvalidInputError("--ssl-certfile and --ssl-keyfile go together", field="ssl")
    proxy: dict[str, Any] = {}
    if arguments.forwarded_allow_ips:
        proxy = {"proxy_headers": True, "forwarded_allow_ips": arguments.forwarded_allow_ips}
    settings = Settings()
    # The service takes this lock for its life at start-up; looking first turns a second
    # process on the same SQLite file into one clear line instead of a start-up traceback.
    try:
        probe = SqliteProcessLock.acquire(settings.database_url)
    except DatabaseInUseError as error:
        print(f"igrt: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if probe is not None:
        probe.release()
    uvicorn.run(
        create_app(settings),
        host=arguments.host,
        port=arguments.port,
        log_level="info",
        # Fluoroscopy frames do not compress; deflating each one cost ~8 ms per frame.
        ws_per_message_deflate=False,
        ssl_certfile=arguments.ssl_certfile,
        ssl_keyfile=arguments.ssl_keyfile,
        server_header=False,
        **proxy,
    )
    return 0
