"""Model-based search with Optuna's TPE sampler, in batches, every run stored like any other.

Each round asks the sampler for ``batch`` trials, plans every trial's runs (its point of the
search space x the sweep's seeds and folds), trains them through the engine, and tells the
sampler each trial's mean headline metric. A trial whose runs all failed or diverged is told
as failed. A stopped search resumes from the store: stored trials are replayed into a fresh
study in their original order (missing runs of a half-finished trial are trained first), then
new trials are asked until ``trials`` are complete. The sampler is seeded, so an uninterrupted
search is reproducible; after a resume the sampler's random state differs from one that never
stopped, so the points proposed after the resume may too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import polars as pl

from sweepbook.config import Distribution, FlatConfig, Sweep, metric_direction
from sweepbook.plan import PlannedRun, plan_points
from sweepbook.store import Store

TRIAL_COLUMN = "search.trial"

optuna.logging.set_verbosity(optuna.logging.WARNING)  # sweepbook reports progress itself


def optuna_distribution(distribution: Distribution) -> optuna.distributions.BaseDistribution:
    values = distribution.values
    if distribution.kind == "uniform":
        return optuna.distributions.FloatDistribution(values[0], values[1])
    if distribution.kind == "loguniform":
        return optuna.distributions.FloatDistribution(values[0], values[1], log=True)
    if distribution.kind == "int":
        return optuna.distributions.IntDistribution(values[0], values[1])
    # Choices may be lists (e.g. model.widths), which Optuna cannot hold: it picks an index.
    return optuna.distributions.CategoricalDistribution(list(range(len(values))))


def point_from_params(axes: dict[str, Distribution], params: dict[str, Any]) -> FlatConfig:
    return {
        key: distribution.values[params[key]] if distribution.kind == "choice" else params[key]
        for key, distribution in axes.items()
    }


def params_from_point(axes: dict[str, Distribution], point: FlatConfig) -> dict[str, Any]:
    return {
        key: distribution.values.index(point[key]) if distribution.kind == "choice" else point[key]
        for key, distribution in axes.items()
    }


def _stored_params(
    axes: dict[str, Distribution],
    distributions: dict[str, optuna.distributions.BaseDistribution],
    point: FlatConfig,
) -> dict[str, Any] | None:
    """Optuna parameters of a stored point, or None when it lies outside the search space."""
    try:
        params = params_from_point(axes, point)
    except ValueError:  # a choice that is no longer offered
        return None
    for key, value in params.items():
        distribution = distributions[key]
        if value is None or not distribution._contains(distribution.to_internal_repr(value)):
            return None
    return params


def trial_value(runs: pl.DataFrame, run_ids: list[str], metric: str) -> float | None:
    """Mean of ``metric`` over the trial's successful runs (None when there is none)."""
    done = runs.filter(pl.col("run_id").is_in(run_ids) & (pl.col("status") == "ok"))
    if done.is_empty() or metric not in done.columns:
        return None
    value = float(done[metric].mean())  # type: ignore[arg-type]
    return value if np.isfinite(value) else None


def run_search(
    sweep: Sweep,
    store: Store,
    *,
    train: Callable[[list[PlannedRun]], None],
    on_batch: Callable[[list[PlannedRun]], None] = lambda runs: None,
) -> list[PlannedRun]:
    """Run (or resume) the sweep's ``[search]``; returns every planned run, in trial order."""
    search = sweep.search
    assert search is not None
    metric = sweep.report.metric
    distributions = {key: optuna_distribution(d) for key, d in search.axes.items()}
    direction = (
        optuna.study.StudyDirection.MAXIMIZE
        if metric_direction(sweep.report) == "max"
        else optuna.study.StudyDirection.MINIMIZE
    )
    study = optuna.create_study(direction=direction)
    planned: list[PlannedRun] = []

    def finish(trial_runs: list[PlannedRun]) -> float | None:
        done = store.completed_ids()
        todo = [run for run in trial_runs if run.run_id not in done]
        if todo:
            train(todo)
        return trial_value(store.read_runs(), [run.run_id for run in trial_runs], metric)

    # Replay what the store already holds, trial by trial, in the order they were proposed.
    stored = store.read_runs()
    if TRIAL_COLUMN in stored.columns:
        replayed = stored.filter(pl.col(TRIAL_COLUMN).is_not_null()).sort(TRIAL_COLUMN)
        for rows in replayed.partition_by(TRIAL_COLUMN, maintain_order=True):
            if len(study.trials) >= search.trials:
                break
            first = rows.row(0, named=True)
            point = {key: first.get(key) for key in search.axes}
            params = _stored_params(search.axes, distributions, point)
            if params is None:
                continue  # a trial of an earlier search space: kept in the store, not replayed
            trial_runs = plan_points(sweep, [point], trial=len(study.trials))
            value = finish(trial_runs)
            state = (
                optuna.trial.TrialState.COMPLETE
                if value is not None
                else optuna.trial.TrialState.FAIL
            )
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=distributions, value=value, state=state
                )
            )
            planned += trial_runs

    # The sampler's random stream restarts at the seed on every resume; offsetting the seed by
    # the trials already told keeps a resumed search from re-proposing its first points.
    study.sampler = optuna.samplers.TPESampler(seed=search.seed + len(study.trials))
    while len(study.trials) < search.trials:
        count = min(search.batch, search.trials - len(study.trials))
        trials = [study.ask(distributions) for _ in range(count)]
        batch: list[tuple[optuna.trial.Trial, list[PlannedRun]]] = []
        for trial in trials:
            point = point_from_params(search.axes, trial.params)
            batch.append((trial, plan_points(sweep, [point], trial=trial.number)))
        runs = [run for _, trial_runs in batch for run in trial_runs]
        done = store.completed_ids()  # a re-proposed point reuses its stored runs
        todo = list({run.run_id: run for run in runs if run.run_id not in done}.values())
        if todo:
            train(todo)
        results = store.read_runs()
        for trial, trial_runs in batch:
            value = trial_value(results, [run.run_id for run in trial_runs], metric)
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, value)
        planned += runs
        on_batch(planned)
    return planned
