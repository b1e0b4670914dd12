"""The report of a regression sweep, rendered from its store alone (the schema the trainer writes
for ``task = "regression"``): its figures, the direction of its metrics in tables and findings,
and the metrics a sweep defines itself (``sweep.json`` "metrics")."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from sweepbook import figures
from sweepbook.figure_kinds import (
    FIGURES,
    MAX_OUTPUT_PANELS,
    FigureData,
    output_predictions,
    pooled_predictions,
)
from sweepbook.latex import human_label, latex_escape
from sweepbook.report import PAPER_TABLE, ReportContext, build_context, render_report
from sweepbook.stats import best_index, summarize
from synthetic_store import TEST_EXAMPLES, USER_METRIC, write_synthetic_store

LR = "optimizer.learning_rate"
RATES = [1e-3, 1e-2, 1e-1]  # the synthetic store's error shrinks along the grid: 0.1 is best
CLASSIFICATION_ONLY = ("confusion_matrix", "reliability_diagram", "learning_curves_accuracy")


def regression_store(directory: Path, **options: Any) -> Path:
    return write_synthetic_store(directory, {LR: RATES}, task="regression", **options)


def context_of(store: Path) -> ReportContext:
    """The report's context, its figures closed (only the tables and findings are checked)."""
    context, drawn, _ = build_context(store)
    for planned in drawn:
        figures.close(planned.figure)
    return context


def visible_text(html: str) -> str:
    """The page as a reader sees it: no figures, styles or scripts, no tags."""
    for element in ("svg", "style", "script"):
        html = re.sub(rf"<{element}.*?</{element}>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'")


def test_a_regression_store_renders_its_figures_and_no_classification_one(tmp_path):
    store = regression_store(tmp_path / "reports" / "regression")
    html = render_report(store).read_text(encoding="utf-8")
    stems = {path.stem for path in (store / "figures").iterdir()}
    assert {"predicted_vs_true", "residuals", "learning_curves_loss"} <= stems
    assert not stems & set(CLASSIFICATION_ONLY)
    text = visible_text(html)
    assert "Predictions against true targets of the best configuration" in text
    assert "Residuals of the best configuration" in text
    assert f"pooled over its 3 runs ({3 * TEST_EXAMPLES} points per output)" in text
    assert "Headline metric: test.rmse (lower is better)" in text
    assert "accuracy" not in text.replace(USER_METRIC, "")  # no classification word leaks in


def test_the_lowest_rmse_is_best_in_table_findings_and_paper_table(tmp_path):
    store = regression_store(tmp_path / "store")
    context = context_of(store)
    runs = pl.read_parquet(store / "runs.parquet")
    means = runs.group_by(LR).agg(pl.col("val.rmse").mean()).sort("val.rmse")
    lowest = means[LR][0]
    assert lowest == 0.1  # the synthetic store's design, checked so that the test can fail
    best_rows = [row for row in context.table.rows if row.best]
    assert len(best_rows) == 1 and best_rows[0].cells[0] == "0.1"
    sentences = context.findings["sentences"]
    assert (
        sentences[0].startswith("Best configuration, chosen on mean val.rmse (")
        and "lower is better): learning_rate=0.1" in sentences[0]
    )
    headline = context.paper_tables[PAPER_TABLE].columns[1]
    assert headline.header == "Test RMSE"
    bold = [i for i, cells in enumerate(headline.cells) if "textbf" in "".join(cells)]
    assert bold == [RATES.index(0.1)]


def paper_column(context: ReportContext, header: str) -> list[bool]:
    """Which rows of the paper table's column ``header`` are bold (the column's best)."""
    column = next(c for c in context.paper_tables[PAPER_TABLE].columns if c.header == header)
    return ["textbf" in "".join(cells) for cells in column.cells]


@pytest.mark.parametrize(("direction", "best_rate"), [("min", 0.1), ("max", 1e-3)])
def test_a_user_metric_is_ranked_by_the_direction_its_store_records(tmp_path, direction, best_rate):
    """``max_error`` falls along the grid: the store's direction alone decides which end wins,
    as the headline and as a named column of the paper table."""
    metrics = {USER_METRIC: {"direction": direction, "label": "maximum error"}}
    headline = f"test.{USER_METRIC}"
    store = regression_store(
        tmp_path / "store",
        report={"metric": headline, "direction": direction, "metrics": metrics},
    )
    runs = pl.read_parquet(store / "runs.parquet")
    by_rate = runs.group_by(LR).agg(pl.col(f"val.{USER_METRIC}").mean()).sort(LR)
    values = by_rate[f"val.{USER_METRIC}"].to_list()
    assert values == sorted(values, reverse=True)  # falls along the grid, as designed
    context = context_of(store)
    best = [row.cells[0] for row in context.table.rows if row.best]
    assert best == [f"{best_rate:g}"]
    assert paper_column(context, "Test maximum error") == [r == best_rate for r in RATES]
    # As a column the sweep names for the paper, not its headline: the record's direction of
    # the metric still decides which value is bold.
    other = regression_store(tmp_path / "other", report={"table": [headline], "metrics": metrics})
    context = context_of(other)
    assert paper_column(context, "Test maximum error") == [r == best_rate for r in RATES]
    better = "higher" if direction == "max" else "lower"
    assert f"{headline}: maximum error, {better} is better" in context.metric_notes


def test_metric_labels_appear_in_the_page_and_the_paper_tables(tmp_path):
    store = regression_store(tmp_path / "store", report={"table": ["test.r2", "test.max_error"]})
    html = visible_text(render_report(store).read_text(encoding="utf-8"))
    assert (
        "Metrics: test.rmse: RMSE, lower is better; test.mae: MAE, lower is better; "
        "test.r2: R², higher is better; val.rmse: RMSE, lower is better; "
        "test.max_error: maximum error, lower is better." in html
    )
    paper = (store / "tables" / "results.tex").read_text(encoding="utf-8")
    assert "Test R$^{2}$" in paper and "Test RMSE" in paper
    assert re.search(r"Test maximum\\\\error|Test maximum error", paper)


def test_the_regression_table_shows_the_task_metrics_not_accuracy(tmp_path):
    store = regression_store(tmp_path / "store")
    context = context_of(store)
    headers = context.table.headers
    for metric in ("test.rmse", "test.mae", "test.r2", "test.loss", "val.rmse", "val.loss"):
        assert any(header.startswith(f"{metric} ") for header in headers), metric
    assert f"test.{USER_METRIC} (mean ± std)" in headers  # the store's own metric
    assert not any("accuracy" in header for header in headers)


@pytest.mark.parametrize(
    ("key", "record", "label"),
    [
        ("test.r2", None, "Test R²"),
        ("val.mae", None, "Validation MAE"),
        ("test.accuracy", None, "Test accuracy"),
        ("test.f1_macro", None, "Test F1 (macro)"),
        ("test.balanced_accuracy", {"metrics": {"balanced_accuracy": {"label": "BA"}}}, "Test BA"),
        ("test.my_score", {}, "My score"),  # unknown to store and registry: as before
    ],
)
def test_paper_labels_of_metrics(key, record, label):
    assert human_label(key, {}, record) == label


def test_latex_sets_the_characters_regression_labels_use():
    assert latex_escape("R²") == "R$^{2}$"
    assert latex_escape("prediction − target") == "prediction $-$ target"


# --- the figures' data -------------------------------------------------------------------------


@pytest.mark.parametrize("outputs", [1, 2])
def test_pooled_predictions_stack_the_runs_row_major(tmp_path, outputs):
    store = regression_store(tmp_path / "store", outputs=outputs)
    runs = pl.read_parquet(store / "runs.parquet")
    ids = runs["run_id"].to_list()[-3:]
    predicted, target = pooled_predictions(runs, ids)
    assert predicted.shape == target.shape == (3 * TEST_EXAMPLES, outputs)
    first = runs.filter(pl.col("run_id") == ids[0])
    stored = np.array(first["test.predictions"][0].to_list()).reshape(TEST_EXAMPLES, outputs)
    np.testing.assert_array_equal(predicted[:TEST_EXAMPLES], stored)
    # The stored test.rmse of that run is the RMSE of the rows read back for it.
    rows_rmse = np.sqrt(((predicted[:TEST_EXAMPLES] - target[:TEST_EXAMPLES]) ** 2).mean(axis=0))
    assert rows_rmse.mean() == pytest.approx(first["test.rmse"][0])


def regression_figure_data(store: Path) -> FigureData:
    runs = pl.read_parquet(store / "runs.parquet")
    summary = summarize(runs, [LR], ["test.rmse"])
    return FigureData(
        ok=runs,
        history=pl.read_parquet(store / "history.parquet"),
        summary=summary,
        compare=[LR],
        metric="test.rmse",
        direction="min",
        best=best_index(summary, "test.rmse", "min"),
        seeds_text="3 seeds",
        sampled=False,
        venue=figures.ARTICLE,
        labels={},
    )


@pytest.mark.parametrize(("outputs", "panels"), [(1, 1), (2, 2), (5, MAX_OUTPUT_PANELS)])
def test_regression_figures_draw_a_panel_per_output_up_to_the_limit(tmp_path, outputs, panels):
    data = regression_figure_data(regression_store(tmp_path / "store", outputs=outputs))
    shown = output_predictions(data.ok, data.summary.row(data.best, named=True)["run_ids"])
    assert len(shown) == panels
    assert [o.title for o in shown] == (
        [""] if outputs == 1 else [f"output {k + 1}" for k in range(panels)]
    )
    scatter = FIGURES["predicted_vs_true"].plan(data)
    assert len(scatter.figure.axes) == panels
    residual = FIGURES["residuals"].plan(data)
    assert len(residual.figure.axes) == 2 * panels  # each scatter with its histogram
    if outputs > MAX_OUTPUT_PANELS:
        assert f"The first {MAX_OUTPUT_PANELS} of its {outputs} outputs are shown." in (
            scatter.caption
        )
    # One panel fits a column; several take the text width.
    width = scatter.figure.get_figwidth()
    expected = data.venue.column_width_in if panels == 1 else data.venue.text_width_in
    assert width == pytest.approx(expected)
    for planned in (scatter, residual):
        figures.close(planned.figure)


def test_the_residual_figure_draws_prediction_minus_target(tmp_path):
    data = regression_figure_data(regression_store(tmp_path / "store"))
    best_ids = data.summary.row(data.best, named=True)["run_ids"]
    predicted, target = pooled_predictions(data.ok, best_ids)
    figure = FIGURES["residuals"].plan(data).figure
    points = figure.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 0], predicted[:, 0])
    np.testing.assert_allclose(points[:, 1], predicted[:, 0] - target[:, 0])
    figures.close(figure)


def test_a_classification_store_gets_no_regression_figure_nor_metric_notes(tmp_path):
    store = write_synthetic_store(tmp_path / "reports" / "classification", {LR: RATES})
    html = render_report(store).read_text(encoding="utf-8")
    stems = {path.stem for path in (store / "figures").iterdir()}
    assert not stems & {"predicted_vs_true", "residuals"}
    assert {"confusion_matrix", "reliability_diagram", "learning_curves_accuracy"} <= stems
    assert "Metrics:" not in visible_text(html)
    assert json.loads((store / "sweep.json").read_text()).get("task") is None  # an older store
