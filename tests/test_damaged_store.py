"""A damaged Parquet file in a store, main file or part: ``run`` and ``report`` stop with one
line naming it, exit 1, and ``run`` writes nothing first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import write_project
from sweepbook.cli import EXIT_FAILURE, EXIT_OK, main
from sweepbook.store import LOCK_FILE, Store


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_project(tmp_path_factory.mktemp("damaged"))
    cache = tmp_path_factory.getbasetemp() / "xla-cache"  # module scope: no autouse fixture yet
    command = ["run", str(root / "sweeps" / "tiny.toml"), "--out", str(root / "out")]
    assert main([*command, "--compile-cache", str(cache)]) == EXIT_OK
    return root


def damage(out: Path, which: str) -> Path:
    """Replace one store file with bytes that are not Parquet; a part pair is added first (a
    copy of the stored rows, as an unmerged chunk) when a part is to be damaged."""
    store = Store(out)
    kind, name = which.split()
    if kind == "part":
        store.append(store.read_runs(), store.read_history())
        path = next(store.parts_dir.glob(f"*.{name}.parquet"))
    else:
        path = out / f"{name}.parquet"
    path.write_bytes(b"PAR1 not parquet at all, the end of a truncated copy")
    return path


def stamps(out: Path) -> dict[Path, int]:
    """Modification times of the store's files, but the lock's record of its latest holder."""
    files = (path for path in out.rglob("*") if path.is_file() and path.name != LOCK_FILE)
    return {path: path.stat().st_mtime_ns for path in files}


@pytest.mark.parametrize("which", ["main runs", "main history", "part runs", "part history"])
@pytest.mark.parametrize("command", ["run", "report"])
def test_a_damaged_store_file_stops_the_command_with_one_line_naming_it(
    trained_project: Path, tmp_path: Path, capsys, command: str, which: str
) -> None:
    project = tmp_path / "project"
    shutil.copytree(trained_project, project)
    out = project / "out"
    bad = damage(out, which)
    before = stamps(out)
    capsys.readouterr()

    args = ["run", str(project / "sweeps" / "tiny.toml"), "--out", str(out)]
    assert main(args if command == "run" else ["report", str(out)]) == EXIT_FAILURE

    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {bad}: cannot read Parquet file (")
    assert err.rstrip().endswith("delete it to redo its runs")
    if command == "run":
        assert stamps(out) == before
