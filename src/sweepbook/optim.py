"""Optax optimizers from config, every number traced, the learning rate applied by the caller.

:func:`build_direction` returns the optimizer *without* its learning-rate scaling: the update
direction ``d``. The training step applies ``params ← params − lr(t) · d`` with ``lr(t)`` from
the schedule and reduce-on-plateau (see :mod:`sweepbook.schedules`), so a schedule is a traced
function, not part of the optimizer's state. Optax's own optimizers scale by the learning rate
last too, so ``−lr · d`` is exactly ``optax.sgd`` / ``adagrad`` / ``rmsprop`` / ``adam`` /
``adamw`` (tested against them).

Order of the chain: gradient clipping (by value, then by global norm), the optimizer's
transformation, then decoupled weight decay ``+ wd · params`` (Loshchilov & Hutter, 2019; with
Adam this is AdamW, with SGD it is SGDW). As in PyTorch's AdamW and Optax's ``adamw``, the
decay is multiplied by the learning rate too: ``params ← params − lr(t) · (d + wd · params)``.
It applies to every parameter (``optimizer.weight_decay_mask = "all"``, PyTorch's and Optax's
default) or to the weights alone (``"weights"``: the kernels of dense and conv layers, not
biases nor batch-norm scales and offsets, the usual practice for transformers and ResNets).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import optax

from sweepbook.regularize import is_kernel


class OptimizerHyper(NamedTuple):
    """Traced numbers of the optimizer and of gradient clipping (unused slots hold 0)."""

    momentum: jax.Array
    b1: jax.Array
    b2: jax.Array
    eps: jax.Array
    decay: jax.Array
    initial_accumulator: jax.Array
    weight_decay: jax.Array
    weight_decay_all: jax.Array  # 1: decay every parameter; 0: kernels only (traced, not static)
    clip_norm: jax.Array
    clip_value: jax.Array


def build_direction(
    name: str,
    hyper: OptimizerHyper,
    *,
    nesterov: bool = False,
    centered: bool = False,
    clip_norm: bool = False,
    clip_value: bool = False,
) -> optax.GradientTransformation:
    """The update direction of optimizer ``name``; booleans are static structure choices."""
    chain: list[optax.GradientTransformation] = []
    if clip_value:
        chain.append(optax.clip(hyper.clip_value))
    if clip_norm:
        chain.append(optax.clip_by_global_norm(hyper.clip_norm))
    if name == "sgd":
        # Momentum 0 is plain SGD exactly; keeping the trace keeps one program for both.
        chain.append(optax.trace(decay=hyper.momentum, nesterov=nesterov))
    elif name == "adagrad":
        chain.append(
            optax.scale_by_rss(initial_accumulator_value=hyper.initial_accumulator, eps=hyper.eps)
        )
    elif name == "rmsprop":
        scale = optax.scale_by_stddev if centered else optax.scale_by_rms
        chain.append(scale(decay=hyper.decay, eps=hyper.eps))
        chain.append(optax.trace(decay=hyper.momentum, nesterov=False))
    elif name in ("adam", "adamw"):
        chain.append(optax.scale_by_adam(b1=hyper.b1, b2=hyper.b2, eps=hyper.eps))
    else:
        raise ValueError(f"unknown optimizer '{name}'")
    chain.append(add_decayed_weights(hyper.weight_decay, hyper.weight_decay_all))
    return optax.chain(*chain)


def add_decayed_weights(
    weight_decay: jax.Array, decay_all: jax.Array
) -> optax.GradientTransformation:
    """``d + wd · params`` on kernels and ``d + (wd · decay_all) · params`` on every other
    parameter: ``optax.add_decayed_weights`` (to the bit, when ``decay_all`` is 1) with the
    mask as a traced number, so runs with and without it share one compiled program."""

    def update_fn(
        updates: optax.Updates, state: optax.EmptyState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, optax.EmptyState]:
        if params is None:
            raise ValueError("weight decay needs the parameters")
        others = weight_decay * decay_all

        def decay(path: tuple[object, ...], d: jax.Array, p: jax.Array) -> jax.Array:
            return d + (weight_decay if is_kernel(path) else others) * p

        return jax.tree_util.tree_map_with_path(decay, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def scale_updates(updates: optax.Updates, learning_rate: jax.Array) -> optax.Updates:
    """``−lr · d``: the step actually applied to the parameters."""
    return jax.tree.map(lambda d: -learning_rate * d, updates)
