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

CLASSES = 10
BINS = 10
SEED_NOISE = 0.01  # std of test accuracy between seeds, about what the digits MLP shows


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
) -> Path:
    """``directory`` as the store of a grid sweep over ``axes`` (dotted keys -> values) with
    ``seeds`` runs per configuration. Accuracy rises with each configuration's position in the
    grid, so the best configuration is the last one. ``report`` adds keys of the sweep record
    (``venue``, ``table``, ``labels``, ...)."""
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
    pl.DataFrame(runs).write_parquet(directory / "runs.parquet")
    pl.DataFrame(history).write_parquet(directory / "history.parquet")
    record = {
        "name": name,
        "title": f"Synthetic {name}",
        "question": "Which configuration is best?",
        "run_command": f"sweepbook run sweeps/{name}.toml",
        "metric": "test.accuracy",
        "direction": "max",
        "compare": keys,
        "axes": keys,
        "sampled": False,
        "seeds": list(range(seeds)),
        "replicates": f"{seeds} seeds",
        "run_ids": [run["run_id"] for run in runs],
        "sweep_file": f"sweeps/{name}.toml",
        "experiment_file": "experiments/digits_mlp.toml",
        **(report or {}),
    }
    (directory / "sweep.json").write_text(json.dumps(record))
    (directory / "provenance.json").write_text(json.dumps({"python": "3.11"}))
    (directory / "sweep.toml").write_text(sweep_text or f"# {name}\n")
    (directory / "experiment.toml").write_text("# experiment\n")
    return directory
