"""Holdout and K-fold splits, train_fraction and standardization in ``split_dataset``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from sweepbook.config import DataConfig
from sweepbook.data import Dataset, Split, split_dataset

SIZE = 500
CLASS_SHARES = [0.4, 0.25, 0.15, 0.12, 0.08]  # unbalanced, so stratification is visible


def make_dataset() -> Dataset:
    """500 4x4 images whose first pixel encodes the image's index, labels in 5 classes."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 1.0, (SIZE, 4, 4, 1)).astype(np.float32)
    images[:, 0, 0, 0] = np.arange(SIZE) / SIZE
    labels = rng.permutation(np.repeat(np.arange(5), [int(s * SIZE) for s in CLASS_SHARES]))
    return Dataset("synthetic", images, labels.astype(np.int32))


DATASET = make_dataset()


def ids(images: np.ndarray) -> set[int]:
    return {int(i) for i in np.rint(images[:, 0, 0, 0] * SIZE)}


def config(split: str = "stratified_holdout", **overrides: Any) -> DataConfig:
    fields: dict[str, Any] = {
        "name": "digits",
        "test_fraction": 0.2,
        "split_seed": 3,
        "split": split,
    }
    fields |= {"folds": 5} if split.endswith("kfold") else {"val_fraction": 0.2}
    return DataConfig.model_validate(fields | overrides)


def split(split_name: str = "stratified_holdout", **overrides: Any) -> Split:
    return split_dataset(DATASET, config(split_name, **overrides))


KFOLD_SPLITS = ["kfold", "stratified_kfold"]
ALL_SPLITS = ["holdout", "stratified_holdout", *KFOLD_SPLITS]


@pytest.mark.parametrize("split_name", KFOLD_SPLITS)
def test_test_set_is_the_same_for_every_fold(split_name):
    first = split(split_name, fold=0)
    for fold in range(1, 5):
        other = split(split_name, fold=fold)
        np.testing.assert_array_equal(other.x_test, first.x_test)
        np.testing.assert_array_equal(other.y_test, first.y_test)


@pytest.mark.parametrize(
    ("holdout", "kfold"), [("holdout", "kfold"), ("stratified_holdout", "stratified_kfold")]
)
def test_test_set_is_shared_by_holdout_and_kfold_of_the_same_kind(holdout, kfold):
    np.testing.assert_array_equal(split(holdout).x_test, split(kfold, fold=2).x_test)


@pytest.mark.parametrize("split_name", KFOLD_SPLITS)
def test_validation_folds_partition_the_non_test_images(split_name):
    parts = [split(split_name, fold=fold) for fold in range(5)]
    test = ids(parts[0].x_test)
    val_folds = [ids(part.x_val) for part in parts]
    assert sum(len(fold) for fold in val_folds) == len(set().union(*val_folds))
    assert set().union(*val_folds) == set(range(SIZE)) - test
    for part, val in zip(parts, val_folds, strict=True):
        train = ids(part.x_train)
        assert not train & val
        assert not train & test
        assert train | val | test == set(range(SIZE))


@pytest.mark.parametrize("split_name", ALL_SPLITS)
def test_parts_are_disjoint_with_matching_labels(split_name):
    part = split(split_name)
    train, val, test = ids(part.x_train), ids(part.x_val), ids(part.x_test)
    assert len(train) + len(val) + len(test) == SIZE
    assert train | val | test == set(range(SIZE))
    for x, y in [
        (part.x_train, part.y_train),
        (part.x_val, part.y_val),
        (part.x_test, part.y_test),
    ]:
        index = np.rint(x[:, 0, 0, 0] * SIZE).astype(int)
        np.testing.assert_array_equal(DATASET.labels[index], y)


def test_stratified_kfold_keeps_class_proportions_in_every_fold():
    for fold in range(5):
        part = split("stratified_kfold", fold=fold)
        rest = np.concatenate([part.y_train, part.y_val])
        expected = np.bincount(rest, minlength=5) / 5
        assert np.all(np.abs(np.bincount(part.y_val, minlength=5) - expected) <= 1)


@pytest.mark.parametrize(
    ("plain", "stratified", "fold"),
    [("holdout", "stratified_holdout", {}), ("kfold", "stratified_kfold", {"fold": 1})],
)
def test_plain_and_stratified_splits_differ(plain, stratified, fold):
    a, b = split(plain, **fold), split(stratified, **fold)
    assert ids(a.x_val) != ids(b.x_val)
    assert ids(a.x_test) != ids(b.x_test)


@pytest.mark.parametrize("split_name", ALL_SPLITS)
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.77])
def test_train_fraction_keeps_that_share_of_the_training_part(split_name, fraction):
    full, small = split(split_name), split(split_name, train_fraction=fraction)
    assert abs(len(small.y_train) - fraction * len(full.y_train)) <= 1
    assert ids(small.x_train) <= ids(full.x_train)
    np.testing.assert_array_equal(small.x_val, full.x_val)
    np.testing.assert_array_equal(small.x_test, full.x_test)


@pytest.mark.parametrize("split_name", ["stratified_holdout", "stratified_kfold"])
def test_train_fraction_of_a_stratified_split_keeps_class_proportions(split_name):
    full, small = split(split_name), split(split_name, train_fraction=0.5)
    expected = np.bincount(full.y_train, minlength=5) * 0.5
    assert np.all(np.abs(np.bincount(small.y_train, minlength=5) - expected) <= 1)


@pytest.mark.parametrize("split_name", ["stratified_holdout", "kfold"])
def test_standardize_uses_the_training_statistics_for_every_part(split_name):
    raw = split(split_name, train_fraction=0.6)
    scaled = split(split_name, train_fraction=0.6, normalize="standardize")
    assert abs(scaled.x_train.mean()) < 1e-5
    assert abs(scaled.x_train.std() - 1.0) < 1e-5
    mean, std = raw.x_train.mean(), raw.x_train.std()
    for before, after in [(raw.x_val, scaled.x_val), (raw.x_test, scaled.x_test)]:
        np.testing.assert_allclose(after, (before - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scaled.y_val, raw.y_val)
    assert abs(scaled.x_val.mean()) > 1e-4  # not standardized with its own statistics


def test_split_depends_on_split_seed():
    assert ids(split(split_seed=3).x_test) != ids(split(split_seed=4).x_test)


@pytest.mark.parametrize(
    "fields",
    [
        {"split": "kfold"},
        {"split": "stratified_kfold"},
        {"split": "kfold", "folds": 5, "fold": 5},
        {"split": "stratified_kfold", "folds": 3, "fold": 7},
        {"split": "holdout", "val_fraction": 0.2, "folds": 5},
        {"split": "stratified_holdout", "val_fraction": 0.2, "fold": 1},
        {"split": "holdout"},
        {"split": "kfold", "folds": 1},
    ],
    ids=str,
)
def test_inconsistent_split_settings_are_rejected(fields):
    with pytest.raises(ValidationError):
        DataConfig.model_validate(
            {"name": "digits", "test_fraction": 0.2, "split_seed": 0} | fields
        )


@pytest.mark.parametrize("split_name", KFOLD_SPLITS)
def test_kfold_accepts_and_ignores_val_fraction(split_name):
    # One base experiment with val_fraction can be swept over holdout and K-fold splits.
    with_fraction = split(split_name, fold=1, val_fraction=0.5)
    without = split(split_name, fold=1)
    np.testing.assert_array_equal(with_fraction.x_val, without.x_val)
    np.testing.assert_array_equal(with_fraction.x_train, without.x_train)
