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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import jax
import optax

from sweepbook.registry import Registry
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


class DirectionBuilder(Protocol):
    def __call__(
        self, hyper: OptimizerHyper, *, nesterov: bool, centered: bool
    ) -> Sequence[optax.GradientTransformation]: ...


@dataclass(frozen=True)
class OptimizerSpec:
    """A registered optimizer (``optimizer.name``).

    ``direction(hyper, nesterov=..., centered=...)`` returns the optimizer's transformations in
    order, without learning-rate scaling; :func:`build_direction` puts clipping before them and
    weight decay after. ``defaults`` are the numbers it reads beyond the learning rate that a
    file may leave out (Optax's defaults); ``takes_nesterov``: whether ``optimizer.nesterov``
    means anything to it."""

    direction: DirectionBuilder
    defaults: Mapping[str, float] = field(default_factory=dict)
    takes_nesterov: bool = False


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")


def _sgd(
    hyper: OptimizerHyper, *, nesterov: bool, centered: bool
) -> list[optax.GradientTransformation]:
    # Momentum 0 is plain SGD exactly; keeping the trace keeps one program for both.
    return [optax.trace(decay=hyper.momentum, nesterov=nesterov)]


def _adagrad(
    hyper: OptimizerHyper, *, nesterov: bool, centered: bool
) -> list[optax.GradientTransformation]:
    return [optax.scale_by_rss(initial_accumulator_value=hyper.initial_accumulator, eps=hyper.eps)]


def _rmsprop(
    hyper: OptimizerHyper, *, nesterov: bool, centered: bool
) -> list[optax.GradientTransformation]:
    scale = optax.scale_by_stddev if centered else optax.scale_by_rms
    return [
        scale(decay=hyper.decay, eps=hyper.eps),
        optax.trace(decay=hyper.momentum, nesterov=False),
    ]


def _adam(
    hyper: OptimizerHyper, *, nesterov: bool, centered: bool
) -> list[optax.GradientTransformation]:
    return [optax.scale_by_adam(b1=hyper.b1, b2=hyper.b2, eps=hyper.eps)]


# The defaults are Optax's (those of optax.adagrad, optax.rmsprop, optax.adam and optax.adamw;
# PyTorch's agree except RMSProp's decay, 0.99 there, and Adagrad's, 0 and 1e-10 there). A key
# left out of a file takes its default, so a run spelled out in full and one left minimal are
# the same run (same id).
_ADAM_DEFAULTS = {"b1": 0.9, "b2": 0.999, "eps": 1e-8}
OPTIMIZERS.register("sgd", OptimizerSpec(_sgd, takes_nesterov=True))
OPTIMIZERS.register("adagrad", OptimizerSpec(_adagrad, {"eps": 1e-7, "initial_accumulator": 0.1}))
OPTIMIZERS.register("rmsprop", OptimizerSpec(_rmsprop, {"decay": 0.9, "eps": 1e-8}))
OPTIMIZERS.register("adam", OptimizerSpec(_adam, _ADAM_DEFAULTS))
# AdamW is Adam with decoupled weight decay, which build_direction adds for every optimizer.
OPTIMIZERS.register("adamw", OptimizerSpec(_adam, _ADAM_DEFAULTS))


def build_direction(
    name: str,
    hyper: OptimizerHyper,
    *,
    nesterov: bool = False,
    centered: bool = False,
    clip_norm: bool = False,
    clip_value: bool = False,
) -> optax.GradientTransformation:
    """The update direction of optimizer ``name`` (looked up in :data:`OPTIMIZERS`); booleans
    are static structure choices."""
    direction = OPTIMIZERS[name].direction(hyper, nesterov=nesterov, centered=centered)
    chain: list[optax.GradientTransformation] = []
    if clip_value:
        chain.append(optax.clip(hyper.clip_value))
    if clip_norm:
        chain.append(optax.clip_by_global_norm(hyper.clip_norm))
    chain.extend(direction)
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
