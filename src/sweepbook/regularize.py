"""Weight penalties and constraints. They act on weights (kernels), never on biases or
batch-norm scales, following the usual practice (and Keras' kernel_regularizer)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def is_kernel(path: tuple[Any, ...]) -> bool:
    """Whether a parameter's tree path names a weight matrix or filter bank of a dense or conv
    layer (Flax's ``kernel``), not a bias or a batch-norm scale or offset."""
    return bool(path) and getattr(path[-1], "key", None) == "kernel"


def weight_penalty(params: Any, l1: jax.Array, l2: jax.Array) -> jax.Array:
    """l1·Σ|w| + l2·Σw² over every kernel (elastic net when both are non-zero)."""
    terms = [
        l1 * jnp.sum(jnp.abs(leaf)) + l2 * jnp.sum(jnp.square(leaf))
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        if is_kernel(path)
    ]
    return jnp.sum(jnp.stack(terms)) if terms else jnp.float32(0.0)


def max_norm(params: Any, limit: jax.Array) -> Any:
    """Rescale each unit's incoming weight vector (all kernel axes but the last) to an L2 norm
    of at most ``limit`` (Srivastava et al., 2014)."""

    def constrain(path: tuple[Any, ...], leaf: jax.Array) -> jax.Array:
        if not is_kernel(path):
            return leaf
        axes = tuple(range(leaf.ndim - 1))
        norms = jnp.sqrt(jnp.sum(jnp.square(leaf), axis=axes, keepdims=True))
        return leaf * jnp.minimum(1.0, limit / jnp.maximum(norms, jnp.finfo(leaf.dtype).tiny))

    return jax.tree_util.tree_map_with_path(constrain, params)
