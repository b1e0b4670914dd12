"""What the report shows of a successive halving, from the store alone: the rung table
(configurations and runs per rung, run-epochs trained against a full grid's), the configurations
stopped at a rung (listed apart from the results table, which holds only those that reached the
last rung), and each configuration's mean rung metric across rungs for the ``rungs`` figure.

Read from ``sweep.json``'s ``halving`` record (the schedule), ``rungs.parquet`` (each run's rung
values, :mod:`sweepbook.rungs` writes it) and ``runs.parquet`` (configurations and statuses).
A store without a ``halving`` record has no view: its report is what it always was.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from sweepbook.halving import REPLICATE_KEYS, STOPPED, run_epochs_saved
from sweepbook.tables import Table, TableRow, config_label, format_stat


@dataclass(frozen=True)
class RungCurve:
    """One configuration's mean rung metric over its runs at each rung it reached."""

    label: str
    epochs: list[int]  # epochs trained by the end of each rung reached
    means: list[float]
    reached_last: bool  # trained all the way (in the results table) rather than stopped
    tip: str  # its configuration and values, shown on hover


@dataclass(frozen=True)
class HalvingView:
    metric: str  # the rung metric
    direction: Literal["max", "min"]
    settings: str  # the [halving] settings in one line (provenance too)
    summary: str  # the run-epochs trained against a full grid's, in a sentence
    table: Table  # one row per rung
    stopped: Table  # one row per configuration stopped at a rung
    curves: list[RungCurve]


def halving_settings(halving: Mapping[str, Any]) -> str:
    """``[halving]`` in one line: "min_epochs 4, eta 3: rungs end at 4, 12, 36, 40 epochs;
    the best 1/3 by mean val.accuracy over seeds (higher is better) go on"."""
    ends = ", ".join(str(end) for end in halving["rung_epochs"])
    better = "higher" if halving["direction"] == "max" else "lower"
    return (
        f"min_epochs {halving['min_epochs']}, eta {halving['eta']}: rungs end at {ends} epochs; "
        f"the best 1/{halving['eta']} of the configurations by mean {halving['metric']} over "
        f"their seeds ({better} is better) go on"
    )


def configuration_keys(runs: pl.DataFrame, record: Mapping[str, Any]) -> list[str]:
    """The columns that tell configurations apart, as halving did: every swept key but the
    replicate keys (seed, fold), and the variant where the sweep has variants."""
    axes = [str(k) for k in record.get("axes", record["compare"])]
    keys = [k for k in axes if k not in REPLICATE_KEYS and k in runs.columns]
    if "variant" in runs.columns and runs["variant"].drop_nulls().len():
        keys.insert(0, "variant")
    return keys


def halving_view(
    runs: pl.DataFrame, ledger: pl.DataFrame, record: Mapping[str, Any]
) -> HalvingView | None:
    """The report's view of the sweep's halving; None for a sweep without ``[halving]``."""
    halving = record.get("halving")
    if not halving:
        return None
    ends: list[int] = [int(end) for end in halving["rung_epochs"]]
    metric: str = halving["metric"]
    direction: Literal["max", "min"] = halving["direction"]
    planned = set(record["run_ids"])
    ledger = ledger.filter(pl.col("run_id").is_in(planned))
    keys = configuration_keys(runs, record)
    compare = [str(k) for k in record["compare"]]
    rows = {row["run_id"]: row for row in runs.iter_rows(named=True)}
    config_of = {
        run_id: json.dumps([row[k] for k in keys], default=str) for run_id, row in rows.items()
    }
    values: dict[str, dict[int, float]] = {}  # run id -> rung -> value
    for entry in ledger.iter_rows(named=True):
        values.setdefault(entry["run_id"], {})[int(entry["rung"])] = float(entry["value"])
    # A run's rung values count once its row is stored (a rung's runs are in the ledger first).
    reached = {run_id: max(by_rung) for run_id, by_rung in values.items()}
    return HalvingView(
        metric=metric,
        direction=direction,
        settings=halving_settings(halving),
        summary=_summary(reached, ends, len(planned)),
        table=_rung_table(reached, config_of, ends, len(planned)),
        stopped=_stopped_table(runs, values, config_of, compare, metric, ends),
        curves=_curves(values, config_of, rows, compare, metric, ends),
    )


def _summary(reached: Mapping[str, int], ends: Sequence[int], planned: int) -> str:
    trained, _ = run_epochs_saved(list(reached.values()), ends)
    full = planned * ends[-1]
    share = trained / full if full else 0.0
    return (
        f"Successive halving gave the runs {trained:,} run-epochs of a full grid's {full:,} "
        f"({planned} runs × {ends[-1]} epochs): {share:.0%}, saving {1 - share:.0%}."
    )


def _rung_table(
    reached: Mapping[str, int], config_of: Mapping[str, str], ends: Sequence[int], planned: int
) -> Table:
    full = planned * ends[-1]
    table_rows = []
    so_far = 0
    for rung, end in enumerate(ends):
        at_rung = [run_id for run_id, last in reached.items() if last >= rung]
        start = ends[rung - 1] if rung else 0
        this_rung = len(at_rung) * (end - start)
        so_far += this_rung
        configurations = len({config_of[run_id] for run_id in at_rung if run_id in config_of})
        table_rows.append(
            TableRow(
                cells=[
                    str(rung + 1),
                    str(end) if end == start + 1 else f"{start + 1}–{end}",
                    str(configurations),
                    str(len(at_rung)),
                    f"{this_rung:,}",
                    f"{so_far:,}",
                    f"{so_far / full:.0%}" if full else "—",
                ],
                best=False,
            )
        )
    return Table(
        caption=(
            "Rungs of the successive halving: the configurations and runs each trained, and "
            f"the run-epochs trained so far against a full grid's {full:,} ({planned} runs × "
            f"{ends[-1]} epochs each)."
        ),
        headers=[
            "rung",
            "epochs",
            "configurations",
            "runs",
            "run-epochs in the rung",
            "run-epochs so far",
            "of a full grid",
        ],
        rows=table_rows,
    )


def _mean(scores: Sequence[float]) -> float:
    return math.fsum(scores) / len(scores) if scores else math.nan


def _stopped_table(
    runs: pl.DataFrame,
    values: Mapping[str, Mapping[int, float]],
    config_of: Mapping[str, str],
    compare: list[str],
    metric: str,
    ends: Sequence[int],
) -> Table:
    stopped = runs.filter(pl.col("status") == STOPPED) if "status" in runs.columns else runs
    by_config: dict[str, list[dict[str, Any]]] = {}
    for row in stopped.iter_rows(named=True):
        by_config.setdefault(config_of[row["run_id"]], []).append(row)
    entries = []
    for group in by_config.values():
        rung = max(int(row["rung"]) for row in group)
        scores = [values.get(row["run_id"], {}).get(rung, math.nan) for row in group]
        finite = [s for s in scores if math.isfinite(s)]
        std = _std(finite)
        entries.append((rung, _mean(finite), config_label(group[0], compare), len(group), std))
    entries.sort(key=lambda entry: (-entry[0], entry[2]))
    return Table(
        caption=(
            "Configurations stopped at a rung, latest first: their runs are stored with the "
            f"status 'stopped' and their metrics at that rung's end, and are not in the results "
            f"table. The mean {metric} over their runs is what they were ranked on."
        ),
        headers=["configuration", "stopped after rung", "epochs trained", "runs", metric],
        rows=[
            TableRow(
                cells=[label, str(rung + 1), str(ends[rung]), str(count), format_stat(mean, std)],
                best=False,
            )
            for rung, mean, label, count, std in entries
        ],
    )


def _std(scores: Sequence[float]) -> float | None:
    if len(scores) < 2:
        return None
    mean = _mean(scores)
    return math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / (len(scores) - 1))


def _curves(
    values: Mapping[str, Mapping[int, float]],
    config_of: Mapping[str, str],
    rows: Mapping[str, dict[str, Any]],
    compare: list[str],
    metric: str,
    ends: Sequence[int],
) -> list[RungCurve]:
    runs_of: dict[str, list[str]] = {}
    for run_id in values:
        if run_id in config_of:
            runs_of.setdefault(config_of[run_id], []).append(run_id)
    last = len(ends) - 1
    curves = []
    for run_ids in runs_of.values():
        rungs = sorted({rung for run_id in run_ids for rung in values[run_id]})
        means = [_mean([values[r][rung] for r in run_ids if rung in values[r]]) for rung in rungs]
        label = config_label(rows[run_ids[0]], compare)
        shown = ", ".join(
            f"{ends[rung]} epochs {format_stat(mean, None)}"
            for rung, mean in zip(rungs, means, strict=True)
        )
        curves.append(
            RungCurve(
                label=label,
                epochs=[ends[rung] for rung in rungs],
                means=means,
                reached_last=bool(rungs) and rungs[-1] == last,
                tip=f"{label}: mean {metric} {shown}",
            )
        )
    curves.sort(key=lambda curve: (curve.reached_last, curve.label))
    return curves
