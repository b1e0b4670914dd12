"""The pipeline as library calls: run_sweep, render_report and verify_store from Python, as a
notebook uses them (no working-directory change, no command line)."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import polars as pl
import pytest

import sweepbook
from conftest import TINY_SWEEP, write_project
from sweepbook import api, cli, engine
from sweepbook.config import ConfigError
from sweepbook.store import Store


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, api.RunSummary, list[object]]:
    """The tiny sweep run once from Python: its project, summary and progress events."""
    root = write_project(tmp_path_factory.mktemp("api"))
    # The tiny sweep's program may be compiled already by an earlier test of this process.
    engine.forget_compiled_programs()
    events: list[object] = []
    summary = sweepbook.run_sweep(
        root / "sweeps" / "tiny.toml",
        root / "store",
        compile_cache=root / "xla",
        on_progress=events.append,
    )
    return root, summary, events


def test_summary_agrees_with_the_store(swept: tuple[Path, api.RunSummary, list[object]]) -> None:
    root, summary, _ = swept
    runs = pl.read_parquet(root / "store" / "runs.parquet")
    assert summary.sweep == "tiny" and summary.store == root / "store"
    assert (summary.planned, summary.stored_before, summary.trained) == (4, 0, runs.height)
    statuses = runs["status"].value_counts()
    counted = dict(zip(statuses["status"], statuses["count"], strict=True))
    assert (summary.ok, summary.diverged, summary.failed) == (
        counted.get("ok", 0),
        counted.get("diverged", 0),
        counted.get("failed", 0),
    )
    assert summary.compile_groups == runs["compile_group"].n_unique() == 1
    assert summary.compilations == 1 and summary.seconds > 0
    assert summary.succeeded and not summary.searched and summary.errors == ()
    assert summary.report == root / "store" / "index.html" and summary.report.is_file()
    provenance = json.loads((root / "store" / "provenance.json").read_text())
    assert provenance["command"][:3] == ["sweepbook", "run", str(root / "sweeps" / "tiny.toml")]


def test_progress_events_arrive_in_order(swept: tuple[Path, api.RunSummary, list[object]]) -> None:
    root, _, events = swept
    kinds = [type(event) for event in events]
    assert kinds == [
        api.Planned,
        api.TrainingStarted,
        *[api.RunTrained] * 4,
        api.TrainingFinished,
    ]
    assert events[0] == api.Planned("tiny", 4, 0, None, 4, 1)
    assert events[1] == api.TrainingStarted("training", 4, in_process=True)
    trained = {event.run_id for event in events if isinstance(event, api.RunTrained)}
    assert trained == set(pl.read_parquet(root / "store" / "runs.parquet")["run_id"])


def test_a_second_call_trains_nothing(swept: tuple[Path, api.RunSummary, list[object]]) -> None:
    root, _, _ = swept
    events: list[object] = []
    again = api.run_sweep(
        root / "sweeps" / "tiny.toml",
        root / "store",
        compile_cache=root / "xla",
        report=False,
        on_progress=events.append,
    )
    assert (again.trained, again.stored_before, again.planned) == (0, 4, 4)
    assert again.report is None and again.succeeded
    assert events == [api.Planned("tiny", 4, 4, None, 0, 0)]


def test_bad_input_raises_what_the_command_line_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path, {"bad": TINY_SWEEP.replace("optimizer.learning_rate", "nope")})
    sweep = root / "sweeps" / "bad.toml"
    with pytest.raises(ConfigError) as raised:
        api.run_sweep(sweep, root / "out")
    assert "key 'grid.nope'" in str(raised.value)
    assert cli.main(["run", str(sweep), "--out", str(root / "out")]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == f"error: {raised.value}"
    assert not (root / "out").exists()


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"launcher": "slurmm"}, "unknown launcher 'slurmm'"),
        ({"wait": False}, "--no-wait needs --launcher slurm"),
        ({"launcher": "local", "launcher_options": {"gpus": -1}}, "key 'launcher.gpus'"),
        ({"launcher": "local", "launcher_options": {"colour": 1}}, "key 'launcher.colour'"),
    ],
)
def test_bad_launcher_arguments_are_bad_input(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    keywords: dict[str, typing.Any],
    message: str,
) -> None:
    sweep = Path("sweeps/tiny.toml")  # named in the message as given, as the command does
    monkeypatch.chdir(project)
    with pytest.raises(ConfigError, match=message) as raised:
        api.run_sweep(sweep, project / "out", **keywords)
    assert str(raised.value).startswith(f"{sweep}: ")
    assert not (project / "out").exists()


def test_render_report_from_python(swept: tuple[Path, api.RunSummary, list[object]]) -> None:
    root, _, _ = swept
    busy: list[api.StoreBusy] = []
    path = sweepbook.render_report(root / "store", "icml2024", on_busy=busy.append)
    assert path == root / "store" / "index.html" and busy == []
    # Beside a sweep holding the store, the report renders what is stored, after saying so.
    with Store(root / "store").lock():
        assert api.render_report(root / "store", on_busy=busy.append) == path
    assert len(busy) == 1 and "another sweepbook process" in busy[0].line


def test_verify_store_from_python(swept: tuple[Path, api.RunSummary, list[object]]) -> None:
    root, _, _ = swept
    seen: list[object] = []
    verified = sweepbook.verify_store(root / "store", runs=1, report=False, on_progress=seen.append)
    assert (verified.checked, verified.reproduced) == (1, 1) and verified.succeeded
    assert list(verified.outcomes) == seen and verified.report is None
    assert "1/1 runs reproduced bit for bit" in verified.text
    record = json.loads((root / "store" / "verification.json").read_text())
    assert record["checked"] == 1 and record["runs"][0]["run_id"] == verified.outcomes[0].run_id


def test_the_command_line_knows_every_launcher_and_event() -> None:
    assert api.LAUNCHERS.names() == cli.LAUNCHER_NAMES
    shown = cli.RunProgress()._handlers
    assert set(shown) == set(typing.get_args(api.ProgressEvent))


def test_importing_sweepbook_does_not_import_jax() -> None:
    code = "import sys, sweepbook; print('jax' in sys.modules, sweepbook.__version__)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", sweepbook.__version__]
