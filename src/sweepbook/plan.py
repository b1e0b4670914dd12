"""Expand a sweep into runs, name each run by the hash of its config, split static from traced.

Order of application for every run: experiment defaults, then ``[set]``, then the variant's
overrides, then one point of ``[zip]`` x ``[grid]`` x ``[random]``, then the replicate (seed,
and fold when the sweep names ``folds``). The run id depends only on
the resulting config, so the same run has the same id in every sweep that produces it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np

from sweepbook.config import (
    ConfigError,
    ExperimentConfig,
    FlatConfig,
    RandomSearch,
    RunConfig,
    Sweep,
    flatten,
    validate_run,
)

# The most runs a sweep may plan unless told otherwise (``sweepbook run --max-runs N``).
# Planning validates every run (0.6 ms each on 2 busy CPU cores: 100,000 runs take a minute)
# and the store and the report hold a row for each, so a bigger plan is far more often a
# slip (``random.samples = 2**31``, a grid axis of a million values) than a study; the plan
# is counted before anything is expanded, so such a slip is refused at once.
MAX_RUNS = 100_000


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    variant: str | None
    config: RunConfig
    trial: int | None = None  # the model-based search trial that proposed this run
    repeat: int = 0  # which of the sweep's identical repeats (same inputs, another run)

    @property
    def flat(self) -> FlatConfig:
        return run_flat(self.config)

    @property
    def config_json(self) -> str:
        """The ``config`` column of the run's row: exactly what its id hashes, so a run stored
        before a key was added reads back, and verifies, as the same run."""
        return canonical_json(identity_flat(self.config))


def run_flat(config: ExperimentConfig) -> FlatConfig:
    """The config as flat dotted keys, without the free-text description."""
    flat = flatten(config.model_dump())
    flat.pop("description", None)
    return flat


def canonical_json(flat: FlatConfig) -> str:
    return json.dumps(flat, sort_keys=True, separators=(",", ":"))


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# Keys added to the config after stores were written, each with the value that does what runs
# without the key did. A run at that value hashes without the key, so every stored run keeps
# its id (stores are a contract); any other value is part of the id like every key.
ADDED_KEYS: dict[str, object] = {
    "data.scale": "auto",
    "optimizer.weight_decay_mask": "all",
    "task": "classification",
    "metrics": [],
    "loss.huber_delta": 1.0,
}


def identity_flat(config: ExperimentConfig) -> FlatConfig:
    """The flat config a run id hashes: :func:`run_flat` less added keys at their old value."""
    flat = run_flat(config)
    return {k: v for k, v in flat.items() if k not in ADDED_KEYS or v != ADDED_KEYS[k]}


def run_id(config: RunConfig, repeat: int = 0) -> str:
    """Short sha256 of the canonical flat config (sorted keys, seed included). Repeats after the
    first hash their index too: they are other runs of the same inputs, while the first keeps
    the id the run has in any sweep without repeats."""
    text = canonical_json(identity_flat(config))
    return _short_hash(text if repeat == 0 else f"{text}#repeat={repeat}")


def sample_random(search: RandomSearch) -> list[FlatConfig]:
    """``search.samples`` points drawn from the ``[random]`` distributions, seeded by
    ``search.seed`` alone: the same file always gives the same points."""
    rng = np.random.default_rng(search.seed)
    points = []
    for _ in range(search.samples):
        point: FlatConfig = {}
        for key, distribution in search.axes.items():
            values = distribution.values
            if distribution.kind == "uniform":
                point[key] = float(rng.uniform(values[0], values[1]))
            elif distribution.kind == "loguniform":
                point[key] = float(np.exp(rng.uniform(np.log(values[0]), np.log(values[1]))))
            elif distribution.kind == "int":
                point[key] = int(rng.integers(values[0], values[1], endpoint=True))
            else:
                point[key] = values[int(rng.integers(len(values)))]
        points.append(point)
    return points


def _axis_points(sweep: Sweep) -> list[FlatConfig]:
    zipped: list[FlatConfig] = [{}]
    if sweep.zip:
        keys = list(sweep.zip)
        columns = zip(*sweep.zip.values(), strict=True)
        zipped = [dict(zip(keys, values, strict=True)) for values in columns]
    grid_keys = list(sweep.grid)
    grid = [
        dict(zip(grid_keys, values, strict=True))
        for values in itertools.product(*sweep.grid.values())
    ]
    random = sample_random(sweep.random) if sweep.random else [{}]
    return [{**z, **g, **r} for z in zipped for g in grid for r in random]


def _replicates(sweep: Sweep, flat: FlatConfig, seeds: list[int]) -> list[FlatConfig]:
    """Seeds x folds: the runs that are aggregated, not compared. Folds replicate K-fold runs
    only, so that one sweep can set K-fold against holdout variants."""
    count = flat.get("data.folds")
    if sweep.folds is None or count is None:
        return [{"seed": seed} for seed in seeds]
    folds = list(range(count)) if sweep.folds == "all" else list(sweep.folds)
    if max(folds) >= count:
        raise ConfigError(sweep.path, "folds", f"folds must be below data.folds = {count}")
    return [{"seed": seed, "data.fold": fold} for fold in folds for seed in seeds]


def _fold_count(sweep: Sweep) -> int:
    """How many folds each K-fold run is replicated over, at most."""
    if sweep.folds is None:
        return 1
    if sweep.folds != "all":
        return len(sweep.folds)
    given = [sweep.experiment.data.folds, sweep.set.get("data.folds")]
    given += sweep.grid.get("data.folds", []) + sweep.zip.get("data.folds", [])
    given += [overrides.get("data.folds") for _, overrides in sweep.variants]
    return max([count for count in given if isinstance(count, int)], default=1)


def planned_size(sweep: Sweep) -> tuple[int, list[tuple[str, int]]]:
    """How many runs :func:`expand` would plan at most (before duplicates are dropped),
    counted without expanding, with the factors: (key, count) pairs."""
    if sweep.search is not None:
        factors = [("search", 1)]
    else:
        factors = [(f"grid.{key}", len(values)) for key, values in sweep.grid.items()]
        if sweep.zip:
            factors.append(("zip", len(next(iter(sweep.zip.values())))))
        if sweep.random:
            factors.append(("random.samples", sweep.random.samples))
    names: list[str | None] = [name for name, _ in sweep.variants] or [None]
    replicates = sum(
        len(sweep.replicates(name).seeds) * sweep.replicates(name).repeat for name in names
    )
    factors.append(("variant" if sweep.variants else "seeds", replicates))
    factors.append(("folds", _fold_count(sweep)))
    return math.prod(count for _, count in factors), factors


def expand(sweep: Sweep, *, max_runs: int = MAX_RUNS) -> list[PlannedRun]:
    """Every run of the sweep, validated; duplicates (same config twice) kept once.

    A model-based ``[search]`` proposes its points while it runs (see search.py); for such a
    sweep this returns the runs of the base point alone, which validates the files and data.
    A sweep that would plan more than ``max_runs`` runs is refused before any is planned."""
    size, factors = planned_size(sweep)
    if size > max_runs:
        key, _ = max(factors, key=lambda factor: factor[1])
        shown = " × ".join(f"{count:,} ({name})" for name, count in factors if count > 1)
        raise ConfigError(
            sweep.path,
            key,
            f"the sweep plans {size:,} runs: {shown}; the limit is {max_runs:,} "
            "(sweepbook run --max-runs N allows more)",
        )
    variants: list[tuple[str | None, FlatConfig]] = list(sweep.variants) or [(None, {})]
    runs: dict[str, PlannedRun] = {}
    points = [{}] if sweep.search else _axis_points(sweep)
    for index, (variant_name, overrides) in enumerate(variants):
        for run in plan_points(sweep, points, overrides=overrides, variant=variant_name):
            earlier = runs.setdefault(run.run_id, run)
            if earlier.variant != run.variant:
                # One stored row cannot count for two variants: the report would be wrong.
                raise ConfigError(
                    sweep.path,
                    f"variant[{index}]",
                    f"variant {run.variant!r} has a run identical to one of variant "
                    f"{earlier.variant!r} (seed {run.config.seed}); make their settings or "
                    "seeds differ",
                )
    if sweep.folds is not None and all(run.config.data.folds is None for run in runs.values()):
        raise ConfigError(sweep.path, "folds", "needs a K-fold split (data.split, data.folds)")
    return list(runs.values())


def plan_points(
    sweep: Sweep,
    points: list[FlatConfig],
    *,
    overrides: FlatConfig | None = None,
    variant: str | None = None,
    trial: int | None = None,
) -> list[PlannedRun]:
    """The replicated (seeds, folds, repeats), validated runs of the given axis ``points``."""
    base = run_flat(sweep.experiment)
    replicates = sweep.replicates(variant)
    runs = []
    for point in points:
        partial = {**base, **sweep.set, **(overrides or {}), **point}
        for replicate in _replicates(sweep, partial, replicates.seeds):
            config = validate_run(sweep, {**partial, **replicate}, variant)
            for repeat in range(replicates.repeat):
                runs.append(PlannedRun(run_id(config, repeat), variant, config, trial, repeat))
    return runs
