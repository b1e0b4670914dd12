"""``train_run`` reproduces, bit for bit, what it computed before training was split into pieces.

``fixtures/train_bits_v1.json`` holds a SHA-256 per output array (dtype, shape and bytes) of
varied runs, written by the single-function ``train_run`` of commit 63013a3 on CPU (the
evaluations' ``probabilities``, since renamed ``predictions``, keep their hashes). Any change
of an op or of its order inside training shows here as a changed hash, long before a stored
sweep would fail ``verify``.

A CPU run's bits are those of its kind of CPU: XLA vectorizes for the machine's widest vector
instructions, which fixes the summation order of vectorized loops. So the reference is kept per
kind of CPU it was recorded on, each by the same commit 63013a3: ``train_bits_v1.json`` on the
machine of 2026-12-02, ``train_bits_v1_avx2.json`` on an AMD EPYC with AVX2 and no AVX-512 (79
of their 140 hashes agree: counts, flags and integer outputs). Every case must match one of
them whole; a change of the training code changes the hashes on every kind of CPU.

Only the outputs the fixture holds are compared: an output added since (the kept
``variables`` that ``--save-params`` saves) is new, not changed; every existing output's hash
must still match, and each case must still produce every key of the fixture.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY_EXPERIMENT
from sweepbook.config import RunConfig, flatten, unflatten
from sweepbook.data import load_split
from sweepbook.models import LEGACY_NUMERICS, PATCHES_NUMERICS
from sweepbook.train import data_arrays, hyper_from_config, static_spec, train_run

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCES = (FIXTURES / "train_bits_v1.json", FIXTURES / "train_bits_v1_avx2.json")
SEED = 3

# name: (overrides of the tiny experiment, numerics); each switches on a different part.
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "mlp_dropout_bn_es": (
        {
            "model.dropout": 0.2,
            "model.batch_norm": True,
            "train.epochs": 6,
            "train.early_stopping.patience": 1,
            "optimizer.learning_rate": 0.05,
            "train.batch_size": 100,
        },
        None,
    ),
    "lenet_gradual_qat_legacy": (
        {
            "model.kind": "lenet5",
            "model.widths": [],
            "compress.prune.method": "gradual",
            "compress.prune.start_epoch": 0,
            "compress.prune.end_epoch": 2,
            "compress.prune.sparsity": 0.6,
            "compress.quantize.mode": "qat",
            "compress.quantize.bits": 4,
            "train.epochs": 3,
            "train.batch_size": 64,
            "model.dropout": 0.1,
        },
        LEGACY_NUMERICS.name,
    ),
    "cnn_gradual_qat_fast": (
        {
            "model.kind": "cnn",
            "model.widths": [],
            "compress.prune.method": "gradual",
            "compress.prune.start_epoch": 0,
            "compress.prune.end_epoch": 2,
            "compress.prune.sparsity": 0.5,
            "compress.quantize.mode": "qat",
            "compress.quantize.bits": 6,
            "train.epochs": 3,
            "train.batch_size": 64,
            "augment.max_shift": 1,
        },
        PATCHES_NUMERICS.name,  # the CPU's formulation when the reference was recorded
    ),
    "sgd_plateau_maxnorm_ptq": (
        {
            "optimizer.name": "sgd",
            "optimizer.momentum": 0.9,
            "optimizer.learning_rate": 0.3,
            "schedule.plateau.factor": 0.5,
            "schedule.plateau.patience": 0,
            "regularization.max_norm": 2.0,
            "regularization.l2": 1e-3,
            "train.early_stopping.patience": 0,
            "train.epochs": 4,
            "compress.quantize.mode": "ptq",
            "compress.quantize.bits": 8,
            "compress.prune.method": "oneshot",
            "compress.prune.sparsity": 0.5,
        },
        None,
    ),
    "focal_shift_cosine": (
        {
            "loss.name": "focal",
            "loss.focal_gamma": 2.0,
            "loss.label_smoothing": 0.1,
            "augment.max_shift": 1,
            "schedule.name": "cosine",
            "schedule.min_lr": 0.0,
            "schedule.warmup_epochs": 1.0,
            "train.epochs": 3,
            "train.early_stopping.restore_best": False,
            "regularization.clip_norm": 1.0,
        },
        None,
    ),
    "diverge": (
        {
            "optimizer.name": "sgd",
            "optimizer.learning_rate": 1e37,
            "model.activation": "tanh",
            "train.early_stopping.patience": 0,
        },
        None,
    ),
}
SLOW_CASES = {"lenet_gradual_qat_legacy", "cnn_gradual_qat_fast", "focal_shift_cosine", "diverge"}


def config(overrides: dict[str, Any], seed: int) -> RunConfig:
    flat = flatten(tomllib.loads(TINY_EXPERIMENT))
    flat.update({"seed": seed, **overrides})
    return RunConfig.model_validate(unflatten(flat))


def digest(leaf: Any) -> str:
    array = np.asarray(leaf)
    header = f"{array.dtype.str}{array.shape}".encode()
    return hashlib.sha256(header + array.tobytes()).hexdigest()


def digests(out: Any, prefix: str) -> dict[str, str]:
    leaves = jax.tree_util.tree_flatten_with_path(out)[0]
    return {prefix + jax.tree_util.keystr(path): digest(leaf) for path, leaf in leaves}


def one_run(name: str) -> dict[str, str]:
    overrides, numerics = CASES[name]
    run = config(overrides, SEED)
    split = load_split(run.data)
    trainer = functools.partial(train_run, static_spec(run), split.num_classes, numerics=numerics)
    return digests(jax.jit(trainer)(hyper_from_config(run), data_arrays(split)), name)


def chunk_of_three() -> dict[str, str]:
    """Three seeds stacked and vmapped, as the engine trains them."""
    runs = [config(CASES["mlp_dropout_bn_es"][0], seed) for seed in (0, 1, 2)]
    split = load_split(runs[0].data)
    hyper = jax.tree.map(lambda *leaves: jnp.stack(leaves), *map(hyper_from_config, runs))
    trainer = functools.partial(train_run, static_spec(runs[0]), split.num_classes)
    vmapped = jax.jit(jax.vmap(trainer, in_axes=(0, None)))
    return digests(vmapped(hyper, data_arrays(split)), "vmap")


def expected(prefix: str) -> list[dict[str, str]]:
    """The case's hashes as recorded on each kind of CPU."""
    references = [json.loads(path.read_text()) for path in REFERENCES]
    return [
        {key: value for key, value in reference.items() if key.startswith(prefix + ".")}
        for reference in references
    ]


def assert_matches_a_reference(computed: dict[str, str], prefix: str) -> None:
    """Every output the references record matches, all from one reference (a missing output
    stays missing and fails); on failure, the outputs that differ from the closest one."""
    references = expected(prefix)
    assert len({tuple(sorted(reference)) for reference in references}) == 1  # same outputs
    found = {key: computed[key] for key in references[0] if key in computed}
    if found in references:
        return
    closest = max(references, key=lambda ref: sum(found.get(k) == v for k, v in ref.items()))
    differing = sorted(key for key, value in closest.items() if found.get(key) != value)
    raise AssertionError(f"{len(differing)} outputs differ from every reference: {differing}")


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_CASES else name for name in CASES],
)
def test_run_is_bit_identical_to_the_reference(name):
    assert_matches_a_reference(one_run(name), name)


@pytest.mark.slow
def test_vmapped_chunk_is_bit_identical_to_the_reference():
    assert_matches_a_reference(chunk_of_three(), "vmap")
