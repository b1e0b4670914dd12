"""Launched sweeps: tasks per chunk, SLURM options as sbatch lines, and the local launcher for
real (submitit starts one Python process per task, which imports sweepbook, trains and appends
part files; the coordinator merges and reports)."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import polars as pl
import pytest
from submitit.slurm.slurm import _make_sbatch_string

from sweepbook import launch
from sweepbook.cli import EXIT_BAD_INPUT, EXIT_OK, build_parser, launcher_options, main
from sweepbook.config import LauncherConfig, load_sweep
from sweepbook.engine import default_compile_cache, load_splits
from sweepbook.launch import (
    TaskSettings,
    last_error_line,
    local_parameters,
    make_executor,
    plan_tasks,
    run_tasks,
    slurm_parameters,
)
from sweepbook.plan import expand
from sweepbook.report import placement_table
from sweepbook.store import Store

TWO_GROUPS = """\
experiment = "tiny"
seeds = [0, 1, 2]

[grid]
"train.batch_size" = [64, 128]
"optimizer.learning_rate" = [3e-3, 3e-2]
"""


def _settings(store: Path, runs_per_chunk: int) -> TaskSettings:
    return TaskSettings(
        store=store,
        compile_cache=default_compile_cache(),
        git_commit=None,
        runs_per_chunk=runs_per_chunk,
        memory_budget=0.25,
    )


@pytest.mark.parametrize(
    ("runs_per_chunk", "sizes"), [(4, [4, 2, 4, 2]), (6, [6, 6]), (32, [6, 6])]
)
def test_one_task_per_chunk_of_each_compile_group(
    project: Path, runs_per_chunk: int, sizes: list[int]
) -> None:
    (project / "sweeps" / "groups.toml").write_text(TWO_GROUPS)
    plan = expand(load_sweep(project / "sweeps" / "groups.toml"))
    splits = load_splits(plan)
    tasks = plan_tasks(plan, plan, splits, _settings(project / "out", runs_per_chunk))
    assert [len(task.runs) for task in tasks] == sizes
    assert [task.index for task in tasks] == list(range(len(tasks)))
    launched = [run.run_id for task in tasks for run in task.runs]
    assert sorted(launched) == sorted(run.run_id for run in plan)  # each run exactly once
    for task in tasks:  # a task holds one compile group, and knows all of it
        batch_sizes = {run.config.train.batch_size for run in task.group}
        assert len(task.group) == 6 and len(batch_sizes) == 1
        assert {run.config.train.batch_size for run in task.runs} == batch_sizes


def test_a_resumed_sweep_chunks_what_is_left_by_the_whole_group(project: Path) -> None:
    (project / "sweeps" / "groups.toml").write_text(TWO_GROUPS)
    plan = expand(load_sweep(project / "sweeps" / "groups.toml"))
    splits = load_splits(plan)
    left = plan[1:4] + plan[7:]  # some runs of both groups already stored
    tasks = plan_tasks(left, plan, splits, _settings(project / "out", 4))
    assert sorted(len(task.runs) for task in tasks) == [1, 3, 4]
    assert all(len(task.group) == 6 for task in tasks)


def test_slurm_options_become_sbatch_lines(tmp_path: Path) -> None:
    options = LauncherConfig(
        partition="gpu",
        account="proj42",
        time=90,
        gpus=1,
        cpus=8,
        mem_gb=15.5,
        array_parallelism=4,
        setup=["module load cuda/12.4", "export JAX_PLATFORMS=cuda"],
    )
    parameters = slurm_parameters(options, name="sweepbook-tiny")
    # The function SlurmExecutor.update_parameters validates with, and submits the text of.
    script = _make_sbatch_string(
        command="python -m submitit.core._submit x", folder=tmp_path / "%j", map_count=10,
        **parameters,
    )  # fmt: skip
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj42",
        "#SBATCH --time=90",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=15872M",
        "#SBATCH --job-name=sweepbook-tiny",
        "#SBATCH --array=0-9%4",  # ten tasks, four at a time
        "#SBATCH --signal=USR2@90",  # submitit's warning, 90 s before the 90 minutes
        "module load cuda/12.4",
        "export JAX_PLATFORMS=cuda",
    ):
        assert line in script.splitlines(), line
    assert "qos" not in script and "constraint" not in script  # unset options stay unset
    assert local_parameters(options, gpus=0) == {"timeout_min": 90, "gpus_per_node": 0}


@pytest.mark.parametrize(("minutes", "seconds"), [(1, 0), (2, 30), (3, 60), (4, 90), (60, 90)])
def test_the_time_limit_warning_never_comes_in_the_first_half_of_a_short_limit(
    minutes: int, seconds: int
) -> None:
    parameters = slurm_parameters(LauncherConfig(time=minutes), name="x")
    assert parameters["signal_delay_s"] == seconds


def test_command_line_flags_override_the_launcher_table(project: Path) -> None:
    sweep_file = project / "sweeps" / "tiny.toml"
    sweep_file.write_text(
        sweep_file.read_text() + '\n[launcher]\npartition = "cpu"\ntime = 30\ncpus = 4\n'
    )
    sweep = load_sweep(sweep_file)
    args = build_parser().parse_args(
        ["run", str(sweep_file), "--launcher", "slurm", "--partition", "gpu", "--gpus", "2"]
    )
    options = launcher_options(sweep, args)
    assert (options.partition, options.gpus, options.time, options.cpus) == ("gpu", 2, 30, 4)


def test_a_misspelled_launcher_key_is_bad_input(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_file = project / "sweeps" / "tiny.toml"
    sweep_file.write_text(sweep_file.read_text() + '\n[launcher]\npartion = "gpu"\n')
    assert main(["run", str(sweep_file), "--launcher", "local"]) == EXIT_BAD_INPUT
    assert "launcher.partion" in capsys.readouterr().err


def test_no_wait_needs_slurm(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep_file = project / "sweeps" / "tiny.toml"
    assert main(["run", str(sweep_file), "--launcher", "local", "--no-wait"]) == EXIT_BAD_INPUT
    assert "--no-wait needs --launcher slurm" in capsys.readouterr().err
    assert not (project / "reports").exists()


def test_local_launcher_end_to_end_then_resume_trains_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project)
    command = ["run", "sweeps/tiny.toml", "--launcher", "local"]
    assert main([*command, "--runs-per-chunk", "2", "--array-parallelism", "2"]) == EXIT_OK
    err = capsys.readouterr().err
    assert "2 local task(s)" in err and "4 ok, 0 diverged, 0 failed" in err
    out = project / "reports" / "tiny"
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == 4 and runs["run_id"].n_unique() == 4
    assert set(runs["status"]) == {"ok"}
    assert set(runs["chunk_size"]) == {2}  # the task's chunk, as inline would size it
    job_ids = set(runs["job_id"].to_list())
    assert len(job_ids) == 2 and None not in job_ids  # two tasks, two processes
    assert pl.read_parquet(out / "history.parquet")["run_id"].n_unique() == 4
    assert not list((out / "parts").glob("*.parquet"))  # the coordinator merged
    html = (out / "index.html").read_text()
    placement = html[html.index('id="placement"') :]
    for job_id in job_ids:
        assert f"<td>{job_id}</td>" in placement
    logs = sorted((out / "jobs").iterdir())

    assert main(command) == EXIT_OK
    assert "0 to train" in capsys.readouterr().err
    assert sorted((out / "jobs").iterdir()) == logs  # nothing submitted
    assert Store(out).read_runs().height == 4


def test_a_failing_task_is_reported_and_the_others_runs_kept(project: Path) -> None:
    plan = expand(load_sweep(project / "sweeps" / "tiny.toml"))
    store = project / "out"
    settings = _settings(store, 2)
    tasks = plan_tasks(plan, plan, load_splits(plan), settings)
    blocker = project / "not-a-directory"
    blocker.write_text("")
    # The second task's compilation cache cannot be created: its process raises at start.
    broken = dataclasses.replace(settings, compile_cache=blocker / "xla")
    tasks[1] = dataclasses.replace(tasks[1], settings=broken)
    executor = make_executor(
        "local", store / "jobs", LauncherConfig(), name="sweepbook-tiny", local_gpus=0
    )
    outcomes = run_tasks(executor, tasks, parallelism=2, poll_seconds=0.5)

    assert outcomes[0].error is None and outcomes[0].result is not None
    assert outcomes[0].result.summary.ok == 2
    assert outcomes[0].result.job_id == outcomes[0].job_id
    failure = outcomes[1].error
    assert outcomes[1].result is None and failure is not None
    assert re.match(r"(NotADirectoryError|FileExistsError): .*not-a-directory", failure)
    assert f"log: {store / 'jobs'}" in failure and "\n" not in failure
    stored = Store(store).read_runs()
    assert sorted(stored["run_id"]) == sorted(run.run_id for run in tasks[0].runs)


def test_last_error_line_skips_trailing_blank_lines() -> None:
    assert last_error_line("Traceback ...\n  File x\nValueError: boom\n\n") == "ValueError: boom"
    assert last_error_line("") == "no error output"
    # srun's closing lines after a task's traceback, as a real SLURM writes them.
    log = "Traceback ...\nRuntimeError: no GPU\nsrun: error: vm: task 0: Exited with exit code 1\n"
    assert last_error_line(log) == "RuntimeError: no GPU"
    assert last_error_line("srun: error: only srun\n") == "srun: error: only srun"
    # A task SLURM stopped at its time limit, as the test cluster logged it.
    stopped = (
        "slurmstepd-vm: error: *** JOB 4 ON vm CANCELLED AT 2026-12-02T10:41:20 DUE TO TIME "
        "LIMIT ***\nTerminated\nsrun: error: Slurm job 4 has expired\n"
    )
    assert last_error_line(stopped).endswith("DUE TO TIME LIMIT ***")


def test_where_runs_ran_groups_array_tasks_by_job() -> None:
    runs = pl.DataFrame(
        {
            "host": ["login", "node1", "node1", "node2"],
            "device": ["cpu:0 cpu", "gpu:0 NVIDIA H100", "gpu:0 NVIDIA H100", "gpu:0 NVIDIA H100"],
            "job_id": [None, "812_0", "812_1", "812_2"],
            "train_seconds": [1.0, 2.0, 3.0, 4.0],
        }
    )
    table = placement_table(runs)
    assert [row.cells for row in table.rows] == [
        ["login", "cpu:0 cpu", "inline", "—", "1", "1.0"],
        ["node1", "gpu:0 NVIDIA H100", "812", "2", "2", "5.0"],
        ["node2", "gpu:0 NVIDIA H100", "812", "1", "1", "4.0"],
    ]


def test_slurm_launcher_without_slurm_is_one_clear_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(project))  # no srun, whatever this machine has
    sweep_file = project / "sweeps" / "tiny.toml"
    assert main(["run", str(sweep_file), "--launcher", "slurm"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "--launcher slurm" in err and "srun" in err and len(err.splitlines()) == 1


def _fake_squeue(directory: Path, script: str) -> None:
    squeue = directory / "squeue"
    squeue.write_text(f"#!/bin/sh\n{script}\n")
    squeue.chmod(0o755)


def test_the_record_of_submitted_tasks_keeps_what_squeue_still_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = tmp_path / "jobs"
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    launch._write_submitted(
        jobs,
        [
            launch.SubmittedTask("12_0", ("a", "b")),
            launch.SubmittedTask("12_1", ("c",)),
            launch.SubmittedTask("9", ("d",)),
        ],
    )
    # squeue --array lists pending array tasks one by one; job 9 has ended.
    _fake_squeue(tmp_path, 'echo "$@" > "$(dirname "$0")/asked"; echo 12_1')
    assert launch.in_flight(jobs) == [launch.SubmittedTask("12_1", ("c",))]
    assert "--jobs=12,9" in (tmp_path / "asked").read_text()
    assert launch.read_submitted(jobs) == [launch.SubmittedTask("12_1", ("c",))]  # forgotten

    # One job id that SLURM has already purged is an error for squeue, not for us.
    _fake_squeue(tmp_path, 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1')
    assert launch.in_flight(jobs) == []
    assert launch.read_submitted(jobs) == []


def test_when_squeue_fails_nothing_is_submitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = tmp_path / "jobs"
    launch._write_submitted(jobs, [launch.SubmittedTask("12_0", ("a",))])
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue: a store copied off the cluster
    assert launch.in_flight(jobs) == []
    _fake_squeue(tmp_path, 'echo "squeue: error: Unable to contact slurm controller" >&2; exit 1')
    with pytest.raises(launch.LaunchError, match="Unable to contact slurm controller"):
        launch.in_flight(jobs)
    (jobs / launch.SUBMITTED_FILE).write_text("{not json")
    with pytest.raises(launch.LaunchError, match=r"submitted\.json: unreadable"):
        launch.read_submitted(jobs)


def test_last_error_line_names_a_validation_error_not_its_documentation_link() -> None:
    log = (
        "Traceback ...\n"
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig\n"
        "kind\n  Value error, unknown model 'linar' [type=value_error]\n"
        "    For further information visit https://errors.pydantic.dev/2.9/v/value_error\n"
    )
    assert last_error_line(log) == "Value error, unknown model 'linar' [type=value_error]"
