"""Hyper-parameter importance on run frames with known answers."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from sweepbook.importance import (
    MIN_CONFIGURATIONS_PER_KEY,
    from_record,
    hyperparameter_importance,
    importance_applies,
    importance_figure,
    swept_keys,
)

LR = "optimizer.learning_rate"
BATCH = "train.batch_size"
DROPOUT = "model.dropout"
BASE = {LR: 1e-3, BATCH: 64, DROPOUT: 0.0, "train.epochs": 10}


def runs_of(
    configs: list[dict[str, Any]],
    mean_of: Any,
    *,
    seeds: int = 3,
    noise: float = 0.003,
    variants: list[str] | None = None,
) -> pl.DataFrame:
    """One row per run with its flat config stored as JSON, as runs.parquet holds it."""
    rng = np.random.default_rng(0)
    rows = []
    for index, overrides in enumerate(configs):
        config = {**BASE, **overrides}
        for seed in range(seeds):
            rows.append(
                {
                    "run_id": f"{index:03d}{seed}",
                    "status": "ok",
                    "variant": variants[index] if variants else None,
                    **{key: config[key] for key in overrides},
                    "seed": seed,
                    "test.accuracy": float(mean_of(config) + rng.normal(0, noise)),
                    "config": json.dumps({**config, "seed": seed}),
                }
            )
    return pl.DataFrame(rows)


GRID = [
    {LR: lr, BATCH: batch}
    for lr, batch in itertools.product([1e-4, 3e-4, 1e-3, 3e-3, 1e-2], [16, 64, 256])
]


def learning_rate_only(config: dict[str, Any]) -> float:
    return 0.7 + 0.1 * float(np.log10(config[LR] / 1e-4))


def test_the_effective_key_ranks_first() -> None:
    runs = runs_of(GRID, learning_rate_only)
    keys = swept_keys(runs, [LR, BATCH])
    assert keys == [LR, BATCH]
    table = hyperparameter_importance(runs, metric="test.accuracy", keys=keys)
    assert table is not None
    assert [row.key for row in table.keys] == [LR, BATCH]
    assert table.keys[0].importance > 0.9
    assert sum(row.importance for row in table.keys) == pytest.approx(1.0)
    assert table.configurations == 15 and table.runs == 45
    assert table.reliable  # 15 configurations for 2 keys


def test_additive_effects_share_variance_as_the_anova_sums_of_squares() -> None:
    """Without noise or interaction, a key's fANOVA share is its share of the main-effect sums
    of squares; the log10 learning rate's effect is linear, the batch size's a step."""

    def both(config: dict[str, Any]) -> float:
        return learning_rate_only(config) + (0.05 if config[BATCH] == 16 else 0.0)

    runs = runs_of(GRID, both, seeds=1, noise=0.0)
    table = hyperparameter_importance(runs, metric="test.accuracy", keys=[LR, BATCH])
    assert table is not None
    means = runs.group_by(LR).agg(pl.col("test.accuracy").mean())["test.accuracy"].to_numpy()
    batch_means = runs.group_by(BATCH).agg(pl.col("test.accuracy").mean())
    ss_lr = 3 * float(((means - means.mean()) ** 2).sum())
    batch = batch_means["test.accuracy"].to_numpy()
    ss_batch = 5 * float(((batch - batch.mean()) ** 2).sum())
    shares = {row.key: row.importance for row in table.keys}
    assert shares[LR] == pytest.approx(ss_lr / (ss_lr + ss_batch), abs=0.05)


def test_importance_is_deterministic() -> None:
    runs = runs_of(GRID, learning_rate_only)
    first = hyperparameter_importance(runs, metric="test.accuracy", keys=[LR, BATCH])
    second = hyperparameter_importance(runs, metric="test.accuracy", keys=[LR, BATCH])
    assert first == second


def test_variant_overrides_are_the_swept_keys_and_few_variants_are_unreliable() -> None:
    variants = [{}, {LR: 1e-2}, {DROPOUT: 0.3}, {BATCH: 16}]
    runs = runs_of(variants, learning_rate_only, variants=["none", "lr", "dropout", "batch"])
    keys = swept_keys(runs, ["variant"])
    assert set(keys) == {LR, DROPOUT, BATCH}  # the variant name and the seed are not keys
    table = hyperparameter_importance(runs, metric="test.accuracy", keys=keys)
    assert table is not None
    assert table.keys[0].key == LR
    assert table.configurations < MIN_CONFIGURATIONS_PER_KEY * len(keys)
    assert not table.reliable
    assert "Unreliable here" in table.caption
    assert "4 for 3" in table.caption


def test_stores_without_stored_configs_use_the_axes() -> None:
    runs = runs_of(GRID, learning_rate_only).drop("config")
    assert swept_keys(runs, ["variant", LR, BATCH]) == [LR, BATCH]
    table = hyperparameter_importance(runs, metric="test.accuracy", keys=[LR, BATCH])
    assert table is not None and table.keys[0].key == LR


@pytest.mark.parametrize(
    ("keys", "sampled", "applies"),
    [([LR], False, False), ([LR, BATCH], False, True), ([LR], True, True), ([], True, False)],
)
def test_importance_applies_to_two_keys_or_a_sampled_search(
    keys: list[str], sampled: bool, applies: bool
) -> None:
    assert importance_applies(keys, sampled) is applies


def test_nothing_to_rank() -> None:
    one = runs_of([{LR: 1e-3}], learning_rate_only)
    assert hyperparameter_importance(one, metric="test.accuracy", keys=[LR]) is None
    failed = runs_of(GRID, learning_rate_only).with_columns(pl.lit("failed").alias("status"))
    assert hyperparameter_importance(failed, metric="test.accuracy", keys=[LR, BATCH]) is None
    # Every configuration scores the same (a saturated metric): fANOVA has no variance to share.
    flat = runs_of(GRID, learning_rate_only).with_columns(pl.lit(1.0).alias("test.accuracy"))
    assert hyperparameter_importance(flat, metric="test.accuracy", keys=[LR, BATCH]) is None


def test_figure_has_one_bar_per_key_most_important_on_top() -> None:
    table = hyperparameter_importance(
        runs_of(GRID, learning_rate_only), metric="test.accuracy", keys=[LR, BATCH]
    )
    assert table is not None
    fig = importance_figure(table, labels={LR: "learning rate"})
    ax = fig.axes[0]
    assert len(ax.patches) == 2
    ticks = sorted(ax.get_yticklabels(), key=lambda label: -label.get_position()[1])
    assert [label.get_text() for label in ticks] == ["learning rate", BATCH]


def test_a_sampled_search_ranks_its_continuous_keys() -> None:
    """A random search: every configuration unique, the learning rate log-uniform over two
    decades and the only key that matters, the dropout rate drawn but inert."""
    rng = np.random.default_rng(7)
    samples = [
        {LR: float(10 ** rng.uniform(-4, -2)), DROPOUT: float(rng.uniform(0, 0.5))}
        for _ in range(20)
    ]
    runs = runs_of(samples, learning_rate_only, seeds=2)
    table = hyperparameter_importance(
        runs, metric="test.accuracy", keys=swept_keys(runs, []), sampled=True
    )
    assert table is not None and table.configurations == 20
    assert table.keys[0].key == LR and table.keys[0].importance > 0.9
    assert table.reliable


def test_regularizers_variants_rank_label_smoothing_first_and_say_it_is_unreliable() -> None:
    """The regularizers study (11 one-at-a-time variants, 3 seeds; fixture trained at commit
    63013a3): the keys are the variants' overrides, label smoothing (its best variant) ranks
    first, and 11 configurations for 11 keys are flagged as too few."""
    runs = pl.read_parquet(Path(__file__).parent / "fixtures" / "regularizers_runs.parquet")
    record = {"metric": "test.accuracy", "compare": ["variant"], "axes": ["variant"]}
    table = from_record(runs, record)
    assert table is not None
    assert table.keys[0].key == "loss.label_smoothing"
    assert len(table.keys) == 11 and table.configurations == 11
    assert not table.reliable
