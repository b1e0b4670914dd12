"""Flax modules: an MLP, LeNet-5 and a small CNN. Architecture comes from config.

Every module is called as ``model.apply(variables, x, train=..., dropout_rate=...,
dropout_key=..., mask=...)``:

- ``dropout_rate`` is an array, not a module attribute, so that runs differing only in dropout
  rate share one compiled program; dropout is active only when ``dropout_key`` is given;
- ``train`` (static) switches batch normalization between batch statistics (and updating the
  running averages in the ``batch_stats`` collection) and the running averages;
- ``mask`` marks the real examples of a padded batch, so that padding never enters batch
  statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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

INITIALIZERS: dict[str, Callable[..., Any]] = {
    "default": nn.linear.default_kernel_init,
    "lecun_normal": nn.initializers.lecun_normal(),
    "he_normal": nn.initializers.he_normal(),
    "he_uniform": nn.initializers.he_uniform(),
    "glorot_normal": nn.initializers.glorot_normal(),
    "glorot_uniform": nn.initializers.glorot_uniform(),
}

# Running-average momentum of batch normalization, in Flax's convention (PyTorch's 0.1).
BATCH_NORM_MOMENTUM = 0.9


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array | None) -> jax.Array:
    """Inverted dropout with a traced ``rate``; identity when ``key`` is None (evaluation)."""
    if key is None:
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, x.shape)
    return jnp.where(mask, x / keep, 0.0)


class _Block(nn.Module):
    """Shared plumbing: layer -> [batch norm] -> activation."""

    activation: str
    batch_norm: bool
    initializer: str  # not "init": that is Module.init

    def normalize_and_activate(
        self, x: jax.Array, *, train: bool, mask: jax.Array | None, name: str
    ) -> jax.Array:
        if self.batch_norm:
            batch_mask = None if mask is None else mask.reshape((-1,) + (1,) * (x.ndim - 1))
            x = nn.BatchNorm(
                use_running_average=not train, momentum=BATCH_NORM_MOMENTUM, name=name
            )(x, mask=None if batch_mask is None else jnp.broadcast_to(batch_mask, x.shape))
        return ACTIVATIONS[self.activation](x)


class MLP(_Block):
    """Flatten, hidden dense layers ([batch norm], activation, dropout), a linear classifier."""

    widths: Sequence[int] = ()
    num_classes: int = 10

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        dropout_rate: jax.Array,
        dropout_key: jax.Array | None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        kernel_init = INITIALIZERS[self.initializer]
        x = x.reshape(x.shape[0], -1)
        for layer, width in enumerate(self.widths):
            x = nn.Dense(width, kernel_init=kernel_init, name=f"dense_{layer}")(x)
            x = self.normalize_and_activate(x, train=train, mask=mask, name=f"norm_{layer}")
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, layer)
            x = dropout(x, dropout_rate, key)
        return nn.Dense(self.num_classes, kernel_init=kernel_init, name="classifier")(x)


class _ConvNet(_Block):
    """Convolutions with pooling, then an MLP head. Subclasses fix the architecture."""

    num_classes: int = 10
    convolutions: Sequence[int] = ()
    kernel: int = 3
    head: Sequence[int] = ()

    def padding(self, layer: int, size: int) -> str:
        return "SAME"

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        dropout_rate: jax.Array,
        dropout_key: jax.Array | None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        kernel_init = INITIALIZERS[self.initializer]
        for layer, features in enumerate(self.convolutions):
            padding = self.padding(layer, x.shape[1])
            x = nn.Conv(
                features, (self.kernel, self.kernel), padding=padding, kernel_init=kernel_init
            )(x)
            x = self.normalize_and_activate(x, train=train, mask=mask, name=f"conv_norm_{layer}")
            x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        head = MLP(
            activation=self.activation,
            batch_norm=self.batch_norm,
            initializer=self.initializer,
            widths=tuple(self.head),
            num_classes=self.num_classes,
        )
        return head(x, train=train, dropout_rate=dropout_rate, dropout_key=dropout_key, mask=mask)


class LeNet5(_ConvNet):
    """LeCun et al. (1998): conv 6@5x5 (same), pool, conv 16@5x5, pool, 120, 84, classes.

    On inputs smaller than MNIST's 28x28 (the 8x8 digits) the second convolution pads to keep
    a non-empty feature map; on 28x28 it is the classic valid convolution (61,706 parameters).
    """

    convolutions: Sequence[int] = (6, 16)
    kernel: int = 5
    head: Sequence[int] = (120, 84)

    def padding(self, layer: int, size: int) -> str:
        return "VALID" if layer == 1 and size >= self.kernel else "SAME"


class SmallCNN(_ConvNet):
    """Two 3x3 convolutions (32, 64) with pooling and a 32-unit dense layer: 119,530
    parameters on 28x28 inputs, the Fashion-MNIST-scale CNN of the courses."""

    convolutions: Sequence[int] = (32, 64)
    kernel: int = 3
    head: Sequence[int] = (32,)


def build_model(config: ModelConfig, num_classes: int) -> nn.Module:
    common: dict[str, Any] = {
        "activation": config.activation,
        "batch_norm": config.batch_norm,
        "initializer": config.init,
        "num_classes": num_classes,
    }
    if config.kind == "mlp":
        return MLP(widths=tuple(config.widths), **common)
    if config.kind == "lenet5":
        return LeNet5(**common)
    return SmallCNN(**common)
