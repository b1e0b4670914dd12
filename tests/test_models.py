from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweepbook.config import ModelConfig
from sweepbook.models import LeNet5, build_model, dropout


def _count(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def _init(model, shape):
    x = jnp.zeros(shape)
    params = model.init(jax.random.key(0), x, dropout_rate=jnp.float32(0.0), dropout_key=None)[
        "params"
    ]
    logits = model.apply({"params": params}, x, dropout_rate=jnp.float32(0.0), dropout_key=None)
    return params, logits


def test_mlp_widths_and_classes_come_from_config():
    config = ModelConfig(kind="mlp", widths=[300, 100], activation="tanh")
    params, logits = _init(build_model(config, num_classes=10), (5, 28, 28, 1))
    assert logits.shape == (5, 10)
    assert (
        _count(params) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    )  # LeNet-300-100: 266,610


def test_lenet5_has_the_classic_61706_parameters_on_28x28():
    params, logits = _init(LeNet5(activation="relu", num_classes=10), (2, 28, 28, 1))
    assert logits.shape == (2, 10)
    assert _count(params) == 61_706


def test_lenet5_runs_on_8x8_digits():
    _, logits = _init(LeNet5(activation="relu", num_classes=10), (3, 8, 8, 1))
    assert logits.shape == (3, 10)
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_dropout_is_identity_without_a_key():
    x = jnp.arange(12.0).reshape(3, 4)
    assert jnp.array_equal(dropout(x, jnp.float32(0.5), None), x)


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5])
def test_dropout_drops_the_rate_and_keeps_the_mean(rate):
    x = jnp.ones((200, 500))
    y = jax.jit(dropout)(x, jnp.float32(rate), jax.random.key(1))
    dropped = float(jnp.mean(y == 0.0))
    assert dropped == pytest.approx(rate, abs=0.01)
    assert float(jnp.mean(y)) == pytest.approx(1.0, abs=0.02)


def test_dropout_rate_is_traced_one_program_for_all_rates():
    traced = jax.jit(lambda x, rate, key: dropout(x, rate, key))  # a fresh cache
    x, key = jnp.ones((4, 4)), jax.random.key(0)
    traced(x, jnp.float32(0.1), key)
    traced(x, jnp.float32(0.7), key)
    assert traced._cache_size() == 1
