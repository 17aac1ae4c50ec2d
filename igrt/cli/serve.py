"""``igrt serve``: run the HTTP service under uvicorn."""

from __future__ import annotations

import argparse
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
    parser.set_defaults(handler=_run)


def _run(arguments: argparse.Namespace) -> int:
    import uvicorn

    from api.main import create_app

    uvicorn.run(
        create_app(),
        host=arguments.host,
        port=arguments.port,
        log_level="info",
        # Fluoroscopy frames do not compress; deflating each one cost ~8 ms per frame.
        ws_per_message_deflate=False,
    )
    return 0
