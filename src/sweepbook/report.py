"""Render a sweep's report from its store alone: the store read once (:mod:`sweepbook.results`)
-> Polars aggregation -> a typed context (tables from :mod:`sweepbook.tables`, figures of every
kind in :data:`sweepbook.figure_kinds.FIGURES` that applies) -> Jinja HTML, LaTeX tables and
figure files; and the index page of all reports. Nothing here imports the training code.

A store directory holds what the report needs: ``sweep.json`` (what the sweep asked: axes,
metric, the run ids it planned; :mod:`sweepbook.record`), copies of the sweep and experiment
files, ``provenance.json``, and the Parquet results.

Names that lived here before the module was split (``write_sweep_record``, ``read_json``,
``PROVENANCE``, ``build_table``, ...) are still importable from here.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
import markupsafe
import polars as pl
from matplotlib.figure import Figure

from sweepbook import figures, findings, latex
from sweepbook.figure_kinds import MAX_SERIES as MAX_SERIES
from sweepbook.figure_kinds import FigureData, PlannedFigure, plan_figures
from sweepbook.figure_kinds import learning_curve_figure as learning_curve_figure
from sweepbook.halving import STOPPED
from sweepbook.importance import ImportanceTable
from sweepbook.latex import PaperTable, latex_escape
from sweepbook.provenance import describe_devices
from sweepbook.record import seen_from_store as seen_from_store
from sweepbook.record import write_sweep_record as write_sweep_record
from sweepbook.results import (
    COMPARE_RECORD,
    EXPERIMENT_COPY,
    FIGURES_DIR,
    REPORT_FILE,
    REPORT_RECORD,
    SWEEP_COPY,
    SWEEP_RECORD,
    TABLES_DIR,
    SweepResults,
    load_results,
    read_json,
)
from sweepbook.results import PROVENANCE as PROVENANCE
from sweepbook.results import VERIFICATION_FILE as VERIFICATION_FILE
from sweepbook.results import data_fingerprint as data_fingerprint
from sweepbook.rung_report import HalvingView, halving_view
from sweepbook.stats import best_index, compare_to_best, summarize
from sweepbook.store import atomic_write, atomic_write_json, atomic_write_text
from sweepbook.tables import (
    FULL_TABLE,
    Table,
    any_compressed,
    build_paper_tables,
    build_table,
    config_label,
    format_stat,
    metric_notes,
    placement_table,
    table_metrics,
)
from sweepbook.tables import PAPER_TABLE as PAPER_TABLE
from sweepbook.tables import ROBUST_STATS_MIN_RUNS as ROBUST_STATS_MIN_RUNS
from sweepbook.tables import TableRow as TableRow
from sweepbook.tables import format_value as format_value
from sweepbook.venues import DEFAULT_VENUE, Venue, venue_named

# --- the context the template lays out ------------------------------------------------------


@dataclass(frozen=True)
class FigureView:
    id: str
    title: str
    caption: str
    # The SVG markup itself, inline: its <title> tooltips work only there (an <img> shows none)
    svg: markupsafe.Markup
    files: list[tuple[str, str]]  # (label, relative href)
    wide: bool  # full text width rather than one column
    latex: str  # a figure environment to paste into a paper


@dataclass(frozen=True)
class TableFile:
    label: str
    href: str
    latex: str  # what to paste into a paper


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
    metric_notes: list[str]  # what the table's less common metrics mean (tables.metric_notes)
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
    importance: ImportanceTable | None
    halving: HalvingView | None = None  # rungs and stopped configurations (rung_report)


@dataclass(frozen=True)
class Comparison:
    """What the report shows of the runs that finished: the tables, the best configuration in a
    sentence, and the figures."""

    table: Table
    best_summary: str
    paper_tables: dict[str, PaperTable] = field(default_factory=dict)  # file under tables/
    importance: ImportanceTable | None = None
    figures: list[PlannedFigure] = field(default_factory=list)
    metric_notes: list[str] = field(default_factory=list)


NOTHING_FINISHED = "No run finished successfully."


def compare_configurations(
    ok: pl.DataFrame,
    history: pl.DataFrame,
    record: dict[str, Any],
    venue: Venue,
    *,
    replicates_text: str,
    seeds_text: str,
    halving: HalvingView | None = None,
) -> Comparison:
    """Summarize the finished runs ``ok`` per configuration of the compared axes, mark the best
    and the ties, and draw every figure kind that applies."""
    metric: str = record["metric"]
    direction: Literal["max", "min"] = record["direction"]
    compare: list[str] = list(record["compare"])
    # Stores written by older versions may lack newer metrics: show what is there.
    shown = [m for m in dict.fromkeys([metric, *table_metrics(record)]) if m in ok.columns]
    compressed = any_compressed(ok)
    sizes = ["model_bytes", "nonzero_params", "params"] if compressed else []
    described = [*shown, *sizes, "best_epoch", "train_seconds"]
    # Metrics the sweep names for the paper table, where the store has them.
    named = [m for m in record.get("table", []) if m in ok.columns and m not in described]
    # A test.* headline is chosen on its validation twin where every run stored it: the best of
    # the same test scores it reports would be optimistically biased (findings say so too).
    selected_on = findings.selection_metric_for(metric, ok.columns, ok)
    chosen_by = [] if selected_on in (*described, *named) else [selected_on]
    summary = summarize(ok, compare, [*described, *named, *chosen_by])
    best = best_index(summary, selected_on, direction)
    if best is not None:
        summary = compare_to_best(summary, ok, metric, best, correction="holm")
    runs_per_config = sorted(set(summary["n"].to_list()))
    replicates = (
        f"{runs_per_config[0]} runs ({replicates_text})"
        if len(runs_per_config) == 1
        else f"the runs counted ({replicates_text})"
    )
    data = FigureData(
        ok=ok,
        history=history,
        summary=summary,
        compare=compare,
        metric=metric,
        direction=direction,
        best=best,
        seeds_text=seeds_text,
        sampled=bool(record.get("sampled", False)),
        venue=venue,
        # The sweep's [report.labels] name the axes of figures too; without them, the keys do.
        labels=record.get("labels", {}),
        axes=list(record.get("axes", compare)),
        halving=halving,
    )
    return Comparison(
        table=build_table(summary, compare, shown, best, replicates, selected_on),
        best_summary=_best_summary(data, selected_on),
        paper_tables=build_paper_tables(
            summary,
            {**record, "selected_on": selected_on},
            compare,
            shown,
            best,
            replicates,
            sized=compressed,
        ),
        figures=plan_figures(data),
        importance=data.importance,
        metric_notes=metric_notes([*shown, *named], record),
    )


def _best_summary(data: FigureData, selected_on: str) -> str:
    row = data.best_row
    if row is None:
        return ""
    metric = data.metric
    chosen = "" if selected_on == metric else f", chosen on mean {selected_on}"
    return (
        f"Best configuration{chosen}: {metric} "
        f"{format_stat(row[f'{metric}:mean'], row[f'{metric}:std'])} "
        f"({config_label(row, data.compare)}, {row['n']} runs)."
    )


def run_counts(stored: SweepResults) -> dict[str, int]:
    """Planned runs, and how many finished, were stopped at a rung of a successive halving,
    diverged, failed or are missing."""
    runs, planned = stored.runs, stored.planned
    return {
        "planned": len(planned),
        "ok": runs.filter(pl.col("status") == "ok").height,
        "stopped": runs.filter(pl.col("status") == STOPPED).height,
        "diverged": runs.filter(pl.col("status") == "diverged").height,
        "failed": runs.filter(pl.col("status") == "failed").height,
        "missing": len(planned) - runs.height,
    }


def run_problems(runs: pl.DataFrame) -> list[RunProblem]:
    """Every run that did not finish ``ok``, with its error (runs a successive halving stopped
    at a rung are not problems: the report lists them with the rungs)."""
    return [
        RunProblem(
            run_id=r["run_id"],
            status=r["status"],
            epochs="—" if r.get("epochs_run") is None else str(r["epochs_run"]),
            config=r.get("config") or "",
            error=r.get("error") or "",
        )
        for r in runs.filter(~pl.col("status").is_in(["ok", STOPPED])).iter_rows(named=True)
    ]


def build_context(
    directory: Path, venue_name: str | None = None
) -> tuple[ReportContext, list[PlannedFigure], Venue]:
    """What the report shows, and its figures drawn for ``venue_name`` (default: the venue the
    sweep file names)."""
    stored = load_results(directory)
    record = stored.record
    venue = venue_named(venue_name or record.get("venue", DEFAULT_VENUE))
    data_hash = stored.fingerprint()
    verified = stored.verification()
    verification = verification_summary(verified) if verified is not None else None
    # Stores from before folds existed record seeds only.
    replicates_text = record.get("replicates", f"{len(record['seeds'])} seeds")
    seeds_text = f"{replicates_text} (seeds {', '.join(map(str, record['seeds']))})"
    ok = stored.runs.filter(pl.col("status") == "ok")
    halving = halving_view(stored.runs, stored.rungs, record)
    comparison = (
        Comparison(Table(caption=NOTHING_FINISHED, headers=[], rows=[]), NOTHING_FINISHED)
        if ok.is_empty()
        else compare_configurations(
            ok,
            stored.history,
            record,
            venue,
            replicates_text=replicates_text,
            seeds_text=seeds_text,
            halving=halving,
        )
    )
    context = ReportContext(
        name=str(record["name"]),
        title=record["title"],
        question=record["question"],
        run_command=record["run_command"],
        metric=record["metric"],
        direction=record["direction"],
        seeds=record["seeds"],
        counts=run_counts(stored),
        best_summary=comparison.best_summary,
        table=comparison.table,
        metric_notes=comparison.metric_notes,
        problems=run_problems(stored.runs),
        sweep_toml=(directory / SWEEP_COPY).read_text(encoding="utf-8"),
        experiment_toml=(directory / EXPERIMENT_COPY).read_text(encoding="utf-8"),
        experiment_name=Path(record["experiment_file"]).name,
        provenance=provenance_rows(
            stored.provenance, stored.runs, data_hash, verification, halving=halving
        ),
        placement=placement_table(stored.runs),
        paper_tables=comparison.paper_tables,
        data_sha256=data_hash,
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        notes=format_notes(),
        findings=findings.findings_record(findings.from_record(stored.runs, record)),
        importance=comparison.importance,
        halving=halving,
    )
    return context, comparison.figures, venue


def save_figure(
    fig: Figure, directory: Path, name: str
) -> tuple[markupsafe.Markup, list[tuple[str, str]]]:
    """Write the figure in every available format under ``figures/``; return its SVG, with
    tooltips naming each mark's configuration, as markup to inline in the page, and the file
    links. The SVG file carries the same tooltips."""
    rendered = {
        extension: figures.render(fig, extension) for extension in figures.available_formats()
    }
    figures.close(fig)
    rendered["svg"] = figures.svg_with_tooltips(rendered["svg"])
    files = []
    for extension, content in rendered.items():
        path = directory / FIGURES_DIR / f"{name}.{extension}"
        atomic_write(path, functools.partial(Path.write_bytes, data=content))
        files.append((extension.upper(), f"{FIGURES_DIR}/{path.name}"))
    # Inline, the XML declaration and DOCTYPE before the <svg> element have no place in HTML.
    svg = rendered["svg"].decode("utf-8")
    return markupsafe.Markup(svg[svg.index("<svg") :]), files


def provenance_rows(
    provenance: dict[str, Any],
    runs: pl.DataFrame,
    data_hash: str,
    verification: str | None,
    *,
    halving: HalvingView | None = None,
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
        *([("successive halving", halving.settings)] if halving else []),
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
    stored = load_results(directory, with_provenance=False)
    return bool(rendered.get("data_sha256") == stored.fingerprint())


def render_index(root: Path) -> Path:
    """``index.html`` in ``root`` listing every sweep report below it, then every comparison
    of sweeps (``sweepbook compare``)."""
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
    for record_path in sorted(root.glob(f"*/{COMPARE_RECORD}")):
        compared = read_json(record_path)
        entries.append(
            {
                "title": compared["title"],
                "question": " ".join(compared["sentences"]),
                "href": f"{record_path.parent.name}/{REPORT_FILE}",
                "runs": sum(store["runs"] for store in compared["stores"]),
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
        svg, files = save_figure(planned.figure, directory, planned.name)
        snippet = figure_snippet(planned, context.name, wide=wide and drawn_for.two_column)
        views.append(
            FigureView(planned.name, planned.title, planned.caption, svg, files, wide, snippet)
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
