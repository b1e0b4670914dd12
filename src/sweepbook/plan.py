"""Expand a sweep into runs, name each run by the hash of its config, split static from traced.

Order of application for every run: experiment defaults, then ``[set]``, then the variant's
overrides, then one point of ``[zip]`` x ``[grid]``, then the seed. The run id depends only on
the resulting config, so the same run has the same id in every sweep that produces it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

from sweepbook.config import (
    ExperimentConfig,
    FlatConfig,
    RunConfig,
    Sweep,
    flatten,
    validate_run,
)

# Keys whose values enter the compiled program as arrays, so that runs differing only in
# them share one compilation. Everything else changes shapes or program structure.
TRACED_KEYS: frozenset[str] = frozenset(
    {
        "seed",
        "optimizer.learning_rate",
        "optimizer.momentum",
        "optimizer.b1",
        "optimizer.b2",
        "optimizer.eps",
        "model.dropout",
        "train.early_stopping.min_delta",
    }
)


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    variant: str | None
    config: RunConfig

    @property
    def flat(self) -> FlatConfig:
        return run_flat(self.config)

    @property
    def compile_group(self) -> str:
        return compile_group(self.config)


def run_flat(config: ExperimentConfig) -> FlatConfig:
    """The config as flat dotted keys, without the free-text description."""
    flat = flatten(config.model_dump())
    flat.pop("description", None)
    return flat


def canonical_json(flat: FlatConfig) -> str:
    return json.dumps(flat, sort_keys=True, separators=(",", ":"))


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_id(config: RunConfig) -> str:
    """Short sha256 of the canonical flat config (sorted keys, seed included)."""
    return _short_hash(canonical_json(run_flat(config)))


def static_part(config: RunConfig) -> FlatConfig:
    return {k: v for k, v in run_flat(config).items() if k not in TRACED_KEYS}


def compile_group(config: RunConfig) -> str:
    """Runs with the same static part share one compiled program."""
    return _short_hash(canonical_json(static_part(config)))


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
    return [{**z, **g} for z in zipped for g in grid]


def expand(sweep: Sweep) -> list[PlannedRun]:
    """Every run of the sweep, validated; duplicates (same config twice) kept once."""
    base = run_flat(sweep.experiment)
    variants: list[tuple[str | None, FlatConfig]] = list(sweep.variants) or [(None, {})]
    runs: dict[str, PlannedRun] = {}
    for variant_name, overrides in variants:
        for point in _axis_points(sweep):
            for seed in sweep.seeds:
                flat = {**base, **sweep.set, **overrides, **point, "seed": seed}
                config = validate_run(sweep.path, flat)
                rid = run_id(config)
                runs.setdefault(rid, PlannedRun(rid, variant_name, config))
    return list(runs.values())
