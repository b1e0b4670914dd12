"""Our optimizers (direction, then −lr scaling) against Optax's own, step by step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sweepbook.config import OptimizerConfig
from sweepbook.optim import (
    OPTIMIZERS,
    OptimizerHyper,
    OptimizerSpec,
    build_direction,
    scale_updates,
)

PARAMS = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5])}
GRADS = [
    {"w": jnp.array([0.5, -1.0, 0.25]), "b": jnp.array([0.1])},
    {"w": jnp.array([-0.1, 0.3, 0.2]), "b": jnp.array([-0.2])},
    {"w": jnp.array([0.7, 0.0, -0.4]), "b": jnp.array([0.3])},
]
LR = 0.05


def _hyper(**values: float) -> OptimizerHyper:
    defaults = dict.fromkeys(OptimizerHyper._fields, 0.0)
    defaults["weight_decay_all"] = 1.0  # Optax's optimizers decay every parameter
    defaults.update(values)
    return OptimizerHyper(**{k: jnp.float32(v) for k, v in defaults.items()})


def _run_reference(tx: optax.GradientTransformation) -> dict[str, np.ndarray]:
    params, state = PARAMS, tx.init(PARAMS)
    for grads in GRADS:
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return jax.tree.map(np.asarray, params)


def _run_ours(name: str, hyper: OptimizerHyper, **flags: bool) -> dict[str, np.ndarray]:
    tx = build_direction(name, hyper, **flags)
    params, state = PARAMS, tx.init(PARAMS)
    for grads in GRADS:
        direction, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, scale_updates(direction, jnp.float32(LR)))
    return jax.tree.map(np.asarray, params)


CASES = {
    "sgd": ("sgd", _hyper(), {}, optax.sgd(LR)),
    "momentum": ("sgd", _hyper(momentum=0.9), {}, optax.sgd(LR, momentum=0.9)),
    "nesterov": (
        "sgd",
        _hyper(momentum=0.9),
        {"nesterov": True},
        optax.sgd(LR, momentum=0.9, nesterov=True),
    ),
    "adagrad": (
        "adagrad",
        _hyper(eps=1e-7, initial_accumulator=0.1),
        {},
        optax.adagrad(LR, initial_accumulator_value=0.1, eps=1e-7),
    ),
    "rmsprop": ("rmsprop", _hyper(decay=0.9, eps=1e-8), {}, optax.rmsprop(LR, decay=0.9, eps=1e-8)),
    "rmsprop-momentum": (
        "rmsprop",
        _hyper(decay=0.9, eps=1e-8, momentum=0.5),
        {},
        optax.rmsprop(LR, decay=0.9, eps=1e-8, momentum=0.5),
    ),
    "rmsprop-centered": (
        "rmsprop",
        _hyper(decay=0.9, eps=1e-8),
        {"centered": True},
        optax.rmsprop(LR, decay=0.9, eps=1e-8, centered=True),
    ),
    "adam": ("adam", _hyper(b1=0.9, b2=0.999, eps=1e-8), {}, optax.adam(LR)),
    "adamw": (
        "adamw",
        _hyper(b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01),
        {},
        optax.adamw(LR, weight_decay=0.01),
    ),
    "sgd-clip-norm": (
        "sgd",
        _hyper(clip_norm=0.5),
        {"clip_norm": True},
        optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(LR)),
    ),
    "sgd-clip-value": (
        "sgd",
        _hyper(clip_value=0.2),
        {"clip_value": True},
        optax.chain(optax.clip(0.2), optax.sgd(LR)),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_optax(case):
    name, hyper, flags, reference = case
    ours, expected = _run_ours(name, hyper, **flags), _run_reference(reference)
    for key in PARAMS:
        np.testing.assert_allclose(ours[key], expected[key], rtol=1e-6, atol=1e-7)


def test_decoupled_weight_decay_shrinks_weights_without_gradient():
    zero = {"w": jnp.zeros(3), "b": jnp.zeros(1)}
    tx = build_direction("sgd", _hyper(weight_decay=0.1))
    direction, _ = tx.update(zero, tx.init(PARAMS), PARAMS)
    stepped = optax.apply_updates(PARAMS, scale_updates(direction, jnp.float32(1.0)))
    np.testing.assert_allclose(stepped["w"], 0.9 * PARAMS["w"], rtol=1e-6)


def test_numbers_are_traced_one_program_for_all_values():
    def step(momentum, lr):
        tx = build_direction("sgd", _hyper()._replace(momentum=momentum))
        direction, _ = tx.update(GRADS[0], tx.init(PARAMS), PARAMS)
        return scale_updates(direction, lr)["w"]

    jitted = jax.jit(step)
    small = jitted(jnp.float32(0.0), jnp.float32(0.001))
    large = jitted(jnp.float32(0.9), jnp.float32(0.1))
    assert jitted._cache_size() == 1
    np.testing.assert_allclose(np.asarray(large), 100 * np.asarray(small), rtol=1e-5)


def test_unknown_optimizer_is_an_error():
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_direction("lion", _hyper())


LAYER = {
    "dense": {"kernel": jnp.array([[1.0, -2.0]]), "bias": jnp.array([0.5, -0.5])},
    "norm": {"scale": jnp.array([2.0, 3.0]), "bias": jnp.array([0.25, 1.0])},
}


def _decayed(decay_all: float) -> dict:
    zero = jax.tree.map(jnp.zeros_like, LAYER)
    tx = build_direction("sgd", _hyper(weight_decay=0.1, weight_decay_all=decay_all))
    direction, _ = tx.update(zero, tx.init(LAYER), LAYER)
    return direction


def test_weight_decay_on_weights_only_spares_biases_and_norm_parameters():
    direction = _decayed(0.0)

    np.testing.assert_array_equal(direction["dense"]["kernel"], 0.1 * LAYER["dense"]["kernel"])
    for leaf in (direction["dense"]["bias"], direction["norm"]["scale"], direction["norm"]["bias"]):
        np.testing.assert_array_equal(leaf, 0.0)


def test_weight_decay_on_all_parameters_is_optax_to_the_bit():
    expected, _ = optax.add_decayed_weights(jnp.float32(0.1)).update(
        jax.tree.map(jnp.zeros_like, LAYER), optax.EmptyState(), LAYER
    )

    for ours, theirs in zip(jax.tree.leaves(_decayed(1.0)), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_the_weight_decay_mask_is_traced_one_program_for_both():
    jitted = jax.jit(lambda decay_all: _decayed_traced(decay_all))
    jitted(jnp.float32(0.0))
    jitted(jnp.float32(1.0))
    assert jitted._cache_size() == 1


def _decayed_traced(decay_all: jax.Array) -> dict:
    tx = build_direction("sgd", _hyper(weight_decay=0.1)._replace(weight_decay_all=decay_all))
    direction, _ = tx.update(jax.tree.map(jnp.zeros_like, LAYER), tx.init(LAYER), LAYER)
    return direction


def test_each_registered_optimizer_carries_its_defaults_and_nesterov_rule():
    assert OPTIMIZERS.names() == ("sgd", "adagrad", "rmsprop", "adam", "adamw")
    assert [name for name in OPTIMIZERS if OPTIMIZERS[name].takes_nesterov] == ["sgd"]
    assert dict(OPTIMIZERS["rmsprop"].defaults) == {"decay": 0.9, "eps": 1e-8}
    config = OptimizerConfig(name="adagrad", learning_rate=0.1)
    assert (config.eps, config.initial_accumulator) == (1e-7, 0.1)
    with pytest.raises(ValueError, match=r"only used with optimizer\.name = 'sgd'"):
        OptimizerConfig(name="adam", learning_rate=0.1, nesterov=True)


def test_a_registered_optimizer_is_built_between_clipping_and_weight_decay():
    """A new optimizer is one registration: here sign descent, sign(g), which with clipping
    by value and weight decay must give sign(clip(g)) + wd · params."""

    def sign(hyper, *, nesterov, centered):
        return [optax.scale_by_sign()]

    OPTIMIZERS.register("test_sign", OptimizerSpec(sign))
    try:
        hyper = _hyper(weight_decay=0.1, clip_value=0.2)
        tx = build_direction("test_sign", hyper, clip_value=True)
        direction, _ = tx.update(GRADS[0], tx.init(PARAMS), PARAMS)
        expected = jax.tree.map(
            lambda g, p: np.sign(np.clip(g, -0.2, 0.2)) + 0.1 * np.asarray(p), GRADS[0], PARAMS
        )
        for name in PARAMS:
            np.testing.assert_allclose(direction[name], expected[name], rtol=1e-6)
        assert OptimizerConfig(name="test_sign", learning_rate=0.1).name == "test_sign"
    finally:
        OPTIMIZERS.unregister("test_sign")
