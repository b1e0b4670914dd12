"""Pure training: one run, from a seed and hyper-parameters to metrics and per-epoch history.

``train_run(static, hyper, data)`` is a pure function. ``static`` (a hashable
:class:`StaticSpec`) fixes shapes and program structure; ``hyper`` (:class:`Hyper`, arrays)
and ``data`` (:class:`DataArrays`) are traced, so every run with the same ``static`` reuses one
compiled program. The epoch loop is a ``lax.scan`` over epochs whose body is a ``lax.scan``
over mini-batches; once a run stops (early stopping or divergence) its remaining epochs are
skipped by ``lax.cond`` and recorded as NaN.

The pieces, each a pure function importable and testable alone (``train_run`` composes them):

- :func:`train_setup` builds a :class:`TrainSetup` (model, optimizer direction, steps per
  epoch); :func:`run_keys` splits the seed by purpose; :func:`init_train_state` and
  :func:`init_stopping` give the starting :class:`TrainState` and :class:`StoppingState`.
- :func:`make_train_step` returns ``step(state, batch, keys) -> (state, metrics)``: one
  optimizer step on a :class:`Batch` with the :class:`StepKeys` of its global step
  (:func:`step_keys`).
- :func:`make_train_epoch` returns ``train_epoch(state, epoch) -> (state, metrics)``: this
  epoch's pruning masks, then one step per batch of the epoch's order (:func:`epoch_order`).
- :func:`early_stopping_update` is one epoch of early stopping on plain arrays.
- :func:`make_run_epoch` returns the epoch loop's body over a :class:`RunState`: train,
  validate, early stopping, reduce-on-plateau, and the epoch's :class:`EpochRecord`.
- :func:`final_evaluation` evaluates the kept weights as deployed and measures the model.

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
import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sweepbook import compress, losses, regularize, schedules
from sweepbook.augment import random_shift
from sweepbook.config import ModelConfig, RunConfig
from sweepbook.data import Split
from sweepbook.models import Network, build_network
from sweepbook.optim import OptimizerHyper, build_direction, scale_updates
from sweepbook.usercode import code_fingerprint

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
    task: str = "classification"
    traced: tuple[str, ...] = ()  # the names of a user's model's traced numbers
    code: str = ""  # usercode.code_fingerprint: the version of the users' code it runs


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
    huber_delta: jax.Array
    model_traced: dict[str, jax.Array]  # a user's model's [model.traced] numbers


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
    predictions: jax.Array  # [N, classes] class probabilities, or [N, outputs] (regression)


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
    # The variables final_evaluation evaluated (restored-best with restore-best), before
    # deployment quantization: what ``--save-params`` saves. None where nothing trained them
    # (a synthetic output); a second copy of the parameters per lane in a chunk's outputs.
    variables: Any = None


def static_spec(config: RunConfig) -> StaticSpec:
    opt, reg, stop = config.optimizer, config.regularization, config.train.early_stopping
    prune, quantize = config.compress.prune, config.compress.quantize
    return StaticSpec(
        model=config.model.model_dump_json(exclude={"dropout", "traced"}),
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
        task=config.task,
        traced=tuple(sorted(config.model.traced)),
        code=code_fingerprint(
            {
                "model.kind": config.model.kind,
                "data.name": config.data.name,
                "loss.name": config.loss.name,
            }
        ),
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
        huber_delta=f32(config.loss.huber_delta),
        model_traced={name: f32(value) for name, value in sorted(config.model.traced.items())},
    )


def data_arrays(split: Split) -> DataArrays:
    """The split on the device. Regression targets are ``[N, T]`` (T = 1 for scalar targets),
    the shape the model's outputs are brought to, so that an output never broadcasts against
    a target of another shape."""
    arrays = [split.x_train, split.y_train, split.x_val, split.y_val, split.x_test, split.y_test]
    if split.task == "regression":
        arrays = [a.reshape(len(a), -1) if i % 2 else a for i, a in enumerate(arrays)]
    return DataArrays(*(jnp.asarray(a) for a in arrays))


def as_outputs(outputs: jax.Array, task: str) -> jax.Array:
    """A regression model's outputs as ``[B, T]`` (a ``[B]`` output is one target each)."""
    return outputs.reshape(outputs.shape[0], -1) if task == "regression" else outputs


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


def _batched(a: jax.Array, steps: int, batch_size: int) -> jax.Array:
    """``a`` padded with zeros to ``steps * batch_size`` rows, as ``[steps, batch_size, ...]``."""
    pad = steps * batch_size - a.shape[0]
    padded = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
    return padded.reshape(steps, batch_size, *a.shape[1:])


def evaluate(
    apply: Any,
    variables: Any,
    x: jax.Array,
    y: jax.Array,
    batch_size: int,
    num_classes: int,
    task: str = "classification",
) -> Evaluation:
    """Over ``x, y`` in fixed-size batches (the padded tail of the last batch is masked out):
    cross-entropy, accuracy, macro F1 and class probabilities for classification; the mean
    squared error and the outputs ``[N, num_classes]`` for regression (accuracy and F1 NaN)."""
    if task == "regression":
        return _evaluate_regression(apply, variables, x, y, batch_size)
    n = x.shape[0]
    batch_size = min(batch_size, n)
    steps, mask = _padded_batches(n, batch_size)
    xb, yb = _batched(x, steps, batch_size), _batched(y, steps, batch_size)

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
        predictions=probabilities.reshape(steps * batch_size, num_classes)[:n],
    )


def _evaluate_regression(
    apply: Any, variables: Any, x: jax.Array, y: jax.Array, batch_size: int
) -> Evaluation:
    n = x.shape[0]
    batch_size = min(batch_size, n)
    steps, mask = _padded_batches(n, batch_size)

    def body(total: jax.Array, batch: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        xs, ys, ms = batch
        outputs = as_outputs(apply(variables, xs), "regression")
        return total + jnp.sum(losses.squared_error(outputs, ys) * ms), outputs

    batches = (_batched(x, steps, batch_size), _batched(y, steps, batch_size), mask)
    total, outputs = jax.lax.scan(body, jnp.float32(0.0), batches)
    nan = jnp.float32(jnp.nan)
    return Evaluation(
        loss=total / n,
        accuracy=nan,
        f1_macro=nan,
        predictions=outputs.reshape(steps * batch_size, -1)[:n],
    )


# --- The training pieces: each a pure function of arrays, composed by train_run. -------------


class RunKeys(NamedTuple):
    """The run's root key split by purpose (the table in the module docstring)."""

    init: jax.Array
    data_order: jax.Array
    dropout: jax.Array
    augment: jax.Array


class StepKeys(NamedTuple):
    """The keys of one optimizer step, each folded from its purpose's root with the global step."""

    dropout: jax.Array
    augment: jax.Array


class Batch(NamedTuple):
    x: jax.Array  # [batch, ...] features, before augmentation
    y: jax.Array  # [batch] integer labels, or [batch, outputs] regression targets
    mask: jax.Array  # [batch] float32: 1 for a real example, 0 for the padded tail


class TrainState(NamedTuple):
    """What one optimizer step reads and writes. The epoch sets ``step``, ``lr_scale`` and
    ``masks`` at its start; the step advances ``variables``, ``opt_state`` and ``step``."""

    variables: Any  # {"params": ..., "batch_stats": ...}
    opt_state: Any
    step: jax.Array  # global step (int32): keys the step's randomness, times the schedule
    lr_scale: jax.Array  # reduce-on-plateau's factor on the scheduled rate (1 without it)
    masks: Any  # this epoch's pruning masks (a tree like the params); None without pruning


class StepMetrics(NamedTuple):
    loss_sum: jax.Array  # the training loss summed over the batch's real examples
    correct: jax.Array  # real examples classified right


class EpochMetrics(NamedTuple):
    train_loss: jax.Array  # mean over the epoch's examples
    train_accuracy: jax.Array


class StoppingState(NamedTuple):
    """Early stopping's bookkeeping, carried across epochs."""

    best_variables: Any
    best_val_loss: jax.Array
    best_epoch: jax.Array  # 1-based; 0 until an epoch is eligible and improves
    wait: jax.Array  # eligible epochs since the last improvement
    active: jax.Array  # False once the run stopped (patience spent or diverged)
    diverged: jax.Array
    epochs_run: jax.Array


class RunState(NamedTuple):
    """The carry of the epoch loop."""

    train: TrainState
    stopping: StoppingState
    plateau: schedules.PlateauState


class FinalEvaluation(NamedTuple):
    val: Evaluation
    test: Evaluation
    params: jax.Array
    nonzero_params: jax.Array
    model_bytes: jax.Array


@dataclass(frozen=True)
class TrainSetup:
    """What every piece of one run shares: the static spec and what is built from it with the
    run's traced hyper-parameters (the optimizer's direction closes over them)."""

    static: StaticSpec
    num_classes: int  # classes, or a regression's outputs per example
    model: Network
    direction: optax.GradientTransformation
    n_train: int
    steps_per_epoch: int


def train_setup(
    static: StaticSpec, num_classes: int, hyper: Hyper, n_train: int, numerics: str | None = None
) -> TrainSetup:
    """Build the model and the optimizer's direction of a run training on ``n_train`` examples."""
    model = build_network(ModelConfig.model_validate_json(static.model), num_classes, numerics)
    direction = build_direction(
        static.optimizer,
        hyper.optimizer,
        nesterov=static.nesterov,
        centered=static.centered,
        clip_norm=static.clip_norm,
        clip_value=static.clip_value,
    )
    steps = math.ceil(n_train / static.batch_size)
    return TrainSetup(static, num_classes, model, direction, n_train, steps)


def run_keys(seed: jax.Array) -> RunKeys:
    root = jax.random.key(seed)
    return RunKeys(
        *(jax.random.fold_in(root, purpose) for purpose in (INIT, DATA_ORDER, DROPOUT, AUGMENT))
    )


def step_keys(keys: RunKeys, global_step: jax.Array) -> StepKeys:
    return StepKeys(
        dropout=jax.random.fold_in(keys.dropout, global_step),
        augment=jax.random.fold_in(keys.augment, global_step),
    )


def init_train_state(
    setup: TrainSetup, hyper: Hyper, key: jax.Array, example: jax.Array
) -> TrainState:
    """Initial variables from ``key`` (the INIT key) traced on ``example`` (one input), a fresh
    optimizer state, step 0, no rate reduction, and all-ones masks when pruning is on."""
    variables = dict(
        setup.model.init(key, example, dropout_rate=hyper.dropout, traced=hyper.model_traced)
    )
    params = variables["params"]
    masks = None if setup.static.prune == "none" else jax.tree.map(jnp.ones_like, params)
    return TrainState(
        variables=variables,
        opt_state=setup.direction.init(params),
        step=jnp.int32(0),
        lr_scale=jnp.float32(1.0),
        masks=masks,
    )


def init_stopping(variables: Any) -> StoppingState:
    return StoppingState(
        best_variables=variables,
        best_val_loss=jnp.float32(jnp.inf),
        best_epoch=jnp.int32(0),
        wait=jnp.int32(0),
        active=jnp.bool_(True),
        diverged=jnp.bool_(False),
        epochs_run=jnp.int32(0),
    )


def scheduled_rate(
    setup: TrainSetup, hyper: Hyper, global_step: jax.Array, scale: jax.Array
) -> jax.Array:
    """The learning rate of ``global_step``: the schedule's, times reduce-on-plateau's scale."""
    steps = setup.steps_per_epoch
    scheduled = schedules.learning_rate(
        setup.static.schedule,
        hyper.schedule,
        hyper.learning_rate,
        global_step / steps,
        setup.static.epochs,
        steps_per_epoch=steps,
    )
    return scheduled * scale


def _quantization(static: StaticSpec, hyper: Hyper) -> dict[str, Any]:
    return {
        "fmt": static.quantize_format,
        "bits": hyper.bits,
        "per_channel": static.quantize_per_channel,
    }


def deployed(static: StaticSpec, hyper: Hyper, variables: Any) -> Any:
    """The variables as deployed: weights quantized when quantization is on."""
    if static.quantize == "none":
        return variables
    params = compress.quantize_params(variables["params"], **_quantization(static, hyper))
    return {**variables, "params": params}


def predict(model: Network, hyper: Hyper, variables: Any, x: jax.Array) -> jax.Array:
    """Outputs (logits) in evaluation mode (no dropout, batch norm from its running statistics)."""
    outputs = model.apply(
        variables,
        x,
        train=False,
        dropout_rate=hyper.dropout,
        dropout_key=None,
        traced=hyper.model_traced,
    )
    return cast(jax.Array, outputs)


def make_train_step(
    setup: TrainSetup, hyper: Hyper
) -> Callable[[TrainState, Batch, StepKeys], tuple[TrainState, StepMetrics]]:
    """``step(state, batch, keys) -> (state, metrics)``: one optimizer step on ``batch``.

    Augment (``keys.augment``), forward with dropout (``keys.dropout``) on the weights as
    deployed under QAT, loss = mean training loss over the real examples + L1/L2 penalty,
    direction from the optimizer, ``params += lr · direction``, then max-norm and the pruning
    masks (pruned weights are zeroed after every update, so they stay exactly zero)."""
    static = setup.static
    loss_hyper = losses.LossHyper(hyper.label_smoothing, hyper.focal_gamma, hyper.huber_delta)

    def objective(params: Any, state: Any, batch: Batch, key: jax.Array) -> Any:
        if static.quantize == "qat":  # the forward pass sees the weights it will be deployed with
            params = compress.fake_quantize(params, **_quantization(static, hyper))
        logits, new_state = setup.model.apply(
            {"params": params, **state},
            batch.x,
            train=True,
            dropout_rate=hyper.dropout,
            dropout_key=key,
            mask=batch.mask > 0,
            mutable=list(state),
            traced=hyper.model_traced,
        )
        logits = as_outputs(logits, static.task)
        per_example = losses.LOSSES[static.loss](logits, batch.y, loss_hyper)
        total = jnp.sum(per_example * batch.mask)
        if static.task == "classification":
            correct = jnp.sum((jnp.argmax(logits, -1) == batch.y) * batch.mask)
        else:  # no accuracy for a regression: its history records NaN
            correct = jnp.float32(jnp.nan)
        # Mean over the real examples of the batch: the padded tail of the last batch weighs 0.
        data_term = total / jnp.maximum(jnp.sum(batch.mask), 1.0)
        penalty = regularize.weight_penalty(params, hyper.l1, hyper.l2)
        return data_term + penalty, (StepMetrics(total, correct), new_state)

    gradient = jax.grad(objective, has_aux=True)

    def step(state: TrainState, batch: Batch, keys: StepKeys) -> tuple[TrainState, StepMetrics]:
        batch = batch._replace(x=random_shift(keys.augment, batch.x, static.max_shift))
        params = state.variables["params"]
        others = {name: value for name, value in state.variables.items() if name != "params"}
        grads, (metrics, new_others) = gradient(params, others, batch, keys.dropout)
        updates, opt_state = setup.direction.update(grads, state.opt_state, params)
        lr = scheduled_rate(setup, hyper, state.step, state.lr_scale)
        params = jax.tree.map(jnp.add, params, scale_updates(updates, lr))
        if static.max_norm:
            params = regularize.max_norm(params, hyper.max_norm)
        if state.masks is not None:
            params = compress.apply_masks(params, state.masks)
        variables = {"params": params, **new_others}
        return state._replace(
            variables=variables, opt_state=opt_state, step=state.step + 1
        ), metrics

    return step


def epoch_masks(static: StaticSpec, hyper: Hyper, params: Any, epoch: jax.Array) -> Any:
    """This epoch's pruning masks, from the current magnitudes (None: no pruning)."""
    if static.prune == "none":
        return None
    sparsity = compress.zhu_gupta_sparsity(
        epoch, final=hyper.sparsity, start=static.prune_start, end=static.prune_end
    )
    return compress.magnitude_masks(
        params, sparsity, scope=static.prune_scope, structure=static.prune_structure
    )


def epoch_order(key: jax.Array, epoch: jax.Array, n: int, batch_size: int) -> jax.Array:
    """[steps, batch_size] example indices of ``epoch``: a permutation keyed by
    ``fold_in(key, epoch)``, its tail padded with index 0 (masked out by the batch mask)."""
    steps = math.ceil(n / batch_size)
    order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    return jnp.pad(order, (0, steps * batch_size - n)).reshape(steps, batch_size)


def make_train_epoch(
    setup: TrainSetup, hyper: Hyper, keys: RunKeys, x_train: jax.Array, y_train: jax.Array
) -> Callable[[TrainState, jax.Array], tuple[TrainState, EpochMetrics]]:
    """``train_epoch(state, epoch) -> (state, metrics)``: prune to this epoch's masks, then one
    step per mini-batch of the epoch's shuffled, padded order (``state.lr_scale`` scales the
    rate throughout); the loss and accuracy are means over the epoch's real examples."""
    static, n = setup.static, setup.n_train
    steps, batch_mask = _padded_batches(n, static.batch_size)
    step = make_train_step(setup, hyper)

    def train_epoch(state: TrainState, epoch: jax.Array) -> tuple[TrainState, EpochMetrics]:
        masks = epoch_masks(static, hyper, state.variables["params"], epoch)
        variables = state.variables
        if masks is not None:
            variables = {**variables, "params": compress.apply_masks(variables["params"], masks)}
        state = state._replace(variables=variables, step=epoch * steps, masks=masks)
        order = epoch_order(keys.data_order, epoch, n, static.batch_size)

        def body(
            carry: tuple[TrainState, jax.Array, jax.Array], rows: tuple[jax.Array, jax.Array]
        ) -> tuple[Any, None]:
            state, loss_sum, correct_sum = carry
            index, mask = rows
            batch = Batch(x_train[index], y_train[index], mask.astype(jnp.float32))
            state, metrics = step(state, batch, step_keys(keys, state.step))
            return (state, loss_sum + metrics.loss_sum, correct_sum + metrics.correct), None

        init = (state, jnp.float32(0.0), jnp.float32(0.0))
        (state, loss_sum, correct_sum), _ = jax.lax.scan(body, init, (order, batch_mask))
        return state, EpochMetrics(loss_sum / n, correct_sum / n)

    return train_epoch


def early_stopping_update(
    stopping: StoppingState,
    variables: Any,
    val_loss: jax.Array,
    train_loss: jax.Array,
    epoch: jax.Array,
    *,
    min_delta: jax.Array,
    patience: int,
    eligible_from: int,
) -> StoppingState:
    """Early stopping after 0-based ``epoch`` whose weights are ``variables``.

    An epoch improves when ``val_loss < best − min_delta``; it is *eligible* (may be best or a
    reason to stop) from epoch ``eligible_from`` (1-based) on: before pruning reaches its final
    sparsity, restore-best must never bring back a denser model. The run stays active while
    ``wait < patience`` (``patience`` 0: never stops) and both losses are finite."""
    eligible = epoch + 1 >= eligible_from
    improved = eligible & (val_loss < stopping.best_val_loss - min_delta)
    wait = jnp.where(improved | ~eligible, 0, stopping.wait + 1)
    diverged = ~(jnp.isfinite(train_loss) & jnp.isfinite(val_loss))
    patience_left = (patience == 0) | (wait < patience)
    return StoppingState(
        best_variables=jax.tree.map(
            lambda a, b: jnp.where(improved, a, b), variables, stopping.best_variables
        ),
        best_val_loss=jnp.where(improved, val_loss, stopping.best_val_loss),
        best_epoch=jnp.where(improved, epoch + 1, stopping.best_epoch),
        wait=wait,
        active=patience_left & ~diverged,
        diverged=diverged,
        epochs_run=stopping.epochs_run + 1,
    )


def eligible_from(static: StaticSpec) -> int:
    """The first 1-based epoch early stopping may count: once pruning holds its final sparsity."""
    return static.prune_end if static.prune != "none" else 0


def make_run_epoch(
    setup: TrainSetup, hyper: Hyper, data: DataArrays, keys: RunKeys
) -> Callable[[RunState, jax.Array], tuple[RunState, EpochRecord]]:
    """``run_epoch(state, epoch) -> (state, record)``: train one epoch, validate, update early
    stopping and reduce-on-plateau; an epoch after the run stopped is skipped (``lax.cond``)
    and recorded as NaN."""
    static = setup.static
    train_epoch = make_train_epoch(setup, hyper, keys, data.x_train, data.y_train)
    apply_eval = functools.partial(predict, setup.model, hyper)

    def run_epoch(carry: RunState, epoch: jax.Array) -> tuple[RunState, EpochRecord]:
        first_step = epoch * setup.steps_per_epoch
        first_lr = scheduled_rate(setup, hyper, first_step, carry.plateau.scale)
        train, metrics = train_epoch(carry.train._replace(lr_scale=carry.plateau.scale), epoch)
        # QAT validates the quantized model it trains; PTQ quantizes only the final weights.
        variables = train.variables
        validated = deployed(static, hyper, variables) if static.quantize == "qat" else variables
        val = evaluate(
            apply_eval,
            validated,
            data.x_val,
            data.y_val,
            static.eval_batch_size,
            setup.num_classes,
            static.task,
        )
        stopping = early_stopping_update(
            carry.stopping,
            variables,
            val.loss,
            metrics.train_loss,
            epoch,
            min_delta=hyper.min_delta,
            patience=static.patience,
            eligible_from=eligible_from(static),
        )
        plateau = schedules.plateau_update(
            carry.plateau,
            val.loss,
            factor=hyper.plateau_factor,
            patience=hyper.plateau_patience,
            threshold=hyper.plateau_threshold,
            min_scale=hyper.plateau_min_scale,
            enabled=static.plateau,
        )
        record = EpochRecord(
            lr=first_lr,
            train_loss=metrics.train_loss,
            train_accuracy=metrics.train_accuracy,
            val_loss=val.loss,
            val_accuracy=val.accuracy,
            val_f1_macro=val.f1_macro,
        )
        return RunState(train, stopping, plateau), record

    def skip_epoch(carry: RunState, epoch: jax.Array) -> tuple[RunState, EpochRecord]:
        nan = jnp.float32(jnp.nan)
        return carry, EpochRecord(nan, nan, nan, nan, nan, nan)

    def epoch_or_skip(carry: RunState, epoch: jax.Array) -> tuple[RunState, EpochRecord]:
        return jax.lax.cond(carry.stopping.active, run_epoch, skip_epoch, carry, epoch)

    return epoch_or_skip


def final_evaluation(
    setup: TrainSetup, hyper: Hyper, variables: Any, data: DataArrays
) -> FinalEvaluation:
    """Evaluate ``variables`` as deployed on validation and test; count its parameters, those
    left nonzero by pruning, and the deployed model's storage."""
    static = setup.static
    final = deployed(static, hyper, variables)
    apply_eval = functools.partial(predict, setup.model, hyper)
    leaves = jax.tree.leaves(final["params"])
    batch, classes = static.eval_batch_size, setup.num_classes
    return FinalEvaluation(
        val=evaluate(apply_eval, final, data.x_val, data.y_val, batch, classes, static.task),
        test=evaluate(apply_eval, final, data.x_test, data.y_test, batch, classes, static.task),
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


def start_run(setup: TrainSetup, hyper: Hyper, data: DataArrays) -> RunState:
    """A run's state before its first epoch: initial variables from its INIT key, no best yet."""
    train = init_train_state(setup, hyper, run_keys(hyper.seed).init, data.x_train[:1])
    return RunState(train, init_stopping(train.variables), schedules.plateau_init())


def train_epochs(
    setup: TrainSetup, hyper: Hyper, data: DataArrays, state: RunState, first: int, last: int
) -> tuple[RunState, EpochRecord]:
    """Epochs ``first`` to ``last - 1`` (0-based) from ``state``: one ``lax.scan`` of
    :func:`make_run_epoch`. Every key is folded from the epoch or global step and the schedule
    is a function of ``train.epochs``, so epochs 0-3 then 3-9 give exactly the bits of 0-9."""
    run_epoch = make_run_epoch(setup, hyper, data, run_keys(hyper.seed))
    return jax.lax.scan(run_epoch, state, jnp.arange(first, last))


def finish_run(
    setup: TrainSetup, hyper: Hyper, data: DataArrays, end: RunState, history: EpochRecord
) -> RunOutput:
    """The run's output after its last epoch trained: the kept (restored-best or last)
    variables evaluated as deployed, with ``history`` (one entry per epoch trained so far)."""
    stopping = end.stopping
    kept = stopping.best_variables if setup.static.restore_best else end.train.variables
    final = final_evaluation(setup, hyper, kept, data)
    return RunOutput(
        history=history,
        val=final.val,
        test=final.test,
        best_epoch=stopping.best_epoch,
        epochs_run=stopping.epochs_run,
        diverged=stopping.diverged,
        params=final.params,
        nonzero_params=final.nonzero_params,
        model_bytes=final.model_bytes,
        variables=kept,
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
    setup = train_setup(static, num_classes, hyper, data.x_train.shape[0], numerics)
    end, history = train_epochs(setup, hyper, data, start_run(setup, hyper, data), 0, static.epochs)
    return finish_run(setup, hyper, data, end, history)


def train_rung(
    static: StaticSpec,
    num_classes: int,
    first: int,
    last: int,
    hyper: Hyper,
    data: DataArrays,
    state: RunState | None = None,
    *,
    numerics: str | None = None,
) -> tuple[RunState, RunOutput]:
    """One rung of successive halving: epochs ``first`` to ``last - 1`` from ``state`` (None:
    a fresh run, ``first`` 0), the state to continue from, and the run's output as if it ended
    here, its history holding this rung's epochs only. A run trained rung by rung to
    ``train.epochs`` has the bits of :func:`train_run`."""
    setup = train_setup(static, num_classes, hyper, data.x_train.shape[0], numerics)
    begin = start_run(setup, hyper, data) if state is None else state
    end, history = train_epochs(setup, hyper, data, begin, first, last)
    return end, finish_run(setup, hyper, data, end, history)


def output_problem(config: RunConfig, split: Split) -> str | None:
    """Why the model of ``config`` cannot train on ``split`` (one line), or None: it must
    build, initialize on one example and return one output row per example with the task's
    width (classes, or the targets' outputs). Shapes only (``jax.eval_shape``): no compute."""
    static, hyper = static_spec(config), hyper_from_config(config)
    example = jnp.zeros((1, *split.x_train.shape[1:]), jnp.float32)
    try:
        network = build_network(config.model, split.num_outputs)
        variables = jax.eval_shape(
            lambda x: network.init(
                jax.random.key(0), x, dropout_rate=hyper.dropout, traced=hyper.model_traced
            ),
            example,
        )
        outputs = jax.eval_shape(lambda v, x: predict(network, hyper, v, x), variables, example)
    except Exception as error:  # the user's module: any error is theirs, said in one line
        detail = " ".join(f"{type(error).__name__}: {error}".split())
        return f"the model does not run on one example of shape {example.shape}: {detail}"[:400]
    want = split.num_outputs
    shape = tuple(outputs.shape)
    fits = shape == (1, want) or (static.task == "regression" and want == 1 and shape == (1,))
    if fits:
        return None
    wanted = f"(1, {want})" + (" or (1,)" if static.task == "regression" and want == 1 else "")
    what = f"{want} classes" if static.task == "classification" else f"{want} target output(s)"
    return (
        f"the model returns shape {shape} for one example; task '{static.task}' with {what} "
        f"needs {wanted}"
    )
