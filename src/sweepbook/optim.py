"""Optax optimizers built from config, with every float hyper-parameter as a traced array.

The optimizer's *name* decides the program's structure (static); its numbers arrive as
arrays (traced), so a learning-rate sweep compiles one program and feeds it many values.
"""

from __future__ import annotations

import jax
import optax


def build_optimizer(
    name: str,
    *,
    learning_rate: jax.Array,
    momentum: jax.Array,
    b1: jax.Array,
    b2: jax.Array,
    eps: jax.Array,
) -> optax.GradientTransformation:
    """SGD (heavy-ball momentum; momentum 0 is plain SGD) or Adam (Kingma & Ba, 2015)."""
    if name == "sgd":
        # Always build the momentum trace: a traced momentum of 0 gives plain SGD exactly,
        # and keeps SGD runs with and without momentum in one compiled program.
        return optax.sgd(learning_rate=learning_rate, momentum=momentum)
    if name == "adam":
        return optax.adam(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)
    raise ValueError(f"unknown optimizer '{name}'")
