"""Weight penalties and the max-norm constraint act on kernels only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweepbook import regularize

# Compiled once per parameter tree with the coefficients traced, as in the training step;
# eager dispatch would compile every primitive for every kernel shape.
weight_penalty = jax.jit(regularize.weight_penalty)
max_norm = jax.jit(regularize.max_norm)


def flax_like_params(seed: int = 0) -> dict[str, dict[str, jnp.ndarray]]:
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> jnp.ndarray:
        return jnp.asarray(rng.standard_normal(shape), dtype=jnp.float32)

    return {
        "conv_0": {"kernel": normal(3, 3, 2, 4), "bias": normal(4)},
        "dense_0": {"kernel": normal(6, 5), "bias": normal(5)},
        "norm_0": {"scale": normal(5), "bias": normal(5)},
        "dense_1": {"kernel": normal(5, 3), "bias": normal(3)},
    }


def kernels(params: dict[str, dict[str, jnp.ndarray]]) -> list[np.ndarray]:
    return [
        np.asarray(layer["kernel"], np.float64) for layer in params.values() if "kernel" in layer
    ]


def by_hand(params: dict[str, dict[str, jnp.ndarray]], l1: float, l2: float) -> float:
    return sum(l1 * np.abs(w).sum() + l2 * np.square(w).sum() for w in kernels(params))


@pytest.mark.parametrize(
    ("l1", "l2"), [(1e-3, 0.0), (0.0, 1e-2), (1e-3, 1e-2), (0.5, 2.0)], ids=str
)
def test_weight_penalty_matches_hand_computed_sum_over_kernels(l1, l2):
    params = flax_like_params()
    np.testing.assert_allclose(weight_penalty(params, l1, l2), by_hand(params, l1, l2), rtol=1e-5)


def test_elastic_net_is_the_sum_of_l1_and_l2_penalties():
    params = flax_like_params(1)
    both = weight_penalty(params, 0.3, 0.7)
    np.testing.assert_allclose(
        both, weight_penalty(params, 0.3, 0.0) + weight_penalty(params, 0.0, 0.7), rtol=1e-6
    )


def test_weight_penalty_is_zero_without_coefficients():
    assert float(weight_penalty(flax_like_params(), 0.0, 0.0)) == 0.0


def test_weight_penalty_ignores_biases_and_norm_scales():
    params = flax_like_params()
    inflated = {
        name: {key: (leaf if key == "kernel" else leaf + 100.0) for key, leaf in layer.items()}
        for name, layer in params.items()
    }
    np.testing.assert_allclose(
        weight_penalty(inflated, 0.1, 0.1), weight_penalty(params, 0.1, 0.1), rtol=1e-6
    )


def test_weight_penalty_without_kernels_is_zero():
    params = {"norm_0": {"scale": jnp.ones(3), "bias": jnp.ones(3)}}
    assert float(weight_penalty(params, 1.0, 1.0)) == 0.0


def column_norms(kernel: jnp.ndarray) -> np.ndarray:
    flat = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1])
    return np.linalg.norm(flat, axis=0)


@pytest.mark.parametrize("shape", [(6, 5), (3, 3, 2, 4)], ids=["dense", "conv"])
def test_max_norm_rescales_only_columns_above_the_limit(shape):
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal(shape)
    # Column norms 0.5, 0.99 (kept), 2, 4, 8 (rescaled to the limit 1).
    kernel /= column_norms(kernel)
    target = np.array([0.5, 0.99, 2.0, 4.0, 8.0][: shape[-1]])
    kernel = jnp.asarray(kernel * target, jnp.float32)
    bias = jnp.arange(shape[-1], dtype=jnp.float32) * 10.0

    out = max_norm({"layer": {"kernel": kernel, "bias": bias}}, 1.0)

    np.testing.assert_allclose(column_norms(out["layer"]["kernel"]), np.minimum(target, 1.0), 1e-5)
    kept = target <= 1.0
    np.testing.assert_array_equal(out["layer"]["kernel"][..., kept], kernel[..., kept])
    # Rescaled columns keep their direction.
    scaled = out["layer"]["kernel"][..., ~kept] * target[~kept]
    np.testing.assert_allclose(scaled, kernel[..., ~kept], rtol=1e-5)
    np.testing.assert_array_equal(out["layer"]["bias"], bias)


def test_max_norm_leaves_non_kernel_leaves_untouched():
    params = flax_like_params()
    out = max_norm(params, 1e-3)
    for name, layer in params.items():
        for key, leaf in layer.items():
            if key != "kernel":
                np.testing.assert_array_equal(out[name][key], leaf)
            else:
                assert column_norms(out[name][key]).max() <= 1e-3 * (1 + 1e-5)


def test_max_norm_keeps_zero_columns_finite():
    out = max_norm({"dense": {"kernel": jnp.zeros((4, 3))}}, 1.0)
    np.testing.assert_array_equal(out["dense"]["kernel"], np.zeros((4, 3)))


def test_penalty_and_constraint_trace_their_hyper_parameters_once():
    params = flax_like_params(2)
    traces: list[str] = []

    def penalty(tree, l1, l2):
        traces.append("penalty")
        return regularize.weight_penalty(tree, l1, l2)

    def constrain(tree, limit):
        traces.append("max_norm")
        return regularize.max_norm(tree, limit)

    penalty, constrain = jax.jit(penalty), jax.jit(constrain)
    for l1, l2 in [(0.1, 0.0), (0.0, 0.2), (0.1, 0.2)]:
        np.testing.assert_allclose(
            penalty(params, jnp.float32(l1), jnp.float32(l2)), by_hand(params, l1, l2), rtol=1e-5
        )
    for limit in [0.5, 2.0]:
        out = constrain(params, jnp.float32(limit))
        for before, after in zip(kernels(params), kernels(out), strict=True):
            expected = np.minimum(column_norms(before), limit)
            np.testing.assert_allclose(column_norms(after), expected, rtol=1e-5)
    assert traces == ["penalty", "max_norm"]
