"""Users' code named by reference: resolving, identities, registration, plugins."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweepbook import registry
from sweepbook.losses import LOSSES
from sweepbook.models import MODELS
from sweepbook.usercode import (
    UserCodeError,
    file_of,
    identities,
    is_reference,
    register,
    register_references,
    resolve,
    sha256_of,
)

MODEL = """
import flax.linen as nn

class Net(nn.Module):
    width: int = 4
    num_outputs: int = 3

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(self.num_outputs)(nn.relu(nn.Dense(self.width)(x.reshape(x.shape[0], -1))))
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def clean_registries() -> Iterator[None]:
    """Whatever a test registers under a reference is gone afterwards."""
    before = {name: set(reg) for name, reg in (("models", MODELS), ("losses", LOSSES))}
    yield
    for reg, names in ((MODELS, before["models"]), (LOSSES, before["losses"])):
        for name in set(reg) - names:
            reg.unregister(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("user_code/model.py:Net", True),
        ("model.py:Net", True),
        ("/abs/path/model.py:Net.inner", True),
        ("my_package.models:Net", True),
        ("json:dumps", True),
        ("mlp", False),
        ("lenet5", False),
        ("model.py", False),
        ("model.py:", False),
        ("not a module:Net", False),
        ("C:/x.txt:Net", False),
        (3, False),
    ],
)
def test_what_reads_as_a_reference(value: object, expected: bool) -> None:
    assert is_reference(value) is expected


def test_a_file_resolves_against_the_base_folder_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    path = write(project / "code", "model.py", MODEL)
    monkeypatch.chdir(tmp_path)  # a model.py here must not be found
    found, identity = resolve("code/model.py:Net", project)
    assert found.__name__ == "Net"
    assert identity.file == str(path.resolve())
    assert identity.sha256 == sha256_of(path)
    assert file_of("code/model.py:Net", project) == path.resolve()
    assert file_of("json:dumps", project) is None


def test_a_module_reference_imports_the_module(tmp_path: Path) -> None:
    found, identity = resolve("sweepbook.models:MLP", None)
    from sweepbook.models import MLP

    assert found is MLP
    assert identity.file.endswith("models.py") and len(identity.sha256) == 64


def test_a_file_imports_its_neighbours(tmp_path: Path) -> None:
    write(tmp_path, "helpers.py", "WIDTH = 7\n")
    write(tmp_path, "model.py", "from helpers import WIDTH\n")
    found, _ = resolve("model.py:WIDTH", tmp_path)
    assert found == 7
    assert str(tmp_path) not in sys.path  # only while the file runs


@pytest.mark.parametrize(
    ("files", "reference", "message"),
    [
        ({}, "missing.py:Net", "file not found"),
        ({"model.py": "x = 1\n"}, "model.py:Net", "defines no 'Net'"),
        ({"model.py": "raise RuntimeError('broken\\nmodel')\n"}, "model.py:Net", "broken model"),
        ({"model.py": "def f(:\n"}, "model.py:f", "SyntaxError"),
        ({}, "no_such_package_xyz.models:Net", "module 'no_such_package_xyz.models'"),
    ],
)
def test_bad_references_say_what_is_wrong_in_one_line(
    tmp_path: Path, files: dict[str, str], reference: str, message: str
) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(UserCodeError) as error:
        resolve(reference, tmp_path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_registering_a_model_class_and_its_identity(tmp_path: Path, clean_registries: None) -> None:
    write(tmp_path, "model.py", MODEL)
    register_references({"model.kind": "model.py:Net", "optimizer.name": "adam"}, tmp_path)
    spec = MODELS["model.py:Net"]
    assert spec.calling == "flax"
    found = identities({"model.kind": "model.py:Net", "loss.name": "cross_entropy"})
    assert list(found) == ["model.py:Net"]
    assert found["model.py:Net"].sha256 == sha256_of(tmp_path / "model.py")


def test_an_edited_file_replaces_the_registered_component(
    tmp_path: Path, clean_registries: None
) -> None:
    path = write(tmp_path, "model.py", MODEL)
    first = register("model.kind", "model.py:Net", tmp_path)
    path.write_text(MODEL.replace("width: int = 4", "width: int = 5"))
    second = register("model.kind", "model.py:Net", tmp_path)
    assert first.sha256 != second.sha256
    assert MODELS["model.py:Net"] is not None


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("model.kind", "Net = 3\n", "expected a flax.linen.Module subclass"),
        ("loss.name", "Net = 3\n", "expected a function (outputs, targets)"),
        ("metrics", "def Net(p, t):\n    return 0.0\n", "@sweepbook.metric"),
    ],
)
def test_an_object_of_the_wrong_kind_is_refused(
    tmp_path: Path, clean_registries: None, key: str, text: str, message: str
) -> None:
    write(tmp_path, "thing.py", text)
    with pytest.raises(UserCodeError) as error:
        register_references(
            {key: ["thing.py:Net"] if key == "metrics" else "thing.py:Net"}, tmp_path
        )
    assert message in str(error.value)
    assert error.value.key == key


def install_plugin(
    folder: Path, monkeypatch: pytest.MonkeyPatch, distribution: str, entry_point: str
) -> None:
    """An installed package as pip leaves it: a dist-info folder on sys.path whose
    entry_points.txt names ``entry_point`` in the ``sweepbook.plugins`` group."""
    info = folder / f"{distribution.replace('-', '_')}-1.0.dist-info"
    write(info, "METADATA", f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    write(info, "entry_points.txt", f"[sweepbook.plugins]\n{entry_point}\n")
    monkeypatch.syspath_prepend(str(folder))
    registry.load_plugins.cache_clear()


def test_a_plugin_registers_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed package (here a dist-info folder on sys.path, as pip leaves it) names a
    callable in the ``sweepbook.plugins`` group; a registry's first unknown name loads it."""
    write(
        tmp_path,
        "my_plugin.py",
        """
        from sweepbook.models import MODELS, ModelSpec, MLP

        def register():
            MODELS.register("plugged_mlp", ModelSpec(
                lambda config, classes, numerics: MLP(
                    widths=(8,), activation="relu", batch_norm=False, initializer="default",
                    num_classes=classes),
                widths="optional"))
        """,
    )
    install_plugin(tmp_path, monkeypatch, "my-plugin", "mine = my_plugin:register")
    try:
        assert "plugged_mlp" not in MODELS
        assert MODELS.check("plugged_mlp") == "plugged_mlp"
        assert "mine" in registry.load_plugins()
    finally:
        MODELS.unregister("plugged_mlp")
        registry.load_plugins.cache_clear()


def test_a_broken_plugin_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "bad_plugin.py", "raise ImportError('needs torch')\n")
    install_plugin(tmp_path, monkeypatch, "bad-plugin", "bad = bad_plugin")
    try:
        with pytest.raises(registry.PluginError, match=r"plugin 'bad' \(bad_plugin\).*needs torch"):
            MODELS.check("nothing_by_this_name")
    finally:
        registry.load_plugins.cache_clear()
