"""Learning-rate schedules and reduce-on-plateau as pure JAX functions with traced numbers.

Only the schedule *name*, the number of epochs and the steps per epoch are static; every
number of a schedule (:class:`ScheduleParams`) and the base learning rate are traced arrays.
Runs that differ only in those numbers therefore share one compiled XLA program and can be
``vmap``-ed together. Nothing branches in Python on a traced value: branches are
``jnp.where`` / ``jnp.floor`` / clipping.

Time is measured in (fractional) epochs: the ``step``-th update (counted from 0) uses the
rate at ``t = step / steps_per_epoch``. With ``T`` epochs in all and ``w`` epochs of warm-up,

    lr(t) = min(1, (t + 1/steps_per_epoch) / w) · s(max(0, t − w))

where ``s`` is the named schedule run on the shifted time over the horizon ``H = T − w``.
The warm-up factor starts at one step's worth, ``1 / (w · steps_per_epoch)``, rather than 0,
so that no update is wasted on a zero learning rate (as PyTorch's ``LinearLR`` warm-up), and
reaches 1 at the last warm-up step. Without warm-up (``w = 0``) the factor is 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sweepbook.config import ScheduleConfig
from sweepbook.registry import Registry


class ScheduleParams(NamedTuple):
    """Traced numbers of a schedule, float32 scalars (unused slots hold 0.0)."""

    warmup_epochs: jax.Array
    gamma: jax.Array
    step_epochs: jax.Array
    min_lr: jax.Array
    restart_epochs: jax.Array
    cycle_epochs: jax.Array
    pct_start: jax.Array
    div_factor: jax.Array
    final_div_factor: jax.Array


def _horizon(total_epochs: int, warmup_epochs: jax.Array) -> jax.Array:
    # One helper for both the stored no-restart period and the horizon in learning_rate, so
    # the two are bit-identical and the last cosine period ends exactly at t = T.
    return jnp.asarray(total_epochs, dtype=jnp.float32) - warmup_epochs


def schedule_params(config: ScheduleConfig, total_epochs: int) -> ScheduleParams:
    """The traced numbers of ``config`` for a run of ``total_epochs`` epochs.

    A number the schedule does not use is 0.0. ``restart_epochs = None`` means no restarts:
    one cosine period spanning the run after warm-up, ``T − w``.
    """
    if config.warmup_epochs >= total_epochs:
        raise ValueError(
            f"schedule.warmup_epochs = {config.warmup_epochs} must be less than the "
            f"{total_epochs} epochs of training; shorten the warm-up or train longer"
        )

    def f32(value: float | None) -> jax.Array:
        return jnp.asarray(0.0 if value is None else value, dtype=jnp.float32)

    warmup = f32(config.warmup_epochs)
    restart = (
        _horizon(total_epochs, warmup)
        if config.restart_epochs is None
        else f32(config.restart_epochs)
    )
    return ScheduleParams(
        warmup_epochs=warmup,
        gamma=f32(config.gamma),
        step_epochs=f32(config.step_epochs),
        min_lr=f32(config.min_lr),
        restart_epochs=restart,
        cycle_epochs=f32(config.cycle_epochs),
        pct_start=f32(config.pct_start),
        div_factor=f32(config.div_factor),
        final_div_factor=f32(config.final_div_factor),
    )


# A schedule s(params, b, t, H): b the base rate, t the time after warm-up, H = T − w.
_Schedule = Callable[[ScheduleParams, jax.Array, jax.Array, jax.Array], jax.Array]


def _constant(p: ScheduleParams, b: jax.Array, t: jax.Array, horizon: jax.Array) -> jax.Array:
    """``b``."""
    return b * jnp.ones_like(t)


def _step(p: ScheduleParams, b: jax.Array, t: jax.Array, horizon: jax.Array) -> jax.Array:
    """``b · γ^⌊⌊t⌋ / step_epochs⌋`` (PyTorch ``StepLR`` stepped once per epoch)."""
    return b * p.gamma ** jnp.floor(jnp.floor(t) / p.step_epochs)


def _exponential(p: ScheduleParams, b: jax.Array, t: jax.Array, horizon: jax.Array) -> jax.Array:
    """``b · γ^⌊t⌋`` (PyTorch ``ExponentialLR`` stepped once per epoch)."""
    return b * p.gamma ** jnp.floor(t)


def _cosine(p: ScheduleParams, b: jax.Array, t: jax.Array, horizon: jax.Array) -> jax.Array:
    """``min_lr + ½ (b − min_lr)(1 + cos(π t_cur / P))``, ``P = restart_epochs`` (SGDR).

    Periods start at ``k·P`` for every ``k·P < H``, so a restart at a boundary gives ``b``
    there (as PyTorch's ``CosineAnnealingWarmRestarts``), but none happens at the end of the
    run, ``t = H``: when ``P`` divides ``H`` (always without restarts, ``P = H``) the rate
    ends at ``min_lr`` (as ``CosineAnnealingLR`` and ``optax.cosine_decay_schedule``), not
    back at ``b``.
    """
    period = p.restart_epochs
    last_restart = jnp.ceil(horizon / period) - 1.0
    t_cur = t - period * jnp.minimum(jnp.floor(t / period), last_restart)
    return p.min_lr + 0.5 * (b - p.min_lr) * (1.0 + jnp.cos(jnp.pi * t_cur / period))


def _cos_anneal(start: jax.Array, end: jax.Array, progress: jax.Array) -> jax.Array:
    """``end + (start − end)/2 · (1 + cos(π p))`` with ``p`` clipped to [0, 1]."""
    progress = jnp.clip(progress, 0.0, 1.0)
    return end + 0.5 * (start - end) * (1.0 + jnp.cos(jnp.pi * progress))


def _onecycle(p: ScheduleParams, b: jax.Array, t: jax.Array, horizon: jax.Array) -> jax.Array:
    """PyTorch ``OneCycleLR`` (cosine, two phases) in continuous time over ``H``.

    ``initial = b / div_factor``, ``final = initial / final_div_factor``, peak ``t_p =
    pct_start · H``: cos-anneal ``initial → b`` over ``[0, t_p]``, then ``b → final`` over
    ``[t_p, H]``.
    """
    initial = b / p.div_factor
    final = initial / p.final_div_factor
    peak = p.pct_start * horizon
    rising = _cos_anneal(initial, b, t / peak)
    falling = _cos_anneal(b, final, (t - peak) / (horizon - peak))
    return jnp.where(t < peak, rising, falling)


def _cyclic(p: ScheduleParams, b: jax.Array, t: jax.Array, horizon: jax.Array) -> jax.Array:
    """Triangular cyclic rate (Smith, 2017; PyTorch ``CyclicLR(mode='triangular')``).

    ``c = ⌊1 + t / (2·cycle_epochs)⌋``, ``x = |t / cycle_epochs − 2c + 1|``,
    ``lr = min_lr + (b − min_lr) · max(0, 1 − x)``: ``min_lr`` at ``t = 2k·cycle_epochs``,
    ``b`` half-way.
    """
    cycle = jnp.floor(1.0 + t / (2.0 * p.cycle_epochs))
    x = jnp.abs(t / p.cycle_epochs - 2.0 * cycle + 1.0)
    return p.min_lr + (b - p.min_lr) * jnp.maximum(0.0, 1.0 - x)


@dataclass(frozen=True)
class ScheduleSpec:
    """A registered schedule (``schedule.name``): ``rate(params, base_lr, t, horizon)`` is
    ``s`` of the module docstring, ``requires`` the ``[schedule]`` keys it reads (the file must
    give them; the rest are 0.0 in :class:`ScheduleParams`)."""

    rate: _Schedule
    requires: tuple[str, ...] = ()


SCHEDULES: Registry[ScheduleSpec] = Registry("schedule")
SCHEDULES.register("constant", ScheduleSpec(_constant))
SCHEDULES.register("step", ScheduleSpec(_step, ("gamma", "step_epochs")))
SCHEDULES.register("exponential", ScheduleSpec(_exponential, ("gamma",)))
SCHEDULES.register("cosine", ScheduleSpec(_cosine, ("min_lr",)))
SCHEDULES.register(
    "onecycle", ScheduleSpec(_onecycle, ("pct_start", "div_factor", "final_div_factor"))
)
SCHEDULES.register("cyclic", ScheduleSpec(_cyclic, ("min_lr", "cycle_epochs")))


def learning_rate(
    name: str,
    params: ScheduleParams,
    base_lr: jax.Array,
    epoch_time: jax.Array,
    total_epochs: int,
    *,
    steps_per_epoch: int,
) -> jax.Array:
    """The learning rate of schedule ``name`` at ``epoch_time`` (any shape, elementwise).

    ``lr(t) = min(1, (t + 1/steps_per_epoch) / w) · s(max(0, t − w))`` with ``w =
    warmup_epochs`` and ``s`` the schedule on the horizon ``T − w`` (see the module
    docstring and each schedule's formula). ``name``, ``total_epochs`` and
    ``steps_per_epoch`` are static; everything else may be traced.
    """
    schedule = SCHEDULES[name].rate
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
    warmup = params.warmup_epochs
    has_warmup = warmup > 0.0
    # The safe denominator keeps the unused branch finite, so gradients and NaN checks stay clean.
    ramp = (epoch_time + 1.0 / steps_per_epoch) / jnp.where(has_warmup, warmup, 1.0)
    warmup_factor = jnp.where(has_warmup, jnp.minimum(1.0, ramp), 1.0)
    shifted = jnp.maximum(epoch_time - warmup, 0.0)
    scheduled = schedule(params, base_lr, shifted, _horizon(total_epochs, warmup))
    return warmup_factor * scheduled


class PlateauState(NamedTuple):
    """Reduce-on-plateau state, carried across epochs."""

    best: jax.Array  # best validation loss seen (inf initially)
    wait: jax.Array  # epochs since the last improvement (int32)
    scale: jax.Array  # current multiplier of the scheduled learning rate (1.0 initially)


def plateau_init() -> PlateauState:
    """No loss seen yet, no reduction."""
    return PlateauState(
        best=jnp.asarray(jnp.inf, dtype=jnp.float32),
        wait=jnp.asarray(0, dtype=jnp.int32),
        scale=jnp.asarray(1.0, dtype=jnp.float32),
    )


def plateau_update(
    state: PlateauState,
    val_loss: jax.Array,
    *,
    factor: jax.Array,
    patience: jax.Array,
    threshold: jax.Array,
    min_scale: jax.Array,
    enabled: bool,
) -> PlateauState:
    """One epoch of PyTorch ``ReduceLROnPlateau(mode='min', threshold_mode='rel')``, no cooldown.

    Improvement iff ``val_loss < best · (1 − threshold)``: then ``best = val_loss``,
    ``wait = 0``. Otherwise ``wait += 1``, and once ``wait > patience``:
    ``scale = max(scale · factor, min_scale)``, ``wait = 0``. A NaN loss never improves.
    ``enabled`` is static; when False the state is returned unchanged.
    """
    if not enabled:
        return state
    # The first loss always improves: inf · (1 − threshold) is NaN when threshold = 1.
    improved = jnp.where(
        jnp.isinf(state.best), val_loss < state.best, val_loss < state.best * (1.0 - threshold)
    )
    wait = jnp.where(improved, 0, state.wait + 1)
    reduce = wait > patience
    return PlateauState(
        best=jnp.where(improved, val_loss, state.best).astype(state.best.dtype),
        wait=jnp.where(reduce, 0, wait).astype(state.wait.dtype),
        scale=jnp.where(reduce, jnp.maximum(state.scale * factor, min_scale), state.scale).astype(
            state.scale.dtype
        ),
    )
