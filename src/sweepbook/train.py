"""Pure training: one run, from a seed and hyper-parameters to metrics and per-epoch history.

``train_run(static, hyper, data)`` is a pure function. ``static`` (a hashable
:class:`StaticSpec`) fixes shapes and program structure; ``hyper`` (:class:`Hyper`, arrays)
and ``data`` (:class:`DataArrays`) are traced, so every run with the same ``static`` reuses one
compiled program. The epoch loop is a ``lax.scan`` over epochs whose body is a ``lax.scan``
over mini-batches; once a run stops (early stopping or divergence) its remaining epochs are
skipped by ``lax.cond`` and recorded as NaN.

A number is *static* when it changes shapes or structure (batch size, epochs, architecture,
optimizer and schedule kind, early-stopping patience, shift augmentation, and whether an
optional constraint is on at all); every other number is *traced* (:data:`TRACED_KEYS`).

Randomness. One root key per run, ``jax.random.key(seed)``, is split *by purpose* with
``fold_in`` and a fixed purpose number, so adding a new consumer never shifts the others:

====================  =====================================================================
purpose               key
====================  =====================================================================
parameter init        ``fold_in(root, 0)``
data order            ``fold_in(fold_in(root, 1), epoch)``: one permutation per epoch
dropout               ``fold_in(fold_in(root, 2), global_step)``, then ``fold_in(., layer)``
augmentation          ``fold_in(fold_in(root, 3), global_step)``
====================  =====================================================================

The train / val / test split is not drawn from these keys: it is fixed by ``data.split_seed``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from sweepbook import compress, losses, regularize, schedules
from sweepbook.augment import random_shift
from sweepbook.config import ModelConfig, RunConfig
from sweepbook.data import Split
from sweepbook.models import build_model
from sweepbook.optim import OptimizerHyper, build_direction, scale_updates

INIT, DATA_ORDER, DROPOUT, AUGMENT = 0, 1, 2, 3  # purpose numbers for fold_in; never renumber

# Config keys that enter the program as arrays. An optional constraint (max_norm, clipping,
# reduce-on-plateau) is on or off statically; its value, once on, is traced.
TRACED_KEYS: frozenset[str] = frozenset(
    {
        "seed",
        "model.dropout",
        "train.early_stopping.min_delta",
        "loss.label_smoothing",
        "loss.focal_gamma",
        *(
            f"optimizer.{name}"
            for name in ("learning_rate", *OptimizerHyper._fields)
            if name not in ("clip_norm", "clip_value", "weight_decay_all")
        ),
        "optimizer.weight_decay_mask",  # as OptimizerHyper.weight_decay_all
        *(f"regularization.{name}" for name in ("l1", "l2", "max_norm", "clip_norm", "clip_value")),
        *(f"schedule.{name}" for name in schedules.ScheduleParams._fields),
        *(f"schedule.plateau.{name}" for name in ("factor", "patience", "threshold", "min_scale")),
        "compress.prune.sparsity",
        "compress.quantize.bits",
    }
)


@dataclass(frozen=True)
class StaticSpec:
    """Everything that changes shapes or program structure. Hashable: it keys compilation."""

    model: str  # ModelConfig as canonical JSON, without the traced dropout rate
    optimizer: str
    nesterov: bool
    centered: bool
    schedule: str
    plateau: bool
    max_norm: bool
    clip_norm: bool
    clip_value: bool
    loss: str
    max_shift: int
    prune: str  # none | oneshot | gradual
    prune_scope: str
    prune_structure: str
    prune_start: int
    prune_end: int  # exclusive; the final sparsity holds from this epoch on
    quantize: str  # none | ptq | qat
    quantize_format: str
    quantize_per_channel: bool
    epochs: int
    batch_size: int
    patience: int
    restore_best: bool
    eval_batch_size: int


class Hyper(NamedTuple):
    """Traced hyper-parameters of one run (scalars; a leading axis when runs are stacked)."""

    seed: jax.Array
    learning_rate: jax.Array
    optimizer: OptimizerHyper
    schedule: schedules.ScheduleParams
    plateau_factor: jax.Array
    plateau_patience: jax.Array
    plateau_threshold: jax.Array
    plateau_min_scale: jax.Array
    dropout: jax.Array
    min_delta: jax.Array
    l1: jax.Array
    l2: jax.Array
    max_norm: jax.Array
    label_smoothing: jax.Array
    focal_gamma: jax.Array
    sparsity: jax.Array
    bits: jax.Array


class DataArrays(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    x_test: jax.Array
    y_test: jax.Array


class EpochRecord(NamedTuple):
    lr: jax.Array  # learning rate of the epoch's first step
    train_loss: jax.Array  # the training objective (data term), mean over the epoch
    train_accuracy: jax.Array
    val_loss: jax.Array  # cross-entropy, whatever the training loss
    val_accuracy: jax.Array
    val_f1_macro: jax.Array


class Evaluation(NamedTuple):
    loss: jax.Array
    accuracy: jax.Array
    f1_macro: jax.Array
    probabilities: jax.Array  # [N, classes]


class RunOutput(NamedTuple):
    history: EpochRecord  # each field [epochs]; NaN after the run stopped
    val: Evaluation
    test: Evaluation
    best_epoch: jax.Array  # 1-based epoch with the lowest validation loss
    epochs_run: jax.Array
    diverged: jax.Array
    params: jax.Array
    nonzero_params: jax.Array
    model_bytes: jax.Array  # storage of the deployed (pruned, quantized) model


class _Carry(NamedTuple):
    variables: Any  # {"params": ..., "batch_stats": ...}
    opt_state: Any
    best_variables: Any
    best_val_loss: jax.Array
    best_epoch: jax.Array
    wait: jax.Array
    active: jax.Array
    diverged: jax.Array
    epochs_run: jax.Array
    plateau: schedules.PlateauState


def static_spec(config: RunConfig) -> StaticSpec:
    opt, reg, stop = config.optimizer, config.regularization, config.train.early_stopping
    prune, quantize = config.compress.prune, config.compress.quantize
    return StaticSpec(
        model=config.model.model_dump_json(exclude={"dropout"}),
        optimizer=opt.name,
        nesterov=opt.nesterov,
        centered=opt.centered,
        schedule=config.schedule.name,
        plateau=config.schedule.plateau.factor is not None,
        max_norm=reg.max_norm is not None,
        clip_norm=reg.clip_norm is not None,
        clip_value=reg.clip_value is not None,
        loss=config.loss.name,
        max_shift=config.augment.max_shift,
        prune=prune.method,
        prune_scope=prune.scope,
        prune_structure=prune.structure,
        prune_start=prune.start_epoch,
        prune_end=prune.done_epoch,
        quantize=quantize.mode,
        quantize_format=quantize.format,
        quantize_per_channel=quantize.per_channel,
        epochs=config.train.epochs,
        batch_size=config.train.batch_size,
        patience=stop.patience,
        restore_best=stop.restore_best,
        eval_batch_size=config.train.eval_batch_size,
    )


def program_id(static: StaticSpec, num_classes: int, split: Split) -> str:
    """Short hash naming a compiled program: static spec, class count and data shapes. Runs on
    different splits of equal sizes (folds, split seeds) share one program."""
    arrays = (split.x_train, split.y_train, split.x_val, split.y_val, split.x_test, split.y_test)
    shapes = tuple((a.shape, str(a.dtype)) for a in arrays)
    key = repr((dataclasses.astuple(static), num_classes, shapes))
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def hyper_from_config(config: RunConfig) -> Hyper:
    def f32(value: float | None) -> jax.Array:
        # Unused slots (Adam's betas in an SGD run) still need a value of the right dtype.
        return jnp.asarray(0.0 if value is None else value, dtype=jnp.float32)

    opt, reg, plateau = config.optimizer, config.regularization, config.schedule.plateau
    return Hyper(
        seed=jnp.asarray(config.seed, dtype=jnp.uint32),
        learning_rate=f32(opt.learning_rate),
        optimizer=OptimizerHyper(
            momentum=f32(opt.momentum),
            b1=f32(opt.b1),
            b2=f32(opt.b2),
            eps=f32(opt.eps),
            decay=f32(opt.decay),
            initial_accumulator=f32(opt.initial_accumulator),
            weight_decay=f32(opt.weight_decay),
            weight_decay_all=f32(1.0 if opt.weight_decay_mask == "all" else 0.0),
            clip_norm=f32(reg.clip_norm),
            clip_value=f32(reg.clip_value),
        ),
        schedule=schedules.schedule_params(config.schedule, config.train.epochs),
        plateau_factor=f32(plateau.factor),
        plateau_patience=jnp.asarray(plateau.patience, dtype=jnp.int32),
        plateau_threshold=f32(plateau.threshold),
        plateau_min_scale=f32(plateau.min_scale),
        dropout=f32(config.model.dropout),
        min_delta=f32(config.train.early_stopping.min_delta),
        l1=f32(reg.l1),
        l2=f32(reg.l2),
        max_norm=f32(reg.max_norm),
        label_smoothing=f32(config.loss.label_smoothing),
        focal_gamma=f32(config.loss.focal_gamma),
        sparsity=f32(config.compress.prune.sparsity),
        bits=f32(config.compress.quantize.bits),
    )


def data_arrays(split: Split) -> DataArrays:
    arrays = (split.x_train, split.y_train, split.x_val, split.y_val, split.x_test, split.y_test)
    return DataArrays(*(jnp.asarray(a) for a in arrays))


def _padded_batches(n: int, batch_size: int) -> tuple[int, jax.Array]:
    steps = math.ceil(n / batch_size)
    mask = (jnp.arange(steps * batch_size) < n).reshape(steps, batch_size)
    return steps, mask


def macro_f1(confusion: jax.Array) -> jax.Array:
    """Mean over classes of 2·TP / (2·TP + FP + FN), 0 for a class never true nor predicted
    (scikit-learn's ``f1_score(average="macro", zero_division=0)`` over all classes)."""
    true_positive = jnp.diag(confusion)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    return jnp.mean(
        jnp.where(denominator > 0, 2 * true_positive / jnp.maximum(denominator, 1), 0.0)
    )


def evaluate(
    apply: Any, variables: Any, x: jax.Array, y: jax.Array, batch_size: int, num_classes: int
) -> Evaluation:
    """Cross-entropy, accuracy, macro F1 and class probabilities over ``x, y`` in fixed-size
    batches (the padded tail of the last batch is masked out)."""
    n = x.shape[0]
    batch_size = min(batch_size, n)
    steps, mask = _padded_batches(n, batch_size)
    pad = steps * batch_size - n
    xb = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(steps, batch_size, *x.shape[1:])
    yb = jnp.pad(y, (0, pad)).reshape(steps, batch_size)

    def body(
        totals: tuple[jax.Array, jax.Array], batch: tuple[jax.Array, ...]
    ) -> tuple[Any, jax.Array]:
        xs, ys, ms = batch
        logits = apply(variables, xs)
        losses_ = losses.negative_log_likelihood(logits, ys)
        predicted = jnp.argmax(logits, -1)
        confusion = jnp.einsum(
            "n,ni,nj->ij",
            ms.astype(jnp.float32),
            jax.nn.one_hot(ys, num_classes),
            jax.nn.one_hot(predicted, num_classes),
        )
        return (totals[0] + jnp.sum(losses_ * ms), totals[1] + confusion), jax.nn.softmax(logits)

    init = (jnp.float32(0.0), jnp.zeros((num_classes, num_classes), jnp.float32))
    (loss_sum, confusion), probabilities = jax.lax.scan(body, init, (xb, yb, mask))
    return Evaluation(
        loss=loss_sum / n,
        accuracy=jnp.trace(confusion) / n,
        f1_macro=macro_f1(confusion),
        probabilities=probabilities.reshape(steps * batch_size, num_classes)[:n],
    )


def train_run(
    static: StaticSpec,
    num_classes: int,
    hyper: Hyper,
    data: DataArrays,
    *,
    numerics: str | None = None,
) -> RunOutput:
    """Train one run to completion. Pure: same ``(static, hyper, data)``, same output bits.
    ``numerics`` names the formulation of a conv net's layers (:func:`models.choose_numerics`;
    default the legacy one); it changes results by float rounding only."""
    model = build_model(ModelConfig.model_validate_json(static.model), num_classes, numerics)
    root = jax.random.key(hyper.seed)
    order_root = jax.random.fold_in(root, DATA_ORDER)
    dropout_root = jax.random.fold_in(root, DROPOUT)
    augment_root = jax.random.fold_in(root, AUGMENT)

    def apply_eval(variables: Any, x: jax.Array) -> jax.Array:
        logits = model.apply(
            variables, x, train=False, dropout_rate=hyper.dropout, dropout_key=None
        )
        return cast(jax.Array, logits)

    variables = dict(
        model.init(
            jax.random.fold_in(root, INIT),
            data.x_train[:1],
            train=False,
            dropout_rate=hyper.dropout,
            dropout_key=None,
        )
    )
    mutable = [name for name in variables if name != "params"]  # batch_stats, when present
    quantization: dict[str, Any] = {
        "fmt": static.quantize_format,
        "bits": hyper.bits,
        "per_channel": static.quantize_per_channel,
    }
    direction = build_direction(
        static.optimizer,
        hyper.optimizer,
        nesterov=static.nesterov,
        centered=static.centered,
        clip_norm=static.clip_norm,
        clip_value=static.clip_value,
    )

    n_train = data.x_train.shape[0]
    steps, batch_mask = _padded_batches(n_train, static.batch_size)
    pad = steps * static.batch_size - n_train

    def training_loss(
        params: Any, state: Any, xs: jax.Array, ys: jax.Array, ms: jax.Array, key: jax.Array
    ) -> Any:
        if static.quantize == "qat":  # the forward pass sees the weights it will be deployed with
            params = compress.fake_quantize(params, **quantization)
        logits, new_state = model.apply(
            {"params": params, **state},
            xs,
            train=True,
            dropout_rate=hyper.dropout,
            dropout_key=key,
            mask=ms > 0,
            mutable=mutable,
        )
        per_example = losses.LOSSES[static.loss](
            logits, ys, losses.LossHyper(hyper.label_smoothing, hyper.focal_gamma)
        )
        total = jnp.sum(per_example * ms)
        correct = jnp.sum((jnp.argmax(logits, -1) == ys) * ms)
        # Mean over the real examples of the batch: the padded tail of the last batch weighs 0.
        data_term = total / jnp.maximum(jnp.sum(ms), 1.0)
        objective = data_term + regularize.weight_penalty(params, hyper.l1, hyper.l2)
        return objective, (total, correct, new_state)

    grad_fn = jax.grad(training_loss, has_aux=True)

    def learning_rate(step: jax.Array, scale: jax.Array) -> jax.Array:
        epoch_time = step / steps
        scheduled = schedules.learning_rate(
            static.schedule,
            hyper.schedule,
            hyper.learning_rate,
            epoch_time,
            static.epochs,
            steps_per_epoch=steps,
        )
        return scheduled * scale

    def train_one_epoch(
        variables: Any, opt_state: Any, epoch: jax.Array, scale: jax.Array, masks: Any
    ) -> tuple[Any, ...]:
        order = jax.random.permutation(jax.random.fold_in(order_root, epoch), n_train)
        order = jnp.pad(order, (0, pad)).reshape(steps, static.batch_size)

        def step(carry: tuple[Any, ...], batch: tuple[jax.Array, ...]) -> tuple[Any, None]:
            variables, opt_state, loss_sum, correct_sum = carry
            index, ms, step_in_epoch = batch
            global_step = epoch * steps + step_in_epoch
            xs = random_shift(
                jax.random.fold_in(augment_root, global_step), data.x_train[index], static.max_shift
            )
            params = variables["params"]
            state = {name: variables[name] for name in mutable}
            grads, (total, correct, new_state) = grad_fn(
                params,
                state,
                xs,
                data.y_train[index],
                ms.astype(jnp.float32),
                jax.random.fold_in(dropout_root, global_step),
            )
            direction_updates, opt_state = direction.update(grads, opt_state, params)
            params = optimizer_step(
                params, direction_updates, learning_rate(global_step, scale), masks
            )
            variables = {"params": params, **new_state}
            return (variables, opt_state, loss_sum + total, correct_sum + correct), None

        init = (variables, opt_state, jnp.float32(0.0), jnp.float32(0.0))
        (variables, opt_state, loss_sum, correct_sum), _ = jax.lax.scan(
            step, init, (order, batch_mask, jnp.arange(steps))
        )
        return variables, opt_state, loss_sum / n_train, correct_sum / n_train

    def optimizer_step(params: Any, direction_updates: Any, lr: jax.Array, masks: Any) -> Any:
        params = jax.tree.map(jnp.add, params, scale_updates(direction_updates, lr))
        if static.max_norm:
            params = regularize.max_norm(params, hyper.max_norm)
        # Pruned weights are zeroed after every update, so they stay exactly zero.
        return params if masks is None else compress.apply_masks(params, masks)

    def epoch_masks(params: Any, epoch: jax.Array) -> Any:
        """This epoch's pruning masks, from the current magnitudes (None: no pruning)."""
        if static.prune == "none":
            return None
        sparsity = compress.zhu_gupta_sparsity(
            epoch, final=hyper.sparsity, start=static.prune_start, end=static.prune_end
        )
        return compress.magnitude_masks(
            params, sparsity, scope=static.prune_scope, structure=static.prune_structure
        )

    def deployed(variables: Any) -> Any:
        """The variables as deployed: weights quantized when quantization is on."""
        if static.quantize == "none":
            return variables
        return {
            **variables,
            "params": compress.quantize_params(variables["params"], **quantization),
        }

    def run_epoch(carry: _Carry, epoch: jax.Array) -> tuple[_Carry, EpochRecord]:
        first_lr = learning_rate(epoch * steps, carry.plateau.scale)
        masks = epoch_masks(carry.variables["params"], epoch)
        variables = carry.variables
        if masks is not None:
            variables = {**variables, "params": compress.apply_masks(variables["params"], masks)}
        variables, opt_state, train_loss, train_acc = train_one_epoch(
            variables, carry.opt_state, epoch, carry.plateau.scale, masks
        )
        # QAT validates the quantized model it trains; PTQ quantizes only the final weights.
        validated = deployed(variables) if static.quantize == "qat" else variables
        val = evaluate(
            apply_eval, validated, data.x_val, data.y_val, static.eval_batch_size, num_classes
        )
        # Before pruning reaches its final sparsity an epoch can be neither best nor a reason
        # to stop: restore-best must never bring back a denser model.
        eligible = epoch + 1 >= (static.prune_end if static.prune != "none" else 0)
        improved = eligible & (val.loss < carry.best_val_loss - hyper.min_delta)
        wait = jnp.where(improved | ~eligible, 0, carry.wait + 1)
        diverged = ~(jnp.isfinite(train_loss) & jnp.isfinite(val.loss))
        patience_left = (static.patience == 0) | (wait < static.patience)
        new = _Carry(
            variables=variables,
            opt_state=opt_state,
            best_variables=jax.tree.map(
                lambda a, b: jnp.where(improved, a, b), variables, carry.best_variables
            ),
            best_val_loss=jnp.where(improved, val.loss, carry.best_val_loss),
            best_epoch=jnp.where(improved, epoch + 1, carry.best_epoch),
            wait=wait,
            active=patience_left & ~diverged,
            diverged=diverged,
            epochs_run=carry.epochs_run + 1,
            plateau=schedules.plateau_update(
                carry.plateau,
                val.loss,
                factor=hyper.plateau_factor,
                patience=hyper.plateau_patience,
                threshold=hyper.plateau_threshold,
                min_scale=hyper.plateau_min_scale,
                enabled=static.plateau,
            ),
        )
        record = EpochRecord(first_lr, train_loss, train_acc, val.loss, val.accuracy, val.f1_macro)
        return new, record

    def skip_epoch(carry: _Carry, epoch: jax.Array) -> tuple[_Carry, EpochRecord]:
        nan = jnp.float32(jnp.nan)
        return carry, EpochRecord(nan, nan, nan, nan, nan, nan)

    def epoch_body(carry: _Carry, epoch: jax.Array) -> tuple[_Carry, EpochRecord]:
        return jax.lax.cond(carry.active, run_epoch, skip_epoch, carry, epoch)

    carry = _Carry(
        variables=variables,
        opt_state=direction.init(variables["params"]),
        best_variables=variables,
        best_val_loss=jnp.float32(jnp.inf),
        best_epoch=jnp.int32(0),
        wait=jnp.int32(0),
        active=jnp.bool_(True),
        diverged=jnp.bool_(False),
        epochs_run=jnp.int32(0),
        plateau=schedules.plateau_init(),
    )
    carry, history = jax.lax.scan(epoch_body, carry, jnp.arange(static.epochs))

    final = deployed(carry.best_variables if static.restore_best else carry.variables)
    leaves = jax.tree.leaves(final["params"])
    return RunOutput(
        history=history,
        val=evaluate(
            apply_eval, final, data.x_val, data.y_val, static.eval_batch_size, num_classes
        ),
        test=evaluate(
            apply_eval, final, data.x_test, data.y_test, static.eval_batch_size, num_classes
        ),
        best_epoch=carry.best_epoch,
        epochs_run=carry.epochs_run,
        diverged=carry.diverged,
        params=jnp.int32(sum(int(np.prod(leaf.shape)) for leaf in leaves)),
        nonzero_params=jnp.sum(jnp.stack([jnp.count_nonzero(leaf) for leaf in leaves])),
        model_bytes=compress.model_bytes(
            final["params"],
            fmt="none" if static.quantize == "none" else static.quantize_format,
            bits=hyper.bits,
            per_channel=static.quantize_per_channel,
            masks_applied=static.prune != "none",
        ),
    )
