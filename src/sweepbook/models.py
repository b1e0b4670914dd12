"""Flax modules: an MLP, LeNet-5 and a small CNN. Architecture comes from config.

Each kind of model is a :class:`ModelSpec` registered in :data:`MODELS` under its
``model.kind``; the built-ins register at the end of this module exactly as a user's model
would, and :func:`build_model` only looks the kind up.

Every module is called as ``model.apply(variables, x, train=..., dropout_rate=...,
dropout_key=..., mask=...)``:

- ``dropout_rate`` is an array, not a module attribute, so that runs differing only in dropout
  rate share one compiled program; dropout is active only when ``dropout_key`` is given;
- ``train`` (static) switches batch normalization between batch statistics (and updating the
  running averages in the ``batch_stats`` collection) and the running averages;
- ``mask`` marks the real examples of a padded batch, so that padding never enters batch
  statistics.

Numerics. Convolution and max-pooling can be written several ways that agree up to float
rounding but not bit for bit, and that run at very different speeds per backend. A conv net is
built with one :class:`Numerics` (a formulation), chosen by :func:`choose_numerics` from the
backend alone, never from a timing, and stored with each run (the ``numerics`` column) so that
a run can be replayed in the formulation it was trained with.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sweepbook.config import ModelConfig
from sweepbook.registry import Registry

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "elu": nn.elu,
}

INITIALIZERS: dict[str, Callable[..., Any]] = {
    "default": nn.linear.default_kernel_init,
    "lecun_normal": nn.initializers.lecun_normal(),
    "he_normal": nn.initializers.he_normal(),
    "he_uniform": nn.initializers.he_uniform(),
    "glorot_normal": nn.initializers.glorot_normal(),
    "glorot_uniform": nn.initializers.glorot_uniform(),
}

# Running-average momentum of batch normalization, in Flax's convention (PyTorch's 0.1).
BATCH_NORM_MOMENTUM = 0.9


@dataclass(frozen=True)
class Numerics:
    """How a conv net computes its convolutions and 2x2 max-pooling.

    - ``conv="xla"``: ``lax.conv_general_dilated``. Under ``vmap`` over runs, whose kernels
      differ, it becomes one grouped convolution, which XLA's CPU backend runs slowly.
    - ``conv="patches"``: ``lax.conv_general_dilated_patches`` (a kernel-free im2col, so it is
      shared by the runs of a chunk) times the kernel as a matrix: a batched matmul under vmap.
      The patches are themselves a convolution (with a one-hot kernel, grouped by input
      channel), and so is their gradient, so XLA's CPU backend still runs grouped convolutions.
    - ``conv="slices"``: the same im2col built from the kernel's shifted slices of the padded
      input, concatenated, times the kernel as a matrix: slices, a concatenation and matmuls
      only, whose gradients are pads and matmuls.
    - ``pool="reduce_window"``: ``nn.max_pool``; its gradient is ``select_and_scatter``.
    - ``pool="reshape"``: pad to even sizes with -inf, reshape to 2x2 blocks, ``max``.

    They differ by float rounding (a different summation order in the convolution; on ties in a
    pooling window the gradient is split instead of going to the first maximum).
    """

    conv: Literal["xla", "patches", "slices"]
    pool: Literal["reduce_window", "reshape"]

    @property
    def name(self) -> str:
        """The stored form, e.g. ``conv=patches,pool=reshape``."""
        return f"conv={self.conv},pool={self.pool}"

    @classmethod
    def parse(cls, name: str) -> Numerics:
        fields = dict(part.split("=", 1) for part in name.split(",") if "=" in part)
        numerics = cls(conv=fields.get("conv", ""), pool=fields.get("pool", ""))  # type: ignore[arg-type]
        if numerics.conv not in ("xla", "patches", "slices") or numerics.pool not in (
            "reduce_window",
            "reshape",
        ):
            raise ValueError(f"unknown numerics {name!r} (this sweepbook knows {KNOWN_NUMERICS})")
        return numerics


# Runs of an MLP have one formulation only (dense layers); stored as this name.
DENSE_NUMERICS = "dense"
# How every conv net was trained before formulations existed: stores without a ``numerics``
# column hold runs trained this way, and replaying them this way reproduces their bits.
LEGACY_NUMERICS = Numerics(conv="xla", pool="reduce_window")
# What conv nets trained in on CPU from the first formulations (commit 8287de8) until slices.
PATCHES_NUMERICS = Numerics(conv="patches", pool="reshape")
FAST_CPU_NUMERICS = Numerics(conv="slices", pool="reshape")
KNOWN_NUMERICS = (
    DENSE_NUMERICS,
    LEGACY_NUMERICS.name,
    PATCHES_NUMERICS.name,
    FAST_CPU_NUMERICS.name,
)


def choose_numerics(kind: str, platform: str) -> str:
    """The formulation a model of ``kind`` is trained with on ``platform`` (``jax`` backend
    name): a pure function of the two, so that a plan trains with the same bits on any machine
    of the same backend, whatever its load.

    On CPU, conv nets use slices and reshape pooling (``sweepbook bench`` measures it against
    the legacy formulation side by side; see the README for the numbers). Elsewhere they keep
    XLA's convolution, which GPU libraries run as a native grouped convolution; an im2col would
    multiply activation memory by the kernel area there. A model registered without
    formulations (``ModelSpec.convolutional`` false) has the dense one only.
    """
    if not MODELS[kind].convolutional:
        return DENSE_NUMERICS
    return FAST_CPU_NUMERICS.name if platform == "cpu" else LEGACY_NUMERICS.name


def numerics_before_slices(kind: str, platform: str) -> str:
    """The formulation :func:`choose_numerics` chose for ``kind`` on ``platform`` before the
    slices formulation existed (patches on CPU): what a halving begun then goes on in."""
    chosen = choose_numerics(kind, platform)
    return PATCHES_NUMERICS.name if chosen == FAST_CPU_NUMERICS.name else chosen


def numerics_before_formulations(kind: str) -> str:
    """The formulation runs of ``kind`` were trained in by a sweepbook that did not store one
    (stores without a ``numerics`` column): dense, or a conv net's legacy formulation."""
    return LEGACY_NUMERICS.name if MODELS[kind].convolutional else DENSE_NUMERICS


def conv_as_patches(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
) -> jax.Array:
    """``lax.conv_general_dilated`` for NHWC inputs and HWIO kernels (Flax's layout), computed
    as image patches times the kernel matrix (``nn.Conv(conv_general_dilated=...)`` hook)."""
    if feature_group_count != 1:
        raise ValueError("conv_as_patches computes ungrouped convolutions only")
    height, width, in_features, out_features = rhs.shape
    patches = lax.conv_general_dilated_patches(
        lhs,
        (height, width),
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
    )
    # Patch features are ordered input channel first, then kernel row, then column.
    kernel = rhs.transpose(2, 0, 1, 3).reshape(in_features * height * width, out_features)
    return jnp.matmul(patches, kernel, precision=precision)


def conv_as_slices(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
) -> jax.Array:
    """``lax.conv_general_dilated`` for NHWC inputs and HWIO kernels (Flax's layout), computed
    as an im2col built from the kernel's shifted (strided) slices of the padded input, times
    the kernel as a matrix (``nn.Conv(conv_general_dilated=...)`` hook). Under ``vmap`` over
    runs the slices of a shared input are shared, and the gradient is pads and matmuls: no
    convolution is left for XLA's CPU backend to run grouped."""
    if feature_group_count != 1:
        raise ValueError("conv_as_slices computes ungrouped convolutions only")
    if any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))):
        raise ValueError("conv_as_slices computes undilated convolutions only")
    height, width, in_features, out_features = rhs.shape
    stride_y, stride_x = window_strides
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], (height, width), window_strides, padding)
    padded = jnp.pad(lhs, ((0, 0), *(tuple(pair) for pair in padding), (0, 0)))
    rows = (padded.shape[1] - height) // stride_y + 1
    cols = (padded.shape[2] - width) // stride_x + 1
    # In two steps, width then height: 2k slices instead of k^2, which XLA compiles faster (2.3
    # against 3.0 s for LeNet-5's step) and runs faster (1.2-1.5 against 1.4-1.7 s an epoch of
    # 4 runs); the patches are the same numbers. Features ordered kernel row, column, input
    # channel: HWIO's own order, so the kernel reshapes into the matrix as it is.
    across = jnp.concatenate(
        [padded[:, :, dx : dx + (cols - 1) * stride_x + 1 : stride_x, :] for dx in range(width)],
        axis=-1,
    )
    patches = jnp.concatenate(
        [across[:, dy : dy + (rows - 1) * stride_y + 1 : stride_y] for dy in range(height)],
        axis=-1,
    )
    kernel = rhs.reshape(height * width * in_features, out_features)
    return jnp.matmul(patches, kernel, precision=precision)


CONVOLUTIONS: dict[str, Callable[..., jax.Array] | None] = {
    # None keeps Flax's own call of lax.conv_general_dilated: the legacy program, exactly.
    "xla": None,
    "patches": conv_as_patches,
    "slices": conv_as_slices,
}


def max_pool_2x2(x: jax.Array, numerics: Numerics) -> jax.Array:
    """2x2 max-pooling with stride 2 and SAME padding (odd sizes padded at the end)."""
    if numerics.pool == "reduce_window":
        return nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    batch, height, width, features = x.shape
    padded = jnp.pad(x, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), constant_values=-jnp.inf)
    blocks = padded.reshape(batch, (height + 1) // 2, 2, (width + 1) // 2, 2, features)
    return jnp.max(blocks, axis=(2, 4))


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array | None) -> jax.Array:
    """Inverted dropout with a traced ``rate``; identity when ``key`` is None (evaluation)."""
    if key is None:
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, x.shape)
    return jnp.where(mask, x / keep, 0.0)


class _Block(nn.Module):
    """Shared plumbing: layer -> [batch norm] -> activation."""

    activation: str
    batch_norm: bool
    initializer: str  # not "init": that is Module.init

    def normalize_and_activate(
        self, x: jax.Array, *, train: bool, mask: jax.Array | None, name: str
    ) -> jax.Array:
        if self.batch_norm:
            batch_mask = None if mask is None else mask.reshape((-1,) + (1,) * (x.ndim - 1))
            x = nn.BatchNorm(
                use_running_average=not train, momentum=BATCH_NORM_MOMENTUM, name=name
            )(x, mask=None if batch_mask is None else jnp.broadcast_to(batch_mask, x.shape))
        return ACTIVATIONS[self.activation](x)


class MLP(_Block):
    """Flatten, hidden dense layers ([batch norm], activation, dropout), a linear classifier."""

    widths: Sequence[int] = ()
    num_classes: int = 10

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        dropout_rate: jax.Array,
        dropout_key: jax.Array | None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        kernel_init = INITIALIZERS[self.initializer]
        x = x.reshape(x.shape[0], -1)
        for layer, width in enumerate(self.widths):
            x = nn.Dense(width, kernel_init=kernel_init, name=f"dense_{layer}")(x)
            x = self.normalize_and_activate(x, train=train, mask=mask, name=f"norm_{layer}")
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, layer)
            x = dropout(x, dropout_rate, key)
        return nn.Dense(self.num_classes, kernel_init=kernel_init, name="classifier")(x)


class _ConvNet(_Block):
    """Convolutions with pooling, then an MLP head. Subclasses fix the architecture."""

    num_classes: int = 10
    convolutions: Sequence[int] = ()
    kernel: int = 3
    head: Sequence[int] = ()
    numerics: str = LEGACY_NUMERICS.name

    def padding(self, layer: int, size: int) -> str:
        return "SAME"

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        dropout_rate: jax.Array,
        dropout_key: jax.Array | None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        kernel_init = INITIALIZERS[self.initializer]
        numerics = Numerics.parse(self.numerics)
        convolve = CONVOLUTIONS[numerics.conv]
        for layer, features in enumerate(self.convolutions):
            padding = self.padding(layer, x.shape[1])
            x = nn.Conv(
                features,
                (self.kernel, self.kernel),
                padding=padding,
                kernel_init=kernel_init,
                conv_general_dilated=convolve,
            )(x)
            x = self.normalize_and_activate(x, train=train, mask=mask, name=f"conv_norm_{layer}")
            x = max_pool_2x2(x, numerics)
        head = MLP(
            activation=self.activation,
            batch_norm=self.batch_norm,
            initializer=self.initializer,
            widths=tuple(self.head),
            num_classes=self.num_classes,
        )
        return head(x, train=train, dropout_rate=dropout_rate, dropout_key=dropout_key, mask=mask)


class LeNet5(_ConvNet):
    """LeCun et al. (1998): conv 6@5x5 (same), pool, conv 16@5x5, pool, 120, 84, classes.

    On inputs smaller than MNIST's 28x28 (the 8x8 digits) the second convolution pads to keep
    a non-empty feature map; on 28x28 it is the classic valid convolution (61,706 parameters).
    """

    convolutions: Sequence[int] = (6, 16)
    kernel: int = 5
    head: Sequence[int] = (120, 84)

    def padding(self, layer: int, size: int) -> str:
        return "VALID" if layer == 1 and size >= self.kernel else "SAME"


class SmallCNN(_ConvNet):
    """Two 3x3 convolutions (32, 64) with pooling and a 32-unit dense layer: 119,530
    parameters on 28x28 inputs, the Fashion-MNIST-scale CNN of the courses."""

    convolutions: Sequence[int] = (32, 64)
    kernel: int = 3
    head: Sequence[int] = (32,)


ModelBuilder = Callable[[ModelConfig, int, str | None], nn.Module]
MultiplyAdds = Callable[[ModelConfig, Sequence[int], int], int]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model kind (``model.kind``).

    - ``build(config, num_classes, numerics)``: the Flax module, called as every sweepbook
      model is (see the module docstring); ``numerics`` is a :class:`Numerics` name for a
      convolutional kind, :data:`DENSE_NUMERICS` or None (the legacy formulation) otherwise.
    - ``convolutional``: its layers come in formulations (:func:`choose_numerics` picks one).
    - ``widths``: whether ``model.widths`` is "required" (an MLP's hidden layers),
      "forbidden" (fixed by the architecture) or "optional" for this kind.
    - ``multiply_adds(config, image, num_classes)``: one example's forward multiply-adds;
      None estimates them from XLA's cost analysis of the forward pass.
    """

    build: ModelBuilder
    convolutional: bool = False
    widths: Literal["required", "forbidden", "optional"] = "optional"
    multiply_adds: MultiplyAdds | None = None
    # How the module is called: "sweepbook" (the convention of the module docstring) or
    # "flax" (a user's module: ``__call__(x, train, **traced)``, see :func:`user_model_spec`).
    calling: Literal["sweepbook", "flax"] = "sweepbook"
    takes_mask: bool = False  # a "flax" module whose __call__ takes ``mask=``


MODELS: Registry[ModelSpec] = Registry("model")


def _common(config: ModelConfig, num_classes: int) -> dict[str, Any]:
    return {
        "activation": config.activation,
        "batch_norm": config.batch_norm,
        "initializer": config.init,
        "num_classes": num_classes,
    }


def _dense_multiply_adds(widths: Sequence[int]) -> int:
    return sum(a * b for a, b in itertools.pairwise(widths))


def _mlp_multiply_adds(config: ModelConfig, image: Sequence[int], num_classes: int) -> int:
    return _dense_multiply_adds([int(np.prod(image)), *config.widths, num_classes])


def _conv_multiply_adds(config: ModelConfig, image: Sequence[int], num_classes: int) -> int:
    model = build_model(config, num_classes)
    assert isinstance(model, _ConvNet)
    total, size, channels = 0, image[0], image[-1]
    for layer, out_channels in enumerate(model.convolutions):
        kernel = model.kernel
        if model.padding(layer, size) == "VALID":
            size = size - kernel + 1
        total += size * size * out_channels * kernel * kernel * channels
        size, channels = -(-size // 2), out_channels  # 2x2 pooling, SAME
    return total + _dense_multiply_adds([size * size * channels, *model.head, num_classes])


def _build_mlp(config: ModelConfig, num_classes: int, numerics: str | None) -> nn.Module:
    return MLP(widths=tuple(config.widths), **_common(config, num_classes))


def _build_lenet5(config: ModelConfig, num_classes: int, numerics: str | None) -> nn.Module:
    return LeNet5(numerics=numerics or LEGACY_NUMERICS.name, **_common(config, num_classes))


def _build_small_cnn(config: ModelConfig, num_classes: int, numerics: str | None) -> nn.Module:
    return SmallCNN(numerics=numerics or LEGACY_NUMERICS.name, **_common(config, num_classes))


MODELS.register("mlp", ModelSpec(_build_mlp, widths="required", multiply_adds=_mlp_multiply_adds))
MODELS.register(
    "lenet5",
    ModelSpec(
        _build_lenet5,
        convolutional=True,
        widths="forbidden",
        multiply_adds=_conv_multiply_adds,
    ),
)
MODELS.register(
    "cnn",
    ModelSpec(
        _build_small_cnn,
        convolutional=True,
        widths="forbidden",
        multiply_adds=_conv_multiply_adds,
    ),
)


def _static_argument(value: Any) -> Any:
    """A TOML value as a module field: lists become tuples (hashable, like Flax's own)."""
    if isinstance(value, list):
        return tuple(_static_argument(item) for item in value)
    if isinstance(value, dict):
        return {key: _static_argument(item) for key, item in value.items()}
    return value


def user_model_spec(found: Any) -> ModelSpec:
    """A user's model: a :class:`ModelSpec` as it is, or a ``flax.linen.Module`` subclass.

    The module contract:

    - it is built as ``Module(**args)`` from ``[model.args]`` (lists as tuples), plus
      ``num_outputs`` (classes, or regression outputs) when it declares that field and the
      args do not give it;
    - it is called ``module(x, train=..., **traced)``: ``x`` a batch ``[B, ...]`` of features,
      ``train`` (static) True for training steps, ``traced`` the ``[model.traced]`` numbers as
      float32 scalars; ``mask=`` (a [B] bool array of the real examples of a padded batch)
      too when ``__call__`` takes it;
    - dropout uses ``nn.Dropout(rate, deterministic=not train)`` (its key comes from the
      ``"dropout"`` RNG stream sweepbook passes, per step), batch norm
      ``nn.BatchNorm(use_running_average=not train)`` (the ``batch_stats`` collection);
    - it returns logits ``[B, C]`` for classification, ``[B]`` or ``[B, T]`` for regression.
    """
    if isinstance(found, ModelSpec):
        return found
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise TypeError(
            f"expected a flax.linen.Module subclass (or a ModelSpec), got {type(found).__name__}"
        )
    fields = {field.name for field in dataclasses.fields(found)}
    takes_mask = "mask" in inspect.signature(found.__call__).parameters

    def build(config: ModelConfig, num_outputs: int, numerics: str | None) -> nn.Module:
        args = {key: _static_argument(value) for key, value in config.args.items()}
        if "num_outputs" in fields:
            args.setdefault("num_outputs", num_outputs)
        return found(**args)

    return ModelSpec(build, widths="forbidden", calling="flax", takes_mask=takes_mask)


@dataclass(frozen=True)
class Network:
    """A built model and how to call it: one ``init`` and ``apply`` for built-in and users'
    modules alike, so that training never asks which one it holds."""

    module: nn.Module
    calling: Literal["sweepbook", "flax"] = "sweepbook"
    takes_mask: bool = False

    def init(
        self,
        key: jax.Array,
        x: jax.Array,
        *,
        dropout_rate: jax.Array,
        traced: dict[str, jax.Array] | None = None,
    ) -> Any:
        """Variables for inputs like ``x``, in evaluation mode."""
        if self.calling == "sweepbook":
            return self.module.init(
                key, x, train=False, dropout_rate=dropout_rate, dropout_key=None
            )
        call: dict[str, Any] = {"train": False, **(traced or {})}
        return self.module.init({"params": key}, x, **call)

    def apply(
        self,
        variables: Any,
        x: jax.Array,
        *,
        train: bool,
        dropout_rate: jax.Array,
        dropout_key: jax.Array | None,
        mask: jax.Array | None = None,
        mutable: Any = False,
        traced: dict[str, jax.Array] | None = None,
    ) -> Any:
        """The module's outputs (and its updated collections when ``mutable``). Dropout is on
        only with ``dropout_key``; ``mask`` marks the real examples of a padded batch."""
        if self.calling == "sweepbook":
            return self.module.apply(
                variables,
                x,
                train=train,
                dropout_rate=dropout_rate,
                dropout_key=dropout_key,
                mask=mask,
                mutable=mutable,
            )
        call: dict[str, Any] = {"train": train, **(traced or {})}
        if self.takes_mask and mask is not None:
            call["mask"] = mask
        rngs = {"dropout": dropout_key} if dropout_key is not None else None
        return self.module.apply(variables, x, rngs=rngs, mutable=mutable, **call)


def build_network(config: ModelConfig, num_outputs: int, numerics: str | None = None) -> Network:
    """The :class:`Network` of ``config``: :func:`build_model` with its calling convention."""
    spec = MODELS[config.kind]
    return Network(build_model(config, num_outputs, numerics), spec.calling, spec.takes_mask)


def build_model(config: ModelConfig, num_classes: int, numerics: str | None = None) -> nn.Module:
    """The model of ``config`` (its kind looked up in :data:`MODELS`); a conv net in
    formulation ``numerics`` (a :class:`Numerics` name; default the legacy one). The
    formulation changes no parameter name or shape."""
    return MODELS[config.kind].build(config, num_classes, numerics)


def multiply_adds(
    config: ModelConfig, image: Sequence[int], num_classes: int, traced: Sequence[str] = ()
) -> int:
    """Multiply-adds of one example's forward pass through the model's dense and convolution
    layers (pooling, biases and activations are not counted), from the model's own shapes."""
    count = MODELS[config.kind].multiply_adds
    if count is not None:
        return count(config, image, num_classes)
    return _estimated_multiply_adds(build_network(config, num_classes), image, traced)


def _estimated_multiply_adds(network: Network, image: Sequence[int], traced: Sequence[str]) -> int:
    """Half the floating-point operations XLA counts in one example's forward pass (a
    multiply-add is two): for a registered model that does not count its own. Approximate: it
    counts biases and activations too, and leaves out the taps of a SAME convolution that fall
    on its padding (within 10% of the built-ins' own counts)."""
    example = jnp.zeros((1, *image), jnp.float32)
    call: dict[str, Any] = {
        "dropout_rate": jnp.float32(0.0),
        "traced": {name: jnp.float32(0.0) for name in traced},  # any value: shapes only
    }
    variables = jax.eval_shape(lambda x: network.init(jax.random.key(0), x, **call), example)
    lowered = jax.jit(
        lambda v, x: network.apply(v, x, train=False, dropout_key=None, **call)
    ).lower(variables, example)
    cost = lowered.cost_analysis() or {}  # a backend without an estimate: no chunk limit
    return int(cost.get("flops", 0)) // 2
