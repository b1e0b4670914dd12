from __future__ import annotations

import numpy as np

from sweepbook import figures


def _curve(label: str) -> figures.Curve:
    epochs = np.arange(1, 6)
    return figures.Curve(label, epochs, 1.0 / epochs, np.full(5, 0.05))


def test_learning_curves_lays_out_one_axis_per_panel():
    panels = [figures.Panel(f"p{i}", "loss", [_curve("a"), _curve("b")]) for i in range(3)]
    fig = figures.learning_curves(panels, columns=2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b"]


def test_metric_vs_axis_uses_log_scale_and_categories_on_request():
    series = [
        figures.Series(
            "s",
            np.array([1e-3, 1e-2]),
            np.array([0.9, 0.95]),
            np.zeros(2),
            np.array([1e-3]),
            np.array([0.9]),
        )
    ]
    ticks = [(1e-3, "0.001"), (1e-2, "0.01")]
    numeric = figures.metric_vs_axis(
        series, xlabel="lr", ylabel="acc", log_x=True, ticks=ticks, categorical=False
    )
    assert numeric.axes[0].get_xscale() == "log"
    assert [t.get_text() for t in numeric.axes[0].get_xticklabels()] == ["0.001", "0.01"]
    categorical = figures.metric_vs_axis(
        series, xlabel="v", ylabel="acc", log_x=False, ticks=[(0, "a"), (1, "b")], categorical=True
    )
    assert categorical.axes[0].lines[0].get_linestyle() == "None"  # categories are not joined
    assert [t.get_text() for t in categorical.axes[0].get_xticklabels()] == ["a", "b"]


def test_series_styles_are_distinct_beyond_the_palette():
    styles = [tuple(figures.series_style(i).values()) for i in range(len(figures.PALETTE) * 2)]
    assert len(set(styles)) == len(styles)


def test_a_configuration_keeps_its_colour_across_panels():
    panels = [
        figures.Panel("left", "loss", [_curve("a"), _curve("b")]),
        figures.Panel("right", "loss", [_curve("b")]),
    ]
    fig = figures.learning_curves(panels, columns=2)
    left, right = fig.axes[0], fig.axes[1]
    assert right.lines[0].get_color() == left.lines[1].get_color()
    assert left.lines[0].get_color() != left.lines[1].get_color()


def test_heatmap_writes_every_value_and_boxes_the_best():
    values = np.array([[0.9, 0.95], [np.nan, 0.8]])
    fig = figures.heatmap(
        values,
        row_labels=["a", "b"],
        column_labels=["x", "y"],
        xlabel="x",
        ylabel="y",
        value_label="acc",
        best=(0, 1),
    )
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(texts) == ["0.800", "0.900", "0.950"]  # the missing cell stays blank
    assert len(fig.axes[0].patches) == 1
    for file_format in ("svg", "pdf", "png"):
        assert len(figures.render(fig, file_format)) > 1000


def test_confusion_matrix_normalizes_rows():
    counts = np.array([[8, 2], [0, 0]])
    fig = figures.confusion_matrix(counts, title="t")
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(image), [[0.8, 0.2], [0.0, 0.0]])


def test_reliability_diagram_draws_occupied_bins_only():
    counts = np.array([0.0, 4.0, 6.0])
    fig = figures.reliability_diagram(
        counts, np.array([0.0, 2.0, 5.4]), np.array([0.0, 1.0, 6.0]), title="t"
    )
    bars = fig.axes[0].patches
    assert len(bars) == 2
    assert [round(bar.get_height(), 6) for bar in bars] == [0.25, 1.0]
