"""Which swept keys move the headline metric most: hyper-parameter importance from the stored
runs, by Optuna's fANOVA evaluator (Hutter et al., 2014, "An Efficient Approach for Assessing
Hyperparameter Importance"), and its bar figure.

Method: the runs of each configuration are averaged over seeds (replicates are noise, not a
key), each configuration becomes one completed Optuna trial whose parameters are its swept
keys, and ``FanovaImportanceEvaluator`` (a random forest of fixed seed, so the same store gives
the same table) splits the variance of the configuration means into a share per key. Grid
values are categories (levels of equal weight); the numeric keys of a sampled search are
continuous, those spanning two decades or more on a log10 scale, as they are drawn.

The shares always sum to 1, even when every difference between configurations is seed noise:
they say which key explains the differences that exist, not that the differences are real (the
findings' F-tests say that). Pure apart from matplotlib: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from sweepbook.figures import PALETTE, figure_style
from sweepbook.findings import value_text
from sweepbook.venues import DEFAULT_VENUE, Venue, venue_named

# A forest fitted to fewer configurations than this per key cannot separate one key's effect
# from another's (fANOVA was validated on hundreds of trials); below it the caption says the
# ranking is unreliable. A 4 × 3 grid (12 configurations, 2 keys) passes; 11 one-at-a-time
# variants over 11 keys do not.
MIN_CONFIGURATIONS_PER_KEY = 5
FOREST_SEED = 0  # fixed: the same store always gives the same importances
# Keys that replicate a configuration rather than define it: averaged over, never ranked.
REPLICATE_KEYS = frozenset({"seed", "data.fold"})
LOG_SPAN = 100.0  # numeric keys whose max / min reaches this enter on a log10 scale


@dataclass(frozen=True)
class KeyImportance:
    key: str
    importance: float  # share of the variance of configuration means, in [0, 1]


@dataclass(frozen=True)
class ImportanceTable:
    metric: str
    keys: list[KeyImportance]  # most important first
    configurations: int
    runs: int
    reliable: bool
    caption: str


def swept_keys(runs: pl.DataFrame, axes: Sequence[str]) -> list[str]:
    """The config keys whose value differs between runs. Read from each run's stored flat
    config where the store has it, so that a variant's overrides count as the keys they set;
    otherwise the sweep's axes (without the variant name, which is a label, not a key)."""
    if "config" in runs.columns and runs["config"].null_count() == 0 and runs.height:
        configs = [json.loads(text) for text in runs["config"].to_list()]
        keys = dict.fromkeys(key for config in configs for key in config)
        return [
            key
            for key in keys
            if key not in REPLICATE_KEYS
            and len({value_text(config.get(key)) for config in configs}) > 1
        ]
    return [
        axis
        for axis in axes
        if axis != "variant" and axis in runs.columns and runs[axis].n_unique() > 1
    ]


def importance_applies(keys: Sequence[str], sampled: bool) -> bool:
    """Importance is shown for two or more swept keys, or any sampled (random/TPE) search."""
    return len(keys) >= 2 or (sampled and len(keys) >= 1)


def _key_values(runs: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """One column per key, one row per run: from the stored flat config where present."""
    if "config" in runs.columns and runs["config"].null_count() == 0:
        configs = [json.loads(text) for text in runs["config"].to_list()]
        columns = {key: [config.get(key) for config in configs] for key in keys}
    else:
        columns = {key: runs[key].to_list() for key in keys}
    return pl.DataFrame({key: [value_text(v) for v in values] for key, values in columns.items()})


def _distribution(values: list[Any], *, continuous: bool) -> tuple[Any, list[Any]]:
    """An Optuna distribution for one key's values, and the values as that distribution holds
    them: with ``continuous``, numeric keys as floats (log10 over a wide span); otherwise, and
    for every other key, categories named by their text."""
    import optuna

    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not (numeric and continuous):
        texts = [value_text(v) for v in values]
        return optuna.distributions.CategoricalDistribution(sorted(set(texts))), texts
    floats = [float(v) for v in values]
    if min(floats) > 0 and max(floats) / min(floats) >= LOG_SPAN:
        floats = [math.log10(v) for v in floats]
    return optuna.distributions.FloatDistribution(min(floats), max(floats)), floats


def hyperparameter_importance(
    runs: pl.DataFrame, *, metric: str, keys: Sequence[str], sampled: bool = False
) -> ImportanceTable | None:
    """fANOVA importance of ``keys`` for ``metric`` over the ok runs (see the module's
    docstring). None when there is nothing to rank: no key, or fewer than two configurations.

    fANOVA averages over a uniform measure on each key's range. A grid's values are levels of
    equal weight, so grid keys are categorical (the shares then follow the ANOVA's sums of
    squares); a ``sampled`` search's numeric keys are continuous, as they were drawn."""
    import optuna

    ok = runs.filter(pl.col("status") == "ok")
    if metric in ok.columns:
        ok = ok.filter(pl.col(metric).is_not_null() & pl.col(metric).cast(pl.Float64).is_not_nan())
    if not keys or ok.is_empty() or metric not in ok.columns:
        return None
    texts = _key_values(ok, keys).with_columns(ok[metric].cast(pl.Float64).alias("_y"))
    configurations = texts.group_by(list(keys), maintain_order=True).agg(pl.col("_y").mean())
    if configurations.height < 2 or configurations["_y"].n_unique() < 2:
        return None  # nothing to attribute: every configuration scores the same (fANOVA fails)
    raw = _raw_values(ok, keys, configurations)
    encoded = {key: _distribution(raw[key], continuous=sampled) for key in keys}
    trials = [
        optuna.trial.create_trial(
            params={key: encoded[key][1][row] for key in keys},
            distributions={key: encoded[key][0] for key in keys},
            value=float(configurations["_y"][row]),
        )
        for row in range(configurations.height)
    ]
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as in search.py: no study chatter
    study = optuna.create_study()
    study.add_trials(trials)
    shares = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=FOREST_SEED)
    )
    ranked = sorted(keys, key=lambda key: (-shares.get(key, 0.0), list(keys).index(key)))
    reliable = configurations.height >= MIN_CONFIGURATIONS_PER_KEY * len(keys)
    return ImportanceTable(
        metric=metric,
        keys=[KeyImportance(key, float(shares.get(key, 0.0))) for key in ranked],
        configurations=configurations.height,
        runs=ok.height,
        reliable=reliable,
        caption=importance_caption(metric, len(keys), configurations.height, ok.height, reliable),
    )


def _raw_values(
    ok: pl.DataFrame, keys: Sequence[str], configurations: pl.DataFrame
) -> dict[str, list[Any]]:
    """Each configuration's value of each key as stored (not as text), for the encoding."""
    if "config" in ok.columns and ok["config"].null_count() == 0:
        by_text: dict[str, dict[str, Any]] = {key: {} for key in keys}
        for text in ok["config"].to_list():
            config = json.loads(text)
            for key in keys:
                by_text[key][value_text(config.get(key))] = config.get(key)
    else:
        by_text = {key: {value_text(v): v for v in ok[key].to_list()} for key in keys}
    return {key: [by_text[key][t] for t in configurations[key].to_list()] for key in keys}


def importance_caption(
    metric: str, keys: int, configurations: int, runs: int, reliable: bool
) -> str:
    text = (
        f"Importance of each of the {keys} swept keys for {metric}: its main effect's share of "
        f"the variance of the mean {metric} between the {configurations} configurations "
        f"({runs} runs, averaged over seeds first), by Optuna's fANOVA evaluator (a random "
        "forest with a fixed seed). Shares sum to 1 even "
        "when every difference is seed noise; whether a key's effect is real is for the "
        "findings' tests to say."
    )
    if not reliable:
        text += (
            f" Unreliable here: fewer than {MIN_CONFIGURATIONS_PER_KEY} configurations per key "
            f"({configurations} for {keys}), too few for the forest to separate one key's effect "
            "from another's."
        )
    return text


def importance_figure(
    table: ImportanceTable, venue: Venue | None = None, labels: dict[str, str] | None = None
) -> Figure:
    """Horizontal bars, the most important key on top; ``labels`` rename keys as the sweep's
    [report.labels] do."""
    venue = venue or venue_named(DEFAULT_VENUE)
    names = [(labels or {}).get(row.key, row.key) for row in table.keys]
    shares = np.array([row.importance for row in table.keys])
    with plt.rc_context(figure_style(venue)):
        height = max(1.2, 0.25 * len(names) + 0.8)
        fig, ax = plt.subplots(figsize=(venue.column_width_in, height), layout="constrained")
        positions = np.arange(len(names))[::-1]
        # Pale bars: the caption says why this ranking is not to be trusted.
        ax.barh(positions, shares, color=PALETTE[0], alpha=1.0 if table.reliable else 0.4)
        for position, share in zip(positions, shares, strict=True):
            # The share written at the bar's end: inside a long bar, so that it never reaches
            # past the axes (and the figure's fixed width), outside a short one.
            inside = share >= 0.5
            ax.annotate(
                f"{share:.2f}",
                (share, position),
                xytext=(-3 if inside else 3, 0),
                textcoords="offset points",
                ha="right" if inside else "left",
                va="center",
                color="white" if inside and table.reliable else "black",
            )
        ax.set_yticks(positions, names)
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("importance (share)")
        ax.grid(axis="y", visible=False)
    return fig


def from_record(runs: pl.DataFrame, record: Mapping[str, Any]) -> ImportanceTable | None:
    """The importance table of a stored sweep (its runs and ``sweep.json`` record), where it
    applies (:func:`importance_applies`); None elsewhere."""
    sampled = bool(record.get("sampled", False))
    ok = runs.filter(pl.col("status") == "ok")
    keys = swept_keys(ok, record.get("axes", record["compare"]))
    if not importance_applies(keys, sampled):
        return None
    return hyperparameter_importance(ok, metric=record["metric"], keys=keys, sampled=sampled)
