"""Users' loaders for the bad-input corpus: each returns something wrong."""

import numpy as np


def nan_features():
    x = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    x[3, 1] = np.nan
    return x, np.arange(100) % 2


def mismatched_lengths():
    return np.zeros((100, 4), np.float32), np.arange(90) % 2


def object_targets():
    return np.zeros((100, 4), np.float32), np.array(["cat", "dog"] * 50, dtype=object)


def raises():
    raise FileNotFoundError("/data/my_study/features.parquet: no such file\n(see setup notes)")


def tabular():
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 6)).astype(np.float32), (np.arange(200) % 2).astype(np.int32)
