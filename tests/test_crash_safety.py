"""Real ``sweepbook run`` processes, killed with SIGKILL at several points or run two at once on
one store: no completed run is lost or trained twice, and no file is left that readers choke on.

Kill points are found by polling the store directory, so each kill lands just after a milestone
(lock taken, first chunk stored, another chunk stored, merge begun); where exactly does not
matter: the checks below must hold wherever a kill lands.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import sweepbook
from sweepbook.store import LOCK_FILE, Store

SOURCE = str(Path(sweepbook.__file__).resolve().parents[1])


@pytest.fixture
def sweep_file(project: Path) -> Path:
    """12 runs in 2 compile groups, trained 2 per chunk: 6 part pairs appear one by one."""
    path = project / "sweeps" / "tiny.toml"
    path.write_text(
        path.read_text()
        .replace("seeds = [0, 1]", "seeds = [0, 1, 2]")
        .replace(
            "[grid]\n",
            '[set]\n"train.epochs" = 6\n"train.early_stopping.patience" = 6\n\n'
            '[grid]\n"train.batch_size" = [64, 128]\n',
        )
    )
    return path


def start_sweep(project: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "sweepbook.cli", "run", "sweeps/tiny.toml", "--out", str(out)]
    return subprocess.Popen(
        [*command, "--runs-per-chunk", "2", *extra],
        cwd=project,
        env={**os.environ, "PYTHONPATH": SOURCE},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_sweep(project: Path, out: Path, *extra: str) -> tuple[int, str]:
    process = start_sweep(project, out, *extra)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def wait_until(process: subprocess.Popen[str], ready: Callable[[], bool]) -> bool:
    """Poll every few milliseconds until ``ready()``; False if the process ended first."""
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(0.003)
    return False


def kill_when(project: Path, out: Path, ready: Callable[[], bool]) -> bool:
    """Start a sweep and SIGKILL it as soon as ``ready()``; whether the kill landed."""
    process = start_sweep(project, out, "--no-report")
    landed = wait_until(process, ready)
    if landed:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=120)
    return landed and process.returncode == -signal.SIGKILL


def runs_parts(out: Path) -> int:
    return len(list((out / "parts").glob("*.runs.parquet"))) if (out / "parts").is_dir() else 0


def trainings(out: Path) -> dict[str, set[str]]:
    """Every run id found in any runs file, main or part, with the ``finished_at`` stamps of its
    rows: two stamps would mean the run was trained twice. Reads every Parquet file raw, so a
    damaged one fails here."""
    stamps: dict[str, set[str]] = {}
    files = [out / "runs.parquet", *(out / "parts").glob("*.runs.parquet")]
    for path in files:
        if path.is_file():
            for row in pl.read_parquet(path).select("run_id", "finished_at").iter_rows():
                stamps.setdefault(row[0], set()).add(str(row[1]))
    for path in out.rglob("*.parquet"):
        pl.read_parquet(path)  # history parts and main files must be readable too
    return stamps


def check_no_retraining(before: dict[str, set[str]], after: dict[str, set[str]]) -> None:
    assert all(len(stamps) == 1 for stamps in after.values()), "a run was trained twice"
    for run_id, stamps in before.items():
        assert after.get(run_id) == stamps, f"{run_id} was lost or retrained"


@pytest.mark.slow  # about 40 s on 2 CPU cores: five processes, each importing JAX
def test_a_sweep_killed_at_any_point_resumes_without_loss_or_retraining(
    sweep_file: Path, project: Path
) -> None:
    out = project / "out"
    store = Store(out)
    milestones: list[tuple[str, Callable[[], bool]]] = [
        ("right after start", lambda: (out / LOCK_FILE).is_file()),
        ("after the first chunk", lambda: runs_parts(out) >= 1),
    ]
    seen: dict[str, set[str]] = {}
    for name, ready in milestones:
        assert kill_when(project, out, ready), f"sweep ended before the kill {name}"
        after = trainings(out)
        check_no_retraining(seen, after)
        seen = after
    assert 0 < len(seen) < 12

    stored = runs_parts(out)
    assert kill_when(project, out, lambda: runs_parts(out) > stored), "no chunk to kill after"
    after = trainings(out)
    check_no_retraining(seen, after)
    seen = after
    assert len(seen) < 12

    # The merge writes history.parquet first, then runs.parquet, then deletes the parts.
    kill_when(project, out, lambda: (out / "history.parquet").exists())
    after = trainings(out)
    check_no_retraining(seen, after)
    seen = after

    # The lock file of the killed process is still there; it does not block the restart.
    holder = json.loads((out / LOCK_FILE).read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(holder["pid"], 0)
    code, stderr = run_sweep(project, out)
    assert code == 0, stderr
    final = trainings(out)
    check_no_retraining(seen, final)
    assert len(final) == 12
    runs = store.read_runs()
    assert runs.height == 12 and runs["run_id"].n_unique() == 12
    assert set(runs["status"]) == {"ok"}
    assert pl.read_parquet(out / "runs.parquet").height == 12  # merged, one row per run
    assert store.read_history().group_by("run_id").len().height == 12
    assert list((out / "parts").iterdir()) == []
    assert not list(out.rglob("*.tmp"))
    assert (out / "index.html").is_file()

    code, stderr = run_sweep(project, out, "--no-report")
    assert code == 0 and "nothing to train" in stderr
    assert trainings(out) == final


def test_a_second_sweep_on_the_same_store_refuses_and_the_first_finishes(
    sweep_file: Path, project: Path
) -> None:
    out = project / "out"
    first = start_sweep(project, out, "--no-report")
    # Freeze the first sweep while it holds the lock, mid-training, so the overlap is certain.
    assert wait_until(first, lambda: runs_parts(out) >= 1)
    first.send_signal(signal.SIGSTOP)
    try:
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
        code, stderr = run_sweep(project, out)
        after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
        report = subprocess.run(
            [sys.executable, "-m", "sweepbook.cli", "report", str(out)],
            env={**os.environ, "PYTHONPATH": SOURCE},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        first.send_signal(signal.SIGCONT)
    assert code == 1
    line = stderr.strip()
    assert "\n" not in line
    assert line.startswith(f"error: {out}: another sweepbook process (pid {first.pid} on host ")
    assert line.endswith("is using this store; wait for it or pass --out DIR")
    assert after == before  # the refused sweep wrote nothing
    # A report beside a running sweep reads what is stored so far, and merges nothing.
    assert report.returncode == 0, report.stderr
    assert f"pid {first.pid}" in report.stderr and "stored so far" in report.stderr
    assert set(before) <= set(out.rglob("*"))

    _, first_stderr = first.communicate(timeout=120)
    assert first.returncode == 0, first_stderr
    trained = trainings(out)
    assert len(trained) == 12 and all(len(stamps) == 1 for stamps in trained.values())
    code, stderr = run_sweep(project, out, "--no-report")
    assert code == 0 and "nothing to train" in stderr
    assert trainings(out) == trained


@pytest.fixture
def halving_file(sweep_file: Path) -> Path:
    """The 12 runs above as 4 configurations x 3 seeds, halved by 2 at epochs 1, 2, 4 and 6."""
    sweep_file.write_text(
        sweep_file.read_text().replace("[report]", "[halving]\nmin_epochs = 1\neta = 2\n\n[report]")
    )
    return sweep_file


def ledger(out: Path) -> dict[tuple[str, int], float]:
    """``rungs.parquet`` as (run id, rung) -> value; empty before the first rung value."""
    path = out / "rungs.parquet"
    if not path.is_file():
        return {}
    rows = pl.read_parquet(path).select("run_id", "rung", "value").iter_rows()
    return {(run_id, rung): value for run_id, rung, value in rows}


def stopped_rungs(out: Path) -> dict[str, int]:
    """Each run stored as stopped (main file or parts), with the rung it stopped at."""
    files = [out / "runs.parquet", *(out / "parts").glob("*.runs.parquet")]
    return {
        run_id: rung
        for path in files
        if path.is_file()
        for run_id, status, rung in pl.read_parquet(path)
        .select("run_id", "status", "rung")
        .iter_rows()
        if status == "stopped"
    }


def check_halving_kept(before: dict[tuple[str, int], float], out: Path) -> None:
    """A rung value once recorded stays as it was (no completed rung lost or retrained), and a
    stopped run has no value past its rung (it never trained again)."""
    after = ledger(out)
    for key, value in before.items():
        assert key in after and (after[key] == value or value != value), f"rung {key} changed"
    for run_id, rung in stopped_rungs(out).items():
        assert max(r for (i, r) in after if i == run_id) == rung, f"{run_id} trained past a stop"


@pytest.mark.slow  # about 40 s on 2 CPU cores: five processes, each importing JAX
def test_a_halving_killed_in_and_between_rungs_resumes_to_the_same_choice(
    halving_file: Path, project: Path
) -> None:
    out, uninterrupted = project / "out", project / "uninterrupted"
    code, stderr = run_sweep(project, uninterrupted, "--no-report")
    assert code == 0, stderr
    milestones: list[tuple[str, Callable[[], bool]]] = [
        ("during rung 1", lambda: len(ledger(out)) >= 2),
        ("after rung 1's choice", lambda: runs_parts(out) >= 1),  # the stopped runs' rows
        ("during rung 2", lambda: any(rung == 1 for _, rung in ledger(out))),
    ]
    seen, values = trainings(out), ledger(out)
    for name, ready in milestones:
        assert kill_when(project, out, ready), f"halving ended before the kill {name}"
        check_no_retraining(seen, trainings(out))
        check_halving_kept(values, out)
        seen, values = trainings(out), ledger(out)
    assert len(seen) < 12

    code, stderr = run_sweep(project, out, "--no-report")
    assert code == 0, stderr
    check_no_retraining(seen, trainings(out))
    check_halving_kept(values, out)
    # Each rung names the runs it found past it: those with a rung value at the last kill.
    for rung in range(4):
        past = sum(1 for _, r in values if r == rung)
        line = stderr[stderr.index(f"rung {rung + 1}/4: ") :].split("\n")[0]
        assert line.endswith(f", {past} already past it") if past else "already" not in line
    # The killed halving chose what the uninterrupted one chose, with the same bits.
    assert ledger(out) == ledger(uninterrupted)
    metrics = ["run_id", "status", "rung", "val.accuracy", "test.accuracy", "epochs_run"]
    mine = pl.read_parquet(out / "runs.parquet").select(metrics).sort("run_id")
    theirs = pl.read_parquet(uninterrupted / "runs.parquet").select(metrics).sort("run_id")
    assert mine.equals(theirs)
    assert not (out / "rungs").exists()  # no training state left behind
    assert not list(out.rglob("*.tmp"))
