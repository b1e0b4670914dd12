"""Users' own code named from an experiment file: references, imports and code identity.

A *reference* names a Python object without editing sweepbook:

- ``"package.module:Name"``: anything importable (an installed package, a module on
  ``PYTHONPATH``);
- ``"some_file.py:Name"``: a file, relative to the experiment file's folder (absolute paths and
  ``~`` work too), so ``experiments/user_code/my_model.py:Net`` works from a clone with no
  install. The file is imported under a private module name with its own folder first on
  ``sys.path`` while it runs, so it may import its neighbours.

Imports use :mod:`importlib` only. Every problem (a file that is missing or does not import, a
name it does not define) is a :class:`UserCodeError` whose message is one line, the user's own
error message included, shortened.

Each resolved reference has a :class:`CodeIdentity`: the file it came from and the sha256 of
that file's bytes. Runs store the identities of the code they used, so that results of two
versions of a user's code are never mixed in one table (see ``api.check_user_code``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from sweepbook.registry import registry_at

# target ":" name, where the name may be dotted (a class attribute).
_REFERENCE = re.compile(r"^(?P<target>[^:\s][^:]*):(?P<name>[A-Za-z_][\w.]*)$")
_MODULE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
# Longest user error message kept in a one-line error (the rest is cut with "...").
MESSAGE_LIMIT = 240


class UserCodeError(ValueError):
    """A reference that cannot be resolved or used; the message is one line, ``key`` the
    config key that named it (set by :func:`register_references`)."""

    key: str | None = None


@dataclass(frozen=True)
class CodeIdentity:
    """Where a reference's object was defined: its file and the sha256 of the file's bytes."""

    reference: str
    file: str
    sha256: str


def one_line(error: BaseException, limit: int = MESSAGE_LIMIT) -> str:
    """``Type: message`` on one line, cut to ``limit`` characters."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def is_reference(value: object) -> bool:
    """Whether ``value`` is written as a code reference (``module:Name`` or ``file.py:Name``),
    as opposed to the name of a registered component."""
    if not isinstance(value, str):
        return False
    match = _REFERENCE.match(value)
    if match is None:
        return False
    target = match["target"]
    return target.endswith(".py") or _MODULE.match(target) is not None


def _split(reference: str) -> tuple[str, str]:
    match = _REFERENCE.match(reference)
    if match is None or not is_reference(reference):
        raise UserCodeError(
            f"{reference!r} is not a code reference: expected 'package.module:Name' or "
            "'file.py:Name'"
        )
    return match["target"], match["name"]


def file_of(reference: str, base: Path | None) -> Path | None:
    """The file a ``file.py:Name`` reference names, resolved against ``base`` (the experiment
    file's folder); None for a module reference."""
    target, _ = _split(reference)
    if not target.endswith(".py"):
        return None
    path = Path(target).expanduser()
    return (path if path.is_absolute() else (base or Path.cwd()) / path).resolve()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _import_file(path: Path) -> ModuleType:
    """Import the file ``path`` as a module of its own, once per file content: the name holds
    the content's hash, so an edited file imports afresh instead of reusing a stale module."""
    if not path.is_file():
        raise UserCodeError(f"file not found: {path}")
    digest = sha256_of(path)
    stem = re.sub(r"\W", "_", path.stem)
    name = f"sweepbook_user_{stem}_{digest[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    folder = str(path.parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise UserCodeError(f"{path} does not import: {one_line(error)}") from None
    finally:
        sys.path.remove(folder)
    return module


def _import_module(target: str) -> ModuleType:
    try:
        return importlib.import_module(target)
    except Exception as error:
        raise UserCodeError(f"module '{target}' does not import: {one_line(error)}") from None


def resolve(reference: str, base: Path | None) -> tuple[Any, CodeIdentity]:
    """The object ``reference`` names and its :class:`CodeIdentity`; ``base`` is the folder
    a relative file is found in (the experiment file's)."""
    target, name = _split(reference)
    path = file_of(reference, base)
    module = _import_file(path) if path is not None else _import_module(target)
    found: Any = module
    for part in name.split("."):
        if not hasattr(found, part):
            where = path if path is not None else f"module '{target}'"
            raise UserCodeError(f"{where} defines no '{name}'")
        found = getattr(found, part)
    file = getattr(module, "__file__", None)
    source = Path(file) if file else None
    if source is None or not source.is_file():
        return found, CodeIdentity(reference, f"module {target}", "")
    return found, CodeIdentity(reference, str(source.resolve()), sha256_of(source))


# --- registering users' components ------------------------------------------------------------

# Config keys whose value names a component: where that kind is registered, and the function
# that turns the user's object into the registry's entry (each checks what it is given).
COMPONENTS = {
    "model.kind": ("sweepbook.models:MODELS", "sweepbook.models:user_model_spec"),
    "data.name": ("sweepbook.data:DATASETS", "sweepbook.data:user_dataset_spec"),
    "loss.name": ("sweepbook.losses:LOSSES", "sweepbook.losses:user_loss"),
    "metrics": ("sweepbook.tasks:HOST_METRICS", "sweepbook.tasks:user_metric"),
}
# What is registered under each reference in this process (a reference is registered under its
# own text, so that the config, the run id and the registry all name it the same way).
_REGISTERED: dict[str, CodeIdentity] = {}


def _attribute(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def register(key: str, reference: str, base: Path | None) -> CodeIdentity:
    """Import ``reference`` (a value of config ``key``) and register it under its own text.

    Registering again is free when the same file content is registered already; an edited
    file (or the same text resolved from another folder) replaces the entry, so one process can
    run several experiments that each name a ``model.py:Net`` of their own, one at a time."""
    registry_reference, adapter_reference = COMPONENTS[key]
    found, identity = resolve(reference, base)
    registry = registry_at(registry_reference)
    if _REGISTERED.get(reference) == identity and reference in registry:
        return identity
    adapt = _attribute(adapter_reference)
    try:
        # A loader's errors name it as the experiment does.
        entry = adapt(found, reference) if key == "data.name" else adapt(found)
    except (TypeError, ValueError) as error:
        raise UserCodeError(f"{reference}: {' '.join(str(error).split())}") from None
    replaced = reference in _REGISTERED
    registry.unregister(reference)
    registry.register(reference, entry)
    _REGISTERED[reference] = identity
    if replaced and key == "data.name":
        # Loaded data is cached by the reference's text: an edited loader must run again.
        importlib.import_module("sweepbook.data").forget_loaded()
    return identity


def code_fingerprint(flat: Mapping[str, Any]) -> str:
    """A short hash of the users' code a run names ("" for none): part of its compiled
    program's key, so that a program compiled from an earlier version of a user's model is
    never reused for an edited one in the same process."""
    found = identities(flat)
    if not found:
        return ""
    text = ",".join(f"{ref}={found[ref].sha256}" for ref in sorted(found))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def register_references(flat: Mapping[str, Any], base: Path | None) -> None:
    """Register every code reference among the component keys of ``flat`` (dotted keys);
    other values are left to validation (registered names, or typos it reports)."""
    for key, value in flat.items():
        if key not in COMPONENTS:
            continue
        for reference in value if isinstance(value, list) else [value]:
            if not is_reference(reference):
                continue
            try:
                register(key, reference, base)
            except UserCodeError as error:
                error.key = key
                raise


def references_of(flat: Mapping[str, Any]) -> list[str]:
    """The code references among the component keys of a flat config, in key order."""
    found: list[str] = []
    for key in COMPONENTS:
        value = flat.get(key)
        for reference in value if isinstance(value, list) else [value]:
            if isinstance(reference, str) and is_reference(reference) and reference not in found:
                found.append(reference)
    return found


def identities(flat: Mapping[str, Any]) -> dict[str, CodeIdentity]:
    """The identity of each user code reference a run's flat config names, as registered in
    this process (:func:`register` must have seen them: loading the config does)."""
    return {reference: _REGISTERED[reference] for reference in references_of(flat)}


def register_run_references(flat: Mapping[str, Any], base: Path | None) -> None:
    """Register the references of a run's config in a process that did not load its files (a
    launched task, ``verify``): from the experiment's folder ``base``."""
    for key in COMPONENTS:
        register_references({key: flat.get(key)}, base)
