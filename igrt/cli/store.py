"""``igrt store check [--repair]``: the service's file store against its database.

Lists stored files no row names (orphans, left by a crash between storing a file and committing
its row), rows whose file is missing, files that are not store addresses and staging leftovers;
``--repair`` removes the orphans and staging leftovers older than ``--min-age`` and never
touches a row (see :mod:`api.store_check`). Works on the data the service would use
(``IGRT_DATA_DIR`` / ``IGRT_DATABASE_URL``), migrating the database first like ``igrt token``.
Safe while the service runs: a file younger than ``--min-age`` may be one whose row is about to
be committed, so it is listed and kept.

Prints one line per finding, then a summary JSON line. Exit code 0 when the store and the
database agree (after the repair), 4 when something is left for a person (a missing file, a
foreign file, or an orphan not removed).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["EXIT_INCONSISTENT", "register"]

EXIT_INCONSISTENT = 4
_DEFAULT_MIN_AGE = "1h"


def register(commands: Any) -> None:
    """Add the ``store`` sub-command to ``commands`` (an argparse sub-parser action)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "store",
        help="check the service's file store against its database",
        description="Check the HTTP service's file store against its database.",
    )
    actions = parser.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="list orphan files and rows whose file is missing (--repair removes orphans)",
        description=(
            "List stored files no database row names (orphans), rows whose file is missing, "
            "files that are not store addresses and staging leftovers. Exit 0 when consistent, "
            f"{EXIT_INCONSISTENT} otherwise."
        ),
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="remove orphan files and staging leftovers (rows are never deleted: rows whose "
        "file is missing are reported for a person to restore from a backup)",
    )
    check.add_argument(
        "--min-age",
        default=_DEFAULT_MIN_AGE,
        metavar="DURATION",
        help="files younger than this are listed but kept: a running service may be about to "
        f"commit their row (default {_DEFAULT_MIN_AGE}; 0s when the service is stopped)",
    )
    check.set_defaults(handler=_check)


def _min_age_s(text: str) -> float:
    from igrt.cli.token import parse_duration_s

    return 0.0 if text.strip() in ("0", "0s") else parse_duration_s(text)


def _print_findings(report: Any, repaired: bool) -> None:
    for item in report.missing:
        print(
            f"missing file: {item.table} {item.row_id} {item.column} -> {item.relative_path} "
            "(row kept; restore the file from a backup)"
        )
    removed = set(report.removed)
    for item in report.orphans:
        state = "removed" if item.relative_path in removed else "kept"
        if not repaired:
            state = "orphan (--repair removes it)"
        print(f"orphan file: {item.relative_path} {item.size_bytes} bytes: {state}")
    for item in report.young_orphans:
        print(f"recent unnamed file (kept, younger than --min-age): {item.relative_path}")
    for path in report.kept_named_meanwhile:
        print(f"orphan named by a new row meanwhile (kept): {path}")
    for item in report.foreign:
        print(f"foreign file (not a store address; kept): {item.relative_path}")
    for item in report.staging_leftovers:
        state = "removed" if f"tmp/{item.relative_path}" in removed else "leftover"
        print(f"staging leftover: tmp/{item.relative_path}: {state}")


def _check(arguments: argparse.Namespace) -> int:
    from api.storage import FileStore
    from api.store_check import check_store, repair_store
    from igrt.cli.token import load_settings, open_database

    min_age_s = _min_age_s(arguments.min_age)
    settings = load_settings()
    sessions, engine = open_database(settings)
    store = FileStore(settings.store_dir, settings.temp_dir)
    try:
        with sessions() as db:
            report = check_store(db, store, min_age_s=min_age_s)
            if arguments.repair:
                repair_store(db, store, report)
    finally:
        engine.dispose()
    _print_findings(report, arguments.repair)
    orphan_bytes = sum(item.size_bytes for item in report.orphans)
    summary = {
        "stored_files": report.stored_files,
        "references": report.references,
        "orphan_files": len(report.orphans),
        "orphan_bytes": orphan_bytes,
        "recent_unnamed_files": len(report.young_orphans),
        "missing_files": len(report.missing),
        "foreign_files": len(report.foreign),
        "staging_leftovers": len(report.staging_leftovers),
        "removed": len(report.removed),
        "repaired": bool(arguments.repair),
        "consistent": report.consistent,
    }
    print(json.dumps(summary, sort_keys=True))
    if not report.consistent:
        print(
            "igrt: the store and the database disagree (see above)"
            + ("" if arguments.repair else "; --repair removes orphan files"),
            file=sys.stderr,
        )
        return EXIT_INCONSISTENT
    return 0
