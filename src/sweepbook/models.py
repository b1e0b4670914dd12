"""Flax modules: an MLP and LeNet-5. Architecture comes from config, never from constants here.

The dropout rate is a call argument, not a module attribute, so that it can be a traced value:
runs that differ only in dropout rate share one compiled program.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sweepbook.config import ModelConfig

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "elu": nn.elu,
}


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array | None) -> jax.Array:
    """Inverted dropout with a traced ``rate``; identity when ``key`` is None (evaluation)."""
    if key is None:
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, x.shape)
    return jnp.where(mask, x / keep, 0.0)


class MLP(nn.Module):
    """Flatten, hidden dense layers (activation, then dropout), a linear classifier on top."""

    widths: Sequence[int]
    activation: str
    num_classes: int

    @nn.compact
    def __call__(
        self, x: jax.Array, *, dropout_rate: jax.Array, dropout_key: jax.Array | None
    ) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = x.reshape(x.shape[0], -1)
        for layer, width in enumerate(self.widths):
            x = act(nn.Dense(width)(x))
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, layer)
            x = dropout(x, dropout_rate, key)
        return nn.Dense(self.num_classes)(x)


class LeNet5(nn.Module):
    """LeCun et al. (1998): conv 6@5x5 (same), pool, conv 16@5x5, pool, 120, 84, classes.

    On inputs smaller than MNIST's 28x28 (the 8x8 digits) the second convolution pads to keep
    a non-empty feature map; on 28x28 it is the classic valid convolution.
    """

    activation: str
    num_classes: int

    @nn.compact
    def __call__(
        self, x: jax.Array, *, dropout_rate: jax.Array, dropout_key: jax.Array | None
    ) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        x = act(nn.Conv(6, (5, 5), padding="SAME")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        second_padding = "VALID" if x.shape[1] >= 5 else "SAME"
        x = act(nn.Conv(16, (5, 5), padding=second_padding)(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        head = MLP((120, 84), self.activation, self.num_classes)  # the 120-84 classifier
        return head(x, dropout_rate=dropout_rate, dropout_key=dropout_key)


def build_model(config: ModelConfig, num_classes: int) -> nn.Module:
    if config.kind == "mlp":
        return MLP(
            widths=tuple(config.widths), activation=config.activation, num_classes=num_classes
        )
    return LeNet5(activation=config.activation, num_classes=num_classes)
