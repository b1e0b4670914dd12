from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from sweepbook.stats import bootstrap_ci, compare_to_best, iqm, summarize, welch_t_test


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [3, 10, 50])
def test_bootstrap_ci_brackets_the_sample_mean(seed, n):
    values = np.random.default_rng(seed).normal(0.8, 0.05, size=n)
    low, high = bootstrap_ci(values, seed=seed)
    assert low < values.mean() < high


def test_bootstrap_ci_narrows_with_more_data():
    rng = np.random.default_rng(0)
    widths = [
        high - low
        for low, high in (bootstrap_ci(rng.normal(0.0, 1.0, size=n)) for n in (5, 50, 500))
    ]
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_ci_is_deterministic_for_a_seed():
    values = np.random.default_rng(3).normal(size=8)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


@pytest.mark.parametrize("confidence", [0.8, 0.95])
def test_bootstrap_ci_matches_scipy_percentile_bootstrap(confidence):
    values = np.random.default_rng(11).normal(0.5, 0.1, size=20)
    expected = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=10_000,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    low, high = bootstrap_ci(values, confidence=confidence)
    # Different random draws: agree to a small fraction of the interval's width.
    tolerance = 0.05 * (expected.high - expected.low)
    assert low == pytest.approx(expected.low, abs=tolerance)
    assert high == pytest.approx(expected.high, abs=tolerance)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0.7], (0.7, 0.7)), ([0.7, math.nan], (0.7, 0.7)), ([4.0, 4.0, 4.0], (4.0, 4.0))],
)
def test_bootstrap_ci_degenerate_samples(values, expected):
    assert bootstrap_ci(values) == expected


@pytest.mark.parametrize("values", [[], [math.nan, math.nan]])
def test_bootstrap_ci_of_nothing_is_nan(values):
    assert all(math.isnan(bound) for bound in bootstrap_ci(values))


@pytest.mark.parametrize("bad", [{"confidence": 1.0}, {"confidence": 0.0}, {"resamples": 0}])
def test_bootstrap_ci_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], **bad)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("n_a", "n_b"), [(2, 2), (3, 7), (10, 4), (30, 30)])
def test_welch_t_test_matches_scipy(seed, n_a, n_b):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, size=n_a)
    b = rng.normal(0.5, 2.0, size=n_b)
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_t_test(a, b) == pytest.approx(expected, rel=1e-9)


@pytest.mark.filterwarnings("ignore:Precision loss")  # scipy on the constant sample
def test_welch_t_test_with_one_constant_sample_matches_scipy():
    a, b = [1.0, 1.0, 1.0], [0.5, 1.5, 2.5, 0.9]
    assert welch_t_test(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


@pytest.mark.parametrize(("a", "b"), [([], [1.0, 2.0]), ([1.0], [1.0, 2.0]), ([1.0, 2.0], [3.0])])
def test_welch_t_test_needs_two_values_per_sample(a, b):
    assert math.isnan(welch_t_test(a, b))


@pytest.mark.parametrize(
    ("a", "b", "expected"), [([2.0, 2.0], [2.0, 2.0, 2.0], 1.0), ([2.0, 2.0], [3.0, 3.0], 0.0)]
)
def test_welch_t_test_of_constant_samples(a, b, expected):
    assert welch_t_test(a, b) == expected


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 13, 100])
@pytest.mark.parametrize("seed", [0, 1])
def test_iqm_matches_scipy_trim_mean(n, seed):
    values = np.random.default_rng(seed).standard_cauchy(size=n)
    assert iqm(values) == pytest.approx(stats.trim_mean(values, 0.25), rel=1e-12)


def test_iqm_ignores_an_outlier_seed_and_empty_is_nan():
    assert iqm([0.9, 0.91, 0.92, -100.0]) == pytest.approx(0.905)
    assert math.isnan(iqm([]))


@pytest.fixture
def comparison() -> pl.DataFrame:
    configurations = {
        "best": [0.90, 0.91, 0.89, 0.905, 0.895, 0.90],
        "worse": [0.60, 0.61, 0.59, 0.605, 0.595, 0.60],  # far below, tight: clearly different
        "noisy": [0.95, 0.82, 0.93, 0.85, 0.97, 0.84],  # overlaps the best within seed noise
    }
    runs = pl.DataFrame(
        {
            "run_id": [f"{name}-{i}" for name, v in configurations.items() for i in range(len(v))],
            "name": [name for name, v in configurations.items() for _ in v],
            "acc": [value for v in configurations.values() for value in v],
        }
    )
    return compare_to_best(summarize(runs, ["name"], ["acc"]), runs, "acc", best=0)


def test_compare_to_best_adds_the_columns(comparison):
    added = ["ci_low", "ci_high", "median", "iqm", "p_vs_best", "tie"]
    assert set(comparison.columns) >= {f"acc:{name}" for name in added}
    assert comparison["name"].to_list() == ["best", "worse", "noisy"]
    assert comparison["acc:tie"].dtype == pl.Boolean


def test_compare_to_best_intervals_bracket_the_means(comparison):
    for row in comparison.iter_rows(named=True):
        assert row["acc:ci_low"] < row["acc:mean"] < row["acc:ci_high"]


@pytest.mark.parametrize(
    ("row", "tie"), [(0, True), (1, False), (2, True)], ids=["best", "worse", "noisy"]
)
def test_compare_to_best_verdicts(comparison, row, tie):
    result = comparison.row(row, named=True)
    assert result["acc:tie"] is tie
    if row == 0:
        assert result["acc:p_vs_best"] is None
    elif tie:
        assert result["acc:p_vs_best"] >= 0.05
    else:
        assert result["acc:p_vs_best"] < 0.05


def test_compare_to_best_with_too_few_seeds_is_not_a_tie():
    runs = pl.DataFrame(
        {"run_id": ["a", "b", "c"], "lr": [0.1, 0.1, 0.01], "acc": [0.9, 0.91, 0.5]}
    )
    result = compare_to_best(summarize(runs, ["lr"], ["acc"]), runs, "acc", best=0)
    assert math.isnan(result["acc:p_vs_best"][1])
    assert result["acc:tie"].to_list() == [True, False]
    # One run has no spread to measure: no interval (a bootstrap would return the run itself).
    assert math.isnan(result["acc:ci_low"][1]) and math.isnan(result["acc:ci_high"][1])


def test_compare_to_best_is_deterministic():
    runs = pl.DataFrame({"run_id": ["a", "b", "c"], "acc": [0.3, 0.9, 0.5]})
    summary = summarize(runs, [], ["acc"])
    assert compare_to_best(summary, runs, "acc", 0).equals(compare_to_best(summary, runs, "acc", 0))


def test_compare_to_best_rejects_a_missing_best_row():
    runs = pl.DataFrame({"run_id": ["a"], "acc": [1.0]})
    with pytest.raises(IndexError, match="outside"):
        compare_to_best(summarize(runs, [], ["acc"]), runs, "acc", best=3)


def test_compare_to_best_uses_a_t_interval_for_few_runs_and_names_it():
    """Three runs: a percentile bootstrap could only return about their min and max, so the
    interval is Student's t (as scipy computes it), and the caption text says so."""
    from sweepbook.stats import interval_method

    values = [0.90, 0.93, 0.91]
    runs = pl.DataFrame({"run_id": ["a", "b", "c"], "acc": values})
    result = compare_to_best(summarize(runs, [], ["acc"]), runs, "acc", best=0)
    low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert result["acc:ci_low"][0] == pytest.approx(low)
    assert result["acc:ci_high"][0] == pytest.approx(high)
    assert low < min(values) and high > max(values)
    assert interval_method([3, 3]) == "t-interval of the mean over the runs"
    assert interval_method([20, 25]).startswith("percentile bootstrap")
    assert "below 20 runs" in interval_method([3, 25])
