"""Retrain stored runs and compare them with what the store holds, bit for bit.

Each run is rebuilt from its stored flat config (its id must come out the same) and trained by
the same engine path into a temporary store, in a chunk of the size it was first trained in:
XLA may compile a program over a different number of lanes to different floating-point code,
so only the recorded shape can reproduce the bits; the chunk is filled with copies of the run,
and no lane reads another. Then every stored result column and every epoch of the history must
be identical (NaN equals NaN; 0.0 and -0.0 differ). Columns about the circumstances of training
(time, host, device, job, commit) are not results and are not compared.

A run is replayed in the layer formulation it was trained with (its ``numerics`` column; a
store written before that column existed trained every conv net in the legacy formulation,
which is still built the same way). A run whose formulation this version cannot build is not
retrained but reported as differing, with the reason, and every difference names the
formulation, so a store from another version explains itself instead of differing mutely.
Likewise a run trained on another kind of device (a CPU with other vector instructions: the
``device`` column names the CPU) says so: bits are reproducible per kind of device.

A run whose parameters the store saved (``params/<run_id>/``) has them compared too: the
retrained run's kept variables must equal the saved ones bit for bit, leaf by leaf.

The outcome goes to ``verification.json`` beside the store; the report shows it (it is not part
of the stored results, so it does not make a report stale for ``report --check``).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import struct
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import sweepbook
from sweepbook import checkpoints, provenance
from sweepbook.config import RunConfig, unflatten
from sweepbook.engine import load_splits, train_runs
from sweepbook.models import (
    DENSE_NUMERICS,
    KNOWN_NUMERICS,
    Numerics,
    numerics_before_formulations,
)
from sweepbook.plan import PlannedRun, run_id
from sweepbook.report import VERIFICATION_FILE
from sweepbook.results import SWEEP_RECORD, read_json
from sweepbook.store import DONE_STATUSES, Store, StoreError, atomic_write_json
from sweepbook.usercode import register_run_references

DEFAULT_RUNS = 3
# Columns about the circumstances of training, not its results. ``rung``: the last rung of a
# successive halving a run reached; a survivor is replayed straight through, without rungs.
CIRCUMSTANCES = frozenset(
    {
        "train_seconds",
        "finished_at",
        "git_commit",
        "host",
        "device",
        "compile_group",
        "job_id",
        "rung",
    }
)


@dataclass(frozen=True)
class Outcome:
    run_id: str
    chunk_size: int
    reproduced: bool
    difference: str | None  # the first differing column, with both values
    numerics: str | None = None  # the formulation it was trained (and replayed) in
    params_compared: bool = False  # its saved parameters were compared too


def choose_runs(runs: pl.DataFrame, count: int) -> pl.DataFrame:
    """The first ``count`` completed runs by run id. Ids are hashes of the configs, so this is
    a stable sample spread over the sweep, the same every time the store is verified."""
    replayable = runs.filter(
        pl.col("status").is_in(DONE_STATUSES)
        & pl.col("chunk_size").is_not_null()
        & pl.col("config").is_not_null()
    )
    return replayable.sort("run_id").head(count)


def planned_run(row: dict[str, Any]) -> PlannedRun:
    """The run as it was planned, from its stored row."""
    config = RunConfig.model_validate(unflatten(json.loads(row["config"])))
    repeat = row.get("repeat") or 0  # stores from before repeats have no such column
    if run_id(config, repeat) != row["run_id"]:
        raise StoreError(
            f"run {row['run_id']}: its stored config gives id {run_id(config, repeat)}; "
            "the store was written by an incompatible sweepbook version"
        )
    return PlannedRun(row["run_id"], row.get("variant"), config, row.get("search.trial"), repeat)


def stored_numerics(row: dict[str, Any], config: RunConfig) -> tuple[str, bool]:
    """The formulation the run was trained in, and whether the store recorded it (stores from
    before the ``numerics`` column trained MLPs densely and conv nets in the legacy way)."""
    recorded = row.get("numerics")
    if recorded:
        return str(recorded), True
    return numerics_before_formulations(config.model.kind), False


def replayable(numerics: str) -> bool:
    if numerics == DENSE_NUMERICS:
        return True
    try:
        Numerics.parse(numerics)
    except ValueError:
        return False
    return True


def same_bits(stored: Any, retrained: Any) -> bool:
    if isinstance(stored, float) and isinstance(retrained, float):
        return struct.pack("<d", stored) == struct.pack("<d", retrained)
    if isinstance(stored, list) and isinstance(retrained, list):
        return len(stored) == len(retrained) and all(
            same_bits(a, b) for a, b in zip(stored, retrained, strict=True)
        )
    return type(stored) is type(retrained) and bool(stored == retrained)


def first_difference(
    stored: dict[str, Any],
    retrained: dict[str, Any],
    stored_history: pl.DataFrame,
    retrained_history: pl.DataFrame,
) -> str | None:
    """The first result column, then the first history column and epoch, that differs."""
    for column, value in stored.items():
        if column in CIRCUMSTANCES:
            continue
        if column not in retrained:
            return f"{column}: not produced by the retrained run"
        if not same_bits(value, retrained[column]):
            return f"{column}: stored {value!r}, retrained {retrained[column]!r}"
    if stored_history.height != retrained_history.height:
        return f"history: {stored_history.height} epochs stored, {retrained_history.height} now"
    epochs = stored_history["epoch"].to_list()
    for column in stored_history.columns:
        if column not in retrained_history.columns:
            return f"history {column}: not produced by the retrained run"
        pairs = zip(stored_history[column], retrained_history[column], strict=True)
        for epoch, (old, new) in zip(epochs, pairs, strict=True):
            if not same_bits(old, new):
                return f"history {column} at epoch {epoch}: stored {old!r}, retrained {new!r}"
    return None


@dataclass(frozen=True)
class Retrained:
    row: dict[str, Any]
    history: pl.DataFrame
    variables: dict[str, Any] | None  # the kept variables; None when the run did not end ok


def retrain(
    run: PlannedRun, lanes: int, numerics: str | None = None, base: Path | None = None
) -> Retrained:
    """Train ``run`` in a chunk of ``lanes`` copies of itself, in formulation ``numerics``
    (default: the one this device would choose); its row, history and kept variables.
    ``base``: the experiment's folder, where users' code and a relative ``data.path`` are
    found."""
    with tempfile.TemporaryDirectory(prefix="sweepbook-verify-") as scratch:
        store = Store(Path(scratch))
        formulation = None if numerics == DENSE_NUMERICS else numerics
        splits = load_splits([run], base)
        train_runs(
            [run], store, splits=splits, lanes=lanes, numerics=formulation, save_params="all"
        )
        saved = checkpoints.checkpoint_dir(store.directory, run.run_id)
        variables = checkpoints.read_checkpoint(saved)[1] if saved.is_dir() else None
        return Retrained(
            store.read_runs().row(0, named=True), store.read_history().sort("epoch"), variables
        )


def params_difference(stored: dict[str, Any], retrained: dict[str, Any] | None) -> str | None:
    """The first leaf of the saved variables that the retrained run does not reproduce bit for
    bit (dtype, shape and bytes), or None."""
    if retrained is None:
        return "params: saved, but the retrained run did not finish ok"
    old = dict(jax_tree_leaves(stored))
    new = dict(jax_tree_leaves(retrained))
    if old.keys() != new.keys():
        return f"params: saved leaves {sorted(old)}, retrained {sorted(new)}"
    for name, array in old.items():
        other = new[name]
        same = (array.dtype, array.shape) == (other.dtype, other.shape)
        if not same or array.tobytes() != other.tobytes():
            return f"params {name}: saved and retrained variables differ"
    return None


def jax_tree_leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(path, array)`` of every leaf of nested dicts, paths as ``params/Dense_0/kernel``."""
    if isinstance(tree, dict):
        return [
            leaf
            for key in sorted(tree)
            for leaf in jax_tree_leaves(tree[key], f"{prefix}/{key}" if prefix else str(key))
        ]
    return [(prefix, np.asarray(tree))]


def device_note(trained_on: str | None, here: str) -> str:
    """Why a run may differ for reasons of where it ran: it was trained on another device than
    ``here`` (:func:`provenance.run_device` of this process), or on a CPU the store did not
    record. XLA compiles a CPU program for the machine's vector instructions (AVX-512, AVX2, ...),
    so a run is reproducible bit for bit on CPUs of one kind, not on every CPU; the same holds
    for GPU models. Empty where the run was trained on this kind of device."""
    if not trained_on or trained_on == here:
        return ""
    # "cpu:0 cpu", from before sweepbook recorded the CPU (not any prefix: a GPU's name may
    # extend another's, "NVIDIA H100" and "NVIDIA H100 80GB HBM3").
    if trained_on.startswith("cpu:") and here.startswith(trained_on + " "):
        return (
            f"; the store does not record which CPU trained it (retrained on {here}): XLA "
            "compiles for each CPU's vector instructions, so another kind of CPU may round "
            "differently"
        )
    return (
        f"; trained on {trained_on}, retrained on {here}: a program compiled for another kind "
        "of device may round differently"
    )


def experiment_folder(directory: Path) -> Path | None:
    """The folder of the experiment file the store's sweep ran (``sweep.json``): where users'
    code files and a relative ``data.path`` are found again; None when not recorded."""
    path = directory / SWEEP_RECORD
    if not path.is_file():
        return None
    recorded = read_json(path).get("experiment_file")
    return Path(recorded).parent if recorded else None


def verify_runs(
    directory: Path, count: int, *, log: Callable[[Outcome], None] = lambda outcome: None
) -> dict[str, Any]:
    """Retrain ``count`` runs of the store in ``directory``, compare, and write the record to
    ``verification.json``; returns it."""
    store = Store(directory)
    runs = store.read_runs()
    if "chunk_size" not in runs.columns:
        raise StoreError(f"{store.runs_path}: runs lack chunk_size (stored before verify existed)")
    history = store.read_history()
    base = experiment_folder(directory)
    here = provenance.run_device(provenance.device_description())
    outcomes = []
    for row in choose_runs(runs, count).iter_rows(named=True):
        lanes = int(row["chunk_size"])
        register_run_references(json.loads(row["config"]), base)
        run = planned_run(row)
        numerics, recorded = stored_numerics(row, run.config)
        trained_in = f"trained in numerics {numerics}" + (
            "" if recorded else " (implied: stored before sweepbook recorded numerics)"
        )
        # Read before retraining: a damaged checkpoint stops here, naming its file.
        saved_path = checkpoints.checkpoint_dir(directory, row["run_id"])
        compared = saved_path.is_dir()
        saved = checkpoints.read_checkpoint(saved_path)[1] if compared else {}
        if not replayable(numerics):
            compared = False
            difference: str | None = (
                f"not retrained: {trained_in}, which this sweepbook cannot build "
                f"(it knows {', '.join(KNOWN_NUMERICS)}); results would differ by float rounding"
            )
        else:
            again = retrain(run, lanes, numerics, base)
            stored_history = history.filter(pl.col("run_id") == row["run_id"]).sort("epoch")
            difference = first_difference(row, again.row, stored_history, again.history)
            if difference is None and compared:
                difference = params_difference(saved, again.variables)
            if difference is not None:
                difference += f"; {trained_in}, replayed in the same" + device_note(
                    row.get("device"), here
                )
        outcome = Outcome(row["run_id"], lanes, difference is None, difference, numerics, compared)
        log(outcome)
        outcomes.append(outcome)
    record = {
        "verified_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # The code that retrained: the checkout sweepbook was imported from.
        "git": provenance.git_state(Path(sweepbook.__file__).parent),
        "host": platform.node(),
        "device": here,
        "checked": len(outcomes),
        "reproduced": sum(outcome.reproduced for outcome in outcomes),
        "runs": [asdict(outcome) for outcome in outcomes],
    }
    atomic_write_json(directory / VERIFICATION_FILE, record)
    return record
