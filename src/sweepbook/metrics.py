"""Classification metrics from predicted class probabilities and regression metrics from
predicted values, on the host in NumPy; the :data:`METRICS` registry of the metrics a report
can rank runs by, and :func:`metric_info`, how a report reads a stored metric's direction and
label.

Definitions follow scikit-learn (precision/recall/F1 with ``labels=range(C)`` and
``zero_division=0``; one-vs-rest ROC-AUC; MSE, RMSE, MAE and R² with
``multioutput="uniform_average"``) so that numbers stored by a sweep can be checked against
it, but scikit-learn is not imported here: it is slow to import and this runs once per
evaluation of every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sweepbook.registry import Registry

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")
DEFAULT_TASK: Task = "classification"  # what a store that records no task holds


@dataclass(frozen=True)
class MetricSpec:
    """A metric a report can rank runs by (``report.metric = "<split>.<name>"``).

    ``direction``: whether a higher ("max") or lower ("min") value is better; ``label``: its
    readable name; ``stored``: whether every run stores it for the test and validation sets
    (a metric that is not, like "error", can only set the direction of a sweep's own
    ``report.direction``-less ranking of a column it computes itself); ``task``: the kind of
    experiment whose runs store it ("any": every kind, like the loss)."""

    direction: Literal["max", "min"]
    label: str
    stored: bool = True
    task: Literal["classification", "regression", "any"] = "any"


METRICS: Registry[MetricSpec] = Registry("metric")
METRICS.register("accuracy", MetricSpec("max", "accuracy", task="classification"))
METRICS.register("loss", MetricSpec("min", "loss"))
for _kind, _shown in (("precision", "precision"), ("recall", "recall"), ("f1", "F1")):
    for _average in ("micro", "macro", "weighted"):
        METRICS.register(
            f"{_kind}_{_average}",
            MetricSpec("max", f"{_shown} ({_average})", task="classification"),
        )
METRICS.register("roc_auc", MetricSpec("max", "ROC-AUC", task="classification"))
METRICS.register("ece", MetricSpec("min", "ECE", task="classification"))
METRICS.register("mce", MetricSpec("min", "MCE", task="classification"))
METRICS.register("error", MetricSpec("min", "error", stored=False, task="classification"))
METRICS.register("mse", MetricSpec("min", "MSE", task="regression"))
METRICS.register("rmse", MetricSpec("min", "RMSE", task="regression"))
METRICS.register("mae", MetricSpec("min", "MAE", task="regression"))
METRICS.register("r2", MetricSpec("max", "R²", task="regression"))


def metrics_for_task(task: str) -> tuple[str, ...]:
    """The registered metrics every run of a ``task`` experiment stores for its test and
    validation sets (its own and those of any task, such as the loss), in registration order."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return tuple(
        name for name, spec in METRICS.items() if spec.stored and spec.task in (task, "any")
    )


SPLITS = ("train", "val", "test")  # the prefixes of stored metric columns


def metric_info(
    name: str, record: Mapping[str, Any] | None = None
) -> tuple[Literal["max", "min"], str]:
    """``(direction, label)`` of a stored metric, ``name`` bare ("rmse") or a column
    ("test.rmse"): the store's own definition first (``record["metrics"]``, where a sweep
    records metrics that are not built in, such as a user's ``balanced_accuracy``), then
    :data:`METRICS`, then ("max", the name): a report must render any store, and an unknown
    score is more often one to maximise."""
    split, dot, bare = name.partition(".")
    if not dot or split not in SPLITS:
        bare = name
    recorded = (record or {}).get("metrics") or {}
    if bare in recorded:
        entry = recorded[bare]
        direction = entry.get("direction", "max")
        if direction not in ("max", "min"):
            raise ValueError(
                f"sweep.json: metrics.{bare}.direction must be 'max' or 'min', got {direction!r}"
            )
        return direction, str(entry.get("label", bare))
    if bare in METRICS:
        spec = METRICS[bare]
        return spec.direction, spec.label
    return "max", bare


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``M[i, j]`` of samples of true class ``i`` predicted as class ``j``.

    Returns an int64 array of shape ``[num_classes, num_classes]``; empty input gives zeros.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    labels = _class_indices(labels, num_classes, "labels")
    predictions = _class_indices(predictions, num_classes, "predictions")
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions must have the same shape, got {labels.shape} and "
            f"{predictions.shape}"
        )
    # One bincount over the flattened (true, predicted) pair is O(N), with no Python loop.
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def classification_metrics(
    probabilities: np.ndarray, labels: np.ndarray, *, bins: int = 15
) -> dict[str, float | list[list[int]]]:
    """Accuracy, precision/recall/F1 (micro, macro, weighted), ROC-AUC, ECE, MCE, confusion.

    ``probabilities`` is float ``[N, C]`` with rows summing to 1; ``labels`` is int ``[N]`` in
    ``0..C-1``. The predicted class is the argmax (first one on ties).

    Per class ``k`` with ``tp``, ``fp``, ``fn`` counts: precision ``tp / (tp + fp)``, recall
    ``tp / (tp + fn)``, F1 ``2 tp / (2 tp + fp + fn)``, each 0 when its denominator is 0.
    Macro averages over all ``C`` classes (a class absent from labels and predictions counts
    as 0, as in scikit-learn with ``labels=range(C)``); weighted averages by true-class support;
    micro pools the counts, which for single-label data makes all three equal to accuracy.

    ``roc_auc`` is the one-vs-rest AUC macro-averaged over the classes that have both positives
    and negatives among ``labels`` (NaN if none). ``ece`` and ``mce`` are the expected and
    maximum calibration error of Guo et al. (2017) over ``bins`` equal-width confidence bins
    ``[0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1]``:
    ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` and ``MCE = max_b |acc_b - conf_b|`` over
    non-empty bins, where confidence is the maximum probability.
    """
    probabilities, labels = _validate(probabilities, labels, bins)
    num_samples, num_classes = probabilities.shape
    predictions = np.argmax(probabilities, axis=1)
    confusion = confusion_matrix(labels, predictions, num_classes)

    true_positives = np.diag(confusion).astype(np.float64)
    true_counts = confusion.sum(axis=1).astype(np.float64)
    predicted_counts = confusion.sum(axis=0).astype(np.float64)
    precision = _divide_or_zero(true_positives, predicted_counts)
    recall = _divide_or_zero(true_positives, true_counts)
    f1 = _divide_or_zero(2.0 * true_positives, true_counts + predicted_counts)
    # Every sample has exactly one true and one predicted class inside 0..C-1, so the pooled
    # tp / (tp + fp), tp / (tp + fn) and 2 tp / (2 tp + fp + fn) all reduce to accuracy.
    accuracy = float(true_positives.sum() / num_samples)

    ece, mce = _calibration_errors(probabilities, labels, predictions, bins)
    # Weighted means are counts @ values / N (numpy.average's order, as in scikit-learn), so
    # all-ones per-class values average to exactly 1.0 rather than 0.9999999999999999.
    return {
        "accuracy": accuracy,
        "precision_micro": accuracy,
        "precision_macro": float(precision.mean()),
        "precision_weighted": float(true_counts @ precision / num_samples),
        "recall_micro": accuracy,
        "recall_macro": float(recall.mean()),
        "recall_weighted": float(true_counts @ recall / num_samples),
        "f1_micro": accuracy,
        "f1_macro": float(f1.mean()),
        "f1_weighted": float(true_counts @ f1 / num_samples),
        "roc_auc": _one_vs_rest_roc_auc(probabilities, labels),
        "ece": ece,
        "mce": mce,
        "confusion": confusion.tolist(),
    }


def regression_metrics(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Mean squared error, its root, mean absolute error and R² of ``predictions`` against
    ``targets``, both ``[N]`` (one output) or ``[N, K]`` (K outputs), computed in float64.

    As scikit-learn's defaults (``multioutput="uniform_average"``), each is computed per output
    and then averaged over the outputs with equal weights. So for several outputs ``rmse`` is the
    mean of the per-output RMSEs, not the square root of ``mse``; for one output it is.

    ``R²_k = 1 - sum_i (y_ik - p_ik)² / sum_i (y_ik - mean_i y_ik)²``. An output whose targets
    are all equal has no variance to explain: its R² is 1.0 when predicted exactly and 0.0
    otherwise (scikit-learn's ``force_finite=True``), not the -inf or NaN of the formula. With
    fewer than two examples R² is NaN, as in scikit-learn (it is not defined there).
    """
    predictions, targets = _validate_regression(predictions, targets)
    errors = predictions - targets
    mse_per_output = np.mean(errors**2, axis=0)
    residual_ss = np.sum(errors**2, axis=0)
    total_ss = np.sum((targets - targets.mean(axis=0)) ** 2, axis=0)
    explained = total_ss > 0
    safe_total = np.where(explained, total_ss, 1.0)
    r2_per_output = np.where(
        explained, 1.0 - residual_ss / safe_total, np.where(residual_ss == 0, 1.0, 0.0)
    )
    return {
        "mse": float(mse_per_output.mean()),
        "rmse": float(np.sqrt(mse_per_output).mean()),
        "mae": float(np.mean(np.abs(errors), axis=0).mean()),
        "r2": float(r2_per_output.mean()) if targets.shape[0] >= 2 else float("nan"),
    }


def _validate_regression(
    predictions: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 ``[N, K]``; ValueError naming what is wrong."""
    arrays = []
    for name, values in (("predictions", predictions), ("targets", targets)):
        array = np.asarray(values)
        if array.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-D [N] or 2-D [N, outputs], got shape {array.shape}")
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"{name} must be numbers, got dtype {array.dtype}")
        if array.size == 0:
            raise ValueError(f"{name} is empty (shape {array.shape}); metrics need an example")
        array = array.astype(np.float64)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contain NaN or infinity")
        arrays.append(array.reshape(array.shape[0], -1))
    if np.shape(predictions) != np.shape(targets):
        raise ValueError(
            f"predictions and targets must have the same shape, got {np.shape(predictions)} "
            f"and {np.shape(targets)}"
        )
    return arrays[0], arrays[1]


def _validate(
    probabilities: np.ndarray, labels: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2:
        raise ValueError(
            f"probabilities must be 2-D [N, C], got shape {probabilities.shape}; "
            "pass one row of class probabilities per sample"
        )
    num_samples, num_classes = probabilities.shape
    if num_samples == 0 or num_classes == 0:
        raise ValueError(
            f"probabilities is empty (shape {probabilities.shape}); metrics need at least one "
            "sample and one class"
        )
    if not np.issubdtype(probabilities.dtype, np.floating):
        raise ValueError(f"probabilities must be floating point, got dtype {probabilities.dtype}")
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("probabilities contain NaN or infinity")
    labels = _class_indices(labels, num_classes, "labels")
    if labels.shape != (num_samples,):
        raise ValueError(
            f"labels must have shape ({num_samples},) to match probabilities "
            f"{probabilities.shape}, got {labels.shape}"
        )
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    return probabilities, labels


def _class_indices(values: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
    if values.size == 0:
        return values.astype(np.int64)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {values.dtype}")
    if values.min() < 0 or values.max() >= num_classes:
        raise ValueError(
            f"{name} must lie in 0..{num_classes - 1}, got values in {values.min()}..{values.max()}"
        )
    return values.astype(np.int64)


def _divide_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # scikit-learn's zero_division=0: an undefined ratio counts as 0, not NaN.
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks of ``scores``, tied values sharing the mean of the ranks they span."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # Ties are exact equality, as in scikit-learn's ROC curve (it splits on np.diff != 0).
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    counts = np.diff(np.r_[starts, scores.size])
    mean_rank_of_group = starts + (counts + 1) / 2.0
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank_of_group, counts)
    return ranks


def _one_vs_rest_roc_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Macro mean over valid classes of the Mann–Whitney AUC.

    ``AUC_k = (R_k - n_k (n_k + 1) / 2) / (n_k (N - n_k))`` with ``R_k`` the sum of the average
    ranks of class ``k``'s scores among all ``N`` samples; with average ranks for ties this
    equals the trapezoidal area under the ROC curve that scikit-learn computes.
    """
    num_samples, num_classes = probabilities.shape
    areas = []
    for k in range(num_classes):
        positives = labels == k
        num_positives = int(positives.sum())
        num_negatives = num_samples - num_positives
        if num_positives == 0 or num_negatives == 0:
            continue  # AUC is undefined without both classes
        rank_sum = _average_ranks(probabilities[:, k])[positives].sum()
        u_statistic = rank_sum - num_positives * (num_positives + 1) / 2.0
        areas.append(u_statistic / (num_positives * num_negatives))
    return float(np.mean(areas)) if areas else float("nan")


def reliability(
    probabilities: np.ndarray, labels: np.ndarray, *, bins: int = 15
) -> dict[str, list[float]]:
    """Per confidence bin (the ECE bins): example count, sum of confidences, sum of correct
    predictions. Sums, not means, so that the bins of several runs add up (reliability
    diagram of a configuration over its seeds)."""
    probabilities, labels = _validate(probabilities, labels, bins)
    predictions = probabilities.argmax(axis=1)
    counts, confidence_sums, correct_sums = _calibration_bins(
        probabilities, labels, predictions, bins
    )
    return {
        "reliability_count": counts.astype(float).tolist(),
        "reliability_confidence_sum": confidence_sums.tolist(),
        "reliability_correct_sum": correct_sums.tolist(),
    }


def _calibration_bins(
    probabilities: np.ndarray, labels: np.ndarray, predictions: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    confidences = probabilities.max(axis=1).astype(np.float64)
    correct = (predictions == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # searchsorted(side="left") - 1 puts c in bin b when edges[b] < c <= edges[b + 1]: bins are
    # closed on the right, and clipping folds c = 0 into the first bin (closed on the left) and
    # any rounding above 1 into the last.
    bin_index = np.clip(np.searchsorted(edges, confidences, side="left") - 1, 0, bins - 1)
    counts = np.bincount(bin_index, minlength=bins)
    confidence_sums = np.bincount(bin_index, weights=confidences, minlength=bins)
    correct_sums = np.bincount(bin_index, weights=correct, minlength=bins)
    return counts, confidence_sums, correct_sums


def _calibration_errors(
    probabilities: np.ndarray, labels: np.ndarray, predictions: np.ndarray, bins: int
) -> tuple[float, float]:
    confidences = probabilities.max(axis=1)
    counts, confidence_sums, correct_sums = _calibration_bins(
        probabilities, labels, predictions, bins
    )
    # (n_b / N) |acc_b - conf_b| = |sum of correct - sum of confidence in b| / N.
    gaps = np.abs(correct_sums - confidence_sums)
    occupied = counts > 0
    ece = gaps.sum() / confidences.size
    mce = (gaps[occupied] / counts[occupied]).max()
    return float(ece), float(mce)
