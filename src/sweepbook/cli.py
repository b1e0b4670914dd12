"""The ``sweepbook`` command: a thin layer over the library.

Exit codes: 0 ok; 2 bad input (one line naming the file and the key); 1 anything else,
including a sweep in which some runs failed, a damaged store file (the line names it), a store
that another sweepbook process is using (the line says which), and a ``verify`` mismatch.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sweepbook import __version__

if TYPE_CHECKING:  # the heavy modules load inside the commands, after argument parsing
    from sweepbook.api import (
        Planned,
        ProgressEvent,
        RunSummary,
        RunTrained,
        SearchStarted,
        StillQueued,
        TasksPlaced,
        TasksPlanned,
        TasksPolled,
        TrainingFinished,
        TrainingStarted,
    )
    from sweepbook.config import LauncherConfig, Sweep
    from sweepbook.rungs import RungFinished, RungStarted
    from sweepbook.verify import Outcome

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
MAX_RUNS = 100_000  # sweepbook.plan.MAX_RUNS, without importing the planner to parse arguments
# sweepbook.api.LAUNCHERS' names, spelled out so that parsing arguments imports nothing heavy
# (tests/test_api.py checks that the two agree).
LAUNCHER_NAMES = ("inline", "local", "slurm")
SAVE_PARAMS = ("best", "all", "none")  # sweepbook.checkpoints.SAVE_PARAMS, as LAUNCHER_NAMES

# soft_wrap: messages are single lines that logs and greps can rely on, whatever the width.
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

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


def _launcher_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The ``[launcher]`` keys given on the command line."""
    given = {name: getattr(args, name) for name in LAUNCHER_FLAGS}
    return {name: value for name, value in given.items() if value is not None}


def launcher_options(sweep: Sweep, args: argparse.Namespace) -> LauncherConfig:
    """The sweep's ``[launcher]`` table with the command line's flags over it."""
    from sweepbook.api import launcher_config

    return launcher_config(sweep, _launcher_flags(args))


class RunProgress:
    """Shows :func:`sweepbook.api.run_sweep`'s progress events on stderr: one line per step, a
    rich progress bar while runs train. Use as a context manager: a bar still shown when the
    sweep stops (an error, Ctrl-C) is closed on the way out."""

    def __init__(self) -> None:
        from sweepbook import api

        self._progress: Progress | None = None
        self._bar: TaskID | None = None
        # One handler per event type: an event without one is a KeyError, caught by the tests.
        self._handlers: dict[type, Callable[[Any], None]] = {
            api.Planned: self._planned,
            api.RungStarted: self._rung_started,
            api.RungFinished: self._rung_finished,
            api.SearchStarted: self._search_started,
            api.StillQueued: self._still_queued,
            api.TasksPlanned: self._tasks_planned,
            api.TrainingStarted: self._training_started,
            api.RunTrained: self._run_trained,
            api.TasksPolled: self._tasks_polled,
            api.TrainingFinished: self._training_finished,
            api.TasksPlaced: self._tasks_placed,
        }

    def __call__(self, event: ProgressEvent) -> None:
        self._handlers[type(event)](event)

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _planned(self, event: Planned) -> None:
        stderr.print(
            f"[bold]{event.sweep}[/]: {event.planned} runs planned, {event.stored} already "
            "stored, "
            + (
                f"{event.in_flight} queued or running in SLURM, "
                if event.in_flight is not None
                else ""
            )
            + f"{event.to_train} to train"
            + (
                f" in {event.compile_groups} compile group(s)"
                if event.to_train
                else " — nothing to train"
            )
        )

    def _rung_started(self, event: RungStarted) -> None:
        first, last = event.first_epoch + 1, event.last_epoch
        span = f"epoch {last}" if first == last else f"epochs {first}-{last}"
        stderr.print(
            f"rung {event.rung + 1}/{event.rungs}: {span} for {event.configurations} "
            f"configuration(s), {event.runs} runs"
            + (
                f", {event.runs - event.to_train} already past it"
                if event.to_train < event.runs
                else ""
            )
        )

    def _rung_finished(self, event: RungFinished) -> None:
        if event.kept is None:
            return
        stderr.print(
            f"rung {event.rung + 1}/{event.rungs}: {event.kept} of {event.configurations} "
            f"configuration(s) go on; {event.stopped_runs} runs stopped"
        )

    def _search_started(self, event: SearchStarted) -> None:
        stderr.print(
            f"[bold]{event.sweep}[/]: TPE search, {event.trials} trials in batches of "
            f"{event.batch}, {event.runs_per_trial} run(s) per trial"
        )

    def _still_queued(self, event: StillQueued) -> None:
        stderr.print(
            f"{event.runs} runs of this store are still queued or running as SLURM job "
            f"{event.arrays} (squeue -j {event.arrays}): not submitted again"
        )

    def _tasks_planned(self, event: TasksPlanned) -> None:
        stderr.print(
            f"{event.tasks} {event.launcher} task(s), one per chunk of a compile group; "
            f"logs under {event.logs}"
        )

    def _training_started(self, event: TrainingStarted) -> None:
        # Runs trained here finish at a steady pace, so a time left means something; array
        # tasks finish in bursts, whenever the scheduler runs them.
        remaining = (TimeRemainingColumn(),) if event.in_process else ()
        self._progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            *remaining,
            console=stderr,
            transient=False,
        )
        self._progress.start()
        self._bar = self._progress.add_task(event.description, total=event.total)

    def _run_trained(self, event: RunTrained) -> None:
        assert self._progress is not None and self._bar is not None
        self._progress.advance(self._bar)

    def _tasks_polled(self, event: TasksPolled) -> None:
        assert self._progress is not None and self._bar is not None
        counts = event.counts
        self._progress.update(
            self._bar,
            completed=event.stored,
            description=f"tasks: {counts.done} done, {counts.running} running, "
            f"{counts.queued + counts.waiting} waiting, {counts.failed} failed",
        )

    def _training_finished(self, event: TrainingFinished) -> None:
        self.__exit__()

    def _tasks_placed(self, event: TasksPlaced) -> None:
        stderr.print("tasks ran on: " + "; ".join(f"{d} ({n} tasks)" for d, n in event.places))


def command_run(args: argparse.Namespace) -> int:
    from sweepbook.api import run_sweep

    with RunProgress() as show:
        summary = run_sweep(
            Path(args.sweep),
            Path(args.out) if args.out else None,
            launcher=args.launcher,
            launcher_options=_launcher_flags(args),
            runs_per_chunk=args.runs_per_chunk,
            memory_budget=args.memory_budget,
            max_runs=args.max_runs,
            compile_cache=args.compile_cache,
            save_params=args.save_params,
            report=not args.no_report,
            wait=not args.no_wait,
            command=["sweepbook", *sys.argv[1:]],
            on_progress=show,
        )
    return _print_run_summary(summary)


def _print_run_summary(summary: RunSummary) -> int:
    """The closing lines of ``sweepbook run``; its exit code."""
    if summary.detached is not None:
        detached = summary.detached
        again = shlex.join(["sweepbook", *[a for a in sys.argv[1:] if a != "--no-wait"]])
        stderr.print(
            f"submitted {detached.tasks} task(s) as SLURM job {detached.array} "
            f"({detached.runs} runs); follow with: squeue -j {detached.array}; "
            f"logs under {detached.logs}"
        )
        stderr.print(
            f"when squeue no longer lists it: {again}  (merges, retries failed runs, renders "
            "the report); meanwhile: sweepbook report "
            f"{shlex.quote(str(summary.store.resolve()))}"
        )
        return EXIT_OK
    if summary.trained:
        stderr.print(
            f"trained {summary.trained} runs in {summary.seconds:.1f} s "
            f"({summary.compilations} compilations, {summary.compile_seconds:.1f} s "
            f"compiling): {summary.ok} ok, {summary.diverged} diverged, {summary.failed} failed"
            + (f", {summary.stopped} stopped" if summary.stopped else "")
        )
    if summary.run_epochs is not None and summary.full_run_epochs:
        share = summary.run_epochs / summary.full_run_epochs
        stderr.print(
            f"successive halving: {summary.run_epochs} of a full grid's {summary.full_run_epochs} "
            f"run-epochs ({share:.0%}), {1 - share:.0%} saved"
        )
    elif summary.searched:
        stderr.print("every trial is already stored — nothing to train")
    for line in summary.errors:
        stderr.print(f"[red]failed[/] {line}")
    for line in summary.failed_tasks:
        stderr.print(f"[red]task failed[/] {line}")
    if summary.failed_tasks:
        stderr.print("their runs are not stored: run the same command again to retry them")
    if summary.report is not None:
        stderr.print(f"report: {summary.report.resolve().as_uri()}")
    return EXIT_OK if summary.succeeded else EXIT_FAILURE


def command_report(args: argparse.Namespace) -> int:
    from sweepbook.api import render_report
    from sweepbook.report import check_report

    if args.check:
        stale = [d for d in args.directories if not check_report(Path(d))]
        for directory in stale:
            stderr.print(f"stale: {directory}: the stored results changed after its report")
        if not stale:
            stderr.print("up to date: every report matches its stored results")
        return EXIT_FAILURE if stale else EXIT_OK
    for directory in args.directories:
        target = render_report(
            Path(directory),
            args.venue,
            on_busy=lambda busy: stderr.print(
                f"note: {busy.line}; reporting the runs stored so far"
            ),
        )
        stderr.print(f"report: {target.resolve().as_uri()}")
    return EXIT_OK


def command_verify(args: argparse.Namespace) -> int:
    from sweepbook.api import verify_store

    def log(outcome: Outcome) -> None:
        if outcome.reproduced:
            stderr.print(f"reproduced {outcome.run_id} (chunk of {outcome.chunk_size})")
        else:
            stderr.print(f"[red]DIFFERS[/] {outcome.run_id}: {outcome.difference}", soft_wrap=True)

    summary = verify_store(
        Path(args.directory), args.runs, report=not args.no_report, on_progress=log
    )
    stderr.print(summary.text, markup=False)
    if summary.report is not None:
        stderr.print(f"report: {summary.report.resolve().as_uri()}")
    return EXIT_OK if summary.succeeded else EXIT_FAILURE


def command_compare(args: argparse.Namespace) -> int:
    from sweepbook.api import compare_stores

    target = compare_stores(
        args.directories, args.out, args.venue, every_configuration=args.every_configuration
    )
    stderr.print(f"comparison: {target.resolve().as_uri()}")
    return EXIT_OK


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


def _add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    run.add_argument(
        "--save-params",
        choices=SAVE_PARAMS,
        default="best",
        help="keep trained parameters under DIR/params/<run_id>/ (Orbax; sweepbook.load_run "
        "reads them): best (default) the runs of the best configuration, chosen as the report "
        "chooses it, so the store stays small; all: every run that finished ok; none",
    )
    _add_launcher_flags(run)
    run.set_defaults(handler=command_run)


def _add_launcher_flags(run: argparse.ArgumentParser) -> None:
    launch = run.add_argument_group(
        "launcher",
        "train as tasks of a job array (one per chunk of a compile group) instead of in this "
        "process; each flag overrides the sweep's [launcher] table",
    )
    launch.add_argument(
        "--launcher",
        choices=LAUNCHER_NAMES,
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


def _add_report_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
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


def _add_verify_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
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


def _add_compare_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    compare = commands.add_parser(
        "compare", help="one report over several stores that share their test data"
    )
    compare.add_argument(
        "directories", nargs="+", help="two store directories or more, e.g. reports/optimizers"
    )
    compare.add_argument(
        "--out", help="report directory (default: compare-<a>-vs-<b> beside the first store)"
    )
    compare.add_argument(
        "--all",
        dest="every_configuration",
        action="store_true",
        help="also compare every configuration of every store, not only each one's best",
    )
    compare.add_argument(
        "--venue",
        type=_venue_name,
        help="draw the figures for this venue (default: the first sweep file's [report] venue)",
    )
    compare.set_defaults(handler=command_compare)


def _add_bench_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    bench = commands.add_parser("bench", help="measure the engine against the alternatives")
    bench.add_argument("--out", default="reports/bench", help="where bench.json goes")
    bench.add_argument("--quick", action="store_true", help="a smaller sweep, for smoke tests")
    bench.set_defaults(handler=command_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweepbook", description="Declarative JAX sweeps, stored as Parquet, reported as HTML."
    )
    parser.add_argument("--version", action="version", version=f"sweepbook {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        _add_run_command,
        _add_report_command,
        _add_verify_command,
        _add_compare_command,
        _add_bench_command,
    ):
        add_command(commands)
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
