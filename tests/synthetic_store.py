"""A store written directly, without training: the files ``sweepbook report`` reads (the sweep
record, provenance, runs and history Parquet files), with plausible, seeded numbers. Rendering
tests use it to get a store of any shape in milliseconds; the report reads only the store, so
it cannot tell the difference."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sweepbook.metrics import regression_metrics

CLASSES = 10
BINS = 10
SEED_NOISE = 0.01  # std of test accuracy between seeds, about what the digits MLP shows
# Regression stores: a linear model of FEATURES inputs, TEST_EXAMPLES test examples and as many
# validation ones; a user's own metric (not built in) that the sweep record defines.
FEATURES = 3
TEST_EXAMPLES = 40
USER_METRIC = "max_error"
USER_METRICS = {USER_METRIC: {"direction": "min", "label": "maximum error"}}


def write_synthetic_store(
    directory: Path,
    axes: dict[str, list[Any]],
    *,
    name: str = "synthetic",
    seeds: int = 3,
    epochs: int = 6,
    sweep_text: str | None = None,
    report: dict[str, Any] | None = None,
    noise: float = SEED_NOISE,
    task: str = "classification",
    outputs: int = 1,
) -> Path:
    """``directory`` as the store of a grid sweep over ``axes`` (dotted keys -> values) with
    ``seeds`` runs per configuration. Accuracy rises with each configuration's position in the
    grid, so the best configuration is the last one. ``report`` adds keys of the sweep record
    (``venue``, ``table``, ``labels``, ...).

    ``task="regression"``: the store of a regression sweep instead (see
    :func:`regression_run`), ranked on test RMSE, lowest best (the last configuration again),
    with ``outputs`` outputs per example and the user metric :data:`USER_METRIC` defined in
    the sweep record."""
    if task == "regression":
        return _write_regression_store(
            directory,
            axes,
            name=name,
            seeds=seeds,
            epochs=epochs,
            report=report,
            outputs=outputs,
            sweep_text=sweep_text,
        )
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    keys = list(axes)
    configurations = list(itertools.product(*axes.values()))
    runs, history = [], []
    for index, values in enumerate(configurations):
        quality = 0.85 + 0.1 * index / max(len(configurations) - 1, 1)
        for seed in range(seeds):
            run_id = f"{index:03d}{seed:02d}"
            accuracy = float(np.clip(quality + rng.normal(0, noise), 0, 1))
            confusion = np.diag(np.full(CLASSES, 30)) + rng.integers(0, 3, (CLASSES, CLASSES))
            runs.append(
                {
                    "run_id": run_id,
                    "status": "ok",
                    **dict(zip(keys, values, strict=True)),
                    "seed": seed,
                    "test.accuracy": accuracy,
                    "test.f1_macro": accuracy - 0.01,
                    "test.ece": 0.05 + rng.normal(0, 0.005),
                    "test.loss": 1.0 - accuracy + rng.normal(0, 0.01),
                    "val.accuracy": accuracy + 0.01,
                    "val.loss": 1.05 - accuracy,
                    "test.confusion": confusion.tolist(),
                    "test.reliability_count": [10] * BINS,
                    "test.reliability_confidence_sum": [(b + 0.5) for b in range(BINS)],
                    "test.reliability_correct_sum": [b * 0.9 for b in range(BINS)],
                    "best_epoch": epochs,
                    "epochs_run": epochs,
                    "params": 10_000,
                    "nonzero_params": 10_000,
                    "model_bytes": 40_000,
                    "train_seconds": 1.5,
                    "host": "testhost",
                    "device": "cpu:0 cpu",
                }
            )
            for epoch in range(1, epochs + 1):
                progress = epoch / epochs
                history.append(
                    {
                        "run_id": run_id,
                        "epoch": epoch,
                        "lr": 1e-3,
                        "train.loss": 2.0 * (1 - progress) + 0.1,
                        "train.accuracy": accuracy * progress,
                        "val.loss": 2.1 * (1 - progress) + 0.15,
                        "val.accuracy": accuracy * progress,
                    }
                )
    record = {"metric": "test.accuracy", "direction": "max", **(report or {})}
    return _write_files(directory, name, keys, seeds, runs, history, record, sweep_text)


def _write_files(
    directory: Path,
    name: str,
    keys: list[str],
    seeds: int,
    runs: list[dict[str, Any]],
    history: list[dict[str, Any]],
    report: dict[str, Any],
    sweep_text: str | None,
) -> Path:
    pl.DataFrame(runs).write_parquet(directory / "runs.parquet")
    pl.DataFrame(history).write_parquet(directory / "history.parquet")
    record = {
        "name": name,
        "title": f"Synthetic {name}",
        "question": "Which configuration is best?",
        "run_command": f"sweepbook run sweeps/{name}.toml",
        "compare": keys,
        "axes": keys,
        "sampled": False,
        "seeds": list(range(seeds)),
        "replicates": f"{seeds} seeds",
        "run_ids": [run["run_id"] for run in runs],
        "sweep_file": f"sweeps/{name}.toml",
        "experiment_file": "experiments/digits_mlp.toml",
        **report,
    }
    (directory / "sweep.json").write_text(json.dumps(record))
    (directory / "provenance.json").write_text(json.dumps({"python": "3.11"}))
    (directory / "sweep.toml").write_text(sweep_text or f"# {name}\n")
    (directory / "experiment.toml").write_text("# experiment\n")
    return directory


def regression_run(
    rng: np.random.Generator, error_scale: float, outputs: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The metric columns of one regression run (``test.*`` and ``val.*`` as the trainer writes
    them, the user metric included), and its test predictions and targets ``[N, outputs]``.

    Targets come from a seeded linear model plus noise; the run's model is the true weights
    plus an error of size ``error_scale`` (smaller: a better configuration)."""
    weights, direction = np.random.default_rng(1).normal(size=(2, FEATURES, outputs))
    columns: dict[str, Any] = {}
    drawn: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    # One error direction for every run, its size varied a little by seed: configurations
    # differ beyond seed noise, in the order of ``error_scale``.
    fitted = weights + error_scale * (1 + rng.normal(0, 0.1)) * direction
    for split in ("test", "val"):
        inputs = rng.normal(size=(TEST_EXAMPLES, FEATURES))
        targets = inputs @ weights + rng.normal(0, 0.1, size=(TEST_EXAMPLES, outputs))
        predictions = inputs @ fitted
        computed = regression_metrics(predictions, targets)
        columns |= {f"{split}.{metric}": value for metric, value in computed.items()}
        columns[f"{split}.loss"] = computed["mse"]
        columns[f"{split}.{USER_METRIC}"] = float(np.abs(predictions - targets).max())
        drawn[split] = predictions, targets
    return columns, *drawn["test"]


def _write_regression_store(
    directory: Path,
    axes: dict[str, list[Any]],
    *,
    name: str,
    seeds: int,
    epochs: int,
    report: dict[str, Any] | None,
    outputs: int,
    sweep_text: str | None,
) -> Path:
    """A regression sweep's store: the schema the trainer writes for ``task = "regression"``
    (no accuracy, confusion or reliability columns; NaN accuracy history)."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    keys = list(axes)
    configurations = list(itertools.product(*axes.values()))
    runs, history = [], []
    for index, values in enumerate(configurations):
        error_scale = 0.6 - 0.5 * index / max(len(configurations) - 1, 1)
        for seed in range(seeds):
            run_id = f"{index:03d}{seed:02d}"
            columns, predictions, targets = regression_run(rng, error_scale, outputs)
            runs.append(
                {
                    "run_id": run_id,
                    "status": "ok",
                    "task": "regression",
                    **dict(zip(keys, values, strict=True)),
                    "seed": seed,
                    **columns,
                    "test.predictions": predictions.ravel().tolist(),
                    "test.targets": targets.ravel().tolist(),
                    "test.outputs": outputs,
                    "best_epoch": epochs,
                    "epochs_run": epochs,
                    "params": 100,
                    "nonzero_params": 100,
                    "model_bytes": 400,
                    "train_seconds": 0.5,
                    "host": "testhost",
                    "device": "cpu:0 cpu",
                }
            )
            for epoch in range(1, epochs + 1):
                history.append(
                    {
                        "run_id": run_id,
                        "epoch": epoch,
                        "lr": 1e-3,
                        "train.loss": columns["test.mse"] * (1 + 2.0 / epoch),
                        "train.accuracy": float("nan"),
                        "val.loss": columns["val.mse"] * (1 + 2.5 / epoch),
                        "val.accuracy": float("nan"),
                        "val.f1_macro": float("nan"),
                    }
                )
    record = {
        "task": "regression",
        "metric": "test.rmse",
        "direction": "min",
        "metrics": USER_METRICS,
        **(report or {}),
    }
    return _write_files(directory, name, keys, seeds, runs, history, record, sweep_text)
