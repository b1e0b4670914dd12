from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sweepbook.report import (
    ROBUST_STATS_MIN_RUNS,
    build_table,
    config_label,
    data_fingerprint,
    format_stat,
    format_value,
    latex_escape,
    read_json,
)
from sweepbook.stats import best_index, compare_to_best, iqm, summarize
from sweepbook.store import StoreError


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.001, "0.001"),
        (3e-05, "3e-05"),
        (16, "16"),
        ([128, 64], "[128, 64]"),
        (None, "—"),
        ("adam", "adam"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_format_stat():
    assert format_stat(0.97123, 0.0041) == "0.9712 ± 0.0041"
    assert format_stat(0.5, None) == "0.5000"
    assert format_stat(float("nan"), 0.1) == "—"


def test_config_label_uses_short_keys():
    row = {"optimizer.learning_rate": 0.01, "train.batch_size": 32}
    assert config_label(row, list(row)) == "learning_rate=0.01, batch_size=32"
    assert config_label(row, []) == "all runs"


def test_data_fingerprint_ignores_row_order_but_not_values():
    runs = pl.DataFrame({"run_id": ["a", "b"], "acc": [0.9, 0.8]})
    history = pl.DataFrame({"run_id": ["a", "b"], "epoch": [1, 1], "loss": [1.0, 2.0]})
    same = data_fingerprint(runs.reverse(), history.reverse())
    assert data_fingerprint(runs, history) == same
    changed = runs.with_columns(pl.Series("acc", [0.9, 0.81]))
    assert data_fingerprint(changed, history) != same


def test_missing_store_record_names_the_file(tmp_path):
    with pytest.raises(StoreError, match=r"sweep\.json: missing"):
        read_json(tmp_path / "sweep.json")


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a_b", r"a\_b"),
        ("50% & more", r"50\% \& more"),
        ("0.9 ± 0.1", r"0.9 $\pm$ 0.1"),
        ("{x}", r"\{x\}"),
        ("~^", r"\textasciitilde{}\textasciicircum{}"),
        ("back\\slash", r"back\textbackslash{}slash"),
    ],
)
def test_latex_escape(text, escaped):
    assert latex_escape(text) == escaped


def _runs_with(per_config: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {
            "run_id": f"{lr}-{seed}",
            "lr": lr,
            "acc": 0.9 + lr + rng.normal(0, 0.01),
            "best_epoch": 3,
            "train_seconds": 1.0,
        }
        for lr in (0.01, 0.02)
        for seed in range(per_config)
    ]
    return pl.DataFrame(rows)


@pytest.mark.parametrize(("per_config", "robust"), [(3, False), (ROBUST_STATS_MIN_RUNS, True)])
def test_table_adds_median_and_iqm_when_runs_are_many(per_config, robust):
    runs = _runs_with(per_config)
    summary = summarize(runs, ["lr"], ["acc", "best_epoch", "train_seconds"])
    best = best_index(summary, "acc", "max")
    summary = compare_to_best(summary, runs, "acc", best)
    table = build_table(summary, ["lr"], ["acc"], best, f"{per_config} seeds")
    assert ("acc median" in table.headers) is robust
    assert ("acc IQM" in table.headers) is robust
    assert ("IQM (interquartile mean" in table.caption) is robust
    if robust:
        column = table.headers.index("acc median")
        values = runs.filter(pl.col("lr") == summary["lr"][best])["acc"].to_numpy()
        assert table.rows[best].cells[column] == f"{np.median(values):.4f}"
        assert table.rows[best].cells[column + 1] == f"{iqm(values):.4f}"


@pytest.mark.parametrize(("selected", "axes"), [(False, 2 * 3), (True, 2)])
def test_learning_curves_of_selected_configurations_get_one_panel_per_split(selected, axes):
    """Two splits; a column per value of the last axis (3 here), unless the summary holds a
    selection of the best configurations: then every one in one panel per split."""
    from sweepbook.report import learning_curve_figure

    rows = [
        {"run_id": f"{lr}-{bs}", "lr": lr, "bs": bs, "acc": lr + bs}
        for lr in (0.1, 0.2)
        for bs in (16, 32, 64)
    ]
    runs = pl.DataFrame(rows)
    history = pl.DataFrame(
        [
            {"run_id": r["run_id"], "epoch": e, "train.loss": 1.0 / e, "val.loss": 1.2 / e}
            for r in rows
            for e in (1, 2, 3, 4)
        ]
    )
    summary = summarize(runs, ["lr", "bs"], ["acc"])
    fig = learning_curve_figure(summary, history, ["lr", "bs"], "loss", selected=selected)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == axes
    titles = {ax.get_title() for ax in fig.axes}
    assert ("training, bs=16" in titles) is not selected
