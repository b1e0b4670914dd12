"""Trained parameters on disk: one Orbax checkpoint per run under ``<store>/params/<run_id>/``.

A checkpoint holds exactly the Flax variables a run's final evaluation evaluated (``params``
and ``batch_stats``: the restored-best weights with restore-best, before deployment
quantization) and ``sweepbook.json``: what rebuilding the model needs besides the run's stored
config (its output count and layer formulation) and the sha256 of every file Orbax wrote.

Layout of a checkpoint directory::

    params/<run_id>/sweepbook.json   run id, num_outputs, numerics, {file: sha256}
    params/<run_id>/variables/...    Orbax StandardCheckpointer: JSON metadata, arrays in
                                     TensorStore's OCDBT/zarr format (no pickles)

Orbax's standard handler writes arrays through TensorStore and its metadata as JSON: loading a
checkpoint never unpickles anything. Orbax does not check its data files against a digest, so
a flipped byte could load silently; the manifest's digests catch it, naming the file.

Writes are atomic: a checkpoint is written into a temporary directory beside its final place
(named like the store's temporary files, ``.<run_id>.<pid>@<host>.<letters>.tmp``) and renamed
into place, so a reader sees a whole checkpoint or none. ``--save-params best`` writes into
``params/.pending/`` first; once the sweep knows its best configuration, :func:`keep_best`
moves those runs' checkpoints up and deletes the rest of ``.pending``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweepbook.store import StoreError, _is_debris, _writer_tag

PARAMS_DIR = "params"
PENDING_DIR = ".pending"  # under PARAMS_DIR: the runs of a --save-params best sweep, until pruned
MANIFEST = "sweepbook.json"
VARIABLES = "variables"  # the Orbax checkpoint, inside a run's directory
SAVE_PARAMS = ("best", "all", "none")
# The runs of the best configuration only: the model a reader of the report wants, while the
# store stays small (a sweep of hundreds of runs keeps a handful of checkpoints).
DEFAULT_SAVE_PARAMS = "best"


@dataclass(frozen=True)
class CheckpointInfo:
    """What ``sweepbook.json`` records beside a run's variables."""

    run_id: str
    num_outputs: int  # classes, or a regression's outputs: the model's last layer
    numerics: str  # the layer formulation it was trained in (models.choose_numerics)


def params_root(store: Path) -> Path:
    return Path(store) / PARAMS_DIR


def checkpoint_dir(store: Path, run_id: str, *, pending: bool = False) -> Path:
    """Where the checkpoint of ``run_id`` lives (``pending``: awaiting the best's choice)."""
    root = params_root(store)
    return (root / PENDING_DIR if pending else root) / run_id


def _file_digests(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def _orbax_save(path: Path, variables: Any) -> None:
    import orbax.checkpoint as ocp  # 2 s to import: only when parameters are saved or loaded

    arrays = {name: dict(collection) for name, collection in variables.items()}
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path.absolute(), arrays)  # Orbax refuses a relative path
        checkpointer.wait_until_finished()


def save_checkpoint(target: Path, variables: Any, info: CheckpointInfo) -> None:
    """Write ``variables`` (host arrays) and ``info`` to the directory ``target``, atomically:
    into a temporary directory beside it, then renamed. An older checkpoint at ``target`` (a
    run trained again) is replaced; a failure leaves the old one, or none, never part of one."""
    save_arrays(target, jax_free(variables), dict(info.__dict__))


def save_arrays(target: Path, arrays: Mapping[str, Any], manifest: Mapping[str, Any]) -> None:
    """Nested dicts of host ``arrays`` as an Orbax checkpoint in ``target/variables`` beside
    ``manifest`` (with every file's sha256 added), written atomically as :func:`save_checkpoint`
    says."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(
            prefix=f".{target.name}.{_writer_tag()}.", suffix=".tmp", dir=target.parent
        )
    )
    try:
        _orbax_save(tmp / VARIABLES, arrays)
        written = {**manifest, "files": _file_digests(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; stores are meant to be shared
        if target.exists():  # a directory cannot be renamed over a non-empty one
            old = target.with_name(f".{target.name}.{_writer_tag()}.old.tmp")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_tree(target: Path, tree: Any, manifest: Mapping[str, Any]) -> None:
    """Any pytree of arrays (a training state: optimizer states are tuples, not dicts) saved as
    its flat list of leaves; :func:`read_tree` rebuilds it from the structure of a like tree."""
    leaves = jax_tree_leaves(tree)
    arrays = {"leaves": {f"{index:05d}": np.asarray(leaf) for index, leaf in enumerate(leaves)}}
    save_arrays(target, arrays, {**manifest, "leaves": len(leaves)})


def read_tree(directory: Path, like: Any) -> tuple[dict[str, Any], Any]:
    """The manifest and the tree saved by :func:`save_tree` in ``directory``, with the
    structure of ``like`` (a tree, or shapes from ``jax.eval_shape``). A damaged file, or a
    checkpoint of another structure, is a :class:`StoreError` naming it."""
    import jax

    manifest, arrays = _verified_restore(directory)
    treedef = jax.tree.structure(like)
    count = len(jax.tree.leaves(like))
    leaves = arrays.get("leaves", {})
    if manifest.get("leaves") != count or len(leaves) != count:
        raise StoreError(
            f"{directory / MANIFEST}: holds {manifest.get('leaves')} arrays where this run's "
            f"training state has {count}; remove the directory to retrain the run"
        )
    ordered = [np.asarray(leaves[name]) for name in sorted(leaves)]
    return manifest, jax.tree.unflatten(treedef, ordered)


def jax_tree_leaves(tree: Any) -> list[Any]:
    import jax  # only where a training state is saved: reading parameters needs no JAX

    return list(jax.tree.leaves(tree))


def jax_free(variables: Any) -> Any:
    """Nested dicts of NumPy arrays (what Orbax saves without a sharding to restore)."""
    if isinstance(variables, Mapping):
        return {str(key): jax_free(value) for key, value in variables.items()}
    return np.asarray(variables)


def read_checkpoint(directory: Path) -> tuple[CheckpointInfo, dict[str, Any]]:
    """The info and variables of the checkpoint in ``directory``. Every file is checked against
    the manifest's sha256 first; a damaged or missing file is a :class:`StoreError` naming it."""
    manifest, variables = _verified_restore(directory)
    try:
        info = CheckpointInfo(
            str(manifest["run_id"]), int(manifest["num_outputs"]), str(manifest["numerics"])
        )
    except (ValueError, KeyError, TypeError) as error:
        raise StoreError(
            f"{directory / MANIFEST}: cannot read ({type(error).__name__}: {error})"
        ) from None
    return info, variables


def _verified_restore(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and arrays of the checkpoint in ``directory``, every file checked against
    the manifest's sha256 before Orbax reads it."""
    manifest_path = directory / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files: dict[str, str] = dict(manifest["files"])
    except FileNotFoundError:
        raise StoreError(f"{manifest_path}: missing; no saved parameters here") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StoreError(
            f"{manifest_path}: cannot read ({type(error).__name__}: {error})"
        ) from None
    for name, digest in files.items():
        path = directory / name
        try:
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            raise StoreError(
                f"{path}: missing from the saved parameters; retrain the run"
            ) from None
        if actual != digest:
            raise StoreError(
                f"{path}: damaged (its sha256 differs from {MANIFEST}'s); retrain the run"
            )
    return manifest, _orbax_restore(directory / VARIABLES)


def _orbax_restore(path: Path) -> dict[str, Any]:
    import orbax.checkpoint as ocp

    try:
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(path.absolute())
    except Exception as error:  # Orbax and TensorStore raise many types for a bad checkpoint
        detail = " ".join(f"{type(error).__name__}: {error}".split())[:240]
        raise StoreError(f"{path}: cannot restore the saved parameters ({detail})") from None
    return dict(restored)


def saved_run_ids(store: Path) -> set[str]:
    """Runs whose checkpoint is in place (not pending, not a temporary directory)."""
    root = params_root(store)
    if not root.is_dir():
        return set()
    return {path.name for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")}


def keep_best(store: Path, best: Iterable[str]) -> list[str]:
    """Move the pending checkpoints of the ``best`` runs into place and delete every other
    pending one; returns the run ids moved. Checkpoints already in place (``--save-params all``,
    or an earlier best) are never deleted."""
    pending = params_root(store) / PENDING_DIR
    if not pending.is_dir():
        return []
    moved = []
    for run_id in sorted(set(best)):
        source = pending / run_id
        if source.is_dir():
            target = checkpoint_dir(store, run_id)
            if target.exists():
                shutil.rmtree(target)
            os.replace(source, target)
            moved.append(run_id)
    shutil.rmtree(pending)
    return moved


def remove_debris(store: Path) -> list[Path]:
    """Delete the temporary directories that killed writers left under ``params/``."""
    removed = []
    for folder in (params_root(store), params_root(store) / PENDING_DIR):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.name.endswith(".tmp") and _is_debris(path, parts=False):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
    return removed


def check_mode(save_params: str) -> str:
    if save_params not in SAVE_PARAMS:
        raise ValueError(
            f"save_params: expected one of {', '.join(SAVE_PARAMS)}, got {save_params!r}"
        )
    return save_params
