"""Registries: one typed name -> builder mapping per kind of component.

Every component sweepbook can name in a config (model, dataset, optimizer, schedule, loss,
metric, figure kind) is looked up in a :class:`Registry`. Built-ins register themselves with
the same call a user's code makes::

    from sweepbook.models import MODELS

    @MODELS.register("my_net")
    def build_my_net(config, num_classes, numerics): ...

Config validation asks the registry whether a name exists (:meth:`Registry.check`), so the
allowed names are never repeated as a hand-kept list, and a typo gets a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that is not registered. The message is one line: what was asked, what exists."""


class Registry(Generic[T]):
    """An ordered, typed mapping from a component's name to its builder (or spec)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "model", "dataset", ...: used in error messages
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Register ``entry`` under ``name``; without ``entry``, a decorator that does.

        Registering a name twice is an error (two components would silently shadow each other);
        :meth:`unregister` first to replace one on purpose.
        """

        def add(value: T) -> T:
            if not name or not isinstance(name, str):
                raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = value
            return value

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            load_plugins()  # an installed package may register it
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(self.unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order (built-ins first)."""
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def unknown(self, name: object) -> str:
        """The one-line message for a name that is not registered, with a hint when close.
        Users' code references registered in this process (``file.py:Name``) are not names
        to suggest: only the names a file can give without a path are listed."""
        names = [n for n in self._entries if ":" not in n]
        known = ", ".join(f"'{n}'" for n in names)
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown {self.kind} {name!r}: expected one of {known}{hint}"

    def check(self, name: str) -> str:
        """``name`` if registered (by sweepbook, a plugin or a user's code reference);
        otherwise :class:`UnknownName`. For pydantic validators."""
        if name not in self._entries:
            load_plugins()
        if name not in self._entries:
            raise UnknownName(self.unknown(name))
        return name


# Installed packages register components through this entry-point group: each entry point
# names a module (importing it registers) or a callable without arguments (called once).
PLUGIN_GROUP = "sweepbook.plugins"


class PluginError(ValueError):
    """An installed plugin that does not load; the message names it in one line."""


@functools.cache
def load_plugins() -> tuple[str, ...]:
    """Load every ``sweepbook.plugins`` entry point once per process, on the first name a
    registry does not know (so a sweep of built-ins never imports a plugin, and a report, which
    looks nothing up by a user's name, never does). Returns the entry points' names."""
    from importlib.metadata import entry_points

    loaded = []
    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            target = entry.load()
            if callable(target) and not isinstance(target, ModuleType):
                target()
        except Exception as error:
            detail = " ".join(f"{type(error).__name__}: {error}".split())
            raise PluginError(f"plugin '{entry.name}' ({entry.value}) failed: {detail}") from None
        loaded.append(entry.name)
    return tuple(loaded)


@functools.cache
def registry_at(reference: str) -> Registry[Any]:
    """The registry ``"package.module:NAME"``, its module imported (which registers the
    built-ins it holds).

    For config validation: the modules that build components import :mod:`sweepbook.config`
    for their config classes, so config names their registries by reference instead of
    importing them (no import cycle), and importing config alone stays free of JAX.
    """
    module_name, _, attribute = reference.partition(":")
    found = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(found, Registry):
        raise TypeError(f"{reference!r} is not a Registry")
    return found
