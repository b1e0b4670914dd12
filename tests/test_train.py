from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from sweepbook.data import load_split
from sweepbook.plan import run_flat
from sweepbook.train import (
    TRACED_KEYS,
    RunOutput,
    data_arrays,
    hyper_from_config,
    static_spec,
    train_run,
)


def _train(config) -> RunOutput:
    split = load_split(config.data)
    trainer = jax.jit(functools.partial(train_run, static_spec(config), split.num_classes))
    return jax.block_until_ready(trainer(hyper_from_config(config), data_arrays(split)))


def test_same_run_twice_gives_identical_bits(make_run_config):
    config = make_run_config()
    first, second = _train(config), _train(config)
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_different_seeds_give_different_runs(make_run_config):
    a = _train(make_run_config(seed=0))
    b = _train(make_run_config(seed=1))
    assert not np.array_equal(np.asarray(a.history.train_loss), np.asarray(b.history.train_loss))


def test_traced_hyperparameters_share_one_compilation(make_run_config):
    """Runs differing only in learning rate, momentum-like floats, dropout and seed run through
    the same compiled executable and still get their own results."""
    low = make_run_config({"optimizer.learning_rate": 1e-3, "model.dropout": 0.0})
    high = make_run_config({"optimizer.learning_rate": 5e-2, "model.dropout": 0.3}, seed=3)
    split = load_split(low.data)
    static = static_spec(low)
    assert static == static_spec(high)
    data = data_arrays(split)
    compiled = (
        jax.jit(functools.partial(train_run, static, split.num_classes))
        .lower(hyper_from_config(low), data)
        .compile()
    )
    out_low = compiled(hyper_from_config(low), data)
    out_high = compiled(hyper_from_config(high), data)
    assert float(out_low.history.lr[0]) == pytest.approx(1e-3)
    assert float(out_high.history.lr[0]) == pytest.approx(5e-2)
    assert float(out_low.history.train_loss[0]) != float(out_high.history.train_loss[0])
    # Same values through the AOT executable and through plain jit: one program, one semantics.
    np.testing.assert_array_equal(
        np.asarray(out_low.test.accuracy), np.asarray(_train(low).test.accuracy)
    )


def test_learns_digits(make_run_config):
    out = _train(make_run_config({"train.epochs": 10, "train.early_stopping.patience": 0}))
    assert float(out.test.accuracy) > 0.85
    assert int(out.epochs_run) == 10
    losses = np.asarray(out.history.train_loss)
    assert losses[-1] < losses[0]


def test_early_stopping_stops_and_marks_remaining_epochs_nan(make_run_config):
    # A learning rate this large makes validation loss stop improving almost at once.
    config = make_run_config(
        {"train.epochs": 12, "train.early_stopping.patience": 1, "optimizer.learning_rate": 0.5}
    )
    out = _train(config)
    run = int(out.epochs_run)
    assert run < 12
    val_loss = np.asarray(out.history.val_loss)
    assert np.all(np.isfinite(val_loss[:run]) | bool(out.diverged))
    assert np.all(np.isnan(val_loss[run:]))


def test_restore_best_evaluates_the_best_validation_epoch(make_run_config):
    config = make_run_config({"train.epochs": 8, "train.early_stopping.patience": 0})
    out = _train(config)
    val_loss = np.asarray(out.history.val_loss)
    best = int(np.nanargmin(val_loss))
    assert int(out.best_epoch) == best + 1
    # The final validation loss is recomputed on the restored parameters: it is the best one.
    assert float(out.val.loss) == pytest.approx(val_loss[best], rel=1e-5)


def test_without_restore_best_the_last_epoch_is_evaluated(make_run_config):
    config = make_run_config(
        {
            "train.epochs": 6,
            "train.early_stopping.patience": 0,
            "train.early_stopping.restore_best": False,
        }
    )
    out = _train(config)
    assert float(out.val.loss) == pytest.approx(float(out.history.val_loss[-1]), rel=1e-5)


def test_partial_last_batch_is_used_and_weighted_by_its_real_examples(make_run_config):
    """1,078 training images at batch 1,000: two steps per epoch, the second of 78 examples."""
    config = make_run_config(
        {"train.batch_size": 1000, "train.epochs": 1, "train.early_stopping.patience": 0}
    )
    out = _train(config)
    assert np.isfinite(float(out.history.train_loss[0]))
    assert 0.0 <= float(out.history.train_accuracy[0]) <= 1.0


def test_divergence_is_detected(make_run_config):
    config = make_run_config(
        {
            "optimizer.name": "sgd",
            "optimizer.learning_rate": 1e37,
            "model.activation": "tanh",
            "train.early_stopping.patience": 0,
        }
    )
    out = _train(config)
    assert bool(out.diverged)
    assert int(out.epochs_run) < config.train.epochs


def test_parameter_count(make_run_config):
    out = _train(make_run_config({"train.epochs": 1}))
    # 64 inputs -> 32 hidden -> 10 classes
    assert int(out.params) == 64 * 32 + 32 + 32 * 10 + 10
    assert 0 < int(out.nonzero_params) <= int(out.params)


# Every optional constraint switched on, so that changing a traced value never switches one.
ALL_ON = {
    "model.dropout": 0.1,
    "schedule.plateau.factor": 0.5,
    "regularization.max_norm": 3.0,
    "regularization.clip_norm": 1.0,
    "regularization.clip_value": 1.0,
    "loss.name": "focal",
    "loss.focal_gamma": 2.0,
    "compress.prune.method": "oneshot",
    "compress.quantize.mode": "ptq",
    "compress.quantize.bits": 8,
}


@pytest.mark.parametrize("key", sorted(TRACED_KEYS - {"seed"}))
def test_traced_keys_do_not_change_the_static_spec(make_run_config, key):
    base = make_run_config(ALL_ON)
    value = {
        "optimizer.b1": 0.5,
        "optimizer.b2": 0.5,
        "optimizer.eps": 1e-3,
        "schedule.plateau.patience": 3,
        "compress.quantize.bits": 4,
        "optimizer.weight_decay_mask": "weights",
    }.get(key, 0.25)
    changed = make_run_config({**run_flat(base), key: value}, seed=7)
    assert base != changed
    assert static_spec(base) == static_spec(changed)


@pytest.mark.parametrize(
    "overrides",
    [
        {"train.batch_size": 64},
        {"train.epochs": 9},
        {"model.widths": [16, 16]},
        {"model.activation": "tanh"},
        {"model.batch_norm": True},
        {"model.init": "he_normal"},
        {"optimizer.name": "sgd"},
        {"optimizer.name": "sgd", "optimizer.nesterov": True},
        {"schedule.name": "cosine", "schedule.min_lr": 0.0},
        {"schedule.plateau.factor": 0.5},
        {"regularization.max_norm": 2.0},
        {"regularization.clip_norm": 2.0},
        {"regularization.clip_value": 2.0},
        {"loss.name": "focal", "loss.focal_gamma": 0.0},
        {"augment.max_shift": 1},
        {"train.early_stopping.patience": 5},
        {"train.early_stopping.restore_best": False},
        {"train.eval_batch_size": 7},
        {"compress.prune.method": "oneshot"},
        {"compress.prune.method": "oneshot", "compress.prune.structure": "neurons"},
        {"compress.quantize.mode": "qat", "compress.quantize.bits": 4},
        {"compress.quantize.mode": "ptq", "compress.quantize.format": "fp16"},
    ],
    ids=lambda overrides: ",".join(overrides),
)
def test_static_keys_change_the_static_spec(make_run_config, overrides):
    assert static_spec(make_run_config()) != static_spec(make_run_config(overrides))


def test_max_norm_binds_inside_training(make_run_config):
    """A tight max-norm changes what is learned; a loose one leaves the run bit-identical."""
    free = _train(make_run_config())
    loose = _train(make_run_config({"regularization.max_norm": 1e6}))
    tight = _train(make_run_config({"regularization.max_norm": 0.05}))
    np.testing.assert_array_equal(np.asarray(loose.test.loss), np.asarray(free.test.loss))
    assert float(tight.test.loss) != float(free.test.loss)


@pytest.mark.parametrize(
    "overrides",
    [
        {"optimizer.name": "sgd", "optimizer.momentum": 0.9, "optimizer.nesterov": True},
        {"optimizer.name": "adagrad", "optimizer.initial_accumulator": 0.1},
        {"optimizer.name": "rmsprop", "optimizer.decay": 0.9, "optimizer.centered": True},
        {"optimizer.name": "adamw", "optimizer.weight_decay": 0.01},
        {
            "schedule.name": "onecycle",
            "schedule.pct_start": 0.3,
            "schedule.div_factor": 25.0,
            "schedule.final_div_factor": 1e4,
        },
        {"schedule.name": "cosine", "schedule.min_lr": 0.0, "schedule.warmup_epochs": 1.0},
        {"schedule.plateau.factor": 0.5, "schedule.plateau.patience": 0},
        {"loss.name": "focal", "loss.focal_gamma": 2.0, "loss.label_smoothing": 0.1},
        {
            "regularization.l1": 1e-4,
            "regularization.l2": 1e-3,
            "regularization.clip_norm": 1.0,
            "regularization.clip_value": 0.5,
        },
        {"model.batch_norm": True, "model.init": "he_normal", "augment.max_shift": 1},
        {"model.kind": "cnn", "model.widths": []},
    ],
    ids=lambda overrides: ",".join(sorted(overrides))[:60],
)
def test_every_training_option_trains_and_learns(make_run_config, overrides):
    config = make_run_config({"train.epochs": 3, "train.early_stopping.patience": 0, **overrides})
    out = _train(config)
    assert not bool(out.diverged)
    losses = np.asarray(out.history.train_loss)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert float(out.test.accuracy) > 0.3  # well above chance (0.1) after 3 epochs


def test_learning_rate_history_follows_the_schedule(make_run_config):
    config = make_run_config(
        {
            "train.epochs": 4,
            "train.early_stopping.patience": 0,
            "schedule.name": "step",
            "schedule.gamma": 0.5,
            "schedule.step_epochs": 2,
        }
    )
    lr = np.asarray(_train(config).history.lr)
    np.testing.assert_allclose(lr, [1e-2, 1e-2, 5e-3, 5e-3], rtol=1e-6)


def test_reduce_on_plateau_lowers_the_rate_when_validation_stalls(make_run_config):
    config = make_run_config(
        {
            "train.epochs": 8,
            "train.early_stopping.patience": 0,
            "optimizer.learning_rate": 0.3,  # too large: validation loss stalls at once
            "schedule.plateau.factor": 0.1,
            "schedule.plateau.patience": 0,
        }
    )
    lr = np.asarray(_train(config).history.lr)
    assert lr[0] == pytest.approx(0.3)
    assert lr[-1] < lr[0]


def test_pruned_run_reaches_its_sparsity_and_keeps_it(make_run_config):
    config = make_run_config(
        {
            "train.epochs": 4,
            "train.early_stopping.patience": 0,
            "compress.prune.method": "gradual",
            "compress.prune.start_epoch": 0,
            "compress.prune.end_epoch": 2,
            "compress.prune.sparsity": 0.8,
        }
    )
    out = _train(config)
    kernels = 64 * 32 + 32 * 10
    pruned = int(out.params) - int(out.nonzero_params)
    assert pruned >= int(0.8 * kernels)  # floor(0.8·n) per kernel at least, never refilled
    assert int(out.best_epoch) >= 2  # a denser epoch is never restored
    dense_bytes = int(out.params) * 4
    assert float(out.model_bytes) < 0.5 * dense_bytes


@pytest.mark.parametrize(("bits", "max_drop"), [(8, 0.02), (2, 1.0)])
def test_post_training_quantization_costs_accuracy_with_fewer_bits(make_run_config, bits, max_drop):
    base = {"train.epochs": 4, "train.early_stopping.patience": 0}
    fp32 = _train(make_run_config(base))
    quantized = _train(
        make_run_config({**base, "compress.quantize.mode": "ptq", "compress.quantize.bits": bits})
    )
    assert float(fp32.test.accuracy) - float(quantized.test.accuracy) <= max_drop
    # Every float32 kernel weight now costs `bits` bits (plus one float32 scale per kernel).
    assert float(quantized.model_bytes) < float(fp32.model_bytes) * (bits / 32 + 0.1)
