"""The bad-input corpus (``tests/bad_inputs/``): every malformed sweep, experiment or data file
makes ``sweepbook run`` exit 2 with one line on stderr that names the file and the key, and
write nothing at all."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sweepbook.cli import EXIT_BAD_INPUT, main
from sweepbook.data import load_dataset, load_split

CORPUS = Path(__file__).parent / "bad_inputs"
MARKER = re.compile(r"^# expect-key: (\S+)$", re.MULTILINE)
RUNNING_AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass(frozen=True)
class Case:
    source: Path  # the corpus file
    kind: str  # "sweeps" or "experiments": where it goes in the project
    key: str | None  # the key the error must name; None: a file-level error (bad TOML)

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.source.stem}"


def read_marker(path: Path) -> str | None:
    """The ``# expect-key:`` of a corpus file; a missing marker fails, not skips, the case."""
    found = MARKER.search(path.read_bytes().decode("utf-8", errors="replace"))
    if found is None:
        raise AssertionError(f"{path}: no '# expect-key:' line")
    return None if found.group(1) == "none" else found.group(1)


def corpus() -> list[Case]:
    return [
        Case(path, kind, read_marker(path))
        for kind in ("sweeps", "experiments")
        for path in sorted((CORPUS / kind).glob("*.toml"))
    ]


CASES = corpus()


@pytest.fixture(autouse=True)
def fresh_data_caches() -> None:
    """Datasets are cached by (name, path) and corpus paths are relative to each test's own
    project: a dataset read in one test must not answer for another's file."""
    load_dataset.cache_clear()
    load_split.cache_clear()


def snapshot(root: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in root.rglob("*")}


def place(case: Case, project: Path) -> tuple[str, Path]:
    """Copy a corpus case into the project; return the sweep to run (relative to the project)
    and the file the error must blame."""
    shutil.copytree(CORPUS / "data", project / "data")
    shutil.copytree(CORPUS / "user_code", project / "user_code")
    target = project / case.kind / case.source.name
    shutil.copyfile(case.source, target)
    if case.kind == "sweeps":
        return f"sweeps/{case.source.name}", target
    sweep = project / "sweeps" / case.source.name
    sweep.write_text(f'experiment = "{case.source.stem}"\nseeds = [0]\n')
    return f"sweeps/{case.source.name}", target


def assert_refused(
    project: Path, sweep: str, blamed: Path, key: str | None, capsys: pytest.CaptureFixture[str]
) -> str:
    """Run the sweep in-process; check exit 2, one line naming file and key, nothing written."""
    before = snapshot(project)

    code = main(["run", sweep, "--out", "out"])

    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: ")
    # Relative or absolute, the path ends with the project's own folder and file name.
    assert f"{blamed.parent.name}/{blamed.name}" in line, line
    if key is None:
        assert ": key '" not in line, line
    else:
        assert f"key '{key}':" in line, line
    assert not (project / "out").exists()
    assert snapshot(project) == before, "a refused sweep wrote or touched files"
    return line


def test_corpus_covers_every_category_with_enough_cases() -> None:
    names = {case.source.stem for case in CASES}
    assert len(CASES) >= 40
    for word in ("syntax", "unknown", "duplicate", "empty", "zero", "negative", "data", "nan"):
        assert any(word in name for name in names), word
    assert all(case.source.read_bytes().startswith(b"# Bad input: ") for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus_file_is_refused_in_one_line_naming_file_and_key(
    case: Case,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sweep, blamed = place(case, project)
    monkeypatch.chdir(project)

    assert_refused(project, sweep, blamed, case.key, capsys)


def _empty_file(project: Path) -> tuple[str, Path, str | None]:
    (project / "sweeps" / "empty.toml").write_bytes(b"")
    return "sweeps/empty.toml", project / "sweeps" / "empty.toml", "experiment"


def _sweep_is_a_directory(project: Path) -> tuple[str, Path, str | None]:
    (project / "sweeps" / "folder.toml").mkdir()
    return "sweeps/folder.toml", project / "sweeps" / "folder.toml", None


def _experiment_is_a_directory(project: Path) -> tuple[str, Path, str | None]:
    (project / "experiments" / "folder.toml").mkdir()
    sweep = project / "sweeps" / "x.toml"
    sweep.write_text('experiment = "folder"\nseeds = [0]\n')
    return "sweeps/x.toml", sweep, "experiment"


def _unreadable_sweep(project: Path) -> tuple[str, Path, str | None]:
    sweep = project / "sweeps" / "tiny.toml"
    sweep.chmod(0)
    return "sweeps/tiny.toml", sweep, None


def _unreadable_data(project: Path) -> tuple[str, Path, str | None]:
    data = project / "locked.npz"
    shutil.copyfile(CORPUS / "data" / "negative_labels.npz", data)
    data.chmod(0)
    sweep = project / "sweeps" / "x.toml"
    sweep.write_text(
        'experiment = "tiny"\nseeds = [0]\n[set]\n"data.name" = "npz"\n"data.path" = "locked.npz"\n'
    )
    return "sweeps/x.toml", sweep, "data.path"


needs_permissions = pytest.mark.skipif(
    RUNNING_AS_ROOT, reason="root reads files whatever their mode (garbage content is in corpus)"
)


@pytest.mark.parametrize(
    "setup",
    [
        _empty_file,
        _sweep_is_a_directory,
        _experiment_is_a_directory,
        pytest.param(_unreadable_sweep, marks=needs_permissions),
        pytest.param(_unreadable_data, marks=needs_permissions),
    ],
)
def test_inputs_that_cannot_be_files_in_the_corpus_are_refused_too(
    setup: Callable[[Path], tuple[str, Path, str | None]],
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sweep, blamed, key = setup(project)
    monkeypatch.chdir(project)

    assert_refused(project, sweep, blamed, key, capsys)


SUBPROCESS_CASES = ["syntax_unclosed_array", "learning_rate_1e300", "data_nan_pixels"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_console_command_prints_exactly_one_line(name: str, project: Path) -> None:
    """As a user sees it: no warning, progress bar or traceback around the error line (which
    pytest's own capture of warnings would hide in-process)."""
    case = next(c for c in CASES if c.id == f"sweeps/{name}")
    sweep, _ = place(case, project)

    result = subprocess.run(
        [sys.executable, "-m", "sweepbook.cli", "run", sweep, "--out", "out"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert name in result.stderr
    assert not (project / "out").exists()
