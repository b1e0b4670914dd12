"""The pipeline as library calls: what ``sweepbook run``, ``report`` and ``verify`` do, callable
from a notebook or another tool (the command line is a thin layer over these three)::

    import sweepbook

    summary = sweepbook.run_sweep("sweeps/quickstart.toml", on_progress=print)
    summary.report  # Path of index.html; summary.store holds runs.parquet

Errors are exceptions, raised before anything is written where the input is at fault:
:class:`~sweepbook.config.ConfigError` for bad input (one line naming the file and the key; the
command line exits 2), :class:`~sweepbook.store.StoreError` for a damaged store file, a store
that another sweepbook process is using, or SLURM tasks whose state cannot be known (exit 1).
A run that fails while training is not an exception: it is stored as ``failed`` and counted in
the summary, so the other runs of the sweep still train.

Progress goes to ``on_progress`` as small frozen dataclasses (:data:`ProgressEvent`), in the
order things happen; without ``on_progress`` nothing is printed.
"""

from __future__ import annotations

import itertools
import json
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import submitit
from pydantic import ValidationError

from sweepbook import provenance
from sweepbook import report as reporting
from sweepbook.augment import check_augmentation
from sweepbook.checkpoints import DEFAULT_SAVE_PARAMS, check_mode, keep_best
from sweepbook.checkpoints import remove_debris as remove_checkpoint_debris
from sweepbook.config import ConfigError, LauncherConfig, Sweep, load_sweep, rung_direction
from sweepbook.data import DataError, Split
from sweepbook.engine import (
    DEFAULT_MEMORY_FRACTION,
    DEFAULT_RUNS_PER_CHUNK,
    EngineSummary,
    Origin,
    default_compile_cache,
    enable_compile_cache,
    group_runs,
    load_splits,
    split_key,
    train_runs,
)
from sweepbook.findings import best_run_ids
from sweepbook.halving import STOPPED, rung_epochs
from sweepbook.launch import (
    JOBS_DIR,
    TASK_LAUNCHERS,
    LaunchError,
    SubmittedTask,
    Task,
    TaskCounts,
    TaskLauncher,
    TaskResult,
    TaskSettings,
    attach,
    forget_submitted,
    in_flight,
    plan_tasks,
    record_submitted,
    run_tasks,
    submit,
)
from sweepbook.models import MODELS
from sweepbook.ownership import check_store_owner
from sweepbook.plan import MAX_RUNS, PlannedRun, expand
from sweepbook.registry import Registry, UnknownName
from sweepbook.results import load_results
from sweepbook.rungs import HalvingPlan, RungEvent, RungFinished, RungStarted, train_halving
from sweepbook.search import run_search
from sweepbook.store import Store, StoreLocked, atomic_write_json
from sweepbook.train import output_problem
from sweepbook.usercode import identities
from sweepbook.verify import DEFAULT_RUNS, Outcome, verify_runs

# --- progress events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """A grid or random sweep's plan against its store, before anything trains."""

    sweep: str
    planned: int
    stored: int  # of the planned runs, already in the store
    in_flight: int | None  # runs of earlier SLURM tasks still queued or running; None: no such task
    to_train: int
    compile_groups: int  # of the runs to train


@dataclass(frozen=True)
class SearchStarted:
    """A ``[search]`` sweep starts (or resumes) its trials."""

    sweep: str
    trials: int
    batch: int
    runs_per_trial: int


@dataclass(frozen=True)
class StillQueued:
    """SLURM tasks that an earlier run submitted for this store are still listed by SLURM: this
    run waits for them instead of submitting their runs again."""

    runs: int
    arrays: str  # the SLURM array job ids, comma-separated: ``squeue -j <arrays>``


@dataclass(frozen=True)
class TasksPlanned:
    """Runs go to array tasks, one per chunk of a compile group."""

    tasks: int
    launcher: str
    logs: Path


@dataclass(frozen=True)
class TrainingStarted:
    """A batch of runs starts training: ``total`` runs, in this process or as array tasks."""

    description: str
    total: int
    in_process: bool


@dataclass(frozen=True)
class RunTrained:
    """One run (trained in this process) is stored, with its status: ok, diverged or failed."""

    run_id: str
    status: str


@dataclass(frozen=True)
class TasksPolled:
    """Where the array tasks stand, and how many of the batch's runs they have stored so far."""

    stored: int
    counts: TaskCounts


@dataclass(frozen=True)
class TrainingFinished:
    """The batch announced by the last :class:`TrainingStarted` is over."""

    description: str


@dataclass(frozen=True)
class TasksPlaced:
    """Where the array tasks ran: ``"<device> on <host>"`` and how many tasks ran there."""

    places: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class StoreBusy:
    """:func:`render_report`: a sweep is writing the store; the report shows the runs stored so
    far (readers see the main files plus the finished parts)."""

    line: str  # who holds the store


ProgressEvent = (
    Planned
    | RungStarted
    | RungFinished
    | SearchStarted
    | StillQueued
    | TasksPlanned
    | TrainingStarted
    | RunTrained
    | TasksPolled
    | TrainingFinished
    | TasksPlaced
)
OnProgress = Callable[[ProgressEvent], None]


def _ignore(event: object) -> None:
    """The default ``on_progress``: a notebook that passes none sees nothing."""


# --- summaries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detached:
    """``run_sweep(..., wait=False)`` on SLURM: what was submitted, and where its logs go."""

    tasks: int
    runs: int
    array: str  # the SLURM array job id: ``squeue -j <array>``
    logs: Path


@dataclass(frozen=True)
class RunSummary:
    """What :func:`run_sweep` did. Counts of training are of this call only."""

    sweep: str
    store: Path  # runs.parquet, history.parquet, provenance.json, ... are here
    report: Path | None  # index.html; None with ``report=False`` or ``wait=False``
    planned: int  # runs in the plan (a search: every trial's runs so far)
    stored_before: int  # of them, already stored when the call started
    compile_groups: int | None  # of the runs to train; None for a search (known per batch)
    searched: bool  # the sweep has a [search]
    trained: int = 0
    ok: int = 0
    diverged: int = 0
    failed: int = 0
    stopped: int = 0  # halted at a rung of successive halving
    compilations: int = 0
    compile_seconds: float = 0.0
    seconds: float = 0.0  # from the start of training to the merge (no report rendering)
    errors: tuple[str, ...] = ()  # one line per failed run
    failed_tasks: tuple[str, ...] = ()  # one line per array task that stored nothing
    detached: Detached | None = None
    # Successive halving: run-epochs its runs were given, and a full grid's (None: no halving).
    run_epochs: int | None = None
    full_run_epochs: int | None = None

    @property
    def succeeded(self) -> bool:
        """No run failed and no task was lost (the command line's exit code 0)."""
        return not self.failed and not self.failed_tasks


@dataclass(frozen=True)
class VerifySummary:
    """What :func:`verify_store` did; the same record is in ``verification.json``."""

    checked: int
    reproduced: int
    outcomes: tuple[Outcome, ...]
    text: str  # the one-paragraph summary the report shows
    report: Path | None
    record: dict[str, Any] = field(repr=False)

    @property
    def succeeded(self) -> bool:
        return self.reproduced == self.checked


# --- trainers: one per launcher ---------------------------------------------------------------


@dataclass(frozen=True)
class TrainContext:
    """What every way of training a sweep's runs needs."""

    sweep: Sweep
    store: Store
    settings: TaskSettings
    options: LauncherConfig
    device: dict[str, Any]  # provenance.device_description() of this process
    origin: Origin
    emit: OnProgress


class Trainer(Protocol):
    summary: EngineSummary
    failed_tasks: list[str]

    def train(
        self,
        runs: list[PlannedRun],
        description: str,
        *,
        planned: list[PlannedRun],
        queued: Sequence[SubmittedTask] = (),
    ) -> None: ...


class InlineTrainer:
    """Training in this process, one compile group and chunk after another."""

    def __init__(self, context: TrainContext) -> None:
        self.context = context
        self.summary = EngineSummary()
        self.failed_tasks: list[str] = []

    def train(
        self,
        runs: list[PlannedRun],
        description: str,
        *,
        planned: list[PlannedRun],
        queued: Sequence[SubmittedTask] = (),
    ) -> None:
        context, settings = self.context, self.context.settings
        with _announced(context.emit, TrainingStarted(description, len(runs), in_process=True)):
            self.summary.add(
                train_runs(
                    runs,
                    context.store,
                    splits=load_splits(planned, settings.code_base),  # chunk sizes follow the plan
                    origin=context.origin,
                    on_run_done=lambda run, status: context.emit(RunTrained(run.run_id, status)),
                    planned=planned,
                    runs_per_chunk=settings.runs_per_chunk,
                    memory_budget=settings.memory_budget,
                    save_params=settings.save_params,
                )
            )


@contextmanager
def _announced(emit: OnProgress, started: TrainingStarted) -> Iterator[None]:
    """``started`` before the block, :class:`TrainingFinished` after it, even when it raises."""
    emit(started)
    try:
        yield
    finally:
        emit(TrainingFinished(started.description))


class TaskTrainer:
    """Training as array tasks of a :class:`~sweepbook.launch.TaskLauncher`, waiting for them
    and reporting the runs they have stored so far."""

    def __init__(self, name: str, kind: TaskLauncher, context: TrainContext) -> None:
        self.name, self.kind, self.context = name, kind, context
        self.jobs = context.settings.store / JOBS_DIR
        device = context.device
        try:
            self.executor = kind.executor(
                self.jobs,
                context.options,
                name=f"sweepbook-{context.sweep.name}",
                local_gpus=device["count"] if device["backend"] == "gpu" else 0,
            )
        except RuntimeError as error:  # submitit's SLURM executor finds no srun here
            raise ConfigError(
                context.sweep.path, None, f"--launcher {name}: {error} (run on a login node)"
            ) from None
        self.parallelism = (
            None if kind.scheduler_throttles else context.options.array_parallelism or 1
        )
        self.summary = EngineSummary()
        self.failed_tasks: list[str] = []
        self._seen_parts: dict[Path, set[str]] = {}

    def _stored(self, wanted: set[str]) -> int:
        """How many of ``wanted`` the tasks have appended (each part file is read once)."""
        for part in sorted(self.context.settings.store.glob("parts/*.runs.parquet")):
            if part not in self._seen_parts:
                self._seen_parts[part] = set(pl.read_parquet(part, columns=["run_id"])["run_id"])
        return len(wanted & set().union(*self._seen_parts.values()))

    def _attached(
        self, planned: list[PlannedRun], queued: Sequence[SubmittedTask]
    ) -> list[tuple[Task, submitit.Job[TaskResult]]]:
        """Handles on the ``queued`` tasks that an earlier run submitted."""
        by_id = {run.run_id: run for run in planned}
        return [
            (
                Task(
                    int(recorded.job_id.split("_")[-1]) if "_" in recorded.job_id else 0,
                    tuple(by_id[run_id] for run_id in recorded.runs if run_id in by_id),
                    (),
                    self.context.settings,
                ),
                attach(self.jobs, recorded.job_id),
            )
            for recorded in queued
        ]

    def train(
        self,
        runs: list[PlannedRun],
        description: str,
        *,
        planned: list[PlannedRun],
        queued: Sequence[SubmittedTask] = (),
    ) -> None:
        """Submit ``runs`` as tasks and wait for them, and for the ``queued`` tasks that an
        earlier run submitted (SLURM)."""
        emit = self.context.emit
        settings = self.context.settings
        tasks = plan_tasks(runs, planned, load_splits(planned, settings.code_base), settings)
        if tasks:
            emit(TasksPlanned(len(tasks), self.name, self.jobs))
        wanted = {run.run_id for run in runs} | {r for task in queued for r in task.runs}
        with _announced(emit, TrainingStarted("submitting", len(wanted), in_process=False)):
            outcomes = run_tasks(
                self.executor,
                tasks,
                parallelism=self.parallelism,
                poll_seconds=self.kind.poll_seconds,
                on_poll=lambda counts: emit(TasksPolled(self._stored(wanted), counts)),
                # Recorded before waiting: a rerun after this process is killed finds them.
                on_submit=self._record if self.kind.outlives_process else lambda jobs: None,
                attached=self._attached(planned, queued),
            )
        if self.kind.outlives_process:
            forget_submitted(self.jobs, {outcome.job_id for outcome in outcomes})
        places: dict[str, int] = {}
        for outcome in outcomes:
            if outcome.result is None:
                self.failed_tasks.append(
                    f"task {outcome.task.index} (job {outcome.job_id}, "
                    f"{len(outcome.task.runs)} runs): {outcome.error}"
                )
                continue
            self.summary.add(outcome.result.summary)
            where = f"{outcome.result.device} on {outcome.result.host}"
            places[where] = places.get(where, 0) + 1
        if places:
            emit(TasksPlaced(tuple(places.items())))

    def _record(self, submitted: list[tuple[Task, submitit.Job[TaskResult]]]) -> None:
        record_submitted(self.jobs, submitted)

    def submit_only(self, todo: list[PlannedRun], planned: list[PlannedRun]) -> Detached:
        """Submit the array and return without waiting (``wait=False``)."""
        settings = self.context.settings
        tasks = plan_tasks(todo, planned, load_splits(planned, settings.code_base), settings)
        jobs = submit(self.executor, tasks)
        self._record(list(zip(tasks, jobs, strict=True)))
        return Detached(len(tasks), len(todo), jobs[0].job_id.split("_")[0], self.jobs)


TrainerFactory = Callable[[TrainContext], InlineTrainer | TaskTrainer]


def _launchers() -> Registry[TrainerFactory]:
    """Training in this process, then every task launcher of :data:`launch.TASK_LAUNCHERS`
    (local, slurm), each through the same :class:`TaskTrainer`."""
    launchers: Registry[TrainerFactory] = Registry("launcher")
    launchers.register("inline", InlineTrainer)
    for name, kind in TASK_LAUNCHERS.items():
        launchers.register(name, partial(TaskTrainer, name, kind))
    return launchers


# ``run_sweep(launcher=...)`` names one of these.
LAUNCHERS = _launchers()


def _detachable(launcher: str) -> bool:
    """Whether ``launcher``'s tasks outlive this process, so that it may submit and return."""
    return launcher in TASK_LAUNCHERS and TASK_LAUNCHERS[launcher].outlives_process


# --- run_sweep -------------------------------------------------------------------------------


def run_command_line(sweep_path: Path) -> str:
    """How to reproduce: the sweep's own ``# Run:`` line when it has one."""
    for line in sweep_path.read_text(encoding="utf-8").splitlines():
        text = line.strip().lstrip("#").strip()
        if not line.strip().startswith("#"):
            break
        if text.lower().startswith("run:"):
            return text[4:].strip()
    return f"sweepbook run {shlex.quote(str(sweep_path))}"


def launcher_config(
    sweep: Sweep, overrides: Mapping[str, Any] | None = None, *, path: Path | None = None
) -> LauncherConfig:
    """The sweep's ``[launcher]`` table with ``overrides`` (``partition``, ``gpus``, ...) over
    it; a bad override is a :class:`ConfigError` naming the key (and ``path``, default the
    sweep's file)."""
    try:
        return LauncherConfig.model_validate({**sweep.launcher.model_dump(), **(overrides or {})})
    except ValidationError as error:
        detail = error.errors()[0]
        key = ".".join(str(part) for part in detail["loc"])
        raise ConfigError(path or sweep.path, f"launcher.{key}", detail["msg"]) from None


def load_checked(
    sweep_path: Path, max_runs: int
) -> tuple[Sweep, list[PlannedRun], dict[str, Split]]:
    """The sweep, its plan and the data splits it needs, with every input problem raised as a
    :class:`ConfigError` before anything is written."""
    sweep = load_sweep(sweep_path)
    plan = expand(sweep, max_runs=max_runs)
    try:
        splits = load_splits(plan, sweep.experiment_path.parent)
        for run in plan:
            check_augmentation(run.config.augment, splits[split_key(run)])
    except DataError as error:
        raise sweep.blame(error.key, str(error)) from None
    _check_user_models(sweep, plan, splits)
    _check_halving(sweep, plan)
    for run in plan:
        # A larger batch would only be padding: memory grows with it, learning does not.
        examples = len(splits[split_key(run)].y_train)
        if run.config.train.batch_size > examples:
            raise sweep.blame(
                "train.batch_size",
                f"{run.config.train.batch_size} is more than the {examples} training examples "
                f"of data.name = '{run.config.data.name}' (use at most {examples})",
                run.variant,
            )
    return sweep, plan, splits


def _check_halving(sweep: Sweep, plan: list[PlannedRun]) -> None:
    """Rungs compare configurations at equal epochs: every run trains ``train.epochs``, the
    same for all, and more than the first rung's ``min_epochs``."""
    if sweep.halving is None or not plan:
        return
    epochs = sorted({run.config.train.epochs for run in plan})
    if len(epochs) > 1:
        raise ConfigError(
            sweep.path,
            "halving",
            f"every run must train the same train.epochs for its rungs to compare (found "
            f"{', '.join(map(str, epochs))}); sweep train.epochs in separate sweeps",
        )
    if sweep.halving.min_epochs >= epochs[0]:
        raise ConfigError(
            sweep.path,
            "halving.min_epochs",
            f"{sweep.halving.min_epochs} leaves no rung to halve: it must be below train.epochs "
            f"({epochs[0]})",
        )


def _check_user_models(sweep: Sweep, plan: list[PlannedRun], splits: dict[str, Split]) -> None:
    """Every user's model builds and returns outputs of the task's shape on its data (checked
    on shapes once per model and split), or a one-line error before anything is written."""
    seen: set[tuple[str, str]] = set()
    for run in plan:
        model = run.config.model
        key = (model.model_dump_json(), split_key(run))
        if MODELS[model.kind].calling != "flax" or key in seen:
            continue
        seen.add(key)
        problem = output_problem(run.config, splits[split_key(run)])
        if problem:
            raise sweep.blame("model.kind", problem, run.variant)


def check_user_code(sweep: Sweep, plan: list[PlannedRun], store: Store, done: set[str]) -> None:
    """Refuse to resume a store whose runs were trained with another version of the users'
    code this sweep names: one table would mix results of two programs. The stored runs keep
    their results; a new store (``--out``), or deleting this one, trains afresh."""
    current = {ref: i for run in plan for ref, i in identities(run.flat).items()}
    if not current or not done:
        return
    runs = store.read_runs()
    if "user_code" not in runs.columns:
        return
    stored = runs.filter(pl.col("run_id").is_in(done) & pl.col("user_code").is_not_null())
    for text in stored["user_code"].unique().to_list():
        for reference, sha256 in json.loads(text).items():
            now = current.get(reference)
            if now is not None and now.sha256 != sha256:
                raise ConfigError(
                    sweep.experiment_path,
                    None,
                    f"{now.file} changed since runs stored in {store.directory} were trained "
                    f"with it (sha256 {sha256[:12]} then, {now.sha256[:12]} now): their results "
                    "would mix two versions of the code; pass --out NEW_DIR for a new store, or "
                    "delete the old one",
                )


def _check_launcher(
    sweep_path: Path, sweep: Sweep, launcher: str, wait: bool, overrides: Mapping[str, Any]
) -> None:
    """Bad launcher arguments are bad input, named with the sweep file as given."""
    try:
        LAUNCHERS.check(launcher)
    except UnknownName as error:
        raise ConfigError(sweep_path, None, f"launcher: {error}") from None
    if not wait and not _detachable(launcher):
        raise ConfigError(sweep_path, None, "--no-wait needs --launcher slurm")
    if not wait and sweep.search is not None:
        raise ConfigError(sweep_path, "search", "a [search] waits for each batch: drop --no-wait")
    if sweep.halving is not None and launcher != "inline":
        raise ConfigError(
            sweep_path,
            "halving",
            "successive halving trains in this process (each rung waits for the one before); "
            "drop --launcher",
        )
    launcher_config(sweep, overrides, path=sweep_path)


@dataclass(frozen=True)
class _Request:
    """``run_sweep``'s arguments once the sweep is loaded, checked and its store locked."""

    sweep: Sweep
    plan: list[PlannedRun]
    splits: dict[str, Split]
    store: Store
    done: set[str]
    launcher: str
    overrides: Mapping[str, Any]
    runs_per_chunk: int
    memory_budget: float
    compile_cache: Path
    save_params: str
    report: bool
    wait: bool
    command: list[str]
    emit: OnProgress


def run_sweep(
    sweep: str | Path,
    out: str | Path | None = None,
    *,
    launcher: str = "inline",
    launcher_options: Mapping[str, Any] | None = None,
    runs_per_chunk: int = DEFAULT_RUNS_PER_CHUNK,
    memory_budget: float = DEFAULT_MEMORY_FRACTION,
    max_runs: int = MAX_RUNS,
    compile_cache: str | Path | None = None,
    save_params: str = DEFAULT_SAVE_PARAMS,
    report: bool = True,
    wait: bool = True,
    command: Sequence[str] | None = None,
    on_progress: OnProgress | None = None,
) -> RunSummary:
    """Train the runs of the sweep file ``sweep`` that are not stored yet, store them and
    render the report: everything ``sweepbook run`` does, with the same defaults.

    ``out`` is the store directory (default ``reports/<sweep name>``, relative to the working
    directory). ``launcher`` is ``"inline"`` (this process), ``"local"`` (one subprocess per
    task) or ``"slurm"`` (a job array), see :data:`LAUNCHERS`; ``launcher_options`` override the
    sweep's ``[launcher]`` table (``{"partition": "gpu", "gpus": 1}``). ``runs_per_chunk``,
    ``memory_budget``, ``max_runs`` and ``compile_cache`` are the command's flags of the same
    names (``compile_cache`` default: ``$SWEEPBOOK_COMPILE_CACHE`` or ``~/.cache/sweepbook/xla``).
    ``save_params`` keeps trained variables under ``<out>/params/<run_id>/`` (Orbax, see
    :mod:`sweepbook.checkpoints`; :func:`load_run` reads them): ``"best"`` (default) the runs of
    the best configuration as the report chooses it, ``"all"`` every run that finished ``ok``,
    ``"none"`` nothing. ``report=False`` trains and stores only. ``wait=False`` (SLURM) submits
    and returns; call again when the array is done. ``command`` is recorded in
    ``provenance.json`` as how the sweep was started (default: the equivalent ``sweepbook run``
    line).

    Raises :class:`ConfigError` for bad input (nothing written) and
    :class:`~sweepbook.store.StoreError` when the store is damaged or in use.
    """
    sweep_path = Path(sweep)
    check_mode(save_params)
    loaded, plan, splits = load_checked(sweep_path, max_runs)
    directory = Path(out) if out is not None else Path("reports") / loaded.name
    overrides = dict(launcher_options or {})
    _check_launcher(sweep_path, loaded, launcher, wait, overrides)
    check_store_owner(directory, loaded)  # two studies never share one store
    store = Store(directory)
    if command is None:
        command = ["sweepbook", "run", str(sweep_path), "--out", str(directory)]
        command += [] if launcher == "inline" else ["--launcher", launcher]
    # One sweepbook process per store: a second one refuses before writing anything.
    with store.lock(hint="wait for it or pass --out DIR"):
        # A damaged store file stops the sweep here, before anything is written.
        done = store.completed_ids(also=(STOPPED,) if loaded.halving else ())
        store.read_history()
        check_user_code(loaded, plan, store, done)
        request = _Request(
            sweep=loaded,
            plan=plan,
            splits=splits,
            store=store,
            done=done,
            launcher=launcher,
            overrides=overrides,
            runs_per_chunk=runs_per_chunk,
            memory_budget=memory_budget,
            compile_cache=(
                Path(compile_cache).resolve() if compile_cache else default_compile_cache()
            ),
            save_params=save_params,
            report=report,
            wait=wait,
            command=list(command),
            emit=on_progress or _ignore,
        )
        return _run_locked(request)


def _trainer(request: _Request, info: dict[str, Any]) -> InlineTrainer | TaskTrainer:
    """The trainer of ``request.launcher``, with the compilation cache enabled."""
    enable_compile_cache(request.compile_cache)
    settings = TaskSettings(
        store=request.store.directory.resolve(),
        compile_cache=request.compile_cache,
        git_commit=info["git"]["commit"],
        runs_per_chunk=request.runs_per_chunk,
        memory_budget=request.memory_budget,
        code_base=request.sweep.experiment_path.parent,
        save_params=request.save_params,
    )
    origin = {
        "git_commit": info["git"]["commit"],
        "host": info["host"],
        "device": provenance.run_device(info["device"]),
        "job_id": None,  # trained in this process, not by a launched task
    }
    context = TrainContext(
        request.sweep,
        request.store,
        settings,
        launcher_config(request.sweep, request.overrides),
        info["device"],
        origin,
        request.emit,
    )
    return LAUNCHERS[request.launcher](context)


def still_queued(out: Path, launcher: str, emit: OnProgress = _ignore) -> list[SubmittedTask]:
    """The SLURM tasks an earlier run submitted for the store ``out`` that SLURM still lists.
    Only a launcher whose tasks outlive their process (SLURM) can wait for them; any other
    would train their runs a second time, so it stops here (:class:`LaunchError`)."""
    queued = in_flight(out.resolve() / JOBS_DIR)
    if not queued:
        return []
    arrays = ",".join(sorted({task.job_id.split("_")[0] for task in queued}, key=int))
    runs = len({run_id for task in queued for run_id in task.runs})
    if not _detachable(launcher):
        raise LaunchError(
            f"{out}: {runs} runs of this store are still queued or running as SLURM job "
            f"{arrays} (squeue -j {arrays}); wait until squeue no longer lists it, or "
            "rerun with --launcher slurm, which waits for it"
        )
    emit(StillQueued(runs, arrays))
    return queued


def _run_locked(request: _Request) -> RunSummary:
    sweep, store, emit = request.sweep, request.store, request.emit
    out = store.directory
    run_command = run_command_line(sweep.path)
    user_code = {
        reference: (identity.file, identity.sha256)
        for run in request.plan
        for reference, identity in identities(run.flat).items()
    }
    info = provenance.collect(sweep.path, sweep.experiment_path, request.command, user_code)
    started = time.perf_counter()
    trainer = _trainer(request, info)
    atomic_write_json(out / reporting.PROVENANCE, info)
    queued = still_queued(out, request.launcher, emit)
    if sweep.search is None:
        summary = _train_plan(request, trainer, queued, run_command)
        if summary.detached is not None or (not request.wait and queued):
            return summary  # submitted, or queued already: nothing to merge or render yet
    else:
        summary = _train_search(request, trainer, queued, run_command)
    store.merge()  # here only, also folding what a killed earlier sweep left in parts/
    if request.save_params == "best":  # known only now: every run of the sweep is stored
        stored = load_results(out, with_provenance=False)
        keep_best(out, best_run_ids(stored.runs, stored.record))
    remove_checkpoint_debris(out)
    seconds = time.perf_counter() - started
    engine = trainer.summary
    report = reporting.render_report(out) if request.report else None
    return RunSummary(
        sweep=summary.sweep,
        store=out,
        report=report,
        planned=summary.planned,
        stored_before=summary.stored_before,
        compile_groups=summary.compile_groups,
        searched=summary.searched,
        trained=engine.trained,
        ok=engine.ok,
        diverged=engine.diverged,
        failed=engine.failed,
        stopped=engine.stopped,
        compilations=engine.compilations,
        compile_seconds=engine.compile_seconds,
        seconds=seconds,
        errors=tuple(engine.errors),
        failed_tasks=tuple(trainer.failed_tasks),
        run_epochs=summary.run_epochs,
        full_run_epochs=summary.full_run_epochs,
    )


def _ids(runs: list[PlannedRun]) -> set[str]:
    return {run.run_id for run in runs}


def _train_plan(
    request: _Request,
    trainer: InlineTrainer | TaskTrainer,
    queued: list[SubmittedTask],
    run_command: str,
) -> RunSummary:
    """A grid or random sweep: train what the store lacks (and wait for ``queued`` tasks)."""
    sweep, plan, out = request.sweep, request.plan, request.store.directory
    flying = {run_id for task in queued for run_id in task.runs}
    todo = [run for run in plan if run.run_id not in request.done and run.run_id not in flying]
    groups = len(group_runs(todo, request.splits))
    stored = len(request.done & _ids(plan))
    in_flight_runs = len(flying & _ids(plan)) if queued else None
    request.emit(Planned(sweep.name, len(plan), stored, in_flight_runs, len(todo), groups))
    reporting.write_sweep_record(out, sweep, plan, run_command)
    summary = RunSummary(sweep.name, out, None, len(plan), stored, groups, searched=False)
    if not request.wait and todo:
        assert isinstance(trainer, TaskTrainer)  # _check_launcher: only detachable launchers
        return replace(summary, detached=trainer.submit_only(todo, plan))
    if not request.wait and queued:
        return summary  # nothing new to submit, and not to wait for what is queued
    if sweep.halving is not None:
        assert isinstance(trainer, InlineTrainer)  # _check_launcher: halving trains inline
        return _train_halving(request, trainer, summary)
    if todo or queued:
        trainer.train(todo, "training", planned=plan, queued=queued)
    return summary


def _train_halving(request: _Request, trainer: InlineTrainer, summary: RunSummary) -> RunSummary:
    """A ``[halving]`` sweep: rung after rung in this process (:mod:`sweepbook.rungs`), each
    rung's runs shown as one batch of training between :class:`RungStarted` and
    :class:`RungFinished`."""
    sweep, emit, settings = request.sweep, request.emit, trainer.context.settings
    assert sweep.halving is not None and sweep.halving.metric is not None

    def on_rung(event: RungEvent) -> None:
        if isinstance(event, RungStarted):
            emit(event)
            emit(TrainingStarted(f"rung {event.rung + 1}/{event.rungs}", event.to_train, True))
        else:
            emit(TrainingFinished(f"rung {event.rung + 1}/{event.rungs}"))
            emit(event)

    epochs = request.plan[0].config.train.epochs if request.plan else 0
    halving = train_halving(
        request.plan,
        request.store,
        plan=HalvingPlan(
            rung_epochs(sweep.halving.min_epochs, sweep.halving.eta, epochs),
            sweep.halving.eta,
            sweep.halving.metric,
            rung_direction(sweep),
        ),
        splits=load_splits(request.plan, settings.code_base),
        done=request.done,
        origin=trainer.context.origin,
        on_run_done=lambda run, status: emit(RunTrained(run.run_id, status)),
        on_rung=on_rung,
        runs_per_chunk=settings.runs_per_chunk,
        memory_budget=settings.memory_budget,
        save_params=settings.save_params,
    )
    trainer.summary.add(halving.engine)
    return replace(summary, run_epochs=halving.run_epochs, full_run_epochs=halving.full_run_epochs)


def _train_search(
    request: _Request,
    trainer: InlineTrainer | TaskTrainer,
    queued: list[SubmittedTask],
    run_command: str,
) -> RunSummary:
    """A ``[search]`` sweep: propose, train and score trials batch by batch (resuming)."""
    sweep, plan, out = request.sweep, request.plan, request.store.directory
    search = sweep.search
    assert search is not None
    request.emit(SearchStarted(sweep.name, search.trials, search.batch, len(plan)))
    if queued:  # a killed coordinator's batch: its runs first, then the search goes on
        trainer.train([], "queued batch", planned=plan, queued=queued)
    rounds = itertools.count(1)
    planned = run_search(
        sweep,
        request.store,
        train=lambda runs: trainer.train(runs, f"batch {next(rounds)}", planned=runs),
        on_batch=lambda planned: reporting.write_sweep_record(out, sweep, planned, run_command),
    )
    reporting.write_sweep_record(out, sweep, planned, run_command)
    stored = len(request.done & _ids(planned))
    return RunSummary(sweep.name, out, None, len(planned), stored, None, searched=True)


# --- report and verify -----------------------------------------------------------------------


def render_report(
    directory: str | Path,
    venue: str | None = None,
    *,
    on_busy: Callable[[StoreBusy], None] = _ignore,
) -> Path:
    """Re-render the report of the store in ``directory`` from the store alone; returns the
    path of its ``index.html``. ``venue`` (``icml2024``, ...) sizes the figures for that venue
    (default: the sweep's ``[report] venue``, else a two-column article). Beside a sweep that
    is writing the store, the report shows the runs stored so far, after ``on_busy``."""
    path = Path(directory)
    try:
        with Store(path).lock():
            return reporting.render_report(path, venue)
    except StoreLocked as busy:
        # Reading is safe beside a running sweep: readers see main files plus parts.
        on_busy(StoreBusy(busy.busy_line()))
        return reporting.render_report(path, venue)


def verify_store(
    directory: str | Path,
    runs: int = DEFAULT_RUNS,
    *,
    report: bool = True,
    on_progress: Callable[[Outcome], None] = _ignore,
) -> VerifySummary:
    """Retrain the first ``runs`` completed runs of the store in ``directory`` (by run id) and
    compare their results and histories with the stored ones bit for bit; the record goes to
    ``verification.json`` and, with ``report``, into the re-rendered report. ``on_progress``
    sees each run's :class:`~sweepbook.verify.Outcome` as it is known."""
    path = Path(directory)
    enable_compile_cache(default_compile_cache())
    # Verifying writes verification.json and the report: not while a sweep owns the store.
    with Store(path).lock():
        record = verify_runs(path, runs, log=on_progress)
        rendered = reporting.render_report(path) if report else None
    outcomes = tuple(Outcome(**outcome) for outcome in record["runs"])
    text = reporting.verification_summary(record)
    return VerifySummary(
        record["checked"], record["reproduced"], outcomes, text, rendered, record=record
    )


def compare_stores(
    directories: Sequence[str | Path],
    out: str | Path | None = None,
    venue: str | None = None,
    *,
    every_configuration: bool = False,
) -> Path:
    """Render one report over the stores in ``directories``: each one's best configuration
    (``every_configuration``: every one too), the statistics across them and their learning
    curves side by side; returns the path of its ``index.html`` (in ``out``, default
    ``compare-<a>-vs-<b>`` beside the first store). Stores
    that do not share their test data are refused with a :class:`ConfigError` naming both and
    the key, before anything is written. Reading only: safe beside a sweep writing a store."""
    from sweepbook.compare import render_comparison  # its figures load matplotlib

    return render_comparison(
        [Path(directory) for directory in directories],
        None if out is None else Path(out),
        venue,
        every_configuration=every_configuration,
    )


__all__ = [
    "LAUNCHERS",
    "Detached",
    "Planned",
    "ProgressEvent",
    "RunSummary",
    "RunTrained",
    "SearchStarted",
    "StillQueued",
    "StoreBusy",
    "TasksPlaced",
    "TasksPlanned",
    "TasksPolled",
    "TrainingFinished",
    "TrainingStarted",
    "VerifySummary",
    "compare_stores",
    "render_report",
    "run_sweep",
    "verify_store",
]
