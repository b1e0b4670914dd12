"""The user's entry points. Each session installs sweepbook into its own virtualenv (reused
between calls) and takes extra arguments after ``--``, e.g. ``nox -s sweep -- sweeps/x.toml``."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint"]

DEFAULT_SWEEP = "sweeps/quickstart.toml"


def _run_sweep(session: nox.Session) -> None:
    args = list(session.posargs)
    if not args or args[0].startswith("-"):
        args.insert(0, DEFAULT_SWEEP)
    session.run("sweepbook", "run", *args)


@nox.session
def sweep(session: nox.Session) -> None:
    """Train a sweep's missing runs and write its report: nox -s sweep -- [SWEEP] [--out DIR]
    [--launcher local|slurm --partition P --gpus N ...] (every `sweepbook run` flag)."""
    session.install(".")
    _run_sweep(session)


@nox.session
def sweep_gpu(session: nox.Session) -> None:
    """As `sweep`, with JAX for CUDA 12 GPUs (the `cuda` extra: jax[cuda12]) in its virtualenv:
    nox -s sweep_gpu -- SWEEP --launcher slurm --gpus 1."""
    session.install(".[cuda]")
    _run_sweep(session)


# The studies the courses teach, in the order a newcomer would read them: each sweep file opens
# with its question, its command and the finding measured on 2 CPU cores.
STUDIES = (
    "sweeps/quickstart.toml",
    "sweeps/reproducibility.toml",
    "sweeps/batch_size_lenet5.toml",
    "sweeps/optimizers.toml",
    "sweeps/lr_schedules.toml",
    "sweeps/regularizers.toml",
    "sweeps/kfold_vs_holdout.toml",
    "sweeps/pruning_levels.toml",
    "sweeps/pruning_lenet5.toml",
    "sweeps/quantization_bits.toml",
    "sweeps/ptq_vs_qat.toml",
    "sweeps/ptq_vs_qat_lenet5.toml",
    "sweeps/diabetes_regression.toml",
    "sweeps/breast_cancer_tabular.toml",
    "sweeps/halving_quickstart.toml",
)


@nox.session
def studies(session: nox.Session) -> None:
    """Run every shipped study and write its report; reports/index.html lists them all. Runs
    already stored are not trained again. nox -s studies -- [SWEEP ...] [sweepbook run options,
    e.g. --launcher slurm], where SWEEP files pick a subset."""
    session.install(".")
    chosen = [arg for arg in session.posargs if arg.endswith(".toml")] or list(STUDIES)
    options = [arg for arg in session.posargs if not arg.endswith(".toml")]
    for sweep_file in chosen:
        session.log(f"study {chosen.index(sweep_file) + 1} of {len(chosen)}: {sweep_file}")
        session.run("sweepbook", "run", sweep_file, *options)


@nox.session
def report(session: nox.Session) -> None:
    """Re-render reports from their stores alone: nox -s report -- [reports/NAME ...]."""
    session.install(".")
    directories = list(session.posargs) or sorted(
        str(path.parent) for path in Path("reports").glob("*/sweep.json")
    )
    if not directories:
        session.error("no stores under reports/; run 'nox -s sweep' first")
    session.run("sweepbook", "report", *directories)


@nox.session
def verify(session: nox.Session) -> None:
    """Retrain stored runs and check they reproduce bit for bit; writes verification.json and
    re-renders the report: nox -s verify -- reports/NAME [--runs N] [--no-report]."""
    session.install(".")
    if not session.posargs:
        session.error("name a store, e.g. nox -s verify -- reports/quickstart --runs 3")
    session.run("sweepbook", "verify", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest; extra arguments go to pytest): nox -s tests -- -k config."""
    session.install(".[test]")
    # Two workers (pytest-xdist), one per core of a 2-core CI machine: a test's time goes mostly
    # to XLA compiling and matplotlib drawing, which keep one thread busy, and the SLURM tests
    # mostly wait for their jobs, so one process leaves a core idle much of the time. Whole
    # files go to one worker (loadfile): module and session fixtures (the SLURM cluster, the
    # browser, the rendered papers) are still built once. `-- -n 0` runs in one process.
    # nox accepts only exit code 0, so pytest's 5 ("no tests collected") fails the session too.
    session.run("pytest", "-n", "2", "--dist", "loadfile", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark the engine against eager PyTorch and sequential JAX; prints ratios, writes
    reports/bench/bench.json. PyTorch (CPU build) is installed here only, never by sweepbook."""
    session.install(".", "torch==2.13.0")
    session.run("sweepbook", "bench", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Static checks: ruff (lint and format) and mypy."""
    session.install(".[lint]")
    session.run("ruff", "check", "src", "tests", "noxfile.py", *session.posargs)
    session.run("ruff", "format", "--check", "src", "tests", "noxfile.py")
    session.run("mypy", "src")
