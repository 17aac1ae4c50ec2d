"""The ``igrt`` command line: the composition root of the project.

Sub-commands import what they need (the simulator, the web service) lazily inside themselves,
so ``igrt --help`` stays fast and the domain core never imports them.

Exit codes: 0 success, 2 bad input or usage, 3 processing failure, 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from igrt import __version__
from igrt.errors import InvalidInputError, ProcessingError

__all__ = ["EXIT_BAD_INPUT", "EXIT_PROCESSING_FAILED", "build_parser", "main"]

EXIT_BAD_INPUT = 2
EXIT_PROCESSING_FAILED = 3


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    from igrt.cli import (
        dicom_receiver,
        motion,
        register,
        register_pair,
        serve,
        simulate,
        store,
        token,
        worker,
    )

    parser = argparse.ArgumentParser(
        prog="igrt",
        description="Image guidance and respiratory-motion assessment for liver SBRT.",
    )
    parser.add_argument("--version", action="version", version=f"igrt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dicom_receiver.register(commands)
    motion.register(commands)
    register.register(commands)
    register_pair.register(commands)
    serve.register(commands)
    simulate.register(commands)
    store.register(commands)
    token.register(commands)
    worker.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        result: int = arguments.handler(arguments)
    except InvalidInputError as error:
        field = f" ({error.field})" if error.field else ""
        print(f"igrt: bad input{field}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ProcessingError as error:
        print(f"igrt: processing failed: {error}", file=sys.stderr)
        return EXIT_PROCESSING_FAILED
    return result


if __name__ == "__main__":
    sys.exit(main())
