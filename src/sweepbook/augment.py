"""Data augmentation inside the compiled step, keyed like everything else.

Shifts move images ``[N, H, W, C]``, grey or colour (every channel moves together); other
features (tabular rows, sequences) have no pixels to move, which :func:`check_augmentation`
says before training starts."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sweepbook.config import AugmentConfig
from sweepbook.data import DataError, Split


def check_augmentation(config: AugmentConfig, split: Split) -> None:
    """Refuse ``augment.max_shift > 0`` on features that are not images ``[N, H, W, C]``,
    as a :class:`DataError` blaming ``augment.max_shift``; for the engine to call before it
    compiles anything."""
    if config.max_shift > 0 and split.x_train.ndim != 4:
        raise DataError(
            f"shift augmentation moves images [N, H, W, C], but the features are "
            f"{list(split.x_train.shape[1:])} per example; set augment.max_shift = 0",
            "augment.max_shift",
        )


def random_shift(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
    """Shift each image [H, W, C] by an independent integer offset in [−s, s]² with zero fill."""
    if max_shift == 0:
        return images
    height, width = images.shape[1:3]
    padded = jnp.pad(images, [(0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)])
    offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * max_shift + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(
            image, (offset[0], offset[1], 0), (height, width, image.shape[-1])
        )

    return jax.vmap(crop)(padded, offsets)
