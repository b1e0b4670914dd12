"""Figure kinds as data: a new kind is one registry entry, and each built-in kind applies
exactly to the sweeps its figure makes sense for."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pytest
from matplotlib.figure import Figure

from sweepbook import figures
from sweepbook.figure_kinds import FIGURES, FigureData, FigureSpec, plan_figures
from sweepbook.registry import UnknownName
from sweepbook.report import render_report
from sweepbook.stats import best_index, summarize
from synthetic_store import write_synthetic_store

BUILT_IN = (
    "learning_curves_loss",
    "learning_curves_accuracy",
    "learning_rate",
    "heatmap",
    "parallel_coordinates",
    "confusion_matrix",
    "reliability_diagram",
    "pareto_model_bytes",
    "pareto_nonzero_params",
    "metric_vs_axis",
    "importance",
    "predicted_vs_true",
    "residuals",
)


def draw_histogram(data: FigureData) -> Figure:
    """The headline metric of every finished run, binned: the kind a user might add."""
    fig = Figure(figsize=(data.venue.column_width_in, 1.8))
    ax = fig.add_subplot()
    ax.hist(data.ok[data.metric].to_numpy(), bins=8)
    ax.set_xlabel(data.metric)
    return fig


HISTOGRAM = FigureSpec(
    stem=lambda data: f"histogram_{data.metric.replace('.', '_')}",
    title=lambda data: f"Distribution of {data.metric}",
    caption=lambda data: f"Histogram of {data.metric} over all {data.ok.height} finished runs.",
    build=draw_histogram,
    applies=lambda data: data.ok.height > 1,
)


@pytest.fixture
def histogram_kind() -> Iterator[None]:
    FIGURES.register("histogram", HISTOGRAM)
    yield
    FIGURES.unregister("histogram")


def test_built_in_kinds_are_registered_in_report_order():
    assert FIGURES.names()[: len(BUILT_IN)] == BUILT_IN


def test_a_kind_registered_from_a_test_module_appears_in_the_report(tmp_path, histogram_kind):
    store = write_synthetic_store(
        tmp_path / "reports" / "hist", {"optimizer.learning_rate": [1e-3, 1e-2, 1e-1]}
    )
    html = render_report(store).read_text(encoding="utf-8")
    files = sorted(path.name for path in (store / "figures").glob("histogram_test_accuracy.*"))
    assert files == sorted(f"histogram_test_accuracy.{ext}" for ext in figures.available_formats())
    assert "Distribution of test.accuracy" in html
    assert "Histogram of test.accuracy over all 9 finished runs." in html
    assert 'href="figures/histogram_test_accuracy.pdf"' in html
    # Registered last, drawn last: after the built-in metric figure.
    assert html.index("Distribution of test.accuracy") > html.index(
        "test.accuracy against optimizer.learning_rate"
    )


def test_an_unregistered_kind_leaves_no_figure_behind(tmp_path):
    store = write_synthetic_store(tmp_path / "reports" / "s", {"optimizer.learning_rate": [1, 2]})
    FIGURES.register("histogram", HISTOGRAM)
    try:
        render_report(store)
        assert (store / "figures" / "histogram_test_accuracy.svg").is_file()
    finally:
        FIGURES.unregister("histogram")
    render_report(store)  # a stale figure of a kind that no longer applies is removed
    assert not (store / "figures" / "histogram_test_accuracy.svg").exists()
    assert "histogram" not in FIGURES


# --- which built-in kinds apply --------------------------------------------------------------


def figure_data(
    axes: dict[str, list[Any]],
    *,
    runs: dict[str, list[Any]] | None = None,
    history: dict[str, list[Any]] | None = None,
) -> FigureData:
    """A small sweep: one run per configuration of ``axes`` (a grid), test accuracy rising with
    the configuration's index; ``runs`` adds columns, ``history`` replaces the epochs."""
    keys = list(axes)
    grid = [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]
    ok = pl.DataFrame(
        [
            {"run_id": f"r{i}", "status": "ok", **config, "test.accuracy": 0.5 + 0.01 * i}
            for i, config in enumerate(grid)
        ]
    )
    if runs:
        ok = ok.with_columns(pl.Series(name, values) for name, values in runs.items())
    if history is None:
        history = {"run_id": ["r0", "r0"], "epoch": [1, 2], "lr": [0.1, 0.1]}
    summary = summarize(ok, keys, ["test.accuracy"])
    return FigureData(
        ok=ok,
        history=pl.DataFrame(history),
        summary=summary,
        compare=keys,
        metric="test.accuracy",
        direction="max",
        best=best_index(summary, "test.accuracy", "max"),
        seeds_text="1 seed (seeds 0)",
        sampled=False,
        venue=figures.ARTICLE,
        labels={},
    )


def applying(data: FigureData) -> set[str]:
    return {name for name in BUILT_IN if FIGURES[name].applies(data)}


LR = "optimizer.learning_rate"
BS = "train.batch_size"
DROPOUT = "model.dropout"
THREE_AXES_FIGURES = {"metric_vs_axis", "parallel_coordinates"}


@pytest.mark.parametrize(
    ("axes", "expected"),
    [
        ({}, set()),
        ({LR: [0.1, 0.2]}, {"metric_vs_axis"}),
        ({LR: [0.1, 0.2], BS: [16, 32]}, {"metric_vs_axis", "heatmap", "importance"}),
        # A heatmap of one row is a bar: a second axis held at one value does not make one.
        ({LR: [0.1, 0.2], BS: [16]}, {"metric_vs_axis"}),
        (
            {LR: [0.1, 0.2], BS: [16, 32], DROPOUT: [0.0]},
            {"metric_vs_axis", "parallel_coordinates", "importance"},
        ),
    ],
)
def test_axis_figures_apply_by_the_number_of_compared_axes(axes, expected):
    assert applying(figure_data(axes)) == expected


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["train.loss"], {"learning_curves_loss"}),
        (["val.accuracy"], {"learning_curves_accuracy"}),
        (
            ["train.loss", "val.loss", "train.accuracy", "val.accuracy"],
            {"learning_curves_loss", "learning_curves_accuracy"},
        ),
        (["val.f1_macro"], set()),
    ],
)
def test_learning_curves_apply_to_the_metrics_the_history_records(columns, expected):
    history = {"run_id": ["r0"], "epoch": [1], "lr": [0.1], **{c: [0.5] for c in columns}}
    assert applying(figure_data({}, history=history)) == expected


def test_accuracy_curves_of_a_regression_history_all_nan_do_not_apply():
    """A regression run's history keeps the accuracy columns, NaN at every epoch."""
    nan = float("nan")
    history = {
        "run_id": ["r0", "r0"],
        "epoch": [1, 2],
        "lr": [0.1, 0.1],
        "train.loss": [2.0, 1.0],
        "val.loss": [2.1, 1.2],
        "train.accuracy": [nan, nan],
        "val.accuracy": [nan, nan],
        "val.f1_macro": [nan, nan],
    }
    assert applying(figure_data({}, history=history)) == {"learning_curves_loss"}
    # One finite value is enough: that split is drawn, the all-NaN one is not.
    history["val.accuracy"] = [nan, 0.5]
    data = figure_data({}, history=history)
    assert "learning_curves_accuracy" in applying(data)
    figure = FIGURES["learning_curves_accuracy"].build(data)
    assert [ax.get_title() for ax in figure.axes if ax.get_visible()] == ["validation"]


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("missing", [1.0], False),
        ("x", [float("nan"), None], False),
        ("x", [float("nan"), 1.0], True),
        ("x", [None, None], False),
        ("x", [[1.0], None], True),
        ("x", ["a", None], True),
    ],
)
def test_has_values_needs_one_finite_or_non_null_value(column, values, expected):
    from sweepbook.figure_kinds import has_values

    frame = pl.DataFrame({"x": values}, strict=False)
    assert has_values(frame, column) is expected


def test_regression_figures_apply_when_the_best_runs_hold_predictions():
    axes = {LR: [0.1, 0.2]}
    regression = {"predicted_vs_true", "residuals"}
    assert not regression & applying(figure_data(axes))
    predictions = {
        "test.predictions": [[1.0, 2.0], [1.5, 2.5]],
        "test.targets": [[1.0, 2.0], [1.0, 2.0]],
        "test.outputs": [1, 1],
    }
    assert regression <= applying(figure_data(axes, runs=predictions))
    # The best configuration (r1) stored none, say after a crash in an older version.
    missing = {**predictions, "test.predictions": [[1.0, 2.0], None]}
    assert not regression & applying(figure_data(axes, runs=missing))


def test_the_schedule_figure_applies_only_when_a_learning_rate_changes():
    constant = {"run_id": ["r0", "r0", "r1"], "epoch": [1, 2, 1], "lr": [0.1, 0.1, 0.2]}
    decaying = {"run_id": ["r0", "r0", "r1"], "epoch": [1, 2, 1], "lr": [0.1, 0.05, 0.2]}
    empty: dict[str, list[Any]] = {"run_id": [], "epoch": [], "lr": []}
    assert "learning_rate" not in applying(figure_data({}, history=constant))
    assert "learning_rate" in applying(figure_data({}, history=decaying))
    assert "learning_rate" not in applying(figure_data({}, history=empty))


def test_best_configuration_figures_apply_when_the_runs_hold_their_counts():
    axes = {LR: [0.1, 0.2]}
    assert not {"confusion_matrix", "reliability_diagram"} & applying(figure_data(axes))
    counts = {"test.confusion": [[[1, 0], [0, 1]]] * 2, "test.reliability_count": [[1, 2]] * 2}
    with_counts = figure_data(axes, runs=counts)
    assert {"confusion_matrix", "reliability_diagram"} <= applying(with_counts)
    # No best configuration (every mean missing): nothing to show a matrix of.
    no_best = figure_data(axes, runs={**counts, "test.accuracy": [None, None]})
    assert no_best.best is None
    assert not {"confusion_matrix", "reliability_diagram"} & applying(no_best)


def test_importance_applies_to_two_swept_keys_not_one():
    assert "importance" not in applying(figure_data({LR: [0.1, 0.2]}))
    assert "importance" in applying(figure_data({LR: [0.1, 0.2], BS: [16, 32]}))


@pytest.mark.parametrize(
    ("prune", "quantize", "expected"),
    [(["none", "none"], ["none", "none"], False), (["none", "magnitude"], ["none", "none"], True)],
)
def test_pareto_figures_apply_to_compressed_sweeps(prune, quantize, expected):
    runs = {"compress.prune.method": prune, "compress.quantize.mode": quantize}
    pareto = {"pareto_model_bytes", "pareto_nonzero_params"}
    assert (pareto <= applying(figure_data({LR: [0.1, 0.2]}, runs=runs))) is expected
    assert not pareto & applying(figure_data({LR: [0.1, 0.2]}))  # no compression columns


def test_plan_figures_names_files_and_titles_from_the_sweep():
    data = figure_data({LR: [0.1, 0.2], BS: [16, 32]})
    planned = {figure.name: figure for figure in plan_figures(data)}
    for figure in planned.values():
        figures.close(figure.figure)
    # This history records no curves and a constant learning rate: the heatmap, the metric
    # against the first axis and (two swept keys) the hyper-parameter importance, in order.
    assert list(planned) == [
        "heatmap_learning_rate_batch_size",
        "test_accuracy_vs_learning_rate",
        "importance",
    ]
    heatmap = planned["heatmap_learning_rate_batch_size"]
    assert heatmap.title == f"test.accuracy: {LR} × {BS}"
    assert "1 seed (seeds 0)" in heatmap.caption


def test_crowded_sweeps_show_their_best_configurations():
    data = figure_data({LR: list(np.linspace(0.1, 1.0, 13))})
    assert data.crowded and data.curve_rows.height == 12
    assert "Shown: the 12 best of 13 configurations" in data.shown_note
    assert not figure_data({LR: [0.1, 0.2]}).shown_note


def test_a_registered_name_is_taken_and_a_typo_gets_a_hint():
    with pytest.raises(ValueError, match="already registered"):
        FIGURES.register("heatmap", HISTOGRAM)
    with pytest.raises(UnknownName, match="did you mean 'heatmap'"):
        FIGURES["heatmaps"]
