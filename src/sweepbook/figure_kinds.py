"""Figure kinds as data: the :data:`FIGURES` registry of :class:`FigureSpec` entries, each saying
when its figure applies to a sweep, how it is built, its file name, title and caption; and the
builders that turn a sweep's summary into matplotlib figures (drawn by :mod:`sweepbook.figures`).

The report draws every registered kind that applies, in registration order. A new kind is one
entry, from any module, the way the built-ins below are registered::

    from sweepbook.figure_kinds import FIGURES, FigureSpec

    FIGURES.register("histogram", FigureSpec(
        stem="histogram", title="...", caption=lambda data: "...", build=draw_histogram,
        applies=lambda data: data.ok.height > 1,
    ))
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from sweepbook import figures, importance
from sweepbook.registry import Registry
from sweepbook.rung_report import HalvingView
from sweepbook.stats import pareto_front, per_epoch
from sweepbook.tables import any_compressed, config_label, format_stat, format_value, short_key
from sweepbook.venues import Venue

# Learning curves: one figure per metric, a row of panels per split.
CURVE_METRICS = ("loss", "accuracy")
CURVE_SPLITS = (("train", "training"), ("val", "validation"))
# Series a line figure draws at most: eight colours, then the same colours dashed; beyond
# about this many lines a reader can no longer tell them apart. Larger sweeps show their best.
MAX_SERIES = 12
# Regression figures: outputs drawn side by side at most (the first ones of a wider target),
# and points per panel at most (evenly thinned beyond: an SVG of every point of a large test
# set times its seeds would be megabytes, and the cloud's shape is the same).
MAX_OUTPUT_PANELS = 3
MAX_POINTS = 5000


@dataclass(frozen=True)
class PlannedFigure:
    name: str
    title: str
    caption: str
    figure: Figure


def has_values(frame: pl.DataFrame, column: str) -> bool:
    """Whether ``frame`` stores ``column`` with at least one finite value: a regression run's
    history keeps the accuracy columns, all NaN."""
    if column not in frame.columns:
        return False
    values = frame[column]
    if values.dtype.is_float():
        return bool(values.is_finite().any())
    return values.null_count() < values.len()


def _is_numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def tooltip(row: dict[str, Any], keys: Sequence[str], metric: str) -> str:
    """A configuration and its mean metric, as the report shows it on hover over its mark:
    "learning_rate=0.003, batch_size=16: test.accuracy 0.9691 ± 0.0077"."""
    stat = format_stat(row[f"{metric}:mean"], row.get(f"{metric}:std"))
    return f"{config_label(row, keys)}: {metric} {stat}"


def seed_tooltip(run: dict[str, Any], keys: Sequence[str], metric: str) -> str:
    """One run's configuration, seed and metric, shown on hover over its dot."""
    value = format_stat(run[metric], None)
    return f"{config_label(run, keys)}, seed {run.get('seed')}: {metric} {value}"


def best_rows(
    summary: pl.DataFrame, metric: str, direction: Literal["max", "min"], count: int
) -> pl.DataFrame:
    """The ``count`` configurations with the best mean ``metric``, best first."""
    return summary.sort(f"{metric}:mean", descending=direction == "max", nulls_last=True).head(
        count
    )


def learning_curve_figure(
    summary: pl.DataFrame,
    history: pl.DataFrame,
    compare: list[str],
    metric: str,
    *,
    selected: bool = False,
    venue: Venue = figures.ARTICLE,
) -> Figure:
    """One metric over epochs: a row of panels per split (training, validation) that the history
    records; columns are values of the last compared axis (when there are two or more). When
    ``summary`` holds a ``selected`` few of many configurations (the best ones), each split gets
    one full-width panel of them all instead, since a column per value would be mostly empty."""
    panel_axis = compare[-1] if len(compare) >= 2 and not selected else None
    line_axes = compare[:-1] if panel_axis else compare
    panel_values = (
        summary[panel_axis].unique(maintain_order=True).to_list() if panel_axis else [None]
    )
    splits = [(s, label) for s, label in CURVE_SPLITS if has_values(history, f"{s}.{metric}")]
    panels = []
    for split, split_label in splits:
        for value in panel_values:
            curves = []
            for row in summary.iter_rows(named=True):
                if panel_axis and row[panel_axis] != value:
                    continue
                curve = per_epoch(history, row["run_ids"], f"{split}.{metric}")
                curves.append(
                    figures.Curve(
                        label=config_label(row, line_axes),
                        epochs=curve["epoch"].to_numpy(),
                        mean=curve["mean"].to_numpy(),
                        std=curve["std"].to_numpy(),
                    )
                )
            title = split_label
            if panel_axis is not None:
                title += f", {short_key(panel_axis)}={format_value(value)}"
            panels.append(
                figures.Panel(title=title, ylabel=f"{split_label} {metric}", curves=curves)
            )
    return figures.learning_curves(
        panels,
        columns=len(panel_values) if panel_axis else len(splits),
        wide=selected,
        venue=venue,
    )


def parallel_figure(
    summary: pl.DataFrame,
    compare: list[str],
    metric: str,
    direction: Literal["max", "min"],
    best: int | None,
    venue: Venue = figures.ARTICLE,
    labels: dict[str, str] | None = None,
) -> Figure:
    """Every configuration across its swept values and its mean metric (three or more axes)."""
    return figures.parallel_coordinates(
        [
            figures.ParallelAxis((labels or {}).get(axis, short_key(axis)), summary[axis].to_list())
            for axis in compare
        ],
        metric=figures.ParallelAxis(
            f"{(labels or {}).get(metric, metric)} (mean)", summary[f"{metric}:mean"].to_list()
        ),
        best=best,
        higher_is_better=direction == "max",
        venue=venue,
        tips=[tooltip(row, compare, metric) for row in summary.iter_rows(named=True)],
    )


def _schedules_vary(history: pl.DataFrame) -> bool:
    """Whether any run's learning rate changed during training (constant rates need no plot)."""
    if history.is_empty():
        return False
    per_run = history.group_by("run_id").agg(pl.col("lr").n_unique().alias("values"))
    return bool((per_run["values"] > 1).any())


def heatmap_figure(
    summary: pl.DataFrame,
    compare: list[str],
    metric: str,
    best: int | None,
    venue: Venue = figures.ARTICLE,
    labels: dict[str, str] | None = None,
    coloured: bool = True,
) -> Figure:
    """Mean metric on the grid of the two compared axes (rows: the second, columns: the first);
    ``coloured=False`` when every difference is within seed noise (:func:`figures.heatmap`)."""
    columns_axis, rows_axis = compare
    column_values = summary[columns_axis].unique(maintain_order=True).to_list()
    row_values = summary[rows_axis].unique(maintain_order=True).to_list()
    if _is_numeric(column_values):
        column_values = sorted(column_values)
    if _is_numeric(row_values):
        row_values = sorted(row_values)
    columns = {format_value(v): j for j, v in enumerate(column_values)}
    rows = {format_value(v): i for i, v in enumerate(row_values)}
    values = np.full((len(row_values), len(column_values)), np.nan)
    tips = [[""] * len(column_values) for _ in row_values]
    best_cell = None
    for index, row in enumerate(summary.iter_rows(named=True)):
        cell = rows[format_value(row[rows_axis])], columns[format_value(row[columns_axis])]
        values[cell] = row[f"{metric}:mean"]
        tips[cell[0]][cell[1]] = tooltip(row, compare, metric)
        if index == best:
            best_cell = cell
    return figures.heatmap(
        values,
        row_labels=[format_value(v) for v in row_values],
        column_labels=[format_value(v) for v in column_values],
        xlabel=(labels or {}).get(columns_axis, columns_axis),
        ylabel=(labels or {}).get(rows_axis, rows_axis),
        value_label=(labels or {}).get(metric, metric),
        best=best_cell,
        venue=venue,
        coloured=coloured,
        tips=tips,
    )


def summed_over_runs(runs: pl.DataFrame, run_ids: list[str], column: str) -> np.ndarray:
    """Element-wise sum of an array-valued column (counts, per-bin sums) over ``run_ids``."""
    values = runs.filter(pl.col("run_id").is_in(run_ids))[column].to_list()
    return np.sum([np.array(value, dtype=float) for value in values], axis=0)


def confusion_figure(
    runs: pl.DataFrame, run_ids: list[str], venue: Venue = figures.ARTICLE
) -> Figure:
    counts = summed_over_runs(runs, run_ids, "test.confusion")
    return figures.confusion_matrix(counts, title="test set", venue=venue)


def reliability_figure(
    runs: pl.DataFrame, run_ids: list[str], venue: Venue = figures.ARTICLE
) -> Figure:
    return figures.reliability_diagram(
        *(
            summed_over_runs(runs, run_ids, f"test.{name}")
            for name in (
                "reliability_count",
                "reliability_confidence_sum",
                "reliability_correct_sum",
            )
        ),
        title="test set",
        venue=venue,
    )


def pooled_predictions(runs: pl.DataFrame, run_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Test-set predictions and targets ``[M, outputs]`` of ``run_ids``, their runs stacked
    (each run stores them flattened row-major, with ``test.outputs`` per example)."""
    chosen = runs.filter(pl.col("run_id").is_in(run_ids) & pl.col("test.predictions").is_not_null())
    outputs = chosen["test.outputs"].to_list() if "test.outputs" in chosen.columns else []
    predicted, target = [], []
    for index, (values, truth) in enumerate(
        zip(chosen["test.predictions"].to_list(), chosen["test.targets"].to_list(), strict=True)
    ):
        width = int(outputs[index] or 1) if outputs else 1
        predicted.append(np.asarray(values, dtype=float).reshape(-1, width))
        target.append(np.asarray(truth, dtype=float).reshape(-1, width))
    return np.concatenate(predicted), np.concatenate(target)


def thinned(count: int) -> np.ndarray:
    """Indices of at most :data:`MAX_POINTS` of ``count`` points, evenly spread."""
    if count <= MAX_POINTS:
        return np.arange(count)
    return np.linspace(0, count - 1, MAX_POINTS).round().astype(int)


def output_predictions(runs: pl.DataFrame, run_ids: list[str]) -> list[figures.OutputPredictions]:
    """The first :data:`MAX_OUTPUT_PANELS` outputs of ``run_ids``' pooled test predictions,
    each thinned to :data:`MAX_POINTS`."""
    predicted, target = pooled_predictions(runs, run_ids)
    shown = thinned(predicted.shape[0])
    several = predicted.shape[1] > 1
    return [
        figures.OutputPredictions(
            title=f"output {k + 1}" if several else "",
            predicted=predicted[shown, k],
            target=target[shown, k],
        )
        for k in range(min(predicted.shape[1], MAX_OUTPUT_PANELS))
    ]


def pareto_figure(
    summary: pl.DataFrame,
    compare: list[str],
    metric: str,
    direction: Literal["max", "min"],
    cost: str,
    label: str,
    venue: Venue = figures.ARTICLE,
    labels: dict[str, str] | None = None,
) -> Figure:
    costs = summary[f"{cost}:mean"].to_list()
    means = summary[f"{metric}:mean"].to_list()
    front = pareto_front(costs, means, direction)
    points = [
        figures.ParetoPoint(
            label=config_label(row, compare),
            cost=row[f"{cost}:mean"],
            mean=row[f"{metric}:mean"],
            std=row[f"{metric}:std"] or 0.0,
            on_front=on_front,
            # Uncompressed: every parameter stored as a float32.
            baseline=row["model_bytes:mean"] >= row["params:mean"] * 4,
            tip=f"{tooltip(row, compare, metric)}, {label} {row[f'{cost}:mean']:,.0f}",
        )
        for row, on_front in zip(summary.iter_rows(named=True), front, strict=True)
    ]
    return figures.pareto(
        points, xlabel=label, ylabel=(labels or {}).get(metric, metric), venue=venue
    )


def schedule_figure(
    summary: pl.DataFrame,
    history: pl.DataFrame,
    compare: list[str],
    venue: Venue = figures.ARTICLE,
) -> Figure:
    """The learning rate over epochs, one curve per configuration."""
    curves = []
    for row in summary.iter_rows(named=True):
        curve = per_epoch(history, row["run_ids"], "lr")
        curves.append(
            figures.Curve(
                label=config_label(row, compare),
                epochs=curve["epoch"].to_numpy(),
                mean=curve["mean"].to_numpy(),
                std=np.zeros(curve.height),
            )
        )
    panel = figures.Panel(title="learning rate", ylabel="learning rate", curves=curves)
    return figures.learning_curves([panel], columns=1, wide=True, venue=venue)


def metric_figure(
    runs: pl.DataFrame,
    summary: pl.DataFrame,
    compare: list[str],
    metric: str,
    direction: Literal["max", "min"],
    *,
    sampled: bool,
    venue: Venue = figures.ARTICLE,
    labels: dict[str, str] | None = None,
) -> Figure:
    """Headline metric against the first compared axis; one series per value of the others
    (the :data:`MAX_SERIES` holding the best configurations, when there are more). Sampled
    sweeps (random or model-based search) show every point as one unjoined series."""
    axis, others = compare[0], ([] if sampled else compare[1:])
    x_values = summary[axis].unique(maintain_order=True).to_list()
    numeric = _is_numeric(x_values)
    if numeric:
        x_values = sorted(x_values)
    positions = {
        format_value(v): (float(v) if numeric else float(i)) for i, v in enumerate(x_values)
    }
    log_x = numeric and min(x_values) > 0 and max(x_values) / min(x_values) >= 10
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in summary.iter_rows(named=True):
        groups.setdefault(config_label(row, others), []).append(row)
    if len(groups) > MAX_SERIES:  # the series holding the best configurations
        shown = best_rows(summary, metric, direction, len(summary))
        keep = list(dict.fromkeys(config_label(r, others) for r in shown.iter_rows(named=True)))
        groups = {label: groups[label] for label in keep[:MAX_SERIES]}
    series = []
    for label, rows in groups.items():
        rows = sorted(rows, key=lambda r: positions[format_value(r[axis])])
        ids = [rid for r in rows for rid in r["run_ids"]]
        seed_rows = runs.filter(pl.col("run_id").is_in(ids))
        series.append(
            figures.Series(
                label=label,
                x=np.array([positions[format_value(r[axis])] for r in rows]),
                mean=np.array([r[f"{metric}:mean"] for r in rows], dtype=float),
                std=np.nan_to_num(np.array([r[f"{metric}:std"] for r in rows], dtype=float)),
                seeds_x=np.array([positions[format_value(v)] for v in seed_rows[axis].to_list()]),
                seeds_y=seed_rows[metric].to_numpy().astype(float),
                tips=[tooltip(r, compare, metric) for r in rows],
                seed_tips=[
                    seed_tooltip(r, compare, metric) for r in seed_rows.iter_rows(named=True)
                ],
            )
        )
    return figures.metric_vs_axis(
        series,
        xlabel=(labels or {}).get(axis, axis),
        ylabel=(labels or {}).get(metric, metric),
        log_x=log_x,
        ticks=None
        if sampled and numeric
        else [(positions[format_value(v)], format_value(v)) for v in x_values],
        categorical=not numeric,
        join=not sampled,
        venue=venue,
    )


# --- the figure kinds ------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureData:
    """What a figure kind may draw from: a sweep whose runs include at least one that finished.
    Derived views (the best configuration, the rows line figures show) are computed once."""

    ok: pl.DataFrame  # the runs that finished ("ok"), one row each
    history: pl.DataFrame  # every planned run's epochs
    summary: pl.DataFrame  # one row per configuration (stats.summarize, compare_to_best)
    compare: list[str]  # the compared axes
    metric: str  # the headline
    direction: Literal["max", "min"]
    best: int | None  # the best configuration's row in ``summary``
    seeds_text: str  # what each configuration replicates over, for captions
    sampled: bool  # random or model-based search: points, not lines
    venue: Venue
    labels: dict[str, str]  # the sweep's [report.labels] for axes
    axes: list[str] = field(default_factory=list)  # every swept key (importance)
    halving: HalvingView | None = None  # a successive halving's rungs (rung_report)

    @functools.cached_property
    def importance(self) -> importance.ImportanceTable | None:
        """How much each swept key matters to the headline, where that can be asked."""
        keys = importance.swept_keys(self.ok, self.axes or self.compare)
        if not importance.importance_applies(keys, self.sampled):
            return None
        return importance.hyperparameter_importance(
            self.ok, metric=self.metric, keys=keys, sampled=self.sampled
        )

    @functools.cached_property
    def within_noise(self) -> bool:
        """Every configuration tied with the best (as the table's ≈ marks decide): nothing
        here is distinguishable from seed noise. False where ties were not tested."""
        ties = f"{self.metric}:tie"
        return (
            self.summary.height > 1
            and ties in self.summary.columns
            and bool(self.summary[ties].fill_null(False).all())
        )

    @functools.cached_property
    def best_row(self) -> dict[str, Any] | None:
        return None if self.best is None else self.summary.row(self.best, named=True)

    @functools.cached_property
    def compressed(self) -> bool:
        return any_compressed(self.ok)

    @property
    def crowded(self) -> bool:
        """Whether line figures show only the best configurations (too many to tell apart)."""
        return self.summary.height > MAX_SERIES

    @functools.cached_property
    def curve_rows(self) -> pl.DataFrame:
        """The configurations a line figure shows: all, or the best when crowded."""
        if not self.crowded:
            return self.summary
        return best_rows(self.summary, self.metric, self.direction, MAX_SERIES)

    @property
    def shown_note(self) -> str:
        """The caption's sentence saying a crowded figure shows the best configurations only."""
        if not self.crowded:
            return ""
        return (
            f" Shown: the {MAX_SERIES} best of {self.summary.height} configurations by mean "
            f"{self.metric}."
        )


Text = str | Callable[[FigureData], str]


@dataclass(frozen=True)
class FigureSpec:
    """One kind of figure. ``stem`` names its files under ``figures/`` (no extension); ``title``
    and ``caption`` are what the report shows beside it (the caption goes into the LaTeX snippet
    too). Each is a string or a function of the sweep's :class:`FigureData`. Whether the figure
    spans the text width follows from the width ``build`` draws it at."""

    stem: Text
    title: Text
    caption: Text
    build: Callable[[FigureData], Figure]
    applies: Callable[[FigureData], bool] = lambda data: True

    def plan(self, data: FigureData) -> PlannedFigure:
        """The figure drawn for ``data``, with its file stem, title and caption."""
        return PlannedFigure(
            _text(self.stem, data),
            _text(self.title, data),
            _text(self.caption, data),
            self.build(data),
        )


def _text(value: Text, data: FigureData) -> str:
    return value if isinstance(value, str) else value(data)


FIGURES: Registry[FigureSpec] = Registry("figure kind")


def plan_figures(data: FigureData) -> list[PlannedFigure]:
    """Every registered figure kind that applies to ``data``, in registration order."""
    return [spec.plan(data) for _, spec in FIGURES.items() if spec.applies(data)]


def _best(data: FigureData) -> dict[str, Any]:
    """The best configuration's summary row, for kinds that apply only when there is one."""
    assert data.best_row is not None, "applies() requires a best configuration"
    return data.best_row


def _learning_curves(curve_metric: str) -> FigureSpec:
    return FigureSpec(
        stem=f"learning_curves_{curve_metric}",
        title=f"Learning curves: {curve_metric}",
        caption=lambda d: (
            f"Training and validation {curve_metric} per epoch: mean over {d.seeds_text} "
            "per configuration, with a band of ± one standard deviation; each epoch "
            "averages the runs still training (early stopping ends runs at different "
            "epochs). Training values are averaged over each epoch's mini-batches." + d.shown_note
        ),
        build=lambda d: learning_curve_figure(
            d.curve_rows, d.history, d.compare, curve_metric, selected=d.crowded, venue=d.venue
        ),
        applies=lambda d: any(
            has_values(d.history, f"{split}.{curve_metric}") for split, _ in CURVE_SPLITS
        ),
    )


for _curve_metric in CURVE_METRICS:
    FIGURES.register(f"learning_curves_{_curve_metric}", _learning_curves(_curve_metric))

FIGURES.register(
    "learning_rate",
    FigureSpec(
        stem="learning_rate",
        title="Learning-rate schedules",
        caption=lambda d: (
            "Learning rate at the first step of each epoch, per configuration (mean over "
            "its runs: reduce-on-plateau can differ between seeds)." + d.shown_note
        ),
        build=lambda d: schedule_figure(d.curve_rows, d.history, d.compare, d.venue),
        applies=lambda d: _schedules_vary(d.history),
    ),
)
FIGURES.register(
    "heatmap",
    FigureSpec(
        stem=lambda d: f"heatmap_{short_key(d.compare[0])}_{short_key(d.compare[1])}",
        title=lambda d: f"{d.metric}: {d.compare[0]} × {d.compare[1]}",
        caption=lambda d: (
            f"Mean {d.metric} over {d.seeds_text} per cell; the best configuration is boxed."
            + (
                " Every configuration is within seed noise of the best (the table's ≈ test), "
                "so the cells are not coloured: a colour scale would show noise as structure."
                if d.within_noise
                else ""
            )
        ),
        build=lambda d: heatmap_figure(
            d.summary,
            d.compare,
            d.metric,
            d.best,
            d.venue,
            d.labels,
            coloured=not d.within_noise,
        ),
        applies=lambda d: (
            len(d.compare) == 2 and all(d.summary[axis].n_unique() > 1 for axis in d.compare)
        ),
    ),
)
FIGURES.register(
    "parallel_coordinates",
    FigureSpec(
        stem="parallel_coordinates",
        title=lambda d: f"{d.metric} across {len(d.compare)} swept axes",
        caption=lambda d: (
            f"Parallel coordinates: one line per configuration through its value on "
            f"each swept axis to its mean {d.metric} over {d.seeds_text}; lighter lines are "
            "better, the best configuration is black. Axes spanning two decades or "
            "more are logarithmic."
        ),
        build=lambda d: parallel_figure(
            d.summary, d.compare, d.metric, d.direction, d.best, d.venue, d.labels
        ),
        applies=lambda d: len(d.compare) >= 3,
    ),
)
FIGURES.register(
    "confusion_matrix",
    FigureSpec(
        stem="confusion_matrix",
        title="Confusion matrix of the best configuration",
        caption=lambda d: (
            f"Test-set predictions of {config_label(_best(d), d.compare)}, summed over its "
            f"{_best(d)['n']} runs and normalized per true class."
        ),
        build=lambda d: confusion_figure(d.ok, _best(d)["run_ids"], d.venue),
        applies=lambda d: d.best_row is not None and "test.confusion" in d.ok.columns,
    ),
)
FIGURES.register(
    "reliability_diagram",
    FigureSpec(
        stem="reliability_diagram",
        title="Reliability diagram of the best configuration",
        caption=lambda d: (
            f"Test-set accuracy against confidence in {len(d.ok['test.reliability_count'][0])} "
            f"equal-width bins, over the {_best(d)['n']} runs of "
            f"{config_label(_best(d), d.compare)}; bars under the diagonal are over-confident."
        ),
        build=lambda d: reliability_figure(d.ok, _best(d)["run_ids"], d.venue),
        applies=lambda d: d.best_row is not None and "test.reliability_count" in d.ok.columns,
    ),
)


def _has_predictions(data: FigureData) -> bool:
    """A best configuration, some of whose runs stored their test predictions."""
    if data.best_row is None or not has_values(data.ok, "test.predictions"):
        return False
    runs = data.ok.filter(pl.col("run_id").is_in(data.best_row["run_ids"]))
    return bool(runs["test.predictions"].is_not_null().any())


def _predictions_note(data: FigureData) -> str:
    """What a regression figure of the best configuration shows: its runs, the outputs drawn,
    the points thinned."""
    predicted, _ = pooled_predictions(data.ok, _best(data)["run_ids"])
    count, outputs = predicted.shape
    note = (
        f"Test set of {config_label(_best(data), data.compare)}, pooled over its "
        f"{_best(data)['n']} runs ({count} points per output"
        + (f", an evenly spaced {MAX_POINTS} of them drawn" if count > MAX_POINTS else "")
        + ")."
    )
    if outputs > MAX_OUTPUT_PANELS:
        note += f" The first {MAX_OUTPUT_PANELS} of its {outputs} outputs are shown."
    elif outputs > 1:
        note += f" One panel per output ({outputs})."
    return note


def _pareto(cost: str, label: str) -> FigureSpec:
    return FigureSpec(
        stem=f"pareto_{cost}",
        title=lambda d: f"{d.metric} against {label}",
        caption=lambda d: (
            f"Mean ± standard deviation over {d.seeds_text}; the Pareto front (no "
            f"configuration is both smaller and better) is joined, dominated "
            "configurations are pale, the uncompressed baseline is the star."
        ),
        build=lambda d: pareto_figure(
            d.summary, d.compare, d.metric, d.direction, cost, label, d.venue, d.labels
        ),
        applies=lambda d: d.compressed,
    )


FIGURES.register("pareto_model_bytes", _pareto("model_bytes", "model size (bytes)"))
FIGURES.register("pareto_nonzero_params", _pareto("nonzero_params", "non-zero weights"))


def _metric_caption(data: FigureData) -> str:
    compare = data.compare
    series = 1 if data.sampled or len(compare) < 2 else data.summary.select(compare[1:]).n_unique()
    crowded = (
        f" Shown: the {MAX_SERIES} of {series} series (values of "
        f"{', '.join(map(short_key, compare[1:]))}) with the best configurations."
    )
    return f"Mean ± standard deviation over {data.seeds_text}; small dots are individual runs." + (
        crowded if series > MAX_SERIES else ""
    )


FIGURES.register(
    "metric_vs_axis",
    FigureSpec(
        stem=lambda d: f"{d.metric.replace('.', '_')}_vs_{short_key(d.compare[0])}",
        title=lambda d: f"{d.metric} against {d.compare[0]}",
        caption=_metric_caption,
        build=lambda d: metric_figure(
            d.ok,
            d.summary,
            d.compare,
            d.metric,
            d.direction,
            sampled=d.sampled,
            venue=d.venue,
            labels=d.labels,
        ),
        applies=lambda d: bool(d.compare),
    ),
)


def _importance(data: FigureData) -> importance.ImportanceTable:
    table = data.importance
    assert table is not None  # guaranteed by applies
    return table


FIGURES.register(
    "importance",
    FigureSpec(
        stem="importance",
        title="Hyper-parameter importance",
        caption=lambda d: _importance(d).caption,
        build=lambda d: importance.importance_figure(_importance(d), d.venue, d.labels),
        applies=lambda d: d.importance is not None,
    ),
)
FIGURES.register(
    "predicted_vs_true",
    FigureSpec(
        stem="predicted_vs_true",
        title="Predictions against true targets of the best configuration",
        caption=lambda d: (
            "Each test example's prediction against its true target; the dashed line y = x is "
            "a perfect prediction, points above it are over-estimates. " + _predictions_note(d)
        ),
        build=lambda d: figures.predicted_vs_true(
            output_predictions(d.ok, _best(d)["run_ids"]), venue=d.venue
        ),
        applies=_has_predictions,
    ),
)
FIGURES.register(
    "residuals",
    FigureSpec(
        stem="residuals",
        title="Residuals of the best configuration",
        caption=lambda d: (
            "Residual (prediction − target) of each test example against its prediction, with "
            "the zero line, and the residuals' histogram beside it: a trend or a funnel in the "
            "cloud is error the model could still explain. " + _predictions_note(d)
        ),
        build=lambda d: figures.residuals(
            output_predictions(d.ok, _best(d)["run_ids"]), venue=d.venue
        ),
        applies=_has_predictions,
    ),
)


def _halving(data: FigureData) -> HalvingView:
    view = data.halving
    assert view is not None  # guaranteed by applies
    return view


FIGURES.register(
    "rungs",
    FigureSpec(
        stem="rungs",
        title="Successive halving: the rung metric per configuration",
        caption=lambda d: (
            f"Mean {_halving(d).metric} over each configuration's {d.seeds_text} at the end of "
            "every rung it reached; the configurations that trained to the last rung are in "
            "colour (the results table's), those stopped at a rung pale grey."
        ),
        build=lambda d: figures.rung_lines(
            [
                figures.RungLine(c.label, c.epochs, c.means, c.reached_last, c.tip)
                for c in _halving(d).curves
            ],
            ylabel=f"mean {_halving(d).metric}",
            max_labelled=MAX_SERIES,
            venue=d.venue,
        ),
        applies=lambda d: d.halving is not None and bool(d.halving.curves),
    ),
)
