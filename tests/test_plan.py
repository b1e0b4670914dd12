"""Expanding sweeps into runs: counts, override order, run ids and compile groups."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY_EXPERIMENT
from sweepbook.config import ConfigError, RunConfig, flatten, load_sweep, unflatten
from sweepbook.plan import ADDED_KEYS, expand, identity_flat, run_id
from sweepbook.train import static_spec

EXPERIMENT = TINY_EXPERIMENT


def write_sweep(root: Path, body: str, name: str = "y") -> Path:
    """Write experiments/x.toml and sweeps/<name>.toml (naming experiment x); return its path."""
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    (root / "sweeps").mkdir(exist_ok=True)
    (root / "experiments" / "x.toml").write_text(EXPERIMENT)
    path = root / "sweeps" / f"{name}.toml"
    path.write_text(f'experiment = "x"\n{body}')
    return path


def plan(root: Path, body: str, name: str = "y"):
    return expand(load_sweep(write_sweep(root, body, name)))


def run_config(overrides: dict[str, Any] | None = None, seed: int = 0) -> RunConfig:
    flat = flatten(tomllib.loads(EXPERIMENT))
    flat.update({"seed": seed, **(overrides or {})})
    return RunConfig.model_validate(unflatten(flat))


@pytest.mark.parametrize(
    ("body", "count"),
    [
        ("seeds = [0, 1, 2]\n", 3),
        ('seeds = [0, 1]\n[grid]\n"train.batch_size" = [16, 32, 64]\n', 6),
        (
            'seeds = [0, 1]\n[grid]\n"train.batch_size" = [16, 32, 64]\n'
            '"optimizer.learning_rate" = [1e-3, 1e-2]\n',
            12,
        ),
        (
            'seeds = [0]\n[zip]\n"optimizer.b1" = [0.8, 0.9, 0.95]\n'
            '"optimizer.b2" = [0.9, 0.99, 0.999]\n',
            3,
        ),
        (
            'seeds = [0, 1]\n[zip]\n"optimizer.b1" = [0.8, 0.9]\n"optimizer.b2" = [0.9, 0.99]\n'
            '[grid]\n"train.batch_size" = [16, 32, 64]\n',
            12,
        ),
        (
            'seeds = [0, 1, 2]\n[grid]\n"train.epochs" = [1, 2]\n'
            '[[variant]]\nname = "a"\n"model.dropout" = 0.1\n'
            '[[variant]]\nname = "b"\n"model.dropout" = 0.2\n',
            12,
        ),
        (
            'seeds = [0, 1]\n[zip]\n"optimizer.b1" = [0.8, 0.9]\n"optimizer.b2" = [0.9, 0.99]\n'
            '[grid]\n"train.batch_size" = [16, 32]\n"train.epochs" = [1, 2]\n'
            '[[variant]]\nname = "a"\n"model.dropout" = 0.1\n'
            '[[variant]]\nname = "b"\n"model.dropout" = 0.2\n',
            2 * 2 * 2 * 2 * 2,
        ),
    ],
    ids=["seeds", "grid", "grid2", "zip", "zip_grid", "variants_grid", "all"],
)
def test_expand_count_is_grid_times_zip_times_variants_times_seeds(tmp_path, body, count):
    runs = plan(tmp_path, body)

    assert len(runs) == count
    assert len({run.run_id for run in runs}) == count


def test_grid_is_the_full_cartesian_product_with_every_seed(tmp_path):
    runs = plan(
        tmp_path,
        'seeds = [3, 7]\n[grid]\n"train.batch_size" = [16, 32]\n'
        '"optimizer.learning_rate" = [1e-3, 1e-2, 1e-1]\n',
    )

    points = {
        (r.config.train.batch_size, r.config.optimizer.learning_rate, r.config.seed) for r in runs
    }
    assert points == set(itertools.product([16, 32], [1e-3, 1e-2, 1e-1], [3, 7]))


def test_zip_axes_move_together(tmp_path):
    runs = plan(
        tmp_path,
        'seeds = [0]\n[zip]\n"optimizer.b1" = [0.8, 0.95]\n"train.batch_size" = [16, 64]\n',
    )

    assert {(r.config.optimizer.b1, r.config.train.batch_size) for r in runs} == {
        (0.8, 16),
        (0.95, 64),
    }


def test_overrides_apply_set_then_variant_then_axes(tmp_path):
    runs = plan(
        tmp_path,
        'seeds = [0]\n[set]\n"optimizer.learning_rate" = 0.1\n"train.epochs" = 3\n'
        '[grid]\n"train.batch_size" = [16]\n'
        '[[variant]]\nname = "v"\n"optimizer.learning_rate" = 0.2\n"train.batch_size" = 8\n'
        '[[variant]]\nname = "plain"\n"model.dropout" = 0.5\n',
    )
    by_variant = {run.variant: run.config for run in runs}

    assert by_variant["v"].optimizer.learning_rate == 0.2  # variant beats [set]
    assert by_variant["v"].train.batch_size == 16  # axis beats variant
    assert by_variant["v"].train.epochs == 3  # [set] beats experiment
    assert by_variant["v"].model.dropout == 0.0  # experiment default kept
    assert by_variant["plain"].optimizer.learning_rate == 0.1  # [set] where variant is silent
    assert by_variant["plain"].model.dropout == 0.5
    assert by_variant["plain"].train.batch_size == 16


def test_runs_without_variants_have_no_variant_name(tmp_path):
    runs = plan(tmp_path, "seeds = [0, 1]\n")

    assert [run.variant for run in runs] == [None, None]
    assert [run.config.seed for run in runs] == [0, 1]


def test_run_id_is_a_short_hex_hash():
    assert re.fullmatch(r"[0-9a-f]{12}", run_id(run_config()))


def test_run_id_is_the_same_for_the_same_config():
    assert run_id(run_config({"optimizer.learning_rate": 0.05})) == run_id(
        run_config({"optimizer.learning_rate": 0.05})
    )


def test_run_id_is_the_same_across_differently_written_sweeps(tmp_path):
    first = plan(
        tmp_path / "a",
        'seeds = [1, 2]\n[set]\n"optimizer.learning_rate" = 0.01\n'
        '[grid]\n"train.batch_size" = [32]\n',
        name="first",
    )
    second = plan(
        tmp_path / "b",
        'seeds = [2, 1]\n[set]\n"train.batch_size" = 32\n'
        '[grid]\n"optimizer.learning_rate" = [1e-2]\n',
        name="second",
    )

    assert {run.run_id for run in first} == {run.run_id for run in second}
    assert len(first) == 2


def test_run_id_ignores_the_description():
    plain = run_config()
    described = plain.model_copy(update={"description": "something else entirely"})

    assert run_id(plain) == run_id(described)


@pytest.mark.parametrize(
    ("overrides", "seed"),
    [
        ({}, 1),
        ({"optimizer.learning_rate": 0.02}, 0),
        ({"optimizer.b1": 0.8}, 0),
        ({"train.batch_size": 64}, 0),
        ({"train.epochs": 5}, 0),
        ({"model.widths": [64]}, 0),
        ({"model.activation": "tanh"}, 0),
        ({"data.split_seed": 1}, 0),
        ({"train.early_stopping.restore_best": False}, 0),
    ],
)
def test_run_id_changes_when_any_value_or_the_seed_changes(overrides, seed):
    assert run_id(run_config(overrides, seed=seed)) != run_id(run_config())


def test_duplicate_runs_are_collapsed(tmp_path):
    runs = plan(
        tmp_path,
        'seeds = [0, 1]\n[grid]\n"optimizer.learning_rate" = [0.01, 0.01, 0.02]\n',
    )

    assert len(runs) == 4
    assert len({run.run_id for run in runs}) == 4


def test_a_run_shared_by_two_variants_is_refused(tmp_path):
    """One stored row cannot count for two variants, so identical variants are an error."""
    with pytest.raises(ConfigError, match=r"key 'variant\[1\]'.*'same_as_base'.*'first'"):
        plan(
            tmp_path,
            'seeds = [0, 1]\n[grid]\n"optimizer.learning_rate" = [0.01, 0.02]\n'
            '[[variant]]\nname = "first"\n'
            '[[variant]]\nname = "same_as_base"\n"train.epochs" = 4\n',
        )


@pytest.mark.parametrize(
    ("overrides", "seed"),
    [
        ({"optimizer.learning_rate": 0.3}, 0),
        ({}, 5),
        ({"optimizer.learning_rate": 1e-4, "optimizer.b1": 0.5, "model.dropout": 0.3}, 9),
    ],
)
def test_compile_group_is_shared_by_runs_differing_only_in_traced_keys(overrides, seed):
    assert static_spec(run_config(overrides, seed=seed)) == static_spec(run_config())


@pytest.mark.parametrize(
    "overrides",
    [
        {"train.batch_size": 64},
        {"model.widths": [64]},
        {"train.epochs": 5},
        {"optimizer.name": "sgd"},
    ],
)
def test_compile_group_differs_when_a_static_key_differs(overrides):
    assert static_spec(run_config(overrides)) != static_spec(run_config())


def test_planned_run_exposes_flat_config(tmp_path):
    (run,) = plan(tmp_path, "seeds = [4]\n")

    assert run.flat["seed"] == 4
    assert run.flat["train.batch_size"] == 128
    assert "description" not in run.flat
    assert run.run_id == run_id(run.config)


def test_keys_added_later_keep_old_ids_at_their_old_value_and_change_them_otherwise(
    make_run_config,
):
    """Stored runs keep their ids when sweepbook learns a new key; a run that sets the key to
    something new is another run."""

    base = make_run_config()
    assert not set(ADDED_KEYS) & set(identity_flat(base))
    assert run_id(make_run_config({"data.scale": "auto"})) == run_id(base)
    assert run_id(make_run_config({"data.scale": 255.0})) != run_id(base)
    assert run_id(make_run_config({"optimizer.weight_decay_mask": "weights"})) != run_id(base)
