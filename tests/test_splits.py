"""Holdout and K-fold splits, train_fraction and standardization in ``split_dataset``, for
class labels and regression targets; built-in splits unchanged bit for bit."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sweepbook.config import DataConfig
from sweepbook.data import DataError, Dataset, Split, load_split, split_dataset

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


# --- regression targets ------------------------------------------------------------------------


def regression_dataset(targets: int = 0) -> Dataset:
    """500 tabular rows [SIZE, 3] whose first column is the row's index; float targets."""
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, (SIZE, 3)).astype(np.float32)
    x[:, 0] = np.arange(SIZE)
    y = rng.normal(0.0, 10.0, (SIZE, targets) if targets else SIZE).astype(np.float32)
    return Dataset("table", x, y, "regression")


REGRESSION = regression_dataset()


def regression_split(split_name: str = "holdout", **overrides: Any) -> Split:
    return split_dataset(REGRESSION, config(split_name, **overrides))


def row_ids(x: np.ndarray) -> set[int]:
    return set(x[:, 0].astype(int).tolist())


@pytest.mark.parametrize(
    ("split_name", "sizes"), [("holdout", (300, 100, 100)), ("kfold", (320, 80, 100))]
)
def test_regression_splits_are_plain_shuffles_that_keep_targets_with_rows(split_name, sizes):
    part = regression_split(split_name)
    assert (len(part.y_train), len(part.y_val), len(part.y_test)) == sizes
    train, val, test = row_ids(part.x_train), row_ids(part.x_val), row_ids(part.x_test)
    # The test set is scikit-learn's plain shuffle with the split seed.
    _, expected_test = train_test_split(np.arange(SIZE), test_size=0.2, random_state=3)
    assert test == set(expected_test.tolist())
    assert train | val | test == set(range(SIZE)) and len(train | val | test) == SIZE
    for x, y in [
        (part.x_train, part.y_train),
        (part.x_val, part.y_val),
        (part.x_test, part.y_test),
    ]:
        np.testing.assert_array_equal(REGRESSION.labels[x[:, 0].astype(int)], y)
    assert part.task == "regression" and part.num_outputs == 1 and part.num_classes == 1


def test_regression_kfold_folds_partition_the_non_test_rows():
    parts = [regression_split("kfold", fold=fold) for fold in range(5)]
    val_folds = [row_ids(part.x_val) for part in parts]
    assert sum(map(len, val_folds)) == 400
    assert set().union(*val_folds) == set(range(SIZE)) - row_ids(parts[0].x_test)


def test_regression_max_samples_and_train_fraction_subsample_by_plain_shuffle():
    part = regression_split(max_samples=200, train_fraction=0.5)
    assert (len(part.y_train), len(part.y_val), len(part.y_test)) == (60, 40, 40)
    expected, _ = train_test_split(np.arange(SIZE), train_size=200, random_state=3)
    kept = row_ids(part.x_train) | row_ids(part.x_val) | row_ids(part.x_test)
    assert kept <= set(expected.tolist())


def test_several_regression_targets_split_as_rows():
    dataset = regression_dataset(targets=2)
    part = split_dataset(dataset, config("kfold", fold=3))
    assert part.y_train.shape == (320, 2) and part.num_outputs == 2
    np.testing.assert_array_equal(dataset.labels[part.x_val[:, 0].astype(int)], part.y_val)


@pytest.mark.parametrize("split_name", ["stratified_holdout", "stratified_kfold"])
def test_stratified_splits_of_regression_targets_are_refused(split_name):
    with pytest.raises(DataError) as caught:
        regression_split(split_name)
    assert caught.value.key == "data.split"
    assert "use 'holdout' or 'kfold' for task = 'regression'" in str(caught.value)


# --- standardization ---------------------------------------------------------------------------


def test_standardize_features_matches_sklearn_standard_scaler():
    raw = regression_split("kfold", fold=1)
    scaled = regression_split("kfold", fold=1, normalize="standardize_features")
    scaler = StandardScaler().fit(raw.x_train.astype(np.float64))
    for before, after in [
        (raw.x_train, scaled.x_train),
        (raw.x_val, scaled.x_val),
        (raw.x_test, scaled.x_test),
    ]:
        assert after.dtype == np.float32
        np.testing.assert_allclose(after, scaler.transform(before), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scaled.x_train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(scaled.x_train.std(axis=0), 1.0, atol=1e-4)


def test_standardize_features_of_images_is_per_pixel_and_channel():
    """Every trailing position (pixel and channel) its own feature; a pixel constant over the
    training images is only centred, as StandardScaler leaves a zero-variance feature."""
    rng = np.random.default_rng(2)
    images = rng.uniform(0.0, 1.0, (200, 3, 3, 2)).astype(np.float32)
    images[:, 1, 1, 0] = 0.25  # constant feature
    images[:, 2, 2, 1] *= 50.0  # a feature on another scale
    dataset = Dataset("colour", images, np.arange(200, dtype=np.int32) % 2)
    raw = split_dataset(dataset, config("kfold"))
    scaled = split_dataset(dataset, config("kfold", normalize="standardize_features"))

    scaler = StandardScaler().fit(raw.x_train.reshape(len(raw.x_train), -1).astype(np.float64))
    for before, after in [(raw.x_train, scaled.x_train), (raw.x_test, scaled.x_test)]:
        expected = scaler.transform(before.reshape(len(before), -1)).reshape(before.shape)
        np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-5)
    assert (scaled.x_train[:, 1, 1, 0] == 0.0).all()


def test_standardize_still_uses_one_mean_and_one_std_against_numpy():
    raw = regression_split()
    scaled = regression_split(normalize="standardize")
    mean, std = raw.x_train.mean(), raw.x_train.std()
    np.testing.assert_array_equal(scaled.x_test, (raw.x_test - mean) / std)


# --- built-in splits: unchanged bit for bit --------------------------------------------------


def split_sha256(part: Split) -> str:
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        array = np.ascontiguousarray(getattr(part, name))
        digest.update(f"{name}{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


DIGITS = {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0}


# Digests computed with the code before features of any shape, regression and users' loaders
# (commit 1cf57e1): stored results were trained on exactly these arrays.
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "1fd2b17f545ec77969119ee6ccc3e72aaae4530bd4de320a650ed99b4dd41166"),
        (
            {
                "split": "stratified_kfold",
                "folds": 5,
                "fold": 2,
                "normalize": "standardize",
                "split_seed": 3,
            },
            "bd830a5657e829324e69d28b06e5a70fd7030bc2bd7af9bef8abd99927936e08",
        ),
        (
            {"split": "holdout", "max_samples": 900, "train_fraction": 0.5, "scale": 255.0},
            "57e3f3aa060ee8875753dcc4d2d42d7cb341a828d17eff49e12eae217147cecd",
        ),
    ],
    ids=["default", "kfold_standardize", "holdout_subsampled"],
)
def test_digits_splits_are_bit_identical_to_before(fields, expected):
    assert split_sha256(load_split(DataConfig(**(DIGITS | fields)))) == expected
