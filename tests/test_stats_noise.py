"""The statistics behind the findings, checked against scipy or a hand computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from sweepbook import stats


def test_holm_matches_a_hand_computation() -> None:
    # Sorted: 0.01 (x4 = 0.04), 0.03 (x3 = 0.09), 0.04 (x2 = 0.08, raised to 0.09 to keep the
    # order), 0.5 (x1); the NaN is not a comparison and does not count in m.
    assert stats.holm_adjust([0.01, 0.04, 0.03, float("nan"), 0.5]) == pytest.approx(
        [0.04, 0.09, 0.09, float("nan"), 0.5], nan_ok=True
    )
    assert stats.holm_adjust([0.6, 0.9]) == [1.0, 1.0]  # capped at 1
    assert stats.holm_adjust([]) == []


def test_holm_never_rejects_more_than_unadjusted() -> None:
    p_values = list(np.random.default_rng(3).uniform(0, 0.2, 12))
    adjusted = stats.holm_adjust(p_values)
    assert all(a >= p for a, p in zip(adjusted, p_values, strict=True))
    # Bonferroni bounds Holm from above.
    assert all(a <= min(1.0, 12 * p) + 1e-12 for a, p in zip(adjusted, p_values, strict=True))


def test_t_interval_matches_scipy() -> None:
    values = [0.91, 0.95, 0.93, 0.97]
    expected = scipy.stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=scipy.stats.sem(values)
    )
    assert stats.t_interval(values) == pytest.approx(expected)
    assert all(math.isnan(x) for x in stats.t_interval([0.9]))


def test_mean_interval_uses_t_below_the_documented_run_count() -> None:
    few = [0.9, 0.92, 0.95]
    low, high, method = stats.mean_interval(few)
    assert method == "t-interval"
    assert (low, high) == pytest.approx(stats.t_interval(few))
    # Three values: a percentile bootstrap could never leave [min, max]; the t-interval does.
    assert low < min(few) and high > max(few)
    many = list(np.random.default_rng(0).normal(0.9, 0.01, stats.BOOTSTRAP_MIN_RUNS))
    assert stats.mean_interval(many)[2] == "percentile bootstrap"


@pytest.mark.parametrize(("correct", "trials"), [(243, 270), (90, 100), (0, 50), (50, 50)])
def test_wilson_matches_scipy(correct: int, trials: int) -> None:
    expected = scipy.stats.binomtest(correct, trials).proportion_ci(method="wilson")
    low, high = stats.wilson_interval(correct / trials, trials)
    assert (low, high) == pytest.approx((expected.low, expected.high))


def test_main_effect_of_a_single_axis_is_the_one_way_anova() -> None:
    rng = np.random.default_rng(1)
    levels = [value for value in (1, 2, 3) for _ in range(4)]
    values = [0.3 * level + rng.normal(0, 0.5) for level in levels]
    test = stats.main_effect_test(levels, levels, values)
    groups = [[v for v, lv in zip(values, levels, strict=True) if lv == g] for g in (1, 2, 3)]
    expected = scipy.stats.f_oneway(*groups)
    assert test.f == pytest.approx(expected.statistic)
    assert test.p == pytest.approx(expected.pvalue)
    assert (test.df_effect, test.df_error) == (2, 9)


def _residual_ss(design: np.ndarray, y: np.ndarray) -> float:
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(((y - design @ coefficients) ** 2).sum())


def test_two_way_anova_matches_nested_least_squares_fits() -> None:
    """On a balanced grid, each term's sum of squares is the drop in residual sum of squares
    when it joins a linear model: an independent computation of the same ANOVA."""
    rng = np.random.default_rng(2)
    a_levels, b_levels, seeds = [0, 1, 2], [0, 1], 3
    rows = [(a, b) for a, b in itertools.product(a_levels, b_levels) for _ in range(seeds)]
    a = np.array([r[0] for r in rows])
    b = np.array([r[1] for r in rows])
    y = 0.2 * a + 0.1 * b + 0.3 * (a == 2) * (b == 1) + rng.normal(0, 0.05, len(rows))
    one_hot_a = np.stack([a == level for level in a_levels], axis=1).astype(float)
    one_hot_b = np.stack([b == level for level in b_levels[1:]], axis=1).astype(float)
    cells = np.stack(
        [(a == i) & (b == j) for i, j in itertools.product(a_levels, b_levels)], axis=1
    ).astype(float)
    additive = _residual_ss(np.hstack([one_hot_a, one_hot_b]), y)
    full = _residual_ss(cells, y)
    df_error = len(rows) - cells.shape[1]
    f_interaction = ((additive - full) / 2) / (full / df_error)
    test = stats.interaction_test(a.tolist(), b.tolist(), y.tolist())
    assert test is not None
    assert test.f == pytest.approx(f_interaction)
    assert test.p == pytest.approx(scipy.stats.f.sf(f_interaction, 2, df_error))
    # The main effect of a: the model with a alone against the grand mean, error from the
    # full model.
    intercept = np.ones((len(rows), 1))
    ss_a = _residual_ss(intercept, y) - _residual_ss(one_hot_a, y)
    main = stats.main_effect_test(a.tolist(), list(zip(a, b, strict=True)), y.tolist())
    assert main.f == pytest.approx((ss_a / 2) / (full / df_error))


def test_interaction_needs_a_balanced_grid_with_replicates() -> None:
    assert stats.interaction_test([0, 0, 1, 1], [0, 1, 0, 1], [1.0, 2.0, 3.0, 4.0]) is None
    assert stats.interaction_test([0, 0, 0, 1, 1], [0, 0, 1, 0, 1], [1, 2, 3, 4, 5]) is None


def test_f_test_without_seed_noise_is_certain_or_silent() -> None:
    assert stats.main_effect_test([0, 0, 1, 1], [0, 0, 1, 1], [1.0, 1.0, 2.0, 2.0]).p == 0.0
    assert stats.main_effect_test([0, 0, 1, 1], [0, 0, 1, 1], [1.0, 1.0, 1.0, 1.0]).p == 1.0


def test_compare_to_best_can_decide_ties_on_holm_adjusted_p_values() -> None:
    import polars as pl

    samples = {
        "a": [0.900, 0.905, 0.910],
        "b": [0.880, 0.889, 0.895],  # raw p < 0.05 against a, not once corrected over three
        "c": [0.899, 0.902, 0.909],
        "d": [0.897, 0.904, 0.906],
    }
    runs = pl.DataFrame(
        [
            {"run_id": f"{name}{i}", "variant": name, "test.accuracy": value}
            for name, values in samples.items()
            for i, value in enumerate(values)
        ]
    )
    summary = stats.summarize(runs, ["variant"], ["test.accuracy"])
    plain = stats.compare_to_best(summary, runs, "test.accuracy", 0)
    corrected = stats.compare_to_best(summary, runs, "test.accuracy", 0, correction="holm")
    assert "test.accuracy:p_adjusted" not in plain.columns
    assert plain["test.accuracy:tie"].to_list() == [True, False, True, True]
    assert corrected["test.accuracy:tie"].to_list() == [True, True, True, True]
    raw = corrected["test.accuracy:p_vs_best"].to_list()
    assert raw == plain["test.accuracy:p_vs_best"].to_list()
    expected = [None, *stats.holm_adjust(raw[1:])]
    assert corrected["test.accuracy:p_adjusted"].to_list() == expected
