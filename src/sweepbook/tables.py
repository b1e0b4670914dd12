"""The report's tables: the HTML comparison table (one row per configuration), the table of
where runs ran, and the paper tables (``tables/*.tex``) as data for the LaTeX template.

Values are formatted here once, so the HTML and the LaTeX show the same numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from sweepbook import latex
from sweepbook.latex import PaperColumn, PaperTable, latex_escape
from sweepbook.metrics import DEFAULT_TASK, METRICS, SPLITS, metric_info
from sweepbook.stats import interval_method

# The metric columns after the headline, per task, where the store has them.
TABLE_METRICS = (
    "test.accuracy",
    "test.f1_macro",
    "test.ece",
    "test.loss",
    "val.accuracy",
    "val.loss",
)
REGRESSION_TABLE_METRICS = (
    "test.rmse",
    "test.mae",
    "test.r2",
    "test.loss",  # the mean squared error, whatever the training loss
    "val.rmse",
    "val.loss",
)
# Learning curves: one figure per metric, a row of panels per split.
# Median and IQM join the table when every configuration has at least this many runs: with
# fewer, the IQM trims nothing (n < 4) or next to nothing and both repeat the mean.
ROBUST_STATS_MIN_RUNS = 8
PAPER_TABLE = "results.tex"  # what a paper shows: axes, headline, a few named metrics
FULL_TABLE = "results_full.tex"  # every column of the HTML table
# Decimals the full table shows at most: a dozen metric columns fit a landscape page only at
# three (the HTML table and runs.parquet keep every digit).
FULL_TABLE_DECIMALS = 3


def table_metrics(record: Mapping[str, Any]) -> list[str]:
    """The metrics the report's table shows after the headline (those the store holds): its
    task's, then the test value of each metric the store defines itself (a user's metric)."""
    task = record.get("task", DEFAULT_TASK)
    built_in = REGRESSION_TABLE_METRICS if task == "regression" else TABLE_METRICS
    return [*built_in, *(f"test.{name}" for name in record.get("metrics") or {})]


def metric_notes(columns: Sequence[str], record: Mapping[str, Any]) -> list[str]:
    """What the metric ``columns`` that a reader may not know mean ("test.rmse: RMSE, lower is
    better"): those the store defines itself and the regression ones. Classification metrics
    are the report's long-standing default and go unexplained, as before."""
    notes = []
    for column in columns:
        split, dot, name = column.partition(".")
        if not dot or split not in SPLITS:
            continue
        defined = name in (record.get("metrics") or {})
        if defined or (name in METRICS and METRICS[name].task == "regression"):
            direction, label = metric_info(column, record)
            better = "higher" if direction == "max" else "lower"
            notes.append(f"{column}: {label}, {better} is better")
    return notes


@dataclass(frozen=True)
class TableRow:
    cells: list[str]
    best: bool
    tie: bool = False  # not distinguishable from the best by seed noise

    @property
    def sort_keys(self) -> list[float | str | None]:
        """What the report's column sort orders each cell by (:func:`sort_key`)."""
        return [sort_key(cell) for cell in self.cells]


# A numeric cell: "0.9712 ± 0.0031" (sorted by its mean), "12,345", "1e-05", "3.2×". Anything
# else after the number ("16x16", "10.0.0.1") makes the cell text.
_NUMBER_CELL = re.compile(
    r"(?P<number>[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:e[-+]?\d+)?)(?: ± .*|×|%)?", re.IGNORECASE
)


def sort_key(cell: str) -> float | str | None:
    """A table cell's key for sorting in the browser: the number it starts with (a mean ± std
    sorts by the mean), None for a missing value ("—", sorted last either way), else its text
    (category names, lists, intervals, host names)."""
    text = cell.strip()
    if text in ("", "—"):
        return None
    number = _NUMBER_CELL.fullmatch(text)
    if number is None:
        return text
    value = float(number.group("number").replace(",", ""))
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class Table:
    caption: str
    headers: list[str]
    rows: list[TableRow]
    # The headline metric's column: the best (★) and tie (≈) marks go beside its value, not
    # beside the first axis value, where "≈ 0.2" would read as "about 0.2".
    marked_column: int | None = None


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


def p_column(summary: pl.DataFrame, metric: str) -> str:
    """The p-value the ties are decided on: Holm-adjusted where the summary has it."""
    adjusted = f"{metric}:p_adjusted"
    return adjusted if adjusted in summary.columns else f"{metric}:p_vs_best"


def _p_header(summary: pl.DataFrame, metric: str) -> str:
    return "p vs best (Holm)" if p_column(summary, metric).endswith("p_adjusted") else "p vs best"


def selection_note(metric: str, selected_on: str) -> str:
    """How the best configuration was chosen, when not on the headline itself."""
    if selected_on == metric:
        return ""
    return (
        f" (chosen on mean {selected_on}, so that its {metric} is not inflated by the choice; "
        f"the best mean {metric} chosen from the same runs would be optimistically biased)"
    )


def tie_test_text(summary: pl.DataFrame, metric: str) -> str:
    """The test behind the ties, with its correction for comparing k-1 rows to one best."""
    if f"{metric}:p_adjusted" in summary.columns:
        return (
            f"Welch's t-test, Holm-Bonferroni-corrected over the {summary.height - 1} "
            "comparisons with the best, adjusted p ≥ 0.05"
        )
    return "Welch's t-test, p ≥ 0.05"


def build_table(
    summary: pl.DataFrame,
    compare: list[str],
    metrics: list[str],
    best: int | None,
    replicates: str,
    selected_on: str | None = None,
) -> Table:
    """One row per configuration; ``metrics[0]`` is the headline; ``best`` was chosen on the
    mean of ``selected_on`` (default: the headline)."""
    sized = "model_bytes:mean" in summary.columns
    tested = f"{metrics[0]}:p_vs_best" in summary.columns
    robust = tested and summary["n"].min() >= ROBUST_STATS_MIN_RUNS  # type: ignore[operator]
    headers = [
        *compare,
        "runs",
        f"{metrics[0]} (mean ± std)",
        *([f"{metrics[0]} median", f"{metrics[0]} IQM"] if robust else []),
        *([f"{metrics[0]} 95% CI", _p_header(summary, metrics[0])] if tested else []),
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
            low, high = (row[f"{metrics[0]}:{k}"] for k in ("ci_low", "ci_high"))
            p = row[p_column(summary, metrics[0])]
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
        f"Best configuration marked ★{selection_note(metrics[0], selected_on or metrics[0])}"
        + (
            f"; ≈ marks configurations whose {metrics[0]} does not differ from the best's by "
            f"more than seed noise ({tie_test_text(summary, metrics[0])}). 95% CI: "
            f"{interval_method(summary['n'].to_list())}."
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


def lower_is_better(key: str, record: Mapping[str, Any]) -> bool:
    """Whether a column's best is its lowest: the sweep's own direction for its headline
    (``report.direction`` may override the metric's usual one), else the column's
    (:func:`latex.lower_is_better`)."""
    if key == record.get("metric") and record.get("direction") in ("max", "min"):
        return bool(record["direction"] == "min")
    return latex.lower_is_better(key, record)


def _stat(
    rows: list[dict[str, Any]],
    key: str,
    labels: dict[str, str],
    *,
    record: Mapping[str, Any],
    ties: set[int] | None = None,
    spread: bool = True,
    most_decimals: int = 4,
) -> PaperColumn:
    """Mean ± std of ``key`` per configuration, the best in bold (none for descriptions such
    as the best epoch); sizes in kB."""
    means = [row.get(f"{key}:mean") for row in rows]
    stds = [row.get(f"{key}:std") if spread else None for row in rows]
    best = set() if key in latex.NO_BEST else _best_of(means, lower_is_better(key, record))
    return latex.stat_column(
        latex.human_label(key, labels, record),
        means,
        stds,
        best=best,
        ties=ties or set(),
        scale=1e-3 if key == "model_bytes" else 1.0,
        default_decimals={"model_bytes": 1, "best_epoch": 1, "train_seconds": 2}.get(key, 4),
        most_decimals=most_decimals,
    )


@dataclass(frozen=True)
class _PaperRows:
    """What both paper tables are built from: the configurations' rows and what they hold."""

    summary: pl.DataFrame
    rows: list[dict[str, Any]]
    metric: str  # the headline
    selected_on: str  # the metric the best configuration was chosen on
    labels: dict[str, str]
    record: Mapping[str, Any]  # the sweep record: directions and labels of stored metrics
    tested: bool  # the summary carries tests against the best (CI, p, ties)
    robust: bool  # enough runs per configuration for median and IQM
    ties: set[int]
    axes: list[PaperColumn]

    def interval(self, most_decimals: int) -> PaperColumn:
        stds = [row.get(f"{self.metric}:std") for row in self.rows]
        return latex.interval_column(
            "95% CI",
            [row.get(f"{self.metric}:ci_low") for row in self.rows],
            [row.get(f"{self.metric}:ci_high") for row in self.rows],
            latex.decimals_for(stds, 4, most_decimals),
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
    selected_on = str(record.get("selected_on", metric))
    paper = _PaperRows(
        summary, rows, metric, selected_on, labels, record, tested, bool(robust), ties, axes
    )
    named = [m for m in dict.fromkeys(record.get("table", [])) if m != metric]
    with_ci = tested and bool(record.get("table_ci"))
    paper_columns = [
        *axes,
        _stat(rows, metric, labels, record=record, ties=ties),
        *([paper.interval(4)] if with_ci else []),
        *[_stat(rows, m, labels, record=record) for m in named if f"{m}:mean" in summary.columns],
    ]
    full_columns = _full_columns(paper, [*shown[1:], *named], sized=sized)
    paper_caption, full_caption = _paper_captions(paper, record, replicates, with_ci=with_ci)
    name = str(record["name"])
    return {
        PAPER_TABLE: PaperTable(paper_caption, latex.table_label(name), paper_columns),
        FULL_TABLE: PaperTable(full_caption, latex.table_label(name, "-full"), full_columns),
    }


def _full_columns(paper: _PaperRows, others: list[str], *, sized: bool) -> list[PaperColumn]:
    """Every column of the HTML table, in its order; ``others``: the metrics after the headline."""
    rows, metric, labels, record = paper.rows, paper.metric, paper.labels, paper.record
    counts = [row["n"] for row in rows]
    robust_columns = [
        latex.stat_column(
            name,
            values := [row.get(f"{metric}:{stat}") for row in rows],
            [None] * len(rows),
            best=_best_of(values, lower_is_better(metric, record)),
            most_decimals=FULL_TABLE_DECIMALS,
        )
        for stat, name in (("median", "Median"), ("iqm", "IQM"))
        if paper.robust  # without enough runs, both would repeat the mean
    ]
    tests = (
        [
            paper.interval(FULL_TABLE_DECIMALS),
            latex.axis_column(
                _p_header(paper.summary, metric),
                [row.get(p_column(paper.summary, metric)) for row in rows],
                [_p_value(row.get(p_column(paper.summary, metric))) for row in rows],
            ),
        ]
        if paper.tested
        else []
    )
    return [
        *paper.axes,
        # Runs per configuration, when they differ (the caption gives a count they share).
        *(
            [latex.axis_column("Runs", counts, [str(n) for n in counts])]
            if len(set(counts)) > 1
            else []
        ),
        _stat(
            rows, metric, labels, record=record, ties=paper.ties, most_decimals=FULL_TABLE_DECIMALS
        ),
        *robust_columns,
        *tests,
        *[
            _stat(rows, m, labels, record=record, most_decimals=FULL_TABLE_DECIMALS)
            for m in dict.fromkeys(others)
        ],
        *(
            [
                _stat(rows, "nonzero_params", labels, record=record),
                _stat(rows, "model_bytes", labels, record=record),
            ]
            if sized
            else []
        ),
        _stat(rows, "best_epoch", labels, record=record, spread=False),
        _stat(rows, "train_seconds", labels, record=record, spread=False),
    ]


def _paper_captions(
    paper: _PaperRows, record: dict[str, Any], replicates: str, *, with_ci: bool
) -> tuple[str, str]:
    """The captions of the paper table and of the full table."""
    headline_label = latex_escape(latex.human_label(paper.metric, paper.labels, paper.record))
    test = latex_escape(tie_test_text(paper.summary, paper.metric))
    marks = (
        f"; $^\\dagger$ marks configurations whose {headline_label} does not differ from the "
        f"best configuration's by more than seed noise ({test})"
        if paper.ties
        else ""
    )
    chosen = latex_escape(selection_note(paper.metric, paper.selected_on).strip(" ()"))
    chosen = f" The best configuration is {chosen}." if chosen else ""
    spread = f"mean $\\pm$ standard deviation over {latex_escape(replicates)} per configuration"
    interval_note = "; 95\\% CI: " + interval_method(paper.summary["n"].to_list())
    paper_caption = (
        f"{headline_label}: {spread}"
        + (interval_note if with_ci else "")
        + f". Best of each column in bold{marks}.{chosen}"
    )
    full_caption = (
        f"{latex_escape(str(record['title']))}. Every configuration: {spread}"
        + (interval_note + "; p: Welch's t-test against the best" if paper.tested else "")
        + (". Median and IQM (interquartile mean) over the runs" if paper.robust else "")
        + f". Best of each column in bold{marks}.{chosen}"
    )
    return paper_caption, full_caption


def _p_value(p: float | None) -> str:
    return "—" if p is None or not np.isfinite(p) else f"{p:.3f}"


def any_compressed(runs: pl.DataFrame) -> bool:
    """Whether any run was pruned or quantized (then size matters in the report)."""
    columns = {"compress.prune.method", "compress.quantize.mode"}
    if not columns <= set(runs.columns):
        return False
    return bool(
        (
            (runs["compress.prune.method"] != "none") | (runs["compress.quantize.mode"] != "none")
        ).any()
    )


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
