"""Pure training: one run, from a seed and hyper-parameters to metrics and per-epoch history.

``train_run(static, hyper, data)`` is a pure function. ``static`` (a hashable
:class:`StaticSpec`) fixes shapes and program structure; ``hyper`` (:class:`Hyper`, arrays)
and ``data`` (:class:`DataArrays`) are traced, so every run with the same ``static`` reuses one
compiled program. The epoch loop is a ``lax.scan`` over epochs whose body is a ``lax.scan``
over mini-batches; once a run stops (early stopping or divergence) its remaining epochs are
skipped by ``lax.cond`` and recorded as NaN.

Randomness. One root key per run, ``jax.random.key(seed)``, is split *by purpose* with
``fold_in`` and a fixed purpose number, so adding a new consumer never shifts the others:

====================  =====================================================================
purpose               key
====================  =====================================================================
parameter init        ``fold_in(root, 0)``
data order            ``fold_in(fold_in(root, 1), epoch)``: one permutation per epoch
dropout               ``fold_in(fold_in(root, 2), global_step)``, then ``fold_in(., layer)``
====================  =====================================================================

The train / val / test split is not drawn from these keys: it is fixed by ``data.split_seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sweepbook.config import ModelConfig, RunConfig
from sweepbook.data import Split
from sweepbook.models import build_model
from sweepbook.optim import build_optimizer

INIT, DATA_ORDER, DROPOUT = 0, 1, 2  # purpose numbers for fold_in; never renumber


@dataclass(frozen=True)
class StaticSpec:
    """Everything that changes shapes or program structure. Hashable: it keys compilation."""

    model: str  # ModelConfig as canonical JSON; rebuilt inside the trace
    optimizer: str
    epochs: int
    batch_size: int
    patience: int
    restore_best: bool
    eval_batch_size: int
    num_classes: int


class Hyper(NamedTuple):
    """Traced hyper-parameters of one run (scalars; a leading axis when runs are stacked)."""

    seed: jax.Array
    learning_rate: jax.Array
    momentum: jax.Array
    b1: jax.Array
    b2: jax.Array
    eps: jax.Array
    dropout: jax.Array
    min_delta: jax.Array


class DataArrays(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    x_test: jax.Array
    y_test: jax.Array


class EpochRecord(NamedTuple):
    lr: jax.Array
    train_loss: jax.Array
    train_accuracy: jax.Array
    val_loss: jax.Array
    val_accuracy: jax.Array


class RunOutput(NamedTuple):
    history: EpochRecord  # each field [epochs]; NaN after the run stopped
    val_loss: jax.Array
    val_accuracy: jax.Array
    test_loss: jax.Array
    test_accuracy: jax.Array
    best_epoch: jax.Array  # 1-based epoch with the lowest validation loss
    epochs_run: jax.Array
    diverged: jax.Array
    params: jax.Array
    nonzero_params: jax.Array


class _Carry(NamedTuple):
    params: Any
    opt_state: Any
    best_params: Any
    best_val_loss: jax.Array
    best_epoch: jax.Array
    wait: jax.Array
    active: jax.Array
    diverged: jax.Array
    epochs_run: jax.Array


def static_spec(config: RunConfig, num_classes: int) -> StaticSpec:
    return StaticSpec(
        model=config.model.model_dump_json(exclude={"dropout"}),
        optimizer=config.optimizer.name,
        epochs=config.train.epochs,
        batch_size=config.train.batch_size,
        patience=config.train.early_stopping.patience,
        restore_best=config.train.early_stopping.restore_best,
        eval_batch_size=config.train.eval_batch_size,
        num_classes=num_classes,
    )


def hyper_from_config(config: RunConfig) -> Hyper:
    opt = config.optimizer

    def f32(value: float | None) -> jax.Array:
        # Unused slots (Adam's betas in an SGD run) still need a value of the right dtype.
        return jnp.asarray(0.0 if value is None else value, dtype=jnp.float32)

    return Hyper(
        seed=jnp.asarray(config.seed, dtype=jnp.uint32),
        learning_rate=f32(opt.learning_rate),
        momentum=f32(opt.momentum),
        b1=f32(opt.b1),
        b2=f32(opt.b2),
        eps=f32(opt.eps),
        dropout=f32(config.model.dropout),
        min_delta=f32(config.train.early_stopping.min_delta),
    )


def data_arrays(split: Split) -> DataArrays:
    arrays = (split.x_train, split.y_train, split.x_val, split.y_val, split.x_test, split.y_test)
    return DataArrays(*(jnp.asarray(a) for a in arrays))


def _padded_batches(n: int, batch_size: int) -> tuple[int, jax.Array]:
    steps = math.ceil(n / batch_size)
    mask = (jnp.arange(steps * batch_size) < n).reshape(steps, batch_size)
    return steps, mask


def evaluate(
    apply: Any, params: Any, x: jax.Array, y: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy and accuracy over ``x, y`` in fixed-size batches (last one masked)."""
    n = x.shape[0]
    batch_size = min(batch_size, n)
    steps, mask = _padded_batches(n, batch_size)
    pad = steps * batch_size - n
    xb = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(steps, batch_size, *x.shape[1:])
    yb = jnp.pad(y, (0, pad)).reshape(steps, batch_size)

    def body(totals: tuple[jax.Array, jax.Array], batch: tuple[jax.Array, ...]) -> tuple[Any, None]:
        xs, ys, ms = batch
        logits = apply(params, xs, None)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, ys)
        correct = (jnp.argmax(logits, -1) == ys).astype(jnp.float32)
        return (totals[0] + jnp.sum(losses * ms), totals[1] + jnp.sum(correct * ms)), None

    (loss_sum, correct), _ = jax.lax.scan(
        body, (jnp.float32(0.0), jnp.float32(0.0)), (xb, yb, mask)
    )
    return loss_sum / n, correct / n


def train_run(static: StaticSpec, hyper: Hyper, data: DataArrays) -> RunOutput:
    """Train one run to completion. Pure: same ``(static, hyper, data)``, same output bits."""
    model = build_model(ModelConfig.model_validate_json(static.model), static.num_classes)

    def apply(params: Any, x: jax.Array, dropout_key: jax.Array | None) -> jax.Array:
        logits = model.apply(
            {"params": params}, x, dropout_rate=hyper.dropout, dropout_key=dropout_key
        )
        return cast(jax.Array, logits)

    root = jax.random.key(hyper.seed)
    order_root = jax.random.fold_in(root, DATA_ORDER)
    dropout_root = jax.random.fold_in(root, DROPOUT)
    params = model.init(
        jax.random.fold_in(root, INIT),
        data.x_train[:1],
        dropout_rate=hyper.dropout,
        dropout_key=None,
    )["params"]
    tx = build_optimizer(
        static.optimizer,
        learning_rate=hyper.learning_rate,
        momentum=hyper.momentum,
        b1=hyper.b1,
        b2=hyper.b2,
        eps=hyper.eps,
    )

    n_train = data.x_train.shape[0]
    steps, batch_mask = _padded_batches(n_train, static.batch_size)
    pad = steps * static.batch_size - n_train

    def loss_fn(params: Any, xs: jax.Array, ys: jax.Array, ms: jax.Array, key: jax.Array) -> Any:
        logits = apply(params, xs, key)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, ys)
        correct = jnp.sum((jnp.argmax(logits, -1) == ys) * ms)
        total = jnp.sum(losses * ms)
        # Mean over the real examples of the batch: the padded tail of the last batch weighs 0.
        return total / jnp.maximum(jnp.sum(ms), 1.0), (total, correct)

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def train_one_epoch(params: Any, opt_state: Any, epoch: jax.Array) -> tuple[Any, ...]:
        order = jax.random.permutation(jax.random.fold_in(order_root, epoch), n_train)
        order = jnp.pad(order, (0, pad)).reshape(steps, static.batch_size)

        def step(state: tuple[Any, ...], batch: tuple[jax.Array, ...]) -> tuple[Any, None]:
            params, opt_state, loss_sum, correct_sum = state
            index, ms, step_number = batch
            key = jax.random.fold_in(dropout_root, epoch * steps + step_number)
            grads, (total, correct) = grad_fn(
                params, data.x_train[index], data.y_train[index], ms.astype(jnp.float32), key
            )
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state, loss_sum + total, correct_sum + correct), None

        init = (params, opt_state, jnp.float32(0.0), jnp.float32(0.0))
        (params, opt_state, loss_sum, correct_sum), _ = jax.lax.scan(
            step, init, (order, batch_mask, jnp.arange(steps))
        )
        return params, opt_state, loss_sum / n_train, correct_sum / n_train

    def run_epoch(carry: _Carry, epoch: jax.Array) -> tuple[_Carry, EpochRecord]:
        params, opt_state, train_loss, train_acc = train_one_epoch(
            carry.params, carry.opt_state, epoch
        )
        val_loss, val_acc = evaluate(apply, params, data.x_val, data.y_val, static.eval_batch_size)
        improved = val_loss < carry.best_val_loss - hyper.min_delta
        wait = jnp.where(improved, 0, carry.wait + 1)
        diverged = ~(jnp.isfinite(train_loss) & jnp.isfinite(val_loss))
        patience_left = (static.patience == 0) | (wait < static.patience)
        new = _Carry(
            params=params,
            opt_state=opt_state,
            best_params=jax.tree.map(
                lambda a, b: jnp.where(improved, a, b), params, carry.best_params
            ),
            best_val_loss=jnp.where(improved, val_loss, carry.best_val_loss),
            best_epoch=jnp.where(improved, epoch + 1, carry.best_epoch),
            wait=wait,
            active=patience_left & ~diverged,
            diverged=diverged,
            epochs_run=carry.epochs_run + 1,
        )
        return new, EpochRecord(hyper.learning_rate, train_loss, train_acc, val_loss, val_acc)

    def skip_epoch(carry: _Carry, epoch: jax.Array) -> tuple[_Carry, EpochRecord]:
        nan = jnp.float32(jnp.nan)
        return carry, EpochRecord(nan, nan, nan, nan, nan)

    def epoch_body(carry: _Carry, epoch: jax.Array) -> tuple[_Carry, EpochRecord]:
        return jax.lax.cond(carry.active, run_epoch, skip_epoch, carry, epoch)

    carry = _Carry(
        params=params,
        opt_state=tx.init(params),
        best_params=params,
        best_val_loss=jnp.float32(jnp.inf),
        best_epoch=jnp.int32(0),
        wait=jnp.int32(0),
        active=jnp.bool_(True),
        diverged=jnp.bool_(False),
        epochs_run=jnp.int32(0),
    )
    carry, history = jax.lax.scan(epoch_body, carry, jnp.arange(static.epochs))

    final = carry.best_params if static.restore_best else carry.params
    val_loss, val_acc = evaluate(apply, final, data.x_val, data.y_val, static.eval_batch_size)
    test_loss, test_acc = evaluate(apply, final, data.x_test, data.y_test, static.eval_batch_size)
    leaves = jax.tree.leaves(final)
    return RunOutput(
        history=history,
        val_loss=val_loss,
        val_accuracy=val_acc,
        test_loss=test_loss,
        test_accuracy=test_acc,
        best_epoch=carry.best_epoch,
        epochs_run=carry.epochs_run,
        diverged=carry.diverged,
        params=jnp.int32(sum(int(np.prod(leaf.shape)) for leaf in leaves)),
        nonzero_params=jnp.sum(jnp.stack([jnp.count_nonzero(leaf) for leaf in leaves])),
    )
