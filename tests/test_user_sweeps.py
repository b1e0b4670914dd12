"""A researcher's own model, data, loss and metric, swept from files outside the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sweepbook.api import run_sweep
from sweepbook.cli import EXIT_OK, main

COLOUR_LOADER = """
import numpy as np

def colour_squares(n, seed=0):
    '''16x16 colour images whose class is the channel that is brightest, plus noise.'''
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.uniform(0.0, 0.5, (n, 16, 16, 3))
    images[np.arange(n), :, :, labels] += 0.4
    return images.astype(np.float32), labels.astype(np.int32)
"""

CONV_MODEL = """
import flax.linen as nn

class TinyConv(nn.Module):
    features: int
    num_outputs: int = 3

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(self.features, (3, 3))(x))
        x = x.mean(axis=(1, 2))
        x = nn.Dropout(0.1, deterministic=not train)(x)
        return nn.Dense(self.num_outputs)(x)
"""

LOSS = """
import optax

def plain_cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
"""

METRIC = """
import numpy as np
import sweepbook

@sweepbook.metric(direction="max", label="top-2 accuracy")
def top2_accuracy(probabilities, labels):
    top2 = np.argsort(probabilities, axis=1)[:, -2:]
    return float(np.mean((top2 == labels[:, None]).any(axis=1)))
"""

EXPERIMENT = """
description = "a user's conv net on colour squares"
metrics = ["../code/metric.py:top2_accuracy"]

[data]
name = "../code/colour.py:colour_squares"
val_fraction = 0.2
test_fraction = 0.2
split_seed = 0

[data.args]
n = 150

[model]
kind = "../code/net.py:TinyConv"

[model.args]
features = 4

[loss]
name = "../code/loss.py:plain_cross_entropy"

[optimizer]
name = "adam"
learning_rate = 1e-2

[train]
epochs = 2
batch_size = 32
"""

SWEEP = """
# Does a wider first layer help on colour squares?
experiment = "../experiment/colour.toml"
seeds = [0, 1]

[grid]
"model.args.features" = [4, 8]
"optimizer.learning_rate" = [1e-2, 3e-2]

[report]
metric = "test.top2_accuracy"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A project of the user's own, outside the repository: code, experiment, sweep."""
    root = tmp_path / "my_research"
    write(root / "code" / "colour.py", COLOUR_LOADER)
    write(root / "code" / "net.py", CONV_MODEL)
    write(root / "code" / "loss.py", LOSS)
    write(root / "code" / "metric.py", METRIC)
    write(root / "experiment" / "colour.toml", EXPERIMENT)
    write(root / "sweeps" / "colour.toml", SWEEP)
    (root / "elsewhere").mkdir()
    return root


def test_console_command_sweeps_the_users_own_code(outside: Path, tmp_path: Path) -> None:
    """Through the console command, from an unrelated working directory: eight runs in two
    compilations (one per static model argument); the user's metric is stored for test and
    validation and headlines the report; the user's files and their hashes are in its
    provenance; the store then renders where the code is gone."""
    repository_src = Path(__file__).resolve().parents[1] / "src"
    environment = {**os.environ, "PYTHONPATH": str(repository_src)}
    store = tmp_path / "store"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweepbook.cli",
            "run",
            "../sweeps/colour.toml",
            "--out",
            str(store),
        ],
        cwd=outside / "elsewhere",
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    assert result.returncode == EXIT_OK, result.stderr

    runs = pl.read_parquet(store / "runs.parquet")
    assert runs.height == 8 and set(runs["status"]) == {"ok"}
    for column in ("test.top2_accuracy", "val.top2_accuracy", "test.accuracy"):
        assert runs[column].null_count() == 0, column
    assert (runs["test.top2_accuracy"] >= runs["test.accuracy"]).all()  # top-2 contains top-1
    # Static model arguments make compile groups; the traced learning rate does not: two
    # compilations for eight runs, each group's four runs vmapped in one chunk.
    said = result.stdout + result.stderr  # progress and the summary go to stderr
    assert "in 2 compile group(s)" in said and "(2 compilations" in said
    assert runs.group_by("compile_group").len()["len"].to_list() == [4, 4]
    assert set(runs["chunk_size"]) == {4}
    code = json.loads(runs["user_code"][0])
    assert set(code) == {
        "../code/net.py:TinyConv",
        "../code/colour.py:colour_squares",
        "../code/loss.py:plain_cross_entropy",
        "../code/metric.py:top2_accuracy",
    }

    html = (store / "index.html").read_text()
    assert "top-2 accuracy" in html
    assert "net.py" in html and code["../code/net.py:TinyConv"] in html  # provenance

    shutil.rmtree(outside / "code")  # the report never imports the user's code
    os.remove(store / "index.html")
    rendered = subprocess.run(
        [sys.executable, "-m", "sweepbook.cli", "report", str(store)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    assert rendered.returncode == EXIT_OK, rendered.stderr
    assert "top-2 accuracy" in (store / "index.html").read_text()


def test_an_edited_model_file_refuses_to_resume_the_store(
    outside: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = outside / "sweeps" / "colour.toml"
    write(sweep, SWEEP.replace("[1e-2, 3e-2]", "[1e-2]").replace("[0, 1]", "[0]"))
    store = tmp_path / "store"
    assert main(["run", str(sweep), "--out", str(store), "--no-report"]) == EXIT_OK
    net = outside / "code" / "net.py"
    net.write_text(net.read_text().replace("0.1", "0.2"))
    write(sweep, SWEEP.replace("[0, 1]", "[0]"))  # a new learning rate: resume
    before = (store / "runs.parquet").read_bytes()
    capsys.readouterr()
    assert main(["run", str(sweep), "--out", str(store), "--no-report"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "net.py changed since runs stored in" in error
    assert (store / "runs.parquet").read_bytes() == before


def test_an_exception_in_users_model_during_training_fails_its_group_only(
    outside: Path, tmp_path: Path
) -> None:
    """The model raises while its training step is traced, for one width only (evaluation,
    which the input check runs, works): that width's runs are stored as failed, with the
    user's message, and the other width trains."""
    write(
        outside / "code" / "net.py",
        CONV_MODEL.replace(
            "        x = nn.relu(nn.Conv(self.features, (3, 3))(x))",
            "        if train and self.features == 8:\n"
            "            raise RuntimeError('width 8 is not supported')\n"
            "        x = nn.relu(nn.Conv(self.features, (3, 3))(x))",
        ),
    )
    summary = run_sweep(outside / "sweeps" / "colour.toml", tmp_path / "store", report=False)
    runs = pl.read_parquet(tmp_path / "store" / "runs.parquet")
    failed = runs.filter(pl.col("status") == "failed")
    assert summary.failed == failed.height == 4
    assert set(failed["model.args.features"]) == {8}
    assert all("width 8 is not supported" in error for error in failed["error"])
    assert set(runs.filter(pl.col("model.args.features") == 4)["status"]) == {"ok"}


def test_a_users_metric_that_raises_fails_its_runs_and_the_sweep_goes_on(
    outside: Path, tmp_path: Path
) -> None:
    write(outside / "code" / "metric.py", METRIC.replace("    top2 = ", "    1 / 0\n    top2 = "))
    summary = run_sweep(outside / "sweeps" / "colour.toml", tmp_path / "store", report=False)
    runs = pl.read_parquet(tmp_path / "store" / "runs.parquet")
    assert summary.failed == runs.height == 8
    assert all("metric 'top2_accuracy' raised ZeroDivisionError" in e for e in runs["error"])


def test_a_regression_sweep_stores_scikit_learns_metrics_and_reports_residuals(
    tmp_path: Path,
) -> None:
    """A regression of a user's loader with the built-in MLP: the stored errors are
    scikit-learn's on the stored predictions, and the report draws predicted-vs-true and
    residuals, and no classification figure."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    write(
        tmp_path / "code" / "linear.py",
        """
        import numpy as np

        def linear(n=300):
            rng = np.random.default_rng(0)
            x = rng.normal(size=(n, 5)).astype(np.float32)
            y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + rng.normal(0, 0.3, n)
            return x, y.astype(np.float32)
        """,
    )
    write(
        tmp_path / "regression.toml",
        """
        task = "regression"
        [data]
        name = "code/linear.py:linear"
        val_fraction = 0.2
        test_fraction = 0.2
        split_seed = 0
        [model]
        kind = "mlp"
        widths = [16]
        [optimizer]
        name = "adam"
        learning_rate = 1e-2
        [train]
        epochs = 20
        batch_size = 32
        """,
    )
    write(
        tmp_path / "sweeps" / "regression.toml",
        """
        experiment = "../regression.toml"
        seeds = [0, 1]
        [grid]
        "loss.name" = ["mse", "huber"]
        """,
    )
    run_sweep(tmp_path / "sweeps" / "regression.toml", tmp_path / "store")
    runs = pl.read_parquet(tmp_path / "store" / "runs.parquet")
    assert set(runs["status"]) == {"ok"} and runs.height == 4
    figures = {path.stem for path in (tmp_path / "store" / "figures").glob("*.svg")}
    assert {"predicted_vs_true", "residuals", "learning_curves_loss"} <= figures
    assert not figures & {"confusion_matrix", "reliability_diagram", "learning_curves_accuracy"}
    assert "test.accuracy" not in runs.columns and "test.confusion" not in runs.columns
    for row in runs.iter_rows(named=True):
        predictions = np.asarray(row["test.predictions"])
        targets = np.asarray(row["test.targets"])
        assert row["test.mse"] == pytest.approx(mean_squared_error(targets, predictions))
        assert row["test.mae"] == pytest.approx(mean_absolute_error(targets, predictions))
        assert row["test.r2"] == pytest.approx(r2_score(targets, predictions))
        assert row["test.rmse"] == pytest.approx(np.sqrt(row["test.mse"]))
        assert row["test.loss"] == pytest.approx(row["test.mse"], rel=1e-4)  # float32 program
        assert row["test.r2"] > 0.8  # a linear target is learned
    history = pl.read_parquet(tmp_path / "store" / "history.parquet")
    assert history["val.accuracy"].is_nan().all() and history["val.loss"].is_finite().all()
