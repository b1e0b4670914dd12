"""Model-based search (Optuna TPE) in batches, resumable, every run stored like any other."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sweepbook.cli import EXIT_OK, main
from sweepbook.config import ConfigError, Distribution, load_sweep
from sweepbook.search import params_from_point, point_from_params

SEARCH = """\
# Which learning rate and dropout suit the tiny MLP?
experiment = "tiny"
seeds = [0]

[set]
"train.epochs" = 2

[search]
trials = TRIALS
batch = 2
seed = 3

[search.space]
"optimizer.learning_rate" = { loguniform = [1e-4, 1e-1] }
"model.dropout" = { uniform = [0.0, 0.5] }
"""


def _write(project: Path, trials: int) -> Path:
    path = project / "sweeps" / "search.toml"
    path.write_text(SEARCH.replace("TRIALS", str(trials)))
    return path


def _runs(directory: Path) -> pl.DataFrame:
    return pl.read_parquet(directory / "runs.parquet").sort("search.trial")


@pytest.fixture
def searched(project: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> Path:
    monkeypatch.chdir(project)
    _write(project, trials=4)
    assert main(["run", "sweeps/search.toml", "--no-report"]) == EXIT_OK
    capsys.readouterr()
    return project / "reports" / "search"


def test_search_stores_every_trial_within_its_space(searched: Path):
    runs = _runs(searched)
    assert runs["search.trial"].to_list() == [0, 1, 2, 3]
    assert runs["optimizer.learning_rate"].is_between(1e-4, 1e-1).all()
    assert runs["model.dropout"].is_between(0.0, 0.5).all()
    assert runs["run_id"].n_unique() == 4
    assert set(runs["status"]) == {"ok"}


def test_rerunning_a_finished_search_trains_nothing(searched: Path, capsys):
    before = _runs(searched)
    assert main(["run", "sweeps/search.toml", "--no-report"]) == EXIT_OK
    assert "nothing to train" in capsys.readouterr().err
    assert _runs(searched).equals(before)


def test_a_longer_search_resumes_from_the_stored_trials(searched: Path, project: Path, capsys):
    before = _runs(searched)
    _write(project, trials=6)
    assert main(["run", "sweeps/search.toml"]) == EXIT_OK
    assert "trained 2 runs" in capsys.readouterr().err
    after = _runs(searched)
    assert after["search.trial"].to_list() == [0, 1, 2, 3, 4, 5]
    assert (
        after.head(4)
        .select("run_id", "test.accuracy")
        .equals(before.select("run_id", "test.accuracy"))
    )
    assert after["run_id"].n_unique() == 6  # the resumed sampler proposes new points
    html = (searched / "index.html").read_text()
    assert html.count("<tr") >= 7  # one table row per trial, plus the header


def test_the_same_seed_proposes_the_same_points(searched: Path, capsys):
    assert main(["run", "sweeps/search.toml", "--no-report", "--out", "again"]) == EXIT_OK
    columns = ["search.trial", "optimizer.learning_rate", "model.dropout", "test.accuracy"]
    assert _runs(Path("again")).select(columns).equals(_runs(searched).select(columns))


def test_choices_of_lists_round_trip_through_optuna_indices():
    axes = {
        "model.widths": Distribution(kind="choice", values=[[64], [128, 64]]),
        "optimizer.learning_rate": Distribution(kind="loguniform", values=[1e-4, 1e-1]),
    }
    point = {"model.widths": [128, 64], "optimizer.learning_rate": 0.01}
    params = params_from_point(axes, point)
    assert params == {"model.widths": 1, "optimizer.learning_rate": 0.01}
    assert point_from_params(axes, params) == point


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda s: s.replace("trials = 4", "trials = 0"), "search.trials"),
        (lambda s: s.replace("batch = 2", "batch = 0"), "search.batch"),
        (lambda s: s.replace("seed = 3", 'sampler = "grid"'), "search.sampler"),
        (lambda s: s + '\n[grid]\n"train.batch_size" = [32]\n', "search"),
        (lambda s: s.replace('"model.dropout"', '"model.dropot"'), "search.space.model.dropot"),
        (lambda s: s.replace("[set]", '[set]\n"model.dropout" = 0.1'), "model.dropout"),
    ],
    ids=["zero-trials", "zero-batch", "unknown-sampler", "with-grid", "unknown-key", "set-twice"],
)
def test_bad_search_tables_are_config_errors(project: Path, edit, key):
    path = project / "sweeps" / "bad.toml"
    path.write_text(edit(SEARCH.replace("TRIALS", "4")))
    with pytest.raises(ConfigError) as caught:
        load_sweep(path)
    assert caught.value.key == key
