"""Pruning masks, the Zhu & Gupta schedule, quantization and storage accounting."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sweepbook import compress

# Compiled once per tree and static choice, with sparsity and bits traced as in the training
# step; eager dispatch would compile every primitive for every kernel shape.
magnitude_masks = jax.jit(compress.magnitude_masks, static_argnames=("scope", "structure"))
quantize_dequantize = jax.jit(compress.quantize_dequantize, static_argnames="per_channel")
quantize_params = jax.jit(compress.quantize_params, static_argnames=("fmt", "per_channel"))
fake_quantize = jax.jit(compress.fake_quantize, static_argnames=("fmt", "per_channel"))
model_bytes = jax.jit(compress.model_bytes, static_argnames=("fmt", "per_channel", "masks_applied"))

SPARSITIES = [0.0, 0.1, 0.29, 0.53, 0.9, 1.0]  # 0.29 and 0.53 sit just below an integer count
SCOPES = ["layer", "global"]
BITS = list(range(2, 9))


def conv_net_params(seed: int = 0) -> dict[str, Any]:
    """Shaped like a Flax conv net: its classifier sits inside the MLP head."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> jnp.ndarray:
        return jnp.asarray(rng.standard_normal(shape), dtype=jnp.float32)

    return {
        "Conv_0": {"kernel": normal(3, 3, 2, 4), "bias": normal(4)},
        "BatchNorm_0": {"scale": normal(4), "bias": normal(4)},
        "Conv_1": {"kernel": normal(3, 3, 4, 6), "bias": normal(6)},
        "MLP_0": {
            "dense_0": {"kernel": normal(24, 10), "bias": normal(10)},
            "classifier": {"kernel": normal(10, 3), "bias": normal(3)},
        },
    }


def mlp_params(seed: int = 0) -> dict[str, Any]:
    """A small tree for checks that need only a couple of kernels (each compiles faster)."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> jnp.ndarray:
        return jnp.asarray(rng.standard_normal(shape), dtype=jnp.float32)

    return {
        "dense_0": {"kernel": normal(6, 5), "bias": normal(5)},
        "norm_0": {"scale": normal(5), "bias": normal(5)},
        "classifier": {"kernel": normal(5, 3), "bias": normal(3)},
    }


def leaves_with_names(tree: Any) -> list[tuple[str, np.ndarray]]:
    return [
        (jax.tree_util.keystr(path), np.asarray(leaf))
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    ]


def is_kernel(name: str) -> bool:
    return name.endswith("['kernel']")


def prune_count(sparsity: float, n: int) -> int:
    """floor(sparsity · n) for the sparsity as written in decimal."""
    return math.floor(Fraction(str(sparsity)) * n)


def pruned_by_reference(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean: the floor(s·n) smallest scores, ties to the lower index."""
    pruned = np.zeros(scores.size, bool)
    pruned[np.argsort(scores, kind="stable")[: prune_count(sparsity, scores.size)]] = True
    return pruned


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("scope", SCOPES)
def test_unstructured_masks_prune_the_smallest_magnitudes_exactly(scope, sparsity):
    params = conv_net_params()
    masks = leaves_with_names(
        magnitude_masks(params, sparsity, scope=scope, structure="unstructured")
    )
    kernels = [(name, w) for name, w in leaves_with_names(params) if is_kernel(name)]
    kernel_masks = [m for name, m in masks if is_kernel(name)]
    if scope == "layer":
        for (_, w), mask in zip(kernels, kernel_masks, strict=True):
            assert int((mask == 0).sum()) == prune_count(sparsity, w.size)
            np.testing.assert_array_equal(
                mask.ravel() == 0, pruned_by_reference(np.abs(w).ravel(), sparsity)
            )
    else:
        pooled = np.concatenate([np.abs(w).ravel() for _, w in kernels])
        pruned = np.concatenate([m.ravel() == 0 for m in kernel_masks])
        assert int(pruned.sum()) == prune_count(sparsity, pooled.size)
        np.testing.assert_array_equal(pruned, pruned_by_reference(pooled, sparsity))


@pytest.mark.parametrize(("sparsity", "shape"), [(0.53, (10, 10)), (0.42, (15, 10))], ids=str)
def test_decimal_sparsity_prunes_the_count_as_written(sparsity, shape):
    # In float32 both products land just below the integer (0.53 · 100 = 52.999996).
    assert np.floor(np.float32(sparsity) * np.float32(math.prod(shape))) < prune_count(
        sparsity, math.prod(shape)
    )
    params = {"dense_0": {"kernel": jnp.asarray(np.random.default_rng(7).standard_normal(shape))}}
    for scope in SCOPES:
        mask = magnitude_masks(params, sparsity, scope=scope, structure="unstructured")
        assert int((mask["dense_0"]["kernel"] == 0).sum()) == prune_count(
            sparsity, mask["dense_0"]["kernel"].size
        )


def test_unstructured_ties_are_broken_by_index():
    params = {"dense_0": {"kernel": jnp.ones((4, 2)), "bias": jnp.zeros(2)}}
    mask = magnitude_masks(params, 0.5, scope="layer", structure="unstructured")
    np.testing.assert_array_equal(mask["dense_0"]["kernel"].ravel(), [0, 0, 0, 0, 1, 1, 1, 1])


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("scope", SCOPES)
def test_neuron_masks_remove_whole_units_and_never_the_classifier(scope, sparsity):
    params = conv_net_params(1)
    masks = dict(
        leaves_with_names(magnitude_masks(params, sparsity, scope=scope, structure="neurons"))
    )
    hidden = [
        (n, w) for n, w in leaves_with_names(params) if is_kernel(n) and "classifier" not in n
    ]
    np.testing.assert_array_equal(masks["['MLP_0']['classifier']['kernel']"], 1.0)

    units = []
    for name, w in hidden:
        mask = masks[name].reshape(-1, w.shape[-1])
        assert (mask == mask[:1]).all(), f"{name}: a unit is only partly pruned"
        units.append(mask[0] == 0)
    if scope == "layer":
        for (_, w), pruned in zip(hidden, units, strict=True):
            norms = np.linalg.norm(w.reshape(-1, w.shape[-1]), axis=0)
            np.testing.assert_array_equal(pruned, pruned_by_reference(norms, sparsity))
    else:
        scores = np.concatenate(
            [
                np.linalg.norm(w.reshape(-1, w.shape[-1]), axis=0) / np.sqrt(w.size // w.shape[-1])
                for _, w in hidden
            ]
        )
        pruned = np.concatenate(units)
        assert int(pruned.sum()) == prune_count(sparsity, scores.size)
        np.testing.assert_array_equal(pruned, pruned_by_reference(scores, sparsity))


@pytest.mark.parametrize("structure", ["unstructured", "neurons"])
@pytest.mark.parametrize("scope", SCOPES)
def test_masks_are_binary_float32_and_ones_off_kernels(scope, structure):
    params = conv_net_params(2)
    masks = magnitude_masks(params, 0.5, scope=scope, structure=structure)
    assert jax.tree_util.tree_structure(masks) == jax.tree_util.tree_structure(params)
    named = dict(leaves_with_names(masks))
    for name, mask in named.items():
        assert mask.dtype == np.float32
        assert set(np.unique(mask)) <= {0.0, 1.0}
        if is_kernel(name):
            continue
        kernel = name.replace("['bias']", "['kernel']")
        pruned_unit_bias = name.endswith("['bias']") and kernel in named
        if structure == "neurons" and pruned_unit_bias and "classifier" not in name:
            # A pruned unit loses its bias too: the bias mask is the kernel's unit mask.
            unit_mask = named[kernel].reshape(-1, named[kernel].shape[-1])[0]
            np.testing.assert_array_equal(mask, unit_mask, err_msg=name)
        else:
            np.testing.assert_array_equal(mask, 1.0, err_msg=name)


@pytest.mark.parametrize("structure", ["unstructured", "neurons"])
@pytest.mark.parametrize("scope", SCOPES)
def test_masks_compile_once_and_vmap_over_sparsity(scope, structure):
    params = mlp_params(3)
    masks = jax.jit(lambda p, s: compress.magnitude_masks(p, s, scope=scope, structure=structure))
    first, second = masks(params, jnp.float32(0.2)), masks(params, jnp.float32(0.7))
    assert masks._cache_size() == 1
    assert sum(float((m == 0).sum()) for m in jax.tree_util.tree_leaves(second)) > sum(
        float((m == 0).sum()) for m in jax.tree_util.tree_leaves(first)
    )
    batched = jax.vmap(masks, in_axes=(None, 0))(params, jnp.array([0.2, 0.7], jnp.float32))
    for one, stacked in zip(
        jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(batched), strict=True
    ):
        np.testing.assert_array_equal(one, stacked[0])
    for one, stacked in zip(
        jax.tree_util.tree_leaves(second), jax.tree_util.tree_leaves(batched), strict=True
    ):
        np.testing.assert_array_equal(one, stacked[1])


def mlp_loss(params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    hidden = jax.nn.relu(x @ params["dense_0"]["kernel"] + params["dense_0"]["bias"])
    logits = hidden @ params["classifier"]["kernel"] + params["classifier"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


ADAM = optax.adam(1e-2)


@jax.jit
def masked_adam_step(
    params: Any, opt_state: Any, masks: Any, x: jax.Array, y: jax.Array
) -> tuple[Any, Any, Any]:
    """One Adam step, returned before and after re-applying the masks."""
    grads = jax.grad(mlp_loss)(params, x, y)
    updates, opt_state = ADAM.update(grads, opt_state, params)
    stepped = optax.apply_updates(params, updates)
    return stepped, compress.apply_masks(stepped, masks), opt_state


@pytest.mark.parametrize("structure", ["unstructured", "neurons"])
def test_pruned_weights_stay_exactly_zero_through_adam(structure):
    rng = np.random.default_rng(4)
    params = {
        "dense_0": {
            "kernel": jnp.asarray(rng.standard_normal((8, 16)), jnp.float32),
            "bias": jnp.full(16, 0.1),
        },
        "classifier": {
            "kernel": jnp.asarray(rng.standard_normal((16, 3)), jnp.float32),
            "bias": jnp.zeros(3),
        },
    }
    x = jnp.asarray(rng.standard_normal((32, 8)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 32))
    masks = magnitude_masks(params, 0.5, scope="global", structure=structure)
    params = compress.apply_masks(params, masks)
    opt_state = ADAM.init(params)
    for _ in range(5):
        stepped, params, opt_state = masked_adam_step(params, opt_state, masks, x, y)

    pruned = masks["dense_0"]["kernel"] == 0
    if structure == "unstructured":
        # Without the mask the optimizer revives pruned weights; with it they are exactly zero.
        # (A pruned neuron, bias included, gets no gradient at all.)
        assert (stepped["dense_0"]["kernel"][pruned] != 0).any()
    for (name, w), (_, mask) in zip(
        leaves_with_names(params), leaves_with_names(masks), strict=True
    ):
        assert (w[mask == 0] == 0.0).all(), name
        assert (w[mask == 1] != 0.0).all() or not is_kernel(name), name


def zhu_gupta_reference(epoch: int, final: float, start: int, end: int) -> float:
    if epoch < start:
        return 0.0
    if epoch >= end - 1:
        return final
    return final + (0.0 - final) * (1.0 - (epoch - start + 1) / (end - start)) ** 3


@pytest.mark.parametrize(
    ("final", "start", "end"), [(0.9, 2, 8), (0.5, 0, 5), (0.8, 3, 4), (0.95, 0, 1)], ids=str
)
def test_zhu_gupta_matches_reference_at_every_epoch(final, start, end):
    schedule = jax.jit(lambda e, f: compress.zhu_gupta_sparsity(e, final=f, start=start, end=end))
    epochs = np.arange(end + 4)
    got = np.asarray(jax.vmap(schedule, in_axes=(0, None))(jnp.asarray(epochs), jnp.float32(final)))
    want = [zhu_gupta_reference(int(e), final, start, end) for e in epochs]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert got[end - 1] == np.float32(final)
    if start > 0:
        assert got[start - 1] == 0.0
    assert got[start] > 0.0


@pytest.mark.parametrize(("start", "end"), [(3, 3), (5, 2)])
def test_zhu_gupta_rejects_an_empty_ramp(start, end):
    with pytest.raises(ValueError, match="end > start"):
        compress.zhu_gupta_sparsity(jnp.int32(0), final=jnp.float32(0.5), start=start, end=end)


def signal(seed: int, shape: tuple[int, ...] = (5, 3, 7)) -> jnp.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.uniform(0.1, 10.0, shape[-1])  # channels differ in scale
    x.reshape(-1)[::5] = 0.0
    return jnp.asarray(x, jnp.float32)


def scales(x: np.ndarray, bits: int, per_channel: bool) -> np.ndarray:
    axes = tuple(range(x.ndim - 1)) if per_channel else None
    return np.abs(x).max(axis=axes, keepdims=True) / (2 ** (bits - 1) - 1)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bits", BITS)
def test_quantize_dequantize_error_is_at_most_half_a_step(bits, per_channel):
    x = signal(bits)
    error = np.abs(
        np.asarray(quantize_dequantize(x, bits, per_channel=per_channel)) - np.asarray(x)
    )
    assert (error <= scales(np.asarray(x), bits, per_channel) * (0.5 + 1e-6)).all()


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bits", BITS)
def test_quantize_dequantize_is_idempotent_and_uses_2l_plus_1_levels(bits, per_channel):
    x = signal(10 + bits)
    once = quantize_dequantize(x, bits, per_channel=per_channel)
    np.testing.assert_array_equal(quantize_dequantize(once, bits, per_channel=per_channel), once)
    channels = np.asarray(once).reshape(-1, x.shape[-1])
    for channel in channels.T:
        assert np.unique(channel).size <= 2 * (2 ** (bits - 1) - 1) + 1
    np.testing.assert_array_equal(np.asarray(once)[np.asarray(x) == 0], 0.0)


@pytest.mark.parametrize("per_channel", [False, True])
def test_quantize_dequantize_of_zeros_is_zeros(per_channel):
    np.testing.assert_array_equal(
        quantize_dequantize(jnp.zeros((4, 3)), 8, per_channel=per_channel), 0.0
    )
    x = signal(20, (6, 4)).at[:, 1].set(0.0)
    out = np.asarray(quantize_dequantize(x, 4, per_channel=per_channel))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, 1], 0.0)


def test_quantize_dequantize_takes_traced_int_or_float_bits_and_vmaps():
    x = signal(21)
    qdq = jax.jit(lambda v, b: compress.quantize_dequantize(v, b, per_channel=True))
    four, eight = qdq(x, jnp.int32(4)), qdq(x, jnp.int32(8))
    assert qdq._cache_size() == 1
    np.testing.assert_array_equal(qdq(x, jnp.float32(4.0)), four)
    batched = jax.vmap(qdq, in_axes=(None, 0))(x, jnp.array([4, 8], jnp.int32))
    # XLA turns a division by a broadcast scalar into a multiply by its reciprocal, differently
    # in the batched program, so the scales may differ by an ulp (the integer codes do not).
    np.testing.assert_array_max_ulp(batched[0], four, maxulp=1)
    np.testing.assert_array_max_ulp(batched[1], eight, maxulp=1)


@pytest.mark.parametrize(("fmt", "dtype"), [("fp16", jnp.float16), ("bf16", jnp.bfloat16)])
def test_cast_dequantize_round_trips_through_the_narrow_dtype(fmt, dtype):
    x = signal(22) * 1e-3 + 1.0  # digits beyond both formats' mantissas
    out = compress.cast_dequantize(x, fmt)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, x.astype(dtype).astype(jnp.float32))
    assert not np.array_equal(out, x)


@pytest.mark.parametrize(
    ("fmt", "per_channel"),
    [("none", False), ("int", False), ("int", True), ("fp16", False), ("bf16", False)],
)
def test_quantize_params_changes_kernels_only(fmt, per_channel):
    params = mlp_params(5)
    quantized = quantize_params(params, fmt=fmt, bits=jnp.int32(3), per_channel=per_channel)
    for (name, before), (_, after) in zip(
        leaves_with_names(params), leaves_with_names(quantized), strict=True
    ):
        assert after.dtype == np.float32
        if not is_kernel(name) or fmt == "none":
            np.testing.assert_array_equal(after, before, err_msg=name)
        elif fmt == "int":
            np.testing.assert_array_equal(
                after, quantize_dequantize(before, 3, per_channel=per_channel), err_msg=name
            )
        else:
            np.testing.assert_array_equal(
                after, compress.cast_dequantize(before, fmt), err_msg=name
            )


@pytest.mark.parametrize(
    ("fmt", "per_channel"), [("int", False), ("int", True), ("fp16", False), ("bf16", False)]
)
def test_fake_quantize_forward_is_quantized_and_gradient_is_straight_through(fmt, per_channel):
    params = mlp_params(6)
    bits = jnp.int32(3)
    forward = fake_quantize(params, fmt=fmt, bits=bits, per_channel=per_channel)
    quantized = quantize_params(params, fmt=fmt, bits=bits, per_channel=per_channel)
    for (name, got), (_, want) in zip(
        leaves_with_names(forward), leaves_with_names(quantized), strict=True
    ):
        np.testing.assert_array_equal(got, want, err_msg=name)
    weights = jax.tree_util.tree_map(
        lambda leaf: jnp.linspace(-2.0, 3.0, leaf.size).reshape(leaf.shape), params
    )

    def weighted_sum(p):
        quantized = compress.fake_quantize(p, fmt=fmt, bits=bits, per_channel=per_channel)
        products = jax.tree_util.tree_map(lambda q, c: jnp.sum(q * c), quantized, weights)
        return sum(jax.tree_util.tree_leaves(products))

    grads = jax.jit(jax.grad(weighted_sum))(params)
    for grad, weight in zip(
        jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(weights), strict=True
    ):
        np.testing.assert_array_equal(grad, weight)


def with_zeros(shape: tuple[int, int], zeros: int) -> jnp.ndarray:
    values = np.arange(1, math.prod(shape) + 1, dtype=np.float32)
    values[:zeros] = 0.0
    return jnp.asarray(values.reshape(shape))


def small_model(zeros_0: int = 0, zeros_1: int = 0) -> dict[str, Any]:
    """40 + 8 kernel weights, 4 + 2 biases (24 bytes in float32)."""
    return {
        "dense_0": {"kernel": with_zeros((10, 4), zeros_0), "bias": jnp.ones(4)},
        "classifier": {"kernel": with_zeros((4, 2), zeros_1), "bias": jnp.ones(2)},
    }


@pytest.mark.parametrize(
    ("params", "fmt", "bits", "per_channel", "masks_applied", "expected"),
    [
        # 24 bias bytes + 48 weights x 4 bytes
        (small_model(), "none", 32, False, False, 24 + 48 * 4),
        # 48 x 1 byte + one float32 scale per kernel
        (small_model(), "int", 8, False, False, 24 + 48 + 2 * 4),
        # 48 x half a byte + one float32 scale per output channel (4 + 2)
        (small_model(), "int", 4, True, False, 24 + 24 + 6 * 4),
        (small_model(), "fp16", 8, False, False, 24 + 48 * 2),
        # 90% pruned (36/40, 7/8): bitmap + survivors = (5 + 4) + (1 + 1) beats 40 + 8
        (small_model(36, 7), "int", 8, False, True, 24 + 9 + 2 + 2 * 4),
        # 10% pruned (4/40, 0/8): dense 40 + 8 beats bitmap + survivors (5 + 36) + (1 + 8)
        (small_model(4, 0), "int", 8, False, True, 24 + 40 + 8 + 2 * 4),
        # zeros stored densely when the model is not marked as pruned
        (small_model(36, 7), "int", 8, False, False, 24 + 48 + 2 * 4),
    ],
    ids=[
        "fp32",
        "int8",
        "int4-per-channel",
        "fp16",
        "pruned-90-int8",
        "pruned-10-int8",
        "unmasked",
    ],
)
def test_model_bytes_matches_hand_count(params, fmt, bits, per_channel, masks_applied, expected):
    got = model_bytes(
        params, fmt=fmt, bits=bits, per_channel=per_channel, masks_applied=masks_applied
    )
    assert got.dtype == jnp.float32
    assert float(got) == expected


def test_model_bytes_traces_bits_and_vmaps():
    params = small_model(36, 7)
    size = jax.jit(
        lambda p, b: compress.model_bytes(
            p, fmt="int", bits=b, per_channel=False, masks_applied=True
        )
    )
    assert float(size(params, jnp.int32(8))) == 24 + 9 + 2 + 8
    assert float(size(params, jnp.int32(4))) == 24 + 7 + 1.5 + 8
    assert size._cache_size() == 1
    batched = jax.vmap(size, in_axes=(None, 0))(params, jnp.array([4, 8], jnp.int32))
    np.testing.assert_array_equal(batched, [24 + 7 + 1.5 + 8, 24 + 9 + 2 + 8])


@pytest.mark.parametrize(
    "call",
    [
        lambda p: compress.magnitude_masks(p, 0.5, scope="model", structure="unstructured"),
        lambda p: compress.magnitude_masks(p, 0.5, scope="layer", structure="channels"),
        lambda p: compress.quantize_params(p, fmt="int8", bits=8, per_channel=False),
        lambda p: compress.fake_quantize(p, fmt="fp8", bits=8, per_channel=False),
        lambda p: compress.model_bytes(
            p, fmt="float", bits=8, per_channel=False, masks_applied=False
        ),
        lambda p: compress.cast_dequantize(p["dense_0"]["kernel"], "fp8"),
    ],
    ids=["scope", "structure", "quantize-fmt", "fake-fmt", "bytes-fmt", "cast-dtype"],
)
def test_unknown_choices_are_rejected_with_the_allowed_values(call):
    with pytest.raises(ValueError, match="must be one of"):
        call(small_model())
