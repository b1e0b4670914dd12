"""Run planned runs: group by static signature, compile once per group, train, store.

Each group's program is compiled ahead of time (``jit(...).lower(...).compile()``), so the
number of compilations is exactly the number of groups, and compile time is measured apart
from training time. Finished runs go to the store as soon as they finish.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sweepbook import checkpoints
from sweepbook.config import ModelConfig
from sweepbook.data import Split, load_split
from sweepbook.models import build_network, choose_numerics, multiply_adds
from sweepbook.plan import PlannedRun
from sweepbook.results import Origin
from sweepbook.results import failed_row as _failed_row
from sweepbook.results import history_frame as _history_frame
from sweepbook.results import result_row as _result_row
from sweepbook.results import runs_frame as _runs_frame
from sweepbook.store import Store
from sweepbook.train import (
    DataArrays,
    Hyper,
    RunOutput,
    StaticSpec,
    data_arrays,
    hyper_from_config,
    program_id,
    static_spec,
    train_run,
)

# Compiled programs of this process, by program id, chunk size and numerics: a search trains
# batch after batch with the same shapes, and must not pay for compilation again each time.
_PROGRAMS: dict[tuple[str, int, str], Callable[..., RunOutput]] = {}

# Runs per program call at most. Larger chunks amortize per-step overhead (on 2 CPU cores a
# chunk of 16 digits-MLP runs trains ~1.7x faster than 16 calls of one run; see `bench`);
# memory grows linearly with the chunk.
DEFAULT_RUNS_PER_CHUNK = 32
# Share of each device's memory a chunk may use (the rest is XLA's workspace and the data).
DEFAULT_MEMORY_FRACTION = 0.25
# Training FLOPs per step from which one run keeps a device of this backend busy on its own:
# such runs train one per device per call, since stacking them only adds memory traffic.
# Measured on 2 CPU cores, per-run throughput of a chunk of 4 against one run at a time:
# digits MLP (3 MFLOP a step) 1.7x, LeNet-5 at batch 32 (80 MFLOP) 1.2x, at batch 64 (160
# MFLOP) 1.03x, at batch 256 (640 MFLOP) 0.94x, MLP 784-784-10 at batch 256 (960 MFLOP) 0.77x.
# Below the threshold chunks are as before (no shipped MLP study reaches it, so their chunks
# and bits are unchanged). Backends not listed (GPUs: unmeasured) keep --runs-per-chunk.
SATURATING_STEP_FLOPS: dict[str, float] = {"cpu": 5e8}


def enable_compile_cache(directory: Path) -> None:
    """JAX's persistent compilation cache in ``directory``: a later process (another sweep,
    another array task on shared storage) loads compiled programs instead of compiling."""
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def default_compile_cache() -> Path:
    configured = os.environ.get("SWEEPBOOK_COMPILE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "sweepbook" / "xla"


def forget_compiled_programs() -> None:
    """Drop this process's compiled programs (the next run of each group compiles again)."""
    _PROGRAMS.clear()


@dataclass
class EngineSummary:
    trained: int = 0
    ok: int = 0
    diverged: int = 0
    failed: int = 0
    stopped: int = 0  # halted at a rung of successive halving (sweepbook.rungs)
    compilations: int = 0
    compile_seconds: float = 0.0
    train_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, other: EngineSummary) -> None:
        for name in ("trained", "ok", "diverged", "failed", "stopped", "compilations"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.compile_seconds += other.compile_seconds
        self.train_seconds += other.train_seconds
        self.errors += other.errors


@dataclass(frozen=True)
class Group:
    """Runs that share one compiled program: same static spec, same data shapes."""

    id: str
    static: StaticSpec
    num_classes: int
    runs: tuple[PlannedRun, ...]


def split_key(run: PlannedRun) -> str:
    """Runs with equal keys train on one split (the data config and what the targets are)."""
    data = run.config.data.model_dump_json()
    return data if run.config.task == "classification" else f"{run.config.task}:{data}"


def group_runs(runs: list[PlannedRun], splits: dict[str, Split]) -> list[Group]:
    grouped: dict[str, list[PlannedRun]] = {}
    specs: dict[str, tuple[StaticSpec, int]] = {}
    for run in runs:
        split = splits[split_key(run)]
        static = static_spec(run.config)
        group_id = program_id(static, split.num_outputs, split)
        specs[group_id] = (static, split.num_outputs)
        grouped.setdefault(group_id, []).append(run)
    return [Group(gid, *specs[gid], tuple(members)) for gid, members in grouped.items()]


def load_splits(runs: list[PlannedRun], base: Path | None = None) -> dict[str, Split]:
    """Load every data split the runs need, keyed by :func:`split_key`; a relative
    ``data.path`` is found in ``base``, the experiment file's folder."""
    splits: dict[str, Split] = {}
    for run in runs:
        key = split_key(run)
        if key not in splits:
            splits[key] = load_split(run.config.data, run.config.task, base)
    return splits


def replicated(devices: list[jax.Device]) -> NamedSharding:
    return NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec())


def sharded(devices: list[jax.Device]) -> NamedSharding:
    """The runs axis split over every local device (GPUs on a cluster node; CPU devices in
    tests with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``)."""
    return NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))


def group_numerics(static: StaticSpec, platform: str) -> str:
    """The layer formulation a group trains with on ``platform`` (stored as ``numerics``)."""
    return choose_numerics(ModelConfig.model_validate_json(static.model).kind, platform)


def compile_program(
    static: StaticSpec,
    num_classes: int,
    data: DataArrays,
    example: PlannedRun,
    *,
    chunk: int,
    devices: list[jax.Device],
    numerics: str | None = None,
) -> Callable[..., RunOutput]:
    """Compile ``train_run`` vmapped over ``chunk`` runs, for one static signature: every
    hyper-parameter and the seed are traced, the data is shared by the chunk. ``numerics``
    names the formulation of a conv net's layers (default: the legacy one)."""
    trainer = jax.vmap(
        functools.partial(train_run, static, num_classes, numerics=numerics), in_axes=(0, None)
    )
    hyper = _stack([hyper_from_config(example.config)] * chunk)
    jitted = jax.jit(trainer, in_shardings=(sharded(devices), replicated(devices)))
    return jitted.lower(hyper, data).compile()


def chunk_size(group_size: int, *, limit: int, devices: int) -> int:
    """Runs per compiled program call: the planned group's size, at most ``limit``, rounded up
    to a multiple of the device count (each device takes an equal share of the runs axis)."""
    size = max(1, min(group_size, limit))
    return -(-size // devices) * devices


def step_flops(static: StaticSpec, num_classes: int, image: tuple[int, ...]) -> int:
    """FLOPs of one training step of one run: 6 per multiply-add (forward 2, backward 4) of
    the dense and convolution layers, per example of a (padded) batch."""
    config = ModelConfig.model_validate_json(static.model)
    return 6 * static.batch_size * multiply_adds(config, image, num_classes, static.traced)


def saturation_limit(
    static: StaticSpec, num_classes: int, image: tuple[int, ...], platform: str
) -> int | None:
    """Runs per device worth stacking: 1 when one run's :func:`step_flops` reach
    ``SATURATING_STEP_FLOPS[platform]``, else None (no limit). A pure function of the static
    shapes and the backend, never of a timing, so the same plan always gets the same chunk
    size (a resumed sweep stores exactly the bits an uninterrupted one would)."""
    threshold = SATURATING_STEP_FLOPS.get(platform)
    if threshold is None or step_flops(static, num_classes, image) < threshold:
        return None
    return 1


def device_memory_bytes(device: jax.Device) -> int:
    """Memory of one device: an accelerator's own, or the host's RAM for a CPU device."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def run_memory_bytes(static: StaticSpec, num_classes: int, split: Split) -> int:
    """A generous estimate of one run's device memory inside a chunk (float32 everywhere):
    parameters x 8 (weights, best weights, two optimizer moments, gradients, masks, quantized
    copy, update; the kept variables every run returns for ``--save-params`` are one more copy,
    left inside this bound, since masks and the quantized copy exist only when compressing: a
    larger factor would change chunk sizes, and so the bits, of planned sweeps), activations of
    a training batch and of an evaluation batch x 4 (forward, backward, dropout masks, batch
    norm), and the class probabilities it returns."""
    network = build_network(ModelConfig.model_validate_json(static.model), num_classes)
    example = jnp.zeros((1, *split.x_train.shape[1:]), jnp.float32)
    traced = {name: jnp.float32(0.0) for name in static.traced}
    shapes = jax.eval_shape(
        lambda x: network.init(jax.random.key(0), x, dropout_rate=jnp.float32(0.0), traced=traced),
        example,
    )
    params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))
    features = int(np.prod(split.x_train.shape[1:]))
    widest = max(features, params // max(features, 1))  # a bound on one example's activations
    batch = static.batch_size + min(static.eval_batch_size, len(split.y_val))
    returned = (len(split.y_val) + len(split.y_test)) * num_classes
    return 4 * (8 * params + 4 * batch * widest + returned)


def memory_limit(
    static: StaticSpec, num_classes: int, split: Split, budget: int, devices: int
) -> int:
    """How many runs fit the memory ``budget`` (bytes per device) at once, over all devices."""
    return max(1, budget // run_memory_bytes(static, num_classes, split)) * devices


def _stack(hypers: list[Hyper]) -> Hyper:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *hypers)


def _lane(tree: Any, index: int) -> Any:
    return jax.tree.map(lambda leaf: leaf[index], tree)


def train_runs(
    runs: list[PlannedRun],
    store: Store,
    *,
    splits: dict[str, Split],
    origin: Origin | None = None,
    on_run_done: Callable[[PlannedRun, str], None] = lambda run, status: None,
    planned: list[PlannedRun] | None = None,
    runs_per_chunk: int = DEFAULT_RUNS_PER_CHUNK,
    memory_budget: float = DEFAULT_MEMORY_FRACTION,
    lanes: int | None = None,
    numerics: str | None = None,
    save_params: str = "none",
) -> EngineSummary:
    """Train ``runs`` group by group, chunk by chunk, appending each chunk's runs to ``store``.

    Within a group, runs on the same data split are stacked ``chunk`` at a time and trained by
    one vmapped program call; the last chunk is padded with copies of its last run (their
    results are dropped). ``chunk`` comes from the size of the group in ``planned`` (the whole
    sweep, default ``runs``), not from what is left to train, so a resumed sweep uses the same
    programs as an uninterrupted one; and since no lane reads another, a run's results do not
    depend on its chunk-mates. ``chunk_size`` is stored with each run for ``verify``. A chunk
    is also kept within ``memory_budget``: a fraction (≤ 1) of each device's memory, or a number
    of bytes (> 1), and within :func:`saturation_limit` runs per device (a run that keeps the
    device busy alone trains alone). ``lanes`` fixes the chunk size outright (``verify``
    replays a stored run in a chunk of its recorded size, the only shape that reproduces it
    bit for bit).

    A group's layers are computed in the formulation :func:`models.choose_numerics` picks for
    the device's backend, stored as ``numerics``; ``numerics`` overrides it (``verify`` replays
    a run in its recorded one, ``bench`` times the legacy one beside the chosen one).

    ``save_params`` (``best``, ``all``, ``none``): with ``all`` each ``ok`` run's kept variables
    go to ``params/<run_id>/``, with ``best`` to ``params/.pending/<run_id>/`` until the sweep
    picks its best configuration (:func:`checkpoints.keep_best`); before the chunk's rows, so a
    stored run never lacks the checkpoint it was meant to have. Diverged runs' (NaN) are not kept.

    A group whose program fails to compile, or a chunk whose call raises, is stored as failed
    runs and the rest goes on.
    """
    devices = jax.local_devices()
    session = _Session(
        store, splits, origin or {}, on_run_done, devices, checkpoints.check_mode(save_params)
    )
    sizes = {group.id: len(group.runs) for group in group_runs(planned or runs, splits)}
    budget = int(
        memory_budget * device_memory_bytes(devices[0]) if memory_budget <= 1 else memory_budget
    )
    for group in group_runs(runs, splits):
        chunk = lanes or _group_chunk(
            group,
            splits[split_key(group.runs[0])],
            devices,
            planned_size=sizes.get(group.id, len(group.runs)),
            runs_per_chunk=runs_per_chunk,
            budget=budget,
        )
        formulation = numerics or group_numerics(group.static, devices[0].platform)
        compiled = _group_program(session, group, chunk, formulation)
        if compiled is None:
            continue
        for part in _chunks(group.runs, chunk):
            started = time.perf_counter()
            try:
                out = _train_chunk(session, compiled, part, chunk)
                # Wall time of the chunk, shared equally by its runs.
                seconds = (time.perf_counter() - started) / len(part)
                # Rows compute the host metrics, users' included: their errors fail the chunk.
                rows = _chunk_rows(session, part, out, seconds, group.id, chunk, formulation)
                _save_params(session, part, out, rows, group.num_classes, formulation)
            except Exception as error:
                session.fail(part, error, group.id, formulation)
                continue
            _store_chunk(session, part, rows)
    return session.summary


@dataclass
class _Session:
    """What every group and chunk of one :func:`train_runs` call shares."""

    store: Store
    splits: dict[str, Split]
    origin: Origin
    on_run_done: Callable[[PlannedRun, str], None]
    devices: list[jax.Device]
    save_params: str = "none"
    summary: EngineSummary = field(default_factory=EngineSummary)
    on_device: dict[str, DataArrays] = field(default_factory=dict)  # each split moved once

    def device_data(self, run: PlannedRun) -> DataArrays:
        key = split_key(run)
        if key not in self.on_device:
            arrays = data_arrays(self.splits[key])
            self.on_device[key] = jax.device_put(arrays, replicated(self.devices))
        return self.on_device[key]

    def fail(
        self, members: list[PlannedRun], error: BaseException, group_id: str, formulation: str
    ) -> None:
        for run in members:
            _store_failure(self.store, self.summary, run, error, group_id, formulation, self.origin)
            self.on_run_done(run, "failed")


def _group_chunk(
    group: Group,
    split: Split,
    devices: list[jax.Device],
    *,
    planned_size: int,
    runs_per_chunk: int,
    budget: int,
) -> int:
    """Runs per program call for ``group``: its planned size within ``runs_per_chunk``, the
    memory ``budget`` (bytes per device) and :func:`saturation_limit`."""
    fits = memory_limit(group.static, group.num_classes, split, budget, len(devices))
    saturates = saturation_limit(
        group.static, group.num_classes, split.x_train.shape[1:], devices[0].platform
    )
    limit = min(runs_per_chunk, fits, (saturates or runs_per_chunk) * len(devices))
    return chunk_size(planned_size, limit=limit, devices=len(devices))


def _group_program(
    session: _Session, group: Group, chunk: int, formulation: str
) -> Callable[..., RunOutput] | None:
    """The group's compiled program, from this process's cache or compiled now (counted and
    timed); None when compilation fails, the group's runs then stored as failed."""
    started = time.perf_counter()
    compiled = _PROGRAMS.get((group.id, chunk, formulation))
    if compiled is not None:
        return compiled
    try:
        compiled = compile_program(
            group.static,
            group.num_classes,
            session.device_data(group.runs[0]),
            group.runs[0],
            chunk=chunk,
            devices=session.devices,
            numerics=formulation,
        )
    except Exception as error:
        session.fail(list(group.runs), error, group.id, formulation)
        return None
    _PROGRAMS[(group.id, chunk, formulation)] = compiled
    session.summary.compilations += 1
    session.summary.compile_seconds += time.perf_counter() - started
    return compiled


def _chunks(runs: tuple[PlannedRun, ...], chunk: int) -> Iterator[list[PlannedRun]]:
    """The runs split by data split (first-seen order), then ``chunk`` at a time."""
    by_split: dict[str, list[PlannedRun]] = {}
    for run in runs:
        by_split.setdefault(split_key(run), []).append(run)
    for members in by_split.values():
        for start in range(0, len(members), chunk):
            yield members[start : start + chunk]


def _train_chunk(
    session: _Session, compiled: Callable[..., RunOutput], part: list[PlannedRun], chunk: int
) -> RunOutput:
    """One program call: ``part`` padded to ``chunk`` lanes with copies of its last run, the
    runs axis sharded over the devices; the outputs as host arrays."""
    padded = part + [part[-1]] * (chunk - len(part))
    hyper = jax.device_put(
        _stack([hyper_from_config(run.config) for run in padded]), sharded(session.devices)
    )
    out: RunOutput = jax.tree.map(np.asarray, compiled(hyper, session.device_data(part[0])))
    return out


def _chunk_rows(
    session: _Session,
    part: list[PlannedRun],
    out: RunOutput,
    seconds: float,
    group_id: str,
    chunk: int,
    formulation: str,
) -> list[tuple[dict[str, Any], pl.DataFrame]]:
    """Each run's row and history from its lane of ``out`` (padding lanes dropped)."""
    split = session.splits[split_key(part[0])]
    rows = []
    for index, run in enumerate(part):
        lane = _lane(out, index)
        row = _result_row(run, lane, split, seconds, group_id, session.origin)
        rows.append(
            (
                {**row, "chunk_size": chunk, "numerics": formulation},
                _history_frame(run.run_id, lane),
            )
        )
    return rows


def _save_params(
    session: _Session,
    part: list[PlannedRun],
    out: RunOutput,
    rows: list[tuple[dict[str, Any], pl.DataFrame]],
    num_outputs: int,
    formulation: str,
) -> None:
    """Each ``ok`` run's kept variables as a checkpoint, when the session saves parameters."""
    if session.save_params == "none":
        return
    for index, (run, (row, _)) in enumerate(zip(part, rows, strict=True)):
        if row["status"] != "ok":
            continue
        target = checkpoints.checkpoint_dir(
            session.store.directory, run.run_id, pending=session.save_params == "best"
        )
        info = checkpoints.CheckpointInfo(run.run_id, num_outputs, formulation)
        checkpoints.save_checkpoint(target, _lane(out.variables, index), info)


def _store_chunk(
    session: _Session, part: list[PlannedRun], rows: list[tuple[dict[str, Any], pl.DataFrame]]
) -> None:
    """Append the chunk's runs and their histories to the store in one write, then count and
    report each run."""
    session.store.append(_runs_frame([row for row, _ in rows]), pl.concat([h for _, h in rows]))
    summary = session.summary
    summary.train_seconds += sum(row["train_seconds"] for row, _ in rows)
    for run, (row, _) in zip(part, rows, strict=True):
        summary.trained += 1
        if row["status"] == "ok":
            summary.ok += 1
        else:
            summary.diverged += 1
        session.on_run_done(run, row["status"])


def _store_failure(
    store: Store,
    summary: EngineSummary,
    run: PlannedRun,
    error: BaseException,
    group_id: str,
    formulation: str,
    origin: Origin,
) -> None:
    no_epochs = pl.DataFrame(schema={"run_id": pl.String, "epoch": pl.Int32})
    row = {**_failed_row(run, error, group_id, origin), "numerics": formulation}
    store.append(_runs_frame([row]), no_epochs)
    summary.trained += 1
    summary.failed += 1
    summary.errors.append(f"{run.run_id}: {type(error).__name__}: {error}")
