from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest

from sweepbook import figures
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


# --- issue 14, items 8 and 9: marks beside the metric, every curve up to the limit ----------


def test_tie_and_best_marks_sit_beside_the_headline_value_not_the_axis_value():
    """ "≈ 0.2" in the dropout column read as "dropout is about 0.2": the mark goes beside the
    headline metric's value instead."""
    from sweepbook.report import Table, TableRow, environment

    table = Table(
        caption="",
        headers=["model.dropout", "runs", "test.accuracy (mean ± std)"],
        rows=[
            TableRow(cells=["0.1", "3", "0.9700 ± 0.0040"], best=True),
            TableRow(cells=["0.2", "3", "0.9650 ± 0.0050"], best=False, tie=True),
        ],
        marked_column=2,
    )
    html = environment().get_template("partials/table.html.j2").render(table=table)
    cells = [
        re.findall(r"<td>(.*?)</td>", row)
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)[1:]
    ]
    assert cells[0][0] == "0.1" and cells[1][0] == "0.2"  # axis values unmarked
    assert cells[0][2].startswith("0.9700 ± 0.0040") and "★" in cells[0][2]
    assert cells[1][2].startswith("0.9650 ± 0.0050") and "≈" in cells[1][2]


def _training_curves(figure) -> int:
    """Configurations drawn: labelled lines over the training panels (a configuration is in
    exactly one of them)."""
    return sum(
        1
        for ax in figure.axes
        if ax.get_title().startswith("training")
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    )


@pytest.mark.parametrize(("grid", "shown"), [((3, 3), 9), ((13, 1), 12)])
def test_learning_curves_show_every_configuration_up_to_the_limit(tmp_path, grid, shown):
    """9 configurations: all 9 drawn (the "8 best of 9" hid one for no reason); beyond
    MAX_SERIES (12), the best 12, and the caption says so."""
    from sweepbook.report import MAX_SERIES, build_context
    from synthetic_store import write_synthetic_store

    assert MAX_SERIES == 12
    axes = {
        "optimizer.learning_rate": [0.001 * (i + 1) for i in range(grid[0])],
        "train.batch_size": [16 * (i + 1) for i in range(grid[1])],
    }
    store = write_synthetic_store(tmp_path / "store", axes, seeds=2, epochs=4)
    _, planned, _ = build_context(store)
    curves = next(p for p in planned if p.name == "learning_curves_loss")
    for figure in planned:
        figures.close(figure.figure)
    assert _training_curves(curves.figure) == shown
    configurations = grid[0] * grid[1]
    assert (f"the {shown} best of {configurations}" in curves.caption) is (configurations > shown)


def test_latex_tie_mark_is_the_one_the_caption_names(tmp_path):
    """The caption said "$\\approx$ marks ..." while the rows carried a dagger."""
    from sweepbook.latex import TIE_MARK
    from sweepbook.report import FULL_TABLE, PAPER_TABLE, build_context, paper_table_tex
    from synthetic_store import write_synthetic_store

    # Seed noise much larger than the gaps between configurations: ties are certain.
    store = write_synthetic_store(tmp_path / "store", {"model.dropout": [0.0, 0.1, 0.2]}, noise=0.1)
    context, planned, venue = build_context(store)
    for figure in planned:
        figures.close(figure.figure)
    for name in (PAPER_TABLE, FULL_TABLE):
        tex = paper_table_tex(
            name, context.paper_tables[name], venue, source="sweep.toml", directory=store
        )
        caption = tex[tex.index("\\caption{") : tex.index("\\label")]
        body = tex[tex.index("\\midrule") :]
        assert "$^\\dagger$ marks" in caption and TIE_MARK in body
        assert "approx" not in tex


@pytest.mark.parametrize("labelled", [False, True])
def test_report_labels_name_the_paper_table_and_figure_axes(tmp_path, labelled):
    from sweepbook.report import PAPER_TABLE, build_context
    from synthetic_store import write_synthetic_store

    labels = {"optimizer.learning_rate": "Step size", "test.accuracy": "Accuracy (%)"}
    store = write_synthetic_store(
        tmp_path / "store",
        {"optimizer.learning_rate": [1e-3, 1e-2], "train.batch_size": [16, 64]},
        report={"labels": labels} if labelled else {},
    )
    context, planned, _ = build_context(store)
    metric_figure = next(p.figure for p in planned if p.name.startswith("test_accuracy_vs_"))
    axes = metric_figure.axes[0]
    headers = [column.header for column in context.paper_tables[PAPER_TABLE].columns]
    for figure in planned:
        figures.close(figure.figure)
    if labelled:
        assert (axes.get_xlabel(), axes.get_ylabel()) == ("Step size", "Accuracy (%)")
        assert headers == ["Step size", "Batch size", "Accuracy (%)"]
    else:  # the keys, as the HTML report has always shown them; readable defaults in LaTeX
        assert (axes.get_xlabel(), axes.get_ylabel()) == (
            "optimizer.learning_rate",
            "test.accuracy",
        )
        assert headers == ["Learning rate", "Batch size", "Test accuracy"]


def test_a_sweep_with_no_finished_run_renders_its_problems_and_no_figure(tmp_path):
    from sweepbook.report import render_report
    from synthetic_store import write_synthetic_store

    store = write_synthetic_store(tmp_path / "store", {"optimizer.learning_rate": [0.1, 0.2]})
    runs = pl.read_parquet(store / "runs.parquet")
    failed = runs.with_columns(pl.lit("failed").alias("status"), pl.lit("OOM").alias("error"))
    failed.write_parquet(store / "runs.parquet")
    html = render_report(store).read_text(encoding="utf-8")
    assert "No run finished successfully." in html
    assert f"{runs.height} failed" in html and "OOM" in html
    assert not list((store / "figures").glob("*")) and not (store / "tables").exists()


@pytest.mark.parametrize(
    ("cell", "key"),
    [
        ("0.9712 ± 0.0031", 0.9712),  # the mean
        ("—", None),  # missing: last either way
        ("12,345", 12345.0),
        ("1e-05", 1e-05),
        ("3.2×", 3.2),
        ("-0.5", -0.5),
        ("adam", "adam"),
        ("[0.9612, 0.9801]", "[0.9612, 0.9801]"),
        ("10.0.0.1", "10.0.0.1"),  # a host, not a number
        ("16x16", "16x16"),
    ],
)
def test_sort_key_orders_a_cell_by_its_number_or_its_text(cell, key):
    from sweepbook.tables import sort_key

    assert sort_key(cell) == key


def test_table_cells_carry_their_sort_keys_for_the_page_script():
    from sweepbook.report import Table, TableRow, environment

    table = Table(
        caption="",
        headers=["optimizer.name", "test.accuracy (mean ± std)"],
        rows=[
            TableRow(cells=["adam", "0.9700 ± 0.0040"], best=True),
            TableRow(cells=["sgd", "—"], best=False),
        ],
        marked_column=1,
    )
    html = environment().get_template("partials/table.html.j2").render(table=table)
    assert '<table class="sortable">' in html
    keys = [json.loads(k) for k in re.findall(r"<tr[^>]* data-sort='([^']*)'>", html)]
    assert keys == [["adam", 0.97], ["sgd", None]]  # text by its text, a mean ± std by its mean
    assert "<td>adam</td>" in html and "<td>—</td>" in html  # the cells read as before


def test_report_inlines_every_figure_with_tooltips_and_its_sort_script(tmp_path):
    """Tooltips work only in inline SVG (an <img> shows none): every figure is inline, its file
    under figures/ is the same SVG, and each heatmap cell names its configuration."""
    from sweepbook.report import render_report
    from synthetic_store import write_synthetic_store

    store = write_synthetic_store(
        tmp_path / "store", {"optimizer.learning_rate": [1e-3, 1e-2], "train.batch_size": [16, 64]}
    )
    html = render_report(store).read_text(encoding="utf-8")
    svg_files = sorted((store / "figures").glob("*.svg"))
    assert "<img" not in html and html.count("<svg") == len(svg_files) > 0
    for svg_file in svg_files:
        inline = svg_file.read_text(encoding="utf-8")
        assert inline[inline.index("<svg") :] in html
    heatmap = next(f for f in svg_files if "heatmap" in f.stem).read_text(encoding="utf-8")
    cells = re.findall(r"<title>(.*?)</title>", heatmap)
    assert len(cells) == 4
    assert all("learning_rate=" in c and "batch_size=" in c and "test.accuracy" in c for c in cells)
    assert "<script>" in html and "aria-sort" in html
