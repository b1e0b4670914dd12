"""Matplotlib figures: one function per kind, each taking prepared data and a venue and
returning a Figure.

Style lives here (:data:`BASE_STYLE` and :func:`figure_style`: serif fonts, the Okabe-Ito
colour-blind-safe palette) and the numbers in :mod:`sweepbook.venues`: every figure is exactly
its venue's column or text width wide, laid out by matplotlib's constrained layout (never a
tight bounding box, which would change the width), with its text at the venue's two font
sizes. Functions never set fonts, sizes or colours of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import shutil
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager, ticker
from matplotlib.figure import Figure
from matplotlib.text import Text

from sweepbook.latex import latex_text
from sweepbook.venues import (
    DEFAULT_VENUE,
    MATH_FONTSETS,
    TEXT_DESIGNS,
    TYPEFACES,
    Venue,
    venue_named,
)

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision
# deficiencies. Line styles cycle too, so more than eight series stay tellable apart.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
LINESTYLES = ("-", "--", ":", "-.")
FEW_EPOCHS = 3  # learning curves this short are drawn as points with error bars
ARTICLE = venue_named(DEFAULT_VENUE)

BASE_STYLE: dict[RcKeyType, Any] = {
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.2,
    "svg.hashsalt": "sweepbook",  # stable ids: same data, same SVG bytes
    "svg.fonttype": "path",  # text as paths: the SVG looks the same without our fonts
    "pdf.fonttype": 42,
    # Labels carry names from sweep files: "$..$" in a variant name is text, not mathtext
    # (which would fail to render on an unknown command and take the report down with it).
    "text.parse_math": False,
}


@functools.cache
def installed_family(typeface: str) -> str:
    """The first installed font family of ``typeface`` (in its design for text sizes, see
    :func:`text_design`); DejaVu Serif (which ships with matplotlib) when none of them is."""
    for family in TYPEFACES[typeface]:
        try:
            font_manager.findfont(
                font_manager.FontProperties(family=family), fallback_to_default=False
            )
        except ValueError:
            continue
        return text_design(family)
    return "DejaVu Serif"


def text_design(family: str) -> str:
    """The family of ``family``'s design for text sizes, where it installs one file per
    optical size under one name (:data:`venues.TEXT_DESIGNS`): those files are registered
    with matplotlib once more under a name of their own, so that every machine draws in the
    same design whatever order its font directories list them in. Other families as given."""
    if family not in TEXT_DESIGNS:
        return family
    prefix, name = TEXT_DESIGNS[family]
    fonts = font_manager.fontManager.ttflist
    designs = [f for f in fonts if f.name == family and Path(f.fname).name.startswith(prefix)]
    if not designs:  # an installation without that design: the family as matplotlib finds it
        return family
    registered = {f.fname for f in fonts if f.name == name}
    fonts.extend(dataclasses.replace(f, name=name) for f in designs if f.fname not in registered)
    return name


def figure_style(venue: Venue) -> dict[RcKeyType, Any]:
    """rcParams of a figure for ``venue``: its typeface (DejaVu Serif after it, for glyphs the
    face lacks) and its two sizes: labels and titles, then ticks, legends and cell numbers."""
    return {
        **BASE_STYLE,
        # Named families, not "serif": a text keeps the family it was made with, whereas
        # "serif" would be looked up again under the rcParams in force when the file is saved.
        "font.family": [installed_family(venue.typeface), "DejaVu Serif"],
        "mathtext.fontset": MATH_FONTSETS[venue.typeface],
        "font.size": venue.font_size,
        "axes.titlesize": venue.font_size,
        "axes.labelsize": venue.font_size,
        "figure.titlesize": venue.font_size,
        "legend.fontsize": venue.small_font_size,
        "legend.title_fontsize": venue.small_font_size,
        "xtick.labelsize": venue.small_font_size,
        "ytick.labelsize": venue.small_font_size,
    }


# Fixed metadata so that the same data gives the same bytes (no creation dates).
_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {"Software": None}}
_PNG_DPI = 200  # the web-view raster; papers take the vector files


# PGF: LaTeX sets the text in the paper's own fonts. pdflatex is the LaTeX most installations
# have; matplotlib asks it for text sizes while saving, so PGF needs it installed.
_PGF_STYLE: dict[RcKeyType, Any] = {"pgf.texsystem": "pdflatex", "pgf.rcfonts": False}
FORMATS = ("svg", "pdf", "png", "pgf")


@functools.cache
def available_formats() -> tuple[str, ...]:
    """The formats this machine can write: PGF only where ``pdflatex`` is installed."""
    return FORMATS if shutil.which("pdflatex") else tuple(f for f in FORMATS if f != "pgf")


@contextlib.contextmanager
def _latex_texts(fig: Figure) -> Iterator[None]:
    """Texts escaped for LaTeX while saving PGF (labels hold '_', '&', '%'), then restored.
    Named ticks are re-made from their formatter at each draw, so their formatters are
    swapped for escaped copies."""
    texts = [(text, text.get_text()) for text in fig.findobj(Text) if text.get_text()]
    formatters = [
        (axis, axis.get_major_formatter())
        for ax in fig.axes
        for axis in (ax.xaxis, ax.yaxis)
        # Named ticks; numeric formatters write numbers or math, which LaTeX takes as they are.
        if isinstance(axis.get_major_formatter(), ticker.FixedFormatter | ticker.FuncFormatter)
    ]
    try:
        for text, content in texts:
            text.set_text(latex_text(content))
        for axis, formatter in formatters:
            axis.set_major_formatter(
                ticker.FuncFormatter(
                    lambda value, position, name=formatter: latex_text(name(value, position))
                )
            )
        yield
    finally:
        for text, content in texts:
            text.set_text(content)
        for axis, formatter in formatters:
            axis.set_major_formatter(formatter)


def render(fig: Figure, file_format: str) -> bytes:
    """The figure as ``svg``, ``pdf``, ``png`` or ``pgf`` bytes, at exactly its own size.

    A PGF figure goes into LaTeX with ``\\input{name.pgf}`` after ``\\usepackage{pgf}`` and
    ``\\providecommand{\\mathdefault}[1]{#1}`` in the preamble (matplotlib's tick labels use
    it)."""
    buffer = io.BytesIO()
    pgf = file_format == "pgf"
    # The PGF writer takes no metadata; the others take it to leave dates out.
    options: dict[str, Any] = {} if pgf else {"metadata": _METADATA.get(file_format)}
    with (
        plt.rc_context({**BASE_STYLE, **(_PGF_STYLE if pgf else {})}),
        _latex_texts(fig) if pgf else contextlib.nullcontext(),
    ):
        fig.savefig(
            buffer,
            format=file_format,
            dpi=_PNG_DPI if file_format == "png" else "figure",
            **options,
        )
    return buffer.getvalue()


# Tooltips: the report's inline SVG names each configuration a mark stands for. A drawing
# function tags an artist with its configurations (matplotlib writes the gid as the id of the
# artist's <g> group); after rendering, :func:`svg_with_tooltips` turns each tag into SVG
# <title> elements, which browsers show on hover. PDF, PNG and PGF ignore gids, and a figure
# with no tagged artist renders to the same bytes as before.
_TIPS_PREFIX = "sweepbook-tips:"
_SVG = "http://www.w3.org/2000/svg"
_XLINK = "http://www.w3.org/1999/xlink"
ElementTree.register_namespace("", _SVG)
ElementTree.register_namespace("xlink", _XLINK)
for _prefix, _uri in {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "cc": "http://creativecommons.org/ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
}.items():  # matplotlib's <metadata> block: kept under its usual prefixes
    ElementTree.register_namespace(_prefix, _uri)


def tag_tooltips(artist: Any, tips: Sequence[str]) -> None:
    """Tag ``artist`` with the configurations it draws: one text for the whole artist (a line),
    or one per mark in drawing order (the markers of a line or scatter, the cells of a mesh)."""
    if any(tips):
        artist.set_gid(_TIPS_PREFIX + json.dumps(list(tips), ensure_ascii=False))


def svg_with_tooltips(svg: bytes) -> bytes:
    """``svg`` with every tagged group's configurations as <title> elements. Each mark (a
    marker's <use>, a mesh cell's <path>) gets its own title when the tag holds one text per
    mark; otherwise (one text, or marks skipped for NaN values) the group gets all its texts."""
    if _TIPS_PREFIX.encode() not in svg:
        return svg
    root = ElementTree.fromstring(svg)
    for group in root.iter(f"{{{_SVG}}}g"):
        tag = group.get("id", "")
        if not tag.startswith(_TIPS_PREFIX):
            continue
        tips: list[str] = json.loads(tag.removeprefix(_TIPS_PREFIX))
        del group.attrib["id"]  # free text makes a poor id, and ids must be unique in a page
        marks = list(group.iter(f"{{{_SVG}}}use")) or group.findall(f"{{{_SVG}}}path")
        if len(tips) > 1 and len(marks) == len(tips):
            for mark, tip in zip(marks, tips, strict=True):
                if tip:  # an empty text: a mark that stands for no configuration (a blank cell)
                    ElementTree.SubElement(mark, f"{{{_SVG}}}title").text = tip
        else:
            title = ElementTree.Element(f"{{{_SVG}}}title")
            title.text = "\n".join(tip for tip in tips if tip)
            group.insert(0, title)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def close(fig: Figure) -> None:
    plt.close(fig)


def series_style(index: int) -> dict[str, Any]:
    """Colour of series ``index``; the line style changes each time the palette wraps."""
    return {
        "color": PALETTE[index % len(PALETTE)],
        "linestyle": LINESTYLES[(index // len(PALETTE)) % len(LINESTYLES)],
    }


@dataclass(frozen=True)
class Curve:
    """Mean and spread of one metric over epochs for one configuration."""

    label: str
    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray


@dataclass(frozen=True)
class Panel:
    title: str
    ylabel: str
    curves: Sequence[Curve]


def learning_curves(
    panels: Sequence[Panel], columns: int, *, wide: bool = False, venue: Venue = ARTICLE
) -> Figure:
    """Grid of panels; each curve a mean line with a shaded band of one std over seeds.
    Full text width when there are several columns or ``wide`` is asked for; the legend below
    the panels, in as many columns as fit that width."""
    rows = max(1, int(np.ceil(len(panels) / columns)))
    with plt.rc_context(figure_style(venue)):
        width = venue.text_width_in if columns > 1 or wide else venue.column_width_in
        fig, axes = plt.subplots(
            rows,
            columns,
            figsize=(width, 2.0 * rows),
            squeeze=False,
            sharex=True,
            layout="constrained",
        )
        # A configuration keeps its colour in every panel.
        order = list(dict.fromkeys(curve.label for panel in panels for curve in panel.curves))
        for ax, panel in zip(axes.flat, panels, strict=False):
            for curve in panel.curves:
                style = series_style(order.index(curve.label))
                if len(curve.epochs) <= FEW_EPOCHS:  # a line of one or two points hides them
                    ax.errorbar(
                        curve.epochs,
                        curve.mean,
                        yerr=curve.std,
                        label=curve.label,
                        marker="o",
                        ms=3,
                        capsize=2,
                        **style,
                    )
                    continue
                ax.plot(curve.epochs, curve.mean, label=curve.label, **style)
                ax.fill_between(
                    curve.epochs,
                    curve.mean - curve.std,
                    curve.mean + curve.std,
                    color=style["color"],
                    alpha=0.2,
                    lw=0,
                )
            ax.set_title(panel.title)
            ax.set_ylabel(panel.ylabel)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        # One legend for the figure, with every series of every panel, each once.
        entries: dict[str, Any] = {}
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                entries.setdefault(label, handle)
        labels, handles = list(entries), list(entries.values())
        if len(labels) > 1:
            _legend_within_width(fig, handles, labels)
    return fig


LEGEND_MAX_COLUMNS = 4


def _legend_within_width(fig: Figure, handles: list[Any], labels: list[str]) -> None:
    """A figure legend below the panels, no wider than the figure: as many columns (up to
    :data:`LEGEND_MAX_COLUMNS`) as fit, and labels wrapped when even one column is too wide.
    The figure grows taller by the legend's height, so that the panels keep theirs."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    available = fig.bbox.width * 0.98
    legend, needed = None, available
    for ncols in range(min(len(labels), LEGEND_MAX_COLUMNS), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)
        needed = legend.get_window_extent(renderer).width
        if needed <= available:
            break
        legend.remove()
        legend = None
    if legend is None:
        longest = max(len(label) for label in labels)
        characters = max(8, int(longest * available / needed) - 2)
        wrapped = [textwrap.fill(label, characters) for label in labels]
        legend = fig.legend(handles, wrapped, loc="outside lower center", ncols=1, frameon=False)
    fig.set_figheight(fig.get_figheight() + legend.get_window_extent(renderer).height / fig.dpi)


@dataclass(frozen=True)
class Series:
    """Headline metric against one axis: per-x mean and std, plus every seed's value."""

    label: str
    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    seeds_x: np.ndarray
    seeds_y: np.ndarray
    tips: Sequence[str] = ()  # per mean point: its configuration and value, shown on hover
    seed_tips: Sequence[str] = ()  # per seed's point, the same with the seed


def metric_vs_axis(
    series: Sequence[Series],
    *,
    xlabel: str,
    ylabel: str,
    log_x: bool,
    ticks: Sequence[tuple[float, str]] | None,
    categorical: bool,
    join: bool = True,
    venue: Venue = ARTICLE,
) -> Figure:
    """Mean ± std error bars per value of the axis, one series per other configuration, seeds
    as dots.

    ``ticks`` are (position, label) pairs: the swept values, or positions 0..k-1 of a categorical
    axis, so the axis names exactly the values that were run (None: automatic ticks, for
    sampled values). ``join=False`` draws points only. On a categorical axis points are
    not joined (there is nothing between two categories) and series are dodged sideways."""
    with plt.rc_context(figure_style(venue)):
        fig, ax = plt.subplots(figsize=(venue.column_width_in, 2.4), layout="constrained")
        for index, item in enumerate(series):
            style = series_style(index)
            shift = (index - (len(series) - 1) / 2) * 0.12 if categorical else 0.0
            if categorical or not join:
                style["linestyle"] = "none"
            bars = ax.errorbar(
                item.x + shift,
                item.mean,
                yerr=item.std,
                label=item.label,
                capsize=2,
                marker="o",
                ms=3,
                **style,
            )
            tag_tooltips(bars.lines[0], item.tips)
            dots = ax.scatter(
                item.seeds_x + shift, item.seeds_y, s=6, color=style["color"], alpha=0.45, lw=0
            )
            tag_tooltips(dots, item.seed_tips)
        if log_x:
            ax.set_xscale("log")
        if ticks is not None:
            labels = [label for _, label in ticks]
            if not categorical:
                labels = _spaced_labels([position for position, _ in ticks], labels, log=log_x)
            # Long or many category names would overlap side by side: slant them.
            slant = categorical and sum(len(label) for label in labels) > 40
            ax.set_xticks(
                [position for position, _ in ticks],
                labels,
                rotation=30 if slant else 0,
                ha="right" if slant else "center",
            )
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if len(series) > 1:
            ax.legend(frameon=False)
    return fig


MIN_LABEL_GAP = 0.1  # of the axis width: closer tick labels would overlap in a column figure


def _spaced_labels(positions: Sequence[float], labels: Sequence[str], *, log: bool) -> list[str]:
    """Labels of swept values, blank where a label would crowd the previous one (e.g. sparsity
    0.9, 0.92, 0.95, 0.98): every value keeps its tick, and the first and last keep their
    labels."""
    scaled = np.log10(positions) if log else np.asarray(positions, dtype=float)
    span = float(scaled.max() - scaled.min()) or 1.0
    shown = list(labels)
    last = scaled[0]
    for index in range(1, len(shown)):
        crowded = (scaled[index] - last) / span < MIN_LABEL_GAP
        next_to_end = index < len(shown) - 1 and (scaled[-1] - scaled[index]) / span < MIN_LABEL_GAP
        if crowded or next_to_end:
            shown[index] = ""
        else:
            last = scaled[index]
    return shown


@dataclass(frozen=True)
class ParetoPoint:
    label: str
    cost: float  # e.g. model bytes (the x axis, lower is better)
    mean: float
    std: float
    on_front: bool
    baseline: bool
    tip: str = ""  # its configuration and value, shown on hover


def pareto(
    points: Sequence[ParetoPoint], *, xlabel: str, ylabel: str, venue: Venue = ARTICLE
) -> Figure:
    """Value against cost on a log axis, ± std bars over seeds; the front joined and dark, the
    dominated points pale, the uncompressed baseline as a star."""
    with plt.rc_context(figure_style(venue)):
        fig, ax = plt.subplots(figsize=(venue.column_width_in, 2.6), layout="constrained")
        front = sorted((p for p in points if p.on_front), key=lambda p: p.cost)
        ax.plot(
            [p.cost for p in front], [p.mean for p in front], color=PALETTE[0], lw=1.0, zorder=1
        )
        for point in points:
            bars = ax.errorbar(
                point.cost,
                point.mean,
                yerr=point.std,
                marker="*" if point.baseline else "o",
                ms=8 if point.baseline else 3.5,
                color=PALETTE[5] if point.baseline else PALETTE[0],
                alpha=1.0 if point.on_front or point.baseline else 0.35,
                capsize=2,
                linestyle="none",
                zorder=2,
            )
            tag_tooltips(bars.lines[0], [point.tip])
        for point in front:
            ax.annotate(
                point.label,
                (point.cost, point.mean),
                fontsize=venue.small_font_size,
                xytext=(3, -8),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    return fig


@dataclass(frozen=True)
class RungLine:
    """One configuration across the rungs of a successive halving: its mean rung metric at
    the epochs each rung it reached ended on."""

    label: str
    epochs: Sequence[int]
    means: Sequence[float]
    reached_last: bool
    tip: str = ""  # its configuration and values, shown on hover


def rung_lines(
    lines: Sequence[RungLine], *, ylabel: str, max_labelled: int, venue: Venue = ARTICLE
) -> Figure:
    """Mean rung metric against epochs trained (log axis, ticks at the rungs' ends): the
    configurations that reached the last rung in colour and named in the legend (the first
    ``max_labelled``), the ones stopped at a rung pale grey beneath them."""
    with plt.rc_context(figure_style(venue)):
        fig, ax = plt.subplots(figsize=(venue.column_width_in, 2.6), layout="constrained")
        stopped = [line for line in lines if not line.reached_last]
        kept = [line for line in lines if line.reached_last]
        for line in stopped:
            (drawn,) = ax.plot(
                line.epochs, line.means, color="#999999", alpha=0.45, lw=0.8, marker="o", ms=2
            )
            tag_tooltips(drawn, [line.tip])
        for index, line in enumerate(kept):
            style = series_style(index)
            (drawn,) = ax.plot(
                line.epochs,
                line.means,
                lw=1.3,
                marker="o",
                ms=3,
                label=line.label if index < max_labelled else None,
                zorder=3,
                **style,
            )
            tag_tooltips(drawn, [line.tip])
        ends = sorted({epoch for line in lines for epoch in line.epochs})
        ax.set_xscale("log")
        if ends:
            # Rungs near the end (36 and 40 epochs) would print their labels over each other.
            ax.set_xticks(ends, _spaced_labels(ends, [str(end) for end in ends], log=True))
            ax.minorticks_off()
        ax.set_xlabel("epochs trained by the rung's end")
        ax.set_ylabel(ylabel)
        handles, labels = ax.get_legend_handles_labels()
        if handles:  # below the axes: configuration names are long, the column narrow
            _legend_within_width(fig, handles, labels)
    return fig


def _cells(ax: Any, values: np.ndarray, **style: Any) -> Any:
    """A matrix drawn as vector cells centred on integer positions, row 0 at the top (like
    ``imshow``, which would embed a raster image that PGF cannot stream)."""
    rows, columns = values.shape
    mesh = ax.pcolormesh(np.arange(columns + 1) - 0.5, np.arange(rows + 1) - 0.5, values, **style)
    ax.set_xlim(-0.5, columns - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    return mesh


def _write_in_cells(
    ax: Any,
    values: np.ndarray,
    template: str,
    shown: np.ndarray,
    high: np.ndarray,
    venue: Venue,
    *,
    dark_text: bool = False,
) -> None:
    """Each ``shown`` value written in its cell at the venue's small size; cells ``high`` get
    black text when ``dark_text`` (a light colour map end) and white otherwise, the others the
    opposite, so the number stays readable on its colour."""
    for (i, j), value in np.ndenumerate(values):
        if shown[i, j]:
            colour = "black" if bool(high[i, j]) == dark_text else "white"
            ax.text(
                j,
                i,
                template.format(value),
                ha="center",
                va="center",
                fontsize=venue.small_font_size,
                color=colour,
            )


def heatmap(
    values: np.ndarray,
    *,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    xlabel: str,
    ylabel: str,
    value_label: str,
    best: tuple[int, int] | None,
    venue: Venue = ARTICLE,
    coloured: bool = True,
    tips: Sequence[Sequence[str]] = (),
) -> Figure:
    """A two-axis grid: one cell per configuration, its value written in it, the best boxed.
    Missing configurations are NaN and left blank. Viridis is colour-blind safe and prints in
    grey. ``coloured=False`` (every difference within noise) draws every cell in one light grey
    and no colour bar: a colour scale would show noise as structure. ``tips``: each cell's
    configuration and value, row by row, shown on hover."""
    with plt.rc_context(figure_style(venue)):
        fig, ax = plt.subplots(
            figsize=(venue.column_width_in, 0.45 * len(row_labels) + 1.0), layout="constrained"
        )
        if coloured:
            image = _cells(ax, values, cmap="viridis")
        else:
            flat = np.where(np.isfinite(values), 0.0, np.nan)
            image = _cells(ax, flat, cmap="Greys", vmin=0.0, vmax=1.0)
        tag_tooltips(image, [tip for row in tips for tip in row])
        ax.set_xticks(range(len(column_labels)), column_labels)
        ax.set_yticks(range(len(row_labels)), row_labels)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(False)
        finite = values[np.isfinite(values)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        light = values > middle if coloured else np.ones_like(values, dtype=bool)
        _write_in_cells(ax, values, "{:.3f}", np.isfinite(values), light, venue, dark_text=True)
        if best is not None:
            ax.add_patch(
                plt.Rectangle(
                    (best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, lw=1.5, color=PALETTE[5]
                )
            )
        if coloured:
            colorbar = fig.colorbar(image, ax=ax, label=value_label)
            if colorbar.solids is not None:
                colorbar.solids.set_rasterized(False)  # vector, so that PGF can carry it
    return fig


def confusion_matrix(counts: np.ndarray, *, title: str, venue: Venue = ARTICLE) -> Figure:
    """Row-normalized confusion matrix (rows: true class), the share written in each cell."""
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    classes = counts.shape[0]
    with plt.rc_context(figure_style(venue)):
        side = venue.column_width_in
        fig, ax = plt.subplots(figsize=(side, side), layout="constrained")
        _cells(ax, shares, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_aspect("equal")
        ax.set_xticks(range(classes))
        ax.set_yticks(range(classes))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title)
        ax.grid(False)
        if classes <= 12:  # beyond that the numbers no longer fit their cells
            _write_in_cells(ax, shares, "{:.2f}", shares >= 0.005, shares > 0.5, venue)
    return fig


def reliability_diagram(
    counts: np.ndarray,
    confidence_sums: np.ndarray,
    correct_sums: np.ndarray,
    *,
    title: str,
    venue: Venue = ARTICLE,
) -> Figure:
    """Accuracy against confidence per bin (Guo et al., 2017): bars on the diagonal are
    calibrated, below it over-confident. Empty bins are left out."""
    bins = len(counts)
    occupied = counts > 0
    centers = (np.arange(bins) + 0.5) / bins
    accuracy = np.divide(correct_sums, counts, out=np.zeros(bins), where=occupied)
    confidence = np.divide(confidence_sums, counts, out=np.zeros(bins), where=occupied)
    with plt.rc_context(figure_style(venue)):
        side = venue.column_width_in
        fig, ax = plt.subplots(figsize=(side, side), layout="constrained")
        ax.bar(
            centers[occupied],
            accuracy[occupied],
            width=1 / bins,
            color=PALETTE[0],
            edgecolor="white",
            label="accuracy",
        )
        ax.plot(
            confidence[occupied],
            confidence[occupied],
            "o",
            ms=2.5,
            color=PALETTE[5],
            label="mean confidence",
        )
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, linestyle="--")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(title)
        ax.legend(frameon=False, loc="upper left")
    return fig


@dataclass(frozen=True)
class ParallelAxis:
    """One vertical axis: a swept key (or the metric) and each configuration's value on it."""

    label: str
    values: Sequence[Any]  # numbers, or category names


def _axis_positions(values: Sequence[Any]) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Values mapped to [0, 1] and the ticks to draw: numbers linearly (or logarithmically when
    positive and spanning two decades or more), categories evenly in first-seen order."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not numeric:
        names = list(dict.fromkeys(str(v) for v in values))
        spread = max(len(names) - 1, 1)
        ticks = [(i / spread, name) for i, name in enumerate(names)]
        return np.array([names.index(str(v)) / spread for v in values]), ticks
    raw = np.array(values, dtype=float)
    low, high = float(np.nanmin(raw)), float(np.nanmax(raw))
    log = low > 0 and high / low >= 100
    scaled = np.log10(raw) if log else raw
    scaled_low, scaled_high = (np.log10(low), np.log10(high)) if log else (low, high)
    span = scaled_high - scaled_low or 1.0
    distinct = sorted(set(raw[np.isfinite(raw)].tolist()))
    if len(distinct) > 6:  # sampled values or a metric: a few round ticks, not every value
        locator = ticker.LogLocator(numticks=6) if log else ticker.MaxNLocator(5)
        distinct = [v for v in locator.tick_values(low, high) if low <= v <= high]
    ticks = [(((np.log10(v) if log else v) - scaled_low) / span, f"{v:.3g}") for v in distinct]
    return (scaled - scaled_low) / span, ticks


def parallel_coordinates(
    axes: Sequence[ParallelAxis],
    *,
    metric: ParallelAxis,
    best: int | None,
    higher_is_better: bool,
    venue: Venue = ARTICLE,
    tips: Sequence[str] = (),
) -> Figure:
    """One line per configuration through its value on every swept axis, ending at its metric.
    Lines are coloured by the metric (cividis: colour-blind safe, prints in grey), better ones
    drawn on top; the best configuration is thick and black. ``tips``: each configuration's
    description, shown on hover over its line."""
    columns = [*axes, metric]
    positions = [_axis_positions(axis.values) for axis in columns]
    y = np.stack([scaled for scaled, _ in positions], axis=1)
    x = np.arange(len(columns))
    score = np.array(metric.values, dtype=float)
    finite = score[np.isfinite(score)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    shade = (score - low) / ((high - low) or 1.0)
    goodness = shade if higher_is_better else 1.0 - shade
    with plt.rc_context(figure_style(venue)):
        fig, ax = plt.subplots(figsize=(venue.text_width_in, 2.6), layout="constrained")
        colormap = plt.get_cmap("cividis")
        for index in np.argsort(np.nan_to_num(goodness, nan=-1.0)):
            if index == best:
                continue
            (line,) = ax.plot(x, y[index], color=colormap(goodness[index]), lw=0.8, alpha=0.8)
            tag_tooltips(line, tips[index : index + 1])
        if best is not None:
            (line,) = ax.plot(x, y[best], color="black", lw=2.0, label="best")
            tag_tooltips(line, tips[best : best + 1])
            ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        for column, (_, ticks) in enumerate(positions):
            ax.axvline(column, color="grey", lw=0.6)
            for position, label in ticks:
                ax.text(
                    column + 0.03,
                    position,
                    label,
                    fontsize=venue.small_font_size,
                    va="center",
                    zorder=3,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5},
                )
        ax.set_xticks(x, [axis.label for axis in columns])
        ax.set_xlim(-0.1, len(columns) - 0.6)
        ax.set_ylim(-0.05, 1.05)
        ax.set_yticks([])
        ax.grid(False)
        ax.spines["left"].set_visible(False)
    return fig


@dataclass(frozen=True)
class OutputPredictions:
    """One output's test-set predictions and true targets, pooled over runs (same length)."""

    title: str  # "output 2" where the target has several, else ""
    predicted: np.ndarray
    target: np.ndarray


def _panel_width(venue: Venue, panels: int) -> float:
    """A column for one panel, the text width for several side by side."""
    return venue.column_width_in if panels == 1 else venue.text_width_in


def _points(ax: Any, x: np.ndarray, y: np.ndarray) -> None:
    """Many small translucent dots: dense regions read darker, single points stay visible."""
    ax.scatter(x, y, s=4, color=PALETTE[0], alpha=0.35, lw=0)


def predicted_vs_true(outputs: Sequence[OutputPredictions], *, venue: Venue = ARTICLE) -> Figure:
    """Prediction against true target, one square panel per output, with the line y = x on
    which a perfect prediction lies; both axes share one range, so distance from the line reads
    the same in either direction."""
    width = _panel_width(venue, len(outputs))
    side = width / len(outputs)
    with plt.rc_context(figure_style(venue)):
        fig, axes = plt.subplots(
            1, len(outputs), figsize=(width, side + 0.3), squeeze=False, layout="constrained"
        )
        for ax, output in zip(axes.flat, outputs, strict=True):
            _points(ax, output.target, output.predicted)
            both = np.concatenate([output.target, output.predicted])
            low, high = float(both.min()), float(both.max())
            margin = 0.05 * ((high - low) or 1.0)
            limits = (low - margin, high + margin)
            ax.plot(limits, limits, color="grey", lw=0.8, linestyle="--", label="y = x")
            ax.set_xlim(limits)
            ax.set_ylim(limits)
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlabel("true target")
            ax.set_ylabel("prediction")
            if output.title:
                ax.set_title(output.title)
    return fig


HISTOGRAM_MAX_BINS = 40  # numpy's "auto" bins, at most this many (long tails would give more)


def residuals(outputs: Sequence[OutputPredictions], *, venue: Venue = ARTICLE) -> Figure:
    """Residual (prediction - target) against prediction per output, with the zero line, and
    beside it the residuals' histogram on the same vertical axis: structure in the scatter
    (a trend, a funnel) is error the model could still explain; the histogram shows their
    spread and skew."""
    width = _panel_width(venue, len(outputs))
    with plt.rc_context(figure_style(venue)):
        fig, axes = plt.subplots(
            1,
            2 * len(outputs),
            figsize=(width, 2.4),
            squeeze=False,
            sharey=False,
            width_ratios=[3, 1] * len(outputs),
            layout="constrained",
        )
        for index, output in enumerate(outputs):
            scatter, histogram = axes[0, 2 * index], axes[0, 2 * index + 1]
            residual = output.predicted - output.target
            _points(scatter, output.predicted, residual)
            scatter.axhline(0.0, color="grey", lw=0.8, linestyle="--")
            scatter.set_xlabel("prediction")
            scatter.set_ylabel("residual (prediction − target)" if index == 0 else "")
            if output.title:
                scatter.set_title(output.title)
            edges = np.histogram_bin_edges(residual, bins="auto")
            bins = edges if len(edges) <= HISTOGRAM_MAX_BINS + 1 else HISTOGRAM_MAX_BINS
            histogram.hist(
                residual, bins=bins, orientation="horizontal", color=PALETTE[0], alpha=0.8
            )
            histogram.axhline(0.0, color="grey", lw=0.8, linestyle="--")
            histogram.sharey(scatter)
            histogram.tick_params(labelleft=False)
            histogram.set_xlabel("count")
    return fig
