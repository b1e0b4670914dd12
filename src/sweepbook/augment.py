"""Data augmentation inside the compiled step, keyed like everything else."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
