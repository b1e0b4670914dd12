"""The record a sweep leaves beside its results for its report: ``sweep.json`` (what the sweep
asked: axes, metric, the run ids it planned) and copies of the sweep and experiment files.

The report reads these and never the sweep file itself, so a store renders anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sweepbook.config import Sweep, metric_direction, rung_direction
from sweepbook.halving import rung_epochs
from sweepbook.plan import PlannedRun
from sweepbook.results import EXPERIMENT_COPY, SWEEP_COPY, SWEEP_RECORD
from sweepbook.store import atomic_write_json, atomic_write_text
from sweepbook.tasks import user_metrics_info


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
        # What the targets are, and the users' metrics' directions and labels: a report ranks
        # by them without importing the users' code (stores without these: classification).
        "task": sweep.experiment.task,
        "metrics": user_metrics_info(sorted({m for run in plan for m in run.config.metrics})),
        # Successive halving's settings and rung schedule (absent: every run trained in full).
        **({"halving": halving_record(sweep, plan)} if sweep.halving else {}),
    }
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / SWEEP_COPY, sweep.path.read_text(encoding="utf-8"))
    atomic_write_text(
        directory / EXPERIMENT_COPY, sweep.experiment_path.read_text(encoding="utf-8")
    )
    atomic_write_json(directory / SWEEP_RECORD, record)


def halving_record(sweep: Sweep, plan: Sequence[PlannedRun]) -> dict[str, object]:
    """``[halving]`` as the report reads it: its settings, the rung metric's direction and the
    epochs trained by each rung's end (the plan's runs share ``train.epochs``)."""
    halving = sweep.halving
    assert halving is not None and halving.metric is not None
    epochs = max((run.config.train.epochs for run in plan), default=sweep.experiment.train.epochs)
    return {
        "min_epochs": halving.min_epochs,
        "eta": halving.eta,
        "metric": halving.metric,
        "direction": rung_direction(sweep),
        "rung_epochs": rung_epochs(halving.min_epochs, halving.eta, epochs),
    }


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
