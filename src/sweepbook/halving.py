"""Successive halving over configurations, seed-aware: the rung schedule and each rung's choice.

Every configuration (a run's flat config without its seed and fold) trains ``min_epochs``; the
best ``1/eta`` of them by their *mean* rung metric over seeds and folds train on to the next
rung, ``eta`` times as many epochs, until ``train.epochs``. Ranking the mean over replicates,
not single runs, is what keeps one lucky seed from carrying a configuration forward.

Pure functions of plain data (no JAX): the engine trains the rungs, the report reads what this
module's names say about the store. A halving store holds, beside the usual files:

- ``rungs.parquet``: one row per run and rung it finished, the value the choice ranked:
  ``run_id``, ``rung`` (0-based), ``epochs`` (epochs trained by the rung's end), ``metric``,
  ``value`` (NaN for a diverged run, which ranks last);
- in ``runs.parquet`` a ``rung`` column (the last rung each run trained to) and the status
  ``stopped`` for a run halted at an earlier rung (its metrics as evaluated at that rung's end);
- ``rungs/<run_id>/``: the training state of a run between rungs (removed once its row is
  stored), from which a killed sweep resumes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

RUNGS_FILE = "rungs.parquet"
STATES_DIR = "rungs"  # under the store: one checkpoint of training state per run between rungs
STOPPED = "stopped"  # the status of a run halted at a rung before the last
# Keys that replicate a configuration rather than change it: halving ranks their mean.
REPLICATE_KEYS = ("seed", "data.fold")


def rung_epochs(min_epochs: int, eta: int, epochs: int) -> list[int]:
    """Epochs trained by the end of each rung: ``min_epochs * eta**r`` below ``epochs``, then
    ``epochs`` itself (``rung_epochs(1, 3, 10) == [1, 3, 9, 10]``)."""
    ends = []
    end = min_epochs
    while end < epochs:
        ends.append(end)
        end *= eta
    return [*ends, epochs]


def configuration_key(flat: Mapping[str, Any]) -> str:
    """What identifies a run's configuration: its flat config without the replicate keys."""
    kept = {key: value for key, value in flat.items() if key not in REPLICATE_KEYS}
    return json.dumps(kept, sort_keys=True, default=str)


def survivors_count(configurations: int, eta: int) -> int:
    """How many of ``configurations`` go on to the next rung: ``1/eta`` of them, at least one."""
    return max(1, configurations // eta)


def choose_survivors(
    values: Mapping[str, float],
    configuration_of: Mapping[str, str],
    *,
    eta: int,
    direction: Literal["max", "min"],
) -> set[str]:
    """The configurations that continue, from each run's rung value in ``values`` (run id ->
    value) and its configuration: the best :func:`survivors_count` by mean over their runs. A
    configuration with a non-finite value (a diverged run) ranks last; ties go to the smaller
    configuration key, so the choice never depends on the order runs finished in."""
    runs_of: dict[str, list[float]] = {}
    for run_id, value in values.items():
        runs_of.setdefault(configuration_of[run_id], []).append(value)
    sign = -1.0 if direction == "max" else 1.0

    def rank(configuration: str) -> tuple[bool, float, str]:
        scores = runs_of[configuration]
        mean = math.fsum(scores) / len(scores)
        finite = math.isfinite(mean)
        return (not finite, sign * mean if finite else 0.0, configuration)

    ranked = sorted(runs_of, key=rank)
    return set(ranked[: survivors_count(len(ranked), eta)])


def run_epochs_saved(rungs_reached: Sequence[int], ends: Sequence[int]) -> tuple[int, int]:
    """(run-epochs trained, run-epochs of the full grid) for runs that reached ``rungs_reached``
    (0-based, one per run) on the schedule ``ends``: the budget each was given, not fewer epochs
    early stopping may have taken."""
    return sum(ends[rung] for rung in rungs_reached), len(rungs_reached) * ends[-1]
