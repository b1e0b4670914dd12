"""Loaders of scikit-learn's embedded tabular datasets (they ship in its wheel: no download).
A loader returns NumPy arrays ``(x, y)``; sweepbook splits, standardizes and batches them."""

from __future__ import annotations

import numpy as np


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """442 patients, 10 baseline measurements (age, sex, BMI, blood pressure, six blood
    serum values, each already centred and scaled by scikit-learn), and a measure of disease
    progression one year later. The target is given in hundreds (a fixed change of unit, so
    that a network's output layer starts near it), so an RMSE of 0.55 means 55 units."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    return bunch.data.astype(np.float32), (bunch.target / 100.0).astype(np.float32)


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """569 tumours, 30 features of their cell nuclei, benign (1, 357) or malignant (0, 212):
    unbalanced classes, where balanced accuracy says more than accuracy."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int32)
