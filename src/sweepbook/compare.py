"""Sweeps compared: one report over several stores that test on the same data.

Each store's best configuration is chosen as its own report chooses it (on the validation twin
of a ``test.*`` headline where every run stored one), then the bests are set side by side with
the statistics the report uses within a sweep: mean ± std over seeds, a confidence interval of
the mean, and Welch's t-test of each best against the overall best, Holm-adjusted over the
k - 1 comparisons. Scores are comparable only on one test set, so stores are compared only
when the ``data.*`` keys that fix the test split agree and the test examples those keys give
hash to the same bytes; otherwise :class:`~sweepbook.config.ConfigError` (one line naming both
stores and the key), before anything is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from sweepbook import __version__, findings, stats
from sweepbook import report as reporting
from sweepbook.config import ConfigError, DataConfig, RunConfig, Task, unflatten
from sweepbook.data import DataError, load_dataset, split_dataset
from sweepbook.figure_kinds import (
    CURVE_SPLITS,
    PlannedFigure,
    has_values,
    learning_curve_figure,
)
from sweepbook.results import (
    COMPARE_RECORD,
    FIGURES_DIR,
    REPORT_FILE,
    SWEEP_RECORD,
    SweepResults,
    load_results,
)
from sweepbook.store import atomic_write_json, atomic_write_text
from sweepbook.tables import Table, TableRow, config_label, format_stat
from sweepbook.usercode import is_reference
from sweepbook.venues import DEFAULT_VENUE, venue_named

SWEEP = "sweep"  # the column naming each store in frames and figures that mix stores
CURVE_METRICS = ("accuracy", "loss")  # history metrics drawn side by side, where stored


# --- the test data each store was scored on ---------------------------------------------------


def test_split_view(data: dict[str, Any]) -> dict[str, Any]:
    """The data settings that decide which examples form the test split (see
    :func:`sweepbook.data.split_dataset`), from a run's flat config: the source, its path,
    arguments and pixel scale, the subsample, the seed, the test share, and whether the holdout
    is stratified. Validation share, folds, train fraction and standardization only change
    what the model trains on. Read from the stored text, never validated: validating would
    import the users' code a config names."""
    split = data.get("data.split", "stratified_holdout")
    args = {k.removeprefix("data.args."): v for k, v in data.items() if k.startswith("data.args.")}
    return {
        "data.name": data.get("data.name"),
        "data.path": data.get("data.path"),
        "data.args": dict(sorted(args.items())),
        "data.scale": data.get("data.scale", "auto"),
        "data.max_samples": data.get("data.max_samples"),
        "data.split_seed": data.get("data.split_seed"),
        "data.test_fraction": data.get("data.test_fraction"),
        "data.split": "stratified" if str(split).startswith("stratified") else "shuffled",
        "task": data.get("task", "classification"),
    }


def test_split_sha256(
    config: DataConfig, task: Task = "classification", base: Path | None = None
) -> str:
    """sha256 of the test examples (pixels after scaling, then labels, with shapes and dtypes)
    that ``config`` gives, before any standardization (which depends on the training part)."""
    raw_pixels = config.model_copy(update={"normalize": "none"})
    dataset = load_dataset(config.name, config.path, config.scale, task, base)
    split = split_dataset(dataset, raw_pixels)
    digest = hashlib.sha256()
    for array in (split.x_test, split.y_test):
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
        digest.update(contiguous.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class TestData:
    view: dict[str, Any]  # test_split_view of every run in the store
    sha256: str


def store_test_data(stored: SweepResults) -> TestData:
    """The one test split every stored run of ``stored`` was scored on; a store whose runs
    used several (a sweep over ``data.test_fraction``, say) cannot be compared as one."""
    directory = stored.directory
    views: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for text in stored.runs["config"].unique(maintain_order=True).to_list():
        flat = json.loads(text)
        view = test_split_view(flat)
        views.setdefault(json.dumps(view, sort_keys=True), (view, flat))
    if not views:
        raise ConfigError(directory, None, "holds no stored run: nothing to compare")
    if len(views) > 1:
        (first, _), (other, _) = list(views.values())[:2]
        key = next(k for k in first if first[k] != other[k])
        raise ConfigError(
            directory,
            key,
            f"its runs use more than one test split ({first[key]!r} and {other[key]!r}): "
            "compare stores that each test on one",
        )
    view, flat = next(iter(views.values()))
    if is_reference(view["data.name"]):
        return TestData(view, _users_loader_digest(stored, view))
    try:
        data = RunConfig.model_validate(unflatten(flat))
        experiment = stored.record.get("experiment_file")
        base = Path(experiment).parent if experiment else None
        digest = test_split_sha256(data.data, data.task, base)
    except (DataError, OSError) as error:
        raise ConfigError(
            directory, getattr(error, "key", "data.path"), f"cannot load its test data: {error}"
        ) from None
    return TestData(view, digest)


def _users_loader_digest(stored: SweepResults, view: dict[str, Any]) -> str:
    """For data from a user's loader, which comparing never runs (it would import the user's
    code): the settings and the loader file's sha256 the runs stored, hashed together. Same
    loader code, arguments and split settings: the same test examples (loaders are
    deterministic, as the contract asks)."""
    loader = view["data.name"]
    code = stored.runs["user_code"] if "user_code" in stored.runs.columns else None
    hashes = {
        json.loads(text).get(loader) for text in (code.drop_nulls() if code is not None else [])
    }
    text = json.dumps({"view": view, "loader": sorted(h for h in hashes if h)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_test_data(labels: Sequence[Path], tests: Sequence[TestData]) -> None:
    """Refuse, in one line naming both stores and the key, stores not tested on one split."""
    first, reference = labels[0], tests[0]
    for directory, test in zip(labels[1:], tests[1:], strict=True):
        for key, value in reference.view.items():
            if test.view[key] != value:
                raise ConfigError(
                    directory,
                    key,
                    f"{value!r} in {first} but {test.view[key]!r} here: stores compared must "
                    "share their test data",
                )
        if test.sha256 != reference.sha256:
            raise ConfigError(
                directory,
                "data.path",
                f"its test examples differ from those of {first} (sha256 {test.sha256[:12]} "
                f"vs {reference.sha256[:12]}) though the data settings agree: the data files "
                "changed",
            )


# --- each store's best, and the bests side by side --------------------------------------------


@dataclass(frozen=True)
class Contender:
    """A configuration of one store and its finished runs, as one row of a comparison."""

    key: str  # unique among the compared: the store's label, or label and configuration
    sweep: str  # the store's label
    title: str  # the sweep's
    configuration: str
    runs: pl.DataFrame  # run_id (prefixed by the store's label), SWEEP (= key), the metrics


@dataclass(frozen=True)
class StoreBest:
    """One store, its configurations and the best of them, chosen as its own report chooses."""

    label: str  # the store directory's name, unique among the compared
    stored: SweepResults
    compare: list[str]
    ok: pl.DataFrame  # the finished runs
    summary: pl.DataFrame  # one row per configuration (stats.summarize)
    best: int  # the best configuration's row in ``summary``

    @property
    def row(self) -> dict[str, Any]:
        return self.summary.row(self.best, named=True)

    @property
    def configuration(self) -> str:
        return config_label(self.row, self.compare)

    def contender(self, index: int, metrics: Sequence[str], *, keyed_by_label: bool) -> Contender:
        """Configuration ``index`` of the summary, keyed by the store's label alone (one row per
        store) or by label and configuration (every configuration of every store)."""
        row = self.summary.row(index, named=True)
        configuration = config_label(row, self.compare)
        key = self.label if keyed_by_label else f"{self.label}: {configuration}"
        runs = self.ok.filter(pl.col("run_id").is_in(row["run_ids"])).select(
            # Two studies may share a run (same config, same id): prefixed, each stays its own.
            (pl.lit(f"{self.label}/") + pl.col("run_id")).alias("run_id"),
            pl.lit(key).alias(SWEEP),
            *[pl.col(m).cast(pl.Float64) for m in metrics],
        )
        return Contender(key, self.label, self.stored.record["title"], configuration, runs)


def headline(stores: Sequence[SweepResults]) -> tuple[str, Literal["max", "min"]]:
    """The headline metric and direction the stores share (one store's best on accuracy and
    another's on loss cannot be set side by side)."""
    first = stores[0]
    for stored in stores[1:]:
        for key in ("metric", "direction"):
            if stored.record[key] != first.record[key]:
                raise ConfigError(
                    stored.directory,
                    f"report.{key}",
                    f"{first.record[key]!r} in {first.directory} but {stored.record[key]!r} "
                    "here: stores compared must share their headline metric",
                )
    return first.record["metric"], first.record["direction"]


def selection_metric(stores: Sequence[SweepResults], metric: str) -> str:
    """What every best is chosen on: the validation twin of a ``test.*`` headline where every
    finished run of every store stored it (as the report chooses), else the headline."""
    validation = f"val.{metric.partition('.')[2]}"
    ok = pl.concat(
        [
            stored.runs.filter(pl.col("status") == "ok").select(
                pl.col(validation).cast(pl.Float64)
                if validation in stored.runs.columns
                else pl.lit(None, pl.Float64).alias(validation)
            )
            for stored in stores
        ]
    )
    return findings.selection_metric_for(metric, ok.columns, ok)


def store_best(
    stored: SweepResults,
    label: str,
    metrics: Sequence[str],
    selected_on: str,
    direction: Literal["max", "min"],
) -> StoreBest:
    """The configurations of ``stored`` and the best of them on mean ``selected_on``."""
    ok = stored.runs.filter(pl.col("status") == "ok")
    if ok.is_empty():
        raise ConfigError(
            stored.directory, None, "no run finished successfully: nothing to compare"
        )
    compare = list(stored.record["compare"])
    summary = stats.summarize(ok, compare, list(metrics))
    best = stats.best_index(summary, selected_on, direction)
    if best is None:
        raise ConfigError(stored.directory, selected_on, "no finished run stored this metric")
    return StoreBest(label, stored, compare, ok, summary, best)


def contenders_compared(
    contenders: Sequence[Contender],
    metric: str,
    selected_on: str,
    direction: Literal["max", "min"],
) -> list[dict[str, Any]]:
    """Per contender: mean ± std of ``metric``, a CI of the mean, Welch's p against the best
    contender (chosen on mean ``selected_on``), Holm-adjusted over the others, and the verdict;
    best first. JSON-able: the record of compare.json."""
    runs = pl.concat([contender.runs for contender in contenders])
    summary = stats.summarize(runs, [SWEEP], list(dict.fromkeys([metric, selected_on])))
    overall = stats.best_index(summary, selected_on, direction)
    assert overall is not None  # every contender has runs with the metric (store_best)
    summary = stats.compare_to_best(summary, runs, metric, overall, correction="holm")
    by_key = {contender.key: contender for contender in contenders}
    rows = []
    for index, row in enumerate(summary.iter_rows(named=True)):
        contender = by_key[row[SWEEP]]
        values = contender.runs[metric].drop_nulls().drop_nans().to_list()
        low, high, method = stats.mean_interval(values, confidence=findings.CONFIDENCE)
        p_adjusted = row[f"{metric}:p_adjusted"]
        verdict = (
            "best"
            if index == overall
            else "tie"
            if row[f"{metric}:tie"]
            else "differs"
            if p_adjusted is not None and np.isfinite(p_adjusted)
            else "untested"
        )
        rows.append(
            {
                "sweep": contender.sweep,
                "title": contender.title,
                "configuration": contender.configuration,
                "n": row["n"],
                "mean": row[f"{metric}:mean"],
                "std": row[f"{metric}:std"],
                "ci_low": low,
                "ci_high": high,
                "ci_method": method,
                "p_vs_best": row[f"{metric}:p_vs_best"],
                "p_adjusted": p_adjusted,
                "verdict": verdict,
            }
        )
    return sorted(rows, key=lambda row: row["verdict"] != "best")


def _p_text(p: float | None) -> str:
    return "—" if p is None or not np.isfinite(p) else f"{p:.3g}"


def statistics_table(
    rows: Sequence[dict[str, Any]], metric: str, selected_on: str, *, every: bool
) -> Table:
    chosen = "" if selected_on == metric else f", chosen on mean {selected_on}"
    what = "Every configuration of every sweep" if every else "The best configuration of each sweep"
    against = "the other configurations" if every else "the other sweeps' bests"
    caption = (
        f"{what}: mean ± std of {metric} over its runs and a {findings.CONFIDENCE:.0%} "
        "confidence interval of the mean; p is Welch's t-test against the overall best "
        f"(★{chosen}), Holm-adjusted over {against}; ≈ marks no evidence of a difference at "
        f"α = {findings.ALPHA}. The bests were chosen from the same runs they are scored on, "
        "so their means are optimistically biased."
    )
    headers = [
        "sweep",
        "configuration" if every else "best configuration",
        "runs",
        metric,
        "CI of the mean",
        "p",
        "p (Holm)",
    ]
    return Table(
        caption=caption,
        headers=headers,
        rows=[
            TableRow(
                cells=[
                    f"{row['sweep']}: {row['title']}",
                    row["configuration"],
                    str(row["n"]),
                    format_stat(row["mean"], row["std"]),
                    "—"
                    if not np.isfinite(row["ci_low"])
                    else f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}] ({row['ci_method']})",
                    _p_text(row["p_vs_best"]),
                    _p_text(row["p_adjusted"]),
                ],
                best=row["verdict"] == "best",
                tie=row["verdict"] == "tie",
            )
            for row in rows
        ],
        marked_column=3,
    )


def summary_sentences(rows: Sequence[dict[str, Any]], metric: str) -> list[str]:
    """What the comparison found, in words, from the statistics rows."""
    best = next(row for row in rows if row["verdict"] == "best")
    sentences = [
        f"Best: {best['sweep']} ({best['configuration']}), {metric} "
        f"{format_stat(best['mean'], best['std'])} over {best['n']} runs."
    ]
    for verdict, text in (
        ("tie", "Within seed noise of it (Holm-adjusted Welch p ≥ {alpha}): {names}."),
        ("differs", "Behind it beyond seed noise (Holm-adjusted Welch p < {alpha}): {names}."),
        ("untested", "Not tested against it (fewer than two runs): {names}."),
    ):
        names = [row["sweep"] for row in rows if row["verdict"] == verdict]
        if names:
            sentences.append(text.format(alpha=findings.ALPHA, names=", ".join(names)))
    return sentences


# --- the report -------------------------------------------------------------------------------


def store_labels(directories: Sequence[Path]) -> list[str]:
    """Each store's directory name, numbered where two share one."""
    names = [directory.resolve().name for directory in directories]
    return [
        name if names.count(name) == 1 else f"{name}#{names[:index].count(name) + 1}"
        for index, name in enumerate(names)
    ]


def default_out(directories: Sequence[Path]) -> Path:
    """``compare-<a>-vs-<b>...`` beside the first store (in reports/ for the usual stores)."""
    first = Path(directories[0]).resolve()
    return first.parent / ("compare-" + "-vs-".join(store_labels(directories)))


def check_inputs(directories: Sequence[Path], out: Path) -> None:
    """Two stores at least, each once, and an output directory that is none of them."""
    if len(directories) < 2:
        raise ConfigError(
            Path(directories[0]) if directories else out, None, "compare needs two stores or more"
        )
    seen: set[Path] = set()
    for directory in directories:
        resolved = directory.resolve()
        if resolved in seen:
            raise ConfigError(directory, None, "given twice: compare each store once")
        seen.add(resolved)
        if not (directory / SWEEP_RECORD).is_file():
            raise ConfigError(directory, None, f"is not a sweep store (no {SWEEP_RECORD})")
    if out.resolve() in seen or (out / SWEEP_RECORD).is_file():
        raise ConfigError(out, None, "is a sweep store: write the comparison elsewhere (--out)")


@dataclass(frozen=True)
class CompareContext:
    title: str
    metric: str
    selected_on: str
    direction: str
    sentences: list[str]
    table: Table
    statistics: list[dict[str, Any]]  # each store's best
    every_table: Table | None  # every configuration of every store, when asked for
    every_statistics: list[dict[str, Any]] | None
    stores: list[dict[str, Any]]  # provenance of each store compared
    test_data: dict[str, Any]
    generated_at: str


def _store_provenance(best: StoreBest, directory: Path, out: Path) -> dict[str, Any]:
    record = best.stored.record
    # The store's own report, linked from wherever the comparison is written.
    href = os.path.relpath(directory.resolve() / REPORT_FILE, out.resolve())
    return {
        "sweep": best.label,
        "directory": str(directory),
        "title": record["title"],
        "question": record["question"],
        "sweep_file": record.get("sweep_file", ""),
        "experiment_file": record.get("experiment_file", ""),
        "runs": len(record["run_ids"]),
        "results_sha256": best.stored.fingerprint(),
        "best": best.configuration,
        "href": Path(href).as_posix(),
    }


def curve_figures(bests: Sequence[StoreBest], venue_name: str) -> list[PlannedFigure]:
    """Each store's best over epochs, side by side: one figure per stored history metric."""
    history = pl.concat(
        [
            best.stored.history.filter(pl.col("run_id").is_in(best.row["run_ids"])).with_columns(
                (pl.lit(f"{best.label}/") + pl.col("run_id")).alias("run_id")
            )
            for best in bests
        ],
        how="diagonal_relaxed",
    )
    rows = pl.DataFrame(
        {
            SWEEP: [f"{best.label} ({best.configuration})" for best in bests],
            "run_ids": [
                [f"{best.label}/{run_id}" for run_id in best.row["run_ids"]] for best in bests
            ],
        }
    )
    venue = venue_named(venue_name)
    planned = []
    for metric in CURVE_METRICS:
        if not any(has_values(history, f"{split}.{metric}") for split, _ in CURVE_SPLITS):
            continue
        figure = learning_curve_figure(rows, history, [SWEEP], metric, selected=True, venue=venue)
        planned.append(
            PlannedFigure(
                name=f"learning_curves_{metric}",
                title=f"Learning curves: {metric}",
                caption=(
                    f"Training and validation {metric} per epoch of each sweep's best "
                    "configuration: mean over its runs, with a band of ± one standard "
                    "deviation; each epoch averages the runs still training."
                ),
                figure=figure,
            )
        )
    return planned


def build_comparison(
    directories: Sequence[Path], out: Path, *, every_configuration: bool = False
) -> tuple[CompareContext, list[StoreBest]]:
    """Everything the comparison to be written in ``out`` shows, after every check (nothing
    written yet); ``every_configuration`` adds a table of every configuration of every store."""
    stores = [load_results(directory) for directory in directories]
    labels = store_labels(directories)
    tests = [store_test_data(stored) for stored in stores]
    check_same_test_data(list(directories), tests)
    metric, direction = headline(stores)
    selected_on = selection_metric(stores, metric)
    metrics = list(dict.fromkeys([metric, selected_on]))
    bests = [
        store_best(stored, label, metrics, selected_on, direction)
        for stored, label in zip(stores, labels, strict=True)
    ]
    rows = contenders_compared(
        [best.contender(best.best, metrics, keyed_by_label=True) for best in bests],
        metric,
        selected_on,
        direction,
    )
    every_rows = (
        contenders_compared(
            [
                best.contender(index, metrics, keyed_by_label=False)
                for best in bests
                for index in range(best.summary.height)
            ],
            metric,
            selected_on,
            direction,
        )
        if every_configuration
        else None
    )
    context = CompareContext(
        title="Sweeps compared: " + " vs ".join(stored.record["title"] for stored in stores),
        metric=metric,
        selected_on=selected_on,
        direction=direction,
        sentences=summary_sentences(rows, metric),
        table=statistics_table(rows, metric, selected_on, every=False),
        statistics=rows,
        every_table=None
        if every_rows is None
        else statistics_table(every_rows, metric, selected_on, every=True),
        every_statistics=every_rows,
        stores=[
            _store_provenance(best, directory, out)
            for best, directory in zip(bests, directories, strict=True)
        ],
        test_data={**tests[0].view, "test_split_sha256": tests[0].sha256},
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    return context, bests


def render_comparison(
    directories: Sequence[Path],
    out: Path | None = None,
    venue: str | None = None,
    *,
    every_configuration: bool = False,
) -> Path:
    """Check, then write ``index.html``, ``compare.json`` and ``figures/`` in ``out`` (default
    :func:`default_out`), and refresh the list of reports in the directory above it.
    ``every_configuration`` adds every configuration of every store to the statistics."""
    directories = [Path(directory) for directory in directories]
    target = Path(out) if out is not None else default_out(directories)
    check_inputs(directories, target)
    context, bests = build_comparison(directories, target, every_configuration=every_configuration)
    venue_name = venue or bests[0].stored.record.get("venue", DEFAULT_VENUE)
    views = []
    for planned in curve_figures(bests, venue_name):
        data_uri, files = reporting.save_figure(planned.figure, target, planned.name)
        snippet = reporting.figure_snippet(planned, target.name, wide=True)
        views.append(
            reporting.FigureView(
                planned.name, planned.title, planned.caption, data_uri, files, True, snippet
            )
        )
    written = {Path(href).name for view in views for _, href in view.files}
    for stale in (target / FIGURES_DIR).glob("[!.]*"):  # not another writer's temp files
        if stale.is_file() and stale.name not in written:
            stale.unlink(missing_ok=True)
    html = (
        reporting.environment()
        .get_template("compare.html.j2")
        .render(compare=context, figures=views, version=__version__)
    )
    page = target / REPORT_FILE
    atomic_write_text(page, html)
    atomic_write_json(target / COMPARE_RECORD, comparison_record(context))
    reporting.render_index(target.parent)
    return page


def comparison_record(context: CompareContext) -> dict[str, Any]:
    """compare.json: what was compared and what was found (NaN written as null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not np.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return {
        "title": context.title,
        "metric": context.metric,
        "selected_on": context.selected_on,
        "direction": context.direction,
        "sentences": context.sentences,
        "statistics": clean(context.statistics),
        **(
            {}
            if context.every_statistics is None
            else {"every_configuration": clean(context.every_statistics)}
        ),
        "stores": context.stores,
        "test_data": context.test_data,
        "rendered_at": context.generated_at,
        "sweepbook": __version__,
    }
