"""The ``repeat`` replicate: the same inputs trained again, as other runs."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sweepbook.cli import EXIT_BAD_INPUT, main
from sweepbook.config import ConfigError, load_sweep
from sweepbook.plan import expand, run_id

REPEAT_SWEEP = """\
# Same seed repeated against different seeds.
experiment = "tiny"
seeds = [0]

[set]
"train.epochs" = 2

[[variant]]
name = "same seed"
repeat = 3

[[variant]]
name = "three seeds"
seeds = [1, 2, 3]

[report]
compare = ["variant"]
"""


def write(project: Path, text: str) -> Path:
    path = project / "sweeps" / "repeat.toml"
    path.write_text(text)
    return path


def test_repeats_are_distinct_runs_of_identical_configs(project):
    plan = expand(load_sweep(write(project, REPEAT_SWEEP)))
    same = [run for run in plan if run.variant == "same seed"]
    seeds = [run for run in plan if run.variant == "three seeds"]
    assert [run.repeat for run in same] == [0, 1, 2]
    assert all(run.config == same[0].config for run in same)  # identical inputs
    assert len({run.run_id for run in same}) == 3  # distinct runs
    # The first repeat is the run any sweep without repeats would train: same id.
    assert same[0].run_id == run_id(same[0].config)
    assert [run.config.seed for run in seeds] == [1, 2, 3]
    assert all(run.repeat == 0 for run in seeds)


def test_sweep_level_repeat_multiplies_every_seed(project):
    text = REPEAT_SWEEP.split("[[variant]]")[0]
    text = text.replace("seeds = [0]", "seeds = [0, 1]\nrepeat = 2")
    plan = expand(load_sweep(write(project, text)))
    assert [(run.config.seed, run.repeat) for run in plan] == [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("seeds = [0]", "seeds = [0]\nrepeat = 0", "repeat"),
        ("repeat = 3", "repeat = 0", "variant[0].repeat"),
        ("repeat = 3", 'repeat = "3"', "variant[0].repeat"),
        ("seeds = [1, 2, 3]", "seeds = [1, 1]", "variant[1].seeds"),
        ("seeds = [1, 2, 3]", "seeds = []", "variant[1].seeds"),
        ("seeds = [1, 2, 3]", "seeds = [-1]", "variant[1].seeds"),
        # Seed 0 of 'three seeds' would be the very run of 'same seed': one row, two variants.
        ("seeds = [1, 2, 3]", "seeds = [0, 1, 2]", "variant[1]"),
    ],
)
def test_bad_repeats_name_the_key(project, old, new, key):
    path = write(project, REPEAT_SWEEP.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        expand(load_sweep(path))
    assert f"'{key}'" in str(caught.value) and str(path) in str(caught.value)


def test_repeated_runs_train_bit_for_bit_alike_and_seeds_do_not(project, capsys):
    path = write(project, REPEAT_SWEEP)
    out = project / "reports" / "repeat"
    assert main(["run", str(path), "--out", str(out)]) == 0
    runs = pl.read_parquet(out / "runs.parquet")
    history = pl.read_parquet(out / "history.parquet")
    same = runs.filter(pl.col("variant") == "same seed").sort("repeat")
    assert same["repeat"].to_list() == [0, 1, 2]
    for column in ("test.accuracy", "test.loss", "val.loss", "train.loss"):
        assert same[column].n_unique() == 1, column  # exactly equal, not merely close
    curves = history.filter(pl.col("run_id").is_in(same["run_id"].to_list()))
    assert curves.group_by("epoch").agg(pl.col("val.loss").n_unique())["val.loss"].max() == 1
    seeds = runs.filter(pl.col("variant") == "three seeds")
    assert seeds["test.loss"].n_unique() == 3
    html = (out / "index.html").read_text()
    assert "same seed: 1 seed × 3 repeats; three seeds: 3 seeds" in html
    assert "0.0000" in html  # the repeated seed's spread


def test_repeat_in_a_search_sweep_is_refused(project):
    text = REPEAT_SWEEP.split("[[variant]]")[0].replace("seeds = [0]", "seeds = [0]\nrepeat = 2")
    text += '[search]\ntrials = 2\n"optimizer.learning_rate" = { loguniform = [1e-3, 1e-1] }\n'
    assert main(["run", str(write(project, text))]) == EXIT_BAD_INPUT
