"""The engine: one compilation per static group, runs stored as they finish, failures isolated."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
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

    def compile_or_fail(static, num_classes, data, example, **options):
        if static.batch_size == 64:
            raise RuntimeError("injected compile failure")
        return real_compile(static, num_classes, data, example, **options)

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


@pytest.mark.parametrize(
    ("group", "limit", "devices", "expected"),
    [(3, 32, 1, 3), (40, 32, 1, 32), (3, 32, 4, 4), (5, 2, 4, 4), (9, 32, 4, 12)],
)
def test_chunk_size(group, limit, devices, expected):
    assert engine.chunk_size(group, limit=limit, devices=devices) == expected


def _rows(store: Store) -> pl.DataFrame:
    columns = ["run_id", "test.loss", "val.loss", "best_epoch", "chunk_size"]
    return store.read_runs().select(columns).sort("run_id")


def test_results_do_not_depend_on_chunk_mates(plan, tmp_path: Path):
    """The same run, trained beside different runs in chunks of one size, gives the same bits."""
    splits = engine.load_splits(plan)
    same_group = [run for run in plan if run.config.train.batch_size == 64]
    first, second, third = same_group[0], same_group[1], same_group[3]
    engine.train_runs([first, second], Store(tmp_path / "a"), splits=splits)
    engine.train_runs([first, third], Store(tmp_path / "b"), splits=splits)
    a, b = _rows(Store(tmp_path / "a")), _rows(Store(tmp_path / "b"))
    assert a.filter(pl.col("run_id") == first.run_id).equals(
        b.filter(pl.col("run_id") == first.run_id)
    )


def test_a_resumed_sweep_trains_exactly_what_an_uninterrupted_one_does(plan, tmp_path: Path):
    splits = engine.load_splits(plan)
    whole = Store(tmp_path / "whole")
    engine.train_runs(plan, whole, splits=splits)
    resumed = Store(tmp_path / "resumed")
    engine.train_runs(plan[:3], resumed, splits=splits, planned=plan)  # then "killed"
    engine.train_runs(plan[3:], resumed, splits=splits, planned=plan)
    assert _rows(resumed).equals(_rows(whole))
    assert set(_rows(whole)["chunk_size"]) == {4}  # 4 runs per batch-size group


def test_runs_are_sharded_over_several_devices(project: Path, tmp_path: Path):
    """Four CPU devices stand in for four GPUs: chunks are split over them."""
    script = (
        "import sys; from sweepbook.cli import main; "
        "sys.exit(main(['run', 'sweeps/tiny.toml', '--no-report', '--out', sys.argv[1]]))"
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "store")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    runs = Store(tmp_path / "store").read_runs()
    assert runs.height == 4 and set(runs["status"]) == {"ok"}
    assert set(runs["chunk_size"]) == {4}  # 4 runs, a multiple of the 4 devices
    assert runs["test.accuracy"].min() > 0.5


def test_a_small_memory_budget_makes_small_chunks(plan, tmp_path: Path):
    splits = engine.load_splits(plan)
    store = Store(tmp_path / "tight")
    engine.train_runs(plan[:2], store, splits=splits, memory_budget=1_000)  # 1 kB: one run
    assert set(store.read_runs()["chunk_size"]) == {1}


def test_run_memory_grows_with_the_model(plan):
    splits = engine.load_splits(plan)
    (group, *_) = engine.group_runs(plan, splits)
    split = splits[engine.split_key(group.runs[0])]
    small = engine.run_memory_bytes(group.static, group.num_classes, split)
    wide = dataclasses.replace(group.static, model=group.static.model.replace("[32]", "[4096]"))
    assert engine.run_memory_bytes(wide, group.num_classes, split) > 10 * small > 0


def _static(overrides: dict, make_run_config):
    from sweepbook.train import static_spec

    return static_spec(make_run_config(overrides))


def test_a_run_that_saturates_the_cpu_trains_alone(make_run_config):
    big = {"model.widths": [784], "train.batch_size": 256}
    static = _static(big, make_run_config)
    # MLP 784-784-10: 6 FLOPs per multiply-add, 256 examples a step.
    assert engine.step_flops(static, 10, (28, 28, 1)) == 6 * 256 * (784 * 784 + 784 * 10)
    assert engine.saturation_limit(static, 10, (28, 28, 1), "cpu") == 1
    # The rule is the backend's: where no threshold was measured, chunks are not limited.
    assert engine.saturation_limit(static, 10, (28, 28, 1), "gpu") is None
    small = _static({}, make_run_config)  # the tiny MLP: 64-32-10 at batch 128
    assert engine.saturation_limit(small, 10, (8, 8, 1), "cpu") is None


def test_saturating_groups_train_in_chunks_of_one_also_when_resumed(
    plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(engine.SATURATING_STEP_FLOPS, "cpu", 1.0)  # every run saturates
    splits = engine.load_splits(plan)
    whole = Store(tmp_path / "whole")
    engine.train_runs(plan, whole, splits=splits)
    resumed = Store(tmp_path / "resumed")
    engine.train_runs(plan[:3], resumed, splits=splits, planned=plan)
    engine.train_runs(plan[3:], resumed, splits=splits, planned=plan)
    assert set(_rows(whole)["chunk_size"]) == {1}
    assert _rows(resumed).equals(_rows(whole))


def test_chunks_never_mix_data_splits(project: Path):
    sweep_file = project / "sweeps" / "tiny.toml"
    sweep_file.write_text(
        sweep_file.read_text().replace("[grid]\n", '[grid]\n"data.split_seed" = [0, 1]\n')
    )
    plan = expand(load_sweep(sweep_file))  # 2 split seeds x 2 learning rates x 2 seeds
    interleaved = sorted(plan, key=lambda run: run.run_id)  # splits in no particular order
    chunks = list(engine._chunks(tuple(interleaved), 3))
    assert [len({engine.split_key(run) for run in part}) for part in chunks] == [1] * 4
    assert [len(part) for part in chunks] == [3, 1, 3, 1]
    trained = [run.run_id for part in chunks for run in part]
    assert sorted(trained) == sorted(run.run_id for run in plan)
