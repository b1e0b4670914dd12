"""Render a sweep's report from its store alone: Polars aggregation -> typed context ->
matplotlib figures -> Jinja HTML. Nothing here imports the training code.

A store directory holds what the report needs: ``sweep.json`` (what the sweep asked: axes,
metric, the run ids it planned), copies of the sweep and experiment files, ``provenance.json``,
and the Parquet results.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from sweepbook import figures, findings, importance, latex
from sweepbook.config import Sweep, metric_direction
from sweepbook.latex import PaperColumn, PaperTable, latex_escape
from sweepbook.plan import PlannedRun
from sweepbook.provenance import describe_devices
from sweepbook.stats import best_index, compare_to_best, pareto_front, per_epoch, summarize
from sweepbook.store import Store, StoreError, atomic_write, atomic_write_json, atomic_write_text
from sweepbook.venues import DEFAULT_VENUE, Venue, venue_named

SWEEP_RECORD = "sweep.json"
PROVENANCE = "provenance.json"
SWEEP_COPY = "sweep.toml"
EXPERIMENT_COPY = "experiment.toml"
REPORT_FILE = "index.html"
FIGURES_DIR = "figures"
TABLES_DIR = "tables"
REPORT_RECORD = "report.json"
VERIFICATION_FILE = "verification.json"  # written by ``sweepbook verify``
TABLE_METRICS = (
    "test.accuracy",
    "test.f1_macro",
    "test.ece",
    "test.loss",
    "val.accuracy",
    "val.loss",
)
# Learning curves: one figure per metric, a row of panels per split.
CURVE_METRICS = ("loss", "accuracy")
CURVE_SPLITS = (("train", "training"), ("val", "validation"))
# Median and IQM join the table when every configuration has at least this many runs: with
# fewer, the IQM trims nothing (n < 4) or next to nothing and both repeat the mean.
ROBUST_STATS_MIN_RUNS = 8
# Series a line figure draws at most: eight colours, then the same colours dashed; beyond
# about this many lines a reader can no longer tell them apart. Larger sweeps show their best.
MAX_SERIES = 12
PAPER_TABLE = "results.tex"  # what a paper shows: axes, headline, a few named metrics
FULL_TABLE = "results_full.tex"  # every column of the HTML table
# Decimals the full table shows at most: a dozen metric columns fit a landscape page only at
# three (the HTML table and runs.parquet keep every digit).
FULL_TABLE_DECIMALS = 3


# --- the record a run leaves for its report --------------------------------------------------


def seen_from_store(path: Path, directory: Path) -> str:
    """``path`` relative to the store ``directory``: what stays the same when a project is
    copied or moved whole, store included (see ownership.py)."""
    return os.path.relpath(path, directory.resolve())


def write_sweep_record(
    directory: Path, sweep: Sweep, plan: Sequence[PlannedRun], run_command: str
) -> None:
    """Save what the report needs to know about the sweep, beside its results."""
    record = {
        "name": sweep.name,
        "title": sweep.report.title or sweep.name,
        "question": sweep.question,
        "run_command": run_command,
        "metric": sweep.report.metric,
        "direction": metric_direction(sweep.report),
        "compare": sweep.report.compare if sweep.report.compare is not None else sweep.axes,
        "axes": sweep.axes,
        "sampled": sweep.random is not None or sweep.search is not None,
        "seeds": sorted({run.config.seed for run in plan}) or sweep.seeds,
        "replicates": _replicates_text(sweep, plan),
        "run_ids": [run.run_id for run in plan],
        "sweep_file": str(sweep.path),
        # The same file seen from the store: unchanged when a project is copied or moved whole.
        "sweep_file_from_store": seen_from_store(sweep.path, directory),
        "experiment_file": str(sweep.experiment_path),
        # Paper output; stores written before these keys existed render with the defaults.
        "venue": sweep.report.venue,
        "table": sweep.report.table,
        "table_ci": sweep.report.table_ci,
        "labels": sweep.report.labels,
    }
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / SWEEP_COPY, sweep.path.read_text(encoding="utf-8"))
    atomic_write_text(
        directory / EXPERIMENT_COPY, sweep.experiment_path.read_text(encoding="utf-8")
    )
    atomic_write_json(directory / SWEEP_RECORD, record)


def _replicates_text(sweep: Sweep, plan: Sequence[PlannedRun]) -> str:
    """What each configuration's runs replicate over: "3 seeds", "3 seeds × 5 folds", "1 seed
    × 5 repeats", or per variant when variants replicate differently."""
    folds = {run.config.data.fold for run in plan if run.config.data.folds is not None}

    def text(seeds: list[int], repeat: int) -> str:
        parts = [f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"]
        if sweep.folds is not None and folds:
            parts.append(f"{len(folds)} folds")
        if repeat > 1:
            parts.append(f"{repeat} repeats")
        return " × ".join(parts)

    default = text(sweep.seeds, sweep.repeat)
    if not sweep.variant_replicates:
        return default
    per_variant = {name: sweep.replicates(name) for name, _ in sweep.variants}
    return "; ".join(f"{name}: {text(r.seeds, r.repeat)}" for name, r in per_variant.items())


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(
            f"{path}: missing; is this a sweepbook store? (run 'sweepbook run' first)"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise StoreError(f"{path}: cannot read ({error})") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object")
    return data


# --- the context the template lays out ------------------------------------------------------


@dataclass(frozen=True)
class TableRow:
    cells: list[str]
    best: bool
    tie: bool = False  # not distinguishable from the best by seed noise


@dataclass(frozen=True)
class Table:
    caption: str
    headers: list[str]
    rows: list[TableRow]
    # The headline metric's column: the best (★) and tie (≈) marks go beside its value, not
    # beside the first axis value, where "≈ 0.2" would read as "about 0.2".
    marked_column: int | None = None


@dataclass(frozen=True)
class FigureView:
    id: str
    title: str
    caption: str
    data_uri: str
    files: list[tuple[str, str]]  # (label, relative href)
    wide: bool  # full text width rather than one column
    latex: str  # a figure environment to paste into a paper


@dataclass(frozen=True)
class TableFile:
    label: str
    href: str
    latex: str  # what to paste into a paper


@dataclass(frozen=True)
class PlannedFigure:
    name: str
    title: str
    caption: str
    figure: Figure


@dataclass(frozen=True)
class RunProblem:
    run_id: str
    status: str
    epochs: str  # epochs trained before the run stopped ("—" when it never trained)
    config: str
    error: str


@dataclass(frozen=True)
class ReportContext:
    name: str  # the sweep's, for LaTeX labels
    title: str
    question: str
    run_command: str
    metric: str
    direction: str
    seeds: list[int]
    counts: dict[str, int]
    best_summary: str
    table: Table
    problems: list[RunProblem]
    sweep_toml: str
    experiment_toml: str
    experiment_name: str
    provenance: list[tuple[str, str]]
    placement: Table
    paper_tables: dict[str, PaperTable]  # file name under tables/ -> table
    generated_at: str
    data_sha256: str
    notes: list[str]
    findings: dict[str, Any]  # findings.findings_record: numbers and sentences (report.json too)
    importance: importance.ImportanceTable | None


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, pl.Series):
        return format_value(value.to_list())
    return "—" if value is None else str(value)


def format_stat(mean: float | None, std: float | None, digits: int = 4) -> str:
    if mean is None or not np.isfinite(mean):
        return "—"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def config_label(row: dict[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{short_key(k)}={format_value(row[k])}" for k in keys) or "all runs"


def build_table(
    summary: pl.DataFrame,
    compare: list[str],
    metrics: list[str],
    best: int | None,
    replicates: str,
) -> Table:
    """One row per configuration; ``metrics[0]`` is the headline."""
    sized = "model_bytes:mean" in summary.columns
    tested = f"{metrics[0]}:p_vs_best" in summary.columns
    robust = tested and summary["n"].min() >= ROBUST_STATS_MIN_RUNS  # type: ignore[operator]
    headers = [
        *compare,
        "runs",
        f"{metrics[0]} (mean ± std)",
        *([f"{metrics[0]} median", f"{metrics[0]} IQM"] if robust else []),
        *([f"{metrics[0]} 95% CI", "p vs best"] if tested else []),
        *[f"{m} (mean ± std)" for m in metrics[1:]],
        *(["non-zero weights", "size (kB)", "compression"] if sized else []),
        "best epoch",
        "train s/run",
    ]
    rows = []
    for index, row in enumerate(summary.iter_rows(named=True)):
        cells = [format_value(row[k]) for k in compare] + [str(row["n"])]
        cells += [format_stat(row[f"{metrics[0]}:mean"], row[f"{metrics[0]}:std"])]
        if robust:
            cells += [format_stat(row[f"{metrics[0]}:{stat}"], None) for stat in ("median", "iqm")]
        if tested:
            low, high, p = (row[f"{metrics[0]}:{k}"] for k in ("ci_low", "ci_high", "p_vs_best"))
            cells += [
                f"[{low:.4f}, {high:.4f}]" if low is not None and np.isfinite(low) else "—",
                "—" if p is None or not np.isfinite(p) else f"{p:.3f}",
            ]
        cells += [format_stat(row[f"{m}:mean"], row[f"{m}:std"]) for m in metrics[1:]]
        if sized:
            # The ratio to the same model stored densely in float32.
            ratio = row["params:mean"] * 4 / row["model_bytes:mean"]
            cells += [
                f"{row['nonzero_params:mean']:,.0f}",
                f"{row['model_bytes:mean'] / 1000:,.1f}",
                f"{ratio:.1f}×",
            ]
        cells += [
            format_stat(row["best_epoch:mean"], None, 1),
            format_stat(row["train_seconds:mean"], None, 2),
        ]
        tie = bool(row.get(f"{metrics[0]}:tie")) and index != best
        rows.append(TableRow(cells=cells, best=index == best, tie=tie))
    caption = (
        f"Mean ± sample standard deviation over {replicates} per configuration. "
        f"Best mean {metrics[0]} marked ★"
        + (
            f"; ≈ marks configurations whose {metrics[0]} does not differ from the best's by "
            "more than seed noise (Welch's t-test, p ≥ 0.05). 95% CI: percentile bootstrap "
            "of the mean over the runs."
            + (
                " Median and IQM (interquartile mean: the mean of the middle half of the runs) "
                "are robust to a few outlying runs."
                if robust
                else ""
            )
            if tested
            else "."
        )
    )
    return Table(caption=caption, headers=headers, rows=rows, marked_column=len(compare) + 1)


# --- the paper tables (tables/*.tex) ---------------------------------------------------------


def _best_of(values: list[float | None], lower: bool) -> set[int]:
    """Rows holding the best of ``values`` (several when tied exactly)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return set()
    target = min(finite) if lower else max(finite)
    return {i for i, v in enumerate(values) if v == target}


def _stat(
    rows: list[dict[str, Any]],
    key: str,
    labels: dict[str, str],
    *,
    ties: set[int] | None = None,
    spread: bool = True,
    most_decimals: int = 4,
) -> PaperColumn:
    """Mean ± std of ``key`` per configuration, the best in bold (none for descriptions such
    as the best epoch); sizes in kB."""
    means = [row.get(f"{key}:mean") for row in rows]
    stds = [row.get(f"{key}:std") if spread else None for row in rows]
    best = set() if key in latex.NO_BEST else _best_of(means, latex.lower_is_better(key))
    return latex.stat_column(
        latex.human_label(key, labels),
        means,
        stds,
        best=best,
        ties=ties or set(),
        scale=1e-3 if key == "model_bytes" else 1.0,
        default_decimals={"model_bytes": 1, "best_epoch": 1, "train_seconds": 2}.get(key, 4),
        most_decimals=most_decimals,
    )


def build_paper_tables(
    summary: pl.DataFrame,
    record: dict[str, Any],
    compare: list[str],
    shown: list[str],
    best: int | None,
    replicates: str,
    *,
    sized: bool,
) -> dict[str, PaperTable]:
    """``results.tex``: what a paper shows (the compared axes, the headline metric as mean ± std,
    its CI when the sweep asks, the few metrics the sweep names); ``results_full.tex``: every
    column of the HTML table. Both mark the best in bold and ties with a dagger, as their
    captions say."""
    labels: dict[str, str] = record.get("labels", {})
    metric = shown[0]
    rows = list(summary.iter_rows(named=True))
    tested = f"{metric}:p_vs_best" in summary.columns
    robust = tested and summary["n"].min() >= ROBUST_STATS_MIN_RUNS  # type: ignore[operator]
    ties = {i for i, row in enumerate(rows) if tested and row.get(f"{metric}:tie") and i != best}
    axes = [
        latex.axis_column(
            latex.human_label(axis, labels),
            [row[axis] for row in rows],
            [format_value(row[axis]) for row in rows],
        )
        for axis in compare
    ]
    headline = _stat(rows, metric, labels, ties=ties)
    stds = [row.get(f"{metric}:std") for row in rows]

    def interval(most_decimals: int) -> PaperColumn:
        return latex.interval_column(
            "95% CI",
            [row.get(f"{metric}:ci_low") for row in rows],
            [row.get(f"{metric}:ci_high") for row in rows],
            latex.decimals_for(stds, 4, most_decimals),
        )

    named = [m for m in dict.fromkeys(record.get("table", [])) if m != metric]
    paper_columns = [
        *axes,
        headline,
        *([interval(4)] if tested and record.get("table_ci") else []),
        *[_stat(rows, m, labels) for m in named if f"{m}:mean" in summary.columns],
    ]
    full_columns = [
        *axes,
        # Runs per configuration, when they differ (the caption gives a count they share).
        *(
            [latex.axis_column("Runs", [row["n"] for row in rows], [str(row["n"]) for row in rows])]
            if len({row["n"] for row in rows}) > 1
            else []
        ),
        _stat(rows, metric, labels, ties=ties, most_decimals=FULL_TABLE_DECIMALS),
        *(
            [
                latex.stat_column(
                    name,
                    values := [row.get(f"{metric}:{stat}") for row in rows],
                    [None] * len(rows),
                    best=_best_of(values, latex.lower_is_better(metric)),
                    most_decimals=FULL_TABLE_DECIMALS,
                )
                for stat, name in (("median", "Median"), ("iqm", "IQM"))
            ]
            if robust
            else []
        ),
        *(
            [
                interval(FULL_TABLE_DECIMALS),
                latex.axis_column(
                    "p vs best",
                    [row.get(f"{metric}:p_vs_best") for row in rows],
                    [_p_value(row.get(f"{metric}:p_vs_best")) for row in rows],
                ),
            ]
            if tested
            else []
        ),
        *[
            _stat(rows, m, labels, most_decimals=FULL_TABLE_DECIMALS)
            for m in dict.fromkeys([*shown[1:], *named])
        ],
        *(
            [_stat(rows, "nonzero_params", labels), _stat(rows, "model_bytes", labels)]
            if sized
            else []
        ),
        _stat(rows, "best_epoch", labels, spread=False),
        _stat(rows, "train_seconds", labels, spread=False),
    ]
    headline_label = latex_escape(latex.human_label(metric, labels))
    marks = (
        f"; $^\\dagger$ marks configurations whose {headline_label} does not differ from the "
        "best's by more than seed noise (Welch's t-test, $p \\geq 0.05$)"
        if ties
        else ""
    )
    spread = f"mean $\\pm$ standard deviation over {latex_escape(replicates)} per configuration"
    interval_note = "; 95\\% CI: percentile bootstrap interval of the mean"
    name = str(record["name"])
    paper_caption = (
        f"{headline_label}: {spread}"
        + (interval_note if tested and record.get("table_ci") else "")
        + f". Best of each column in bold{marks}."
    )
    full_caption = (
        f"{latex_escape(str(record['title']))}. Every configuration: {spread}"
        + (interval_note + "; p: Welch's t-test against the best" if tested else "")
        + (". Median and IQM (interquartile mean) over the runs" if robust else "")
        + f". Best of each column in bold{marks}."
    )
    return {
        PAPER_TABLE: PaperTable(paper_caption, latex.table_label(name), paper_columns),
        FULL_TABLE: PaperTable(full_caption, latex.table_label(name, "-full"), full_columns),
    }


def _p_value(p: float | None) -> str:
    return "—" if p is None or not np.isfinite(p) else f"{p:.3f}"


def _is_numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


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
    splits = [(s, label) for s, label in CURVE_SPLITS if f"{s}.{metric}" in history.columns]
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
) -> Figure:
    """Mean metric on the grid of the two compared axes (rows: the second, columns: the first)."""
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
    best_cell = None
    for index, row in enumerate(summary.iter_rows(named=True)):
        cell = rows[format_value(row[rows_axis])], columns[format_value(row[columns_axis])]
        values[cell] = row[f"{metric}:mean"]
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


def _compressed(runs: pl.DataFrame) -> bool:
    """Whether any run was pruned or quantized (then size matters in the report)."""
    columns = {"compress.prune.method", "compress.quantize.mode"}
    if not columns <= set(runs.columns):
        return False
    return bool(
        (
            (runs["compress.prune.method"] != "none") | (runs["compress.quantize.mode"] != "none")
        ).any()
    )


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


def save_figure(fig: Figure, directory: Path, name: str) -> tuple[str, list[tuple[str, str]]]:
    """Write the figure in every available format under ``figures/``; return the SVG as a data
    URI and the file links."""
    rendered = {
        extension: figures.render(fig, extension) for extension in figures.available_formats()
    }
    figures.close(fig)
    files = []
    for extension, content in rendered.items():
        path = directory / FIGURES_DIR / f"{name}.{extension}"
        atomic_write(path, functools.partial(Path.write_bytes, data=content))
        files.append((extension.upper(), f"{FIGURES_DIR}/{path.name}"))
    data_uri = "data:image/svg+xml;base64," + base64.b64encode(rendered["svg"]).decode("ascii")
    return data_uri, files


def provenance_rows(
    provenance: dict[str, Any], runs: pl.DataFrame, data_hash: str, verification: str | None
) -> list[tuple[str, str]]:
    git = provenance.get("git", {})
    commit = git.get("commit") or "not a git checkout"
    if git.get("dirty"):
        commit += " (uncommitted changes)"
    packages = provenance.get("packages", {})
    device = provenance.get("device", {})
    files = provenance.get("files", {})
    rows = [
        ("code version (git)", commit),
        ("command", " ".join(provenance.get("command", []))),
        ("latest sweepbook run", str(provenance.get("created_at", "—"))),
        ("python", str(provenance.get("python", "—"))),
        *[(name, str(version)) for name, version in packages.items()],
        ("device", describe_devices(device) if device else "—"),
        ("platform", str(provenance.get("platform", "—"))),
        ("host", str(provenance.get("host", "—"))),
        *[
            (f"{role} file", f"{entry.get('path', '—')} sha256 {entry.get('sha256', '—')}")
            for role, entry in files.items()
        ],
        ("results data (sha256)", data_hash),
        ("last verification", verification or "never (run 'sweepbook verify' on this store)"),
    ]
    # Runs of one store may come from several invocations: say so when they differ.
    for column, label in (("git_commit", "runs trained at commits"), ("device", "runs trained on")):
        if column in runs.columns:
            values = sorted({v for v in runs[column].to_list() if v})
            if len(values) > 1:
                rows.append((label, ", ".join(values)))
    return rows


def verification_summary(record: dict[str, Any]) -> str:
    """The outcome of ``sweepbook verify`` in one line: when, how many runs reproduced bit for
    bit, which differ and where."""
    checked, reproduced = record["checked"], record["reproduced"]
    line = f"{record['verified_at']}, {reproduced}/{checked} runs reproduced bit for bit"
    differing = [run for run in record["runs"] if not run["reproduced"]]
    if differing:
        line += "; differing: " + "; ".join(
            f"{run['run_id']} ({run['difference']})" for run in differing
        )
    return f"{line} (retrained on {record['device']})"


def placement_table(runs: pl.DataFrame) -> Table:
    """Where the runs ran: one row per host, device and job (a job array's tasks together)."""
    if runs.is_empty() or not {"host", "device"} <= set(runs.columns):
        return Table(caption="", headers=[], rows=[])
    # All-inline stores hold job_id as a column of nulls (no type of its own).
    job_id = (pl.col("job_id") if "job_id" in runs.columns else pl.lit(None)).cast(pl.String)
    placed = runs.with_columns(
        job_id.alias("task"), job_id.str.split("_").list.first().alias("job")
    )
    seconds = pl.col("train_seconds").sum() if "train_seconds" in runs.columns else pl.lit(None)
    summary = (
        placed.group_by(["host", "device", "job"], maintain_order=True)
        .agg(pl.col("task").n_unique().alias("tasks"), pl.len().alias("runs"), seconds.alias("s"))
        .sort(["host", "device", "job"], nulls_last=False)
    )
    rows = [
        TableRow(
            cells=[
                format_value(row["host"]),
                format_value(row["device"]),
                "inline" if row["job"] is None else row["job"],
                "—" if row["job"] is None else str(row["tasks"]),
                str(row["runs"]),
                format_stat(row["s"], None, 1),
            ],
            best=False,
        )
        for row in summary.iter_rows(named=True)
    ]
    return Table(
        caption="Where the runs ran, from the runs' own records. Job: the SLURM job (or local "
        "process) of a launched array, whose tasks are counted; inline: trained by the "
        "sweepbook run process itself. Each run's host, device and job_id are columns of "
        "runs.parquet.",
        headers=["host", "device", "job", "array tasks", "runs", "training time (s)"],
        rows=rows,
    )


def data_fingerprint(runs: pl.DataFrame, history: pl.DataFrame) -> str:
    """sha256 of the results the report was built from (row order and file layout ignored)."""
    digest = hashlib.sha256()
    for frame, key in ((runs, ["run_id"]), (history, ["run_id", "epoch"])):
        ordered = frame.sort(key).select(sorted(frame.columns))
        buffer = io.BytesIO()
        ordered.write_ipc(buffer)
        digest.update(buffer.getvalue())
    return digest.hexdigest()


def build_context(
    directory: Path, venue_name: str | None = None
) -> tuple[ReportContext, list[PlannedFigure], Venue]:
    """What the report shows, and its figures drawn for ``venue_name`` (default: the venue the
    sweep file names)."""
    record = read_json(directory / SWEEP_RECORD)
    venue = venue_named(venue_name or record.get("venue", DEFAULT_VENUE))
    # The sweep's [report.labels] name the axes of figures too; without them, the keys do.
    axis_labels: dict[str, str] = record.get("labels", {})
    provenance = read_json(directory / PROVENANCE)
    store = Store(directory)
    planned = set(record["run_ids"])
    runs = store.read_runs().filter(pl.col("run_id").is_in(planned))
    history = store.read_history().filter(pl.col("run_id").is_in(planned))
    data_hash = data_fingerprint(runs, history)
    metric: str = record["metric"]
    direction: Literal["max", "min"] = record["direction"]
    compare: list[str] = list(record["compare"])

    verified = directory / VERIFICATION_FILE
    verification = verification_summary(read_json(verified)) if verified.is_file() else None

    ok = runs.filter(pl.col("status") == "ok")
    counts = {
        "planned": len(planned),
        "ok": ok.height,
        "diverged": runs.filter(pl.col("status") == "diverged").height,
        "failed": runs.filter(pl.col("status") == "failed").height,
        "missing": len(planned) - runs.height,
    }
    # Stores from before folds existed record seeds only.
    replicates_text = record.get("replicates", f"{len(record['seeds'])} seeds")
    seeds_text = f"{replicates_text} (seeds {', '.join(map(str, record['seeds']))})"
    figs: list[PlannedFigure] = []
    paper_tables: dict[str, PaperTable] = {}
    if ok.is_empty():
        table = Table(caption="No run finished successfully.", headers=[], rows=[])
        best_summary = "No run finished successfully."
    else:
        # Stores written by older versions may lack newer metrics: show what is there.
        shown = [m for m in dict.fromkeys([metric, *TABLE_METRICS]) if m in ok.columns]
        compressed = _compressed(ok)
        sizes = ["model_bytes", "nonzero_params", "params"] if compressed else []
        described = [*shown, *sizes, "best_epoch", "train_seconds"]
        # Metrics the sweep names for the paper table, where the store has them.
        named = [m for m in record.get("table", []) if m in ok.columns and m not in described]
        summary = summarize(ok, compare, [*described, *named])
        best = best_index(summary, metric, direction)
        if best is not None:
            summary = compare_to_best(summary, ok, metric, best)
        runs_per_config = sorted(set(summary["n"].to_list()))
        replicates = (
            f"{runs_per_config[0]} runs ({replicates_text})"
            if len(runs_per_config) == 1
            else f"the runs counted ({replicates_text})"
        )
        table = build_table(summary, compare, shown, best, replicates)
        paper_tables = build_paper_tables(
            summary, record, compare, shown, best, replicates, sized=compressed
        )
        best_row = summary.row(best, named=True) if best is not None else None
        best_summary = ""
        if best_row is not None:
            best_summary = (
                f"Best {metric}: "
                f"{format_stat(best_row[f'{metric}:mean'], best_row[f'{metric}:std'])} "
                f"({config_label(best_row, compare)}, {best_row['n']} runs)."
            )
        # Line figures of many configurations show the best ones, and say so.
        crowded = summary.height > MAX_SERIES
        curve_rows = best_rows(summary, metric, direction, MAX_SERIES) if crowded else summary
        shown_note = (
            f" Shown: the {MAX_SERIES} best of {summary.height} configurations by mean {metric}."
            if crowded
            else ""
        )
        for curve_metric in CURVE_METRICS:
            if not any(f"{split}.{curve_metric}" in history.columns for split, _ in CURVE_SPLITS):
                continue
            figs.append(
                PlannedFigure(
                    f"learning_curves_{curve_metric}",
                    f"Learning curves: {curve_metric}",
                    f"Training and validation {curve_metric} per epoch: mean over {seeds_text} "
                    "per configuration, with a band of ± one standard deviation; each epoch "
                    "averages the runs still training (early stopping ends runs at different "
                    "epochs). Training values are averaged over each epoch's mini-batches."
                    + shown_note,
                    learning_curve_figure(
                        curve_rows, history, compare, curve_metric, selected=crowded, venue=venue
                    ),
                )
            )
        if _schedules_vary(history):
            figs.append(
                PlannedFigure(
                    "learning_rate",
                    "Learning-rate schedules",
                    "Learning rate at the first step of each epoch, per configuration (mean over "
                    "its runs: reduce-on-plateau can differ between seeds)." + shown_note,
                    schedule_figure(curve_rows, history, compare, venue),
                )
            )
        if len(compare) == 2 and all(summary[axis].n_unique() > 1 for axis in compare):
            figs.append(
                PlannedFigure(
                    f"heatmap_{short_key(compare[0])}_{short_key(compare[1])}",
                    f"{metric}: {compare[0]} × {compare[1]}",
                    f"Mean {metric} over {seeds_text} per cell; the best configuration is boxed.",
                    heatmap_figure(summary, compare, metric, best, venue, axis_labels),
                )
            )
        if len(compare) >= 3:
            figs.append(
                PlannedFigure(
                    "parallel_coordinates",
                    f"{metric} across {len(compare)} swept axes",
                    f"Parallel coordinates: one line per configuration through its value on "
                    f"each swept axis to its mean {metric} over {seeds_text}; lighter lines are "
                    "better, the best configuration is black. Axes spanning two decades or "
                    "more are logarithmic.",
                    parallel_figure(summary, compare, metric, direction, best, venue, axis_labels),
                )
            )
        if best_row is not None and "test.confusion" in ok.columns:
            figs.append(
                PlannedFigure(
                    "confusion_matrix",
                    "Confusion matrix of the best configuration",
                    f"Test-set predictions of {config_label(best_row, compare)}, summed over its "
                    f"{best_row['n']} runs and normalized per true class.",
                    confusion_figure(ok, best_row["run_ids"], venue),
                )
            )
        if best_row is not None and "test.reliability_count" in ok.columns:
            bins = len(ok["test.reliability_count"][0])
            figs.append(
                PlannedFigure(
                    "reliability_diagram",
                    "Reliability diagram of the best configuration",
                    f"Test-set accuracy against confidence in {bins} equal-width bins, over the "
                    f"{best_row['n']} runs of {config_label(best_row, compare)}; bars under the "
                    "diagonal are over-confident.",
                    reliability_figure(ok, best_row["run_ids"], venue),
                )
            )
        if compressed:
            for cost, label in (
                ("model_bytes", "model size (bytes)"),
                ("nonzero_params", "non-zero weights"),
            ):
                figs.append(
                    PlannedFigure(
                        f"pareto_{cost}",
                        f"{metric} against {label}",
                        f"Mean ± standard deviation over {seeds_text}; the Pareto front (no "
                        f"configuration is both smaller and better) is joined, dominated "
                        "configurations are pale, the uncompressed baseline is the star.",
                        pareto_figure(
                            summary, compare, metric, direction, cost, label, venue, axis_labels
                        ),
                    )
                )
        if compare:
            sampled = bool(record.get("sampled", False))
            series = 1 if sampled or len(compare) < 2 else summary.select(compare[1:]).n_unique()
            figs.append(
                PlannedFigure(
                    f"{metric.replace('.', '_')}_vs_{short_key(compare[0])}",
                    f"{metric} against {compare[0]}",
                    f"Mean ± standard deviation over {seeds_text}; small dots are individual runs."
                    + (
                        f" Shown: the {MAX_SERIES} of {series} series (values of "
                        f"{', '.join(map(short_key, compare[1:]))}) with the best configurations."
                        if series > MAX_SERIES
                        else ""
                    ),
                    metric_figure(
                        ok,
                        summary,
                        compare,
                        metric,
                        direction,
                        sampled=sampled,
                        venue=venue,
                        labels=axis_labels,
                    ),
                )
            )

    ranked = importance.from_record(runs, record)
    if ranked is not None:
        drawn = importance.importance_figure(ranked, venue, axis_labels)
        figs.append(
            PlannedFigure("importance", "Hyper-parameter importance", ranked.caption, drawn)
        )
    problems = [
        RunProblem(
            run_id=r["run_id"],
            status=r["status"],
            epochs="—" if r.get("epochs_run") is None else str(r["epochs_run"]),
            config=r.get("config") or "",
            error=r.get("error") or "",
        )
        for r in runs.filter(pl.col("status") != "ok").iter_rows(named=True)
    ]
    context = ReportContext(
        name=str(record["name"]),
        title=record["title"],
        question=record["question"],
        run_command=record["run_command"],
        metric=metric,
        direction=direction,
        seeds=record["seeds"],
        counts=counts,
        best_summary=best_summary,
        table=table,
        problems=problems,
        sweep_toml=(directory / SWEEP_COPY).read_text(encoding="utf-8"),
        experiment_toml=(directory / EXPERIMENT_COPY).read_text(encoding="utf-8"),
        experiment_name=Path(record["experiment_file"]).name,
        provenance=provenance_rows(provenance, runs, data_hash, verification),
        placement=placement_table(runs),
        paper_tables=paper_tables,
        data_sha256=data_hash,
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        notes=format_notes(),
        findings=findings.findings_record(findings.from_record(runs, record)),
        importance=ranked,
    )
    return context, figs, venue


def format_notes() -> list[str]:
    """What the reader should know about the files this machine could write."""
    if "pgf" in figures.available_formats():
        return []
    return [
        "PGF figure files were not written: matplotlib needs pdflatex (a LaTeX installation) "
        "to make them, and this machine has none. Install TeX Live and run "
        "'sweepbook report' on this directory again to add them."
    ]


def templates_dir() -> Path:
    """Templates ship inside the wheel; in a source checkout they sit at the repository root."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "templates"


def environment(*, autoescape: bool = True) -> jinja2.Environment:
    """Jinja over templates/: HTML autoescaped; LaTeX (autoescape off) gets escaped cells."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def paper_table_tex(
    file_name: str, table: PaperTable, venue: Venue, *, source: str, directory: Path
) -> str:
    """A table as LaTeX for ``venue``. The paper table takes one column (``table``) when it
    fits there and the text width (``table*``) when not; the full table takes the text width,
    or a page of its own turned sideways (``sidewaystable``, package rotating) beyond that."""
    column_pt = venue.column_width_in * latex.POINTS_PER_INCH
    text_pt = venue.text_width_in * latex.POINTS_PER_INCH
    full = file_name == FULL_TABLE
    width = table.estimated_width_pt(8.0 if full else 10.0)
    if full:
        environment_name = "table*" if width <= text_pt else "sidewaystable"
    elif venue.two_column:
        # A percent of room for the estimate's error; the paper test measures the real width.
        environment_name = "table" if width <= 0.99 * column_pt else "table*"
    else:
        environment_name = "table"
    headers = [latex.header_tex(column.header, column.span) for column in table.columns]
    rows = [
        [part for column in table.columns for part in column.cells[index]]
        for index in range(table.rows)
    ]
    return (
        environment(autoescape=False)
        .get_template("paper_table.tex.j2")
        .render(
            table_environment=environment_name,
            small=full,
            note="" if full else f"Sized for {venue.title}.",
            caption=table.caption,
            label=table.label,
            alignment="".join(column.spec for column in table.columns),
            headers=headers,
            rows=rows,
            source=source,
            directory=directory,
        )
        + "\n"
    )


def figure_snippet(planned: PlannedFigure, sweep_name: str, *, wide: bool) -> str:
    """A figure environment that includes the PDF at its natural size (it is drawn at the
    venue's width, so LaTeX must not scale it), captioned with the report's own caption."""
    environment_name = "figure*" if wide else "figure"
    label = "fig:" + re.sub(r"[^A-Za-z0-9:._-]", "-", f"{sweep_name}-{planned.name}")
    return "\n".join(
        [
            f"\\begin{{{environment_name}}}[t]",
            "  \\centering",
            f"  \\includegraphics{{{FIGURES_DIR}/{planned.name}.pdf}}",
            *(
                [f"  % or, set in the paper's fonts: \\input{{{FIGURES_DIR}/{planned.name}.pgf}}"]
                if "pgf" in figures.available_formats()
                else []
            ),
            f"  \\caption{{{latex_escape(planned.caption)}}}",
            f"  \\label{{{label}}}",
            f"\\end{{{environment_name}}}",
        ]
    )


def venue_line(venue: Venue) -> str:
    """What the figures were drawn for, in one sentence of the report."""
    widths = (
        f"columns {venue.column_width_in:g} in and text {venue.text_width_in:g} in wide"
        if venue.two_column
        else f"half the text ({venue.column_width_in:g} in) or all of it "
        f"({venue.text_width_in:g} in)"
    )
    return (
        f"Figures are drawn for {venue.title} (venue '{venue.name}'): {widths}, text at "
        f"{venue.font_size:g} and {venue.small_font_size:g} pt in "
        f"{figures.installed_family(venue.typeface)}. Include the PDFs at their natural size "
        "(no width=), so that their text keeps these sizes."
    )


def check_report(directory: Path) -> bool:
    """Whether the rendered report was built from the results stored now."""
    directory = Path(directory)
    rendered = read_json(directory / REPORT_RECORD)
    return bool(rendered.get("data_sha256") == _store_fingerprint(directory))


def _store_fingerprint(directory: Path) -> str:
    record = read_json(directory / SWEEP_RECORD)
    planned = set(record["run_ids"])
    store = Store(directory)
    runs = store.read_runs().filter(pl.col("run_id").is_in(planned))
    history = store.read_history().filter(pl.col("run_id").is_in(planned))
    return data_fingerprint(runs, history)


def render_index(root: Path) -> Path:
    """``index.html`` in ``root`` listing every sweep report below it."""
    entries = []
    for record_path in sorted(root.glob(f"*/{SWEEP_RECORD}")):
        record = read_json(record_path)
        entries.append(
            {
                "title": record["title"],
                "question": record["question"],
                "href": f"{record_path.parent.name}/{REPORT_FILE}",
                "runs": len(record["run_ids"]),
            }
        )
    html = environment().get_template("index.html.j2").render(entries=entries)
    target = root / REPORT_FILE
    atomic_write_text(target, html)
    return target


def render_report(directory: Path, venue: str | None = None) -> Path:
    """Render ``index.html``, its figure and table files from the store in ``directory``, and
    refresh the list of reports in the directory above it. Figures are drawn for ``venue``
    (default: the one the sweep file names, else a generic two-column article)."""
    directory = Path(directory)
    context, figs, drawn_for = build_context(directory, venue)
    views = []
    for planned in figs:
        wide = planned.figure.get_figwidth() > drawn_for.column_width_in + 1e-6
        data_uri, files = save_figure(planned.figure, directory, planned.name)
        snippet = figure_snippet(planned, context.name, wide=wide and drawn_for.two_column)
        views.append(
            FigureView(planned.name, planned.title, planned.caption, data_uri, files, wide, snippet)
        )
    # Figures of a previous render may no longer apply. Removed after writing, not by emptying
    # the folder first, so that a report rendered beside a running sweep cannot pull figure
    # files from under the sweep's own render.
    written = {Path(href).name for view in views for _, href in view.files}
    for stale in (directory / FIGURES_DIR).glob("[!.]*"):  # not another writer's temp files
        if stale.is_file() and stale.name not in written:
            stale.unlink(missing_ok=True)
    tables: list[TableFile] = []
    for file_name, paper_table in context.paper_tables.items():
        tex = paper_table_tex(
            file_name, paper_table, drawn_for, source=SWEEP_COPY, directory=directory
        )
        atomic_write_text(directory / TABLES_DIR / file_name, tex)
        full = file_name == FULL_TABLE
        href = f"{TABLES_DIR}/{file_name}"
        packages = "booktabs" + (", rotating" if "sidewaystable" in tex else "")
        tables.append(
            TableFile(
                "every column" if full else "paper table",
                href,
                f"\\input{{{href}}}  % needs \\usepackage{{{packages}}}; "
                f"cite it as Table~\\ref{{{paper_table.label}}}",
            )
        )
    html = (
        environment()
        .get_template("report.html.j2")
        .render(report=context, figures=views, tables=tables, venue=venue_line(drawn_for))
    )
    target = directory / REPORT_FILE
    atomic_write_text(target, html)
    atomic_write_json(
        directory / REPORT_RECORD,
        {
            "data_sha256": context.data_sha256,
            "rendered_at": context.generated_at,
            "findings": context.findings,
        },
    )
    render_index(directory.parent)
    return target
