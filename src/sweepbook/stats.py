"""Aggregation over seeds, in Polars: one row per configuration of the compared axes."""

from __future__ import annotations

from typing import Literal

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
