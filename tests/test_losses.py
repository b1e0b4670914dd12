"""Training losses: cross-entropy with label smoothing, focal loss, and the reported NLL."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sweepbook import losses
from sweepbook.config import LossConfig

# Compiled once per shape, with the hyper-parameters traced as in the training step; eager
# dispatch would compile every primitive anew and make this file several times slower.
cross_entropy = jax.jit(losses.cross_entropy)
focal = jax.jit(losses.focal)
negative_log_likelihood = jax.jit(losses.negative_log_likelihood)

NUM_CLASSES = 5


def batch(seed: int = 0, size: int = 16, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((size, NUM_CLASSES))).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size).astype(np.int32)
    return logits, labels


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def reference_targets(labels: np.ndarray, smoothing: float) -> np.ndarray:
    onehot = np.eye(NUM_CLASSES)[labels]
    return (1.0 - smoothing) * onehot + smoothing / NUM_CLASSES


def reference_focal(
    logits: np.ndarray, labels: np.ndarray, smoothing: float, gamma: float
) -> np.ndarray:
    log_p = log_softmax(logits)
    weights = (1.0 - np.exp(log_p)) ** gamma
    return -(reference_targets(labels, smoothing) * weights * log_p).sum(axis=-1)


def test_cross_entropy_without_smoothing_is_optax_integer_label_cross_entropy():
    logits, labels = batch()
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(cross_entropy(logits, labels, 0.0), expected, rtol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.05, 0.1, 0.3, 0.9])
def test_cross_entropy_with_smoothing_matches_numpy_reference(smoothing):
    logits, labels = batch(seed=1)
    expected = -(reference_targets(labels, smoothing) * log_softmax(logits)).sum(axis=-1)
    np.testing.assert_allclose(cross_entropy(logits, labels, smoothing), expected, rtol=1e-5)


def test_smoothing_changes_the_loss():
    logits, labels = batch(seed=2)
    assert not np.allclose(cross_entropy(logits, labels, 0.0), cross_entropy(logits, labels, 0.1))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_with_gamma_zero_is_cross_entropy(smoothing):
    logits, labels = batch(seed=3)
    np.testing.assert_allclose(
        focal(logits, labels, smoothing, 0.0), cross_entropy(logits, labels, smoothing), rtol=1e-5
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_focal_matches_numpy_reference(gamma, smoothing):
    logits, labels = batch(seed=4)
    expected = reference_focal(logits, labels, smoothing, gamma)
    np.testing.assert_allclose(
        focal(logits, labels, smoothing, gamma), expected, rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_down_weights_confident_correct_examples(gamma):
    # Row 0: the label has high probability; row 1: the same label, low probability.
    logits = jnp.array([[4.0, 0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0, 0.0]])
    labels = jnp.array([0, 0])
    ratio = focal(logits, labels, 0.0, gamma) / cross_entropy(logits, labels, 0.0)
    assert ratio[0] < ratio[1] < 1.0


@pytest.mark.parametrize("smoothing", [0.1, 0.5])
def test_negative_log_likelihood_is_unsmoothed_cross_entropy(smoothing):
    logits, labels = batch(seed=5)
    nll = negative_log_likelihood(logits, labels)
    np.testing.assert_allclose(nll, cross_entropy(logits, labels, 0.0), rtol=1e-5)
    assert not np.allclose(nll, cross_entropy(logits, labels, smoothing))


EXTREME_LOGITS = jnp.array(
    [
        [100.0, -100.0, 0.0, 0.0, 0.0],
        [-100.0, 100.0, 0.0, 0.0, 0.0],
        [100.0, 100.0, -100.0, 0.0, 0.0],
    ]
)
EXTREME_LABELS = jnp.array([0, 0, 2])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize(
    "loss",
    [
        pytest.param(lambda lg, y, s: cross_entropy(lg, y, s), id="cross_entropy"),
        pytest.param(lambda lg, y, s: negative_log_likelihood(lg, y), id="nll"),
        pytest.param(lambda lg, y, s: focal(lg, y, s, 0.0), id="focal-0"),
        pytest.param(lambda lg, y, s: focal(lg, y, s, 0.5), id="focal-0.5"),
        pytest.param(lambda lg, y, s: focal(lg, y, s, 1.0), id="focal-1"),
        pytest.param(lambda lg, y, s: focal(lg, y, s, 2.0), id="focal-2"),
    ],
)
def test_loss_and_gradient_are_finite_for_extreme_logits(loss, smoothing):
    value, grad = jax.value_and_grad(lambda lg: loss(lg, EXTREME_LABELS, smoothing).sum())(
        EXTREME_LOGITS
    )
    assert np.isfinite(value)
    assert np.isfinite(grad).all()


def test_registered_losses_are_the_functions_above_with_their_required_keys():
    logits, labels = batch()
    hyper = losses.LossHyper(jnp.float32(0.1), jnp.float32(2.0), jnp.float32(1.0))
    registered = {name: jax.jit(losses.LOSSES[name]) for name in ("cross_entropy", "focal")}
    np.testing.assert_array_equal(
        registered["cross_entropy"](logits, labels, hyper), cross_entropy(logits, labels, 0.1)
    )
    np.testing.assert_array_equal(
        registered["focal"](logits, labels, hyper), focal(logits, labels, 0.1, 2.0)
    )
    assert {name: losses.LOSSES[name].requires for name in losses.LOSSES} == {
        "cross_entropy": (),
        "focal": ("focal_gamma",),
        "mse": (),
        "huber": (),
    }
    with pytest.raises(ValueError, match=r"required when loss\.name = 'focal'"):
        LossConfig(name="focal")
    with pytest.raises(ValueError, match=r"unknown loss 'focall'.*did you mean 'focal'\?"):
        LossConfig(name="focall")
