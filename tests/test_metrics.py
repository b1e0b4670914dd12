from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from sweepbook.metrics import (
    METRICS,
    classification_metrics,
    confusion_matrix,
    metric_info,
    metrics_for_task,
    regression_metrics,
)

NUM_SAMPLES = 300
EXPECTED_KEYS = {
    "accuracy",
    "precision_micro",
    "precision_macro",
    "precision_weighted",
    "recall_micro",
    "recall_macro",
    "recall_weighted",
    "f1_micro",
    "f1_macro",
    "f1_weighted",
    "roc_auc",
    "ece",
    "mce",
    "confusion",
}


def make_case(kind: str, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [N, C] and labels [N] of one kind of test input."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, NUM_SAMPLES)
    if kind == "random":
        probabilities = rng.dirichlet(np.ones(num_classes), NUM_SAMPLES)
    elif kind == "tied":
        # Rows drawn from a pool of five vectors, so every column repeats its values exactly
        # (renormalising rounded random rows would break the ties); the uniform row also ties
        # the argmax.
        pool = np.vstack(
            [rng.dirichlet(np.ones(num_classes), 4), np.full(num_classes, 1.0 / num_classes)]
        )
        probabilities = pool[rng.integers(0, len(pool), NUM_SAMPLES)]
    elif kind == "label_absent":  # the last class is never a label, but may be predicted
        labels = rng.integers(0, num_classes - 1, NUM_SAMPLES)
        probabilities = rng.dirichlet(np.ones(num_classes), NUM_SAMPLES)
    elif kind == "absent_everywhere":  # the last class is neither a label nor a prediction
        labels = rng.integers(0, num_classes - 1, NUM_SAMPLES)
        probabilities = rng.dirichlet(np.ones(num_classes), NUM_SAMPLES)
        probabilities[:, -1] = 0.0
        probabilities /= probabilities.sum(axis=1, keepdims=True)
    elif kind == "perfect":  # the true class always scores >= 0.5, every other class <= 0.5
        labels = rng.permutation(np.arange(NUM_SAMPLES) % num_classes)
        noise = rng.dirichlet(np.ones(num_classes), NUM_SAMPLES)
        probabilities = 0.5 * np.eye(num_classes)[labels] + 0.5 * noise
    else:
        raise ValueError(kind)
    return probabilities, labels


CASES = [
    *[("random", c, s) for c in (2, 3, 10) for s in (0, 1, 2)],
    *[("tied", c, s) for c in (2, 3, 10) for s in (0, 1)],
    *[("label_absent", c, 0) for c in (2, 3, 10)],
    *[("absent_everywhere", c, 0) for c in (3, 10)],
    *[("perfect", c, 0) for c in (2, 3, 10)],
]
CASE_IDS = [f"{kind}-C{c}-seed{s}" for kind, c, s in CASES]


def sklearn_ovr_roc_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    areas = [
        skm.roc_auc_score(labels == k, probabilities[:, k])
        for k in range(probabilities.shape[1])
        if 0 < np.sum(labels == k) < len(labels)
    ]
    return float(np.mean(areas)) if areas else math.nan


def reference_calibration_errors(
    probabilities: np.ndarray, labels: np.ndarray, bins: int
) -> tuple[float, float]:
    """ECE and MCE with an explicit loop over bins, as written in Guo et al. (2017)."""
    confidences = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece, mce = 0.0, 0.0
    for b in range(bins):
        in_bin = (confidences > edges[b]) & (confidences <= edges[b + 1])
        if b == 0:
            in_bin |= confidences == edges[0]
        if not in_bin.any():
            continue
        gap = abs(correct[in_bin].mean() - confidences[in_bin].mean())
        ece += in_bin.mean() * gap
        mce = max(mce, gap)
    return ece, mce


@pytest.mark.parametrize(("kind", "num_classes", "seed"), CASES, ids=CASE_IDS)
def test_accuracy_and_confusion_match_sklearn(kind, num_classes, seed):
    probabilities, labels = make_case(kind, num_classes, seed)
    predictions = probabilities.argmax(axis=1)
    result = classification_metrics(probabilities, labels)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions), abs=1e-12)
    expected = skm.confusion_matrix(labels, predictions, labels=range(num_classes))
    assert result["confusion"] == expected.tolist()


@pytest.mark.parametrize("average", ["micro", "macro", "weighted"])
@pytest.mark.parametrize(("kind", "num_classes", "seed"), CASES, ids=CASE_IDS)
def test_precision_recall_f1_match_sklearn(kind, num_classes, seed, average):
    probabilities, labels = make_case(kind, num_classes, seed)
    predictions = probabilities.argmax(axis=1)
    result = classification_metrics(probabilities, labels)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        labels, predictions, labels=range(num_classes), average=average, zero_division=0
    )
    assert result[f"precision_{average}"] == pytest.approx(precision, abs=1e-12)
    assert result[f"recall_{average}"] == pytest.approx(recall, abs=1e-12)
    assert result[f"f1_{average}"] == pytest.approx(f1, abs=1e-12)


@pytest.mark.parametrize(("kind", "num_classes", "seed"), CASES, ids=CASE_IDS)
def test_roc_auc_matches_sklearn_one_vs_rest(kind, num_classes, seed):
    probabilities, labels = make_case(kind, num_classes, seed)
    result = classification_metrics(probabilities, labels)
    assert result["roc_auc"] == pytest.approx(
        sklearn_ovr_roc_auc(probabilities, labels), abs=1e-12, nan_ok=True
    )


@pytest.mark.parametrize("bins", [1, 2, 10, 15])
@pytest.mark.parametrize(("kind", "num_classes", "seed"), CASES, ids=CASE_IDS)
def test_calibration_errors_match_loop_reference(kind, num_classes, seed, bins):
    probabilities, labels = make_case(kind, num_classes, seed)
    result = classification_metrics(probabilities, labels, bins=bins)
    ece, mce = reference_calibration_errors(probabilities, labels, bins)
    assert result["ece"] == pytest.approx(ece, abs=1e-12)
    assert result["mce"] == pytest.approx(mce, abs=1e-12)


@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_perfect_predictions_score_one(num_classes):
    probabilities, labels = make_case("perfect", num_classes, seed=0)
    result = classification_metrics(probabilities, labels)
    for key in ("accuracy", "precision_macro", "recall_weighted", "f1_macro", "roc_auc"):
        assert result[key] == 1.0, key


def test_perfectly_calibrated_construction_has_zero_calibration_error():
    # 20 samples at each confidence c, exactly round(20 c) of them correct.
    rows, labels = [], []
    for confidence in (0.6, 0.75, 0.9, 1.0):
        num_correct = round(20 * confidence)
        rows += [[confidence, 1.0 - confidence]] * 20
        labels += [0] * num_correct + [1] * (20 - num_correct)
    result = classification_metrics(np.array(rows), np.array(labels), bins=10)
    assert result["ece"] == pytest.approx(0.0, abs=1e-12)
    assert result["mce"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_confident_and_always_wrong_has_calibration_error_one(num_classes):
    labels = np.arange(50) % num_classes
    probabilities = np.eye(num_classes)[(labels + 1) % num_classes]
    result = classification_metrics(probabilities, labels)
    assert (result["accuracy"], result["ece"], result["mce"]) == (0.0, 1.0, 1.0)


def test_confidence_on_a_bin_edge_falls_in_the_lower_bin():
    # bins=2: 0.5 (correct) belongs to [0, 0.5], 1.0 (wrong) to (0.5, 1]; gaps 0.5 and 1.
    # Were 0.5 put in the upper bin, both would share one bin and ECE = MCE = 0.25.
    probabilities = np.array([[0.5, 0.5], [1.0, 0.0]])
    result = classification_metrics(probabilities, np.array([0, 1]), bins=2)
    assert result["ece"] == pytest.approx(0.75)
    assert result["mce"] == pytest.approx(1.0)


def test_roc_auc_is_nan_when_no_class_has_positives_and_negatives():
    probabilities = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    result = classification_metrics(probabilities, np.array([1, 1, 1]))
    assert math.isnan(result["roc_auc"])


def test_result_has_exact_keys_and_serialises_to_json():
    probabilities, labels = make_case("random", 3, seed=0)
    result = classification_metrics(probabilities, labels)
    assert set(result) == EXPECTED_KEYS
    assert all(type(value) is float for key, value in result.items() if key != "confusion")
    confusion = result["confusion"]
    assert isinstance(confusion, list)
    assert all(type(count) is int for row in confusion for count in row)
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize("num_classes", [2, 3, 10])
def test_confusion_matrix_matches_sklearn(num_classes):
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, 200)
    predictions = rng.integers(0, num_classes, 200)
    matrix = confusion_matrix(labels, predictions, num_classes)
    assert matrix.dtype == np.int64
    expected = skm.confusion_matrix(labels, predictions, labels=range(num_classes))
    np.testing.assert_array_equal(matrix, expected)


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(np.array([0, 0, 1]), np.array([1, 1, 2]), num_classes=3)
    np.testing.assert_array_equal(matrix, [[0, 2, 0], [0, 0, 1], [0, 0, 0]])


GOOD_PROBABILITIES = np.array([[0.9, 0.1], [0.3, 0.7]])
GOOD_LABELS = np.array([0, 1])


@pytest.mark.parametrize(
    ("probabilities", "labels", "bins", "match"),
    [
        (GOOD_PROBABILITIES, np.array([0, 1, 1]), 15, "labels must have shape"),
        (GOOD_PROBABILITIES, GOOD_LABELS[:, None], 15, "labels must be 1-D"),
        (GOOD_PROBABILITIES[0], GOOD_LABELS, 15, "probabilities must be 2-D"),
        (np.empty((0, 2)), np.empty(0, dtype=int), 15, "empty"),
        (GOOD_PROBABILITIES, np.array([0, 2]), 15, r"must lie in 0\.\.1"),
        (GOOD_PROBABILITIES, np.array([0, -1]), 15, r"must lie in 0\.\.1"),
        (GOOD_PROBABILITIES, np.array([0.0, 1.0]), 15, "integer class indices"),
        (np.array([[1, 0], [0, 1]]), GOOD_LABELS, 15, "floating point"),
        (np.array([[np.nan, 0.1], [0.3, 0.7]]), GOOD_LABELS, 15, "NaN"),
        (GOOD_PROBABILITIES, GOOD_LABELS, 0, "bins must be at least 1"),
    ],
    ids=[
        "labels-length",
        "labels-2d",
        "probabilities-1d",
        "empty",
        "label-too-large",
        "label-negative",
        "float-labels",
        "integer-probabilities",
        "nan",
        "zero-bins",
    ],
)
def test_classification_metrics_rejects_bad_input(probabilities, labels, bins, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(probabilities, labels, bins=bins)


@pytest.mark.parametrize(
    ("labels", "predictions", "num_classes", "match"),
    [
        (np.array([0, 1]), np.array([0]), 2, "same shape"),
        (np.array([0, 1]), np.array([0, 3]), 2, "predictions must lie in"),
        (np.array([0, 1]), np.array([0, 1]), 0, "num_classes must be at least 1"),
    ],
    ids=["mismatched-shapes", "prediction-out-of-range", "no-classes"],
)
def test_confusion_matrix_rejects_bad_input(labels, predictions, num_classes, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(labels, predictions, num_classes)


def test_reliability_bins_add_up_to_the_ece():
    from sweepbook.metrics import reliability

    rng = np.random.default_rng(7)
    logits = rng.normal(size=(300, 4))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, 300)
    bins = reliability(probabilities, labels, bins=15)
    counts = np.array(bins["reliability_count"])
    assert counts.sum() == 300 and len(counts) == 15
    gaps = np.abs(np.array(bins["reliability_correct_sum"]) - bins["reliability_confidence_sum"])
    assert gaps.sum() / 300 == pytest.approx(classification_metrics(probabilities, labels)["ece"])


def test_every_metric_a_run_stores_is_registered_with_a_direction():
    probabilities = np.full((4, 3), 1 / 3)
    computed = set(classification_metrics(probabilities, np.array([0, 1, 2, 0]))) - {"confusion"}
    assert set(metrics_for_task("classification")) == computed | {"loss"}  # loss: by training
    regression = set(regression_metrics(np.zeros(3), np.arange(3.0)))
    assert set(metrics_for_task("regression")) == regression | {"loss"}
    lower_is_better = {name for name in METRICS if METRICS[name].direction == "min"}
    assert lower_is_better == {"loss", "ece", "mce", "error", "mse", "rmse", "mae"}
    assert METRICS["r2"].direction == "max" and METRICS["r2"].label == "R²"


def test_metrics_for_an_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="task must be one of classification, regression"):
        metrics_for_task("ranking")


# --- regression ------------------------------------------------------------------------------


def regression_case(outputs: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets of a noisy linear model and imperfect predictions; ``outputs=None``: 1-D."""
    rng = np.random.default_rng(seed)
    shape = (NUM_SAMPLES,) if outputs is None else (NUM_SAMPLES, outputs)
    # Outputs on different scales, so that averaging per output differs from pooling them.
    scale = 1.0 if outputs is None else np.arange(1, outputs + 1) ** 2
    targets = rng.normal(size=shape) * scale + 3.0
    predictions = targets + rng.normal(0, 0.5, size=shape) * scale
    return predictions, targets


@pytest.mark.parametrize("outputs", [None, 1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_regression_metrics_match_scikit_learn(outputs, seed):
    predictions, targets = regression_case(outputs, seed)
    computed = regression_metrics(predictions, targets)
    assert computed["mse"] == pytest.approx(skm.mean_squared_error(targets, predictions), 1e-12)
    assert computed["rmse"] == pytest.approx(
        skm.root_mean_squared_error(targets, predictions), 1e-12
    )
    assert computed["mae"] == pytest.approx(skm.mean_absolute_error(targets, predictions), 1e-12)
    assert computed["r2"] == pytest.approx(skm.r2_score(targets, predictions), 1e-12)
    assert all(isinstance(value, float) for value in computed.values())


def test_rmse_of_several_outputs_averages_the_outputs_rmse():
    predictions, targets = regression_case(3, 2)
    computed = regression_metrics(predictions, targets)
    assert computed["rmse"] != pytest.approx(math.sqrt(computed["mse"]))
    per_output = np.sqrt(((predictions - targets) ** 2).mean(axis=0))
    assert computed["rmse"] == pytest.approx(per_output.mean())


@pytest.mark.parametrize(
    ("predictions", "r2"),
    [([2.0, 2.0, 2.0], 1.0), ([2.0, 2.5, 2.0], 0.0)],
    ids=["exact", "inexact"],
)
def test_r2_of_a_constant_target_follows_scikit_learn(predictions, r2):
    targets = np.full(3, 2.0)
    assert regression_metrics(np.array(predictions), targets)["r2"] == r2
    assert skm.r2_score(targets, predictions) == r2


def test_r2_of_one_example_is_nan_as_in_scikit_learn():
    computed = regression_metrics(np.array([1.0]), np.array([2.0]))
    assert math.isnan(computed["r2"]) and computed["mse"] == 1.0 and computed["mae"] == 1.0


def test_r2_averages_a_constant_output_with_the_others():
    rng = np.random.default_rng(3)
    targets = np.stack([rng.normal(size=50), np.full(50, 1.5)], axis=1)
    predictions = targets + rng.normal(0, 0.3, size=targets.shape)
    assert regression_metrics(predictions, targets)["r2"] == pytest.approx(
        skm.r2_score(targets, predictions)
    )


@pytest.mark.parametrize(
    ("predictions", "targets", "match"),
    [
        (np.zeros(3), np.zeros(4), "same shape"),
        (np.zeros((3, 2)), np.zeros((3, 1)), "same shape"),
        (np.array([0.0, np.nan]), np.zeros(2), "predictions contain NaN"),
        (np.zeros(2), np.array([np.inf, 0.0]), "targets contain NaN or infinity"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), "must be 1-D"),
        (np.zeros(0), np.zeros(0), "empty"),
        (np.array(["a"]), np.array(["b"]), "must be numbers"),
    ],
    ids=["length", "outputs", "nan", "infinity", "3-d", "empty", "text"],
)
def test_regression_metrics_reject_bad_input(predictions, targets, match):
    with pytest.raises(ValueError, match=match):
        regression_metrics(predictions, targets)


@pytest.mark.parametrize(
    ("name", "record", "expected"),
    [
        ("test.rmse", {}, ("min", "RMSE")),
        ("r2", None, ("max", "R²")),
        ("val.accuracy", {}, ("max", "accuracy")),
        (
            "test.balanced_accuracy",
            {"metrics": {"balanced_accuracy": {"direction": "max", "label": "balanced accuracy"}}},
            ("max", "balanced accuracy"),
        ),
        ("test.pinball", {"metrics": {"pinball": {"direction": "min"}}}, ("min", "pinball")),
        # The store's own definition wins over a built-in of the same name.
        ("test.loss", {"metrics": {"loss": {"direction": "max", "label": "L"}}}, ("max", "L")),
        ("test.something_new", {}, ("max", "something_new")),
        ("params", {}, ("max", "params")),
    ],
)
def test_metric_info_reads_the_store_then_the_registry(name, record, expected):
    assert metric_info(name, record) == expected


def test_metric_info_rejects_a_direction_that_is_neither():
    with pytest.raises(ValueError, match=r"metrics\.odd\.direction must be 'max' or 'min'"):
        metric_info("test.odd", {"metrics": {"odd": {"direction": "up"}}})
