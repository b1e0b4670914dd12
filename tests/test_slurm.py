"""The SLURM launcher through a real SLURM: a one-node cluster (tests/slurm/cluster.sh, started
once per test session) runs the tiny sweep's tasks as real jobs of real arrays, submitted with
sbatch and followed with squeue and sacct. Select these tests with ``pytest -m slurm``; where
root or the packages are missing they are skipped, with the reason."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from conftest import TINY_SWEEP, write_project
from sweepbook import launch
from sweepbook.cli import EXIT_FAILURE, EXIT_OK, main
from sweepbook.store import Store

pytestmark = pytest.mark.slurm

CLUSTER = Path(__file__).parent / "slurm" / "cluster.sh"
PROGRAMS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
PACKAGES = "apt-get install slurm-wlm slurmdbd munge mariadb-server"
# Four runs of one compile group, in tasks of RUNS_PER_CHUNK runs. Every test keeps the same
# chunk size, so that the session's tasks share one compiled program through the cache.
RUNS_PER_CHUNK = "2"


def _why_no_cluster() -> str | None:
    missing = [program for program in PROGRAMS if shutil.which(program) is None]
    if missing:
        return f"no {', '.join(missing)} here: {PACKAGES} (.ci/run does, as root)"
    if os.geteuid() != 0:
        return "the test SLURM cluster runs its daemons as root"
    return None


@pytest.fixture(scope="session")
def slurm_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running one-node SLURM cluster for the session; its slurm.conf."""
    reason = _why_no_cluster()
    if reason is not None:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(
        [str(CLUSTER), "start", str(state)], capture_output=True, text=True, check=False
    )
    if started.returncode != 0:
        pytest.fail(f"the test SLURM cluster did not start: {started.stderr.strip()}")
    try:
        yield state / "slurm.conf"
    finally:
        subprocess.run([str(CLUSTER), "stop", str(state)], check=False)


@pytest.fixture
def cluster(slurm_conf: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny project as the working directory, its commands talking to the test cluster."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    monkeypatch.chdir(project)
    return project


def _slurm(*command: str, environment: dict[str, str] | None = None) -> str:
    return subprocess.run(
        command, capture_output=True, text=True, check=True, env=environment
    ).stdout


def _accounted(job: str) -> dict[str, dict[str, str]]:
    """sacct's record of each task of array ``job``: state, start and end."""
    fields = ("JobID", "State", "Start", "End")
    lines = _slurm("sacct", "-X", "-n", "-P", "-j", job, "-o", ",".join(fields)).splitlines()
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in lines]
    return {row["JobID"]: row for row in rows}


def _task_folders(out: Path) -> set[str]:
    """The folders submitit made under the store's jobs/, one per submitted task (sacct learns
    of a job a moment after sbatch returns; these exist before)."""
    return {path.name for path in (out / "jobs").iterdir() if path.is_dir()}


def _listed(job: str, environment: dict[str, str] | None = None) -> list[str]:
    """``<job>_<task> <state>`` of the tasks of ``job`` that squeue lists."""
    listing = subprocess.run(
        ["squeue", "-h", "-r", "-j", job, "-o", "%i %T"],
        capture_output=True,
        text=True,
        env=environment,
    )
    return listing.stdout.splitlines()


def _wait_until_gone(job: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while _listed(job):
        assert time.monotonic() < deadline, f"job {job} still listed: {_listed(job)}"
        time.sleep(0.5)


def _add_launcher(project: Path, table: str) -> None:
    sweep = project / "sweeps" / "tiny.toml"
    sweep.write_text(sweep.read_text() + "\n[launcher]\n" + table)


def _array_of(err: str) -> str:
    match = re.search(r"SLURM job (\d+)", err)
    assert match, err
    return match.group(1)


RUN = ["run", "sweeps/tiny.toml", "--launcher", "slurm", "--runs-per-chunk", RUNS_PER_CHUNK]


def test_an_array_runs_as_slurm_jobs_and_the_report_says_where(
    cluster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The setup lines run in each task's batch script, before its Python starts.
    _add_launcher(
        cluster,
        'setup = ["echo setup of task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}", '
        '"export SWEEPBOOK_TEST_SETUP=1"]\narray_parallelism = 1\n',
    )
    assert main(RUN) == EXIT_OK
    err = capsys.readouterr().err
    assert "2 slurm task(s)" in err and "4 ok, 0 diverged, 0 failed" in err
    array = _only_folder_job(cluster)
    assert array is not None
    out = cluster / "reports" / "tiny"
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == 4 and set(runs["status"]) == {"ok"}
    assert set(runs["job_id"]) == {f"{array}_0", f"{array}_1"}
    assert not list((out / "parts").glob("*.parquet"))  # merged

    tasks = _accounted(array)
    assert {row["State"] for row in tasks.values()} == {"COMPLETED"}
    # array_parallelism = 1: SLURM never ran the two tasks at the same time.
    first, second = sorted(tasks.values(), key=lambda row: row["Start"])
    assert dt.datetime.fromisoformat(first["End"]) <= dt.datetime.fromisoformat(second["Start"])

    for task in ("0", "1"):
        log = (out / "jobs" / f"{array}_{task}" / f"{array}_{task}_0_log.out").read_text()
        assert log.index(f"setup of task {array}_{task}") < log.index("Starting with")

    html = (out / "index.html").read_text()
    placement = html[html.index('id="placement"') :]
    row = re.search(rf"<td>{array}</td>\s*<td>(\d+)</td>\s*<td>(\d+)</td>", placement)
    assert row and row.groups() == ("2", "4")  # one job, its two array tasks, four runs


def test_no_wait_then_the_same_command_merges_and_submits_nothing(
    cluster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*RUN, "--no-wait"]) == EXIT_OK
    array = _array_of(capsys.readouterr().err)
    _wait_until_gone(array)
    out = cluster / "reports" / "tiny"
    assert len(list((out / "parts").glob("*.runs.parquet"))) == 2  # stored, not merged yet
    assert not (out / "runs.parquet").exists()

    before = _task_folders(out)
    assert main(RUN) == EXIT_OK
    err = capsys.readouterr().err
    assert "4 already stored, 0 to train" in err and "slurm task(s)" not in err
    assert _task_folders(out) == before  # nothing submitted
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == 4 and {job.split("_")[0] for job in runs["job_id"]} == {array}
    assert not list((out / "parts").glob("*.parquet"))
    assert f"<td>{array}</td>" in (out / "index.html").read_text()


def test_a_rerun_while_the_array_is_queued_waits_for_it_instead_of_submitting_again(
    cluster: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*RUN, "--no-wait"]) == EXIT_OK
    array = _array_of(capsys.readouterr().err)
    assert _listed(array)  # still queued or running
    out = cluster / "reports" / "tiny"
    before = _task_folders(out)

    # --no-wait again: says so and returns, submitting nothing.
    assert main([*RUN, "--no-wait"]) == EXIT_OK
    err = capsys.readouterr().err
    assert f"SLURM job {array} (squeue -j {array}): not submitted again" in err
    assert "0 to train" in err and _task_folders(out) == before

    # Without it: waits for the queued array, then merges and reports.
    assert main(RUN) == EXIT_OK
    err = capsys.readouterr().err
    assert (
        f"4 runs of this store are still queued or running as SLURM job {array} "
        f"(squeue -j {array}): not submitted again" in err
    )
    assert "0 to train" in err and "slurm task(s)" not in err
    assert _task_folders(out) == before
    runs = pl.read_parquet(out / "runs.parquet")  # waited for, merged and reported
    assert runs.height == 4 and runs["run_id"].n_unique() == 4
    assert (out / "index.html").exists()
    assert launch.read_submitted(out / "jobs") == []  # ended tasks are forgotten

    # Any other launcher would train the queued runs a second time: it refuses instead.
    other = ["--out", "reports/other"]
    assert main([*RUN, "--no-wait", *other]) == EXIT_OK
    array = _array_of(capsys.readouterr().err)
    assert main(["run", "sweeps/tiny.toml", *other]) == EXIT_FAILURE
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and f"still queued or running as SLURM job {array}" in line
    assert not (cluster / "reports" / "other" / "runs.parquet").exists()
    _slurm("scancel", array)


TROUBLE = """\
setup = [
  "case $SLURM_ARRAY_TASK_ID in 1|2) sleep 600;; 3) export JAX_PLATFORMS=cuda;; esac",
]
array_parallelism = 4
time = 1
"""


@dataclass(frozen=True)
class Troubled:
    project: Path
    coordinator: subprocess.Popen[bytes]
    array: str
    err: Path  # the coordinator's error output


@pytest.fixture(scope="module", autouse=True)
def troubled(slurm_conf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Troubled]:
    """An array of four tasks of two runs each, started first and waited for by a
    ``sweepbook run`` process of its own while the other tests run (its time-limit task
    takes a minute and a half): task 0 trains; task 1 is cancelled with scancel while it
    runs; task 2 outlives its one-minute --time; task 3 raises (JAX_PLATFORMS=cuda, as the
    README advises for GPU partitions, on a node without a GPU)."""
    sweep = TINY_SWEEP.replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3]")
    project = write_project(tmp_path_factory.mktemp("troubled"), {"tiny": sweep})
    _add_launcher(project, TROUBLE)
    err = project / "coordinator.err"
    environment = {
        **os.environ,
        "SLURM_CONF": str(slurm_conf),
        "SWEEPBOOK_COMPILE_CACHE": str(tmp_path_factory.getbasetemp() / "xla-cache"),
    }
    with err.open("wb") as stream:
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "sweepbook.cli", *RUN],
            cwd=project,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stream,
        )
    try:
        deadline = time.monotonic() + 120
        while not (array := _only_folder_job(project)) or f"{array}_1 RUNNING" not in _listed(
            array, environment
        ):
            assert time.monotonic() < deadline and coordinator.poll() is None, err.read_text()
            time.sleep(0.2)
        _slurm("scancel", f"{array}_1", environment=environment)
        yield Troubled(project, coordinator, array, err)
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()


def _only_folder_job(project: Path) -> str | None:
    jobs = project / "reports" / "tiny" / "jobs"
    arrays = {folder.name.split("_")[0] for folder in jobs.glob("*_*") if folder.is_dir()}
    return arrays.pop() if len(arrays) == 1 else None


def test_cancelled_timed_out_and_failing_tasks_then_a_rerun_trains_only_what_is_missing(
    troubled: Troubled,
    cluster: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert troubled.coordinator.wait(timeout=300) == EXIT_FAILURE
    err = troubled.err.read_text()
    array = troubled.array
    tasks = _accounted(array)
    assert tasks[f"{array}_0"]["State"] == "COMPLETED"
    assert tasks[f"{array}_1"]["State"].startswith("CANCELLED")
    assert tasks[f"{array}_2"]["State"] == "TIMEOUT"
    assert tasks[f"{array}_3"]["State"] == "FAILED"
    failures = {
        line.split("(job ")[1].split(",")[0]: line
        for line in err.splitlines()
        if line.startswith("task failed")
    }
    assert sorted(failures) == [f"{array}_1", f"{array}_2", f"{array}_3"]
    jobs = troubled.project / "reports" / "tiny" / "jobs"
    host = platform.node()
    for job_id, reason in (
        ("1", "CANCELLED"),
        ("2", "DUE TO TIME LIMIT"),
        ("3", f"RuntimeError: JAX finds no usable device on {host} for JAX_PLATFORMS=cuda"),
    ):
        line = failures[f"{array}_{job_id}"]
        assert reason in line, line
        assert f"(log: {jobs / f'{array}_{job_id}' / f'{array}_{job_id}_0_log.err'})" in line
    store = Store(troubled.project / "reports" / "tiny")
    kept = store.read_runs()
    assert kept.height == 2 and set(kept["job_id"]) == {f"{array}_0"}  # task 0's runs kept

    # The rerun, without the trouble: only the six missing runs are submitted.
    monkeypatch.chdir(troubled.project)
    sweep = troubled.project / "sweeps" / "tiny.toml"
    sweep.write_text(sweep.read_text().replace(TROUBLE, "time = 1\n"))
    assert main(RUN) == EXIT_OK
    err = capsys.readouterr().err
    assert "2 already stored, 6 to train" in err and "3 slurm task(s)" in err
    runs = store.read_runs()
    assert runs.height == 8 and runs["run_id"].n_unique() == 8  # no stored run trained twice
    again = runs.filter(pl.col("job_id") != f"{array}_0")
    assert (
        again["job_id"].n_unique() == 3 and not again["job_id"].str.starts_with(f"{array}_").any()
    )
    assert sorted(runs.filter(pl.col("job_id") == f"{array}_0")["run_id"]) == sorted(kept["run_id"])
