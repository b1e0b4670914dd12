"""Properties of the config parser, over generated files: valid experiments round-trip,
any mutation of a sweep fails only as a one-line ConfigError, flatten and unflatten are
inverse, run ids depend on the config alone."""

from __future__ import annotations

import json
import math
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY_EXPERIMENT
from sweepbook.cli import EXIT_BAD_INPUT, main
from sweepbook.config import (
    ConfigError,
    DuplicateKeyError,
    RunConfig,
    flatten,
    load_experiment,
    load_sweep,
    unflatten,
)
from sweepbook.plan import expand, run_id

# Derandomized: CI sees the same examples every time (explore with --hypothesis-seed=N).
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
BASE = tomllib.loads(TINY_EXPERIMENT)
KNOWN_KEYS = sorted(flatten(BASE))


# --- writing TOML (the standard library only reads it) -------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("-inf" if value < 0 else "inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    items = ", ".join(
        f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items()
    )
    return "{ " + items + " }"


def toml_document(tree: dict[str, Any]) -> str:
    """Every table inline: TOML allows it, and it keeps the writer short."""
    return "".join(
        f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}\n" for k, v in tree.items()
    )


# --- strategies --------------------------------------------------------------------------

# Control characters and lone surrogates cannot stand in a TOML string unescaped or at all.
text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
keys = st.sampled_from(KNOWN_KEYS) | text


@st.composite
def valid_experiments(draw: st.DrawFn) -> dict[str, Any]:
    """The tiny experiment with its numbers and choices redrawn inside their valid ranges
    (floats of float32 width: a double that rounds to 0 in float32 is refused, on purpose)."""
    flat = flatten(BASE)
    epochs = draw(st.integers(1, 10_000))
    flat.update(
        {
            "data.val_fraction": draw(st.floats(0.125, 0.375, width=32)),
            "data.test_fraction": draw(st.floats(0.125, 0.375, width=32)),
            "data.split_seed": draw(st.integers(0, 2**31 - 1)),
            "model.widths": draw(st.lists(st.integers(1, 4096), min_size=1, max_size=4)),
            "model.activation": draw(st.sampled_from(["relu", "tanh", "sigmoid", "gelu", "elu"])),
            "model.dropout": draw(st.floats(0.0, 0.75, width=32)),
            "optimizer.learning_rate": draw(st.floats(2.0**-60, 2.0**60, width=32)),
            "optimizer.b1": draw(st.floats(0.0, 0.875, width=32)),
            "train.epochs": epochs,
            "train.batch_size": draw(st.integers(1, 2**31 - 1)),
            "train.early_stopping.patience": draw(st.integers(0, epochs)),
            "train.early_stopping.restore_best": draw(st.booleans()),
            "description": draw(text),
        }
    )
    return unflatten(flat)


def _write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _assert_one_line_naming(error: ConfigError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message
    assert path.name in message


# --- (a) valid experiments round-trip ----------------------------------------------------


@SETTINGS
@given(valid_experiments())
def test_a_valid_experiment_round_trips_through_toml_load_flatten_unflatten(
    tree: dict[str, Any],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = _write(Path(directory), "experiments/x.toml", toml_document(tree))

        loaded = load_experiment(path).model_dump()

    assert unflatten(flatten(loaded)) == loaded
    # Every value the file gave comes back unchanged (the rest are the model's defaults).
    given_values = flatten(tree)
    assert {k: v for k, v in flatten(loaded).items() if k in given_values} == given_values


# --- (b) anything else fails only as a one-line ConfigError ------------------------------


SECTIONS = [None, "set", "grid", "zip", "random", "search", "report", "variant"]


@st.composite
def mutated_sweeps(draw: st.DrawFn) -> dict[str, Any]:
    sweep: dict[str, Any] = {
        "experiment": "x",
        "seeds": [0],
        "grid": {"optimizer.learning_rate": [1e-3, 1e-2]},
    }
    for _ in range(draw(st.integers(1, 4))):
        section, key, value = draw(st.sampled_from(SECTIONS)), draw(keys), draw(values)
        if section is None:
            sweep[draw(st.sampled_from(["experiment", "seeds", "folds", key]))] = value
        elif section == "variant":
            sweep.setdefault("variant", []).append({"name": draw(text | values), key: value})
        else:
            table = sweep.get(section)
            sweep[section] = {**(table if isinstance(table, dict) else {}), key: value}
    return sweep


def _small_plan(sweep_path: Path) -> bool:
    """Huge plans are a user's right (2**31 random samples is slow, not wrong): expand only
    plans this test can afford."""
    raw = tomllib.loads(sweep_path.read_text(encoding="utf-8"))
    random = raw.get("random")
    samples = random.get("samples", 1) if isinstance(random, dict) else 1
    grid = raw.get("grid")
    sizes = [len(v) for v in grid.values() if isinstance(v, list)] if isinstance(grid, dict) else []
    seeds = raw.get("seeds")
    count = math.prod(sizes) * (samples if isinstance(samples, int) else 1)
    return count * (len(seeds) if isinstance(seeds, list) else 1) <= 1_000


def _fits_32_bits(value: Any) -> bool:
    """Whether the number(s) survive the cast into the float32 / int32 arrays training uses."""
    if isinstance(value, list):
        return all(map(_fits_32_bits, value))
    if isinstance(value, float):
        return bool(np.isfinite(np.float32(value))) and (value == 0 or np.float32(value) != 0)
    if isinstance(value, int) and not isinstance(value, bool):
        return bool(np.iinfo(np.int32).min <= value <= np.iinfo(np.int32).max)
    return True


@SETTINGS
@given(mutated_sweeps())
def test_a_mutated_sweep_loads_or_fails_with_a_one_line_config_error(sweep: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        _write(root, "experiments/x.toml", TINY_EXPERIMENT)
        path = _write(root, "sweeps/y.toml", toml_document(sweep))
        try:
            loaded = load_sweep(path)
            if _small_plan(path):
                for run in expand(loaded):
                    assert all(map(_fits_32_bits, run.flat.values())), run.flat
        except ConfigError as error:
            _assert_one_line_naming(error, Path(error.path))
            assert Path(error.path).name in ("y.toml", "x.toml")


NUMERIC_KEYS = [k for k, v in flatten(BASE).items() if type(v) in (int, float)]
# A rule over several keys blames one of them: val_fraction + test_fraction < 1 names the latter.
CROSS_FIELD = [{"data.val_fraction", "data.test_fraction"}]


@SETTINGS
@given(
    st.sampled_from(NUMERIC_KEYS),
    st.floats() | st.integers(min_value=-(2**70), max_value=2**70),
)
def test_any_number_at_a_numeric_key_is_refused_or_fits_32_bits(key: str, number: Any) -> None:
    """Aimed at the schema's numeric edge, which random mutations seldom reach."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        _write(root, "experiments/x.toml", TINY_EXPERIMENT)
        sweep = {"experiment": "x", "seeds": [0], "set": {key: number}}
        path = _write(root, "sweeps/y.toml", toml_document(sweep))
        try:
            runs = expand(load_sweep(path))
        except ConfigError as error:
            _assert_one_line_naming(error, path)
            named = (error.key or "").removeprefix("set.")  # blamed as the sweep spells it
            assert named == key or any({key, named} <= group for group in CROSS_FIELD)
            return
    assert _fits_32_bits(runs[0].flat[key])


@SETTINGS
@given(values.filter(lambda v: isinstance(v, dict)) | st.dictionaries(keys, values, max_size=4))
def test_a_mutated_experiment_loads_or_fails_with_a_one_line_config_error(
    mutation: dict[str, Any],
) -> None:
    flat = flatten(BASE)
    tree = unflatten({**flat, **{k: v for k, v in mutation.items() if k}})
    with tempfile.TemporaryDirectory() as directory:
        path = _write(Path(directory), "experiments/x.toml", toml_document(tree))
        try:
            load_experiment(path)
        except ConfigError as error:
            _assert_one_line_naming(error, path)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project for every example: hypothesis reruns a test body, not its fixtures."""
    root = tmp_path_factory.mktemp("arbitrary")
    _write(root, "experiments/x.toml", TINY_EXPERIMENT)
    return root


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200) | text.map(str.encode))
def test_the_command_answers_any_file_with_exit_2_and_one_line(
    scratch: Path, content: bytes
) -> None:
    sweep = _write(scratch, "sweeps/any.toml", content)
    out = scratch / "out"

    with _captured_stderr() as err:
        code = main(["run", str(sweep), "--out", str(out)])

    assert code == EXIT_BAD_INPUT
    assert len(err.getvalue().strip().splitlines()) == 1
    assert "any.toml" in err.getvalue()
    assert not out.exists()


def _captured_stderr() -> Any:
    """The CLI's console, pointed at a buffer (capsys does not reset between examples)."""
    import contextlib
    import io

    from rich.console import Console

    from sweepbook import cli

    @contextlib.contextmanager
    def swap() -> Any:
        buffer, saved = io.StringIO(), cli.stderr
        cli.stderr = Console(file=buffer, highlight=False, soft_wrap=True)
        try:
            yield buffer
        finally:
            cli.stderr = saved

    return swap()


# --- (c) flatten and unflatten -----------------------------------------------------------

plain_key = st.text(st.characters(blacklist_characters="."), min_size=1, max_size=6)
trees = st.recursive(
    st.dictionaries(plain_key, scalars | st.lists(scalars, max_size=3), min_size=1, max_size=4),
    lambda inner: st.dictionaries(plain_key, inner | scalars, min_size=1, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(trees)
def test_unflatten_inverts_flatten_for_trees_without_dots_in_keys(tree: dict[str, Any]) -> None:
    flat = flatten(tree)

    assert unflatten(flat) == tree
    assert flatten(unflatten(flat)) == flat
    assert all(not isinstance(v, dict) for v in flat.values())


@SETTINGS
@given(st.dictionaries(text, values, max_size=5))
def test_flatten_of_any_tree_gives_dotted_leaves_or_names_the_duplicate(
    tree: dict[str, Any],
) -> None:
    try:
        flat = flatten(tree)
    except DuplicateKeyError as error:
        assert error.key in str(error)
        return
    # Exactly the tree's leaves, each under its dotted path (empty tables hold no leaf).
    assert set(flat) == _paths(tree)


def _paths(tree: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            found |= _paths(value, f"{prefix}{key}.")
        elif not isinstance(value, dict):
            found.add(f"{prefix}{key}")
    return found


# --- (d) run ids -------------------------------------------------------------------------


def _run(overrides: dict[str, Any]) -> RunConfig:
    return RunConfig.model_validate(unflatten({**flatten(BASE), "seed": 0, **overrides}))


@SETTINGS
@given(
    st.floats(1e-6, 1.0),
    st.integers(0, 2**31 - 1),
    st.randoms(use_true_random=False),
)
def test_run_id_depends_on_the_config_not_on_key_order(
    learning_rate: float, seed: int, rng: Any
) -> None:
    flat = {**flatten(BASE), "seed": seed, "optimizer.learning_rate": learning_rate}
    items = list(flat.items())
    rng.shuffle(items)

    shuffled = RunConfig.model_validate(unflatten(dict(items)))

    assert run_id(shuffled) == run_id(
        _run({"seed": seed, "optimizer.learning_rate": learning_rate})
    )


@SETTINGS
@given(
    st.tuples(st.floats(1e-6, 1.0), st.integers(0, 2**31 - 1)),
    st.tuples(st.floats(1e-6, 1.0), st.integers(0, 2**31 - 1)),
)
def test_different_configs_have_different_run_ids(
    a: tuple[float, int], b: tuple[float, int]
) -> None:
    first = _run({"optimizer.learning_rate": a[0], "seed": a[1]})
    second = _run({"optimizer.learning_rate": b[0], "seed": b[1]})

    assert (run_id(first) == run_id(second)) == (a == b)
