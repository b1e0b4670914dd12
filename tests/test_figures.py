from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.text import Text

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
    mesh = fig.axes[0].collections[0].get_array()
    np.testing.assert_allclose(np.asarray(mesh).reshape(2, 2), [[0.8, 0.2], [0.0, 0.0]])
    assert fig.axes[0].get_ylim() == (1.5, -0.5)  # true class 0 on top, as in imshow


def test_reliability_diagram_draws_occupied_bins_only():
    counts = np.array([0.0, 4.0, 6.0])
    fig = figures.reliability_diagram(
        counts, np.array([0.0, 2.0, 5.4]), np.array([0.0, 1.0, 6.0]), title="t"
    )
    bars = fig.axes[0].patches
    assert len(bars) == 2
    assert [round(bar.get_height(), 6) for bar in bars] == [0.25, 1.0]


needs_latex = pytest.mark.skipif(
    "pgf" not in figures.available_formats(), reason="PGF needs pdflatex (TeX Live)"
)


@needs_latex
def test_pgf_escapes_user_text_and_compiles_with_latex(tmp_path):
    """Labels with LaTeX specials (variant names, keys with '_') survive into a PGF file that
    pdflatex typesets; matrix figures are vector cells, which PGF can stream."""
    fig = figures.heatmap(
        np.array([[0.9, 0.8], [0.7, 0.95]]),
        row_labels=["a_b", "50%"],
        column_labels=["x & y", "#1"],
        xlabel="optimizer.learning_rate",
        ylabel="train.batch_size",
        value_label="test.accuracy",
        best=(1, 1),
    )
    figures.render(fig, "svg")  # draws the ticks, so that their texts exist
    texts_before = sorted(t.get_text() for t in fig.findobj(Text))
    assert "x & y" in texts_before
    pgf = figures.render(fig, "pgf").decode()
    assert sorted(t.get_text() for t in fig.findobj(Text)) == texts_before  # restored
    assert r"x \& y" in pgf and r"50\%" in pgf and r"a\_b" in pgf
    (tmp_path / "figure.pgf").write_text(pgf)
    (tmp_path / "paper.tex").write_text(
        "\\documentclass{article}\\usepackage{pgf}\\providecommand{\\mathdefault}[1]{#1}"
        "\\begin{document}\\input{figure.pgf}\\end{document}\n"
    )
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 1000


def test_formats_include_pgf_exactly_when_pdflatex_is_installed():
    has_latex = shutil.which("pdflatex") is not None
    assert ("pgf" in figures.available_formats()) == has_latex
    assert {"svg", "pdf", "png"} <= set(figures.available_formats())


def test_parallel_coordinates_maps_axes_to_unit_range_and_marks_the_best():
    axes = [
        figures.ParallelAxis("learning_rate", [1e-4, 1e-3, 1e-2, 1e-2]),  # log: 2 decades
        figures.ParallelAxis("batch_size", [32, 64, 32, 64]),
        figures.ParallelAxis("optimizer", ["sgd", "adam", "sgd", "adam"]),
    ]
    metric = figures.ParallelAxis("accuracy", [0.8, 0.9, 0.95, 0.85])
    fig = figures.parallel_coordinates(axes, metric=metric, best=2, higher_is_better=True)
    lines = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 4]
    assert len(lines) == 4  # one per configuration (the others are the vertical axes)
    best_line = [line for line in lines if line.get_label() == "best"]
    assert len(best_line) == 1
    np.testing.assert_allclose(best_line[0].get_ydata(), [1.0, 0.0, 0.0, 1.0])
    others = {tuple(np.round(line.get_ydata(), 6)) for line in lines if line not in best_line}
    assert (0.0, 0.0, 0.0, 0.0) in others  # lr 1e-4 (log low end), 32, sgd, worst accuracy
    assert (0.5, 1.0, 1.0, 0.666667) in others  # lr 1e-3 halfway on the log axis
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "learning_rate",
        "batch_size",
        "optimizer",
        "accuracy",
    ]
    labels = {text.get_text() for text in fig.axes[0].texts}
    assert {"0.0001", "0.001", "0.01", "sgd", "adam", "32", "64"} <= labels
    assert len(figures.render(fig, "svg")) > 1000


def test_parallel_coordinates_lower_is_better_puts_the_lowest_on_top():
    axes = [figures.ParallelAxis("a", [1, 2, 3]), figures.ParallelAxis("b", ["x", "y", "z"])]
    metric = figures.ParallelAxis("loss", [0.3, 0.1, 0.2])
    fig = figures.parallel_coordinates(axes, metric=metric, best=1, higher_is_better=False)
    # Drawn worst first, so the best lines are on top of the pile.
    drawn = [
        line.get_ydata()[-1]
        for line in fig.axes[0].get_lines()
        if len(line.get_xdata()) == 3 and line.get_label() != "best"
    ]
    np.testing.assert_allclose(drawn, [1.0, 0.5])


@pytest.mark.parametrize(
    ("positions", "log", "shown"),
    [
        # Sparsities crowd at the top: their ticks stay, their labels would overlap.
        ([0, 0.5, 0.8, 0.9, 0.92, 0.95, 0.98], False, ["0", "0.5", "0.8", "", "", "", "0.98"]),
        ([16, 32, 64, 256, 512, 1024], True, ["16", "32", "64", "256", "512", "1024"]),
        ([1, 2, 100], False, ["1", "", "100"]),  # the ends always keep their labels
    ],
)
def test_crowded_tick_labels_are_blanked_but_the_ends_kept(positions, log, shown):
    labels = [f"{p:g}" for p in positions]
    assert figures._spaced_labels(positions, labels, log=log) == shown


def _outside(fig) -> list[float]:
    """How far (in inches) what the figure draws reaches beyond its left, bottom, right and top
    edges; a fixed page size would cut that off. Empty when everything is inside."""
    fig.canvas.draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())
    width, height = fig.get_size_inches()
    overshoot = [-drawn.x0, -drawn.y0, drawn.x1 - width, drawn.y1 - height]
    return [round(o, 3) for o in overshoot if o > 0.01]


@pytest.mark.parametrize("venue_name", ["article", "neurips2024", "jmlr2001"])
def test_every_figure_kind_keeps_its_text_inside_the_venues_width(tmp_path, venue_name):
    """No tight bounding box rescues text outside the figure any more: each kind, at the
    venue's width, lays out its labels, ticks and legend inside it."""
    from sweepbook.report import build_context
    from sweepbook.venues import venue_named
    from synthetic_store import write_synthetic_store

    axes = {
        "optimizer.learning_rate": [3e-4, 1e-3, 3e-3],
        "train.batch_size": [16, 64],
        "model.dropout": [0.0, 0.2],
    }
    store = write_synthetic_store(tmp_path / "store", axes, seeds=2, epochs=4)
    _, planned, venue = build_context(store, venue_name)
    assert venue == venue_named(venue_name)
    for figure in planned:
        assert figure.figure.get_figwidth() in (venue.column_width_in, venue.text_width_in)
        assert _outside(figure.figure) == [], figure.name
        figures.close(figure.figure)


def test_computer_modern_figures_are_set_in_the_10_point_design():
    """Latin Modern Roman installs lmroman5 to lmroman17 under one family name, and matplotlib
    took whichever its font directories listed first: on one machine the 5-point design, whose
    wide letters ran the importance figure's x label past the figure's edge."""
    from pathlib import Path

    from matplotlib import font_manager

    if figures.installed_family("computer-modern") == "DejaVu Serif":
        pytest.skip("Latin Modern Roman is not installed (Debian: texlive-latex-base)")

    family = figures.installed_family("computer-modern")
    for weight, style in [("normal", "normal"), ("bold", "normal"), ("normal", "italic")]:
        properties = font_manager.FontProperties(family=family, weight=weight, style=style)
        found = font_manager.findfont(properties, fallback_to_default=False)
        assert Path(found).name.startswith("lmroman10-"), (weight, style, found)
    assert figures.text_design("DejaVu Serif") == "DejaVu Serif"


def test_a_legend_too_wide_for_four_columns_takes_fewer():
    long = "learning_rate=0.0003, batch_size=16, dropout=0.2, weight_decay=0.0001"
    curves = [
        figures.Curve(f"{long} #{i}", np.arange(1, 5), np.ones(4) * i, np.zeros(4))
        for i in range(6)
    ]
    fig = figures.learning_curves([figures.Panel("training", "loss", curves)], columns=1)
    assert fig.get_figwidth() == figures.ARTICLE.column_width_in
    assert _outside(fig) == []
    assert len(fig.legends) == 1


# --- tooltips: each mark's configuration as an SVG <title> -----------------------------------

_SVG_NS = "{http://www.w3.org/2000/svg}"


def _titles(svg: bytes) -> list[str]:
    from xml.etree import ElementTree

    return [title.text or "" for title in ElementTree.fromstring(svg).iter(f"{_SVG_NS}title")]


def _tooltips(fig) -> list[str]:
    """The titles of ``fig``'s SVG as the report writes it; the figure is closed."""
    svg = figures.svg_with_tooltips(figures.render(fig, "svg"))
    figures.close(fig)
    return _titles(svg)


def _tipped_heatmap(tips: list[list[str]]):
    return figures.heatmap(
        np.array([[0.9, 0.95], [0.85, 0.8]]),
        row_labels=["a", "b"],
        column_labels=["x", "y"],
        xlabel="x",
        ylabel="y",
        value_label="acc",
        best=(0, 1),
        tips=tips,
    )


def test_heatmap_cells_carry_their_configuration_in_row_order():
    from xml.etree import ElementTree

    tips = [["x=1, y=a: acc 0.9", "x=2, y=a: acc 0.95"], ["x=1, y=b: acc 0.85", "x=2 <&> b"]]
    fig = _tipped_heatmap(tips)
    svg = figures.svg_with_tooltips(figures.render(fig, "svg"))
    figures.close(fig)
    cells = [
        path
        for path in ElementTree.fromstring(svg).iter(f"{_SVG_NS}path")
        if path.find(f"{_SVG_NS}title") is not None
    ]
    assert [cell.find(f"{_SVG_NS}title").text for cell in cells] == [t for row in tips for t in row]
    assert b"sweepbook-tips" not in svg  # the tag became titles; no free text left as an id


def test_a_tooltip_changes_the_svg_only():
    """PDF and PNG ignore the tags: the paper's files are the same with or without tooltips."""
    tipped, plain = _tipped_heatmap([["a", "b"], ["c", "d"]]), _tipped_heatmap([])
    for file_format in ("pdf", "png"):
        assert figures.render(tipped, file_format) == figures.render(plain, file_format)
    assert figures.render(tipped, "svg") != figures.render(plain, "svg")
    figures.close(tipped)
    figures.close(plain)


def test_an_untagged_figure_keeps_its_svg_bytes():
    fig = _tipped_heatmap([])
    raw = figures.render(fig, "svg")
    figures.close(fig)
    assert figures.svg_with_tooltips(raw) == raw
    assert _titles(raw) == []


def test_metric_points_seed_dots_pareto_points_and_parallel_lines_are_tipped():
    series = figures.Series(
        "s",
        np.array([1.0, 2.0]),
        np.array([0.9, 0.95]),
        np.array([0.01, 0.02]),
        np.array([1.0, 1.0, 2.0]),
        np.array([0.89, 0.91, 0.95]),
        tips=["lr=1: acc 0.9", "lr=2: acc 0.95"],
        seed_tips=["lr=1, seed 0", "lr=1, seed 1", "lr=2, seed 0"],
    )
    metric = figures.metric_vs_axis(
        [series], xlabel="lr", ylabel="acc", log_x=False, ticks=None, categorical=False
    )
    assert sorted(_tooltips(metric)) == [
        "lr=1, seed 0",
        "lr=1, seed 1",
        "lr=1: acc 0.9",
        "lr=2, seed 0",
        "lr=2: acc 0.95",
    ]
    points = [
        figures.ParetoPoint(f"p{i}", 10.0**i, 0.9, 0.01, i > 0, i == 2, tip=f"size {i}")
        for i in range(3)
    ]
    pareto = figures.pareto(points, xlabel="bytes", ylabel="acc")
    assert _tooltips(pareto) == [
        "size 0",
        "size 1",
        "size 2",
    ]
    parallel = figures.parallel_coordinates(
        [figures.ParallelAxis("lr", [1, 2, 3])],
        metric=figures.ParallelAxis("acc", [0.8, 0.9, 0.85]),
        best=1,
        higher_is_better=True,
        tips=["lr=1", "lr=2", "lr=3"],
    )
    titles = _tooltips(parallel)
    assert sorted(titles) == ["lr=1", "lr=2", "lr=3"]  # drawn worst first, the best on top


def test_marks_skipped_for_missing_values_leave_every_text_on_their_group():
    """A NaN point draws no marker: titles can no longer be matched to marks one by one, so the
    group names them all rather than pinning a text on the wrong point."""
    series = figures.Series(
        "s",
        np.array([1.0, 2.0, 3.0]),
        np.array([0.9, np.nan, 0.95]),
        np.zeros(3),
        np.array([]),
        np.array([]),
        tips=["lr=1", "lr=2", "lr=3"],
    )
    metric = figures.metric_vs_axis(
        [series], xlabel="lr", ylabel="acc", log_x=False, ticks=None, categorical=False
    )
    assert _tooltips(metric) == ["lr=1\nlr=2\nlr=3"]


def test_a_blank_heatmap_cell_gets_no_tooltip_and_the_others_keep_theirs():
    fig = figures.heatmap(
        np.array([[0.9, np.nan], [0.8, 0.7]]),
        row_labels=["a", "b"],
        column_labels=["x", "y"],
        xlabel="x",
        ylabel="y",
        value_label="acc",
        best=None,
        tips=[["x, a", ""], ["x, b", "y, b"]],
    )
    assert _tooltips(fig) == [
        "x, a",
        "x, b",
        "y, b",
    ]
