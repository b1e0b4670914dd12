"""Successive halving: the rung schedule and choice (pure), its sweep-file errors, and a real
halving sweep whose survivors are bit for bit the runs trained straight through."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import polars as pl
import pytest

from conftest import write_project
from sweepbook.api import run_sweep
from sweepbook.config import ConfigError, load_sweep
from sweepbook.halving import (
    RUNGS_FILE,
    STATES_DIR,
    STOPPED,
    choose_survivors,
    configuration_key,
    run_epochs_saved,
    rung_epochs,
    survivors_count,
)
from sweepbook.report import check_report, render_report
from sweepbook.verify import verify_runs

# 3 learning rates x 2 batch sizes x 2 seeds, 6 epochs; rungs end at epochs 1, 2, 4, 6.
HALVING_SWEEP = """\
# Which learning rate, found by halving?
# Run: sweepbook run sweeps/halved.toml
experiment = "tiny"
seeds = [0, 1]

[set]
"train.epochs" = 6
"train.early_stopping.patience" = 6

[grid]
"optimizer.learning_rate" = [1e-4, 3e-3, 3e-2]
"train.batch_size" = [64, 128]

[halving]
min_epochs = 1
eta = 2
"""
STRAIGHT_SWEEP = HALVING_SWEEP.replace("[halving]\nmin_epochs = 1\neta = 2\n", "")


@pytest.mark.parametrize(
    ("min_epochs", "eta", "epochs", "ends"),
    [
        (1, 3, 10, [1, 3, 9, 10]),
        (1, 3, 9, [1, 3, 9]),
        (4, 3, 40, [4, 12, 36, 40]),
        (2, 2, 5, [2, 4, 5]),
    ],
)
def test_rungs_multiply_by_eta_up_to_the_epochs(
    min_epochs: int, eta: int, epochs: int, ends: list[int]
) -> None:
    assert rung_epochs(min_epochs, eta, epochs) == ends


def test_survivors_are_ranked_by_the_mean_over_seeds_not_the_best_seed() -> None:
    # "lucky" has the best single run, "steady" the best mean.
    values = {"l0": 0.99, "l1": 0.50, "s0": 0.80, "s1": 0.80, "w0": 0.60, "w1": 0.61}
    configuration_of = {"l0": "lucky", "l1": "lucky", "s0": "steady", "s1": "steady"}
    configuration_of |= {"w0": "weak", "w1": "weak"}
    assert choose_survivors(values, configuration_of, eta=3, direction="max") == {"steady"}
    assert choose_survivors(values, configuration_of, eta=3, direction="min") == {"weak"}


def test_a_diverged_configuration_ranks_last_and_ties_break_by_key() -> None:
    values = {"a": math.nan, "b": 0.5, "c": 0.5, "d": 0.1}
    same = {run: run for run in values}
    assert choose_survivors(values, same, eta=2, direction="max") == {"b", "c"}
    assert choose_survivors(values, same, eta=3, direction="max") == {"b"}  # b < c
    assert choose_survivors(values, same, eta=2, direction="min") == {"d", "b"}
    assert survivors_count(2, 3) == 1 and survivors_count(36, 3) == 12


def test_a_configuration_is_the_config_without_seed_and_fold() -> None:
    one = {"seed": 0, "data.fold": 1, "optimizer.learning_rate": 0.1}
    other = {"seed": 5, "data.fold": 0, "optimizer.learning_rate": 0.1}
    assert configuration_key(one) == configuration_key(other)
    assert configuration_key(one) != configuration_key({**one, "optimizer.learning_rate": 0.2})


def test_run_epochs_count_each_runs_budget() -> None:
    assert run_epochs_saved([0, 0, 1, 2], [1, 3, 9]) == (1 + 1 + 3 + 9, 4 * 9)


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("[halving]\nmin_epochs = 0\n", "halving.min_epochs", "greater than or equal to 1"),
        ("[halving]\nmin_epochs = 1\neta = 1\n", "halving.eta", "greater than or equal to 2"),
        ("[halving]\nmin_epochs = 1\nmetric = 'test.accuracy'\n", "halving.metric", "validation"),
        ("[halving]\nmin_epochs = 1\nrungs = 3\n", "halving.rungs", "unknown key"),
    ],
)
def test_bad_halving_tables_are_one_line_errors(
    tmp_path: Path, extra: str, key: str, words: str
) -> None:
    sweep = STRAIGHT_SWEEP + "\n" + extra
    project = write_project(tmp_path, {"bad": sweep})
    with pytest.raises(ConfigError) as caught:
        load_sweep(project / "sweeps" / "bad.toml")
    message = str(caught.value)
    assert "bad.toml" in message and key in message and words in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("sweep", "key", "words"),
    [
        (
            HALVING_SWEEP.replace('"train.epochs" = 6', '"train.epochs" = 1'),
            "halving.min_epochs",
            "below train.epochs",
        ),
        (
            HALVING_SWEEP.replace('"train.epochs" = 6\n', "").replace(
                '"train.batch_size" = [64, 128]', '"train.epochs" = [4, 6]'
            ),
            "halving",
            "same train.epochs",
        ),
    ],
)
def test_halving_needs_epochs_to_halve(tmp_path: Path, sweep: str, key: str, words: str) -> None:
    project = write_project(tmp_path, {"bad": sweep})
    with pytest.raises(ConfigError) as caught:
        run_sweep(project / "sweeps" / "bad.toml", project / "out", report=False)
    assert f"key '{key}'" in str(caught.value) and words in str(caught.value)
    assert not (project / "out").exists()


def test_halving_refuses_a_launcher(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"halved": HALVING_SWEEP})
    with pytest.raises(ConfigError, match=r"halving.*drop --launcher"):
        run_sweep(project / "sweeps" / "halved.toml", project / "out", launcher="local")


@pytest.fixture(scope="module")
def halved_and_straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    project = write_project(
        tmp_path_factory.mktemp("halving"), {"halved": HALVING_SWEEP, "straight": STRAIGHT_SWEEP}
    )
    run_sweep(project / "sweeps" / "halved.toml", project / "halved", save_params="none")
    # Straight through in the halving's chunk size: one configuration's two seeds. A run's
    # bits are those of its lane count, and verify replays it in the size it records.
    run_sweep(
        project / "sweeps" / "straight.toml",
        project / "straight",
        save_params="none",
        runs_per_chunk=2,
    )
    return project / "halved", project / "straight"


def test_survivors_are_bit_identical_to_runs_trained_straight_through(
    halved_and_straight: tuple[Path, Path],
) -> None:
    halved, straight = halved_and_straight
    runs = pl.read_parquet(halved / "runs.parquet")
    full = pl.read_parquet(straight / "runs.parquet")
    finished = runs.filter(pl.col("status") == "ok")
    assert finished.height == 2  # 6 configurations -> 3 -> 1 (two seeds) after three rungs
    assert finished["rung"].to_list() == [3, 3]
    # Every run trained in chunks of one configuration's seeds: no rung had a padded lane.
    assert set(runs["chunk_size"]) == set(full["chunk_size"]) == {2}
    assert set(pl.read_parquet(halved / RUNGS_FILE)["chunk_size"]) == {2}
    metrics = [c for c in full.columns if c.startswith(("test.", "val.", "train."))]
    metrics += ["best_epoch", "epochs_run", "params", "model_bytes"]
    for run_id in finished["run_id"]:
        mine = finished.filter(pl.col("run_id") == run_id).select(metrics).row(0)
        theirs = full.filter(pl.col("run_id") == run_id).select(metrics).row(0)
        assert mine == theirs, run_id
    history = pl.read_parquet(halved / "history.parquet")
    full_history = pl.read_parquet(straight / "history.parquet")
    for run_id in finished["run_id"]:
        mine = history.filter(pl.col("run_id") == run_id).sort("epoch")
        theirs = full_history.filter(pl.col("run_id") == run_id).sort("epoch")
        assert mine.equals(theirs)
    # verify replays the survivors straight through, in the chunk size they record.
    copy = halved.parent / "halved-verified"
    shutil.copytree(halved, copy)
    record = verify_runs(copy, 2)
    assert (record["checked"], record["reproduced"]) == (2, 2)


def test_stopped_runs_keep_their_rung_and_the_choice_follows_the_mean(
    halved_and_straight: tuple[Path, Path],
) -> None:
    halved, _ = halved_and_straight
    runs = pl.read_parquet(halved / "runs.parquet")
    assert runs.height == 12
    stopped = runs.filter(pl.col("status") == STOPPED)
    assert sorted(stopped["rung"].to_list()) == [0] * 6 + [1] * 4
    history = pl.read_parquet(halved / "history.parquet")
    epochs = history.group_by("run_id").agg(pl.col("epoch").max())  # 1-based
    trained = dict(zip(epochs["run_id"], epochs["epoch"], strict=True))
    ends = [1, 2, 4, 6]
    for row in runs.iter_rows(named=True):  # a stopped run trained its rung's epochs, no more
        assert trained[row["run_id"]] == ends[row["rung"]]
    ledger = pl.read_parquet(halved / RUNGS_FILE)
    assert ledger.group_by("rung").len().sort("rung")["len"].to_list() == [12, 6, 2, 2]
    # Rung 0's survivors are the 3 best configurations by mean val.accuracy over both seeds.
    first = ledger.filter(pl.col("rung") == 0).join(runs.select("run_id", "config"), on="run_id")
    means = (
        first.join(
            runs.select("run_id", "optimizer.learning_rate", "train.batch_size"), on="run_id"
        )
        .group_by("optimizer.learning_rate", "train.batch_size")
        .agg(pl.col("value").mean())
        .sort("value", descending=True)
    )
    went_on = set(ledger.filter(pl.col("rung") == 1)["run_id"])
    going = runs.filter(pl.col("run_id").is_in(went_on))
    assert set(
        zip(going["optimizer.learning_rate"], going["train.batch_size"], strict=True)
    ) == set(zip(means["optimizer.learning_rate"][:3], means["train.batch_size"][:3], strict=True))
    assert not (halved / STATES_DIR).exists()  # every state became a stored row


def test_a_second_run_of_a_finished_halving_trains_nothing(
    halved_and_straight: tuple[Path, Path],
) -> None:
    halved, _ = halved_and_straight
    sweep = halved.parent / "sweeps" / "halved.toml"
    summary = run_sweep(sweep, halved, report=False, save_params="none")
    assert summary.trained == 0 and summary.compilations == 0
    assert summary.run_epochs == 6 * 1 + 4 * 2 + 2 * 6  # each run's budget: its last rung's end
    assert summary.full_run_epochs == 12 * 6


def test_the_report_shows_rungs_and_lists_stopped_runs_apart(
    halved_and_straight: tuple[Path, Path],
) -> None:
    halved, _ = halved_and_straight
    page = render_report(halved).read_text(encoding="utf-8")
    assert "12 runs planned: 2 ok, 10 stopped at a rung" in page
    halving = page[
        page.index('<section id="halving">') : page.index(
            "</section>", page.index('<section id="halving">')
        )
    ]
    # each run's budget is its last rung's end: 6 runs x 1 epoch, 4 x 2, 2 x 6 (of 12 x 6)
    assert "26 run-epochs of a full grid&#39;s 72" in halving
    assert halving.count("<tr") == 1 + 4 + 1 + 5  # rung table, stopped table (5 configurations)
    assert 'id="problems"' not in page  # stopped runs are not failures
    assert "successive halving</th>" in page  # the provenance row
    results = page[page.index('<section id="results">') : page.index('<section id="halving">')]
    assert results.count('<tr class="best"') == 1 and results.count("<tr") == 2  # the survivor
    record = json.loads((halved / "report.json").read_text())
    assert record["findings"]["problems"] == []
    svg = (halved / "figures" / "rungs.svg").read_text(encoding="utf-8")
    assert svg.count("<title>") >= 6 and "mean val.accuracy" in svg  # one per configuration
    assert check_report(halved)


def test_a_halving_report_changes_with_its_rung_values(
    halved_and_straight: tuple[Path, Path], tmp_path: Path
) -> None:
    halved, _ = halved_and_straight
    copy = tmp_path / "copy"
    shutil.copytree(halved, copy)
    render_report(copy)
    ledger = pl.read_parquet(copy / RUNGS_FILE)
    ledger.with_columns(pl.col("value") * 0.5).write_parquet(copy / RUNGS_FILE)
    assert not check_report(copy)  # the fingerprint covers rungs.parquet


MIXED_SWEEP = """\
# Which Adam beta and learning rate, with or without dropout, found by halving?
# Run: sweepbook run sweeps/mixed.toml
experiment = "tiny"
seeds = [0, 1]

[set]
"train.epochs" = 2

[zip]
"optimizer.b1" = [0.8, 0.9]
"optimizer.b2" = [0.99, 0.999]

[random]
samples = 2
seed = 3
"optimizer.learning_rate" = { loguniform = [1e-3, 1e-1] }

[[variant]]
name = "plain"

[[variant]]
name = "dropout"
"model.dropout" = 0.2

[halving]
min_epochs = 1
eta = 2
"""


def test_halving_ranks_zip_random_and_variant_points_as_configurations(tmp_path: Path) -> None:
    """2 zip points x 2 random samples x 2 variants = 8 configurations of 2 seeds; 4 go on."""
    project = write_project(tmp_path, {"mixed": MIXED_SWEEP})
    run_sweep(project / "sweeps" / "mixed.toml", project / "out", report=False)
    runs = pl.read_parquet(project / "out" / "runs.parquet")
    assert runs.height == 16
    keys = ["variant", "optimizer.b1", "optimizer.learning_rate"]
    fates = runs.group_by(keys).agg(pl.col("status").unique(), pl.col("seed").n_unique())
    assert fates.height == 8 and set(fates["seed"]) == {2}
    assert all(len(status) == 1 for status in fates["status"])  # seeds share their fate
    assert sorted(s[0] for s in fates["status"]) == ["ok"] * 4 + [STOPPED] * 4
    ledger = pl.read_parquet(project / "out" / RUNGS_FILE).filter(pl.col("rung") == 0)
    means = (
        ledger.join(runs.select("run_id", "status", *keys), on="run_id")
        .group_by(keys)
        .agg(pl.col("value").mean(), pl.col("status").first())
        .sort("value", descending=True)
    )
    assert means["status"].to_list() == ["ok"] * 4 + [STOPPED] * 4


def test_chunks_hold_one_configurations_replicates_or_what_the_ledger_began_with(
    tmp_path: Path,
) -> None:
    """Halving packs chunks by configuration (full at every rung), keeps a size the ledger
    recorded, and goes on in the group's planned size where the ledger predates chunk_size."""
    import jax

    from sweepbook.engine import load_splits
    from sweepbook.plan import expand
    from sweepbook.results import RUNGS_SCHEMA
    from sweepbook.rungs import LEDGER_SCHEMA, _planned_chunks, replicates

    project = write_project(tmp_path, {"halved": HALVING_SWEEP.replace("[0, 1]", "[0, 1, 2]")})
    runs = expand(load_sweep(project / "sweeps" / "halved.toml"))
    splits = load_splits(runs)
    devices = jax.local_devices()

    def chunks(ledger: pl.DataFrame, per_chunk: int = 32) -> set[int]:
        return set(_planned_chunks(runs, splits, devices, per_chunk, 0.25, ledger).values())

    assert replicates(tuple(runs)) == 3  # three seeds of each configuration
    assert chunks(pl.DataFrame(schema=LEDGER_SCHEMA)) == {3}
    assert chunks(pl.DataFrame(schema=LEDGER_SCHEMA), per_chunk=2) == {2}
    began = [(run.run_id, 0, 1, "val.accuracy", 0.5, 3, "dense") for run in runs]
    assert chunks(pl.DataFrame(began, schema=LEDGER_SCHEMA, orient="row")) == {3}
    older = pl.DataFrame([row[:5] for row in began], schema=RUNGS_SCHEMA, orient="row")
    assert chunks(older) == {9}  # 3 learning rates x 3 seeds per batch size


def test_a_resumed_halving_keeps_the_formulation_its_runs_began_in(tmp_path: Path) -> None:
    """A conv net's runs never change formulation between rungs: a halving begun in patches
    (recorded, or implied by a ledger from before the record) goes on in patches on CPU."""
    import jax

    from sweepbook.engine import load_splits
    from sweepbook.models import FAST_CPU_NUMERICS, PATCHES_NUMERICS
    from sweepbook.plan import expand
    from sweepbook.results import RUNGS_SCHEMA
    from sweepbook.rungs import LEDGER_SCHEMA, _planned_numerics

    sweep = HALVING_SWEEP.replace("[set]", '[set]\n"model.kind" = "lenet5"\n"model.widths" = []')
    project = write_project(tmp_path, {"halved": sweep})
    runs = expand(load_sweep(project / "sweeps" / "halved.toml"))
    splits = load_splits(runs)
    devices = jax.local_devices()[:1]
    if devices[0].platform != "cpu":
        pytest.skip("the formulations compared here are the CPU's")

    def numerics(ledger: pl.DataFrame) -> set[str]:
        return set(_planned_numerics(runs, splits, devices, ledger).values())

    assert numerics(pl.DataFrame(schema=LEDGER_SCHEMA)) == {FAST_CPU_NUMERICS.name}
    began = [(r.run_id, 0, 1, "val.accuracy", 0.5, 2, PATCHES_NUMERICS.name) for r in runs]
    assert numerics(pl.DataFrame(began, schema=LEDGER_SCHEMA, orient="row")) == {
        PATCHES_NUMERICS.name
    }
    older = pl.DataFrame([row[:5] for row in began], schema=RUNGS_SCHEMA, orient="row")
    assert numerics(older) == {PATCHES_NUMERICS.name}
