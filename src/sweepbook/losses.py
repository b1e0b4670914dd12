"""Training losses, per example (the caller masks and averages).

Every training loss is registered in :data:`LOSSES` under the name ``loss.name`` takes, as a
:class:`TrainingLoss`: called ``(outputs, targets, hyper) -> per-example loss``, where
``hyper`` holds the traced numbers of the ``[loss]`` table (:class:`LossHyper`), each loss
reading those it uses and ``requires`` naming those a file must give for it. Classification
losses take logits ``[B, C]`` and integer labels ``[B]``; regression losses outputs and
targets of one shape ``[B, T]``. A user's loss ``(outputs, targets) -> [B]`` (pure JAX,
traced) is named by code reference in ``loss.name`` (:func:`user_loss`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sweepbook.registry import Registry


class LossHyper(NamedTuple):
    """The traced numbers of the ``[loss]`` table."""

    label_smoothing: jax.Array
    focal_gamma: jax.Array
    huber_delta: jax.Array


@dataclass(frozen=True)
class TrainingLoss:
    """A registered training loss: ``per_example(logits, labels, hyper)``; ``requires`` are
    the ``[loss]`` keys without a default that it reads (config refuses a file without them)."""

    per_example: Callable[[jax.Array, jax.Array, LossHyper], jax.Array]
    requires: tuple[str, ...] = ()
    task: Literal["classification", "regression"] | None = None  # None: a user's, any task

    def __call__(self, logits: jax.Array, labels: jax.Array, hyper: LossHyper) -> jax.Array:
        return self.per_example(logits, labels, hyper)


LOSSES: Registry[TrainingLoss] = Registry("loss")


def smoothed_targets(labels: jax.Array, num_classes: int, smoothing: jax.Array) -> jax.Array:
    """One-hot targets mixed with the uniform distribution: (1 - α)·onehot + α/C."""
    return optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: jax.Array) -> jax.Array:
    """−Σ_c y_c log p_c with label-smoothed targets y (α = 0: the usual cross-entropy)."""
    targets = smoothed_targets(labels, logits.shape[-1], smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def focal(
    logits: jax.Array, labels: jax.Array, smoothing: jax.Array, gamma: jax.Array
) -> jax.Array:
    """Focal loss (Lin et al., 2017): −Σ_c y_c (1 − p_c)^γ log p_c; γ = 0 is cross-entropy."""
    targets = smoothed_targets(labels, logits.shape[-1], smoothing)
    log_p = jax.nn.log_softmax(logits)
    # (1 − p)^γ as exp(γ·log(1 − p)) with 1 − p kept above the smallest normal float: at p = 1
    # the plain power has the gradient γ·0^(γ−1), which is NaN for γ < 1.
    one_minus_p = jnp.maximum(-jnp.expm1(log_p), jnp.finfo(log_p.dtype).tiny)
    weight = jnp.exp(gamma * jnp.log(one_minus_p))
    return -jnp.sum(targets * weight * log_p, axis=-1)


def negative_log_likelihood(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Plain cross-entropy: the loss every run *reports* (val.loss, test.loss), whatever it
    trains on, so that runs with different losses or smoothing stay comparable."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _cross_entropy_loss(logits: jax.Array, labels: jax.Array, hyper: LossHyper) -> jax.Array:
    return cross_entropy(logits, labels, hyper.label_smoothing)


def _focal_loss(logits: jax.Array, labels: jax.Array, hyper: LossHyper) -> jax.Array:
    return focal(logits, labels, hyper.label_smoothing, hyper.focal_gamma)


LOSSES.register("cross_entropy", TrainingLoss(_cross_entropy_loss, task="classification"))
LOSSES.register(
    "focal", TrainingLoss(_focal_loss, requires=("focal_gamma",), task="classification")
)


def squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per example, the squared error averaged over the outputs: the loss every regression
    run reports (val.loss, test.loss), whatever it trains on."""
    return jnp.mean(jnp.square(outputs - targets), axis=-1)


def huber(outputs: jax.Array, targets: jax.Array, delta: jax.Array) -> jax.Array:
    """Huber loss averaged over the outputs: ½r² for |r| ≤ δ, δ(|r| − ½δ) beyond."""
    return jnp.mean(optax.huber_loss(outputs, targets, delta=delta), axis=-1)


LOSSES.register("mse", TrainingLoss(lambda o, t, hyper: squared_error(o, t), task="regression"))
LOSSES.register(
    "huber", TrainingLoss(lambda o, t, hyper: huber(o, t, hyper.huber_delta), task="regression")
)


def user_loss(found: Any) -> TrainingLoss:
    """A user's loss: a :class:`TrainingLoss` as it is, or a function ``(outputs, targets) ->
    per-example loss`` (traced; it sees logits and labels for classification, outputs and
    targets of shape ``[B, T]`` for regression)."""
    if isinstance(found, TrainingLoss):
        return found
    if not callable(found) or isinstance(found, type):
        kind = type(found).__name__
        raise TypeError(f"expected a function (outputs, targets) -> per-example loss, got {kind}")
    return TrainingLoss(lambda outputs, targets, hyper: found(outputs, targets))
