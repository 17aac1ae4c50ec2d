"""``igrt worker``: run registration jobs from the database queue, beside the service replicas.

The replicas queue jobs (``IGRT_REGISTRATION_IN_PROCESS=false`` keeps them from running any);
any number of workers on the same database and file store (``IGRT_DATABASE_URL``,
``IGRT_DATA_DIR``) claim them one at a time each per thread, with the service's compare-and-set
claim, lease heartbeat, time limit and bounded retries of a job whose worker died
(:mod:`api.job_leases`), and write results exactly as the in-process worker does
(:class:`api.registration_jobs.RegistrationWorker`).

SIGTERM or Ctrl-C: no new job is taken; running jobs get ``--stop-grace-s`` to finish, then
those still running are queued again (their leases released) for another worker, and the
process ends. A second signal releases them at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

_DEFAULT_STOP_GRACE_S = 20.0  # under compose's stop_grace_period (30 s) in compose.yaml


def register(commands: Any) -> None:
    """Add the ``worker`` sub-command to ``commands`` (an argparse sub-parser action)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "worker",
        help="run queued registration jobs (beside service replicas on one database)",
        description=(
            "Claim and run the registration jobs queued in the service's database until "
            "SIGTERM; the service replicas then run none themselves when "
            "IGRT_REGISTRATION_IN_PROCESS=false."
        ),
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="jobs run at once (1-16; IGRT_REGISTRATION_WORKERS, default 2)",
    )
    parser.add_argument(
        "--poll-s",
        type=float,
        default=1.0,
        help="how often the queue is read when idle, s (default %(default)s)",
    )
    parser.add_argument(
        "--stop-grace-s",
        type=float,
        default=_DEFAULT_STOP_GRACE_S,
        help="on SIGTERM, how long running jobs may finish before they are queued again, s "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--alive-file",
        type=Path,
        default=None,
        help="touch this file after every poll of the queue that did not fail (a container "
        "health check compares its age with a few --poll-s)",
    )
    parser.set_defaults(handler=_run)


def _settings(concurrency: int | None) -> Any:
    """The service settings, with this process running jobs on ``concurrency`` threads."""
    from pydantic import ValidationError

    from api.core.config import Settings
    from igrt.errors import InvalidInputError

    try:
        base = Settings()
        threads = base.registration_workers if concurrency is None else concurrency
        # Registration jobs are this process's only heavy work: one slot each, plus the one
        # the settings keep free for uploads (unused here).
        return Settings(
            registration_in_process=True,
            registration_workers=threads,
            heavy_work_max_concurrent=max(base.heavy_work_max_concurrent, threads + 1),
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = str(problem["loc"][0]) if problem["loc"] else None
        if field == "registration_workers":
            field = "concurrency"
        raise InvalidInputError(str(problem["msg"]), field=field) from exc


def _run(arguments: argparse.Namespace) -> int:
    from api.core.logging import configure_logging
    from api.db.migrate import upgrade
    from api.db.single_process import SqliteProcessLock
    from api.errors import DatabaseInUseError
    from api.service import Service
    from igrt.cli.main import EXIT_BAD_INPUT
    from igrt.errors import InvalidInputError

    if not arguments.poll_s > 0:
        raise InvalidInputError("--poll-s must be positive", field="poll_s")
    if not arguments.stop_grace_s >= 0:
        raise InvalidInputError("--stop-grace-s must be zero or positive", field="stop_grace_s")
    settings = _settings(arguments.concurrency)
    configure_logging(settings.log_level, settings.log_format)
    # On SQLite the service is one process: a worker beside it is refused, clearly.
    try:
        single_process = SqliteProcessLock.acquire(settings.database_url)
    except DatabaseInUseError as error:
        print(f"igrt: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    service = Service.from_settings(settings)
    worker = service.registrations
    stop = threading.Event()
    hurry = threading.Event()  # a second signal: release running jobs without waiting

    def on_signal(*_: Any) -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        service.store.prepare()
        upgrade(service.engine)  # idempotent, under the migrations' advisory lock
        abandoned = worker.reap_abandoned()
        retried = sum(job.requeued for job in abandoned)
        print(
            f"igrt worker: {worker.leases.owner} running up to {settings.registration_workers} "
            f"registration jobs at once (abandoned jobs at start: {retried} queued again, "
            f"{len(abandoned) - retried} failed)",
            flush=True,
        )
        alive: Path | None = arguments.alive_file
        worker.serve_queue(
            stop, poll_s=arguments.poll_s, on_poll=None if alive is None else alive.touch
        )
        released = worker.stop(arguments.stop_grace_s, hurry)
        print(
            f"igrt worker: stopped; {len(released)} running jobs queued again for another worker",
            flush=True,
        )
        if not worker.idle:
            # Threads still computing released jobs cannot be stopped, and their results
            # would be discarded: end without waiting for them.
            service.engine.dispose()
            if single_process is not None:
                single_process.release()
            sys.stderr.flush()
            os._exit(0)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        service.engine.dispose()
        if single_process is not None:
            single_process.release()
    return 0
