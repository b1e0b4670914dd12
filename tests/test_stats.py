from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sweepbook.stats import best_index, pareto_front, per_epoch, summarize

RUNS = pl.DataFrame(
    {
        "run_id": ["a", "b", "c", "d", "e"],
        "lr": [0.1, 0.1, 0.01, 0.01, 0.01],
        "acc": [0.9, 0.8, 0.95, 0.97, 0.96],
    }
)


def test_summarize_mean_std_min_max_per_configuration():
    summary = summarize(RUNS, ["lr"], ["acc"])
    assert summary["lr"].to_list() == [0.1, 0.01]  # order of first appearance
    assert summary["n"].to_list() == [2, 3]
    assert summary["run_ids"].to_list() == [["a", "b"], ["c", "d", "e"]]
    row = summary.row(1, named=True)
    values = np.array([0.95, 0.97, 0.96])
    assert row["acc:mean"] == pytest.approx(values.mean())
    assert row["acc:std"] == pytest.approx(values.std(ddof=1))
    assert (row["acc:min"], row["acc:max"]) == (0.95, 0.97)


def test_summarize_without_axes_is_one_row():
    summary = summarize(RUNS, [], ["acc"])
    assert summary["n"].to_list() == [5]


def test_single_seed_has_no_std():
    summary = summarize(RUNS.head(1), ["lr"], ["acc"])
    assert summary["acc:std"].to_list() == [None]


@pytest.mark.parametrize(("direction", "expected"), [("max", 1), ("min", 0)])
def test_best_index_follows_direction(direction, expected):
    assert best_index(summarize(RUNS, ["lr"], ["acc"]), "acc", direction) == expected


def test_per_epoch_counts_only_runs_that_reached_the_epoch():
    history = pl.DataFrame(
        {"run_id": ["a", "a", "b", "c"], "epoch": [1, 2, 1, 1], "loss": [1.0, 0.5, 3.0, 9.0]}
    )
    curve = per_epoch(history, ["a", "b"], "loss")
    assert curve["epoch"].to_list() == [1, 2]
    assert curve["mean"].to_list() == [2.0, 0.5]
    assert curve["n"].to_list() == [2, 1]
    assert curve["std"].to_list()[1] == 0.0


def test_pareto_front_keeps_the_non_dominated_points():
    cost = [1.0, 2.0, 3.0, 2.5, 4.0]
    value = [0.80, 0.90, 0.95, 0.85, 0.95]
    assert pareto_front(cost, value, "max") == [True, True, True, False, False]
    # Minimising the value instead, only the cheapest point is left on the front here.
    assert pareto_front(cost, value, "min") == [True, False, False, False, False]
