"""The training pieces alone: the step, the epoch, early stopping and the final evaluation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweepbook import compress
from sweepbook.data import load_split
from sweepbook.train import (
    Batch,
    DataArrays,
    StepKeys,
    TrainSetup,
    TrainState,
    data_arrays,
    early_stopping_update,
    epoch_order,
    final_evaluation,
    hyper_from_config,
    init_stopping,
    init_train_state,
    make_train_epoch,
    make_train_step,
    run_keys,
    static_spec,
    step_keys,
    train_setup,
)


def _pieces(config) -> tuple[TrainSetup, object, DataArrays, TrainState]:
    split = load_split(config.data)
    data = data_arrays(split)
    hyper = hyper_from_config(config)
    setup = train_setup(static_spec(config), split.num_classes, hyper, data.x_train.shape[0])
    state = init_train_state(setup, hyper, run_keys(hyper.seed).init, data.x_train[:1])
    return setup, hyper, data, state


def _batch(data: DataArrays, size: int, real: int) -> Batch:
    mask = (jnp.arange(size) < real).astype(jnp.float32)
    return Batch(data.x_train[:size], data.y_train[:size], mask)


def test_repeated_steps_on_one_batch_drive_its_loss_down(make_run_config):
    setup, hyper, data, state = _pieces(make_run_config({"optimizer.learning_rate": 1e-2}))
    step = jax.jit(make_train_step(setup, hyper))
    batch = _batch(data, 32, 32)
    keys = run_keys(hyper.seed)
    losses = []
    for _ in range(30):
        state, metrics = step(state, batch, step_keys(keys, state.step))
        losses.append(float(metrics.loss_sum) / 32)
    assert int(state.step) == 30
    assert losses[-1] < 0.5 * losses[0]


def test_padded_examples_of_a_batch_change_nothing(make_run_config):
    """The tail beyond the real examples weighs 0 in the loss, the gradient and batch norm."""
    config = make_run_config({"model.batch_norm": True, "model.dropout": 0.2})
    setup, hyper, data, state = _pieces(config)
    step = jax.jit(make_train_step(setup, hyper))
    keys = StepKeys(jax.random.key(1), jax.random.key(2))
    batch = _batch(data, 32, 20)
    garbage = batch._replace(x=batch.x.at[20:].set(1e3), y=batch.y.at[20:].set(0))
    (a, metrics_a), (b, metrics_b) = step(state, batch, keys), step(state, garbage, keys)
    for left, right in zip(
        jax.tree.leaves((a, metrics_a)), jax.tree.leaves((b, metrics_b)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))
    assert 0 <= float(metrics_a.correct) <= 20


def test_the_step_keeps_pruned_weights_at_zero(make_run_config):
    config = make_run_config({"compress.prune.method": "oneshot", "compress.prune.sparsity": 0.5})
    setup, hyper, data, state = _pieces(config)
    params = state.variables["params"]
    masks = compress.magnitude_masks(
        params, jnp.float32(0.5), scope="layer", structure="unstructured"
    )
    state = state._replace(masks=masks)
    state, _ = make_train_step(setup, hyper)(
        state, _batch(data, 32, 32), StepKeys(jax.random.key(0), jax.random.key(1))
    )
    for mask, leaf in zip(
        jax.tree.leaves(masks), jax.tree.leaves(state.variables["params"]), strict=True
    ):
        assert np.all(np.asarray(leaf)[np.asarray(mask) == 0] == 0)
    assert any(np.any(np.asarray(mask) == 0) for mask in jax.tree.leaves(masks))


@pytest.mark.parametrize(("n", "batch_size"), [(10, 4), (12, 4), (3, 8)])
def test_epoch_order_is_a_permutation_padded_to_whole_batches(n, batch_size):
    order = np.asarray(epoch_order(jax.random.key(0), jnp.int32(2), n, batch_size))
    steps = -(-n // batch_size)
    assert order.shape == (steps, batch_size)
    assert sorted(order.ravel()[:n]) == list(range(n))
    assert np.all(order.ravel()[n:] == 0)
    again = np.asarray(epoch_order(jax.random.key(0), jnp.int32(3), n, batch_size))
    assert not np.array_equal(order, again) or n < 4  # another epoch, another order


def test_the_epoch_is_its_steps_over_the_padded_order(make_run_config):
    """1,077 training images at batch 100: ten full steps and a tail of 77 real examples.
    The epoch equals the step applied by hand to the same batches (up to float rounding: a
    step compiled alone may fuse its ops differently from the same step inside a scan)."""
    config = make_run_config({"train.batch_size": 100, "model.dropout": 0.1})
    setup, hyper, data, state = _pieces(config)
    keys = run_keys(hyper.seed)
    epoch = jnp.int32(1)
    train_epoch = jax.jit(make_train_epoch(setup, hyper, keys, data.x_train, data.y_train))
    by_epoch, metrics = train_epoch(state, epoch)

    step = jax.jit(make_train_step(setup, hyper))
    order = epoch_order(keys.data_order, epoch, setup.n_train, 100)
    assert setup.n_train == 1077 and order.shape == (11, 100)
    by_hand = state._replace(step=epoch * setup.steps_per_epoch)
    loss_sum = correct = jnp.float32(0.0)
    for index, real in zip(order, [100] * 10 + [77], strict=True):
        mask = (jnp.arange(100) < real).astype(jnp.float32)
        by_hand, m = step(
            by_hand,
            Batch(data.x_train[index], data.y_train[index], mask),
            step_keys(keys, by_hand.step),
        )
        loss_sum, correct = loss_sum + m.loss_sum, correct + m.correct
    assert int(by_epoch.step) == int(by_hand.step) == 2 * 11
    for a, b in zip(
        jax.tree.leaves(by_epoch.variables), jax.tree.leaves(by_hand.variables), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    assert float(metrics.train_accuracy) == pytest.approx(float(correct) / 1077)
    assert float(metrics.train_loss) == pytest.approx(float(loss_sum) / 1077, rel=1e-5)


STOPPING_CASES = {
    # name: (best, wait, val_loss, train_loss, epoch, min_delta, patience, eligible_from,
    #        -> improved, wait, active, diverged)
    "improves": (1.0, 1, 0.5, 0.4, 3, 0.0, 2, 0, True, 0, True, False),
    "improves_by_less_than_min_delta": (1.0, 0, 0.95, 0.4, 3, 0.1, 2, 0, False, 1, True, False),
    "patience_spent": (1.0, 1, 1.5, 0.4, 3, 0.0, 2, 0, False, 2, False, False),
    "patience_0_never_stops": (1.0, 50, 1.5, 0.4, 3, 0.0, 0, 0, False, 51, True, False),
    "before_pruning_ends_neither_best_nor_stop": (
        1.0,
        1,
        0.5,
        0.4,
        1,
        0.0,
        1,
        4,
        False,
        0,
        True,
        False,
    ),
    "pruning_ended": (1.0, 0, 0.5, 0.4, 3, 0.0, 1, 4, True, 0, True, False),
    "nan_validation_diverges": (1.0, 0, float("nan"), 0.4, 3, 0.0, 0, 0, False, 1, False, True),
    "inf_training_loss_diverges": (1.0, 0, 0.5, float("inf"), 3, 0.0, 0, 0, True, 0, False, True),
}


@pytest.mark.parametrize("case", STOPPING_CASES.values(), ids=STOPPING_CASES.keys())
def test_early_stopping_update(case):
    best, wait, val, train, epoch, min_delta, patience, first, improved, *expected = case
    start = init_stopping({"w": jnp.float32(0.0)})._replace(
        best_val_loss=jnp.float32(best), wait=jnp.int32(wait), best_epoch=jnp.int32(1)
    )
    new = early_stopping_update(
        start,
        {"w": jnp.float32(7.0)},
        jnp.float32(val),
        jnp.float32(train),
        jnp.int32(epoch),
        min_delta=jnp.float32(min_delta),
        patience=patience,
        eligible_from=first,
    )
    assert (int(new.wait), bool(new.active), bool(new.diverged)) == tuple(expected)
    assert int(new.epochs_run) == 1
    assert float(new.best_variables["w"]) == (7.0 if improved else 0.0)
    assert int(new.best_epoch) == (epoch + 1 if improved else 1)
    assert float(new.best_val_loss) == (val if improved else best)


def test_final_evaluation_counts_what_pruning_left(make_run_config):
    config = make_run_config({"compress.prune.method": "oneshot", "compress.prune.sparsity": 0.5})
    setup, hyper, data, state = _pieces(config)
    params = state.variables["params"]
    masks = compress.magnitude_masks(
        params, jnp.float32(0.5), scope="layer", structure="unstructured"
    )
    pruned = {**state.variables, "params": compress.apply_masks(params, masks)}
    final = jax.jit(functools.partial(final_evaluation, setup, hyper))(pruned, data)
    total = 64 * 32 + 32 + 32 * 10 + 10
    assert int(final.params) == total
    kernels = 64 * 32 + 32 * 10
    # Half of each kernel pruned; the biases are still at their zero init.
    assert int(final.nonzero_params) == kernels - (64 * 32 // 2 + 32 * 10 // 2)
    assert float(final.model_bytes) < total * 4
    for evaluation, labels in ((final.val, data.y_val), (final.test, data.y_test)):
        probabilities = np.asarray(evaluation.predictions)
        assert probabilities.shape == (labels.shape[0], 10)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        assert 0.0 <= float(evaluation.accuracy) <= 1.0
