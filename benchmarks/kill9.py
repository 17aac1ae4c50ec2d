"""kill -9 of the service during uploads, assessments and registration jobs: what survives.

Issue 12's target: kill -9 during an upload, during an assessment and during a registration
job, 20 times each at random moments (seeded): 0 acknowledged records lost, 0 orphaned rows or
files after the next start (or collected by ``igrt store check --repair``), 0 jobs left
running.

For each operation, ``igrt serve`` runs as a subprocess on a fresh SQLite data directory (no
demo data); a client thread repeats the operation back to back (uploads: a fluoroscopy DICOM
and a CBCT MetaImage alternately, each with new bytes; assessments of a 2 s fluoroscopy;
registrations of a phantom CT and CBCT, each submitted, polled to its end and its result read,
then the next); the server is killed with SIGKILL at a seeded random moment within three
operations' time and restarted on the same data. After each restart: registration jobs still
``running`` under a dead worker are counted, every acknowledged (2xx) record is read back over
HTTP (upload files by SHA-256, assessments and completed registration results as answered),
and once no job is pending the store check (``igrt store check --repair --min-age 0``: the
library functions of :mod:`api.store_check`) collects orphans, then must find the store
consistent. See :mod:`tests.api.kill9` for the details.

Random moments rarely fall in the few milliseconds between storing a file and committing the
row that names it, the moment that leaves an orphan. ``--after-store`` more kills of uploads
and of registrations (5 each) are therefore made at that moment: as soon as a new file appears
in the store (polled every millisecond); ``at moment`` counts the kills that came after a
store (the others at the end of the wait).

Prints a table (operation, kills, kills at the intended moment, kills with a request or job
under way, acknowledged, lost, orphans collected, rows without their file, left after repair,
jobs left running, jobs run again after a kill, median restart time) and a final JSON line.
Exit code 0 when every operation meets the target, 1 otherwise.

    .venv/bin/python benchmarks/kill9.py --kills 20 --seed 12
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

# The project first: run as a script, benchmarks/ would shadow the `registration` package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.api.kill9 import (
    OPERATIONS,
    STORING_OPERATIONS,
    KillTally,
    make_inputs,
    run_kills,
)

_COLUMNS = (
    ("operation", 26),
    ("kills", 6),
    ("at moment", 10),
    ("in flight", 10),
    ("acked", 6),
    ("lost", 5),
    ("orphans", 8),
    ("orphan MB", 10),
    ("no file", 8),
    ("left", 5),
    ("jobs running", 13),
    ("jobs retried", 13),
    ("restart s", 10),
    ("s", 7),
)


def _row(tally: KillTally) -> str:
    summary = tally.to_dict()
    cells = (
        tally.label,
        tally.kills,
        tally.kills_at_moment,
        tally.kills_in_flight,
        tally.acknowledged,
        len(tally.lost),
        tally.orphans_collected + tally.staging_leftovers_collected,
        f"{tally.orphan_bytes_collected / 1e6:.1f}",
        tally.rows_without_file,
        tally.left_after_repair,
        tally.jobs_left_running,
        tally.retried_jobs,
        f"{summary['restart_s_median']:.2f}" if summary["restart_s_median"] else "-",
        f"{tally.seconds:.0f}",
    )
    return " ".join(
        str(cell).rjust(width) for cell, (_, width) in zip(cells, _COLUMNS, strict=True)
    )


def _print(line: str) -> None:
    print(line, flush=True)


def _quiet(line: str) -> None:
    del line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per operation (20)")
    parser.add_argument("--seed", type=int, default=12, help="seeds the kill moments (12)")
    parser.add_argument(
        "--operations",
        default=",".join(OPERATIONS),
        help=f"comma-separated, of {', '.join(OPERATIONS)} (all)",
    )
    parser.add_argument(
        "--after-store",
        type=int,
        default=5,
        help="then kills of uploads and registrations as soon as a file is stored (5)",
    )
    parser.add_argument("--verbose", action="store_true", help="one line per kill")
    arguments = parser.parse_args(argv)
    operations = [name.strip() for name in arguments.operations.split(",") if name.strip()]
    if unknown := sorted(set(operations) - set(OPERATIONS)):
        parser.error(f"unknown operations: {', '.join(unknown)}")

    started = time.monotonic()
    tallies: list[KillTally] = []
    with tempfile.TemporaryDirectory(prefix="igrt-kill9-") as folder:
        root = Path(folder)
        inputs = make_inputs(root, patient_id="MRN-KILL-0009")
        runs = [(operation, arguments.kills, False) for operation in operations]
        runs += [
            (operation, arguments.after_store, True)
            for operation in operations
            if operation in STORING_OPERATIONS and arguments.after_store > 0
        ]
        for operation, kills, after_store in runs:
            workdir = root / f"{operation}{'-after-store' if after_store else ''}"
            workdir.mkdir()
            tallies.append(
                run_kills(
                    operation,
                    kills,
                    seed=arguments.seed,
                    workdir=workdir,
                    inputs=inputs,
                    after_store=after_store,
                    log=_print if arguments.verbose else _quiet,
                )
            )

    print(" ".join(name.rjust(width) for name, width in _COLUMNS))
    for tally in tallies:
        print(_row(tally))
    for tally in tallies:
        for why in tally.lost:
            print(f"LOST ({tally.operation}): {why}")
    met = all(tally.met for tally in tallies)
    print(
        json.dumps(
            {
                "benchmark": "kill9",
                "seed": arguments.seed,
                "kills_per_operation": arguments.kills,
                "operations": [tally.to_dict() for tally in tallies],
                "acknowledged": sum(t.acknowledged for t in tallies),
                "lost": sum(len(t.lost) for t in tallies),
                "orphans_collected": sum(
                    t.orphans_collected + t.staging_leftovers_collected for t in tallies
                ),
                "left_after_repair": sum(t.left_after_repair for t in tallies),
                "jobs_left_running": sum(t.jobs_left_running for t in tallies),
                "target_met": met,
                "seconds": round(time.monotonic() - started, 1),
                "python": platform.python_version(),
                "machine": platform.machine(),
            },
            sort_keys=True,
        )
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
