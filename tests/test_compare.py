"""Sweeps compared: one report over several stores that share their test data, and a refusal
(one line, exit 2, nothing written) for stores that do not."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

import sweepbook
from conftest import write_project
from sweepbook import compare, stats
from sweepbook.cli import EXIT_BAD_INPUT, EXIT_OK, main
from sweepbook.config import ConfigError, DataConfig
from sweepbook.findings import selection_metric_for
from sweepbook.results import COMPARE_RECORD, load_results

# Two optimizers on the same data, and the first again on another test split; 2 epochs each.
OPTIMIZER_SWEEP = """\
# Which {name} learning rate is best for a tiny MLP in 2 epochs?
experiment = "tiny"
seeds = [0, 1]

[set]
"train.epochs" = 2
"optimizer.name" = "{name}"
{data}
[grid]
"optimizer.learning_rate" = [{rates}]

[report]
title = "Tiny {name}"
compare = ["optimizer.learning_rate"]
"""

SWEEPS = {
    "adam": OPTIMIZER_SWEEP.format(name="adam", rates="3e-3, 3e-2", data=""),
    "sgd": OPTIMIZER_SWEEP.format(name="sgd", rates="0.05, 0.2", data=""),
    "reseeded": OPTIMIZER_SWEEP.format(
        name="adam", rates="3e-3, 3e-2", data='"data.split_seed" = 1\n'
    ),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three tiny sweeps trained into ``reports/<name>`` of one project; returns reports/."""
    root = write_project(tmp_path_factory.mktemp("compare"), SWEEPS)
    for name in SWEEPS:
        sweepbook.run_sweep(
            root / "sweeps" / f"{name}.toml", root / "reports" / name, compile_cache=root / "xla"
        )
    return root / "reports"


@pytest.fixture(scope="module")
def compared(stores: Path) -> Path:
    """adam vs sgd through the command line, with the default output directory."""
    assert main(["compare", str(stores / "adam"), str(stores / "sgd")]) == EXIT_OK
    return stores / "compare-adam-vs-sgd"


def best_of(store: Path) -> tuple[str, list[float]]:
    """A store's best configuration as its own report picks it, and its test accuracies."""
    stored = load_results(store)
    ok = stored.runs.filter(pl.col("status") == "ok")
    chosen_on = selection_metric_for("test.accuracy", ok.columns, ok)
    summary = stats.summarize(ok, ["optimizer.learning_rate"], [chosen_on])
    best = stats.best_index(summary, chosen_on, "max")
    assert best is not None
    row = summary.row(best, named=True)
    values = ok.filter(pl.col("run_id").is_in(row["run_ids"]))["test.accuracy"].to_list()
    return f"learning_rate={row['optimizer.learning_rate']:g}", values


def test_compare_shows_each_best_with_its_statistics(compared: Path, stores: Path) -> None:
    record = json.loads((compared / COMPARE_RECORD).read_text())
    assert record["metric"] == "test.accuracy" and record["selected_on"] == "val.accuracy"
    rows = {row["sweep"]: row for row in record["statistics"]}
    assert set(rows) == {"adam", "sgd"}
    for name in rows:
        configuration, values = best_of(stores / name)
        assert rows[name]["configuration"] == configuration
        assert rows[name]["n"] == len(values) == 2
        assert rows[name]["mean"] == pytest.approx(sum(values) / len(values))
        low, high = stats.t_interval(values)
        assert (rows[name]["ci_low"], rows[name]["ci_high"]) == pytest.approx((low, high))
    verdicts = sorted(row["verdict"] for row in rows.values())
    assert verdicts[0] == "best" and verdicts[1] in ("tie", "differs", "untested")
    other = next(row for row in rows.values() if row["verdict"] != "best")
    adam, sgd = best_of(stores / "adam")[1], best_of(stores / "sgd")[1]
    assert other["p_vs_best"] == pytest.approx(stats.welch_t_test(adam, sgd), nan_ok=True)
    # One other best: Holm over a single comparison leaves p as it is.
    assert other["p_adjusted"] == pytest.approx(other["p_vs_best"], nan_ok=True)
    assert [store["sweep"] for store in record["stores"]] == ["adam", "sgd"]
    assert record["test_data"]["data.split_seed"] == 0
    assert re.fullmatch(r"[0-9a-f]{64}", record["test_data"]["test_split_sha256"])


def test_compare_page_is_self_contained_with_curves_side_by_side(compared: Path) -> None:
    html = (compared / "index.html").read_text()
    assert "Tiny adam" in html and "Tiny sgd" in html
    assert "Statistics across sweeps" in html and "Holm" in html
    for metric in ("accuracy", "loss"):
        assert f'id="learning_curves_{metric}"' in html
        assert (compared / "figures" / f"learning_curves_{metric}.svg").is_file()
    svg = (compared / "figures" / "learning_curves_accuracy.svg").read_text()
    # Both stores' bests are curves of the one figure.
    assert "adam (learning_rate=" in svg and "sgd (learning_rate=" in svg
    assert html.count("<svg ") == 2  # the figures, inline (their marks carry tooltips)
    # The statistics table sorts by a click on its headers, with the report's own script.
    assert '<table class="sortable">' in html and 'querySelectorAll("table.sortable")' in html
    assert 'href="../adam/index.html"' in html and 'href="../sgd/index.html"' in html
    assert not re.search(r"""(src|href)=["']https?:""", html)


def test_every_configuration_beside_the_bests_written_elsewhere(
    stores: Path, tmp_path: Path
) -> None:
    out = tmp_path / "elsewhere"
    argv = ["compare", str(stores / "adam"), str(stores / "sgd"), "--all", "--out", str(out)]
    assert main(argv) == EXIT_OK
    record = json.loads((out / COMPARE_RECORD).read_text())
    every = record["every_configuration"]
    assert sorted((row["sweep"], row["configuration"]) for row in every) == [
        ("adam", "learning_rate=0.003"),
        ("adam", "learning_rate=0.03"),
        ("sgd", "learning_rate=0.05"),
        ("sgd", "learning_rate=0.2"),
    ]
    (best,) = [row for row in every if row["verdict"] == "best"]
    (best_of_bests,) = [row for row in record["statistics"] if row["verdict"] == "best"]
    assert (best["sweep"], best["configuration"]) == (
        best_of_bests["sweep"],
        best_of_bests["configuration"],
    )
    # Three comparisons against the best: Holm never lowers a p-value.
    tested = [row for row in every if row["p_vs_best"] is not None]
    assert len(tested) == 3 and all(row["p_adjusted"] >= row["p_vs_best"] for row in tested)
    html = (out / "index.html").read_text()
    assert "Every configuration" in html
    for store in record["stores"]:
        assert (out / store["href"]).resolve() == (stores / store["sweep"] / "index.html")
    assert 'href="elsewhere/index.html"' in (tmp_path / "index.html").read_text()


def test_index_lists_the_comparison(compared: Path, stores: Path) -> None:
    index = (stores / "index.html").read_text()
    assert 'href="compare-adam-vs-sgd/index.html"' in index
    assert 'href="adam/index.html"' in index  # the sweeps' own reports stay listed


def test_different_test_data_is_refused_in_one_line(
    stores: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index_before = (stores / "index.html").read_text()
    out = tmp_path / "never"
    code = main(["compare", str(stores / "adam"), str(stores / "reseeded"), "--out", str(out)])
    assert code == EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "reseeded" in lines[0] and "adam" in lines[0] and "'data.split_seed'" in lines[0]
    assert not out.exists()
    assert (stores / "index.html").read_text() == index_before


def test_default_output_directory_refused_too(stores: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'data\.split_seed'"):
        sweepbook.api.compare_stores([stores / "reseeded", stores / "sgd"])
    assert not (stores / "compare-reseeded-vs-sgd").exists()


@pytest.mark.parametrize(
    ("directories", "message"),
    [
        (["adam"], "two stores or more"),
        (["adam", "adam"], "given twice"),
        (["adam", "nowhere"], "not a sweep store"),
        (["adam", "sgd", "--out", "sgd"], "is a sweep store"),
    ],
)
def test_bad_store_lists_are_bad_input(
    stores: Path, directories: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a if a.startswith("--") else str(stores / a) for a in directories]
    assert main(["compare", *argv]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


# --- the test split check, piece by piece ------------------------------------------------------

DIGITS = {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0}


def digits(**changes: object) -> DataConfig:
    return DataConfig.model_validate({**DIGITS, **changes})


def test_test_split_hash_follows_the_test_examples_only() -> None:
    reference = compare.test_split_sha256(digits())
    # What the model trains on changes; the test examples do not.
    assert compare.test_split_sha256(digits(val_fraction=0.3)) == reference
    assert compare.test_split_sha256(digits(normalize="standardize")) == reference
    assert compare.test_split_sha256(digits(train_fraction=0.5)) == reference
    # Another seed or share holds out other examples.
    assert compare.test_split_sha256(digits(split_seed=1)) != reference
    assert compare.test_split_sha256(digits(test_fraction=0.3)) != reference


def test_same_settings_but_other_examples_are_refused() -> None:
    view = compare.test_split_view({f"data.{key}": value for key, value in DIGITS.items()})
    same = compare.TestData(view, "a" * 64)
    changed = compare.TestData(view, "b" * 64)
    compare.check_same_test_data([Path("one"), Path("two")], [same, same])
    with pytest.raises(ConfigError, match=r"^two: key 'data.path': .*differ from those of one"):
        compare.check_same_test_data([Path("one"), Path("two")], [same, changed])


def test_a_store_over_two_test_splits_is_refused(stores: Path) -> None:
    stored = load_results(stores / "adam")
    configs = stored.runs["config"].to_list()
    other = json.dumps({**json.loads(configs[0]), "data.test_fraction": 0.3})
    mixed = stored.runs.with_columns(pl.Series("config", [other, *configs[1:]]))
    with pytest.raises(ConfigError, match=r"key 'data.test_fraction'.*more than one test split"):
        compare.store_test_data(
            compare.SweepResults(stored.directory, stored.record, {}, mixed, stored.history)
        )
