"""Users' own Flax models for sweepbook's examples: ordinary Flax modules, nothing imported
from sweepbook. sweepbook builds each as ``Model(**[model.args])`` (plus ``num_outputs`` when
the module declares it) and calls it as ``model(x, train=..., **[model.traced])``."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class RegressionMLP(nn.Module):
    """Dense layers of ``width`` units (``depth`` of them) with ReLU, then one linear output
    per target: ``[B]`` for a scalar target."""

    width: int
    depth: int = 2
    num_outputs: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for _ in range(self.depth):
            x = nn.relu(nn.Dense(self.width)(x))
        out = nn.Dense(self.num_outputs)(x)
        return out[:, 0] if self.num_outputs == 1 else out


def traced_dropout(module: nn.Module, x: jax.Array, rate: jax.Array, train: bool) -> jax.Array:
    """Inverted dropout whose rate may be a traced number (``nn.Dropout`` needs a Python
    float): the key comes from the ``"dropout"`` stream sweepbook seeds per step."""
    if not train:
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(module.make_rng("dropout"), keep, x.shape)
    return jnp.where(mask, x / keep, 0.0)


class TabularNet(nn.Module):
    """One hidden layer of ``width`` units with batch norm and dropout, then logits. The dropout
    rate is a traced argument: runs that differ only in it share one compiled program."""

    width: int
    num_outputs: int = 2

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, dropout: jax.Array) -> jax.Array:
        x = nn.Dense(self.width)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = traced_dropout(self, nn.relu(x), dropout, train)
        return nn.Dense(self.num_outputs)(x)
