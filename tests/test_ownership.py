"""A store belongs to one sweep: another sweep file of the same name is refused, the same
sweep edited or widened is not, and a moved project keeps its store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from conftest import TINY_SWEEP, write_project
from sweepbook.cli import EXIT_BAD_INPUT, EXIT_OK, main
from sweepbook.config import ConfigError, load_sweep
from sweepbook.ownership import check_store_owner
from sweepbook.plan import expand
from sweepbook.report import write_sweep_record


def recorded_store(directory: Path, sweep_path: Path) -> None:
    """What ``sweepbook run`` records before it trains: the sweep record."""
    sweep = load_sweep(sweep_path)
    write_sweep_record(directory, sweep, expand(sweep), "sweepbook run x")


def test_another_sweep_file_of_the_same_name_is_refused_and_nothing_written(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project)
    assert main(["run", "sweeps/tiny.toml", "--no-report"]) == EXIT_OK
    store = project / "reports" / "tiny"
    before = {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()}
    other = write_project(project / "other" / "dir", {"tiny": TINY_SWEEP.replace("[0, 1]", "[5]")})
    capsys.readouterr()

    code = main(["run", str(other / "sweeps" / "tiny.toml")])

    error = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT
    assert len(error.splitlines()) == 1
    assert str((project / "sweeps" / "tiny.toml").resolve()) in error  # the store's sweep
    assert str((other / "sweeps" / "tiny.toml").resolve()) in error  # the refused one
    assert "--out" in error
    after = {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()}
    assert after == before
    assert pl.read_parquet(store / "runs.parquet")["seed"].to_list().count(5) == 0


def test_the_same_sweep_edited_and_widened_keeps_its_store(project: Path) -> None:
    sweep_path = project / "sweeps" / "tiny.toml"
    recorded_store(project / "out", sweep_path)
    sweep_path.write_text(TINY_SWEEP.replace("[0, 1]", "[0, 1, 2]").replace("3e-2]", "3e-2, 1e-1]"))

    check_store_owner(project / "out", load_sweep(sweep_path))  # no error


def test_a_new_directory_belongs_to_any_sweep(project: Path) -> None:
    check_store_owner(project / "nothing-here", load_sweep(project / "sweeps" / "tiny.toml"))


def test_a_moved_project_keeps_its_store_but_not_for_another_experiment(project: Path) -> None:
    """The recorded sweep file is gone (project moved or cloned): the store stays the sweep's
    when the sweep and experiment file names match."""
    sweep_path = project / "sweeps" / "tiny.toml"
    recorded_store(project / "out", sweep_path)
    record_path = project / "out" / "sweep.json"
    record = json.loads(record_path.read_text())
    record["sweep_file"] = "/elsewhere/sweeps/tiny.toml"
    del record["sweep_file_from_store"]  # as in stores written before it was recorded
    record["experiment_file"] = "/elsewhere/experiments/tiny.toml"
    record_path.write_text(json.dumps(record))

    check_store_owner(project / "out", load_sweep(sweep_path))  # adopted

    record["experiment_file"] = "/elsewhere/experiments/mnist_lenet5.toml"
    record_path.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"no longer there; its experiment mnist_lenet5\.toml"):
        check_store_owner(project / "out", load_sweep(sweep_path))


def test_a_project_copied_whole_keeps_its_store(project: Path) -> None:
    """cp -r proj proj2: the store in proj2 belongs to proj2's sweep file, found at the same
    place relative to the store, even though proj's file still exists."""
    recorded_store(project / "reports" / "tiny", project / "sweeps" / "tiny.toml")
    copy = project.parent / "copy"
    shutil.copytree(project, copy)

    check_store_owner(copy / "reports" / "tiny", load_sweep(copy / "sweeps" / "tiny.toml"))
