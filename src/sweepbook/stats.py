"""Aggregation over seeds, in Polars: one row per configuration of the compared axes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl


def summarize(runs: pl.DataFrame, by: list[str], metrics: list[str]) -> pl.DataFrame:
    """Per configuration of ``by``: ``n`` runs, and ``mean``/``std``/``min``/``max`` of each metric.

    ``std`` is the sample standard deviation (ddof=1) over seeds; null for a single seed.
    Configurations keep the order in which they first appear in ``runs``; ``run_ids`` lists
    the runs behind each row.
    """
    aggregations: list[pl.Expr] = [pl.len().alias("n"), pl.col("run_id").alias("run_ids")]
    for metric in metrics:
        column = pl.col(metric)
        aggregations += [
            column.mean().alias(f"{metric}:mean"),
            column.std(ddof=1).alias(f"{metric}:std"),
            column.min().alias(f"{metric}:min"),
            column.max().alias(f"{metric}:max"),
        ]
    if not by:  # one configuration: every run
        return runs.group_by(pl.lit(0).alias("_all")).agg(aggregations).drop("_all")
    return runs.group_by(by, maintain_order=True).agg(aggregations)


def best_index(summary: pl.DataFrame, metric: str, direction: Literal["max", "min"]) -> int | None:
    """Row of the configuration with the best mean ``metric`` (None when there is none)."""
    means = summary[f"{metric}:mean"]
    if means.null_count() == len(means):
        return None
    index = means.arg_max() if direction == "max" else means.arg_min()
    return None if index is None else int(index)


def per_epoch(history: pl.DataFrame, run_ids: list[str], metric: str) -> pl.DataFrame:
    """Mean and std of a history ``metric`` per epoch over ``run_ids``, counting only the runs
    that reached each epoch (early stopping ends seeds at different epochs)."""
    return (
        history.filter(pl.col("run_id").is_in(run_ids))
        .group_by("epoch")
        .agg(
            pl.col(metric).mean().alias("mean"),
            pl.col(metric).std(ddof=1).fill_null(0.0).alias("std"),
            pl.len().alias("n"),
        )
        .sort("epoch")
    )


def pareto_front(
    cost: list[float], value: list[float], direction: Literal["max", "min"]
) -> list[bool]:
    """Which points no other point dominates: one with cost ≤ and value at least as good, one of
    them strictly (lower cost is better; ``direction`` says which value is better)."""
    sign = 1.0 if direction == "max" else -1.0
    points = [(c, sign * v) for c, v in zip(cost, value, strict=True)]
    return [
        not any(
            (oc <= c and ov >= v) and (oc < c or ov > v)
            for j, (oc, ov) in enumerate(points)
            if j != i
        )
        for i, (c, v) in enumerate(points)
    ]


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    Method: draw ``resamples`` samples of size n with replacement, take each one's mean, and
    return the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means
    (Efron's percentile interval). NaNs are ignored; one value gives ``(x, x)``, none
    ``(nan, nan)``.

    Assumptions: the values are independent draws from one distribution (one per seed) and the
    sample represents it. With the few seeds of a typical sweep (3-10) the interval is too
    narrow (it cannot see tails the sample missed), so read it as a description of seed noise,
    not a guaranteed coverage.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    sample = np.asarray(values, dtype=float)
    sample = sample[~np.isnan(sample)]
    if sample.size == 0:
        return float("nan"), float("nan")
    if sample.size == 1:  # every resample is the one value; skip drawing 10k copies of it
        return float(sample[0]), float(sample[0])
    rng = np.random.default_rng(seed)
    # One [resamples, n] index matrix: seed counts are small, so this fits easily and beats a loop.
    means = sample[rng.integers(0, sample.size, size=(resamples, sample.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test for a difference between the means of ``a`` and ``b``.

    Method: ``t = (mean_a - mean_b) / sqrt(s_a²/n_a + s_b²/n_b)`` with sample variances
    (ddof=1), and Welch-Satterthwaite degrees of freedom
    ``df = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1))``;
    ``p = 2 · T_df(-|t|)``. Same as ``scipy.stats.ttest_ind(a, b, equal_var=False)``.

    Assumptions: the two samples are independent (different seeds, not paired), each roughly
    normal or large enough for its mean to be; the variances may differ. Fewer than two values
    in either sample gives nan; two constant samples give 1.0 when their means are equal and
    0.0 otherwise (the statistic is 0/0 or ±inf there).
    """
    # Lazy import: scipy is only needed here, and importing it costs a noticeable fraction of
    # a second for every command that touches this module.
    from scipy.special import stdtr

    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        return float("nan")
    error_x = x.var(ddof=1) / x.size
    error_y = y.var(ddof=1) / y.size
    difference = x.mean() - y.mean()
    standard_error_squared = error_x + error_y
    if standard_error_squared == 0.0:
        return 1.0 if difference == 0.0 else 0.0
    t = difference / np.sqrt(standard_error_squared)
    df = standard_error_squared**2 / (error_x**2 / (x.size - 1) + error_y**2 / (y.size - 1))
    return float(2.0 * stdtr(df, -abs(t)))


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle half of the sorted values.

    Method (Agarwal et al., 2021, "Deep RL at the Edge of the Statistical Precipice"): sort,
    drop ``floor(n / 4)`` values from each end, average the rest; this is
    ``scipy.stats.trim_mean(values, 0.25)``. Robust to a few diverged seeds, unlike the mean,
    and less noisy than the median. Empty gives nan.
    """
    sample = np.sort(np.asarray(values, dtype=float))
    if sample.size == 0:
        return float("nan")
    cut = sample.size // 4  # trim_mean's int(0.25 * n): whole values only, never interpolated
    return float(sample[cut : sample.size - cut].mean())


def compare_to_best(
    summary: pl.DataFrame,
    runs: pl.DataFrame,
    metric: str,
    best: int,
    *,
    alpha: float = 0.05,
    correction: Literal["none", "holm"] = "none",
) -> pl.DataFrame:
    """``summary`` (from :func:`summarize`) with seed-noise statistics of ``metric`` per row.

    Added columns, computed over the runs listed in each row's ``run_ids`` (nulls and NaNs,
    i.e. runs that did not report ``metric``, left out):

    - ``{metric}:ci_low`` / ``{metric}:ci_high``: 95% interval of the mean by
      :func:`mean_interval`: a t-interval below :data:`BOOTSTRAP_MIN_RUNS` runs (NaN for one
      run: no spread to measure), a percentile bootstrap (fixed seed, reproducible) from there;
      :func:`interval_method` names the method in captions;
    - ``{metric}:median`` and ``{metric}:iqm`` (:func:`iqm`);
    - ``{metric}:p_vs_best``: :func:`welch_t_test` p-value of the row's values against those
      of row ``best``; null for the best row itself;
    - ``{metric}:tie``: True for the best row and for rows with ``p >= alpha`` (no evidence
      they differ from the best beyond seed noise); False when p is nan (too few seeds).

    Assumptions are those of the two tests: independent seeds per configuration. With
    ``correction="none"`` nothing corrects for comparing many rows to one best, so with many
    rows some "not tied" verdicts are chance; ``correction="holm"`` adds
    ``{metric}:p_adjusted`` (:func:`holm_adjust` over the k - 1 comparisons) and decides ties
    on it, as the findings do. ``p_vs_best`` stays the raw p-value either way.
    """
    if not 0 <= best < summary.height:
        raise IndexError(f"best row {best} is outside the summary's {summary.height} rows")
    if metric not in runs.columns:
        raise KeyError(f"runs have no column {metric!r}; available: {runs.columns}")
    samples = [
        runs.filter(pl.col("run_id").is_in(run_ids))[metric]
        .drop_nulls()
        .cast(pl.Float64)
        .drop_nans()
        .to_list()
        for run_ids in summary["run_ids"].to_list()
    ]
    intervals = [mean_interval(sample)[:2] for sample in samples]
    p_values = [
        None if row == best else welch_t_test(sample, samples[best])
        for row, sample in enumerate(samples)
    ]
    decided_on = p_values
    adjusted_columns: list[pl.Series] = []
    if correction == "holm":
        raw = {row: p for row, p in enumerate(p_values) if p is not None}
        holm = dict(zip(raw, holm_adjust(list(raw.values())), strict=True))
        decided_on = [holm.get(row) for row in range(len(p_values))]
        adjusted_columns.append(pl.Series(f"{metric}:p_adjusted", decided_on, dtype=pl.Float64))
    # `p >= alpha` is False for nan, which is the intended verdict when p cannot be computed.
    ties = [p is None or bool(p >= alpha) for p in decided_on]
    return summary.with_columns(
        pl.Series(f"{metric}:ci_low", [low for low, _ in intervals], dtype=pl.Float64),
        pl.Series(f"{metric}:ci_high", [high for _, high in intervals], dtype=pl.Float64),
        pl.Series(
            f"{metric}:median",
            [float(np.median(s)) if s else float("nan") for s in samples],
            dtype=pl.Float64,
        ),
        pl.Series(f"{metric}:iqm", [iqm(sample) for sample in samples], dtype=pl.Float64),
        pl.Series(f"{metric}:p_vs_best", p_values, dtype=pl.Float64),
        pl.Series(f"{metric}:tie", ties, dtype=pl.Boolean),
        *adjusted_columns,
    )


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values: reject where ``adjusted < alpha`` and the chance of
    any false "differs" verdict among the m comparisons stays at most alpha.

    Method (Holm, 1979): sort the m p-values ascending; the i-th smallest (1-based) becomes
    ``max over j <= i of min(1, (m - j + 1) · p_(j))``, so the adjusted values keep the order of
    the raw ones. NaNs (comparisons that could not be made) stay NaN and do not count in m.
    Uniformly more powerful than plain Bonferroni and valid under any dependence between the
    tests (here all of them share the best configuration's runs).
    """
    values = np.asarray(p_values, dtype=float)
    adjusted = np.full(values.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(values))
    order = tested[np.argsort(values[tested], kind="stable")]
    m = order.size
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return [float(p) for p in adjusted]


def t_interval(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean: ``mean ± t_{n-1} · s / sqrt(n)``.

    The interval to use with few runs, where a percentile bootstrap can only return (nearly)
    the sample's min and max. Assumes independent, roughly normal values. NaNs are ignored;
    fewer than two values give ``(nan, nan)`` (no spread to measure).
    """
    from scipy.special import stdtrit  # lazy, as in welch_t_test

    sample = np.asarray(values, dtype=float)
    sample = sample[~np.isnan(sample)]
    if sample.size < 2:
        return float("nan"), float("nan")
    half = stdtrit(sample.size - 1, (1.0 + confidence) / 2.0) * sample.std(ddof=1)
    half /= np.sqrt(sample.size)
    mean = sample.mean()
    return float(mean - half), float(mean + half)


# A percentile bootstrap needs enough runs for its resamples to show the tails: below this
# many (Efron & Tibshirani's rule of thumb for percentile intervals is 20 or more, and 3 values
# give about their min and max), the t-interval is used instead.
BOOTSTRAP_MIN_RUNS = 20


def mean_interval(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float, str]:
    """A confidence interval of the mean and the method's name: :func:`t_interval` below
    :data:`BOOTSTRAP_MIN_RUNS` values, :func:`bootstrap_ci` from there on."""
    count = int(np.count_nonzero(~np.isnan(np.asarray(values, dtype=float))))
    if count < BOOTSTRAP_MIN_RUNS:
        return (*t_interval(values, confidence=confidence), "t-interval")
    return (*bootstrap_ci(values, confidence=confidence), "percentile bootstrap")


def interval_method(runs_per_row: Sequence[int]) -> str:
    """What :func:`mean_interval` computed for rows of these run counts, for a caption."""
    few = [n < BOOTSTRAP_MIN_RUNS for n in runs_per_row]
    if all(few):
        return "t-interval of the mean over the runs"
    if not any(few):
        return "percentile bootstrap of the mean over the runs"
    return (
        f"t-interval of the mean below {BOOTSTRAP_MIN_RUNS} runs, percentile bootstrap from "
        f"{BOOTSTRAP_MIN_RUNS}"
    )


def wilson_interval(
    proportion: float, trials: int, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Wilson score interval of a proportion (e.g. accuracy on ``trials`` test examples).

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with z the normal quantile of
    ``(1 + confidence) / 2``. This is the sampling noise of the test set itself: another test
    set of the same size would give a score within it about ``confidence`` of the time. Unlike
    the normal approximation it stays inside [0, 1] and behaves near 0 and 1.
    """
    from scipy.special import ndtri

    if trials < 1:
        return float("nan"), float("nan")
    z = float(ndtri((1.0 + confidence) / 2.0))
    scale = 1.0 + z * z / trials
    centre = (proportion + z * z / (2 * trials)) / scale
    half = z * np.sqrt(proportion * (1 - proportion) / trials + z * z / (4 * trials**2)) / scale
    return float(centre - half), float(centre + half)


@dataclass(frozen=True)
class FTest:
    """One term of an analysis of variance: its F statistic against the within-configuration
    (seed) variance, the two degrees of freedom, and the p-value."""

    f: float
    df_effect: int
    df_error: int
    p: float


def _f_test(effect_ss: float, df_effect: int, error_ss: float, df_error: int) -> FTest:
    from scipy.special import fdtrc

    if df_effect < 1 or df_error < 1:
        return FTest(float("nan"), df_effect, df_error, float("nan"))
    if error_ss <= 0.0:  # no seed noise at all: any effect is certain, none is none
        certain = effect_ss > 0.0
        return FTest(
            float("inf") if certain else float("nan"), df_effect, df_error, 0.0 if certain else 1.0
        )
    f = (effect_ss / df_effect) / (error_ss / df_error)
    return FTest(float(f), df_effect, df_error, float(fdtrc(df_effect, df_error, f)))


def within_cell_error(cells: Sequence[Any], values: Sequence[float]) -> tuple[float, int]:
    """Sum of squares of ``values`` about their cell's mean, and its degrees of freedom
    (runs minus cells): the seed noise that every configuration shares."""
    frame = pl.DataFrame({"cell": [str(c) for c in cells], "y": np.asarray(values, dtype=float)})
    per_cell = frame.group_by("cell").agg(
        ((pl.col("y") - pl.col("y").mean()) ** 2).sum().alias("ss"), pl.len().alias("n")
    )
    return float(per_cell["ss"].sum()), int(frame.height - per_cell.height)


def main_effect_test(levels: Sequence[Any], cells: Sequence[Any], values: Sequence[float]) -> FTest:
    """Does the axis whose value per run is ``levels`` move the mean beyond seed noise?

    Method: ``SS = Σ_levels n_l (mean_l - grand mean)²`` on ``L - 1`` degrees of freedom,
    tested against the within-configuration error of :func:`within_cell_error` (``cells`` names
    each run's full configuration). With one axis (cells = levels) this is the one-way ANOVA
    (``scipy.stats.f_oneway``); on a balanced full grid it is the main-effect test of the
    factorial ANOVA with interactions. Unbalanced designs make it approximate.
    """
    y = np.asarray(values, dtype=float)
    frame = pl.DataFrame({"level": [str(v) for v in levels], "y": y})
    grand = float(y.mean())
    per_level = frame.group_by("level").agg(pl.col("y").mean().alias("m"), pl.len().alias("n"))
    effect_ss = float((per_level["n"] * (per_level["m"] - grand) ** 2).sum())
    error_ss, df_error = within_cell_error(cells, values)
    return _f_test(effect_ss, per_level.height - 1, error_ss, df_error)


def interaction_test(
    first: Sequence[Any], second: Sequence[Any], values: Sequence[float]
) -> FTest | None:
    """Two-way ANOVA interaction: does the effect of one axis depend on the other's value?

    Method (balanced two-way ANOVA with replication): with cell means m_ij over n runs,
    ``SS_AB = n Σ (m_ij - m_i. - m_.j + m..)²`` on ``(a-1)(b-1)`` degrees of freedom against the
    within-cell error on ``ab(n-1)``. None unless every pair of values has the same number
    (at least two) of runs: the balanced formula is only right there.
    """
    y = np.asarray(values, dtype=float)
    frame = pl.DataFrame({"a": [str(v) for v in first], "b": [str(v) for v in second], "y": y})
    cells = frame.group_by("a", "b").agg(pl.col("y").mean().alias("m"), pl.len().alias("n"))
    a_count, b_count = frame["a"].n_unique(), frame["b"].n_unique()
    counts = set(cells["n"].to_list())
    if cells.height != a_count * b_count or len(counts) != 1 or min(counts) < 2:
        return None
    grand = float(y.mean())
    a_means = frame.group_by("a").agg(pl.col("y").mean().alias("ma"))
    b_means = frame.group_by("b").agg(pl.col("y").mean().alias("mb"))
    joined = cells.join(a_means, on="a").join(b_means, on="b")
    residual = joined["m"] - joined["ma"] - joined["mb"] + grand
    interaction_ss = float(counts.pop() * (residual**2).sum())
    error_ss, df_error = within_cell_error(list(zip(first, second, strict=True)), values)
    return _f_test(interaction_ss, (a_count - 1) * (b_count - 1), error_ss, df_error)
