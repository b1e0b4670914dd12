"""End to end: a sweep file becomes Parquet rows and a self-contained HTML report."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import sweepbook
from conftest import write_project
from sweepbook import figures
from sweepbook.cli import EXIT_BAD_INPUT, EXIT_OK, main


@pytest.fixture(scope="module")
def swept_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project where the tiny sweep ran once (trained and reported), for :func:`swept` to
    copy: a sweep costs seconds of compiling and drawing, a copy milliseconds."""
    project = write_project(tmp_path_factory.mktemp("swept"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)  # module scope: no autouse fixture yet, so the cache is set here
        patch.setenv("SWEEPBOOK_COMPILE_CACHE", str(tmp_path_factory.getbasetemp() / "xla-cache"))
        assert main(["run", "sweeps/tiny.toml"]) == EXIT_OK
    return project


@pytest.fixture
def swept(swept_once: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny sweep, run once: this test's own copy of the project (tests change it), as the
    working directory; returns its store directory."""
    project = shutil.copytree(swept_once, tmp_path / "project")
    monkeypatch.chdir(project)
    return project / "reports" / "tiny"


def test_sweep_writes_one_row_per_run_and_history(swept: Path) -> None:
    runs = pl.read_parquet(swept / "runs.parquet")
    assert runs.height == 4  # 2 learning rates x 2 seeds
    assert set(runs["status"]) == {"ok"}
    assert sorted(runs["optimizer.learning_rate"].unique()) == [3e-3, 3e-2]
    assert sorted(runs["seed"].unique()) == [0, 1]
    assert runs["run_id"].n_unique() == 4
    assert runs["compile_group"].n_unique() == 1  # only traced values differ
    for column in (
        "test.accuracy",
        "val.loss",
        "best_epoch",
        "params",
        "model_bytes",
        "train_seconds",
    ):
        assert runs[column].null_count() == 0, column
    assert runs["test.accuracy"].min() > 0.5
    assert runs["model.widths"].to_list()[0] == [32]
    assert {"git_commit", "host", "device", "config", "finished_at"} <= set(runs.columns)
    assert runs["device"].str.starts_with("cpu").all()

    history = pl.read_parquet(swept / "history.parquet")
    per_run = history.group_by("run_id").agg(pl.len().alias("epochs"))
    joined = runs.join(per_run, on="run_id")
    assert (joined["epochs"] == joined["epochs_run"]).all()
    assert not (swept / "parts").exists() or not list((swept / "parts").iterdir())


def test_report_is_self_contained_and_shows_the_comparison(swept: Path) -> None:
    html = (swept / "index.html").read_text()
    assert "<script>alert(1)</script>" not in html  # the title is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Does a larger learning rate help" in html  # question from the leading comment
    # One table row per learning rate, mean ± std over 2 seeds, the best one marked.
    assert len(re.findall(r"<td>\d\.\d{4} ± \d\.\d{4}</td>", html)) >= 2
    assert html.count('class="best"') >= 1 and "★" in html
    # Self-contained: figures are inline SVG, and nothing is fetched from anywhere.
    names = (
        "learning_curves_loss",
        "learning_curves_accuracy",
        "test_accuracy_vs_learning_rate",
        "confusion_matrix",
        "reliability_diagram",
    )
    assert html.count("<svg ") == len(names)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for name in names:
        for extension in figures.available_formats():  # PGF too, where LaTeX is installed
            assert (swept / "figures" / f"{name}.{extension}").stat().st_size > 1000
    # Provenance: versions, device and input hashes.
    for needle in ("jax", "flax", "optax", "device", "sha256", "code version"):
        assert needle in html


def test_second_run_trains_nothing(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = pl.read_parquet(swept / "runs.parquet")
    assert main(["run", "sweeps/tiny.toml"]) == EXIT_OK
    assert "nothing to train" in capsys.readouterr().err
    after = pl.read_parquet(swept / "runs.parquet")
    assert after.equals(before)


def test_widening_the_sweep_trains_only_the_new_runs(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_file = swept.parent.parent / "sweeps" / "tiny.toml"
    sweep_file.write_text(sweep_file.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    assert main(["run", "sweeps/tiny.toml"]) == EXIT_OK
    assert "4 already stored, 2 to train" in capsys.readouterr().err
    assert pl.read_parquet(swept / "runs.parquet").height == 6


def test_widening_over_new_data_trains_only_the_new_runs(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """New runs on another split: the chunk sizes of the whole plan need every split loaded
    (a sweep once crashed here with a KeyError)."""
    sweep_file = swept.parent.parent / "sweeps" / "tiny.toml"
    text = sweep_file.read_text().replace(
        "[grid]\n", '[grid]\n"data.train_fraction" = [1.0, 0.5]\n'
    )
    sweep_file.write_text(text.replace('compare = ["optimizer.learning_rate"]', ""))
    assert main(["run", "sweeps/tiny.toml"]) == EXIT_OK
    assert "4 already stored, 4 to train" in capsys.readouterr().err
    assert pl.read_parquet(swept / "runs.parquet").height == 8


def test_report_command_rerenders_from_the_store(swept: Path) -> None:
    (swept / "index.html").unlink()
    assert main(["report", str(swept)]) == EXIT_OK
    assert "Tiny" in (swept / "index.html").read_text()


def test_determinism_across_sweeps(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same sweep into a second store gives bit-identical metrics."""
    assert main(["run", "sweeps/tiny.toml", "--out", "again"]) == EXIT_OK
    columns = ["run_id", "test.accuracy", "test.loss", "val.loss", "best_epoch"]
    first = pl.read_parquet(swept / "runs.parquet").select(columns).sort("run_id")
    second = pl.read_parquet(Path("again") / "runs.parquet").select(columns).sort("run_id")
    assert first.equals(second)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (
            lambda s: s.replace('"optimizer.learning_rate"', '"optimizer.learning_rat"'),
            "grid.optimizer.learning_rat",
        ),
        (lambda s: s.replace("seeds = [0, 1]", 'seeds = "0"'), "seeds"),
        (
            lambda s: s.replace("[3e-3, 3e-2]", '["fast", 3e-2]'),
            "grid.optimizer.learning_rate",
        ),
        (lambda s: s.replace('experiment = "tiny"', 'experiment = "missing"'), "experiment"),
        (lambda s: s + "\n[grid\n", None),
    ],
    ids=["unknown-key", "wrong-type", "wrong-value-type", "missing-experiment", "toml-syntax"],
)
def test_malformed_sweep_gets_one_line_exit_2_and_nothing_written(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], edit, key
) -> None:
    monkeypatch.chdir(project)
    sweep_file = project / "sweeps" / "tiny.toml"
    sweep_file.write_text(edit(sweep_file.read_text()))
    assert main(["run", "sweeps/tiny.toml"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "tiny.toml" in err
    if key:
        assert f"key '{key}'" in err
    assert not (project / "reports").exists()


def test_unreadable_dataset_is_bad_input(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(project)
    experiment = project / "experiments" / "tiny.toml"
    experiment.write_text(
        experiment.read_text().replace('name = "digits"', f'name = "idx"\npath = "{project}/nope"')
    )
    assert main(["run", "sweeps/tiny.toml"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert "key 'data.path'" in err and "nope" in err
    assert not (project / "reports").exists()


def test_console_script_exit_code(project: Path) -> None:
    """The installed command, as a user runs it: exit status 2 and one line on stderr."""
    (project / "sweeps" / "bad.toml").write_text('experiment = "tiny"\nseeds = [0]\nunknown = 1\n')
    result = subprocess.run(
        [sys.executable, "-m", "sweepbook.cli", "run", "sweeps/bad.toml"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {Path('sweeps/bad.toml')}: key 'unknown': unknown key"


def test_report_writes_a_booktabs_table_and_an_index(swept: Path) -> None:
    tex = (swept / "tables" / "results.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "$\\pm$" in tex
    assert tex.count("\\textbf{") >= 1  # the best configuration
    assert "<script>" not in tex
    index = (swept.parent / "index.html").read_text()
    assert 'href="tiny/index.html"' in index
    assert "&lt;script&gt;" in index  # titles are escaped there too


def test_report_check_detects_results_changed_after_rendering(
    swept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--check", str(swept)]) == EXIT_OK
    runs = pl.read_parquet(swept / "runs.parquet")
    runs.with_columns(pl.col("test.accuracy") * 0.5).write_parquet(swept / "runs.parquet")
    assert main(["report", "--check", str(swept)]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["report", str(swept)]) == EXIT_OK
    assert main(["report", "--check", str(swept)]) == EXIT_OK


def test_run_keeps_the_best_configurations_parameters_by_default(swept: Path) -> None:
    """The default ``--save-params best``: two checkpoints (both seeds of one learning rate)."""
    saved = sorted(path.name for path in (swept / "params").iterdir())
    runs = pl.read_parquet(swept / "runs.parquet").filter(pl.col("run_id").is_in(saved))
    assert len(saved) == 2 and runs["optimizer.learning_rate"].n_unique() == 1
    loaded = sweepbook.load_run("reports/tiny", saved[0])  # relative to the working directory
    assert set(loaded.variables) == {"params"}


def test_save_params_flag(project: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(project)
    assert main(["run", "sweeps/tiny.toml", "--save-params", "none", "--no-report"]) == EXIT_OK
    assert not (project / "reports" / "tiny" / "params").exists()
    with pytest.raises(SystemExit) as error:
        main(["run", "sweeps/tiny.toml", "--save-params", "some"])
    assert error.value.code == EXIT_BAD_INPUT  # argparse: invalid choice, nothing written
    assert "invalid choice: 'some'" in capsys.readouterr().err
