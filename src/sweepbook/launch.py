"""Train planned runs as tasks of a job array through submitit: on SLURM, or as local processes.

One task is one chunk of one compile group, so a task compiles (or loads from the shared
compilation cache) exactly one program. A task loads its data splits, trains its runs with the
engine and appends them to the store as part files; it never merges and never locks the store.
Part files are written atomically under unique names, so any number of tasks may append at
once, and only the coordinating ``sweepbook run`` process folds them into the main files.
A task is a frozen dataclass of plain data: submitit pickles it, and the top-level
:func:`run_task` is pickled by reference, so the task process imports the same sweepbook.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from shlex import join as shlex_join
from typing import Any, Protocol

import submitit

from sweepbook.config import LauncherConfig
from sweepbook.data import Split
from sweepbook.engine import (
    EngineSummary,
    chunk_size,
    enable_compile_cache,
    group_runs,
    load_splits,
    split_key,
    train_runs,
)
from sweepbook.plan import PlannedRun
from sweepbook.registry import Registry
from sweepbook.store import Store, StoreError, atomic_write_json
from sweepbook.usercode import register_run_references

JOBS_DIR = "jobs"  # under the store: submitit's scripts, pickles and one log pair per task
# Under JOBS_DIR: every SLURM task submitted for this store and the runs it trains, so that a
# rerun does not submit again what is still queued or running.
SUBMITTED_FILE = "submitted.json"
# How often the coordinator looks for finished tasks: their result files. The states of tasks
# that ended without one (cancelled, timed out, killed) come from SLURM's accounting (sacct),
# which submitit queries at most every 2 s at first, ever less often as the array runs; the
# coordinator asks it at least every STATE_REFRESH_SECONDS, so that such a task is noticed
# within that time however long the array has run.
STATE_REFRESH_SECONDS = 30.0
# Ended states in which a task writes no result (sacct's names; CANCELLED may be followed by
# " by <uid>"): no need to wait for a result file to appear on a slow shared file system.
ENDED_WITHOUT_RESULT = ("CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL")


@dataclass(frozen=True)
class TaskSettings:
    """What every task of one launch shares."""

    store: Path
    compile_cache: Path
    git_commit: str | None
    runs_per_chunk: int
    memory_budget: float
    # The experiment file's folder: users' code files and a relative data.path are found there
    # (a task's process imports the users' code its runs name again, from there).
    code_base: Path | None = None
    save_params: str = "none"  # checkpoints.SAVE_PARAMS: which runs' variables a task saves


@dataclass(frozen=True)
class Task:
    index: int
    runs: tuple[PlannedRun, ...]
    # Every planned run of the task's compile group: the engine sizes the program by the
    # group, as it does inline, so a task compiles the same program an inline sweep would.
    group: tuple[PlannedRun, ...]
    settings: TaskSettings


@dataclass(frozen=True)
class TaskResult:
    job_id: str | None
    host: str
    device: str
    summary: EngineSummary


@dataclass(frozen=True)
class TaskOutcome:
    task: Task
    job_id: str
    result: TaskResult | None
    error: str | None  # one line: the task's last error output, and where its log is


@dataclass(frozen=True)
class TaskCounts:
    waiting: int  # not handed to the scheduler yet (local parallelism bound)
    queued: int
    running: int
    done: int
    failed: int


def plan_tasks(
    todo: list[PlannedRun],
    planned: list[PlannedRun],
    splits: dict[str, Split],
    settings: TaskSettings,
) -> list[Task]:
    """One task per chunk of each compile group of ``todo``. The chunk is sized as the engine
    sizes it from the whole group in ``planned`` (``runs_per_chunk`` at most); the memory
    bound of the node is applied by the engine inside the task, where the device is known."""
    groups = {group.id: group.runs for group in group_runs(planned, splits)}
    tasks: list[Task] = []
    for group in group_runs(todo, splits):
        size = chunk_size(len(groups[group.id]), limit=settings.runs_per_chunk, devices=1)
        # Runs on one data split (one fold) side by side: a chunk then needs one split only.
        runs = sorted(group.runs, key=split_key)
        for start in range(0, len(runs), size):
            chunk = tuple(runs[start : start + size])
            tasks.append(Task(len(tasks), chunk, groups[group.id], settings))
    return tasks


def _job_id() -> str | None:
    """The submitit job id of this process: ``<array job>_<array task>`` in a SLURM array."""
    try:
        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:  # not inside a submitit job
        return None


def _train_on_at_the_time_limit_warning() -> None:
    """SLURM signals a task ``signal_delay_s`` before its time limit (up to 30 s earlier: its
    controller checks limits twice a minute), and submitit's handler then raises inside the
    task, wherever it is: a chunk that would have finished in time is lost, and raising
    inside XLA's compiler crashed a task of the tests (segmentation fault). A task has nothing
    to checkpoint, so it trains on and SLURM stops it at the limit, if it gets there. A
    signal long before the limit means preemption: submitit's handler requeues the task."""
    submitit_handler = signal.getsignal(signal.SIGUSR2)
    owner = getattr(submitit_handler, "__self__", None)
    if owner is None or not hasattr(owner, "has_timed_out"):
        return  # not inside a submitit SLURM job

    def on_signal(signum: int, frame: Any) -> None:
        if not owner.has_timed_out() and callable(submitit_handler):
            submitit_handler(signum, frame)
            return
        print(
            "sweepbook: SLURM says this task nears its time limit; training on until SLURM "
            "stops it (the runs of a stopped task are trained again by the next sweep)",
            file=sys.stderr,
            flush=True,
        )

    signal.signal(signal.SIGUSR2, on_signal)


def run_task(task: Task) -> TaskResult:
    """The body of one array task (runs in the task's own process)."""
    from sweepbook.provenance import device_description, run_device

    _train_on_at_the_time_limit_warning()
    settings = task.settings
    enable_compile_cache(settings.compile_cache)
    job_id = _job_id()
    host = platform.node()
    try:
        device = run_device(device_description())
    except Exception as error:
        # Some jaxlib versions report a missing backend (JAX_PLATFORMS=cuda on a node without
        # a usable GPU) as a bare AssertionError: say what was asked, and where.
        platforms = os.environ.get("JAX_PLATFORMS")
        asked = f" for JAX_PLATFORMS={platforms}" if platforms else ""
        raise RuntimeError(
            f"JAX finds no usable device on {host}{asked}: {type(error).__name__}: {error}"
        ) from error
    for run in task.group:
        register_run_references(run.flat, settings.code_base)
    summary = train_runs(
        list(task.runs),
        Store(settings.store),
        splits=load_splits(list(task.group), settings.code_base),
        origin={
            "git_commit": settings.git_commit,
            "host": host,
            "device": device,
            "job_id": job_id,
        },
        planned=list(task.group),
        runs_per_chunk=settings.runs_per_chunk,
        memory_budget=settings.memory_budget,
        save_params=settings.save_params,
    )
    return TaskResult(job_id, host, device, summary)


# --- executors -------------------------------------------------------------------------------


def signal_delay_seconds(minutes: int) -> int:
    """How long before a task's time limit SLURM sends it submitit's warning signal: 90 s
    (submitit's default), but never in the first half of a short limit. SLURM checks limits
    every 30 s and sends the warning up to that much early, and a task still importing
    Python has no handler yet, so the signal kills it: with the default, every task of a 1- or
    2-minute limit died within seconds on the test cluster. 0: no warning at all."""
    return max(0, min(90, minutes * 60 // 2 - 30))


def slurm_parameters(options: LauncherConfig, *, name: str) -> dict[str, Any]:
    """``SlurmExecutor.update_parameters`` keywords (sbatch options) for ``options``."""
    parameters: dict[str, Any] = {
        "job_name": name,
        "time": options.time,
        "partition": options.partition,
        "account": options.account,
        "qos": options.qos,
        "constraint": options.constraint,
        "gpus_per_node": options.gpus,
        "cpus_per_task": options.cpus,
        # Whole megabytes: sbatch reads a bare number as MB, "M" says so.
        "mem": None if options.mem_gb is None else f"{round(options.mem_gb * 1024)}M",
        "array_parallelism": options.array_parallelism,
        "setup": list(options.setup) or None,
        "signal_delay_s": signal_delay_seconds(options.time),
    }
    return {key: value for key, value in parameters.items() if value is not None}


def local_parameters(options: LauncherConfig, *, gpus: int) -> dict[str, Any]:
    """``LocalExecutor.update_parameters`` keywords. submitit sets each local task's
    ``CUDA_VISIBLE_DEVICES`` to its first ``gpus_per_node`` GPUs (none when 0)."""
    return {"timeout_min": options.time, "gpus_per_node": gpus}


def _slurm_executor(
    folder: Path, options: LauncherConfig, *, name: str, local_gpus: int
) -> submitit.Executor:
    """SLURM's executor: one folder per array task (``<job>_<task>/``); needs ``srun`` on this
    machine (a login node)."""
    slurm = submitit.SlurmExecutor(folder=folder / "%j")
    slurm.update_parameters(**slurm_parameters(options, name=name))
    return slurm


def _local_executor(
    folder: Path, options: LauncherConfig, *, name: str, local_gpus: int
) -> submitit.Executor:
    """The local executor: one process per task, its files side by side, named by process id."""
    local = submitit.LocalExecutor(folder=folder)
    gpus = options.gpus if options.gpus is not None else local_gpus
    local.update_parameters(**local_parameters(options, gpus=gpus))
    return local


class ExecutorBuilder(Protocol):
    def __call__(
        self, folder: Path, options: LauncherConfig, *, name: str, local_gpus: int
    ) -> submitit.Executor: ...


@dataclass(frozen=True)
class TaskLauncher:
    """One way of running array tasks through submitit; registered in :data:`TASK_LAUNCHERS`
    under the name ``sweepbook run --launcher`` takes."""

    executor: ExecutorBuilder
    poll_seconds: float  # how often the coordinator looks for finished tasks (see above)
    # True: the scheduler bounds the tasks alive at once (a SLURM array's %N), so every task
    # is submitted at once; False: this process does, submitting more as others finish.
    scheduler_throttles: bool
    # True: tasks keep running when the coordinating process ends (SLURM). They are recorded
    # under the store's jobs/ so that a rerun waits for them instead of submitting them again,
    # and ``--no-wait`` may submit and return.
    outlives_process: bool


TASK_LAUNCHERS: Registry[TaskLauncher] = Registry("launcher")
TASK_LAUNCHERS.register(
    "local",
    TaskLauncher(
        _local_executor, poll_seconds=0.5, scheduler_throttles=False, outlives_process=False
    ),
)
TASK_LAUNCHERS.register(
    "slurm",
    TaskLauncher(
        _slurm_executor, poll_seconds=2.0, scheduler_throttles=True, outlives_process=True
    ),
)


def make_executor(
    launcher: str, folder: Path, options: LauncherConfig, *, name: str, local_gpus: int
) -> submitit.Executor:
    """A submitit executor of the task launcher named ``launcher`` (``local``, ``slurm``),
    writing its scripts, pickles and logs under ``folder``."""
    return TASK_LAUNCHERS[launcher].executor(folder, options, name=name, local_gpus=local_gpus)


# --- submit and wait -------------------------------------------------------------------------


class LaunchError(StoreError):
    """What a store's recorded SLURM tasks are doing cannot be known (their record is
    unreadable, or squeue fails); the message says what failed. Exit code 1, as for the
    store's other troubles."""


def submit(executor: submitit.Executor, tasks: list[Task]) -> list[submitit.Job[TaskResult]]:
    """Submit ``tasks``: one job array on SLURM (throttled by its ``array_parallelism``), one
    process per task locally."""
    return list(executor.map_array(run_task, tasks))


@dataclass(frozen=True)
class SubmittedTask:
    """A SLURM task recorded in the store: its job id (``<array job>_<task>``) and its runs."""

    job_id: str
    runs: tuple[str, ...]


def read_submitted(jobs: Path) -> list[SubmittedTask]:
    """The SLURM tasks recorded under ``jobs`` (the store's ``jobs/``), oldest first."""
    path = jobs / SUBMITTED_FILE
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["tasks"]
        return [SubmittedTask(str(entry["job_id"]), tuple(entry["runs"])) for entry in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise LaunchError(
            f"{path}: unreadable ({error}); delete it once squeue lists none of its jobs"
        ) from None


def _write_submitted(jobs: Path, tasks: list[SubmittedTask]) -> None:
    jobs.mkdir(parents=True, exist_ok=True)
    entries = [{"job_id": task.job_id, "runs": list(task.runs)} for task in tasks]
    atomic_write_json(jobs / SUBMITTED_FILE, {"tasks": entries})


def record_submitted(jobs: Path, submitted: list[tuple[Task, submitit.Job[TaskResult]]]) -> None:
    """Add just-submitted SLURM tasks to the store's record of them."""
    added = [
        SubmittedTask(job.job_id, tuple(run.run_id for run in task.runs)) for task, job in submitted
    ]
    _write_submitted(jobs, read_submitted(jobs) + added)


def forget_submitted(jobs: Path, job_ids: set[str]) -> None:
    """Drop tasks that have ended from the record."""
    recorded = read_submitted(jobs)
    kept = [task for task in recorded if task.job_id not in job_ids]
    if len(kept) != len(recorded):
        _write_submitted(jobs, kept)


def listed_by_slurm(job_ids: set[str]) -> set[str] | None:
    """Which of ``job_ids`` SLURM still lists (pending, running, completing, suspended,
    requeued); None where this machine has no ``squeue`` (the store was copied off the
    cluster: nothing of it can be running here)."""
    if shutil.which("squeue") is None:
        return None
    if not job_ids:
        return set()
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    command = ["squeue", "--noheader", "--array", f"--jobs={','.join(arrays)}", "--format=%i"]
    try:
        listing = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LaunchError(f"{shlex_join(command)} failed: {error}") from None
    if listing.returncode != 0:
        if "Invalid job id" in listing.stderr:  # one id, which SLURM has already forgotten
            return set()
        raise LaunchError(
            f"{shlex_join(command)} failed: {last_error_line(listing.stderr)}; cannot tell "
            "which runs are still queued, so nothing is submitted"
        )
    return job_ids & {line.strip() for line in listing.stdout.splitlines()}


def in_flight(jobs: Path) -> list[SubmittedTask]:
    """The recorded SLURM tasks that are still queued or running; the record forgets the
    others (their runs are stored, or missing and to be submitted again)."""
    recorded = read_submitted(jobs)
    if not recorded:
        return []
    listed = listed_by_slurm({task.job_id for task in recorded})
    if listed is None:
        return []
    forget_submitted(jobs, {task.job_id for task in recorded} - listed)
    return [task for task in recorded if task.job_id in listed]


def attach(jobs: Path, job_id: str) -> submitit.Job[TaskResult]:
    """A submitit handle on a SLURM task submitted by an earlier ``sweepbook run``."""
    return submitit.SlurmJob(folder=jobs / "%j", job_id=job_id)


def last_error_line(text: str) -> str:
    """The line of a task's error output that says why it ended: SLURM's reason when SLURM
    stopped it (``slurmstepd: error: *** JOB 12 ON node CANCELLED AT ... DUE TO TIME LIMIT
    ***``; the shell's ``Terminated`` and srun's complaints may follow it), otherwise the last
    non-empty line, the exception, skipping srun's closing lines (``srun: error: node: task 0:
    Exited with exit code 1``), which say less than the line before them."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    stopped = [line for line in lines if line.startswith("slurmstepd") and "***" in line]
    # pydantic ends its errors with a link, which says less than the error above it.
    said = [line for line in lines if not line.startswith(("srun: ", "For further information"))]
    return (stopped or said or lines or ["no error output"])[-1]


def _outcome(task: Task, job: submitit.Job[TaskResult]) -> TaskOutcome:
    state = job.state
    if state.split(" ")[0] in ENDED_WITHOUT_RESULT:
        # submitit waits 15 s for the result file of an ended task, in case a shared file
        # system shows it late; a cancelled or timed-out task writes none.
        job._results_timeout_s = 1
    try:
        return TaskOutcome(task, job.job_id, job.result(), None)
    except Exception as error:  # submitit re-raises the task's exception as FailedJobError
        log = job.stderr()
        if log:
            reason = last_error_line(log)
        elif isinstance(job, submitit.SlurmJob):  # e.g. cancelled while it was queued
            reason = f"ended {state} with no error output"
        else:
            reason = last_error_line(str(error))
        return TaskOutcome(task, job.job_id, None, f"{reason} (log: {job.paths.stderr})")


def run_tasks(
    executor: submitit.Executor,
    tasks: list[Task],
    *,
    parallelism: int | None,
    poll_seconds: float,
    on_poll: Callable[[TaskCounts], None] = lambda counts: None,
    on_submit: Callable[[list[tuple[Task, submitit.Job[TaskResult]]]], None] = lambda jobs: None,
    attached: list[tuple[Task, submitit.Job[TaskResult]]] | None = None,
) -> list[TaskOutcome]:
    """Submit ``tasks`` and wait for all of them, and for the ``attached`` tasks that an
    earlier ``sweepbook run`` submitted. ``parallelism`` bounds the tasks alive at once by
    submitting more as others finish (local processes); ``None`` submits them all at once
    and leaves the bound to the scheduler (a SLURM array's ``%N``). ``on_submit`` sees every
    batch of submitted tasks before any is waited for."""
    pending = list(tasks)
    alive: list[tuple[Task, submitit.Job[TaskResult]]] = list(attached or [])
    outcomes: list[TaskOutcome] = []
    refreshed = time.monotonic()
    while pending or alive:
        free = len(pending) if parallelism is None else parallelism - len(alive)
        if free > 0 and pending:
            batch, pending = pending[:free], pending[free:]
            submitted = list(zip(batch, submit(executor, batch), strict=True))
            on_submit(submitted)
            alive += submitted
        slurm_jobs = [job for _, job in alive if isinstance(job, submitit.SlurmJob)]
        if slurm_jobs and time.monotonic() - refreshed >= STATE_REFRESH_SECONDS:
            slurm_jobs[0].get_info(mode="force")  # one sacct call for every task
            refreshed = time.monotonic()
        still: list[tuple[Task, submitit.Job[TaskResult]]] = []
        states: Counter[str] = Counter()
        for task, job in alive:
            if job.done():
                outcomes.append(_outcome(task, job))
            else:
                still.append((task, job))
                states[job.state] += 1
        alive = still
        failed = sum(outcome.error is not None for outcome in outcomes)
        queued = states["PENDING"] + states["REQUEUED"]
        on_poll(
            TaskCounts(len(pending), queued, len(alive) - queued, len(outcomes) - failed, failed)
        )
        if pending or alive:
            time.sleep(poll_seconds)
    return sorted(outcomes, key=lambda outcome: (outcome.task.index, outcome.job_id))
