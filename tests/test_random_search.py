"""``[random]`` search axes and ``folds`` replicates: loading, sampling and expansion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_EXPERIMENT
from sweepbook.config import ConfigError, load_sweep
from sweepbook.plan import expand, sample_random

LR = '"optimizer.learning_rate"'

RANDOM = """\
seeds = [0]
[random]
samples = 40
seed = 11
"optimizer.learning_rate" = { loguniform = [1e-4, 1e-1] }
"optimizer.b1" = { uniform = [0.8, 0.95] }
"train.batch_size" = { int = [16, 20] }
"model.activation" = { choice = ["relu", "tanh", "gelu"] }
"""


def write_sweep(root: Path, body: str, experiment: str = TINY_EXPERIMENT) -> Path:
    """Write experiments/x.toml and sweeps/y.toml (naming experiment x); return the sweep."""
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    (root / "sweeps").mkdir(exist_ok=True)
    (root / "experiments" / "x.toml").write_text(experiment)
    path = root / "sweeps" / "y.toml"
    path.write_text(f'experiment = "x"\n{body}')
    return path


def points(root: Path, body: str) -> list[dict]:
    sweep = load_sweep(write_sweep(root, body))
    assert sweep.random is not None
    return sample_random(sweep.random)


def test_random_search_draws_samples_within_each_distribution(tmp_path):
    drawn = points(tmp_path, RANDOM)
    assert len(drawn) == 40
    rates = [p["optimizer.learning_rate"] for p in drawn]
    b1s = [p["optimizer.b1"] for p in drawn]
    sizes = [p["train.batch_size"] for p in drawn]
    assert all(isinstance(r, float) and 1e-4 <= r <= 1e-1 for r in rates)
    assert all(isinstance(b, float) and 0.8 <= b <= 0.95 for b in b1s)
    assert all(type(s) is int and 16 <= s <= 20 for s in sizes)
    assert {16, 20} <= set(sizes)  # both ends are included
    assert {p["model.activation"] for p in drawn} == {"relu", "tanh", "gelu"}


def test_expanded_runs_carry_the_sampled_values(tmp_path):
    path = write_sweep(tmp_path, RANDOM)
    sweep = load_sweep(path)
    runs = expand(sweep)
    assert len(runs) == 40
    drawn = sample_random(sweep.random)
    expected = sorted((p["optimizer.learning_rate"], p["train.batch_size"]) for p in drawn)
    got = sorted((r.config.optimizer.learning_rate, r.config.train.batch_size) for r in runs)
    assert got == expected


def test_loguniform_spreads_draws_evenly_over_decades(tmp_path):
    body = f"seeds = [0]\n[random]\nsamples = 300\n{LR} = {{ loguniform = [1e-4, 1e-1] }}\n"
    rates = np.array([p["optimizer.learning_rate"] for p in points(tmp_path, body)])
    counts = np.histogram(np.log10(rates), bins=[-4, -3, -2, -1])[0]
    # 100 expected per decade, binomial sd ≈ 8; a uniform draw would put ~90% in the top one.
    assert counts.sum() == 300
    assert all(70 <= c <= 130 for c in counts), counts


def test_same_file_gives_same_points_and_another_seed_other_points(tmp_path):
    first = points(tmp_path / "a", RANDOM)
    again = points(tmp_path / "a", RANDOM)
    reseeded = points(tmp_path / "b", RANDOM.replace("seed = 11", "seed = 12"))
    assert first == again
    assert first != reseeded
    assert {p["optimizer.learning_rate"] for p in first}.isdisjoint(
        p["optimizer.learning_rate"] for p in reseeded
    )


def test_default_sampling_seed_is_deterministic(tmp_path):
    body = RANDOM.replace("seed = 11\n", "")
    assert points(tmp_path / "a", body) == points(tmp_path / "b", body)


def test_random_times_grid_times_seeds(tmp_path):
    body = (
        'seeds = [0, 1]\n[grid]\n"train.batch_size" = [16, 32, 64]\n'
        '[random]\nsamples = 4\n"optimizer.learning_rate" = { loguniform = [1e-4, 1e-1] }\n'
    )
    sweep = load_sweep(write_sweep(tmp_path, body))
    runs = expand(sweep)
    assert len(runs) == 4 * 3 * 2
    assert len({r.config.optimizer.learning_rate for r in runs}) == 4
    assert sweep.axes == ["train.batch_size", "optimizer.learning_rate"]


def test_random_keys_are_swept_axes(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, RANDOM))
    assert sweep.axes == [
        "optimizer.learning_rate",
        "optimizer.b1",
        "train.batch_size",
        "model.activation",
    ]


LR_KEY = "random.optimizer.learning_rate"
BATCH = 'samples = 3\n"train.batch_size"'


@pytest.mark.parametrize(
    ("random", "key"),
    [
        pytest.param(f"{LR} = {{ uniform = [0.1, 0.2] }}\n", "random.samples", id="no-samples"),
        pytest.param(f"samples = 0\n{LR} = {{ uniform = [0.1, 0.2] }}\n", "random.samples", id="0"),
        pytest.param(
            f"samples = -3\n{LR} = {{ uniform = [0.1, 0.2] }}\n", "random.samples", id="<0"
        ),
        pytest.param(
            f"samples = 2.5\n{LR} = {{ uniform = [0.1, 0.2] }}\n", "random.samples", id="float"
        ),
        pytest.param(
            f"samples = 3\nseed = -1\n{LR} = {{ uniform = [0.1, 0.2] }}\n", "random.seed", id="seed"
        ),
        pytest.param("samples = 3\n", "random", id="no-axis"),
        pytest.param(
            f"samples = 3\n{LR} = {{ normal = [0.0, 1.0] }}\n",
            LR_KEY,
            id="unknown-distribution",
        ),
        pytest.param(f"samples = 3\n{LR} = [0.1, 0.2]\n", LR_KEY, id="bare-list"),
        pytest.param(f"samples = 3\n{LR} = {{ uniform = [0.2, 0.1] }}\n", LR_KEY, id="lo>hi"),
        pytest.param(f"samples = 3\n{LR} = {{ uniform = [0.1, 0.1] }}\n", LR_KEY, id="lo=hi"),
        pytest.param(f"samples = 3\n{LR} = {{ uniform = [0.1] }}\n", LR_KEY, id="one-bound"),
        pytest.param(
            f"samples = 3\n{LR} = {{ uniform = [0.1, 0.2, 0.3] }}\n", LR_KEY, id="three-bounds"
        ),
        pytest.param(f'samples = 3\n{LR} = {{ uniform = ["a", "b"] }}\n', LR_KEY, id="text"),
        pytest.param(f"samples = 3\n{LR} = {{ loguniform = [0.0, 0.1] }}\n", LR_KEY, id="log-0"),
        pytest.param(f"samples = 3\n{LR} = {{ loguniform = [-1.0, 0.1] }}\n", LR_KEY, id="log<0"),
        pytest.param(f"samples = 3\n{LR} = {{ choice = [] }}\n", LR_KEY, id="no-choice"),
        pytest.param(f"{BATCH} = {{ int = [16.0, 64.0] }}\n", "random.train.batch_size", id="int"),
        pytest.param(f"{BATCH} = {{ int = [16, 64.5] }}\n", "random.train.batch_size", id="int-hi"),
        pytest.param(
            'samples = 3\n"optimizer.lr" = { uniform = [0.1, 0.2] }\n',
            "random.optimizer.lr",
            id="unknown-key",
        ),
    ],
)
def test_bad_random_table_is_a_config_error_naming_the_key(tmp_path, random, key):
    with pytest.raises(ConfigError) as caught:
        load_sweep(write_sweep(tmp_path, f"seeds = [0]\n[random]\n{random}"))
    assert caught.value.key == key


@pytest.mark.parametrize("section", ["grid", "set"])
def test_key_both_fixed_or_gridded_and_random_is_a_config_error(tmp_path, section):
    value = "[1e-3, 1e-2]" if section == "grid" else "1e-3"
    body = (
        f"seeds = [0]\n[{section}]\n{LR} = {value}\n"
        f"[random]\nsamples = 3\n{LR} = {{ loguniform = [1e-4, 1e-1] }}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_sweep(write_sweep(tmp_path, body))
    assert caught.value.key == "optimizer.learning_rate"


# --- folds ---------------------------------------------------------------------------------

KFOLD = '[set]\n"data.split" = "stratified_kfold"\n"data.folds" = 3\n'


def plan(root: Path, body: str):
    return expand(load_sweep(write_sweep(root, body)))


def test_all_folds_replicate_every_seed(tmp_path):
    runs = plan(tmp_path, f'seeds = [0, 1]\nfolds = "all"\n{KFOLD}')
    assert sorted((r.config.seed, r.config.data.fold) for r in runs) == [
        (seed, fold) for seed in (0, 1) for fold in range(3)
    ]
    assert {r.config.data.split for r in runs} == {"stratified_kfold"}
    assert {r.config.data.folds for r in runs} == {3}


def test_listed_folds_only(tmp_path):
    runs = plan(tmp_path, f"seeds = [0, 1, 2]\nfolds = [0, 2]\n{KFOLD}")
    assert len(runs) == 6
    assert {r.config.data.fold for r in runs} == {0, 2}


def test_folds_follow_a_swept_fold_count(tmp_path):
    body = (
        'seeds = [0]\nfolds = "all"\n[set]\n"data.split" = "kfold"\n[grid]\n"data.folds" = [2, 4]\n'
    )
    runs = plan(tmp_path, body)
    assert sorted((r.config.data.folds, r.config.data.fold) for r in runs) == [
        (2, 0),
        (2, 1),
        (4, 0),
        (4, 1),
        (4, 2),
        (4, 3),
    ]


def test_folds_replicate_only_the_kfold_variants(tmp_path):
    body = (
        'seeds = [0, 1]\nfolds = "all"\n'
        '[[variant]]\nname = "holdout"\n'
        '[[variant]]\nname = "kfold"\n"data.split" = "stratified_kfold"\n"data.folds" = 3\n'
    )
    runs = plan(tmp_path, body)
    by_variant = {name: [r for r in runs if r.variant == name] for name in ("holdout", "kfold")}
    assert len(by_variant["holdout"]) == 2
    assert {r.config.data.fold for r in by_variant["holdout"]} == {0}
    assert len(by_variant["kfold"]) == 2 * 3


def test_kfold_experiment_without_val_fraction(tmp_path):
    experiment = TINY_EXPERIMENT.replace("val_fraction = 0.2\n", 'split = "kfold"\nfolds = 4\n')
    runs = expand(load_sweep(write_sweep(tmp_path, 'seeds = [5]\nfolds = "all"\n', experiment)))
    assert sorted(r.config.data.fold for r in runs) == [0, 1, 2, 3]
    assert all(r.config.data.val_fraction is None for r in runs)


@pytest.mark.parametrize(
    "body",
    [
        'seeds = [0]\nfolds = "all"\n',
        "seeds = [0]\nfolds = [0, 1]\n",
        f"seeds = [0]\nfolds = [0, 3]\n{KFOLD}",
        f"seeds = [0]\nfolds = [5]\n{KFOLD}",
        f"seeds = [0]\nfolds = []\n{KFOLD}",
    ],
    ids=["all-without-kfold", "list-without-kfold", "fold-equals-K", "fold-above-K", "empty"],
)
def test_bad_folds_are_a_config_error_on_folds(tmp_path, body):
    with pytest.raises(ConfigError) as caught:
        plan(tmp_path, body)
    assert caught.value.key == "folds"


def test_folds_and_a_set_data_fold_clash(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_sweep(write_sweep(tmp_path, f'seeds = [0]\nfolds = "all"\n{KFOLD}"data.fold" = 1\n'))
    assert caught.value.key == "data.fold"
