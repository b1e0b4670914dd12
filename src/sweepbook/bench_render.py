"""Report rendering at scale, for the benchmark: a store of 1,000 runs x 50 epochs rendered
into its report, timed.

The store is made by the real planner and the real row writers (:mod:`sweepbook.results`, the
ones the engine uses) from a real sweep file; only the training outputs (class probabilities,
per-epoch curves) are synthetic, drawn so that accuracy depends smoothly on the swept values,
as in a real sweep. Rendering never looks at how a store was made, so its time on this store
is its time on a trained one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import polars as pl

from sweepbook import provenance
from sweepbook.bench_workloads import DIGITS_EXPERIMENT
from sweepbook.config import load_sweep
from sweepbook.data import Split, load_split
from sweepbook.plan import PlannedRun, expand
from sweepbook.record import write_sweep_record
from sweepbook.report import render_report
from sweepbook.results import PROVENANCE, history_frame, result_row, runs_frame
from sweepbook.store import Store, atomic_write_json
from sweepbook.train import EpochRecord, Evaluation, RunOutput

# The digits MLP of the engine benchmark, trained for ``epochs`` epochs.
EXPERIMENT = DIGITS_EXPERIMENT.replace("epochs = 10", "epochs = {epochs}")

# 5 x 4 x 5 = 100 configurations; seeds make up the rest of the runs.
SWEEP = """\
# Render benchmark: three swept axes, many seeds.
experiment = "render_bench"
seeds = {seeds}

[grid]
"optimizer.learning_rate" = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
"train.batch_size" = [16, 32, 64, 128]
"model.dropout" = [0.0, 0.1, 0.2, 0.3, 0.4]

[report]
title = "Render benchmark"
compare = ["optimizer.learning_rate", "train.batch_size", "model.dropout"]
"""
CONFIGURATIONS = 100


@dataclass(frozen=True)
class RenderTiming:
    runs: int
    epochs: int
    configurations: int
    figures: int
    seconds: float


def _probabilities(
    labels: np.ndarray, classes: int, accuracy: float, rng: np.random.Generator
) -> np.ndarray:
    """Class probabilities whose argmax is right with probability ``accuracy``."""
    n = labels.size
    predicted = np.where(
        rng.random(n) < accuracy, labels, (labels + rng.integers(1, classes, n)) % classes
    )
    logits = rng.normal(0.0, 1.0, (n, classes))
    logits[np.arange(n), predicted] += 4.0
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def synthetic_output(
    run: PlannedRun, split: Split, epochs: int, rng: np.random.Generator
) -> RunOutput:
    """What a trained run returns, drawn: final accuracy peaks at lr 1e-3, falls with dropout
    and batch size; curves approach it exponentially."""
    config = run.config
    lr_offset = abs(np.log10(config.optimizer.learning_rate) + 3.0)
    final = 0.97 - 0.04 * lr_offset - 0.05 * config.model.dropout
    final -= 0.005 * np.log2(config.train.batch_size / 16) + rng.normal(0.0, 0.004)
    progress = 1.0 - np.exp(-np.arange(1, epochs + 1) / (epochs / 5))
    accuracy_curve = 0.1 + (final - 0.1) * progress + rng.normal(0.0, 0.003, epochs)
    loss_curve = 2.3 * (1.0 - progress) + 0.1 + rng.normal(0.0, 0.01, epochs)
    # As jax arrays: the row writers receive what a compiled program returns.
    history = EpochRecord(
        lr=jnp.full(epochs, config.optimizer.learning_rate),
        train_loss=jnp.asarray(loss_curve * 0.8),
        train_accuracy=jnp.asarray(np.minimum(accuracy_curve + 0.02, 1.0)),
        val_loss=jnp.asarray(loss_curve),
        val_accuracy=jnp.asarray(accuracy_curve),
        val_f1_macro=jnp.asarray(accuracy_curve - 0.005),
    )

    def evaluation(labels: np.ndarray) -> Evaluation:
        probabilities = _probabilities(labels, split.num_classes, final, rng)
        correct = probabilities.argmax(axis=1) == labels
        loss = -np.log(probabilities[np.arange(labels.size), labels]).mean()
        return Evaluation(
            jnp.asarray(loss),
            jnp.asarray(correct.mean()),
            jnp.asarray(correct.mean()),
            jnp.asarray(probabilities),
        )

    best = int(np.argmin(loss_curve)) + 1
    return RunOutput(
        history=history,
        val=evaluation(split.y_val),
        test=evaluation(split.y_test),
        best_epoch=jnp.asarray(best),
        epochs_run=jnp.asarray(epochs),
        diverged=jnp.asarray(False),
        params=jnp.asarray(16_970),
        nonzero_params=jnp.asarray(16_970),
        model_bytes=jnp.asarray(16_970 * 4.0),
    )


def write_synthetic_store(directory: Path, *, runs: int, epochs: int, seed: int = 0) -> int:
    """A store of ``runs`` runs (a multiple of 100) of ``epochs`` epochs; returns the count."""
    root = directory / "project"
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    (root / "sweeps").mkdir(parents=True, exist_ok=True)
    (root / "experiments" / "render_bench.toml").write_text(EXPERIMENT.format(epochs=epochs))
    seeds = list(range(max(1, runs // CONFIGURATIONS)))
    sweep_path = root / "sweeps" / "render_bench.toml"
    sweep_path.write_text(SWEEP.format(seeds=seeds))
    sweep = load_sweep(sweep_path)
    plan = expand(sweep)
    out = directory / "reports" / "render_bench"
    write_sweep_record(out, sweep, plan, f"sweepbook run {sweep_path}")
    info = provenance.collect(sweep.path, sweep.experiment_path, ["sweepbook", "bench"])
    atomic_write_json(out / PROVENANCE, info)
    split = load_split(plan[0].config.data)
    store = Store(out)
    rng = np.random.default_rng(seed)
    origin = {"git_commit": info["git"]["commit"], "host": info["host"], "device": "synthetic"}
    for start in range(0, len(plan), CONFIGURATIONS):
        chunk = plan[start : start + CONFIGURATIONS]
        outputs = [synthetic_output(run, split, epochs, rng) for run in chunk]
        rows = [
            result_row(run, output, split, 1.0, "bench", origin)
            for run, output in zip(chunk, outputs, strict=True)
        ]
        history = [history_frame(r.run_id, o) for r, o in zip(chunk, outputs, strict=True)]
        store.append(runs_frame(rows), pl.concat(history))
    store.merge()
    return len(plan)


def time_render(directory: Path, *, runs: int = 1000, epochs: int = 50) -> RenderTiming:
    """Build the store (untimed), then time ``render_report`` on it."""
    count = write_synthetic_store(directory, runs=runs, epochs=epochs)
    out = directory / "reports" / "render_bench"
    started = time.perf_counter()
    render_report(out)
    seconds = time.perf_counter() - started
    figures = len(list((out / "figures").glob("*.svg")))
    return RenderTiming(count, epochs, CONFIGURATIONS, figures, seconds)
