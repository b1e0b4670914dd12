"""The engine: one compilation per static group, runs stored as they finish, failures isolated."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sweepbook import engine
from sweepbook.config import load_sweep
from sweepbook.plan import expand
from sweepbook.store import Store


@pytest.fixture(autouse=True)
def fresh_programs():
    """Each test counts its own compilations."""
    engine.forget_compiled_programs()


@pytest.fixture
def plan(project: Path):
    sweep_file = project / "sweeps" / "tiny.toml"
    sweep_file.write_text(
        sweep_file.read_text().replace(
            "[grid]\n", '[set]\n"train.epochs" = 2\n\n[grid]\n"train.batch_size" = [64, 128]\n'
        )
    )
    return expand(load_sweep(sweep_file))  # 2 batch sizes x 2 learning rates x 2 seeds


def test_one_compilation_per_static_group(plan, tmp_path: Path):
    splits = engine.load_splits(plan)
    assert len(engine.group_runs(plan, splits)) == 2
    summary = engine.train_runs(plan, Store(tmp_path / "store"), splits=splits)
    assert summary.compilations == 2
    assert (summary.trained, summary.ok, summary.failed) == (8, 8, 0)
    runs = Store(tmp_path / "store").read_runs()
    assert runs.height == 8
    assert runs.group_by("compile_group").len()["len"].sort().to_list() == [4, 4]


def test_compiled_programs_are_reused_across_calls(plan, tmp_path: Path):
    splits = engine.load_splits(plan)
    first = engine.train_runs(plan[:4], Store(tmp_path / "a"), splits=splits)
    second = engine.train_runs(plan[4:], Store(tmp_path / "b"), splits=splits)
    assert first.compilations + second.compilations == 2


def test_a_failing_group_is_stored_as_failed_and_the_rest_goes_on(
    plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    real_compile = engine.compile_program

    def compile_or_fail(static, num_classes, data, example):
        if static.batch_size == 64:
            raise RuntimeError("injected compile failure")
        return real_compile(static, num_classes, data, example)

    monkeypatch.setattr(engine, "compile_program", compile_or_fail)
    store = Store(tmp_path / "store")
    done: list[str] = []
    summary = engine.train_runs(
        plan,
        store,
        splits=engine.load_splits(plan),
        on_run_done=lambda run, status: done.append(status),
    )
    assert (summary.ok, summary.failed) == (4, 4)
    assert sorted(done) == ["failed"] * 4 + ["ok"] * 4
    runs = store.read_runs()
    failed = runs.filter(pl.col("status") == "failed")
    assert set(failed["train.batch_size"]) == {64}
    assert failed["error"].str.contains("injected compile failure").all()
    # Failed runs are not "done": the next sweep retries exactly them.
    assert store.completed_ids() == set(runs.filter(pl.col("status") == "ok")["run_id"])
    assert (
        store.read_history().filter(pl.col("run_id").is_in(failed["run_id"].to_list())).is_empty()
    )
