"""Saved parameters: ``--save-params best|all|none`` keeps the right runs' variables as Orbax
checkpoints, ``load_run`` gives back a model that reproduces the stored test metrics, a user's
model round-trips, a damaged checkpoint is one line naming its file, and a failed write leaves
no partial checkpoint behind."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import accuracy_score, log_loss

import sweepbook
from conftest import TINY_EXPERIMENT, write_project
from sweepbook import checkpoints, cli
from sweepbook.api import run_sweep
from sweepbook.cli import EXIT_FAILURE, EXIT_OK, main
from sweepbook.data import load_split
from sweepbook.store import Store, StoreError


def _train(tmp: Path, save_params: str, sweeps: dict[str, str] | None = None) -> Path:
    root = write_project(tmp, sweeps)
    name = next(iter(sweeps or {"tiny": ""}))
    out = root / "reports" / name
    cache = tmp.parent / "xla-cache"
    sweep = root / "sweeps" / f"{name}.toml"
    run_sweep(sweep, out, save_params=save_params, report=False, compile_cache=cache)
    return out


@pytest.fixture(scope="module")
def all_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sweep (2 learning rates x 2 seeds) with every run's parameters saved."""
    return _train(tmp_path_factory.mktemp("all"), "all")


@pytest.fixture(scope="module")
def best_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("best"), "best")


def _ok_ids(store: Path) -> set[str]:
    runs = Store(store).read_runs()
    return set(runs.filter(pl.col("status") == "ok")["run_id"])


def test_all_saves_every_ok_run_and_nothing_half_written(all_store: Path) -> None:
    assert checkpoints.saved_run_ids(all_store) == _ok_ids(all_store)
    assert len(_ok_ids(all_store)) == 4
    leftovers = [p.name for p in (all_store / "params").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no pending area, no temporary directory


def test_best_keeps_the_runs_of_the_configuration_best_on_validation(best_store: Path) -> None:
    runs = Store(best_store).read_runs()
    # Known answer, computed here by hand: the learning rate with the best mean val.accuracy
    # (the report chooses a test.accuracy headline on its validation twin).
    means = runs.group_by("optimizer.learning_rate").agg(pl.col("val.accuracy").mean())
    best_lr = means.sort("val.accuracy", descending=True)["optimizer.learning_rate"][0]
    expected = set(runs.filter(pl.col("optimizer.learning_rate") == best_lr)["run_id"])
    assert len(expected) == 2  # both seeds
    assert checkpoints.saved_run_ids(best_store) == expected
    assert not (best_store / "params" / checkpoints.PENDING_DIR).exists()


def test_none_saves_nothing(tmp_path: Path) -> None:
    out = _train(tmp_path, "none")
    assert len(_ok_ids(out)) == 4
    assert not (out / "params").exists()


def test_an_unknown_mode_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    with pytest.raises(ValueError, match="save_params"):
        run_sweep(root / "sweeps" / "tiny.toml", root / "out", save_params="some")
    assert not (root / "out").exists()
    assert cli.SAVE_PARAMS == checkpoints.SAVE_PARAMS  # the command's choices, spelled out


def test_load_run_reproduces_the_stored_test_metrics(all_store: Path) -> None:
    runs = Store(all_store).read_runs()
    for row in runs.iter_rows(named=True):
        loaded = sweepbook.load_run(all_store, row["run_id"])
        split = load_split(loaded.config.data)
        logits = np.asarray(loaded.predict(split.x_test), np.float64)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        accuracy = accuracy_score(split.y_test, logits.argmax(axis=1))
        assert accuracy == pytest.approx(row["test.accuracy"], abs=1e-6)
        assert log_loss(split.y_test, probabilities, labels=range(10)) == pytest.approx(
            row["test.loss"], rel=1e-4
        )
        assert set(loaded.variables) == {"params"}  # the tiny MLP has no batch norm
        assert loaded.config.optimizer.learning_rate == row["optimizer.learning_rate"]


def test_a_checkpoint_holds_no_pickle(all_store: Path) -> None:
    """Orbax's standard handler writes JSON metadata and TensorStore array files: no file of
    a checkpoint is a pickle (protocol 2 and later start with 0x80)."""
    files = [p for p in (all_store / "params").rglob("*") if p.is_file()]
    assert files
    assert not [p for p in files if p.read_bytes()[:1] == b"\x80" or p.suffix == ".pkl"]
    manifest = json.loads(next((all_store / "params").glob("*/sweepbook.json")).read_text())
    assert set(manifest) == {"run_id", "num_outputs", "numerics", "files"}
    assert manifest["num_outputs"] == 10 and manifest["numerics"] == "dense"


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(
    all_store: Path, tmp_path: Path, damage: str, capsys
) -> None:
    store = tmp_path / "store"
    shutil.copytree(all_store, store)
    run_id = sorted(checkpoints.saved_run_ids(store))[0]
    data = sorted((store / "params" / run_id / "variables").rglob("d/*"))
    victim = max(data, key=lambda p: p.stat().st_size)
    content = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(content[: len(content) // 2])
    elif damage == "flip":
        victim.write_bytes(content[:-1] + bytes([content[-1] ^ 0xFF]))
    else:
        victim.unlink()
    with pytest.raises(StoreError) as error:
        sweepbook.load_run(store, run_id)
    message = str(error.value)
    assert "\n" not in message and str(victim) in message
    # The command line says the same in one line and exits 1: verify reads saved parameters.
    for other in checkpoints.saved_run_ids(store) - {run_id}:
        shutil.rmtree(store / "params" / other)  # verify's first run by id is the damaged one
    assert main(["verify", str(store), "--runs", "4", "--no-report"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert f"error: {victim}" in err.replace("\n", "")


def test_a_failed_write_leaves_no_partial_checkpoint(
    all_store: Path, tmp_path: Path, monkeypatch
) -> None:
    store = tmp_path / "store"
    shutil.copytree(all_store, store)
    run_id = sorted(checkpoints.saved_run_ids(store))[0]
    info, variables = checkpoints.read_checkpoint(checkpoints.checkpoint_dir(store, run_id))
    real_save = checkpoints._orbax_save

    def crash_after_writing(path: Path, tree: object) -> None:
        real_save(path, tree)  # every array is on disk, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "_orbax_save", crash_after_writing)
    doubled = {"params": {k: v for k, v in variables["params"].items()}}
    with pytest.raises(OSError, match="disk full"):  # over an existing checkpoint
        checkpoints.save_checkpoint(checkpoints.checkpoint_dir(store, run_id), doubled, info)
    with pytest.raises(OSError, match="disk full"):  # a new one
        checkpoints.save_checkpoint(checkpoints.checkpoint_dir(store, "newrun"), doubled, info)
    monkeypatch.undo()
    names = sorted(p.name for p in (store / "params").iterdir())
    assert names == sorted(checkpoints.saved_run_ids(all_store))  # no temporary, no "newrun"
    _, again = checkpoints.read_checkpoint(checkpoints.checkpoint_dir(store, run_id))
    assert _same(again, variables)  # the old checkpoint is whole


def test_a_killed_writers_temporary_directory_is_removed(tmp_path: Path) -> None:
    """What a SIGKILLed writer left (its pid is gone) is debris; a live writer's is not."""
    params = tmp_path / "params"
    dead = params / f".abc.{2**22 + 7}@{os.uname().nodename}.q1w2.tmp"
    live = params / f".def.{os.getpid()}@{os.uname().nodename}.q1w2.tmp"
    for folder in (dead, live):
        (folder / "variables").mkdir(parents=True)
    assert checkpoints.remove_debris(tmp_path) == [dead]
    assert live.exists() and not dead.exists()


def _same(a: dict, b: dict) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


USER_MODEL = """
import flax.linen as nn

class NormedMLP(nn.Module):
    '''A user's MLP with batch norm: its checkpoint holds batch_stats too.'''
    width: int
    num_outputs: int = 10

    @nn.compact
    def __call__(self, x, train=False, scale=1.0):
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(self.width)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(self.num_outputs)(nn.relu(x) * scale)
"""

USER_SWEEP = """\
# Does a user's batch-normed MLP keep its parameters?
# Run: sweepbook run sweeps/user.toml
experiment = "user"
seeds = [0]

[report]
title = "user model"
"""


def test_a_users_model_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "code").mkdir(parents=True)
    (root / "code" / "net.py").write_text(USER_MODEL)
    experiment = TINY_EXPERIMENT.replace(
        'kind = "mlp"\nwidths = [32]\nactivation = "relu"',
        'kind = "../code/net.py:NormedMLP"\n\n[model.args]\nwidth = 16\n\n'
        "[model.traced]\nscale = 0.5",
    )
    write_project(root, {"user": USER_SWEEP})
    (root / "experiments" / "user.toml").write_text(experiment)
    out = root / "reports" / "user"
    run_sweep(root / "sweeps" / "user.toml", out, save_params="all", report=False)
    row = Store(out).read_runs().row(0, named=True)
    assert row["status"] == "ok"

    loaded = sweepbook.load_run(out, row["run_id"])
    assert type(loaded.model).__name__ == "NormedMLP"
    assert set(loaded.variables) == {"params", "batch_stats"}
    split = load_split(loaded.config.data)
    predicted = np.asarray(loaded.predict(split.x_test)).argmax(axis=1)
    assert accuracy_score(split.y_test, predicted) == pytest.approx(row["test.accuracy"], abs=1e-6)
    # The plain Flax call, as the user would write it, gives the same outputs.
    direct = loaded.model.apply(loaded.variables, split.x_test, train=False, scale=0.5)
    np.testing.assert_allclose(direct, loaded.predict(split.x_test), rtol=1e-6)


def test_verify_compares_saved_parameters(all_store: Path, tmp_path: Path, capsys) -> None:
    store = tmp_path / "store"
    shutil.copytree(all_store, store)
    assert main(["verify", str(store), "--runs", "1", "--no-report"]) == EXIT_OK
    record = json.loads((store / "verification.json").read_text())
    assert record["runs"][0]["params_compared"] is True
    # Saved parameters that differ in one weight (a whole, valid checkpoint) are caught.
    run_id = record["runs"][0]["run_id"]
    path = checkpoints.checkpoint_dir(store, run_id)
    info, variables = checkpoints.read_checkpoint(path)
    layer = sorted(variables["params"])[0]
    variables["params"][layer]["bias"] = variables["params"][layer]["bias"].copy()
    variables["params"][layer]["bias"][0] += 1e-6
    checkpoints.save_checkpoint(path, variables, info)
    assert main(["verify", str(store), "--runs", "1", "--no-report"]) == EXIT_FAILURE
    assert f"params params/{layer}/bias: saved and retrained variables differ" in (
        capsys.readouterr().err.replace("\n", "")
    )
