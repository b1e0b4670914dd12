"""A stored run's trained model, back from its saved parameters: ``sweepbook.load_run``.

The model is rebuilt from the run's stored config (the ``config`` column of ``runs.parquet``)
and the checkpoint's record of its output count and layer formulation; a user's model is found
again from the experiment's folder that ``sweep.json`` records, as ``verify`` finds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import polars as pl

from sweepbook.checkpoints import checkpoint_dir, read_checkpoint
from sweepbook.config import RunConfig, unflatten
from sweepbook.models import DENSE_NUMERICS, Network, build_network
from sweepbook.store import Store, StoreError
from sweepbook.train import Hyper, deployed, hyper_from_config, predict, static_spec
from sweepbook.usercode import register_run_references
from sweepbook.verify import experiment_folder


@dataclass(frozen=True)
class LoadedRun:
    """A trained run: its config, its model and the variables its final evaluation evaluated
    (float weights, restored-best where the run restores its best epoch)."""

    run_id: str
    config: RunConfig
    network: Network  # network.module is the Flax module; network.apply calls it either way
    variables: dict[str, Any]  # {"params": ..., "batch_stats": ...} as model.apply takes them
    hyper: Hyper  # the run's traced numbers (dropout rate, a user's model's [model.traced])

    @property
    def model(self) -> Any:
        """The Flax module (``model.apply(variables, x, ...)`` with its own conventions)."""
        return self.network.module

    def predict(self, x: Any) -> jax.Array:
        """The outputs (logits, or regression outputs) for the batch ``x``, in evaluation mode
        and as deployed: weights quantized when the run quantizes, as its stored metrics were
        measured."""
        static = static_spec(self.config)
        evaluated = deployed(static, self.hyper, self.variables)
        return predict(self.network, self.hyper, evaluated, jnp.asarray(x, jnp.float32))


def load_run(store: str | Path, run_id: str) -> LoadedRun:
    """The run ``run_id`` of the store in ``store`` with its saved parameters (``sweepbook run
    --save-params``); :class:`StoreError` when the run or its parameters are not there or the
    checkpoint is damaged (the message names the file)."""
    directory = Path(store)
    rows = Store(directory).read_runs().filter(pl.col("run_id") == run_id)
    if rows.is_empty() or "config" not in rows.columns:
        raise StoreError(f"{directory / 'runs.parquet'}: no run {run_id}")
    flat = json.loads(rows["config"][0])
    register_run_references(flat, experiment_folder(directory))
    config = RunConfig.model_validate(unflatten(flat))
    path = checkpoint_dir(directory, run_id)
    if not path.is_dir():
        raise StoreError(
            f"{path}: no saved parameters for run {run_id} (train it with --save-params all)"
        )
    info, variables = read_checkpoint(path)
    numerics = None if info.numerics == DENSE_NUMERICS else info.numerics
    network = build_network(config.model, info.num_outputs, numerics)
    arrays = jax.tree.map(jnp.asarray, variables)
    return LoadedRun(run_id, config, network, arrays, hyper_from_config(config))
