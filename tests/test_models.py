from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweepbook.config import ModelConfig
from sweepbook.models import (
    DENSE_NUMERICS,
    FAST_CPU_NUMERICS,
    LEGACY_NUMERICS,
    MODELS,
    PATCHES_NUMERICS,
    Numerics,
    _estimated_multiply_adds,
    build_model,
    build_network,
    choose_numerics,
    conv_as_patches,
    conv_as_slices,
    dropout,
    max_pool_2x2,
    multiply_adds,
    numerics_before_formulations,
    numerics_before_slices,
)
from sweepbook.registry import UnknownName

NO_DROPOUT = {"dropout_rate": jnp.float32(0.0), "dropout_key": None}


def _count(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def _model(kind: str, **fields):
    config = ModelConfig(kind=kind, activation=fields.pop("activation", "relu"), **fields)
    return build_model(config, num_classes=10)


def _init(model, shape):
    x = jnp.zeros(shape)
    variables = model.init(jax.random.key(0), x, train=False, **NO_DROPOUT)
    logits = model.apply(variables, x, train=False, **NO_DROPOUT)
    return variables, logits


def test_mlp_widths_and_classes_come_from_config():
    variables, logits = _init(_model("mlp", widths=[300, 100], activation="tanh"), (5, 28, 28, 1))
    assert logits.shape == (5, 10)
    # LeNet-300-100: 266,610 weights and biases
    assert _count(variables["params"]) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10


def test_lenet5_has_the_classic_61706_parameters_on_28x28():
    variables, logits = _init(_model("lenet5"), (2, 28, 28, 1))
    assert logits.shape == (2, 10)
    assert _count(variables["params"]) == 61_706


def test_small_cnn_has_about_100k_parameters():
    variables, logits = _init(_model("cnn"), (2, 28, 28, 1))
    assert logits.shape == (2, 10)
    assert _count(variables["params"]) == 119_530


@pytest.mark.parametrize("kind", ["lenet5", "cnn"])
def test_conv_nets_run_on_8x8_digits(kind):
    _, logits = _init(_model(kind), (3, 8, 8, 1))
    assert logits.shape == (3, 10)
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_batch_norm_trains_on_batch_statistics_and_evaluates_on_running_averages():
    model = _model("mlp", widths=[8], batch_norm=True)
    x = jax.random.normal(jax.random.key(1), (16, 4)) * 3.0 + 5.0
    variables = model.init(jax.random.key(0), x, train=False, **NO_DROPOUT)
    assert "batch_stats" in variables
    _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"], **NO_DROPOUT)
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(updated["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    # Evaluation reads the running averages and changes nothing.
    first = model.apply(variables, x, train=False, **NO_DROPOUT)
    second = model.apply(variables, x[:3], train=False, **NO_DROPOUT)
    np.testing.assert_allclose(first[:3], second, rtol=1e-5)


def test_batch_norm_ignores_masked_padding():
    model = _model("mlp", widths=[8], batch_norm=True)
    x = jax.random.normal(jax.random.key(1), (6, 4))
    variables = model.init(jax.random.key(0), x, train=False, **NO_DROPOUT)
    mask = jnp.array([True, True, True, True, False, False])
    garbage = x.at[4:].set(1e3)
    out_clean, _ = model.apply(
        variables, x, train=True, mask=mask, mutable=["batch_stats"], **NO_DROPOUT
    )
    out_padded, _ = model.apply(
        variables, garbage, train=True, mask=mask, mutable=["batch_stats"], **NO_DROPOUT
    )
    np.testing.assert_allclose(out_clean[:4], out_padded[:4], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("init", "fan_scale"), [("he_normal", 2.0), ("lecun_normal", 1.0)])
def test_initializer_comes_from_config(init, fan_scale):
    variables, _ = _init(_model("mlp", widths=[512], init=init), (2, 32, 32, 1))
    kernel = np.asarray(variables["params"]["dense_0"]["kernel"])
    # Variance-scaling initializers: Var(w) = scale / fan_in, fan_in = 1024 here.
    assert kernel.var() == pytest.approx(fan_scale / 1024, rel=0.05)


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


# --- numerics: formulations of convolution and pooling ----------------------------------------


def _legacy_reference(x, variables, kind):
    """The conv net as it was written before formulations existed (nn.Conv, nn.max_pool)."""

    class Reference(nn.Module):
        @nn.compact
        def __call__(self, x):
            convs, kernel = ((6, 16), 5) if kind == "lenet5" else ((32, 64), 3)
            for layer, features in enumerate(convs):
                valid = kind == "lenet5" and layer == 1 and x.shape[1] >= kernel
                x = nn.Conv(features, (kernel, kernel), padding="VALID" if valid else "SAME")(x)
                x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2), padding="SAME")
            x = x.reshape(x.shape[0], -1)
            for layer, width in enumerate((120, 84) if kind == "lenet5" else (32,)):
                x = nn.relu(nn.Dense(width, name=f"dense_{layer}")(x))
            return nn.Dense(10, name="classifier")(x)

    params = {**variables["params"], **variables["params"].pop("MLP_0")}
    return Reference().apply({"params": params}, x)


@pytest.mark.parametrize("kind", ["lenet5", "cnn"])
def test_the_legacy_formulation_is_the_program_conv_nets_were_trained_with(kind):
    """Stores without a numerics column replay in the legacy formulation: it must compile to
    exactly the program of the code before formulations (same jaxpr, same bits)."""
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    model = build_model(ModelConfig(kind=kind, activation="relu"), 10, LEGACY_NUMERICS.name)
    variables = model.init(jax.random.key(0), x, train=False, **NO_DROPOUT)

    def ours(x):
        return model.apply(variables, x, train=False, **NO_DROPOUT)

    def reference(x):
        return _legacy_reference(x, jax.tree.map(lambda a: a, dict(variables)), kind)

    ops = [str(eqn.primitive) for eqn in jax.make_jaxpr(ours)(x).jaxpr.eqns]
    assert ops == [str(eqn.primitive) for eqn in jax.make_jaxpr(reference)(x).jaxpr.eqns]
    assert "conv_general_dilated" in ops and "reduce_window_max" in ops
    assert np.array_equal(np.asarray(ours(x)), np.asarray(reference(x)))


@pytest.mark.parametrize("formulation", [PATCHES_NUMERICS, FAST_CPU_NUMERICS])
@pytest.mark.parametrize("kind", ["lenet5", "cnn"])
@pytest.mark.parametrize("size", [28, 8])
def test_fast_formulations_agree_with_legacy_up_to_rounding(kind, size, formulation):
    config = ModelConfig(kind=kind, activation="relu")
    legacy = build_model(config, 10, LEGACY_NUMERICS.name)
    fast = build_model(config, 10, formulation.name)
    x = jax.random.normal(jax.random.key(1), (6, size, size, 1))
    y = jnp.arange(6) % 10
    variables = legacy.init(jax.random.key(0), x, train=False, **NO_DROPOUT)
    # Same parameter names and shapes: a formulation is not an architecture.
    assert jax.tree.structure(variables) == jax.tree.structure(
        fast.init(jax.random.key(0), x, train=False, **NO_DROPOUT)
    )

    def loss(model, params):
        logits = model.apply({"params": params}, x, train=True, **NO_DROPOUT)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(6), y])

    for a, b in zip(
        jax.tree.leaves(jax.grad(functools.partial(loss, legacy))(variables["params"])),
        jax.tree.leaves(jax.grad(functools.partial(loss, fast))(variables["params"])),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Up to rounding: the last bits of float32 differ with the summation order (2e-7 seen).
    np.testing.assert_allclose(
        loss(legacy, variables["params"]), loss(fast, variables["params"]), rtol=1e-6
    )
    fast_ops = str(jax.make_jaxpr(functools.partial(loss, fast))(variables["params"]))
    assert "reduce_window" not in fast_ops
    if formulation.conv == "patches":  # the patches are a convolution, ungrouped per run
        assert "feature_group_count=1" in fast_ops
    else:  # slices: no convolution at all, forward or backward
        gradient = jax.make_jaxpr(jax.grad(functools.partial(loss, fast)))(variables["params"])
        assert "conv_general_dilated" not in str(gradient)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_conv_as_patches_computes_the_convolution(padding):
    x = jax.random.normal(jax.random.key(0), (3, 9, 10, 4))
    kernel = jax.random.normal(jax.random.key(1), (5, 3, 4, 7))
    expected = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    np.testing.assert_allclose(
        conv_as_patches(x, kernel, (1, 1), padding), expected, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("padding", ["SAME", "VALID", ((2, 1), (0, 3))])
@pytest.mark.parametrize("strides", [(1, 1), (2, 3)])
def test_conv_as_slices_computes_the_convolution(padding, strides):
    x = jax.random.normal(jax.random.key(0), (3, 9, 10, 4))
    kernel = jax.random.normal(jax.random.key(1), (5, 3, 4, 7))
    expected = jax.lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    computed = conv_as_slices(x, kernel, strides, padding)
    assert computed.shape == expected.shape
    np.testing.assert_allclose(computed, expected, rtol=1e-5, atol=1e-5)


def test_conv_as_slices_refuses_what_it_does_not_compute():
    x, kernel = jnp.ones((1, 6, 6, 2)), jnp.ones((3, 3, 2, 4))
    with pytest.raises(ValueError, match="ungrouped"):
        conv_as_slices(x, kernel, (1, 1), "SAME", feature_group_count=2)
    with pytest.raises(ValueError, match="undilated"):
        conv_as_slices(x, kernel, (1, 1), "SAME", rhs_dilation=(2, 2))


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 5, 3), (1, 1, 1, 2)])
def test_reshape_pooling_equals_reduce_window_on_even_and_odd_sizes(shape):
    x = jax.random.normal(jax.random.key(0), shape)
    expected = max_pool_2x2(x, LEGACY_NUMERICS)
    assert np.array_equal(np.asarray(max_pool_2x2(x, FAST_CPU_NUMERICS)), np.asarray(expected))


def test_numerics_are_chosen_from_the_backend_alone():
    assert choose_numerics("mlp", "cpu") == choose_numerics("mlp", "gpu") == DENSE_NUMERICS
    assert choose_numerics("lenet5", "cpu") == "conv=slices,pool=reshape"
    assert choose_numerics("cnn", "cpu") == FAST_CPU_NUMERICS.name
    assert choose_numerics("lenet5", "gpu") == LEGACY_NUMERICS.name
    assert Numerics.parse("conv=slices,pool=reshape") == FAST_CPU_NUMERICS
    # Runs stored in the formulations of earlier versions still build and replay.
    assert Numerics.parse("conv=patches,pool=reshape") == PATCHES_NUMERICS
    assert numerics_before_slices("lenet5", "cpu") == PATCHES_NUMERICS.name
    assert numerics_before_slices("lenet5", "gpu") == LEGACY_NUMERICS.name
    assert numerics_before_slices("mlp", "cpu") == DENSE_NUMERICS
    with pytest.raises(ValueError, match="unknown numerics 'conv=winograd"):
        Numerics.parse("conv=winograd,pool=reshape")


def test_the_built_in_kinds_are_registered_with_their_widths_rule_and_formulations():
    assert MODELS.names() == ("mlp", "lenet5", "cnn")
    assert {kind: MODELS[kind].widths for kind in MODELS} == {
        "mlp": "required",
        "lenet5": "forbidden",
        "cnn": "forbidden",
    }
    assert [kind for kind in MODELS if MODELS[kind].convolutional] == ["lenet5", "cnn"]
    assert numerics_before_formulations("mlp") == DENSE_NUMERICS
    assert numerics_before_formulations("cnn") == LEGACY_NUMERICS.name


@pytest.mark.parametrize(("kind", "widths"), [("mlp", [32, 16]), ("lenet5", []), ("cnn", [])])
def test_counted_multiply_adds_agree_with_xla_on_the_layers(kind, widths):
    """The built-ins count their own multiply-adds; XLA's count of the same forward pass, the
    estimate for a model that does not, is close: it adds biases and activations, and leaves
    out the taps of a SAME convolution that fall on its zero padding (7% of the small CNN's)."""
    config = ModelConfig(kind=kind, widths=widths)
    counted = multiply_adds(config, (28, 28, 1), 10)
    estimated = _estimated_multiply_adds(build_network(config, 10), (28, 28, 1), ())
    assert 0.9 * counted <= estimated <= 1.05 * counted


@pytest.mark.parametrize(("kind", "widths"), [("mlp", []), ("lenet5", [8]), ("cnn", [8])])
def test_widths_are_checked_against_the_registered_kind(kind, widths):
    with pytest.raises(ValueError, match="widths"):
        ModelConfig(kind=kind, widths=widths)


def test_an_unknown_kind_is_refused_with_a_hint_not_built_as_a_cnn():
    with pytest.raises(ValueError, match=r"unknown model 'lenet'.*did you mean 'lenet5'\?"):
        ModelConfig(kind="lenet")
    config = ModelConfig.model_construct(kind="lenet", widths=[])  # past validation
    with pytest.raises(UnknownName, match="unknown model 'lenet'"):
        build_model(config, 10)
