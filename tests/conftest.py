"""Shared fixtures: a tiny project (experiment + sweep files) that trains in seconds on CPU."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Imported first for a side effect: submitit reconfigures logging on import, closing every
# handler opened before it, among them absl's (opened when optax is first imported), which
# holds whatever stderr pytest was capturing then; imported inside a later test (sweepbook run
# imports it), it would close that stream under pytest's feet.
import submitit  # noqa: F401

from sweepbook import engine
from sweepbook.config import RunConfig, flatten, unflatten

TINY_EXPERIMENT = """\
description = "tiny MLP on digits for tests"

[data]
name = "digits"
val_fraction = 0.2
test_fraction = 0.2
split_seed = 0

[model]
kind = "mlp"
widths = [32]
activation = "relu"

[optimizer]
name = "adam"
learning_rate = 1e-2
b1 = 0.9
b2 = 0.999
eps = 1e-8

[train]
epochs = 4
batch_size = 128

[train.early_stopping]
patience = 2
restore_best = true
"""

TINY_SWEEP = """\
# Does a larger learning rate help a tiny MLP in 4 epochs?
# Run: sweepbook run sweeps/tiny.toml
experiment = "tiny"
seeds = [0, 1]

[grid]
"optimizer.learning_rate" = [3e-3, 3e-2]

[report]
title = "Tiny <script>alert(1)</script> sweep"
compare = ["optimizer.learning_rate"]
"""


def write_project(root: Path, sweeps: dict[str, str] | None = None) -> Path:
    """``root`` laid out as a project: experiments/tiny.toml and sweeps/<name>.toml for each of
    ``sweeps`` (default: the tiny sweep)."""
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    (root / "sweeps").mkdir(exist_ok=True)
    (root / "experiments" / "tiny.toml").write_text(TINY_EXPERIMENT)
    for name, text in (sweeps or {"tiny": TINY_SWEEP}).items():
        (root / "sweeps" / f"{name}.toml").write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with experiments/tiny.toml and sweeps/tiny.toml."""
    return write_project(tmp_path)


@pytest.fixture
def make_run_config() -> Callable[..., RunConfig]:
    """Factory: a RunConfig of the tiny experiment with dotted-key ``overrides``."""

    def make(overrides: dict[str, Any] | None = None, seed: int = 0) -> RunConfig:
        flat = flatten(tomllib.loads(TINY_EXPERIMENT))
        flat.update({"seed": seed, **(overrides or {})})
        return RunConfig.model_validate(unflatten(flat))

    return make


@pytest.fixture(scope="session", autouse=True)
def session_compile_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """In-process compilations go to the session's own persistent cache from the first test on.
    JAX fixes its cache at the process's first compilation: without this, whether a test reuses
    programs compiled earlier would depend on which test compiled first (the one that happened
    to call ``sweepbook run``), and a test that forgets the engine's programs to count its own
    compilations would compile them again from scratch (seconds each) instead of loading them.
    The counts stay the engine's: a program loaded from the cache is still one compilation."""
    engine.enable_compile_cache(tmp_path_factory.getbasetemp() / "xla-cache")


@pytest.fixture(autouse=True)
def private_compile_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Tests never write to the user's persistent compilation cache; subprocesses share the
    session's (the directory :func:`session_compile_cache` gives this process)."""
    cache = tmp_path_factory.getbasetemp() / "xla-cache"
    monkeypatch.setenv("SWEEPBOOK_COMPILE_CACHE", str(cache))


@pytest.fixture(autouse=True)
def registries_as_they_were() -> Iterator[None]:
    """What a test registers (a user's code reference, a test plugin) is gone afterwards, so
    that no test sees another's components (a reference's text may name another file)."""
    from sweepbook import data, losses, metrics, models, tasks

    registries = [models.MODELS, data.DATASETS, losses.LOSSES, metrics.METRICS, tasks.HOST_METRICS]
    saved = [dict(registry._entries) for registry in registries]
    yield
    for registry, entries in zip(registries, saved, strict=True):
        registry._entries.clear()
        registry._entries.update(entries)
