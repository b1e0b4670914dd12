"""Stores on users' disks are a contract: what an earlier sweepbook wrote still plans to the
same run ids, resumes without training, verifies and renders.

``fixtures/planner_v1`` holds the shipped sweeps and experiments of commit 8b0a5e4 with the run
ids that commit planned for them; ``fixtures/store_v1`` the store that commit wrote for the
tiny sweep of conftest.py (4 runs), without its rendered report. That commit did not record the
CPU, and a CPU run's bits are those of its kind of CPU (XLA vectorizes for the machine's widest
vector instructions): ``store_v1`` was written on the machine of 2026-12-02,
``store_v1_avx2`` by the same commit, the same sweep, on an AMD EPYC with AVX2 and no AVX-512."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from sweepbook.cli import EXIT_OK, main
from sweepbook.config import load_sweep
from sweepbook.plan import expand

FIXTURES = Path(__file__).parent / "fixtures"
PLANNER_V1 = FIXTURES / "planner_v1"
STORE_V1 = FIXTURES / "store_v1"
# The same store as written on each kind of CPU it was recorded on.
STORES_V1 = (STORE_V1, FIXTURES / "store_v1_avx2")


@pytest.mark.parametrize(
    "sweep_file", sorted(json.loads((PLANNER_V1 / "run_ids.json").read_text()))
)
def test_shipped_sweeps_of_an_earlier_version_plan_to_the_same_run_ids(sweep_file: str) -> None:
    expected = json.loads((PLANNER_V1 / "run_ids.json").read_text())[sweep_file]

    planned = [run.run_id for run in expand(load_sweep(PLANNER_V1 / "sweeps" / sweep_file))]

    assert planned == expected


@pytest.fixture
def old_project(tmp_path: Path) -> Path:
    """A project whose sweep and experiment are the ones the old store was written from, with
    that store at reports/tiny."""
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "experiments").mkdir()
    shutil.copy(STORE_V1 / "sweep.toml", tmp_path / "sweeps" / "tiny.toml")
    shutil.copy(STORE_V1 / "experiment.toml", tmp_path / "experiments" / "tiny.toml")
    shutil.copytree(STORE_V1, tmp_path / "reports" / "tiny")
    return tmp_path


def test_an_old_store_resumes_without_training_and_renders(
    old_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(old_project)
    store = old_project / "reports" / "tiny"
    before = pl.read_parquet(store / "runs.parquet")

    assert main(["run", "sweeps/tiny.toml"]) == EXIT_OK

    assert "4 already stored, 0 to train" in capsys.readouterr().err
    after = pl.read_parquet(store / "runs.parquet")
    assert after.equals(before)  # nothing trained, nothing rewritten
    html = (store / "index.html").read_text()
    assert "Tiny" in html and "ccb94bff2710" in (store / "sweep.json").read_text()


def test_an_old_store_verifies_bit_for_bit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs trained by the earlier version retrain to the same bits on their kind of CPU: keys
    added since (data scale, weight-decay mask) and optimizer defaults change neither the runs
    nor their ids. The store recorded on another kind of CPU differs by rounding, and verify
    says that the store does not record which CPU trained it."""
    outcomes = []
    for recorded in STORES_V1:
        store = tmp_path / recorded.name
        shutil.copytree(recorded, store)
        code = main(["verify", str(store), "--runs", "4", "--no-report"])
        outcomes.append((code, capsys.readouterr().err))

    reproduced = [err for code, err in outcomes if code == EXIT_OK]
    assert len(reproduced) >= 1, "no recorded store reproduces on this CPU: " + "".join(
        err for _, err in outcomes
    )
    assert all("4/4 runs reproduced bit for bit" in err for err in reproduced)
    for code, err in outcomes:
        if code != EXIT_OK:
            assert "the store does not record which CPU trained it" in err
