"""Train a ``[halving]`` sweep rung by rung: the engine's groups and chunks, rung after rung.

Rung ``r`` trains each of its runs from the end of rung ``r - 1`` to ``ends[r]`` epochs
(:func:`train.train_rung`), saves the run's training state under ``rungs/<run_id>/<r>/``
(Orbax, atomically), and records the run's rung value in ``rungs.parquet``; once every run of
the rung has one, :func:`halving.choose_survivors` keeps the best ``1/eta`` configurations by
their mean over seeds, and every other run is stored with the status ``stopped`` (its metrics as
evaluated at the rung's end) and never trained again. Survivors of the last rung are stored as
any run is: their bits are those of the same run trained straight through (a test checks).

Compaction: a run trains every rung in one chunk size (the number of lanes is part of what
fixes its bits, and ``verify`` replays it straight through in that size), and that size is one
configuration's replicates on a split (its seeds), within the engine's limits. Configurations
go on or stop whole, so the survivors of a compile group always fill their chunks: no rung
trains a padded lane (with the group's whole planned size as the chunk, the 3 survivors of 12
runs trained in 12 lanes). The size is recorded in ``rungs.parquet`` (``chunk_size``), and so
is the layer formulation (``numerics``): a resumed halving goes on in what its runs began in,
even where a newer sweepbook would choose otherwise. A halving begun by a sweepbook that
recorded neither goes on in the group's planned size and in the formulation that version chose.

Resume: a run's state of rung ``r`` counts once ``rungs.parquet`` lists it; the state of rung
``r - 1`` is deleted only after that, so a kill anywhere leaves a state to continue from. The
choice of each rung is recomputed from ``rungs.parquet``: a killed sweep chooses what it chose.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jax
import numpy as np
import polars as pl

from sweepbook import checkpoints
from sweepbook.config import ModelConfig
from sweepbook.data import Split
from sweepbook.engine import (
    EngineSummary,
    Group,
    _chunk_rows,
    _chunks,
    _group_chunk,
    _lane,
    _save_params,
    _Session,
    _stack,
    _store_chunk,
    device_memory_bytes,
    group_numerics,
    group_runs,
    replicated,
    sharded,
    split_key,
)
from sweepbook.halving import (
    RUNGS_FILE,
    STATES_DIR,
    STOPPED,
    choose_survivors,
    configuration_key,
    run_epochs_saved,
)
from sweepbook.models import numerics_before_slices
from sweepbook.plan import PlannedRun
from sweepbook.results import RUNGS_SCHEMA, Origin
from sweepbook.results import read_rungs as read_ledger
from sweepbook.results import runs_frame as _runs_frame
from sweepbook.store import Store, atomic_write
from sweepbook.train import EpochRecord, RunOutput, RunState, hyper_from_config, train_rung

# rungs.parquet: each run's rung value, and the chunk size and formulation it trains in (both
# absent from ledgers written before halving packed chunks by configuration).
LEDGER_SCHEMA = {**RUNGS_SCHEMA, "chunk_size": pl.Int64, "numerics": pl.String}

# Rung programs of this process: (group id, chunk, numerics, first epoch, last epoch).
_RUNG_PROGRAMS: dict[tuple[str, int, str, int, int], Callable[..., Any]] = {}


@dataclass(frozen=True)
class HalvingPlan:
    """What the rungs follow: epochs by each rung's end, the rung metric and its direction."""

    ends: list[int]
    eta: int
    metric: str
    direction: Literal["max", "min"]


@dataclass(frozen=True)
class RungStarted:
    """Rung ``rung`` (0-based) of ``rungs`` starts: its configurations and runs, those left to
    train (a resumed sweep has some already), and its epochs."""

    rung: int
    rungs: int
    first_epoch: int  # 0-based, included
    last_epoch: int  # excluded: epochs trained by the rung's end
    configurations: int
    runs: int
    to_train: int


@dataclass(frozen=True)
class RungFinished:
    """Rung ``rung`` is trained; before the last, ``kept`` of its ``configurations`` go on and
    ``stopped_runs`` runs are stored as stopped (None after the last rung)."""

    rung: int
    rungs: int
    configurations: int
    kept: int | None
    stopped_runs: int


RungEvent = RungStarted | RungFinished


@dataclass
class HalvingSummary:
    """What a halving did: the engine's counts, and the run-epochs it gave its runs (each run
    the budget of the last rung it reached) against a full grid's."""

    engine: EngineSummary
    rungs: int
    run_epochs: int
    full_run_epochs: int

    @property
    def share(self) -> float:
        return self.run_epochs / self.full_run_epochs if self.full_run_epochs else 0.0


@dataclass
class _Rungs:
    """What every rung of one halving shares: the engine's session, the plan, the ledger
    (``rungs.parquet`` as (run id, rung) -> value) and each compile group's planned chunk."""

    session: _Session
    plan: HalvingPlan
    chunk_of: dict[str, int]
    numerics_of: dict[str, str]
    ledger: dict[tuple[str, int], float] = field(default_factory=dict)
    # Each run's row and history at the end of the rung it trained last in this process: a run
    # stopped there is stored from them instead of from its state read back from disk.
    rows: dict[str, tuple[int, tuple[dict[str, Any], pl.DataFrame]]] = field(default_factory=dict)
    # One run's saved-state structure per (group id, formulation): tracing it takes a second.
    structures: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.session.store.directory

    def state_dir(self, run_id: str, rung: int | None = None) -> Path:
        root = self.directory / STATES_DIR / run_id
        return root if rung is None else root / str(rung)


def _append_ledger(rungs: _Rungs, rows: list[dict[str, Any]]) -> None:
    """Add ``rows`` to ``rungs.parquet`` (rewritten atomically; a retrained rung replaces)."""
    new = pl.DataFrame(rows, schema=LEDGER_SCHEMA)
    merged = pl.concat([read_ledger(rungs.directory), new], how="diagonal_relaxed")
    merged = merged.unique(subset=["run_id", "rung"], keep="last", maintain_order=True)
    atomic_write(rungs.directory / RUNGS_FILE, merged.write_parquet)
    for row in rows:
        rungs.ledger[(row["run_id"], row["rung"])] = row["value"]


def train_halving(
    runs: list[PlannedRun],
    store: Store,
    *,
    plan: HalvingPlan,
    splits: dict[str, Split],
    done: set[str],
    origin: Origin | None = None,
    on_run_done: Callable[[PlannedRun, str], None] = lambda run, status: None,
    on_rung: Callable[[RungEvent], None] = lambda event: None,
    runs_per_chunk: int,
    memory_budget: float,
    save_params: str = "none",
) -> HalvingSummary:
    """Successive halving over the sweep's ``runs``, rung by rung, each rung's runs trained in
    the chunk sizes of the compile groups of all ``runs``. Runs in ``done`` (stored ``ok``,
    ``diverged`` or ``stopped``) are never trained again; those with no rung value in the
    store's ``rungs.parquet`` (stored by a sweep without halving) are left out of it."""
    devices = jax.local_devices()
    session = _Session(
        store, splits, origin or {}, on_run_done, devices, checkpoints.check_mode(save_params)
    )
    ledger = read_ledger(store.directory)
    chunks = _planned_chunks(runs, splits, devices, runs_per_chunk, memory_budget, ledger)
    rungs = _Rungs(session, plan, chunks, _planned_numerics(runs, splits, devices, ledger))
    for row in ledger.iter_rows(named=True):
        rungs.ledger[(row["run_id"], row["rung"])] = row["value"]
    configuration_of = {run.run_id: configuration_key(run.flat) for run in runs}
    candidates = [r for r in runs if r.run_id not in done or (r.run_id, 0) in rungs.ledger]
    reached: dict[str, int] = {}
    last_rung = len(plan.ends) - 1
    for rung, last in enumerate(plan.ends):
        first = plan.ends[rung - 1] if rung else 0
        todo = [
            r for r in candidates if (r.run_id, rung) not in rungs.ledger and r.run_id not in done
        ]
        configurations = len({configuration_of[r.run_id] for r in candidates})
        on_rung(
            RungStarted(
                rung, last_rung + 1, first, last, configurations, len(candidates), len(todo)
            )
        )
        reached.update((run.run_id, rung) for run in candidates)
        _train_rung(rungs, todo, rung, first, last)
        if rung == last_rung:
            on_rung(RungFinished(rung, last_rung + 1, configurations, None, 0))
            break
        candidates, stopped = _choose(rungs, candidates, configuration_of, rung)
        _store_stopped(rungs, [run for run in stopped if run.run_id not in done], rung)
        kept = len({configuration_of[run.run_id] for run in candidates})
        on_rung(RungFinished(rung, last_rung + 1, configurations, kept, len(stopped)))
    _drop_stored_states(rungs, runs)
    trained, full = run_epochs_saved(list(reached.values()), plan.ends)
    return HalvingSummary(session.summary, len(plan.ends), trained, full)


def _drop_stored_states(rungs: _Rungs, runs: list[PlannedRun]) -> None:
    """Delete the training states of runs stored for good (``ok``, ``diverged``, ``stopped``),
    and ``rungs/`` once empty. Each chunk deletes its own after storing them; this catches those
    a killed sweep stored but had no time to delete (their rows count: they never train again)."""
    stored = rungs.session.store.completed_ids(also=(STOPPED,))
    for run in runs:
        if run.run_id in stored:
            shutil.rmtree(rungs.state_dir(run.run_id), ignore_errors=True)
    states = rungs.directory / STATES_DIR
    if states.is_dir() and not any(states.iterdir()):
        states.rmdir()  # every run's state is stored as its row: nothing left to resume


def _choose(
    rungs: _Rungs, candidates: list[PlannedRun], configuration_of: dict[str, str], rung: int
) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """(runs that go on, runs stopped) after ``rung``: by their configurations' mean values. A
    run with no value (it failed) goes on no further."""
    values = {
        run.run_id: rungs.ledger[(run.run_id, rung)]
        for run in candidates
        if (run.run_id, rung) in rungs.ledger
    }
    kept = choose_survivors(
        values,
        {run_id: configuration_of[run_id] for run_id in values},
        eta=rungs.plan.eta,
        direction=rungs.plan.direction,
    )
    going = [r for r in candidates if r.run_id in values and configuration_of[r.run_id] in kept]
    stopped = [
        r for r in candidates if r.run_id in values and configuration_of[r.run_id] not in kept
    ]
    return going, stopped


def _planned_chunks(
    runs: list[PlannedRun],
    splits: dict[str, Split],
    devices: list[jax.Device],
    runs_per_chunk: int,
    memory_budget: float,
    ledger: pl.DataFrame,
) -> dict[str, int]:
    """Each compile group's chunk size, a pure function of the plan (and of what ``ledger``,
    the store's ``rungs.parquet``, recorded): every rung of a group trains in it, so a survivor
    keeps the bits of the run trained straight through in that size. It is the most replicates
    of one configuration on one split (:func:`replicates`) within the engine's limits
    (``runs_per_chunk``, the memory budget, saturation); a group whose runs the ledger lists
    keeps the size recorded there, or the group's planned size where the ledger predates
    ``chunk_size`` (the size that halving began in)."""
    budget = int(
        memory_budget * device_memory_bytes(devices[0]) if memory_budget <= 1 else memory_budget
    )
    recorded = _recorded(ledger, "chunk_size")
    chunks: dict[str, int] = {}
    for group in group_runs(runs, splits):
        # One size per group: every run of it was chunked by the same rule.
        began = [recorded[run.run_id] for run in group.runs if run.run_id in recorded]
        if any(began):
            chunks[group.id] = max(size for size in began if size)
            continue
        chunks[group.id] = _group_chunk(
            group,
            splits[split_key(group.runs[0])],
            devices,
            planned_size=len(group.runs) if began else replicates(group.runs),
            runs_per_chunk=runs_per_chunk,
            budget=budget,
        )
    return chunks


def replicates(runs: tuple[PlannedRun, ...]) -> int:
    """The most runs of one configuration on one split (seeds, repeats) among ``runs``: they
    go on or stop together, so chunks of this size are full at every rung."""
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        key = (configuration_key(run.flat), split_key(run))
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=1)


def _planned_numerics(
    runs: list[PlannedRun],
    splits: dict[str, Split],
    devices: list[jax.Device],
    ledger: pl.DataFrame,
) -> dict[str, str]:
    """Each compile group's layer formulation: what its runs began in where ``ledger`` lists
    them (:func:`models.numerics_before_slices` for a ledger from before the record), else what
    this backend chooses. A run never changes formulation between rungs."""
    recorded = _recorded(ledger, "numerics")
    platform = devices[0].platform
    formulations: dict[str, str] = {}
    for group in group_runs(runs, splits):
        began = [recorded[run.run_id] for run in group.runs if run.run_id in recorded]
        if any(began):
            formulations[group.id] = next(numerics for numerics in began if numerics)
        elif began:
            kind = ModelConfig.model_validate_json(group.static.model).kind
            formulations[group.id] = numerics_before_slices(kind, platform)
        else:
            formulations[group.id] = group_numerics(group.static, platform)
    return formulations


def _recorded(ledger: pl.DataFrame, column: str) -> dict[str, Any]:
    """Run id -> what ``rungs.parquet`` recorded in ``column`` for it; None for the runs of a
    ledger from before the column (written before halving recorded chunk sizes and
    formulations: their groups go on as that version trained them)."""
    if ledger.is_empty():
        return {}
    values = ledger[column].to_list() if column in ledger.columns else [None] * ledger.height
    return dict(zip(ledger["run_id"].to_list(), values, strict=True))


def _rung_program(
    rungs: _Rungs, group: Group, chunk: int, formulation: str, first: int, last: int
) -> Callable[..., Any] | None:
    """The compiled, vmapped :func:`train.train_rung` of ``group`` for epochs first..last
    (from a fresh state when ``first`` is 0); None when it fails to compile (runs failed)."""
    session = rungs.session
    key = (group.id, chunk, formulation, first, last)
    if key in _RUNG_PROGRAMS:
        return _RUNG_PROGRAMS[key]
    started = time.perf_counter()
    rung = functools.partial(
        train_rung, group.static, group.num_classes, first, last, numerics=formulation
    )
    hyper = _stack([hyper_from_config(group.runs[0].config)] * chunk)
    data = session.device_data(group.runs[0])
    runs_axis, shared = sharded(session.devices), replicated(session.devices)
    try:
        if first == 0:
            trainer = jax.vmap(lambda h, d: rung(h, d), in_axes=(0, None))
            compiled = jax.jit(trainer, in_shardings=(runs_axis, shared)).lower(hyper, data)
        else:
            state = _state_shapes(_saved_structure(group, formulation, rungs)["state"], chunk)
            trainer = jax.vmap(rung, in_axes=(0, None, 0))
            jitted = jax.jit(trainer, in_shardings=(runs_axis, shared, runs_axis))
            compiled = jitted.lower(hyper, data, state)
        program = compiled.compile()
    except Exception as error:
        session.fail(list(group.runs), error, group.id, formulation)
        return None
    _RUNG_PROGRAMS[key] = program
    session.summary.compilations += 1
    session.summary.compile_seconds += time.perf_counter() - started
    return program


def _state_shapes(state: Any, chunk: int) -> Any:
    """Shapes of a chunk's training state (what a rung after the first starts from): one run's
    ``state`` structure with a runs axis of ``chunk`` lanes in front."""
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(
            (chunk, *leaf.shape), leaf.dtype, weak_type=leaf.weak_type
        ),
        state,
    )


def _saved_structure(group: Group, formulation: str, rungs: _Rungs) -> Any:
    """A tree with the structure of one run's saved state (:func:`_finish_chunk`), traced once
    per group and formulation."""
    key = (group.id, formulation)
    if key not in rungs.structures:
        session = rungs.session
        hyper = hyper_from_config(group.runs[0].config)
        data = session.device_data(group.runs[0])
        start = functools.partial(
            train_rung, group.static, group.num_classes, 0, 1, numerics=formulation
        )
        state, output = jax.eval_shape(start, hyper, data)
        rungs.structures[key] = {"state": state, "output": output._replace(variables=None)}
    return rungs.structures[key]


def _train_rung(rungs: _Rungs, todo: list[PlannedRun], rung: int, first: int, last: int) -> None:
    """Train ``todo`` through ``rung`` group by group, their survivors packed into full chunks."""
    session = rungs.session
    for group in group_runs(todo, session.splits):
        chunk = rungs.chunk_of[group.id]
        formulation = rungs.numerics_of[group.id]
        program = _rung_program(rungs, group, chunk, formulation, first, last)
        if program is None:
            continue
        structure = _saved_structure(group, formulation, rungs) if rung else None
        for part in _chunks(group.runs, chunk):
            started = time.perf_counter()
            try:
                previous = (
                    [_restore(rungs, run, rung - 1, structure) for run in part] if rung else []
                )
                state, out = _call(rungs, program, part, chunk, previous)
                seconds = (time.perf_counter() - started) / len(part)
                rows = _chunk_rows(session, part, out, seconds, group.id, chunk, formulation)
                for index, (row, _) in enumerate(rows):
                    row["rung"] = rung
                    row["train_seconds"] += previous[index][0]["seconds"] if previous else 0.0
                _finish_chunk(rungs, group, part, state, out, rows, rung, last, formulation)
            except Exception as error:
                session.fail(part, error, group.id, formulation)


def _restore(
    rungs: _Rungs, run: PlannedRun, rung: int, structure: Any
) -> tuple[dict[str, Any], Any]:
    """The manifest and saved tree of ``run`` at the end of ``rung``."""
    return checkpoints.read_tree(rungs.state_dir(run.run_id, rung), structure)


def _call(
    rungs: _Rungs,
    program: Callable[..., Any],
    part: list[PlannedRun],
    chunk: int,
    previous: list[tuple[dict[str, Any], Any]],
) -> tuple[RunState, RunOutput]:
    """One rung program call on ``part`` padded to ``chunk`` lanes: the new states, and outputs
    whose history joins the saved epochs before this rung to this rung's."""
    session = rungs.session
    padded = part + [part[-1]] * (chunk - len(part))
    runs_axis = sharded(session.devices)
    hyper = jax.device_put(_stack([hyper_from_config(run.config) for run in padded]), runs_axis)
    data = session.device_data(part[0])
    if not previous:
        state, out = program(hyper, data)
        return jax.tree.map(np.asarray, (state, out))
    trees = [tree for _, tree in previous]
    trees += [trees[-1]] * (chunk - len(trees))
    before = jax.tree.map(lambda *leaves: np.stack(leaves), *trees)
    state, out = jax.tree.map(
        np.asarray, program(hyper, data, jax.device_put(before["state"], runs_axis))
    )
    history = jax.tree.map(
        lambda old, new: np.concatenate([old, new], axis=1), before["output"].history, out.history
    )
    return state, out._replace(history=EpochRecord(*history))


def _finish_chunk(
    rungs: _Rungs,
    group: Group,
    part: list[PlannedRun],
    state: RunState,
    out: RunOutput,
    rows: list[tuple[dict[str, Any], pl.DataFrame]],
    rung: int,
    epochs: int,
    formulation: str,
) -> None:
    """After a chunk's rung: its rung values into the ledger; at the last rung its rows into
    the store (and its parameters, when kept); before it, each run's state saved first."""
    session, metric = rungs.session, rungs.plan.metric
    final = rung == len(rungs.plan.ends) - 1
    if not final:
        for index, (run, (row, _)) in enumerate(zip(part, rows, strict=True)):
            tree = {
                "state": _lane(state, index),
                "output": _lane(out, index)._replace(variables=None),
            }
            manifest = {
                "run_id": run.run_id,
                "rung": rung,
                "epochs": epochs,
                "seconds": row["train_seconds"],
            }
            checkpoints.save_tree(rungs.state_dir(run.run_id, rung), tree, manifest)
            rungs.rows[run.run_id] = (rung, rows[index])
    _append_ledger(
        rungs,
        [
            {
                "run_id": run.run_id,
                "rung": rung,
                "epochs": epochs,
                "metric": metric,
                "value": float(row[metric]) if row["status"] == "ok" else float("nan"),
                "chunk_size": row["chunk_size"],
                "numerics": formulation,
            }
            for run, (row, _) in zip(part, rows, strict=True)
        ],
    )
    if final:
        _save_params(session, part, out, rows, group.num_classes, formulation)
        _store_chunk(session, part, rows)
        for run in part:
            shutil.rmtree(rungs.state_dir(run.run_id), ignore_errors=True)
        return
    for run in part:
        if rung:
            shutil.rmtree(rungs.state_dir(run.run_id, rung - 1), ignore_errors=True)
        session.on_run_done(run, "trained")


def _row_at(
    rungs: _Rungs, run: PlannedRun, rung: int, group: Group, formulation: str
) -> tuple[dict[str, Any], pl.DataFrame]:
    """``run``'s row and history at the end of ``rung``: as this process computed them when it
    trained the rung, or (a resumed sweep) from the state saved then."""
    kept = rungs.rows.pop(run.run_id, None)
    if kept is not None and kept[0] == rung:
        row, history = kept[1]
        return dict(row), history
    structure = _saved_structure(group, formulation, rungs)
    manifest, tree = _restore(rungs, run, rung, structure)
    output = jax.tree.map(lambda leaf: leaf[None], tree["output"])
    chunk = rungs.chunk_of[group.id]
    [(row, history)] = _chunk_rows(
        session=rungs.session,
        part=[run],
        out=output,
        seconds=manifest["seconds"],
        group_id=group.id,
        chunk=chunk,
        formulation=formulation,
    )
    return row, history


def _store_stopped(rungs: _Rungs, stopped: list[PlannedRun], rung: int) -> None:
    """Store the runs halted after ``rung`` with their metrics at its end (status ``stopped``,
    or ``diverged``), in one write; then delete their training states."""
    session = rungs.session
    if not stopped:
        return
    rows: list[tuple[dict[str, Any], pl.DataFrame]] = []
    for group in group_runs(stopped, session.splits):
        formulation = rungs.numerics_of[group.id]
        for run in group.runs:
            row, history = _row_at(rungs, run, rung, group, formulation)
            row["status"] = STOPPED if row["status"] == "ok" else row["status"]
            rows.append(({**row, "rung": rung}, history))
    session.store.append(_runs_frame([row for row, _ in rows]), pl.concat([h for _, h in rows]))
    session.summary.stopped += len(rows)
    session.summary.trained += len(rows)
    for run in stopped:
        shutil.rmtree(rungs.state_dir(run.run_id), ignore_errors=True)
