"""``igrt motion batch`` on Dask: planning, the worker task, resuming after kill -9, a scheduler.

Most tests run the batch on an in-process Dask cluster (threads, no worker processes start);
the kill -9 test runs the real command with its local cluster of worker processes.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures import breathing
from igrt.cli.batch import (
    ASSESSED_FILE,
    FAILED_FILE,
    assess_recording,
    dask_client,
    plan_batch,
    run_batch,
)
from igrt.cli.main import EXIT_BAD_INPUT, EXIT_PROCESSING_FAILED, build_parser, main
from igrt.errors import InvalidInputError
from igrt.trace import BreathingTrace

distributed = pytest.importorskip("distributed", reason="the 'batch' extra (dask.distributed)")

BAD_TRACE = "time_s,si_mm,confidence\n0,1,1\n0,2,1\n"  # time does not increase


def _trace(path: Path, amplitude_mm: float, seed: int = 0) -> None:
    signal = breathing.irregular(amplitude_mm, 4.0, 40.0, 10.0, seed=seed)
    BreathingTrace(signal.times_s, signal.si_mm).to_csv(path)


def _settings(*extra: str) -> dict[str, Any]:
    from igrt.cli.motion import _settings as settings_of

    arguments = build_parser().parse_args(["motion", "batch", "in", "--out", "o", *extra])
    return settings_of(arguments)


def _summary(path: Path) -> list[dict[str, str]]:
    with path.open() as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    """An in-process cluster: the batch logic without worker processes."""
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,  # pyplot is not thread-safe
            processes=False,
            protocol="tcp",  # so that the command can reach it by address, as a real one
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as dask,
    ):
        yield dask


# --- planning -------------------------------------------------------------------------------


def test_plan_refuses_two_recordings_sharing_an_output_folder(tmp_path: Path) -> None:
    (tmp_path / "in" / "a").mkdir(parents=True)
    _trace(tmp_path / "in" / "a" / "b.csv", 8.0)
    _trace(tmp_path / "in" / "a__b.csv", 8.0)
    with pytest.raises(InvalidInputError, match="would share the output folder") as error:
        plan_batch(tmp_path / "in", tmp_path / "out")
    assert error.value.field == "folder"


def test_plan_skips_the_output_folder_inside_the_input(tmp_path: Path, client: Any) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _trace(folder / "one.csv", 8.0)
    out = folder / "results"
    run_batch(client, plan_batch(folder, out), _settings(), show_progress=False)
    assert (out / "one" / "trace.csv").exists()  # a CSV trace ...
    assert (out / "one" / "motion.png").exists()  # ... and a PNG in a folder: not recordings
    assert plan_batch(folder, out).recordings == (folder / "one.csv",)


def test_plan_refuses_an_empty_folder_and_a_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no recordings"):
        plan_batch(tmp_path, tmp_path / "out")
    (tmp_path / "x.csv").write_text("")
    with pytest.raises(InvalidInputError, match="not a folder"):
        plan_batch(tmp_path / "x.csv", tmp_path / "out")


# --- the worker task ------------------------------------------------------------------------


def test_the_task_does_not_assess_a_finished_recording_again(tmp_path: Path) -> None:
    recording, folder = tmp_path / "r.csv", tmp_path / "out" / "r"
    _trace(recording, 8.0)
    first = assess_recording(recording, folder, _settings("--no-plot"))
    assert first["status"] == "ok"
    assert "_summary" not in first  # rows travel between processes: plain values only
    written = (folder / ASSESSED_FILE).stat()
    again = assess_recording(recording, folder, _settings("--no-plot"))
    assert again == {"recording": str(recording), "status": "done_before"}
    assert (folder / ASSESSED_FILE).stat().st_ino == written.st_ino
    assert (folder / ASSESSED_FILE).stat().st_mtime_ns == written.st_mtime_ns


def test_the_task_marks_a_bad_recording_failed_once(tmp_path: Path) -> None:
    recording, folder = tmp_path / "bad.csv", tmp_path / "out" / "bad"
    recording.write_text(BAD_TRACE)
    row = assess_recording(recording, folder, _settings())
    assert row["status"] == "bad_input"
    marker = json.loads((folder / FAILED_FILE).read_text())
    assert marker["status"] == "bad_input"
    assert marker["message"] == row["message"]
    assert not (folder / ASSESSED_FILE).exists()
    assert assess_recording(recording, folder, _settings())["status"] == "done_before"


# --- a batch --------------------------------------------------------------------------------


def test_failures_are_kept_and_rerun_only_when_asked(tmp_path: Path, client: Any) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    _trace(folder / "good.csv", 8.0)
    (folder / "bad.csv").write_text(BAD_TRACE)
    plan = plan_batch(folder, out)
    rows = {Path(r["recording"]).name: r for r in run_batch(client, plan, _settings())}
    assert rows["good.csv"]["status"] == "ok"
    assert rows["bad.csv"]["status"] == "bad_input"
    assert [r["recording"] for r in _summary(out / "failures.csv")] == [str(folder / "bad.csv")]

    # A re-run assesses nothing and lists the failure once, not once per run.
    marker = (out / "bad" / FAILED_FILE).stat().st_ino
    run_batch(client, plan, _settings())
    assert (out / "bad" / FAILED_FILE).stat().st_ino == marker
    assert len(_summary(out / "failures.csv")) == 1
    assert len(_summary(out / "summary.csv")) == 2

    # Fixed and retried: assessed, and the stale failures.csv goes.
    _trace(folder / "bad.csv", 6.0)
    rows = {
        Path(r["recording"]).name: r
        for r in run_batch(client, plan, _settings(), retry_failed=True)
    }
    assert rows["bad.csv"]["status"] == "ok"
    assert not (out / "bad" / FAILED_FILE).exists()
    assert not (out / "failures.csv").exists()


def test_a_worker_error_is_reported_but_not_marked(tmp_path: Path, client: Any) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    _trace(folder / "good.csv", 8.0)
    settings = _settings()
    settings["geometry"] = {"not_an_option": 1.0}  # GeometryOptions(**...) raises TypeError
    rows = run_batch(client, plan_batch(folder, out), settings, show_progress=False)
    assert rows[0]["status"] == "failed"
    assert rows[0]["message"].startswith("worker error (TypeError)")
    assert _summary(out / "failures.csv")[0]["message"] == rows[0]["message"]
    assert not (out / "good" / FAILED_FILE).exists()  # the next run tries again
    rows = run_batch(client, plan_batch(folder, out), _settings(), show_progress=False)
    assert rows[0]["status"] == "ok"


def test_the_command_runs_on_a_given_scheduler(tmp_path: Path, client: Any) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for index in range(3):
        _trace(folder / f"p{index}.csv", 4.0 + 3 * index, seed=index)
    address = client.scheduler.address
    code = main(["motion", "batch", str(folder), "--out", str(out), "--scheduler", address])
    assert code == 0
    rows = _summary(out / "summary.csv")
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert [float(r["excursion_median_mm"]) > 0 for r in rows] == [True] * 3


@pytest.mark.parametrize("address", ["http://host:8786", "tcp://host", "tcp://:8786", "a b"])
def test_a_malformed_scheduler_address_is_bad_input(
    tmp_path: Path, address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _trace(tmp_path / "r.csv", 8.0)
    code = main(
        ["motion", "batch", str(tmp_path), "--out", str(tmp_path / "o"), "--scheduler", address]
    )
    assert code == EXIT_BAD_INPUT
    assert "tcp://HOST:PORT" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_named() -> None:
    from tests.api.live_server import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    reached = pytest.raises(
        InvalidInputError, match=f"cannot reach the Dask scheduler at {address}"
    )
    with reached, dask_client(address, connect_timeout_s=1.0):
        pass


def test_workers_and_scheduler_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "motion",
                "batch",
                str(tmp_path),
                "--out",
                "o",
                "--workers",
                "2",
                "--scheduler",
                "tcp://h:1",
            ]
        )
    assert exited.value.code == EXIT_BAD_INPUT


# --- kill -9 and resume ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def dicom_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of the phantom breathing 10 mm at 5 fps (a recording that takes a while)."""
    from fixtures.fluoro import simulate_fluoro
    from fixtures.phantom import make_phantom
    from igrt.geometry import xvi_geometry
    from igrt.imageio import write_fluoro_dicom

    simulation = simulate_fluoro(
        make_phantom(),
        breathing.regular(10.0, 4.0, 12.0, 50.0),
        duration_s=12.0,
        fps=5.0,
        geometry=xvi_geometry(binning=4),
        grid_spacing_mm=(2.5, 2.0),
        seed=7,
    )
    path = tmp_path_factory.mktemp("dicom") / "clip.dcm"
    write_fluoro_dicom(simulation.sequence, path, patient_id="P", patient_name="S^P", uid_seed="k")
    return path


def _outcomes(out: Path) -> dict[str, tuple[int, int]]:
    """Every outcome file with its inode and modification time (a rewrite changes both)."""
    files = [*out.glob(f"*/{ASSESSED_FILE}"), *out.glob(f"*/{FAILED_FILE}")]
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}


@pytest.mark.slow
def test_a_killed_batch_resumes_without_assessing_anything_twice(
    dicom_clip: Path, tmp_path: Path
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    total = 18
    for index in range(total - 1):
        if index % 3 == 0:
            shutil.copy(dicom_clip, folder / f"patient{index:02d}.dcm")
        else:
            _trace(folder / f"patient{index:02d}.csv", 3.0 + index, seed=index)
    (folder / "patient99.csv").write_text(BAD_TRACE)
    command = [sys.executable, "-m", "igrt.cli.main", "motion", "batch", str(folder)]
    command += ["--out", str(out), "--workers", "2"]
    environment = {**os.environ, "MPLBACKEND": "Agg"}
    first = subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240  # generous: CI machines are shared
    while time.monotonic() < deadline and len(_outcomes(out)) < 3 and first.poll() is None:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # an abrupt stop: the local cluster's workers die too
    first.wait(timeout=30)
    before = _outcomes(out)
    assert 3 <= len(before) < total, "the batch was not interrupted mid-way"

    resumed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == EXIT_PROCESSING_FAILED, resumed.stderr  # the bad recording
    assert f"resuming: {len(before)} of {total} already done" in resumed.stderr
    after = _outcomes(out)
    assert len(after) == total
    assert {name: after[name] for name in before} == before  # nothing done before was redone
    rows = _summary(out / "summary.csv")
    assert sorted(r["recording"] for r in rows) == sorted(str(p) for p in folder.iterdir())
    by_name = {Path(r["recording"]).name: r for r in rows}
    assert by_name.pop("patient99.csv")["status"] == "bad_input"
    assert all(row["status"] == "ok" for row in by_name.values())
    assert float(by_name["patient00.dcm"]["excursion_median_mm"]) == pytest.approx(10.0, abs=1.0)
    assert [r["recording"] for r in _summary(out / "failures.csv")] == [
        str(folder / "patient99.csv")
    ]
    assert not list(out.rglob(".*.json.*"))  # no half-written outcome left behind
