"""Pruning and quantization as pure functions of a Flax parameter tree.

Everything here runs inside ``jax.jit`` and ``jax.vmap`` with the numbers a sweep varies
(sparsity, bit width) as traced arrays, so runs that differ only there share one compiled,
vmapped program. Structural choices (scope, structure, format, per-channel) are Python values:
they change the program, so they are static and belong to the compile group.

Like ``regularize``, these act on weights only: the leaves named ``kernel`` (Dense ``[in, out]``,
Conv ``[kh, kw, in, out]``). Biases and batch-norm statistics stay dense float32. The classifier
is the kernel whose path contains the key ``classifier``.
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp

from sweepbook.regularize import is_kernel

SCOPES = ("layer", "global")
STRUCTURES = ("unstructured", "neurons")
FORMATS = ("none", "int", "fp16", "bf16")
_FLOAT_DTYPES = {"fp16": jnp.float16, "bf16": jnp.bfloat16}

# float32(0.53) * 100 is 52.999996: nudging the product up by two float32 ulps makes decimal
# sparsities count as written (floor gives 53). Checked exhaustively for sparsities with three
# decimals and groups of up to 2000 entries; only groups of ~1e5 entries and more can be off by
# one, where float32 no longer holds sparsity * n exactly anyway.
_COUNT_NUDGE = 1.0 + 2.0**-22


def _is_classifier(path: tuple[Any, ...]) -> bool:
    return any(getattr(entry, "key", None) == "classifier" for entry in path)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def zhu_gupta_sparsity(epoch: jax.Array, *, final: jax.Array, start: int, end: int) -> jax.Array:
    """Target sparsity at ``epoch`` (counted from 0) under the Zhu & Gupta (2017) schedule.

    With progress ``p = clip((epoch - start + 1) / (end - start), 0, 1)``::

        s = final + (0 - final) · (1 - p)³

    so ``s = 0`` before ``start``, it rises fast then levels off, and reaches ``final`` at epoch
    ``end - 1`` and stays there. ``end == start + 1`` is one-shot pruning at ``start``.
    ``start``/``end`` are static; ``epoch`` and ``final`` may be traced.
    """
    if end <= start:
        raise ValueError(f"zhu_gupta_sparsity needs end > start; got start={start}, end={end}")
    epoch = jnp.asarray(epoch, jnp.float32)
    final = jnp.asarray(final, jnp.float32)
    # The +1 makes the first pruning epoch already prune: p counts epochs completed by its end.
    progress = jnp.clip((epoch - start + 1.0) / (end - start), 0.0, 1.0)
    ramp = final + (0.0 - final) * (1.0 - progress) ** 3
    return jnp.where(epoch < start, jnp.float32(0.0), ramp)


def _keep_mask(scores: jax.Array, sparsity: jax.Array) -> jax.Array:
    """1.0 for entries of the 1-D ``scores`` that survive, 0.0 for the ``k = floor(sparsity·n)``
    smallest; ties go to the lower index (stable sort)."""
    n = scores.shape[0]
    k = jnp.clip(jnp.floor(jnp.asarray(sparsity, jnp.float32) * n * _COUNT_NUDGE), 0, n)
    # k may be traced, so no top_k / slicing by k: rank every entry and compare instead.
    # The outer argsort sorts a permutation (no ties), so only the inner one needs stability.
    ranks = jnp.argsort(jnp.argsort(scores, stable=True))
    return (ranks >= k).astype(jnp.float32)


def _unit_norms(kernel: jax.Array) -> jax.Array:
    """L2 norm of each output unit's incoming weights (all axes but the last)."""
    flat = kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32)
    return jnp.sqrt(jnp.sum(jnp.square(flat), axis=0))


def magnitude_masks(params: Any, sparsity: jax.Array, *, scope: str, structure: str) -> Any:
    """Magnitude-pruning masks: a tree shaped like ``params`` of float32 0/1 arrays, all ones on
    non-kernel leaves, so ``apply_masks`` is a leaf-wise product.

    Within each group of ``n`` scores, the ``k = floor(sparsity · n)`` smallest are pruned (ties
    by index), so ``sparsity = 0`` prunes nothing and the fraction is exact.

    ``structure="unstructured"``: score ``|w|`` per weight; every kernel is pruned, the classifier
    included (Han et al., 2015). ``scope="layer"`` makes each kernel a group; ``scope="global"``
    pools all kernels into one group (one threshold).

    ``structure="neurons"``: whole output units (the last kernel axis: Dense columns, Conv
    filters) scored by the L2 norm of their incoming weights. The classifier is never pruned: its
    outputs are the classes. ``scope="layer"`` prunes that fraction of each hidden kernel's units;
    ``scope="global"`` pools all hidden units with score ``‖w_j‖₂ / √fan_in`` (the RMS incoming
    weight), so a unit's score does not grow with the number of its inputs. Under
    variance-scaling init (LeCun, He) that RMS starts near ``1/√fan_in``, so the global scope leans
    towards pruning layers with many inputs; the layer scope has no such lean. A pruned unit's
    bias is masked too, so the unit is gone, not a constant.
    """
    _check_choice("scope", scope, SCOPES)
    _check_choice("structure", structure, STRUCTURES)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    masks: list[jax.Array] = [jnp.ones(jnp.shape(leaf), jnp.float32) for _, leaf in leaves]

    if structure == "unstructured":
        chosen = [i for i, (path, _) in enumerate(leaves) if is_kernel(path)]
        scores = [jnp.abs(leaves[i][1]).astype(jnp.float32).ravel() for i in chosen]
    else:
        chosen = [
            i for i, (path, _) in enumerate(leaves) if is_kernel(path) and not _is_classifier(path)
        ]
        scores = [_unit_norms(leaves[i][1]) for i in chosen]
        if scope == "global":
            scores = [
                s / jnp.sqrt(jnp.float32(leaves[i][1].size // leaves[i][1].shape[-1]))
                for i, s in zip(chosen, scores, strict=True)
            ]
    if not chosen:
        return jax.tree_util.tree_unflatten(treedef, masks)

    if scope == "layer":
        kept = [_keep_mask(s, sparsity) for s in scores]
    else:
        pooled = _keep_mask(jnp.concatenate(scores), sparsity)
        offsets = [0]
        for s in scores:
            offsets.append(offsets[-1] + s.shape[0])
        kept = [pooled[a:b] for a, b in itertools.pairwise(offsets)]

    biases = {
        tuple(path[:-1]): i
        for i, (path, _) in enumerate(leaves)
        if getattr(path[-1], "key", None) == "bias"
    }
    for i, keep in zip(chosen, kept, strict=True):
        path, leaf = leaves[i]
        shape = jnp.shape(leaf)
        if structure == "unstructured":
            masks[i] = keep.reshape(shape)
        else:
            # A unit mask has one entry per output; broadcast it over the incoming axes.
            masks[i] = jnp.broadcast_to(keep, shape)
            bias = biases.get(tuple(path[:-1]))
            if bias is not None:
                masks[bias] = keep.reshape(jnp.shape(leaves[bias][1]))
    return jax.tree_util.tree_unflatten(treedef, masks)


def apply_masks(params: Any, masks: Any) -> Any:
    """Leaf-wise ``params · masks``. Apply after every optimizer update so pruned weights stay
    exactly zero even though the optimizer (momentum, Adam moments) keeps moving them."""
    return jax.tree_util.tree_map(lambda p, m: p * m.astype(p.dtype), params, masks)


def quantize_dequantize(x: jax.Array, bits: jax.Array, *, per_channel: bool) -> jax.Array:
    """Symmetric uniform integer quantization, returned dequantized (float32).

    With ``L = 2^(bits-1) - 1`` levels on each side (bits ≥ 2)::

        scale = max|x| / L            (whole tensor, or per last-axis channel if per_channel)
        q     = clip(round(x / scale), -L, L)
        out   = q · scale

    so ``|out - x| ≤ scale / 2`` and each channel takes at most ``2L + 1`` values; zero maps to
    zero. An all-zero tensor or channel returns zeros. ``bits`` may be traced, int or float.
    """
    x = jnp.asarray(x, jnp.float32)
    # exp2 may be computed as exp(x·ln2); rounding makes L an exact integer.
    levels = jnp.round(jnp.exp2(jnp.asarray(bits, jnp.float32) - 1.0)) - 1.0
    axes = tuple(range(x.ndim - 1)) if per_channel else None
    amax = jnp.max(jnp.abs(x), axis=axes, keepdims=True)
    # A zero tensor/channel would divide 0 by 0; any positive scale maps it to q = 0.
    scale = jnp.where(amax > 0, amax / levels, 1.0)
    q = jnp.clip(jnp.round(x / scale), -levels, levels)
    return q * scale


def cast_dequantize(x: jax.Array, dtype: str) -> jax.Array:
    """Round ``x`` to ``"fp16"`` or ``"bf16"`` and return it as float32 again."""
    _check_choice("dtype", dtype, tuple(_FLOAT_DTYPES))
    return jnp.asarray(x).astype(_FLOAT_DTYPES[dtype]).astype(jnp.float32)


def _quantize_kernel(kernel: jax.Array, fmt: str, bits: jax.Array, per_channel: bool) -> jax.Array:
    if fmt == "int":
        return quantize_dequantize(kernel, bits, per_channel=per_channel)
    if fmt in _FLOAT_DTYPES:
        return cast_dequantize(kernel, fmt)
    return kernel


def quantize_params(params: Any, *, fmt: str, bits: jax.Array, per_channel: bool) -> Any:
    """Post-training quantization of every kernel, returned dequantized: ``fmt="int"`` uses
    ``quantize_dequantize`` (``bits`` and ``per_channel`` apply), ``"fp16"``/``"bf16"`` use
    ``cast_dequantize``, ``"none"`` returns ``params`` unchanged. Other leaves stay float32."""
    _check_choice("fmt", fmt, FORMATS)

    def quantize(path: tuple[Any, ...], leaf: jax.Array) -> jax.Array:
        return _quantize_kernel(leaf, fmt, bits, per_channel) if is_kernel(path) else leaf

    return jax.tree_util.tree_map_with_path(quantize, params)


def fake_quantize(params: Any, *, fmt: str, bits: jax.Array, per_channel: bool) -> Any:
    """Quantization-aware training with the straight-through estimator (Bengio et al., 2013)::

        w + stop_gradient(qdq(w) - w)

    The forward pass sees the same quantized kernels as ``quantize_params``; the backward pass
    treats quantization as the identity, since round() has zero gradient almost everywhere."""
    _check_choice("fmt", fmt, FORMATS)

    def quantize(path: tuple[Any, ...], leaf: jax.Array) -> jax.Array:
        if not is_kernel(path) or fmt == "none":
            return leaf
        return leaf + jax.lax.stop_gradient(_quantize_kernel(leaf, fmt, bits, per_channel) - leaf)

    return jax.tree_util.tree_map_with_path(quantize, params)


def model_bytes(
    params: Any, *, fmt: str, bits: jax.Array, per_channel: bool, masks_applied: bool
) -> jax.Array:
    """Storage size in bytes (float32 scalar) of the deployed model, counted as:

    - every non-kernel leaf: 4 bytes per value (float32);
    - every kernel of ``n`` weights, ``nnz`` of them non-zero, at ``b`` bits per weight
      (32 for ``"none"``, 16 for ``"fp16"``/``"bf16"``, ``bits`` for ``"int"``):

        dense  = n · b / 8
        sparse = n / 8 + nnz · b / 8     (one-bit presence bitmap, then the non-zero values)
        cost   = min(dense, sparse) if masks_applied else dense

      plus, for ``"int"``, the float32 scales: 4 bytes per kernel, or 4 bytes per output
      channel (last axis) when ``per_channel``.

    Sizes are exact fractions of a byte (no padding to whole bytes per tensor). The sum is
    float32, exact up to 2^24 bytes.
    """
    _check_choice("fmt", fmt, FORMATS)
    if fmt == "int":
        weight_bits = jnp.asarray(bits, jnp.float32)
    else:
        weight_bits = jnp.float32({"none": 32, "fp16": 16, "bf16": 16}[fmt])
    total = jnp.float32(0.0)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        size = jnp.size(leaf)
        if not is_kernel(path):
            total = total + jnp.float32(4 * size)
            continue
        cost = size * weight_bits / 8.0
        if masks_applied:
            nonzero = jnp.count_nonzero(leaf).astype(jnp.float32)
            cost = jnp.minimum(cost, size / 8.0 + nonzero * weight_bits / 8.0)
        if fmt == "int":
            cost = cost + 4.0 * (jnp.shape(leaf)[-1] if per_channel else 1)
        total = total + cost
    return total
