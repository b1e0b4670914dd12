"""Experiment and sweep files: their models, validation at the edge, dotted-key flatten/merge.

Everything read from disk passes through here once. Past this module, configs are
validated pydantic models or flat ``{"dotted.key": value}`` dicts and are trusted.
Every problem is raised as :class:`ConfigError`, which names the file and the key.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from sweepbook.metrics import METRICS
from sweepbook.registry import registry_at
from sweepbook.usercode import UserCodeError, register_references

FlatConfig = dict[str, Any]


class ConfigError(ValueError):
    """A bad experiment or sweep file. ``str(error)`` is one line: file, key, what was expected."""

    def __init__(self, path: Path | str, key: str | None, message: str) -> None:
        self.path = Path(path)
        self.key = key
        # One line whatever the cause says: logs and the CLI's contract rely on it.
        self.message = " ".join(message.split())
        # A file name may hold a newline or other control character: quote it, then.
        shown = str(self.path) if str(self.path).isprintable() else repr(str(self.path))
        where = f"{shown}: key '{key}'" if key else shown
        super().__init__(f"{where}: {self.message}")


class FieldError(ValueError):
    """Raised by a cross-field validator to blame one field (``field``, relative to its model)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


# Most numbers of a config end up in float32 or int32 arrays (hyper-parameters, shapes, seeds),
# so a value outside those types is an input error, not something to overflow later; the few
# that stay Python numbers (split fractions and seeds) mean nothing outside that range either.
INT32_MAX = int(np.iinfo(np.int32).max)
# Python floats: comparing against NumPy float32 scalars would cast (and overflow) the input.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_MIN = float(np.finfo(np.float32).smallest_subnormal)


def representable(value: Any) -> str | None:
    """Why ``value`` (a number, or a list of them) cannot be a float32 / int32; None if it can."""
    if isinstance(value, list):
        return next((r for r in map(representable, value) if r), None)
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) > INT32_MAX:
        return f"{value} does not fit a 32-bit integer (at most {INT32_MAX})"
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if abs(value) > _FLOAT32_MAX:
            return f"{value:g} is beyond float32 range (at most {_FLOAT32_MAX:.3g})"
        if value != 0.0 and abs(value) < _FLOAT32_MIN:
            return f"{value:g} rounds to 0 in float32"
    return None


class _Strict(BaseModel):
    # strict: a TOML string is never silently turned into a number (ints still widen to floats).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _fits_32_bits(cls, value: Any) -> Any:
        problem = representable(value)
        if problem:
            raise ValueError(problem)
        return value


Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Positive = Annotated[float, Field(gt=0.0)]

# Where each kind of component is registered (name -> builder), named by reference: the
# modules that build components import this one for their config classes, so this one
# imports them only when a name is checked (see registry.registry_at).
MODELS_AT = "sweepbook.models:MODELS"
DATASETS_AT = "sweepbook.data:DATASETS"
OPTIMIZERS_AT = "sweepbook.optim:OPTIMIZERS"
SCHEDULES_AT = "sweepbook.schedules:SCHEDULES"
LOSSES_AT = "sweepbook.losses:LOSSES"
HOST_METRICS_AT = "sweepbook.tasks:HOST_METRICS"

Task = Literal["classification", "regression"]


def _registered(reference: str) -> AfterValidator:
    """A field naming a component: a registered name, or the registry's one-line "unknown ...;
    did you mean ...?" error."""
    return AfterValidator(lambda name: registry_at(reference).check(name))


def _required_keys(model: BaseModel, keys: tuple[str, ...], where: str) -> None:
    """Refuse ``model`` when one of the ``keys`` its named component reads is not given."""
    for key in keys:
        if getattr(model, key) is None:
            raise FieldError(key, f"required when {where}")


# A value of ``[data.args]``: what TOML writes as a scalar or a list of scalars.
DataArg = str | bool | int | float | list[str | bool | int | float]


class DataConfig(_Strict):
    """Which dataset, and how it is split into train / validation / test."""

    name: Annotated[str, _registered(DATASETS_AT)]
    # A relative path is read from the experiment file's folder (see data.resolve_path).
    path: str | None = None
    # Keyword arguments of a user's loader (see the sweepbook.data docstring); built-in
    # datasets take none.
    args: dict[str, DataArg] = {}
    # Holdout splits validate on this share; K-fold splits on a fold, and ignore it (so that
    # one sweep can compare the two on one base experiment). With a loader's own test split,
    # the share is of the loader's training examples.
    val_fraction: Fraction | None = None
    # Required, except for a user's loader that returns its own test split (then it must be
    # absent, which only the loaded data can tell: data.split_dataset checks it).
    test_fraction: Fraction | None = None
    split_seed: Annotated[int, Field(ge=0)]
    max_samples: Annotated[int, Field(gt=0)] | None = None
    # How train and validation are separated once the test set is held out: one holdout split,
    # or K folds of which ``fold`` is the validation set (a sweep's ``folds`` replicates over it).
    split: Literal["holdout", "stratified_holdout", "kfold", "stratified_kfold"] = (
        "stratified_holdout"
    )
    folds: Annotated[int, Field(ge=2)] | None = None
    fold: Annotated[int, Field(ge=0)] = 0
    # Keep this fraction of the training part (stratified, seeded by split_seed): small data.
    train_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    # "standardize": subtract the training set's mean and divide by its std (one value each);
    # "standardize_features": the same per feature (each trailing position its own).
    normalize: Literal["none", "standardize", "standardize_features"] = "none"
    # What pixels are divided by before anything else: "auto" uses the range the format
    # defines (digits 16, MNIST and uint8 files 255) and keeps floats already in [0, 1];
    # other pixels need a number (255 to divide, 1 to keep). See data.pixel_divisor.
    scale: Literal["auto"] | Positive = "auto"

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.split in ("kfold", "stratified_kfold"):
            if self.folds is None:
                raise FieldError("folds", f"required for data.split = '{self.split}'")
            if self.fold >= self.folds:
                raise FieldError("fold", f"must be below data.folds = {self.folds}")
        else:
            if self.val_fraction is None:
                raise FieldError("val_fraction", f"required for data.split = '{self.split}'")
            if self.fold != 0 or self.folds is not None:
                raise FieldError(
                    "folds", "only used with data.split = 'kfold' or 'stratified_kfold'"
                )
        dataset = registry_at(DATASETS_AT)[self.name]
        if dataset.needs_path and not self.path:
            raise FieldError("path", f"required for data.name = '{self.name}'")
        if self.path and not (dataset.needs_path or dataset.user_loader):
            raise FieldError("path", f"not used by the embedded dataset '{self.name}'")
        if self.args and not dataset.user_loader:
            raise FieldError(
                "args", f"only a user's loader takes arguments, not data.name = '{self.name}'"
            )
        if self.test_fraction is None and not dataset.user_loader:
            raise FieldError("test_fraction", f"required for data.name = '{self.name}'")
        test_fraction = self.test_fraction or 0.0
        if self.folds is None and (self.val_fraction or 0.0) + test_fraction >= 1.0:
            raise FieldError(
                "test_fraction", "data.val_fraction + data.test_fraction must be below 1"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_empty_args(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # No [data.args], no key: flat configs (and so run ids) of built-in datasets stay as
        # they were before the table existed, and flatten/unflatten round-trips them.
        dumped: dict[str, Any] = handler(self)
        if not self.args:
            dumped.pop("args", None)
        return dumped

    def __hash__(self) -> int:
        # ``args`` is a dict, which pydantic's frozen hash cannot take; the canonical JSON can
        # (data.load_split caches on the config). Sorted keys: equal dicts, equal hashes.
        return hash(json.dumps(self.model_dump(), sort_keys=True))


class ModelConfig(_Strict):
    """The network. ``widths`` are the hidden layer sizes of an MLP."""

    kind: Annotated[str, _registered(MODELS_AT)]
    widths: list[Annotated[int, Field(gt=0)]] = []
    activation: Literal["relu", "tanh", "sigmoid", "gelu", "elu"] = "relu"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    batch_norm: bool = False
    # Weight initializer of every dense and conv layer; "default" keeps Flax's (LeCun normal).
    init: Literal[
        "default", "lecun_normal", "he_normal", "he_uniform", "glorot_normal", "glorot_uniform"
    ] = "default"
    # A user's model (``kind = "file.py:Net"``): the module's constructor arguments, static
    # (a compile group per value), and the numbers passed to its ``__call__`` as traced
    # scalars (runs differing only in them share one program). See models.user_model_spec.
    args: dict[str, Any] = {}
    traced: dict[str, float] = {}

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        spec = registry_at(MODELS_AT)[self.kind]
        if spec.calling == "flax":
            self._check_user_model()
        elif self.args or self.traced:
            key = "args" if self.args else "traced"
            raise FieldError(key, f"only a user's model takes [model.{key}], not '{self.kind}'")
        widths = spec.widths
        if widths == "required" and not self.widths:
            raise FieldError(
                "widths", f"must list at least one hidden width for model.kind = '{self.kind}'"
            )
        if widths == "forbidden" and self.widths:
            raise FieldError("widths", f"fixed by the {self.kind} architecture; remove it")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_tables(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # No [model.args] or [model.traced], no key: a built-in model's flat config (its run
        # id) is what it was before the tables existed, and flatten/unflatten round-trips it.
        dumped: dict[str, Any] = handler(self)
        for table in ("args", "traced"):
            if not getattr(self, table):
                dumped.pop(table, None)
        return dumped

    def _check_user_model(self) -> None:
        """A user's model builds itself from ``args``: the built-ins' architecture keys would be
        silently ignored, so they are refused."""
        for key in ("widths", "activation", "dropout", "batch_norm", "init"):
            # By value, not by presence: a run's flat config spells every key out.
            if getattr(self, key) != type(self).model_fields[key].default:
                raise FieldError(
                    key,
                    "applies to sweepbook's built-in models only; give your model its own "
                    "[model.args] (static) or [model.traced] (traced) values",
                )


Unit = Annotated[float, Field(ge=0.0, lt=1.0)]


class OptimizerConfig(_Strict):
    """Optax optimizer. ``momentum`` applies to SGD and RMSProp (``nesterov`` to SGD);
    ``b1``, ``b2``, ``eps`` to Adam and AdamW; ``decay`` (rho) and ``eps`` to RMSProp;
    ``eps`` and ``initial_accumulator`` to Adagrad; each defaults to Optax's value (the
    registered optimizer's ``defaults``, see :mod:`sweepbook.optim`). ``weight_decay`` is
    decoupled weight decay (Loshchilov & Hutter, 2019) for every optimizer, scaled by the
    learning rate as in PyTorch's AdamW; AdamW is Adam with it. ``weight_decay_mask`` says
    which parameters it shrinks."""

    name: Annotated[str, _registered(OPTIMIZERS_AT)]
    learning_rate: Positive
    momentum: Unit = 0.0
    nesterov: bool = False
    b1: Unit | None = None
    b2: Unit | None = None
    eps: Positive | None = None
    decay: Unit | None = None
    initial_accumulator: Annotated[float, Field(ge=0.0)] | None = None
    centered: bool = False
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    # Which parameters weight decay shrinks: "all" (PyTorch's and Optax's default) or
    # "weights" (dense and conv kernels; not biases, not batch-norm scales and offsets).
    weight_decay_mask: Literal["all", "weights"] = "all"

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, raw: Any) -> Any:
        """Fill the named optimizer's own numbers that the file leaves out (or null)."""
        name = raw.get("name") if isinstance(raw, dict) else None
        optimizers = registry_at(OPTIMIZERS_AT)
        if not isinstance(name, str) or name not in optimizers:
            return raw  # field validation reports the bad or missing name
        defaults = optimizers[name].defaults
        return {**raw, **{k: v for k, v in defaults.items() if raw.get(k) is None}}

    @model_validator(mode="after")
    def _check(self) -> OptimizerConfig:
        optimizers = registry_at(OPTIMIZERS_AT)
        if self.nesterov and not optimizers[self.name].takes_nesterov:
            takers = [f"'{n}'" for n, spec in optimizers.items() if spec.takes_nesterov]
            raise FieldError("nesterov", f"only used with optimizer.name = {' or '.join(takers)}")
        return self


class PlateauConfig(_Strict):
    """Reduce-on-plateau: multiply the learning rate by ``factor`` when validation loss has not
    improved by ``threshold`` (relative) for ``patience`` epochs; never below ``min_scale``
    times the scheduled rate. Off when ``factor`` is not given."""

    factor: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    patience: Annotated[int, Field(ge=0)] = 0
    threshold: Annotated[float, Field(ge=0.0)] = 0.0
    min_scale: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0


class ScheduleConfig(_Strict):
    """Learning-rate schedule over training, in epochs (fractional within an epoch).

    ``warmup_epochs`` > 0 ramps linearly from 0 before any schedule; ``restart_epochs`` gives
    cosine annealing warm restarts (SGDR) with that period; ``cycle_epochs`` is the half period
    of the triangular cyclic schedule between ``min_lr`` and the learning rate."""

    name: Annotated[str, _registered(SCHEDULES_AT)] = "constant"
    warmup_epochs: Annotated[float, Field(ge=0.0)] = 0.0
    gamma: Positive | None = None
    step_epochs: Positive | None = None
    min_lr: Annotated[float, Field(ge=0.0)] | None = None
    restart_epochs: Positive | None = None
    cycle_epochs: Positive | None = None
    pct_start: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    div_factor: Positive | None = None
    final_div_factor: Positive | None = None
    plateau: PlateauConfig = PlateauConfig()

    @model_validator(mode="after")
    def _check(self) -> ScheduleConfig:
        requires = registry_at(SCHEDULES_AT)[self.name].requires
        _required_keys(self, requires, f"schedule.name = '{self.name}'")
        return self


class RegularizationConfig(_Strict):
    """Penalties and constraints. ``l1`` and ``l2`` add ``l1·Σ|w| + l2·Σw²`` over weights
    (not biases) to the loss (both: elastic net); ``max_norm`` rescales each unit's incoming
    weight vector to at most that L2 norm after every step; ``clip_norm`` / ``clip_value``
    clip gradients by global norm / elementwise. A constraint is off when not given."""

    l1: Annotated[float, Field(ge=0.0)] = 0.0
    l2: Annotated[float, Field(ge=0.0)] = 0.0
    max_norm: Positive | None = None
    clip_norm: Positive | None = None
    clip_value: Positive | None = None


class LossConfig(_Strict):
    """Cross-entropy, with optional label smoothing, or focal loss (Lin et al., 2017)."""

    name: Annotated[str, _registered(LOSSES_AT)] = "cross_entropy"
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    focal_gamma: Annotated[float, Field(ge=0.0)] | None = None
    # Where the Huber loss turns from quadratic to linear (in target units).
    huber_delta: Positive = 1.0

    @model_validator(mode="after")
    def _check(self) -> LossConfig:
        requires = registry_at(LOSSES_AT)[self.name].requires
        _required_keys(self, requires, f"loss.name = '{self.name}'")
        return self


class PruneConfig(_Strict):
    """Magnitude pruning to ``sparsity`` (the fraction of weights, or of hidden units, removed).

    ``oneshot`` prunes once at the start of epoch ``start_epoch`` (0-based) and fine-tunes for the
    remaining epochs; ``gradual`` follows Zhu & Gupta's (2017) cubic schedule from ``start_epoch``
    to ``end_epoch``. ``scope`` ranks weights per layer or over all layers; ``structure`` removes
    single weights or whole neurons / filters. Pruned weights stay exactly zero."""

    method: Literal["none", "oneshot", "gradual"] = "none"
    sparsity: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    start_epoch: Annotated[int, Field(ge=0)] = 0
    end_epoch: Annotated[int, Field(gt=0)] | None = None
    scope: Literal["layer", "global"] = "layer"
    structure: Literal["unstructured", "neurons"] = "unstructured"

    @model_validator(mode="after")
    def _check(self) -> PruneConfig:
        if self.method == "gradual":
            if self.end_epoch is None:
                raise FieldError("end_epoch", "required when compress.prune.method = 'gradual'")
            if self.end_epoch <= self.start_epoch:
                raise FieldError("end_epoch", "must be after compress.prune.start_epoch")
        elif self.end_epoch is not None:
            raise FieldError("end_epoch", "only used when compress.prune.method = 'gradual'")
        return self

    @property
    def done_epoch(self) -> int:
        """The (exclusive, 0-based) epoch from which the final sparsity holds."""
        if self.method == "gradual":
            assert self.end_epoch is not None
            return self.end_epoch
        return self.start_epoch + 1 if self.method == "oneshot" else 0


class QuantizeConfig(_Strict):
    """Weight quantization: ``ptq`` quantizes the trained weights (post-training), ``qat``
    trains through fake quantization with a straight-through estimator. ``format`` "int" is
    symmetric uniform with ``bits`` bits, per tensor or per output channel; "fp16"/"bf16" cast."""

    mode: Literal["none", "ptq", "qat"] = "none"
    format: Literal["int", "fp16", "bf16"] = "int"
    bits: Annotated[int, Field(ge=2, le=16)] | None = None
    per_channel: bool = False

    @model_validator(mode="after")
    def _check(self) -> QuantizeConfig:
        if self.mode != "none" and self.format == "int" and self.bits is None:
            raise FieldError("bits", "required for integer quantization")
        return self


class CompressConfig(_Strict):
    prune: PruneConfig = PruneConfig()
    quantize: QuantizeConfig = QuantizeConfig()


class AugmentConfig(_Strict):
    """Random shifts of training images by up to ``max_shift`` pixels (0: off), seeded."""

    max_shift: Annotated[int, Field(ge=0)] = 0


class EarlyStoppingConfig(_Strict):
    """Stop when validation loss has not improved by ``min_delta`` for ``patience`` epochs.

    ``patience = 0`` turns early stopping off. ``restore_best`` evaluates the parameters of the
    best validation epoch rather than the last one.
    """

    patience: Annotated[int, Field(ge=0)] = 0
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0
    restore_best: bool = True


class TrainConfig(_Strict):
    epochs: Annotated[int, Field(gt=0)]
    batch_size: Annotated[int, Field(gt=0)]
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    # Evaluation only: bounds memory, does not change what is learned.
    eval_batch_size: Annotated[int, Field(gt=0)] = 1024


class ExperimentConfig(_Strict):
    """A full base experiment, as in ``experiments/*.toml``."""

    description: str = ""
    # What the targets are: class indices ("classification") or numbers ("regression").
    task: Task = "classification"
    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig
    # Factories, not instances: validating a default names a component, and so imports the
    # module that registers it (JAX, Optax), which importing config must not do.
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    regularization: RegularizationConfig = RegularizationConfig()
    loss: LossConfig = Field(default_factory=LossConfig)
    augment: AugmentConfig = AugmentConfig()
    compress: CompressConfig = CompressConfig()
    train: TrainConfig
    # Users' own metrics, by code reference (``"file.py:balanced_accuracy"``): computed on the
    # host from each run's predictions, stored as ``test.<name>`` and ``val.<name>``.
    metrics: list[Annotated[str, _registered(HOST_METRICS_AT)]] = []

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """A regression's defaults where classification's cannot apply: the mean squared error
        as loss and an unstratified split (both only when the file does not choose)."""
        if not isinstance(data, dict) or data.get("task") != "regression":
            return data
        data = dict(data)
        for section, key, value in (("loss", "name", "mse"), ("data", "split", "holdout")):
            table = data.get(section, {})
            if isinstance(table, dict) and key not in table:
                data[section] = {**table, key: value}
        return data

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        loss_task = registry_at(LOSSES_AT)[self.loss.name].task
        if loss_task not in (None, self.task):
            raise FieldError(
                "loss.name",
                f"'{self.loss.name}' is a {loss_task} loss, but task = '{self.task}'",
            )
        if self.task == "regression" and self.loss.label_smoothing:
            raise FieldError("loss.label_smoothing", "smooths class labels: classification only")
        if self.schedule.warmup_epochs >= self.train.epochs:
            raise FieldError("schedule.warmup_epochs", "must be shorter than train.epochs")
        prune = self.compress.prune
        if prune.method != "none" and prune.done_epoch > self.train.epochs:
            key = "end_epoch" if prune.method == "gradual" else "start_epoch"
            raise FieldError(f"compress.prune.{key}", "pruning must finish within train.epochs")
        return self


class RunConfig(ExperimentConfig):
    """One run: an experiment with every sweep override applied, plus its seed."""

    seed: Annotated[int, Field(ge=0)]


# The headline metric of a sweep that does not name one, per task.
DEFAULT_METRIC = {"classification": "test.accuracy", "regression": "test.rmse"}


class ReportConfig(_Strict):
    title: str | None = None
    question: str | None = None
    metric: str = DEFAULT_METRIC["classification"]
    direction: Literal["max", "min"] | None = None
    compare: list[str] | None = None
    # Paper output (figures, tables/results.tex): settings of the report, not of any run, so
    # run ids never depend on them.
    venue: str = "article"  # figure widths and font sizes: see sweepbook/venues.py
    table: Annotated[list[str], Field(max_length=3)] = []  # metrics beside the headline
    table_ci: bool = False  # the headline's 95% bootstrap CI in the paper table too
    labels: dict[str, str] = {}  # human names of axes and metrics: {"train.batch_size": "Batch"}

    @field_validator("venue")
    @classmethod
    def _known_venue(cls, name: str) -> str:
        from sweepbook.venues import unknown_venue_message  # tueplots only when a sweep loads

        problem = unknown_venue_message(name)
        if problem:
            raise ValueError(problem)
        return name


class LauncherConfig(_Strict):
    """``[launcher]``: how ``sweepbook run --launcher slurm|local`` asks for resources, per array
    task (one chunk of one compile group). Command-line flags override each key. The table does
    not choose the launcher: the same sweep file runs inline on a laptop and as an array on a
    cluster."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time: Annotated[int, Field(ge=1)] = 60  # minutes per task before SLURM stops it
    gpus: Annotated[int, Field(ge=0)] | None = None  # per task; local: default the host's GPUs
    cpus: Annotated[int, Field(ge=1)] | None = None  # per task
    mem_gb: Annotated[float, Field(gt=0)] | None = None  # per task
    # Tasks running at once: SLURM's %N array throttle; local default 1 (one device to share).
    array_parallelism: Annotated[int, Field(ge=1)] | None = None
    # Shell lines run before each task, e.g. "module load cuda/12.4".
    setup: list[str] = []


class HalvingConfig(_Strict):
    """``[halving]``: successive halving over configurations (see :mod:`sweepbook.halving`).
    Every configuration trains ``min_epochs``; the best ``1/eta`` by their mean ``metric`` over
    seeds (and folds) continue, ``eta`` times longer each rung, up to ``train.epochs``. A setting
    of the sweep, not of any run: run ids never depend on it."""

    min_epochs: Annotated[int, Field(ge=1)]
    eta: Annotated[int, Field(ge=2)] = 3
    # The rung's ranking: by default the validation twin of the report's metric (the test set
    # must not choose which configurations live).
    metric: str | None = None


class SweepConfig(BaseModel):
    """A sweep file: which experiment, which seeds, which axes. Keys of the override tables are
    dotted experiment keys; they are checked against the experiment in :func:`load_sweep`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    experiment: str
    seeds: Annotated[list[Annotated[int, Field(ge=0, le=INT32_MAX)]], Field(min_length=1)]
    # Train every run this many times with identical inputs: a test of determinism.
    repeat: Annotated[int, Field(ge=1, le=INT32_MAX)] = 1
    set: dict[str, Any] = {}
    grid: dict[str, Any] = {}
    zip: dict[str, Any] = {}
    random: dict[str, Any] = {}
    search: dict[str, Any] = {}
    variant: list[dict[str, Any]] = []
    folds: (
        Annotated[list[Annotated[int, Field(ge=0, le=INT32_MAX)]], Field(min_length=1)]
        | Literal["all"]
        | None
    ) = None
    report: ReportConfig = ReportConfig()
    launcher: LauncherConfig = LauncherConfig()
    halving: HalvingConfig | None = None


DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")


class Distribution(BaseModel):
    """One ``[random]`` axis: ``{ uniform = [lo, hi] }``, ``{ loguniform = [lo, hi] }``,
    ``{ int = [lo, hi] }`` (both ends included) or ``{ choice = [a, b, ...] }``."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["uniform", "loguniform", "int", "choice"]
    values: list[Any]


class RandomSearch(BaseModel):
    model_config = ConfigDict(frozen=True)

    samples: int
    seed: int
    axes: dict[str, Distribution]


class ModelSearch(BaseModel):
    model_config = ConfigDict(frozen=True)

    trials: int
    batch: int
    seed: int
    axes: dict[str, Distribution]


class Replicates(BaseModel):
    """The runs a configuration is trained as: each seed, each ``repeat`` times."""

    model_config = ConfigDict(frozen=True)

    seeds: list[int]
    repeat: int = 1


class Sweep(BaseModel):
    """A validated sweep, resolved against its experiment. Axes are flat dotted keys."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    path: Path
    experiment_path: Path
    experiment: ExperimentConfig
    seeds: list[int]
    repeat: int = 1
    set: FlatConfig
    grid: dict[str, list[Any]]
    zip: dict[str, list[Any]]
    variants: list[tuple[str, FlatConfig]]
    # A variant may replicate differently (e.g. one seed repeated against several seeds).
    variant_replicates: dict[str, Replicates] = {}
    random: RandomSearch | None
    search: ModelSearch | None
    folds: list[int] | Literal["all"] | None
    report: ReportConfig
    question: str
    launcher: LauncherConfig = LauncherConfig()
    halving: HalvingConfig | None = None

    def replicates(self, variant: str | None) -> Replicates:
        """Seeds and repeats of ``variant``'s runs (the sweep's, unless the variant sets them)."""
        default = Replicates(seeds=self.seeds, repeat=self.repeat)
        return self.variant_replicates.get(variant, default) if variant else default

    def section_of(self, key: str, variant: str | None = None) -> str | None:
        """Where the sweep file gives ``key`` a value, as the file spells it (``set``,
        ``grid``, ``zip``, ``variant[1]``, ``random``, ``search.space``); None when only the
        experiment does. With ``variant``, that variant's overrides are looked at first."""
        variants = [(f"variant[{i}]", name, flat) for i, (name, flat) in enumerate(self.variants)]
        mine = [(where, flat) for where, name, flat in variants if name == variant]
        others = [(where, flat) for where, name, flat in variants if name != variant]
        sections: list[tuple[str, Any]] = [
            *mine,
            ("zip", self.zip),
            ("grid", self.grid),
            ("random", self.random.axes if self.random else {}),
            ("search.space", self.search.axes if self.search else {}),
            ("set", self.set),
            *others,
        ]
        # "model.widths.0" (an element of a list) is given by whoever gives "model.widths".
        parts = key.split(".")
        given = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
        return next((where for where, keys in sections if given & set(keys)), None)

    def blame(self, key: str | None, message: str, variant: str | None = None) -> ConfigError:
        """A problem with ``key``, named as the file that gives it its value spells it:
        ``sweep.toml: key 'set.train.epochs'`` or ``experiment.toml: key 'train.epochs'``."""
        section = self.section_of(key, variant) if key else None
        if key is None or section is None:
            return ConfigError(self.experiment_path if key else self.path, key, message)
        return ConfigError(self.path, f"{section}.{key}", message)

    @property
    def axes(self) -> list[str]:
        """The swept keys, in file order; ``variant`` first when variants are given. Seeds and
        folds are replicates, not axes: results are aggregated over them."""
        random = list(self.random.axes) if self.random else []
        searched = list(self.search.axes) if self.search else []
        variants = ["variant"] if self.variants else []
        return variants + list(self.zip) + list(self.grid) + random + searched


# --- dotted keys ---------------------------------------------------------------------------


class DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"key '{key}' is given twice")


def flatten(
    tree: dict[str, Any], prefix: str = "", *, is_leaf: Callable[[Any], bool] | None = None
) -> FlatConfig:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``. Lists, and dicts for which ``is_leaf`` is true,
    are values, never descended into.

    Raises :class:`DuplicateKeyError` when two spellings name one key
    (``"a.b" = 1`` beside ``a = {b = 2}``)."""
    flat: FlatConfig = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        descend = isinstance(value, dict) and not (is_leaf and is_leaf(value))
        nested = flatten(value, f"{dotted}.", is_leaf=is_leaf) if descend else {dotted: value}
        for name, leaf in nested.items():
            if name in flat:
                raise DuplicateKeyError(name)
            flat[name] = leaf
    return flat


def unflatten(flat: FlatConfig) -> dict[str, Any]:
    """Inverse of :func:`flatten`."""
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


# --- reading files -------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(path, None, "is a directory, not a TOML file")
    if not path.is_file():
        raise ConfigError(path, None, "file not found")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, None, f"invalid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, None, f"cannot read file: {error}") from None


def _shown(value: Any, limit: int = 60) -> str:
    """A value as the message quotes it: a 400-digit number or a whole table would drown
    the one line that says what is wrong."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _first_error(path: Path, error: ValidationError, prefix: str = "") -> ConfigError:
    detail = error.errors()[0]
    # Union members appear in the location as tags like "list[int]": not keys of the file.
    loc = [str(part) for part in detail["loc"] if not (isinstance(part, str) and "[" in part)]
    cause = detail.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        loc.append(cause.field)
    key = ".".join(loc)
    message = detail["msg"].removeprefix("Value error, ")
    if detail["type"] == "extra_forbidden":
        message = "unknown key"
    elif detail["type"] == "missing":
        message = "required key is missing"
    elif "input" in detail and detail["type"] not in ("value_error",):
        message = f"{message} (got {_shown(detail['input'])})"
    return ConfigError(path, f"{prefix}{key}" if key else None, message)


def load_experiment(path: Path) -> ExperimentConfig:
    """Read and validate an experiment file, first importing the users' code it names by
    reference (resolved against the file's folder) so that validation finds it registered."""
    raw = read_toml(path)
    try:
        register_references(_flat_section(path, "", raw), path.parent.resolve())
    except UserCodeError as error:
        raise ConfigError(path, error.key, str(error)) from None
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise _first_error(path, error) from None


def resolve_experiment_path(sweep_path: Path, name: str) -> Path:
    """``experiment = "digits_mlp"`` names ``experiments/digits_mlp.toml`` beside ``sweeps/``;
    a value ending in ``.toml`` is a path relative to the sweep file."""
    if name.endswith(".toml"):
        return (sweep_path.parent / name).resolve()
    return (sweep_path.parent.parent / "experiments" / f"{name}.toml").resolve()


def _missing_experiment(name: str, expected: Path) -> str:
    """Where the experiment was looked for, and the closest experiment that exists there."""
    folder = expected.parent
    existing = sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []
    wanted = name.removesuffix(".toml").rpartition("/")[2]
    close = difflib.get_close_matches(wanted, existing, n=1)
    if close:
        hint = f"; did you mean '{close[0]}'?"
    elif existing:
        hint = f"; {folder} has: {', '.join(existing[:8])}" + (", ..." if len(existing) > 8 else "")
    else:
        hint = ""
    return f"experiment file not found: {expected}{hint}"


_SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _leading_comment(path: Path) -> str:
    """The question a sweep answers: the comment block that opens its file, minus the
    ``Run:`` line (the command is shown separately in the report)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        text = stripped.lstrip("#").strip()
        if text and not text.lower().startswith("run:"):
            lines.append(text)
    return " ".join(lines)


def _flat_section(path: Path, section: str, table: dict[str, Any]) -> FlatConfig:
    try:
        return flatten(table)
    except DuplicateKeyError as error:
        raise ConfigError(
            path, f"{section}.{error.key}", "given twice (quoted and nested)"
        ) from None


def _check_keys(path: Path, section: str, keys: list[str], known: set[str]) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(path, f"{section}.{key}", f"the experiment has no such key{hint}")


def _axis_values(path: Path, section: str, key: str, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise ConfigError(path, f"{section}.{key}", "expected a list of values to sweep")
    if not values:
        raise ConfigError(path, f"{section}.{key}", "an axis needs at least one value")
    return values


def load_sweep(path: Path) -> Sweep:
    """Read and validate a sweep file and its experiment. Raises :class:`ConfigError`."""
    path = Path(path)
    parsed = _parse_sweep_file(path)
    experiment_path, experiment = _sweep_experiment(path, parsed)
    _register_sweep_references(path, parsed, experiment_path.parent)
    known = set(flatten(experiment.model_dump())) - {"description"}
    known |= _user_argument_keys(path, parsed, experiment)

    overrides = _flat_section(path, "set", parsed.set)
    _check_keys(path, "set", list(overrides), known)
    grid = _swept_section(path, "grid", parsed.grid, known)
    zipped = _swept_section(path, "zip", parsed.zip, known)
    if len({len(v) for v in zipped.values()}) > 1:
        lengths = ", ".join(f"'{k}' has {len(v)}" for k, v in zipped.items())
        raise ConfigError(path, "zip", f"zip axes move together, so need equal lengths: {lengths}")
    variants, variant_replicates = _variants(path, parsed, known)
    random = _random_search(path, parsed.random, known)
    search = _model_search(path, parsed.search, known)

    report = parsed.report
    if "metric" not in report.model_fields_set:
        report = report.model_copy(update={"metric": DEFAULT_METRIC[experiment.task]})
    sweep = Sweep(
        name=path.stem,
        path=path.resolve(),
        experiment_path=experiment_path,
        experiment=experiment,
        seeds=list(parsed.seeds),
        repeat=parsed.repeat,
        set=overrides,
        grid=grid,
        zip=zipped,
        variants=variants,
        variant_replicates=variant_replicates,
        random=random,
        search=search,
        folds=parsed.folds,
        report=report,
        question=parsed.report.question or _leading_comment(path),
        launcher=parsed.launcher,
        halving=_halving(path, parsed, report, experiment.task),
    )
    _check_each_key_given_once(sweep)
    _check_report_keys(sweep, known)
    return sweep


def _halving(
    path: Path, parsed: SweepConfig, report: ReportConfig, task: Task
) -> HalvingConfig | None:
    """``[halving]`` with its rung metric resolved (the validation twin of the headline)."""
    halving = parsed.halving
    if halving is None:
        return None
    if parsed.search:
        raise ConfigError(path, "halving", "[halving] and [search] do not combine; choose one")
    metric = halving.metric or f"val.{report.metric.partition('.')[2]}"
    if not metric.startswith("val.") or not is_stored_metric(metric, task):
        raise ConfigError(
            path,
            "halving.metric",
            f"'{metric}' is not a validation metric of task = '{task}' (e.g. val.loss); "
            "a rung ranks on the validation set, never the test set",
        )
    return halving.model_copy(update={"metric": metric})


def _register_sweep_references(path: Path, parsed: SweepConfig, base: Path) -> None:
    """Users' code a sweep names in its overrides (``grid."model.kind" = ["a.py:A", ...]``),
    imported and registered before its runs are validated; files relative to ``base``, the
    experiment's folder, like the experiment's own references."""
    sections: list[tuple[str, dict[str, Any]]] = [
        ("set", parsed.set),
        ("grid", parsed.grid),
        ("zip", parsed.zip),
        *((f"variant[{i}]", table) for i, table in enumerate(parsed.variant)),
    ]
    for section, table in sections:
        flat = _flat_section(path, section, table)
        # An axis lists its values: each one may be a reference.
        values = {
            key: value
            for key, value in flat.items()
            if section not in ("grid", "zip") or not isinstance(value, list)
        }
        axes = [(key, v) for key, vs in flat.items() if key not in values for v in vs]
        try:
            register_references(values, base)
            for key, value in axes:
                register_references({key: value}, base)
        except UserCodeError as error:
            raise ConfigError(path, f"{section}.{error.key}", str(error)) from None


def _user_argument_keys(path: Path, parsed: SweepConfig, experiment: ExperimentConfig) -> set[str]:
    """Keys a sweep may set though its experiment does not: the arguments of a user's model
    or loader (``model.args.width``), which only the user's code knows."""
    given: set[str] = set()
    for table in (parsed.set, parsed.grid, parsed.zip, *parsed.variant):
        given |= set(_flat_section(path, "sweep", table))
    prefixes = ("model.args.", "model.traced.", "data.args.")
    return {key for key in given if key.startswith(prefixes)}


def _parse_sweep_file(path: Path) -> SweepConfig:
    """The sweep file's tables, validated; its name (the store's) checked."""
    raw = read_toml(path)
    try:
        parsed = SweepConfig.model_validate(raw)
    except ValidationError as error:
        raise _first_error(path, error) from None
    if not _SWEEP_NAME.match(path.stem):
        raise ConfigError(path, None, "sweep file name must be letters, digits, '_', '-', '.'")
    return parsed


def _sweep_experiment(path: Path, parsed: SweepConfig) -> tuple[Path, ExperimentConfig]:
    """The experiment file a sweep names, and the experiment it holds."""
    experiment_path = resolve_experiment_path(path, parsed.experiment)
    if not experiment_path.is_file():
        raise ConfigError(
            path, "experiment", _missing_experiment(parsed.experiment, experiment_path)
        )
    return experiment_path, load_experiment(experiment_path)


def _swept_section(
    path: Path, section: str, table: dict[str, Any], known: set[str]
) -> dict[str, list[Any]]:
    """``[grid]`` or ``[zip]``: a non-empty list of values per experiment key."""
    axes = {
        k: _axis_values(path, section, k, v) for k, v in _flat_section(path, section, table).items()
    }
    _check_keys(path, section, list(axes), known)
    return axes


def _variants(
    path: Path, parsed: SweepConfig, known: set[str]
) -> tuple[list[tuple[str, FlatConfig]], dict[str, Replicates]]:
    """``[[variant]]`` tables: each a unique name and overrides, and maybe its own seeds and
    repeat."""
    variants: list[tuple[str, FlatConfig]] = []
    variant_replicates: dict[str, Replicates] = {}
    for index, table in enumerate(parsed.variant):
        body = dict(table)
        variant_name = body.pop("name", None)
        if not isinstance(variant_name, str) or not variant_name:
            raise ConfigError(path, f"variant[{index}].name", "each variant needs a name string")
        if "seeds" in body or "repeat" in body:
            variant_replicates[variant_name] = _variant_replicates(
                path, f"variant[{index}]", body.pop("seeds", parsed.seeds), body.pop("repeat", 1)
            )
        flat = _flat_section(path, f"variant[{index}]", body)
        _check_keys(path, f"variant[{index}]", list(flat), known)
        variants.append((variant_name, flat))
    names = [n for n, _ in variants]
    if len(set(names)) != len(names):
        raise ConfigError(path, "variant.name", "variant names must be unique")
    return variants, variant_replicates


def _check_each_key_given_once(sweep: Sweep) -> None:
    """A [search] sweep stands alone; otherwise a key is set or swept by one table only, and
    seeds are unique."""
    path, search = sweep.path, sweep.search
    if search and (sweep.grid or sweep.zip or sweep.random or sweep.variants):
        raise ConfigError(path, "search", "a [search] sweep takes [set], seeds and folds only")
    if search and sweep.repeat > 1:
        raise ConfigError(path, "repeat", "a [search] sweep cannot repeat runs")
    random_keys = set(sweep.random.axes) if sweep.random else set()
    swept = [set(sweep.grid), set(sweep.zip), random_keys, set(search.axes) if search else set()]
    overlapping = {k for i, a in enumerate(swept) for b in swept[i + 1 :] for k in a & b}
    overlapping |= set(sweep.set) & set().union(*swept)
    if sweep.folds is not None and "data.fold" in set(sweep.set).union(*swept):
        overlapping.add("data.fold")
    if overlapping:
        raise ConfigError(path, sorted(overlapping)[0], "a key may be set or swept once, not twice")
    if len(set(sweep.seeds)) != len(sweep.seeds):
        raise ConfigError(path, "seeds", "seeds must be unique")


def _variant_replicates(path: Path, where: str, seeds: Any, repeat: Any) -> Replicates:
    """A variant's own ``seeds`` (unique non-negative integers) and ``repeat`` (>= 1)."""
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= INT32_MAX for s in seeds
        )
    ):
        raise ConfigError(
            path, f"{where}.seeds", f"must be a non-empty list of integers in [0, {INT32_MAX}]"
        )
    if len(set(seeds)) != len(seeds):
        raise ConfigError(path, f"{where}.seeds", "seeds must be unique")
    if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= INT32_MAX:
        raise ConfigError(path, f"{where}.repeat", f"must be an integer in [1, {INT32_MAX}]")
    return Replicates(seeds=list(seeds), repeat=repeat)


def _random_search(path: Path, table: dict[str, Any], known: set[str]) -> RandomSearch | None:
    """``[random]``: ``samples`` (required), ``seed`` (sampling seed, default 0) and one
    distribution per dotted key."""
    if not table:
        return None
    body = dict(table)
    samples = _count(path, "random.samples", body.pop("samples", None), minimum=1)
    seed = _count(path, "random.seed", body.pop("seed", 0), minimum=0)
    return RandomSearch(samples=samples, seed=seed, axes=_space(path, "random", body, known))


def _count(path: Path, key: str, value: Any, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(path, key, f"expected an integer of at least {minimum}")
    if value > INT32_MAX:
        raise ConfigError(path, key, f"expected an integer of at most {INT32_MAX}")
    return value


def _space(
    path: Path, section: str, body: dict[str, Any], known: set[str]
) -> dict[str, Distribution]:
    """One distribution per dotted key: ``"optimizer.learning_rate" = { loguniform = [a, b] }``."""

    def is_distribution(value: Any) -> bool:
        # { name = [...] }: a distribution, known or not (a nested table holds tables instead).
        return (
            isinstance(value, dict)
            and len(value) == 1
            and isinstance(next(iter(value.values())), list)
        )

    try:
        flat = flatten(body, is_leaf=is_distribution)
    except DuplicateKeyError as error:
        raise ConfigError(
            path, f"{section}.{error.key}", "given twice (quoted and nested)"
        ) from None
    if not flat:
        raise ConfigError(path, section, "name at least one key to sample")
    _check_keys(path, section, list(flat), known)
    axes = {}
    for key, spec in flat.items():
        where = f"{section}.{key}"
        if not is_distribution(spec) or next(iter(spec)) not in DISTRIBUTIONS:
            raise ConfigError(
                path, where, f"expected one of {{ {' | '.join(DISTRIBUTIONS)} = [...] }}"
            )
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise ConfigError(path, where, f"{kind} needs a non-empty list")
        if kind != "choice":
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            # NaN compares false with everything: it would slip through ``low < high``.
            bad_bound = representable(values) if numeric else None
            if bad_bound:
                raise ConfigError(path, where, f"bound {bad_bound}")
            if len(values) != 2 or not numeric or values[0] >= values[1]:
                raise ConfigError(path, where, f"{kind} needs [low, high] with low < high")
            if kind == "loguniform" and values[0] <= 0:
                raise ConfigError(path, where, "loguniform needs a positive lower bound")
            if kind == "int" and not all(isinstance(v, int) for v in values):
                raise ConfigError(path, where, "int needs integer bounds")
        axes[key] = Distribution(kind=kind, values=values)
    return axes


def _model_search(path: Path, table: dict[str, Any], known: set[str]) -> ModelSearch | None:
    """``[search]``: Optuna's TPE sampler proposing ``batch`` trials at a time, ``trials`` in
    all, from the distributions in ``[search.space]``; ``seed`` seeds the sampler."""
    if not table:
        return None
    body = dict(table)
    sampler = body.pop("sampler", "tpe")
    if sampler != "tpe":
        raise ConfigError(path, "search.sampler", "the model-based sampler is 'tpe'")
    trials = _count(path, "search.trials", body.pop("trials", None), minimum=1)
    batch = _count(path, "search.batch", body.pop("batch", 1), minimum=1)
    seed = _count(path, "search.seed", body.pop("seed", 0), minimum=0)
    space = body.pop("space", None)
    if body:
        raise ConfigError(path, f"search.{next(iter(body))}", "unknown key")
    if not isinstance(space, dict):
        raise ConfigError(path, "search.space", "expected a table of distributions")
    axes = _space(path, "search.space", space, known)
    return ModelSearch(trials=trials, batch=batch, seed=seed, axes=axes)


def _check_report_keys(sweep: Sweep, known: set[str]) -> None:
    for key in sweep.report.compare or []:
        if key != "variant" and key not in known and key != "seed":
            raise ConfigError(sweep.path, "report.compare", f"'{key}' is not an experiment key")
        if key not in sweep.axes:
            raise ConfigError(sweep.path, "report.compare", f"'{key}' is not a swept axis")
    metric, task = sweep.report.metric, sweep.experiment.task
    # Checked here, not when the sweep file is parsed: what runs store depends on the
    # experiment's task and on the users' metrics it names.
    for name in sweep.report.table:
        if not is_stored_metric(name, task) and name not in RUN_COLUMNS:
            example = "test.f1_macro" if task == "classification" else "test.mae"
            raise ConfigError(
                sweep.path,
                "report.table",
                f"'{name}' is not a stored metric (e.g. {example}, val.loss, model_bytes)",
            )
    if not is_stored_metric(metric, task):
        example = DEFAULT_METRIC[task]
        raise ConfigError(
            sweep.path,
            "report.metric",
            f"'{metric}' is not a stored metric of task = '{task}' (e.g. {example})",
        )


def validate_run(sweep: Sweep, flat: FlatConfig, variant: str | None = None) -> RunConfig:
    """Turn one expanded flat config into a :class:`RunConfig`. A problem is blamed on the
    table of the sweep file that set the key (``set.train.epochs``), or on the experiment."""
    try:
        return RunConfig.model_validate(unflatten(flat))
    except ValidationError as error:
        problem = _first_error(sweep.path, error)
        raise sweep.blame(problem.key, problem.message, variant) from None


# What training records on the training set, per epoch (see train.py); the test and validation
# sets get every stored metric of metrics.METRICS.
TRAIN_METRICS = ("accuracy", "loss")
# Numbers every run stores beside its metrics, which a report's table may show too.
RUN_COLUMNS = ("model_bytes", "nonzero_params", "params", "best_epoch", "train_seconds")


def is_stored_metric(key: str, task: Task = "classification") -> bool:
    """Whether runs of ``task`` store ``key`` (``test.f1_macro``, ``train.loss``): a metric of
    :data:`metrics.METRICS` that every run of the task stores (a user's metric included), for
    the test or validation set, or one that training records on the training set."""
    split, _, name = key.partition(".")
    if split == "train":
        return name in (TRAIN_METRICS if task == "classification" else ("loss",))
    if split not in ("test", "val") or name not in METRICS:
        return False
    spec = METRICS[name]
    return spec.stored and spec.task in ("any", task)


def rung_direction(sweep: Sweep) -> Literal["max", "min"]:
    """The direction of ``[halving]``'s rung metric: the report's own when the rung metric is
    the headline's validation twin, else the registered direction of its name."""
    assert sweep.halving is not None and sweep.halving.metric is not None
    name = sweep.halving.metric.partition(".")[2]
    same = name == sweep.report.metric.partition(".")[2]
    return metric_direction(
        ReportConfig(
            metric=sweep.halving.metric, direction=sweep.report.direction if same else None
        )
    )


def metric_direction(report: ReportConfig) -> Literal["max", "min"]:
    """The registered direction of the report's metric (:data:`metrics.METRICS`: losses and
    calibration errors are minimised), "max" for a metric it does not know, unless the sweep
    says otherwise."""
    if report.direction:
        return report.direction
    name = report.metric.rpartition(".")[2]
    return METRICS[name].direction if name in METRICS else "max"
