"""The ``sweepbook`` command: a thin layer over the library.

Exit codes: 0 ok; 2 bad input (one line naming the file and the key); 1 anything else,
including a sweep in which some runs failed, a damaged store file (the line names it), a store
that another sweepbook process is using (the line says which), and a ``verify`` mismatch.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sweepbook import __version__

if TYPE_CHECKING:  # the heavy modules load inside the commands, after argument parsing
    import submitit

    from sweepbook.config import LauncherConfig, Sweep
    from sweepbook.data import Split
    from sweepbook.launch import SubmittedTask, Task, TaskResult
    from sweepbook.plan import PlannedRun
    from sweepbook.store import Store

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
MAX_RUNS = 100_000  # sweepbook.plan.MAX_RUNS, without importing the planner to parse arguments

# soft_wrap: messages are single lines that logs and greps can rely on, whatever the width.
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def _run_command_line(sweep_path: Path) -> str:
    """How to reproduce: the sweep's own ``# Run:`` line when it has one."""
    for line in sweep_path.read_text(encoding="utf-8").splitlines():
        text = line.strip().lstrip("#").strip()
        if not line.strip().startswith("#"):
            break
        if text.lower().startswith("run:"):
            return text[4:].strip()
    return f"sweepbook run {shlex.quote(str(sweep_path))}"


LAUNCHER_FLAGS = (
    "partition",
    "account",
    "qos",
    "constraint",
    "time",
    "gpus",
    "cpus",
    "mem_gb",
    "array_parallelism",
)


def launcher_options(sweep: Sweep, args: argparse.Namespace) -> LauncherConfig:
    """The sweep's ``[launcher]`` table with the command line's flags over it."""
    from sweepbook.config import LauncherConfig

    given = {name: getattr(args, name) for name in LAUNCHER_FLAGS}
    flags = {name: value for name, value in given.items() if value is not None}
    return LauncherConfig.model_validate({**sweep.launcher.model_dump(), **flags})


class _Launched:
    """Training through array tasks (``--launcher local|slurm``), with a progress bar of the
    runs the tasks have stored so far and the tasks' states."""

    def __init__(
        self,
        args: argparse.Namespace,
        sweep: Sweep,
        out: Path,
        compile_cache: Path,
        info: dict[str, Any],
    ) -> None:
        from sweepbook.config import ConfigError
        from sweepbook.engine import EngineSummary
        from sweepbook.launch import JOBS_DIR, POLL_SECONDS, TaskSettings, make_executor

        self.launcher = args.launcher
        self.jobs = out.resolve() / JOBS_DIR
        options = launcher_options(sweep, args)
        device = info["device"]
        try:
            self.executor = make_executor(
                args.launcher,
                self.jobs,
                options,
                name=f"sweepbook-{sweep.name}",
                local_gpus=device["count"] if device["backend"] == "gpu" else 0,
            )
        except RuntimeError as error:  # submitit's SLURM executor finds no srun here
            raise ConfigError(
                sweep.path, None, f"--launcher {args.launcher}: {error} (run on a login node)"
            ) from None
        self.parallelism = None if args.launcher == "slurm" else options.array_parallelism or 1
        self.poll_seconds = POLL_SECONDS[args.launcher]
        self.settings = TaskSettings(
            store=out.resolve(),
            compile_cache=compile_cache,
            git_commit=info["git"]["commit"],
            runs_per_chunk=args.runs_per_chunk,
            memory_budget=args.memory_budget,
        )
        self.summary = EngineSummary()
        self.failed_tasks: list[str] = []
        self._seen_parts: dict[Path, set[str]] = {}

    def _stored(self, wanted: set[str]) -> int:
        """How many of ``wanted`` the tasks have appended (each part file is read once)."""
        import polars as pl

        for part in sorted(self.settings.store.glob("parts/*.runs.parquet")):
            if part not in self._seen_parts:
                self._seen_parts[part] = set(pl.read_parquet(part, columns=["run_id"])["run_id"])
        return len(wanted & set().union(*self._seen_parts.values()))

    def train(
        self,
        runs: list[PlannedRun],
        planned: list[PlannedRun],
        *,
        splits: dict[str, Split],
        queued: Sequence[SubmittedTask] = (),
    ) -> None:
        """Submit ``runs`` as tasks and wait for them, and for the ``queued`` tasks that an
        earlier ``sweepbook run`` submitted (SLURM)."""
        from sweepbook.launch import (
            Task,
            TaskCounts,
            attach,
            forget_submitted,
            plan_tasks,
            run_tasks,
        )

        tasks = plan_tasks(runs, planned, splits, self.settings)
        if tasks:
            stderr.print(
                f"{len(tasks)} {self.launcher} task(s), one per chunk of a compile group; "
                f"logs under {self.jobs}"
            )
        by_id = {run.run_id: run for run in planned}
        attached = [
            (
                Task(
                    int(recorded.job_id.split("_")[-1]) if "_" in recorded.job_id else 0,
                    tuple(by_id[run_id] for run_id in recorded.runs if run_id in by_id),
                    (),
                    self.settings,
                ),
                attach(self.jobs, recorded.job_id),
            )
            for recorded in queued
        ]
        wanted = {run.run_id for run in runs} | {r for task in queued for r in task.runs}
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
        ) as progress:
            bar = progress.add_task("submitting", total=len(wanted))

            def show(counts: TaskCounts) -> None:
                progress.update(
                    bar,
                    completed=self._stored(wanted),
                    description=f"tasks: {counts.done} done, {counts.running} running, "
                    f"{counts.queued + counts.waiting} waiting, {counts.failed} failed",
                )

            outcomes = run_tasks(
                self.executor,
                tasks,
                parallelism=self.parallelism,
                poll_seconds=self.poll_seconds,
                on_poll=show,
                # Recorded before waiting: a rerun after this process is killed finds them.
                on_submit=self._record if self.launcher == "slurm" else lambda jobs: None,
                attached=attached,
            )
        if self.launcher == "slurm":
            forget_submitted(self.jobs, {outcome.job_id for outcome in outcomes})
        devices: dict[str, int] = {}
        for outcome in outcomes:
            if outcome.result is None:
                self.failed_tasks.append(
                    f"task {outcome.task.index} (job {outcome.job_id}, "
                    f"{len(outcome.task.runs)} runs): {outcome.error}"
                )
                continue
            self.summary.add(outcome.result.summary)
            where = f"{outcome.result.device} on {outcome.result.host}"
            devices[where] = devices.get(where, 0) + 1
        if devices:
            stderr.print(
                "tasks ran on: " + "; ".join(f"{d} ({n} tasks)" for d, n in devices.items())
            )

    def _record(self, submitted: list[tuple[Task, submitit.Job[TaskResult]]]) -> None:
        from sweepbook.launch import record_submitted

        record_submitted(self.jobs, submitted)

    def submit_only(
        self, todo: list[PlannedRun], plan: list[PlannedRun], splits: dict[str, Split]
    ) -> int:
        """``--no-wait``: submit the array, say how to follow it and how to finish."""
        from sweepbook.launch import plan_tasks, submit

        tasks = plan_tasks(todo, plan, splits, self.settings)
        jobs = submit(self.executor, tasks)
        self._record(list(zip(tasks, jobs, strict=True)))
        array = jobs[0].job_id.split("_")[0]
        again = shlex.join(["sweepbook", *[a for a in sys.argv[1:] if a != "--no-wait"]])
        stderr.print(
            f"submitted {len(tasks)} task(s) as SLURM job {array} ({len(todo)} runs); "
            f"follow with: squeue -j {array}; logs under {self.jobs}"
        )
        stderr.print(
            f"when squeue no longer lists it: {again}  (merges, retries failed runs, renders "
            f"the report); meanwhile: sweepbook report {shlex.quote(str(self.settings.store))}"
        )
        return EXIT_OK


def _ids(runs: list[PlannedRun]) -> set[str]:
    return {run.run_id for run in runs}


def _still_queued(out: Path, launcher: str) -> list[SubmittedTask]:
    """The SLURM tasks an earlier ``sweepbook run`` submitted for this store that SLURM still
    lists, after saying so in one line. Only ``--launcher slurm`` can wait for them; any other
    launcher would train their runs a second time, so it stops here."""
    from sweepbook.launch import JOBS_DIR, LaunchError, in_flight

    queued = in_flight(out.resolve() / JOBS_DIR)
    if not queued:
        return []
    arrays = ",".join(sorted({task.job_id.split("_")[0] for task in queued}, key=int))
    runs = len({run_id for task in queued for run_id in task.runs})
    where = f"{runs} runs of this store are still queued or running as SLURM job {arrays}"
    if launcher != "slurm":
        raise LaunchError(
            f"{out}: {where} (squeue -j {arrays}); wait until squeue no longer lists it, or "
            "rerun with --launcher slurm, which waits for it"
        )
    stderr.print(f"{where} (squeue -j {arrays}): not submitted again")
    return queued


def command_run(args: argparse.Namespace) -> int:
    from sweepbook.config import ConfigError, load_sweep
    from sweepbook.data import DataError
    from sweepbook.engine import load_splits, split_key
    from sweepbook.ownership import check_store_owner
    from sweepbook.plan import expand
    from sweepbook.store import Store

    sweep_path = Path(args.sweep)
    # Everything that can be wrong with the input is checked before anything is written.
    sweep = load_sweep(sweep_path)
    plan = expand(sweep, max_runs=args.max_runs)
    try:
        splits = load_splits(plan)
    except DataError as error:
        raise sweep.blame(error.key, str(error)) from None
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
    out = Path(args.out) if args.out else Path("reports") / sweep.name
    if args.no_wait and args.launcher != "slurm":
        raise ConfigError(sweep_path, None, "--no-wait needs --launcher slurm")
    if args.no_wait and sweep.search is not None:
        raise ConfigError(sweep_path, "search", "a [search] waits for each batch: drop --no-wait")

    check_store_owner(out, sweep)  # two studies never share one store
    store = Store(out)
    # One sweepbook process per store: a second one refuses before writing anything.
    with store.lock(hint="wait for it or pass --out DIR"):
        # A damaged store file stops the sweep here, before anything is written.
        done = store.completed_ids()
        store.read_history()
        return _run_locked(args, sweep, plan, splits, store, done)


def _run_locked(
    args: argparse.Namespace,
    sweep: Sweep,
    plan: list[PlannedRun],
    splits: dict[str, Split],
    store: Store,
    done: set[str],
) -> int:
    from sweepbook import provenance
    from sweepbook.engine import (
        EngineSummary,
        default_compile_cache,
        enable_compile_cache,
        group_runs,
        load_splits,
        train_runs,
    )
    from sweepbook.report import PROVENANCE, render_report, write_sweep_record
    from sweepbook.search import run_search
    from sweepbook.store import atomic_write_json

    out = store.directory
    sweep_path = Path(args.sweep)
    run_command = _run_command_line(sweep_path)
    info = provenance.collect(sweep.path, sweep.experiment_path, ["sweepbook", *sys.argv[1:]])
    origin = {
        "git_commit": info["git"]["commit"],
        "host": info["host"],
        "device": info["device"]["devices"][0],
        "job_id": None,  # trained in this process, not by a launched task
    }
    summary = EngineSummary()
    started = time.perf_counter()
    compile_cache = (
        Path(args.compile_cache).resolve() if args.compile_cache else default_compile_cache()
    )
    enable_compile_cache(compile_cache)
    launched = None
    if args.launcher != "inline":
        launched = _Launched(args, sweep, out, compile_cache, info)

    def train(
        runs: list[PlannedRun],
        description: str,
        planned: list[PlannedRun] | None = None,
        queued: Sequence[SubmittedTask] = (),
    ) -> None:
        if launched is not None:
            launched.train(
                runs, planned or runs, splits=load_splits(planned or runs), queued=queued
            )
            return
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=False,
        ) as progress:
            task = progress.add_task(description, total=len(runs))
            summary.add(
                train_runs(
                    runs,
                    store,
                    splits=load_splits(planned or runs),  # chunk sizes follow the plan
                    origin=origin,
                    on_run_done=lambda run, status: progress.advance(task),
                    planned=planned,
                    runs_per_chunk=args.runs_per_chunk,
                    memory_budget=args.memory_budget,
                )
            )

    atomic_write_json(out / PROVENANCE, info)
    queued = _still_queued(out, args.launcher)
    if sweep.search is None:
        flying = {run_id for task in queued for run_id in task.runs}
        todo = [run for run in plan if run.run_id not in done and run.run_id not in flying]
        groups = len(group_runs(todo, splits))
        stderr.print(
            f"[bold]{sweep.name}[/]: {len(plan)} runs planned, {len(done & _ids(plan))} already "
            f"stored, "
            + (f"{len(flying & _ids(plan))} queued or running in SLURM, " if queued else "")
            + f"{len(todo)} to train"
            + (f" in {groups} compile group(s)" if todo else " — nothing to train")
        )
        write_sweep_record(out, sweep, plan, run_command)
        if launched is not None and args.no_wait and todo:
            return launched.submit_only(todo, plan, splits)
        if args.no_wait and queued:
            return EXIT_OK  # nothing new to submit, and not to wait for what is queued
        if todo or queued:
            train(todo, "training", planned=plan, queued=queued)
    else:
        stderr.print(
            f"[bold]{sweep.name}[/]: TPE search, {sweep.search.trials} trials in batches of "
            f"{sweep.search.batch}, {len(plan)} run(s) per trial"
        )
        if queued:  # a killed coordinator's batch: its runs first, then the search goes on
            train([], "queued batch", planned=plan, queued=queued)
        rounds = itertools.count(1)
        planned = run_search(
            sweep,
            store,
            train=lambda runs: train(runs, f"batch {next(rounds)}"),
            on_batch=lambda planned: write_sweep_record(out, sweep, planned, run_command),
        )
        write_sweep_record(out, sweep, planned, run_command)
    if launched is not None:
        summary.add(launched.summary)
    store.merge()  # here only, also folding what a killed earlier sweep left in parts/
    if summary.trained:
        stderr.print(
            f"trained {summary.trained} runs in {time.perf_counter() - started:.1f} s "
            f"({summary.compilations} compilations, {summary.compile_seconds:.1f} s compiling): "
            f"{summary.ok} ok, {summary.diverged} diverged, {summary.failed} failed"
        )
    elif sweep.search is not None:
        stderr.print("every trial is already stored — nothing to train")
    for line in summary.errors:
        stderr.print(f"[red]failed[/] {line}")
    failed_tasks = launched.failed_tasks if launched is not None else []
    for line in failed_tasks:
        stderr.print(f"[red]task failed[/] {line}")
    if failed_tasks:
        stderr.print("their runs are not stored: run the same command again to retry them")
    if not args.no_report:
        stderr.print(f"report: {render_report(out).resolve().as_uri()}")
    return EXIT_FAILURE if summary.failed or failed_tasks else EXIT_OK


def command_report(args: argparse.Namespace) -> int:
    from sweepbook.report import check_report, render_report
    from sweepbook.store import Store, StoreLocked

    if args.check:
        stale = [d for d in args.directories if not check_report(Path(d))]
        for directory in stale:
            stderr.print(f"stale: {directory}: the stored results changed after its report")
        if not stale:
            stderr.print("up to date: every report matches its stored results")
        return EXIT_FAILURE if stale else EXIT_OK
    for directory in args.directories:
        try:
            with Store(Path(directory)).lock():
                target = render_report(Path(directory), args.venue)
        except StoreLocked as busy:
            # Reading is safe beside a running sweep: readers see main files plus parts.
            stderr.print(f"note: {busy.busy_line()}; reporting the runs stored so far")
            target = render_report(Path(directory), args.venue)
        stderr.print(f"report: {target.resolve().as_uri()}")
    return EXIT_OK


def command_verify(args: argparse.Namespace) -> int:
    from sweepbook.engine import default_compile_cache, enable_compile_cache
    from sweepbook.report import render_report, verification_summary
    from sweepbook.store import Store
    from sweepbook.verify import Outcome, verify_runs

    directory = Path(args.directory)
    enable_compile_cache(default_compile_cache())

    def log(outcome: Outcome) -> None:
        if outcome.reproduced:
            stderr.print(f"reproduced {outcome.run_id} (chunk of {outcome.chunk_size})")
        else:
            stderr.print(f"[red]DIFFERS[/] {outcome.run_id}: {outcome.difference}", soft_wrap=True)

    # Verifying writes verification.json and the report: not while a sweep owns the store.
    with Store(directory).lock():
        record = verify_runs(directory, args.runs, log=log)
        stderr.print(verification_summary(record), markup=False)
        if not args.no_report:
            stderr.print(f"report: {render_report(directory).resolve().as_uri()}")
    return EXIT_OK if record["reproduced"] == record["checked"] else EXIT_FAILURE


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _venue_name(text: str) -> str:
    from sweepbook.venues import unknown_venue_message

    problem = unknown_venue_message(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def command_bench(args: argparse.Namespace) -> int:
    from sweepbook.bench import format_table, run_benchmark, write_result

    result = run_benchmark(quick=args.quick, log=lambda line: stderr.print(line))
    print(format_table(result))
    stderr.print(f"written: {write_result(result, Path(args.out))}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweepbook", description="Declarative JAX sweeps, stored as Parquet, reported as HTML."
    )
    parser.add_argument("--version", action="version", version=f"sweepbook {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="train the runs of a sweep that are not stored yet, then report"
    )
    run.add_argument("sweep", help="sweep file, e.g. sweeps/quickstart.toml")
    run.add_argument("--out", help="store and report directory (default: reports/<sweep name>)")
    run.add_argument("--no-report", action="store_true", help="train and store only")
    run.add_argument(
        "--runs-per-chunk",
        type=_positive_int,
        default=32,
        help="runs trained together by one vmapped program call, at most (default 32)",
    )
    run.add_argument(
        "--max-runs",
        type=_positive_int,
        default=MAX_RUNS,
        help=f"refuse a sweep that plans more runs than this (default {MAX_RUNS:,}: planning "
        "them takes about a minute on 2 CPU cores; a bigger plan is usually a slip)",
    )
    run.add_argument(
        "--memory-budget",
        type=float,
        default=0.25,
        help="memory a chunk of runs may use per device: a fraction of it (<= 1, default 0.25) "
        "or bytes (> 1)",
    )
    run.add_argument(
        "--compile-cache",
        help="persistent XLA compilation cache directory (default $SWEEPBOOK_COMPILE_CACHE "
        "or ~/.cache/sweepbook/xla; on a cluster, point it at shared storage)",
    )
    launch = run.add_argument_group(
        "launcher",
        "train as tasks of a job array (one per chunk of a compile group) instead of in this "
        "process; each flag overrides the sweep's [launcher] table",
    )
    launch.add_argument(
        "--launcher",
        choices=("inline", "local", "slurm"),
        default="inline",
        help="inline: this process (default); local: one subprocess per task through "
        "submitit; slurm: a SLURM job array through submitit (needs sbatch on this machine)",
    )
    launch.add_argument("--partition", help="SLURM partition")
    launch.add_argument("--account", help="SLURM account")
    launch.add_argument("--qos", help="SLURM quality of service")
    launch.add_argument("--constraint", help="SLURM node features, e.g. a GPU model")
    launch.add_argument(
        "--time", type=_positive_int, help="minutes per task before it is stopped (default 60)"
    )
    launch.add_argument(
        "--gpus", type=_non_negative_int, help="GPUs per task (local: default all of this host's)"
    )
    launch.add_argument("--cpus", type=_positive_int, help="CPU cores per task")
    launch.add_argument("--mem-gb", type=float, help="memory per task, in GB")
    launch.add_argument(
        "--array-parallelism",
        type=_positive_int,
        help="tasks running at once (SLURM: the array's %%N throttle; local: default 1)",
    )
    launch.add_argument(
        "--no-wait",
        action="store_true",
        help="slurm: submit, print the job id and how to finish, and return",
    )
    run.set_defaults(handler=command_run)

    report = commands.add_parser("report", help="re-render reports from their stores alone")
    report.add_argument("directories", nargs="+", help="store directories, e.g. reports/quickstart")
    report.add_argument(
        "--check",
        action="store_true",
        help="render nothing; exit 1 when a report is older than its stored results",
    )
    report.add_argument(
        "--venue",
        type=_venue_name,
        help="draw the figures for this venue (icml2024, neurips2024, ...; default: the sweep "
        "file's [report] venue, else a two-column article)",
    )
    report.set_defaults(handler=command_report)

    verify = commands.add_parser(
        "verify", help="retrain stored runs and check that they reproduce bit for bit"
    )
    verify.add_argument("directory", help="store directory, e.g. reports/quickstart")
    verify.add_argument(
        "--runs",
        type=_positive_int,
        default=3,
        help="how many runs to retrain: the first N completed runs by run id (default 3)",
    )
    verify.add_argument("--no-report", action="store_true", help="do not re-render the report")
    verify.set_defaults(handler=command_verify)

    bench = commands.add_parser("bench", help="measure the engine against the alternatives")
    bench.add_argument("--out", default="reports/bench", help="where bench.json goes")
    bench.add_argument("--quick", action="store_true", help="a smaller sweep, for smoke tests")
    bench.set_defaults(handler=command_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from sweepbook.config import ConfigError
    from sweepbook.store import StoreError

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        stderr.print(f"error: {error}", markup=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except StoreError as error:  # launch.LaunchError too
        stderr.print(f"error: {error}", markup=False, soft_wrap=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        stderr.print("interrupted: finished runs are stored; run the same command again to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
