"""Datasets: embedded loaders, IDX and NPZ files, users' loaders, paths relative to the
experiment, and the seeded stratified split."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from sweepbook.config import DataConfig
from sweepbook.data import (
    DATASETS,
    DataError,
    Dataset,
    DatasetSpec,
    RawData,
    as_dataset,
    check_loaded,
    load_dataset,
    load_digits,
    load_idx_directory,
    load_mnist5k,
    load_npz,
    load_raw,
    load_split,
    pixel_divisor,
    read_idx,
    resolve_path,
    scaled_features,
    split_dataset,
    user_dataset_spec,
)

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_UINT8 = 0x08


def idx_bytes(array: np.ndarray, dtype_code: int = IDX_UINT8) -> bytes:
    """The IDX format: magic ``0 0 dtype ndim``, big-endian uint32 dims, then the data."""
    header = bytes([0, 0, dtype_code, array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + dims + array.tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def random_images(n: int, side: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, side, side), dtype=np.uint8)


def synthetic_dataset() -> Dataset:
    """Unbalanced classes (30, 43, ..., 147 samples) and one unique image per sample."""
    counts = [30 + 13 * c for c in range(10)]
    labels = np.repeat(np.arange(10), counts).astype(np.int32)
    n = len(labels)
    first_pixel = np.arange(n, dtype=np.float32) / n
    images = np.zeros((n, 3, 3, 1), np.float32)
    images[:, 0, 0, 0] = first_pixel
    return Dataset("synthetic", images, labels)


def data_config(**overrides) -> DataConfig:
    values = {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0}
    return DataConfig(**{**values, **overrides})


def rows(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x}


# --- embedded datasets ---------------------------------------------------------------------


def test_load_digits_shape_dtype_and_range():
    digits = as_dataset(load_digits(), "auto")

    assert digits.images.shape == (1797, 8, 8, 1)
    assert digits.images.dtype == np.float32
    assert digits.images.min() == 0.0
    assert digits.images.max() == 1.0
    assert digits.labels.shape == (1797,)
    assert digits.labels.dtype == np.int32
    assert digits.num_classes == 10


def test_load_mnist5k_gives_5000_mnist_digits_in_unit_range():
    mnist = as_dataset(load_mnist5k(), "auto")

    assert mnist.images.shape == (5000, 28, 28, 1)
    assert mnist.images.dtype == np.float32
    assert mnist.images.min() == 0.0
    assert mnist.images.max() == 1.0
    assert mnist.labels.dtype == np.int32
    assert set(np.unique(mnist.labels).tolist()) == set(range(10))
    assert mnist.num_classes == 10


# --- IDX -----------------------------------------------------------------------------------


def test_idx_bytes_follow_the_mnist_magic_numbers():
    images = idx_bytes(random_images(3, side=2))
    labels = idx_bytes(np.array([1, 2, 3], np.uint8))

    assert images[:4] == (0x00000803).to_bytes(4, "big")
    assert labels[:4] == (0x00000801).to_bytes(4, "big")
    assert images[4:16] == b"\x00\x00\x00\x03\x00\x00\x00\x02\x00\x00\x00\x02"


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    "array",
    [random_images(5, side=4), np.array([0, 9, 3, 255, 7], np.uint8)],
    ids=["images", "labels"],
)
def test_read_idx_round_trips_exactly(tmp_path, array, gz):
    path = write_idx(tmp_path / "file-idx-ubyte", array, gz=gz)

    loaded = read_idx(path)

    assert loaded.dtype == np.uint8
    assert loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)


def test_read_idx_reads_big_endian_int32(tmp_path):
    array = np.array([[1, -2], [70000, 3]], dtype=">i4")
    path = tmp_path / "ints-idx2-int"
    path.write_bytes(idx_bytes(array, dtype_code=0x0C))

    np.testing.assert_array_equal(read_idx(path), [[1, -2], [70000, 3]])


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\x01\x00\x08\x01" + (2).to_bytes(4, "big") + b"\x01\x02", "bad magic"),
        (b"\x00\x00\x07\x01" + (2).to_bytes(4, "big") + b"\x01\x02", "bad magic"),
        (b"\x00\x00", "bad magic"),
        (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"), "truncated IDX header"),
        (idx_bytes(random_images(2))[:-5], "header says 32"),
        (idx_bytes(random_images(2)) + b"\x00", "header says 32"),
        (gzip.compress(idx_bytes(random_images(2)))[:-12], "cannot read"),
    ],
    ids=["magic_prefix", "magic_dtype", "too_short", "header", "body_short", "body_long", "gzip"],
)
def test_read_idx_rejects_damaged_files_naming_them(tmp_path, raw, fragment):
    path = tmp_path / "broken-images-idx3-ubyte"
    path.write_bytes(raw)

    with pytest.raises(DataError) as caught:
        read_idx(path)

    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)


def test_load_idx_directory_pools_all_pairs_in_file_order(tmp_path):
    train_x, train_y = random_images(3, seed=1), np.array([0, 1, 2], np.uint8)
    test_x, test_y = random_images(2, seed=2), np.array([3, 1], np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", train_x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", train_y)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test_x, gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", test_y, gz=True)

    raw = load_idx_directory(tmp_path)
    images = scaled_features(raw, "auto")

    # Sorted by file name: t10k before train.
    expected = np.concatenate([test_x, train_x]).astype(np.float32)[..., None] / 255.0
    assert images.dtype == np.float32
    np.testing.assert_allclose(images, expected, rtol=1e-6)
    np.testing.assert_array_equal(raw.targets, [3, 1, 0, 1, 2])
    assert raw.name == str(tmp_path)


def test_load_idx_directory_errors_on_a_missing_labels_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", random_images(3), gz=True)

    with pytest.raises(DataError) as caught:
        load_idx_directory(tmp_path)

    assert "train-labels-idx1-ubyte.gz" in str(caught.value)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in str(caught.value)


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({}, "no '*-images-idx3-ubyte[.gz]' file"),
        (
            {"a-images-idx3-ubyte": random_images(3), "a-labels-idx1-ubyte": np.zeros(2, np.uint8)},
            "expected [N, H, W] or [N, H, W, C] images",
        ),
    ],
    ids=["no_images", "count_mismatch"],
)
def test_load_idx_directory_rejects_bad_directories(tmp_path, files, fragment):
    for name, array in files.items():
        write_idx(tmp_path / name, array)

    with pytest.raises(DataError) as caught:
        load_idx_directory(tmp_path)

    assert fragment in str(caught.value)
    assert str(tmp_path) in str(caught.value)


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_idx_files():
    dataset = as_dataset(load_idx_directory(FASHION_MNIST), "auto")

    assert dataset.images.shape == (70_000, 28, 28, 1)
    assert dataset.images.dtype == np.float32
    assert dataset.images.min() >= 0.0 and dataset.images.max() <= 1.0
    assert dataset.num_classes == 10
    assert np.bincount(dataset.labels).tolist() == [7000] * 10


# --- NPZ -----------------------------------------------------------------------------------


def test_load_npz_with_x_and_y(tmp_path):
    x, y = random_images(6, side=5), np.array([0, 1, 2, 0, 1, 2])
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, y=y)

    raw = load_npz(path)
    images = scaled_features(raw, "auto")

    assert raw.name == str(path)
    assert images.shape == (6, 5, 5, 1)
    np.testing.assert_allclose(images[..., 0], x / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(raw.targets, y)


def test_load_npz_pools_train_and_test_arrays(tmp_path):
    x_train, x_test = random_images(4, seed=1), random_images(2, seed=2)
    path = tmp_path / "split.npz"
    np.savez(path, x_train=x_train, y_train=[0, 1, 2, 3], x_test=x_test, y_test=[4, 5])

    raw = load_npz(path)

    np.testing.assert_allclose(
        scaled_features(raw, "auto")[..., 0], np.concatenate([x_train, x_test]) / 255.0, rtol=1e-6
    )
    np.testing.assert_array_equal(raw.targets, [0, 1, 2, 3, 4, 5])


def test_load_npz_reshapes_flat_784_pixel_rows(tmp_path):
    flat = np.random.default_rng(0).integers(0, 256, size=(3, 784), dtype=np.uint8)
    path = tmp_path / "flat.npz"
    np.savez(path, x=flat, y=[7, 8, 9])

    images = scaled_features(load_npz(path), "auto")

    assert images.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(images.reshape(3, 784), flat / 255.0, rtol=1e-6)


def test_load_npz_keeps_float_images_already_in_unit_range(tmp_path):
    x = np.random.default_rng(0).random((4, 3, 3)).astype(np.float32)
    path = tmp_path / "float.npz"
    np.savez(path, x=x, y=[0, 1, 0, 1])

    np.testing.assert_array_equal(scaled_features(load_npz(path), "auto")[..., 0], x)


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        ({"images": np.zeros((2, 3, 3))}, "expected arrays 'x' and 'y'"),
        ({"x": np.zeros((2, 4, 4, 2)), "y": [0, 1]}, "expected images [N, H, W]"),
        ({"x": np.zeros((3, 4, 4)), "y": [0, 1]}, "expected images [N, H, W]"),
    ],
    ids=["no_arrays", "two_channels", "length_mismatch"],
)
def test_load_npz_rejects_bad_archives_naming_them(tmp_path, arrays, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)

    with pytest.raises(DataError) as caught:
        load_npz(path)

    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)


def test_load_npz_on_a_file_that_is_not_an_archive(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip file at all")

    with pytest.raises(DataError, match="cannot read NPZ"):
        load_npz(path)


# --- split ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("val", "test"), [(0.2, 0.2), (0.1, 0.3), (0.15, 0.15)])
def test_split_sizes_follow_the_fractions(val, test):
    dataset = synthetic_dataset()
    n = len(dataset.labels)

    split = split_dataset(dataset, data_config(val_fraction=val, test_fraction=test))

    sizes = (len(split.y_train), len(split.y_val), len(split.y_test))
    assert sum(sizes) == n
    for size, fraction in zip(sizes, (1 - val - test, val, test), strict=True):
        assert abs(size - fraction * n) <= 1 + 1e-9  # within one image, float noise aside
    assert len(split.x_train) == len(split.y_train)
    assert len(split.x_val) == len(split.y_val)
    assert len(split.x_test) == len(split.y_test)
    assert split.num_classes == 10


@pytest.mark.parametrize("split_seed", [0, 1, 2])
def test_split_is_stratified(split_seed):
    dataset = synthetic_dataset()
    class_counts = np.bincount(dataset.labels)

    split = split_dataset(
        dataset, data_config(val_fraction=0.1, test_fraction=0.3, split_seed=split_seed)
    )

    for labels, fraction in ((split.y_train, 0.6), (split.y_val, 0.1), (split.y_test, 0.3)):
        counts = np.bincount(labels, minlength=10)
        assert np.abs(counts - fraction * class_counts).max() <= 1.0


def test_split_parts_are_disjoint_and_cover_the_dataset():
    dataset = synthetic_dataset()

    split = split_dataset(dataset, data_config())

    train, val, test = rows(split.x_train), rows(split.x_val), rows(split.x_test)
    assert not train & val
    assert not train & test
    assert not val & test
    assert train | val | test == rows(dataset.images)


def test_split_keeps_labels_with_their_images():
    dataset = synthetic_dataset()
    label_of = {
        row.tobytes(): label for row, label in zip(dataset.images, dataset.labels, strict=True)
    }

    split = split_dataset(dataset, data_config())

    for x, y in (
        (split.x_train, split.y_train),
        (split.x_val, split.y_val),
        (split.x_test, split.y_test),
    ):
        assert [label_of[row.tobytes()] for row in x] == y.tolist()


def test_split_is_deterministic_for_one_split_seed():
    dataset = synthetic_dataset()

    first = split_dataset(dataset, data_config(split_seed=3))
    second = split_dataset(dataset, data_config(split_seed=3))

    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_split_differs_for_another_split_seed():
    dataset = synthetic_dataset()

    first = split_dataset(dataset, data_config(split_seed=0))
    second = split_dataset(dataset, data_config(split_seed=1))

    assert rows(first.x_test) != rows(second.x_test)
    assert rows(first.x_val) != rows(second.x_val)


def test_split_max_samples_takes_a_stratified_subsample():
    dataset = synthetic_dataset()
    class_counts = np.bincount(dataset.labels)
    n = len(dataset.labels)

    split = split_dataset(dataset, data_config(max_samples=400))

    labels = np.concatenate([split.y_train, split.y_val, split.y_test])
    assert len(labels) == 400
    assert np.abs(np.bincount(labels, minlength=10) - 400 * class_counts / n).max() <= 1.0
    images = rows(np.concatenate([split.x_train, split.x_val, split.x_test]))
    assert len(images) == 400
    assert images <= rows(dataset.images)


def test_split_max_samples_above_dataset_size_keeps_everything():
    dataset = synthetic_dataset()

    split = split_dataset(dataset, data_config(max_samples=10_000))

    assert len(split.y_train) + len(split.y_val) + len(split.y_test) == len(dataset.labels)


# --- what the data must be: class labels, explicit pixel scale ------------------------------


def test_integer_regression_targets_are_refused_as_class_labels(tmp_path):
    """scikit-learn's diabetes targets (integers 25..346) once trained as a 347-class
    classifier; they are refused, naming the file and saying regression is not supported."""
    from sklearn.datasets import load_diabetes

    targets = load_diabetes().target.astype(np.int64)
    path = tmp_path / "diabetes.npz"
    np.savez(path, x=random_images(len(targets), side=2), y=targets)

    with pytest.raises(DataError) as caught:
        as_dataset(load_npz(path), "auto")

    message = str(caught.value)
    assert str(path) in message and "set task = 'regression'" in message
    assert "never occur" in message and caught.value.key == "data.path"


def test_many_classes_for_few_examples_are_refused():
    labels = np.arange(40) % 20  # every class present, 2 examples each
    raw = RawData("few.npz", random_images(40, side=2), labels)

    with pytest.raises(DataError, match=r"20 classes for 40 examples .*regression"):
        as_dataset(raw, "auto")


def test_continuous_targets_name_regression():
    with pytest.raises(DataError, match="regression"):
        check_loaded(Path("t.npz"), random_images(3), np.array([0.5, 1.25, 2.0]), "classification")


def test_a_class_missing_from_the_training_part_is_refused_naming_the_setting():
    dataset = synthetic_dataset()
    config = data_config(split="holdout", train_fraction=0.01)  # about 5 examples

    with pytest.raises(DataError) as caught:
        split_dataset(dataset, config)

    assert caught.value.key == "data.train_fraction"
    assert "no example of class" in str(caught.value)


@pytest.mark.parametrize(
    ("pixels", "scale", "divisor"),
    [
        (np.array([[0, 255]], np.uint8), "auto", 255.0),
        (np.array([[0.0, 0.5]], np.float32), "auto", 1.0),
        (np.array([[0.0, 237.0]], np.float64), 255.0, 255.0),
        (np.array([[0.0, 237.0]], np.float64), 1.0, 1.0),
        (np.array([[-1.5, 2.0]], np.float32), 1.0, 1.0),
    ],
)
def test_pixels_are_divided_only_as_data_scale_says(pixels, scale, divisor):
    raw = RawData("p", pixels, np.array([0]))

    assert pixel_divisor(raw, scale) == divisor


@pytest.mark.parametrize(
    "pixels", [np.array([[0.0, 237.0]]), np.array([[-1.5, 0.5]]), np.array([[0, 300]], np.int32)]
)
def test_pixels_outside_unit_range_need_an_explicit_scale(pixels):
    """Float pixels above 1 were once divided by 255 without a word."""
    raw = RawData("mine.npz", pixels, np.array([0]))

    with pytest.raises(DataError) as caught:
        pixel_divisor(raw, "auto")

    assert caught.value.key == "data.scale"
    assert "mine.npz" in str(caught.value) and "data.scale = 255" in str(caught.value)


def test_embedded_datasets_use_their_own_range():
    assert pixel_divisor(load_digits(), "auto") == 16.0
    assert scaled_features(load_digits(), 1.0).max() == 16.0


def test_datasets_are_registered_with_whether_they_read_data_path(tmp_path):
    assert {name: DATASETS[name].needs_path for name in DATASETS} == {
        "digits": False,
        "mnist5k": False,
        "idx": True,
        "npz": True,
    }
    base = {"val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0}
    with pytest.raises(ValueError, match=r"required for data\.name = 'npz'"):
        DataConfig(name="npz", **base)
    with pytest.raises(ValueError, match="not used by the embedded dataset 'digits'"):
        DataConfig(name="digits", path="x.npz", **base)
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*did you mean"):
        DataConfig(name="mnist", **base)


def test_a_registered_dataset_is_loaded_by_name(tmp_path):
    pixels = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    DATASETS.register(
        "test_ramp", DatasetSpec(lambda _, __: RawData("ramp", pixels, np.arange(5)), False)
    )
    try:
        raw = load_raw("test_ramp", None)
        assert raw.features is pixels and raw.targets.tolist() == [0, 1, 2, 3, 4]
    finally:
        DATASETS.unregister("test_ramp")


# --- images of any shape in NPZ and IDX files --------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_load_npz_keeps_colour_images(tmp_path, channels):
    x = np.random.default_rng(channels).integers(0, 256, (6, 5, 7, channels), dtype=np.uint8)
    path = tmp_path / "colour.npz"
    np.savez(path, x=x, y=[0, 1, 2, 0, 1, 2])

    features = scaled_features(load_npz(path), "auto")

    assert features.shape == (6, 5, 7, channels)
    np.testing.assert_array_equal(features, (x / 255.0).astype(np.float32))


def test_load_npz_gives_non_square_grey_images_a_channel(tmp_path):
    x = random_images(4, side=6)[:, :, :3]  # 6x3
    path = tmp_path / "wide.npz"
    np.savez(path, x=x, y=[0, 1, 0, 1])

    assert load_npz(path).features.shape == (4, 6, 3, 1)


@pytest.mark.parametrize(("width", "shape"), [(10, (2, 10)), (16, (2, 4, 4, 1)), (3, (2, 3))])
def test_flat_npz_rows_are_square_images_only_for_a_perfect_square(tmp_path, width, shape):
    path = tmp_path / "flat.npz"
    np.savez(path, x=np.zeros((2, width)), y=[0, 1])

    assert load_npz(path).features.shape == shape


def test_load_idx_directory_reads_non_square_images(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (3, 4, 6), dtype=np.uint8)
    write_idx(tmp_path / "a-images-idx3-ubyte", x)
    write_idx(tmp_path / "a-labels-idx1-ubyte", np.array([0, 1, 2], np.uint8))

    raw = load_idx_directory(tmp_path)

    assert raw.features.shape == (3, 4, 6, 1)
    np.testing.assert_array_equal(raw.features[..., 0], x)


def test_regression_targets_from_an_npz_file(tmp_path):
    """scikit-learn's diabetes: 10 float features, continuous targets 25..346."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    path = tmp_path / "diabetes.npz"
    np.savez(path, x=x, y=y)

    dataset = as_dataset(load_npz(path), 1.0, "regression")

    assert dataset.images.shape == (442, 10) and dataset.labels.dtype == np.float32
    np.testing.assert_array_equal(dataset.labels, y.astype(np.float32))
    np.testing.assert_array_equal(dataset.images, x.astype(np.float32))
    assert dataset.num_outputs == 1


# --- users' loaders ------------------------------------------------------------------------------

LOADER = "test_user_loader"


@pytest.fixture
def register_loader():
    """Register a test's loader under :data:`LOADER` through :func:`user_dataset_spec`, as the
    experiment's reference would be; unregister it and forget cached data afterwards."""

    def register(loader, name=LOADER):
        DATASETS.register(name, user_dataset_spec(loader, name))

    yield register
    DATASETS.unregister(LOADER)
    load_dataset.cache_clear()
    load_split.cache_clear()


def loader_config(**overrides) -> DataConfig:
    values = {"name": LOADER, "split": "holdout", "val_fraction": 0.2, "split_seed": 0}
    return DataConfig(**{**values, **overrides})


def colour_arrays(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """uint8 16x16 RGB images whose first pixel's red value is the example's index."""
    x = np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n)
    return x, np.arange(n) % 3


def test_colour_images_from_a_user_loader(register_loader):
    x, y = colour_arrays()
    register_loader(lambda: (x, y))

    split = load_split(loader_config(test_fraction=0.25, split="stratified_holdout"))

    assert split.x_train.shape[1:] == (16, 16, 3) and split.x_train.dtype == np.float32
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (33, 12, 15)
    assert split.num_classes == split.num_outputs == 3 and split.task == "classification"
    for xs, ys in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        index = np.rint(xs[:, 0, 0, 0] * 255.0).astype(int)
        np.testing.assert_array_equal(xs, (x[index] / 255.0).astype(np.float32))
        np.testing.assert_array_equal(ys, y[index])


def tabular_regression(n: int, seed: int, targets: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features [n, 4] whose first column is the example's index; targets a known linear
    function of the features ([n], or [n, targets])."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, (n, 4))
    x[:, 0] = np.arange(n) + 1000 * seed
    weights = np.arange(1.0, 5.0)
    y = x @ weights
    if targets:
        y = np.stack([y * (t + 1) for t in range(targets)], axis=1)
    return x, y


def test_tabular_regression_with_its_own_test_split(register_loader):
    x, y = tabular_regression(100, seed=0)
    x_test, y_test = tabular_regression(30, seed=1)
    register_loader(lambda: {"x": x, "y": y, "x_test": x_test, "y_test": y_test})

    split = load_split(loader_config(val_fraction=0.25), "regression")

    # The loader's test split is the test set, untouched; validation is a quarter of the rest.
    np.testing.assert_array_equal(split.x_test, x_test.astype(np.float32))
    np.testing.assert_array_equal(split.y_test, y_test.astype(np.float32))
    assert (len(split.y_train), len(split.y_val)) == (75, 25)
    seen = np.concatenate([split.x_train[:, 0], split.x_val[:, 0]])
    assert sorted(seen.astype(int).tolist()) == list(range(100))
    for xs, ys in ((split.x_train, split.y_train), (split.x_val, split.y_val)):
        np.testing.assert_array_equal(ys, y[xs[:, 0].astype(int)].astype(np.float32))
    assert split.task == "regression" and split.num_outputs == 1
    assert split.y_train.dtype == np.float32


def test_regression_with_several_targets_has_that_many_outputs(register_loader):
    x, y = tabular_regression(50, seed=0, targets=3)
    register_loader(lambda: (x, y))

    split = load_split(loader_config(test_fraction=0.2, split="kfold", folds=5), "regression")

    assert split.y_train.shape == (32, 3) and split.num_outputs == 3 == split.num_classes


def test_a_test_fraction_beside_a_loaders_own_test_split_is_refused(register_loader):
    x, y = tabular_regression(40, seed=0)
    register_loader(lambda: (x, y, x[:5], y[:5]))

    with pytest.raises(DataError) as caught:
        load_split(loader_config(test_fraction=0.2), "regression")

    assert caught.value.key == "data.test_fraction"
    assert "own test split" in str(caught.value)


def test_a_loader_without_a_test_split_needs_test_fraction(register_loader):
    x, y = tabular_regression(40, seed=0)
    register_loader(lambda: (x, y))

    with pytest.raises(DataError) as caught:
        load_split(loader_config(), "regression")

    assert caught.value.key == "data.test_fraction"


def test_stratified_split_of_regression_targets_is_refused(register_loader):
    x, y = tabular_regression(40, seed=0)
    register_loader(lambda: (x, y))

    with pytest.raises(DataError) as caught:
        load_split(
            loader_config(test_fraction=0.2, split="stratified_kfold", folds=3), "regression"
        )

    assert caught.value.key == "data.split"
    assert str(caught.value) == (
        f"{LOADER}: stratified splits need class labels; use 'holdout' or 'kfold' for "
        "task = 'regression'"
    )


def test_a_loader_gets_data_args_and_the_resolved_path(register_loader, tmp_path):
    calls = []

    def loader(path, rows, names):
        calls.append((path, rows, names))
        x, y = tabular_regression(rows, seed=0)
        return x, y

    register_loader(loader)
    config = loader_config(
        test_fraction=0.2, path="tables/t.csv", args={"rows": 30, "names": ["a", "b"]}
    )

    split = load_split(config, "regression", tmp_path)

    assert calls == [(tmp_path / "tables" / "t.csv", 30, ["a", "b"])]
    assert len(split.y_train) + len(split.y_val) + len(split.y_test) == 30


def test_a_loader_without_data_path_gets_no_path_argument(register_loader):
    x, y = colour_arrays()
    register_loader(lambda **kwargs: (x, y) if not kwargs else None)

    assert len(load_split(loader_config(test_fraction=0.2)).y_test) == 12


def test_data_args_are_refused_by_built_in_datasets():
    with pytest.raises(ValueError, match="only a user's loader takes arguments"):
        data_config(args={"rows": 3})


def test_data_configs_with_equal_args_hash_alike(register_loader):
    register_loader(lambda n, k: colour_arrays(n))
    first = loader_config(test_fraction=0.2, args={"n": 60, "k": [1, 2]})
    second = loader_config(test_fraction=0.2, args={"k": [1, 2], "n": 60})

    assert first == second and hash(first) == hash(second)
    assert load_split(first) is load_split(second)  # cached once


def test_a_user_loaders_path_is_optional_but_a_built_in_test_fraction_is_not(register_loader):
    register_loader(colour_arrays)

    assert loader_config().path is None and loader_config(path="x").path == "x"
    with pytest.raises(ValueError, match=r"required for data\.name = 'digits'"):
        DataConfig(name="digits", val_fraction=0.2, split_seed=0)


def test_uint8_loader_features_are_divided_and_others_kept(register_loader):
    x = np.array([[0.0, 300.0], [-2.0, 1.5]] * 10)
    register_loader(lambda: (x, np.arange(20.0)))

    kept = as_dataset(load_raw(LOADER, None), "auto", "regression")
    halved = as_dataset(load_raw(LOADER, None), 2.0, "regression")

    np.testing.assert_array_equal(kept.images, x.astype(np.float32))
    np.testing.assert_array_equal(halved.images, (x / 2.0).astype(np.float32))
    assert (
        pixel_divisor(RawData("u", np.zeros((1, 2), np.uint8), np.zeros(1), 255.0), "auto") == 255
    )


X4 = np.zeros((10, 4))
Y4 = np.arange(10.0)


@pytest.mark.parametrize(
    ("returned", "fragment"),
    [
        ([X4, Y4, X4], "returned list of 3"),
        ("x, y", "returned str"),
        ({"x": X4}, "returned a dict with keys ['x']"),
        ({"x": X4, "y": Y4, "z": X4}, "'z'"),
        ((X4.tolist(), Y4), "returned x as list, expected a NumPy array"),
        ((X4, Y4[:9]), "10 examples but 9 targets"),
        ((X4[:0], Y4[:0]), "holds no examples"),
        ((X4.astype(object), Y4), "features must be numbers, not object"),
        ((X4.astype(str), Y4), "features must be numbers, not <U32"),
        ((X4 + 1j, Y4), "features must be numbers, not complex128"),
        ((np.full((10, 4), np.nan), Y4), "features contain NaN or infinity"),
        ((X4, np.full(10, np.inf)), "targets contain NaN or infinity"),
        ((X4, np.full(10, 1e300)), "targets exceed float32's range"),
        ((np.zeros(10), Y4), "features must be [N, ...]"),
        ((X4, Y4, np.zeros((3, 5)), Y4[:3]), "test features are [5] per example but training"),
        ((X4, Y4, X4[:3], Y4[:2]), "3 test examples but 2 test targets"),
        ((X4, Y4, X4, None), "gives test features or test targets, not both"),
    ],
    ids=lambda value: "" if not isinstance(value, str) else value[:24],
)
def test_what_a_loader_returns_is_checked_in_one_line_naming_it(
    register_loader, returned, fragment
):
    register_loader(lambda: returned)

    with pytest.raises(DataError) as caught:
        as_dataset(load_raw(LOADER, None), "auto", "regression")

    message = str(caught.value)
    assert caught.value.key == "data.name"
    assert message.startswith(f"{LOADER}: ") and "\n" not in message
    assert fragment in message


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [(np.arange(10) * 0.5, "whole numbers"), (np.arange(10), "10 classes for 10 examples")],
)
def test_a_loaders_class_labels_are_checked_as_class_indices(register_loader, labels, fragment):
    register_loader(lambda: (X4, labels))

    with pytest.raises(DataError, match=fragment) as caught:
        as_dataset(load_raw(LOADER, None), "auto", "classification")

    assert caught.value.key == "data.name"


def test_an_error_the_loader_raises_is_reported_in_one_line():
    def loader(rows):
        raise FileNotFoundError(f"no table\nwith {rows} rows " + "x" * 500)

    DATASETS.register(LOADER, user_dataset_spec(loader, "tables.py:load"))
    try:
        with pytest.raises(DataError) as caught:
            load_raw(LOADER, None, args={"rows": 3})
    finally:
        DATASETS.unregister(LOADER)

    message = str(caught.value)
    assert message.startswith("tables.py:load: the loader raised FileNotFoundError: no table ")
    assert "with 3 rows" in message and "\n" not in message and len(message) < 300
    assert caught.value.key == "data.name"


# --- paths relative to the experiment ----------------------------------------------------------


def test_a_relative_data_path_is_read_from_the_experiment_folder(tmp_path, monkeypatch):
    experiment = tmp_path / "project" / "experiments"
    (experiment / "data").mkdir(parents=True)
    x, y = random_images(40, side=4), np.arange(40) % 4
    np.savez(experiment / "data" / "mine.npz", x=x, y=y)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = data_config(name="npz", path="data/mine.npz")
    load_dataset.cache_clear()

    split = load_split(config, "classification", experiment)

    assert len(split.y_train) + len(split.y_val) + len(split.y_test) == 40
    with pytest.raises(DataError, match="cannot read NPZ"):
        load_split(config)  # no base: the working directory, which has no data/mine.npz


def test_an_absolute_or_home_data_path_ignores_the_base(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))

    assert resolve_path("~/d.npz", Path("/elsewhere")) == tmp_path / "d.npz"
    assert resolve_path(str(tmp_path / "d.npz"), Path("/elsewhere")) == tmp_path / "d.npz"
    assert resolve_path("d.npz", None) == Path("d.npz")
    assert resolve_path(None, tmp_path) is None


def test_max_samples_thins_only_the_training_examples_beside_an_own_test_split(register_loader):
    x, y = tabular_regression(100, seed=0)
    x_test, y_test = tabular_regression(30, seed=1)
    register_loader(lambda: (x, y, x_test, y_test))

    split = load_split(loader_config(max_samples=40, val_fraction=0.25), "regression")

    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (30, 10, 30)
    np.testing.assert_array_equal(split.x_test, x_test.astype(np.float32))


def test_data_args_enter_the_flat_config_only_when_given(register_loader):
    from sweepbook.config import flatten, unflatten

    register_loader(lambda rows: tabular_regression(rows, seed=0))
    given = loader_config(test_fraction=0.2, args={"rows": 30, "names": ["a"]})

    assert "args" not in data_config().model_dump()  # run ids of built-in data unchanged
    flat = flatten(given.model_dump())
    assert flat["args.rows"] == 30 and flat["args.names"] == ["a"]
    assert DataConfig.model_validate(unflatten(flat)) == given
