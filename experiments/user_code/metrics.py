"""A user's own metric: computed by sweepbook on the host from each run's predictions on the
validation and test sets, and stored as ``val.balanced_accuracy`` / ``test.balanced_accuracy``."""

from __future__ import annotations

import numpy as np

import sweepbook


@sweepbook.metric(direction="max", label="balanced accuracy")
def balanced_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The mean over classes of the recall (scikit-learn's ``balanced_accuracy_score``):
    a classifier that always answers the majority class scores 1 / classes."""
    predicted = probabilities.argmax(axis=1)
    recalls = [np.mean(predicted[labels == k] == k) for k in np.unique(labels)]
    return float(np.mean(recalls))
