"""A component registered from outside ``src/``: a model kind defined in this test module
trains through ``sweepbook run`` exactly as a built-in one does.

Registration lives in the process that registers. The inline launcher (the default) trains in
that process, so it sees the new kind; ``--launcher local`` and ``--launcher slurm`` train in
task processes that import sweepbook afresh (submitit pickles ``launch.run_task`` by
reference), where a kind registered only by the calling process is unknown: its runs fail
there with the registry's "unknown model" error (tested below, as a slow test).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import flax.linen as nn
import jax
import polars as pl
import pytest
from matplotlib.figure import Figure

from sweepbook import run_sweep
from sweepbook.cli import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, main
from sweepbook.config import ModelConfig
from sweepbook.figure_kinds import FIGURES, FigureData, FigureSpec
from sweepbook.models import MODELS, ModelSpec, build_model, choose_numerics, multiply_adds
from sweepbook.registry import UnknownName

KIND = "test_linear"


class LinearClassifier(nn.Module):
    """Flatten, then one dense layer: the smallest model sweepbook can train. It takes the
    keyword arguments every sweepbook model is called with, and ignores the ones it has no use
    for (no dropout, no batch norm)."""

    num_classes: int

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        dropout_rate: jax.Array,
        dropout_key: jax.Array | None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


def build_linear(config: ModelConfig, num_classes: int, numerics: str | None) -> nn.Module:
    return LinearClassifier(num_classes=num_classes)


@pytest.fixture
def linear_kind() -> Iterator[str]:
    """The new kind, registered for one test only."""
    MODELS.register(KIND, ModelSpec(build_linear, widths="forbidden"))
    try:
        yield KIND
    finally:
        MODELS.unregister(KIND)


EXPERIMENT = """\
[data]
name = "digits"
val_fraction = 0.2
test_fraction = 0.2
split_seed = 0

[model]
kind = "{kind}"

[optimizer]
name = "adam"
learning_rate = 0.01

[train]
epochs = 4
batch_size = 128
"""

SWEEP = """\
# Does a linear classifier learn the digits?
experiment = "linear"
seeds = [0]

[grid]
"optimizer.learning_rate" = [0.01, 0.03]
"""


def write_linear_project(root: Path, kind: str) -> Path:
    (root / "experiments").mkdir(parents=True)
    (root / "sweeps").mkdir()
    (root / "experiments" / "linear.toml").write_text(EXPERIMENT.format(kind=kind))
    (root / "sweeps" / "linear.toml").write_text(SWEEP)
    return root


def test_a_registered_kind_is_validated_built_and_counted(linear_kind: str) -> None:
    config = ModelConfig(kind=linear_kind)
    assert isinstance(build_model(config, 10), LinearClassifier)
    assert choose_numerics(linear_kind, "cpu") == choose_numerics("mlp", "cpu")
    # No counter registered: XLA's estimate of the forward pass, 8x8 pixels times 10 classes
    # plus the bias adds (counted too, at half a multiply-add each).
    assert multiply_adds(config, (8, 8, 1), 10) == 64 * 10 + 10 // 2
    with pytest.raises(ValueError, match="fixed by the test_linear architecture"):
        ModelConfig(kind=linear_kind, widths=[4])


def test_a_sweep_trains_a_model_kind_registered_by_a_test_module(
    tmp_path: Path,
    linear_kind: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(write_linear_project(tmp_path, linear_kind))

    assert main(["run", "sweeps/linear.toml"]) == EXIT_OK, capsys.readouterr().err

    runs = pl.read_parquet(tmp_path / "reports" / "linear" / "runs.parquet")
    assert runs.height == 2
    assert set(runs["status"]) == {"ok"}
    assert set(runs["model.kind"]) == {linear_kind}
    assert runs["params"].to_list() == [64 * 10 + 10] * 2  # one dense layer, with biases
    assert runs["test.accuracy"].min() > 0.5  # it learns: chance is 0.1
    history = pl.read_parquet(tmp_path / "reports" / "linear" / "history.parquet")
    assert history.height == 2 * 4  # 2 runs x 4 epochs


def draw_seed_scatter(data: FigureData) -> Figure:
    """A figure kind of the test's own: the headline metric of each run against its seed."""
    fig = Figure(figsize=(data.venue.column_width_in, 1.8))
    ax = fig.add_subplot()
    ax.plot(data.ok["seed"].to_list(), data.ok[data.metric].to_list(), "o")
    ax.set_xlabel("seed")
    ax.set_ylabel(data.metric)
    return fig


@pytest.fixture
def seed_scatter_kind() -> Iterator[str]:
    FIGURES.register(
        "test_seed_scatter",
        FigureSpec(
            stem="seed_scatter",
            title="Headline by seed",
            caption=lambda d: f"{d.metric} of each of the {d.ok.height} runs against its seed.",
            build=draw_seed_scatter,
            applies=lambda d: d.ok.height > 0,
        ),
    )
    try:
        yield "test_seed_scatter"
    finally:
        FIGURES.unregister("test_seed_scatter")


def test_a_model_kind_and_a_figure_kind_from_a_test_module_in_one_sweep(
    tmp_path: Path, linear_kind: str, seed_scatter_kind: str
) -> None:
    """Issue 15's bar: new components registered from outside ``src/``, a sweep that uses
    both, through the library call a notebook would make."""
    project = write_linear_project(tmp_path, linear_kind)

    summary = run_sweep(project / "sweeps" / "linear.toml", project / "reports" / "linear")

    assert summary.succeeded and summary.trained == summary.ok == 2
    runs = pl.read_parquet(summary.store / "runs.parquet")
    assert set(runs["model.kind"]) == {linear_kind}
    assert summary.report is not None
    html = summary.report.read_text(encoding="utf-8")
    assert "Headline by seed" in html
    assert "test.accuracy of each of the 2 runs against its seed." in html
    assert (summary.store / "figures" / "seed_scatter.svg").is_file()


def test_an_unknown_kind_is_one_line_with_a_hint_and_exit_2(
    tmp_path: Path,
    linear_kind: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(write_linear_project(tmp_path, "test_linaer"))

    assert main(["run", "sweeps/linear.toml"]) == EXIT_BAD_INPUT

    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "experiments/linear.toml: key 'model.kind': unknown model 'test_linaer'" in lines[0]
    assert "did you mean 'test_linear'?" in lines[0]
    assert not (tmp_path / "reports").exists()


def test_unregistering_forgets_the_kind(linear_kind: str) -> None:
    MODELS.unregister(linear_kind)
    with pytest.raises(UnknownName, match="unknown model 'test_linear'"):
        MODELS[linear_kind]
    with pytest.raises(ValueError, match="unknown model 'test_linear'"):
        ModelConfig(kind=linear_kind)


@pytest.mark.slow
def test_a_kind_registered_at_run_time_is_unknown_to_local_task_processes(
    tmp_path: Path,
    linear_kind: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the module docstring says: a task process imports sweepbook alone, so it refuses
    a kind that only the calling process registered, and the task fails saying so."""
    monkeypatch.chdir(write_linear_project(tmp_path, linear_kind))

    assert main(["run", "sweeps/linear.toml", "--launcher", "local"]) == EXIT_FAILURE

    err = capsys.readouterr().err
    assert "1 failed" in err and "their runs are not stored" in err, err
    log = re.search(r"\(log: (\S+)\)", err)
    assert log is not None, err
    assert f"unknown model '{linear_kind}'" in Path(log.group(1)).read_text()
    assert not (tmp_path / "reports" / "linear" / "runs.parquet").exists()
