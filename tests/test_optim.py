from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sweepbook.optim import build_optimizer

PARAMS = {"w": jnp.array([1.0, -2.0, 3.0])}
GRADS = [{"w": jnp.array([0.5, -1.0, 0.25])}, {"w": jnp.array([-0.1, 0.3, 0.2])}]


def _apply(tx, steps=GRADS):
    params, state = PARAMS, tx.init(PARAMS)
    for grads in steps:
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params["w"])


def _ours(name, **hyper):
    values = {"learning_rate": 0.1, "momentum": 0.0, "b1": 0.0, "b2": 0.0, "eps": 1.0}
    values.update(hyper)
    return build_optimizer(name, **{k: jnp.float32(v) for k, v in values.items()})


def test_sgd_with_zero_momentum_is_plain_sgd():
    np.testing.assert_allclose(_apply(_ours("sgd")), _apply(optax.sgd(0.1)), rtol=1e-6)


def test_sgd_momentum_matches_optax():
    np.testing.assert_allclose(
        _apply(_ours("sgd", momentum=0.9)), _apply(optax.sgd(0.1, momentum=0.9)), rtol=1e-6
    )


def test_adam_matches_optax():
    ours = _ours("adam", learning_rate=0.01, b1=0.9, b2=0.999, eps=1e-8)
    np.testing.assert_allclose(_apply(ours), _apply(optax.adam(0.01)), rtol=1e-6)


def test_learning_rate_is_traced():
    def step(lr):
        tx = build_optimizer("adam", learning_rate=lr, momentum=0.0, b1=0.9, b2=0.999, eps=1e-8)
        updates, _ = tx.update(GRADS[0], tx.init(PARAMS), PARAMS)
        return updates["w"]

    jitted = jax.jit(step)
    small, large = jitted(jnp.float32(0.001)), jitted(jnp.float32(0.1))
    assert jitted._cache_size() == 1
    np.testing.assert_allclose(np.asarray(large), 100 * np.asarray(small), rtol=1e-5)


def test_unknown_optimizer_is_an_error():
    with pytest.raises(ValueError, match="unknown optimizer"):
        _ours("lion")
