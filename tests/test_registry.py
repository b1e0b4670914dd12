"""The generic registry: registration, lookup, and the one-line error for unknown names."""

from __future__ import annotations

import pytest

from sweepbook.registry import Registry, UnknownName


def test_register_as_decorator_and_call_then_look_up_in_order() -> None:
    things: Registry[int] = Registry("thing")

    @things.register("one")
    def one() -> int:
        return 1

    things.register("two", lambda: 2)  # type: ignore[arg-type]
    assert things.names() == ("one", "two")
    assert "one" in things and "three" not in things
    assert things["one"] is one
    assert len(things) == 2 and list(things) == ["one", "two"]


def test_unknown_name_is_one_line_naming_the_kind_the_choices_and_a_hint() -> None:
    things: Registry[int] = Registry("optimizer")
    for name in ("sgd", "adam", "adamw"):
        things.register(name, 0)
    with pytest.raises(UnknownName) as raised:
        things["adma"]
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("unknown optimizer 'adma'")
    assert "'sgd', 'adam', 'adamw'" in message
    assert "did you mean 'adam'?" in message
    assert things.check("adam") == "adam"
    with pytest.raises(UnknownName):
        things.check("lbfgs")


def test_registering_a_name_twice_is_refused_until_unregistered() -> None:
    things: Registry[int] = Registry("model")
    things.register("mlp", 1)
    with pytest.raises(ValueError, match="model 'mlp' is already registered"):
        things.register("mlp", 2)
    things.unregister("mlp")
    things.register("mlp", 2)
    assert things["mlp"] == 2
    with pytest.raises(ValueError, match="non-empty string"):
        things.register("", 3)
