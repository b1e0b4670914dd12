"""Random shifts: each image moves by one integer offset within the bound, zero-filled."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from sweepbook.augment import check_augmentation, random_shift
from sweepbook.config import AugmentConfig
from sweepbook.data import DataError, Split

# One batch shape throughout, so that JAX compiles each max_shift once for the whole file.
SHAPE = (64, 5, 5, 2)


def images(seed: int = 0) -> np.ndarray:
    """Strictly positive pixels, so that different shifts give different images."""
    return np.random.default_rng(seed).uniform(0.1, 1.0, SHAPE).astype(np.float32)


def shifted(batch: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Every image moved by (dy, dx): out[i, j] = image[i + dy, j + dx], zero outside."""
    height, width = batch.shape[1:3]
    out = np.zeros_like(batch)
    rows, cols = (
        slice(max(0, -dy), min(height, height - dy)),
        slice(max(0, -dx), min(width, width - dx)),
    )
    source_rows = slice(rows.start + dy, rows.stop + dy)
    source_cols = slice(cols.start + dx, cols.stop + dx)
    out[:, rows, cols] = batch[:, source_rows, source_cols]
    return out


def offsets_of(before: np.ndarray, after: np.ndarray, bound: int) -> list[tuple[int, int]]:
    """For each image, the one offset within ``bound`` that explains it (fails when none does)."""
    candidates = list(itertools.product(range(-bound, bound + 1), repeat=2))
    matches = np.stack(
        [(shifted(before, dy, dx) == after).all(axis=(1, 2, 3)) for dy, dx in candidates], axis=1
    )
    assert (matches.sum(axis=1) == 1).all(), f"some output is no single shift within ±{bound}"
    return [candidates[index] for index in matches.argmax(axis=1)]


def test_zero_max_shift_is_identity():
    x = images()
    np.testing.assert_array_equal(random_shift(jax.random.key(0), x, 0), x)


@pytest.mark.parametrize("max_shift", [1, 2, 3])
def test_shape_and_dtype_are_unchanged(max_shift):
    x = images()
    out = random_shift(jax.random.key(1), x, max_shift)
    assert out.shape == x.shape
    assert out.dtype == x.dtype


@pytest.mark.parametrize(("max_shift", "seed"), [(1, 0), (2, 1), (3, 2)])
def test_every_image_is_an_integer_shift_within_the_bound(max_shift, seed):
    x = images(seed=seed)
    out = np.asarray(random_shift(jax.random.key(seed), x, max_shift))
    offsets_of(x, out, max_shift)


def test_offsets_are_independent_per_image_and_cover_the_range():
    max_shift = 2
    x = images(seed=3)
    out = np.asarray(random_shift(jax.random.key(3), x, max_shift))
    offsets = offsets_of(x, out, max_shift)
    assert {dy for dy, _ in offsets} == set(range(-max_shift, max_shift + 1))
    assert {dx for _, dx in offsets} == set(range(-max_shift, max_shift + 1))


def test_same_key_gives_same_result_and_other_key_differs():
    x = images()
    first = random_shift(jax.random.key(7), x, 2)
    np.testing.assert_array_equal(first, random_shift(jax.random.key(7), x, 2))
    assert not np.array_equal(first, random_shift(jax.random.key(8), x, 2))


@pytest.mark.parametrize("max_shift", [1, 2, 3])
def test_pixel_mass_is_never_created(max_shift):
    x = images(seed=4)
    out = np.asarray(random_shift(jax.random.key(4), x, max_shift))
    assert (out.sum(axis=(1, 2, 3)) <= x.sum(axis=(1, 2, 3)) * (1 + 1e-6)).all()


# --- colour images, and features that are not images ----------------------------------------


def test_colour_images_move_all_channels_together():
    """A 16x16 RGB batch: every image is one shift of itself, the same for its 3 channels,
    and each channel keeps its own values (no channel mixing)."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0.1, 1.0, (32, 16, 16, 3)).astype(np.float32)
    x[..., 1] += 10.0  # channels told apart by their range
    x[..., 2] += 20.0

    out = np.asarray(random_shift(jax.random.key(5), x, 2))

    assert out.shape == x.shape
    offsets_of(x, out, 2)  # one offset explains all 3 channels at once
    for channel, (low, high) in enumerate([(0.1, 1.0), (10.1, 11.0), (20.1, 21.0)]):
        kept = out[..., channel][out[..., channel] != 0.0]
        assert kept.min() >= low - 1e-6 and kept.max() <= high + 1e-6


def _split(x: np.ndarray) -> Split:
    y = np.zeros(len(x), np.int32)
    return Split(x, y, x, y, x, y, 2)


@pytest.mark.parametrize(
    "shape", [(10, 5), (10, 7, 3), (10, 2, 2, 2, 2)], ids=["tabular", "sequence", "5d"]
)
def test_shifts_of_features_that_are_not_images_are_refused_naming_the_key(shape):
    split = _split(np.zeros(shape, np.float32))

    with pytest.raises(DataError) as caught:
        check_augmentation(AugmentConfig(max_shift=1), split)

    assert caught.value.key == "augment.max_shift"
    assert str(list(shape[1:])) in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("shape", [(10, 5), (10, 8, 8, 1), (10, 16, 16, 3)])
def test_no_shift_or_images_pass_the_check(shape):
    split = _split(np.zeros(shape, np.float32))
    check_augmentation(AugmentConfig(max_shift=0), split)
    if len(shape) == 4:
        check_augmentation(AugmentConfig(max_shift=3), split)
