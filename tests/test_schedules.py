"""Schedules against pure-Python references of their formulas, optax, and jit/vmap behaviour."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sweepbook.config import PlateauConfig, ScheduleConfig
from sweepbook.schedules import (
    SCHEDULES,
    PlateauState,
    ScheduleParams,
    learning_rate,
    plateau_init,
    plateau_update,
    schedule_params,
)

BASE_LR = 0.1
STEPS_PER_EPOCH = 4  # a power of two: step / steps_per_epoch and the boundaries are exact


# --- pure-Python reference, written from the formulas, one time point at a time ---------------


def reference_schedule(config: ScheduleConfig, b: float, t: float, horizon: float) -> float:
    """s(t) on the time after warm-up, ``horizon = T − w``."""
    name = config.name
    if name == "constant":
        return b
    if name == "step":
        assert config.gamma is not None and config.step_epochs is not None
        return b * config.gamma ** math.floor(math.floor(t) / config.step_epochs)
    if name == "exponential":
        assert config.gamma is not None
        return b * config.gamma ** math.floor(t)
    if name == "cosine":
        assert config.min_lr is not None
        period = config.restart_epochs or horizon
        # Restarts at every multiple of the period that lies strictly before the end.
        starts = [k * period for k in range(1000) if k * period < horizon]
        start = max(s for s in starts if s <= t)
        return config.min_lr + 0.5 * (b - config.min_lr) * (
            1 + math.cos(math.pi * (t - start) / period)
        )
    if name == "onecycle":
        assert config.pct_start and config.div_factor and config.final_div_factor
        initial = b / config.div_factor
        final = initial / config.final_div_factor
        peak = config.pct_start * horizon

        def anneal(start: float, end: float, p: float) -> float:
            p = min(max(p, 0.0), 1.0)
            return end + (start - end) / 2 * (1 + math.cos(math.pi * p))

        if t < peak:
            return anneal(initial, b, t / peak)
        return anneal(b, final, (t - peak) / (horizon - peak))
    if name == "cyclic":
        assert config.min_lr is not None and config.cycle_epochs is not None
        cycle = math.floor(1 + t / (2 * config.cycle_epochs))
        x = abs(t / config.cycle_epochs - 2 * cycle + 1)
        return config.min_lr + (b - config.min_lr) * max(0.0, 1 - x)
    raise AssertionError(name)


def reference_lr(config: ScheduleConfig, b: float, t: float, total: int, spe: int) -> float:
    w = config.warmup_epochs
    factor = min(1.0, (t + 1 / spe) / w) if w > 0 else 1.0
    return factor * reference_schedule(config, b, max(t - w, 0.0), total - w)


# Eager JAX compiles each primitive once per shape: padding every batch of time points to one
# length lets all tests share those compilations (it keeps this file at seconds, not tens).
PADDED_LENGTH = 128


def padded(values: Any) -> tuple[jax.Array, int]:
    values = np.asarray(values, dtype=np.float32)
    assert values.size <= PADDED_LENGTH
    return jnp.asarray(np.pad(values, (0, PADDED_LENGTH - values.size))), values.size


def lr_at(config: ScheduleConfig, times: Any, total: int, spe: int = STEPS_PER_EPOCH) -> np.ndarray:
    params = schedule_params(config, total)
    t, size = padded(times)
    lr = learning_rate(config.name, params, jnp.float32(BASE_LR), t, total, steps_per_epoch=spe)
    return np.asarray(lr)[:size]


CASES: dict[str, tuple[dict[str, Any], int]] = {
    "constant": ({"name": "constant"}, 6),
    "constant_warmup": ({"name": "constant", "warmup_epochs": 1.5}, 6),
    "step": ({"name": "step", "gamma": 0.5, "step_epochs": 2}, 7),
    "step_fractional_period": ({"name": "step", "gamma": 0.3, "step_epochs": 1.5}, 7),
    "step_warmup": ({"name": "step", "gamma": 0.5, "step_epochs": 2, "warmup_epochs": 1.5}, 7),
    "exponential": ({"name": "exponential", "gamma": 0.8}, 5),
    "exponential_warmup": ({"name": "exponential", "gamma": 0.8, "warmup_epochs": 0.5}, 5),
    "cosine": ({"name": "cosine", "min_lr": 0.01}, 8),
    "cosine_warmup": ({"name": "cosine", "min_lr": 0.01, "warmup_epochs": 2}, 8),
    "cosine_restarts": ({"name": "cosine", "min_lr": 0.001, "restart_epochs": 3}, 10),
    "cosine_restarts_divide": ({"name": "cosine", "min_lr": 0.0, "restart_epochs": 2.5}, 10),
    "cosine_restarts_warmup": (
        {"name": "cosine", "min_lr": 0.001, "restart_epochs": 3, "warmup_epochs": 1},
        10,
    ),
    "onecycle": (
        {"name": "onecycle", "pct_start": 0.3, "div_factor": 25, "final_div_factor": 1e4},
        10,
    ),
    "onecycle_warmup": (
        {
            "name": "onecycle",
            "pct_start": 0.3,
            "div_factor": 10,
            "final_div_factor": 100,
            "warmup_epochs": 2,
        },
        10,
    ),
    "cyclic": ({"name": "cyclic", "min_lr": 0.001, "cycle_epochs": 1.5}, 9),
    "cyclic_warmup": (
        {"name": "cyclic", "min_lr": 0.01, "cycle_epochs": 2, "warmup_epochs": 0.5},
        9,
    ),
}


def case_times(config: ScheduleConfig, total: int) -> list[float]:
    """Every step of the run, t = T, off-grid points, and each schedule's own boundaries."""
    times = {k / STEPS_PER_EPOCH for k in range(total * STEPS_PER_EPOCH + 1)}
    times |= {0.1, 0.37, total - 0.01, total / 3}
    w = config.warmup_epochs
    for period in (config.step_epochs, config.restart_epochs, config.cycle_epochs):
        if period:
            times |= {w + k * period for k in range(int(total / period) + 1)}
    if config.pct_start:
        peak = w + config.pct_start * (total - w)
        times |= {peak, peak - 0.01, peak + 0.01}
    return sorted(t for t in times if t <= total)


@pytest.mark.parametrize("case", sorted(CASES))
def test_learning_rate_matches_reference(case: str) -> None:
    fields, total = CASES[case]
    config = ScheduleConfig(**fields)
    times = case_times(config, total)
    expected = [reference_lr(config, BASE_LR, t, total, STEPS_PER_EPOCH) for t in times]
    np.testing.assert_allclose(lr_at(config, times, total), expected, rtol=2e-5, atol=1e-8)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_registered_schedule_runs_with_its_required_keys(name: str) -> None:
    fields = {key: 0.5 for key in SCHEDULES[name].requires}
    lr = lr_at(ScheduleConfig.model_validate({"name": name, **fields}), [0.0, 1.0, 2.0], 3)
    assert np.all(np.isfinite(lr)) and np.all(lr > 0)


def test_unknown_schedule_is_rejected() -> None:
    params = schedule_params(ScheduleConfig(), 3)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        learning_rate("linear", params, jnp.float32(0.1), jnp.float32(0.0), 3, steps_per_epoch=1)


# --- known values -------------------------------------------------------------------------------


def test_onecycle_starts_peaks_and_ends_at_its_known_values() -> None:
    config = ScheduleConfig(name="onecycle", pct_start=0.25, div_factor=20, final_div_factor=50)
    start, peak, end = lr_at(config, [0.0, 2.0, 8.0], 8)
    np.testing.assert_allclose(
        [start, peak, end], [BASE_LR / 20, BASE_LR, BASE_LR / 1000], rtol=1e-6
    )


@pytest.mark.parametrize("warmup", [0.0, 1.5])
def test_cosine_without_restarts_runs_from_base_to_min_lr(warmup: float) -> None:
    config = ScheduleConfig(name="cosine", min_lr=0.02, warmup_epochs=warmup)
    at_end_of_warmup, at_end = lr_at(config, [warmup, 7.0], 7)
    np.testing.assert_allclose([at_end_of_warmup, at_end], [BASE_LR, 0.02], rtol=1e-6)


def test_cosine_restarts_to_base_lr_at_each_period() -> None:
    config = ScheduleConfig(name="cosine", min_lr=0.01, restart_epochs=2)
    lr = lr_at(config, [1.999, 2.0, 3.999, 4.0, 6.0], 6)
    np.testing.assert_allclose(lr, [0.01, BASE_LR, 0.01, BASE_LR, 0.01], rtol=1e-4)


def test_cyclic_is_min_lr_at_cycle_boundaries_and_base_lr_half_way() -> None:
    config = ScheduleConfig(name="cyclic", min_lr=0.005, cycle_epochs=1.25)
    lr = lr_at(config, [0.0, 1.25, 2.5, 3.75, 5.0], 5)
    np.testing.assert_allclose(lr, [0.005, BASE_LR, 0.005, BASE_LR, 0.005], rtol=1e-6)


def test_step_drops_exactly_at_step_boundaries() -> None:
    config = ScheduleConfig(name="step", gamma=0.1, step_epochs=2)
    lr = lr_at(config, [1.75, 2.0, 3.75, 4.0], 6)
    np.testing.assert_allclose(lr, [BASE_LR, BASE_LR * 0.1, BASE_LR * 0.1, BASE_LR * 0.01])


WARMUP_SCHEDULES = [
    {"name": "constant"},
    {"name": "step", "gamma": 0.5, "step_epochs": 1},
    {"name": "exponential", "gamma": 0.5},
    {"name": "cosine", "min_lr": 0.0},
    {"name": "onecycle", "pct_start": 0.5, "div_factor": 4, "final_div_factor": 10},
    {"name": "cyclic", "min_lr": 0.01, "cycle_epochs": 1},
]


@pytest.mark.parametrize("fields", WARMUP_SCHEDULES, ids=lambda f: f["name"])
def test_warmup_ramps_linearly_from_one_step_to_the_schedule(fields: dict[str, Any]) -> None:
    w, total = 2.0, 6
    start = lr_at(ScheduleConfig(**fields), [0.0], total)[0]  # s(0) without warm-up
    config = ScheduleConfig(warmup_epochs=w, **fields)
    steps = np.arange(int(w * STEPS_PER_EPOCH) + 1)
    lr = lr_at(config, steps / STEPS_PER_EPOCH, total)
    np.testing.assert_allclose(lr[0], start / (w * STEPS_PER_EPOCH), rtol=1e-6)
    np.testing.assert_allclose(lr[-2:], [start, start], rtol=1e-6)  # last warm-up step and t = w
    np.testing.assert_allclose(np.diff(lr[:-1]), start / (w * STEPS_PER_EPOCH), rtol=1e-4)


# --- optax equivalents, compared step by step ---------------------------------------------------


def our_steps(config: ScheduleConfig, total: int, spe: int) -> np.ndarray:
    steps = jnp.arange(total * spe + 1, dtype=jnp.int32)
    return lr_at(config, steps / spe, total, spe)


def optax_steps(schedule: optax.Schedule, total: int, spe: int) -> np.ndarray:
    steps = jnp.arange(PADDED_LENGTH, dtype=jnp.int32)
    # jit: optax's one-cycle schedule takes scalar counts only, and one program beats eager ops.
    return np.asarray(jax.jit(jax.vmap(schedule))(steps))[: total * spe + 1]


SPE = 5  # not a power of two: what the training loop passes, rounding included

OPTAX_CASES: dict[str, tuple[dict[str, Any], int, optax.Schedule]] = {
    "exponential": (
        {"name": "exponential", "gamma": 0.7},
        6,
        optax.exponential_decay(BASE_LR, transition_steps=SPE, decay_rate=0.7, staircase=True),
    ),
    "step": (
        {"name": "step", "gamma": 0.5, "step_epochs": 2},
        7,
        optax.exponential_decay(BASE_LR, transition_steps=2 * SPE, decay_rate=0.5, staircase=True),
    ),
    "cosine": (
        {"name": "cosine", "min_lr": 0.004},
        6,
        optax.cosine_decay_schedule(BASE_LR, decay_steps=6 * SPE, alpha=0.004 / BASE_LR),
    ),
    "warmup_cosine": (
        {"name": "cosine", "min_lr": 0.004, "warmup_epochs": 2},
        6,
        optax.join_schedules(
            [
                # Ours ramps (step + 1) / warmup_steps: this linear schedule, one step shorter.
                optax.linear_schedule(BASE_LR / (2 * SPE), BASE_LR, transition_steps=2 * SPE - 1),
                optax.cosine_decay_schedule(BASE_LR, decay_steps=4 * SPE, alpha=0.004 / BASE_LR),
            ],
            boundaries=[2 * SPE],
        ),
    ),
    "onecycle": (
        {"name": "onecycle", "pct_start": 0.25, "div_factor": 25, "final_div_factor": 1e3},
        8,
        optax.cosine_onecycle_schedule(
            8 * SPE, BASE_LR, pct_start=0.25, div_factor=25, final_div_factor=1e3
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(OPTAX_CASES))
def test_learning_rate_matches_optax(case: str) -> None:
    fields, total, schedule = OPTAX_CASES[case]
    np.testing.assert_allclose(
        our_steps(ScheduleConfig(**fields), total, SPE),
        optax_steps(schedule, total, SPE),
        rtol=1e-5,
        atol=1e-8,
    )


# --- config edge, jit, vmap ---------------------------------------------------------------------


def test_schedule_params_fills_unused_slots_and_spans_the_run_without_restarts() -> None:
    params = schedule_params(ScheduleConfig(name="cosine", min_lr=0.01, warmup_epochs=1.5), 10)
    assert all(value.dtype == jnp.float32 and value.shape == () for value in params)
    assert float(params.restart_epochs) == 8.5
    assert float(params.min_lr) == pytest.approx(0.01)
    assert float(params.warmup_epochs) == 1.5
    unused = [params.gamma, params.step_epochs, params.cycle_epochs, params.pct_start]
    assert [float(v) for v in unused] == [0.0, 0.0, 0.0, 0.0]
    assert float(params.div_factor) == float(params.final_div_factor) == 0.0


def test_schedule_params_rejects_warmup_longer_than_the_run() -> None:
    with pytest.raises(ValueError, match="warmup_epochs"):
        schedule_params(ScheduleConfig(warmup_epochs=5), 5)


def test_different_schedule_numbers_share_one_compiled_program() -> None:
    compiled = jax.jit(
        lambda p, b, t: learning_rate("cosine", p, b, t, 10, steps_per_epoch=STEPS_PER_EPOCH)
    )
    first = ScheduleConfig(name="cosine", min_lr=0.01, restart_epochs=3)
    second = ScheduleConfig(name="cosine", min_lr=0.0, warmup_epochs=1)
    for config, b in ((first, 0.1), (second, 0.3)):
        lr = compiled(schedule_params(config, 10), jnp.float32(b), jnp.float32(2.5))
        assert float(lr) == pytest.approx(reference_lr(config, b, 2.5, 10, STEPS_PER_EPOCH))
    assert compiled._cache_size() == 1  # type: ignore[attr-defined]  # private, jit-only API


def test_learning_rate_vmaps_over_stacked_schedule_params() -> None:
    configs = [
        ScheduleConfig(
            name="onecycle", pct_start=p, div_factor=d, final_div_factor=f, warmup_epochs=w
        )
        for p, d, f, w in ((0.3, 25, 1e4, 0), (0.5, 10, 10, 1), (0.2, 5, 100, 2.5))
    ]
    stacked = jax.tree.map(lambda *v: jnp.stack(v), *[schedule_params(c, 6) for c in configs])
    times = jnp.arange(6 * STEPS_PER_EPOCH + 1) / STEPS_PER_EPOCH
    batched = jax.jit(
        jax.vmap(
            lambda p: learning_rate(
                "onecycle", p, jnp.float32(BASE_LR), times, 6, steps_per_epoch=STEPS_PER_EPOCH
            )
        )
    )(stacked)
    assert isinstance(stacked, ScheduleParams) and batched.shape == (3, times.size)
    for row, config in zip(batched, configs, strict=True):
        np.testing.assert_allclose(row, lr_at(config, times, 6), rtol=1e-6)


# --- reduce-on-plateau --------------------------------------------------------------------------


def reference_plateau(
    losses: list[float], plateau: PlateauConfig
) -> list[tuple[float, int, float]]:
    """ReduceLROnPlateau(mode='min', threshold_mode='rel', cooldown=0), as a scale of 1."""
    assert plateau.factor is not None
    best, wait, scale, states = math.inf, 0, 1.0, []
    for loss in losses:
        if loss < best * (1 - plateau.threshold):
            best, wait = loss, 0
        else:
            wait += 1
            if wait > plateau.patience:
                scale, wait = max(scale * plateau.factor, plateau.min_scale), 0
        states.append((best, wait, scale))
    return states


def run_plateau(
    losses: list[float], plateau: PlateauConfig, *, enabled: bool
) -> list[PlateauState]:
    update = jax.jit(functools.partial(plateau_update, enabled=enabled))
    state, states = plateau_init(), []
    for loss in losses:
        state = update(
            state,
            jnp.float32(loss),
            factor=jnp.float32(plateau.factor or 0.0),
            patience=jnp.int32(plateau.patience),
            threshold=jnp.float32(plateau.threshold),
            min_scale=jnp.float32(plateau.min_scale),
        )
        states.append(state)
    return states


PLATEAU_CASES: dict[str, tuple[list[float], PlateauConfig, list[float]]] = {
    # Reduction exactly after patience + 1 = 3 epochs without improvement, then again.
    "patience": (
        [1.0, 0.9, 0.95, 0.9, 0.91, 0.92, 0.93, 0.94, 0.8, 0.85],
        PlateauConfig(factor=0.5, patience=2),
        [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25],
    ),
    # patience = 0: every non-improving epoch reduces, never below min_scale.
    "min_scale": (
        [1.0, 1.0, 1.0, 1.0, 1.0],
        PlateauConfig(factor=0.5, patience=0, min_scale=0.3),
        [1, 0.5, 0.3, 0.3, 0.3],
    ),
    # A 5% relative threshold: 1.0 → 0.96 is no improvement, 1.0 → 0.94 is.
    "threshold": (
        [1.0, 0.96, 0.97, 0.94, 0.93, 0.92],
        PlateauConfig(factor=0.1, patience=1, threshold=0.05),
        [1, 1, 0.1, 0.1, 0.1, 0.01],
    ),
}


@pytest.mark.parametrize("case", sorted(PLATEAU_CASES))
def test_plateau_update_matches_reference(case: str) -> None:
    losses, plateau, expected_scales = PLATEAU_CASES[case]
    states = run_plateau(losses, plateau, enabled=True)
    reference = reference_plateau(losses, plateau)
    np.testing.assert_allclose([float(s.scale) for s in states], expected_scales, rtol=1e-6)
    np.testing.assert_allclose([float(s.scale) for s in states], [r[2] for r in reference])
    np.testing.assert_allclose([float(s.best) for s in states], [r[0] for r in reference])
    assert [int(s.wait) for s in states] == [r[1] for r in reference]


def test_plateau_update_disabled_returns_the_state_unchanged() -> None:
    losses = [1.0, 2.0, 3.0, 4.0]
    states = run_plateau(losses, PlateauConfig(factor=0.5, patience=0), enabled=False)
    initial = plateau_init()
    for state in states:
        assert [float(v) for v in state] == [float(v) for v in initial]
