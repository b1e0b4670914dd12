"""The results store: atomic writes, append / read / merge of Parquet parts, damaged files."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sweepbook.store import (
    LOCK_FILE,
    Store,
    StoreError,
    StoreLocked,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
)


def runs_frame(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    run_ids, statuses, accuracies = zip(*rows, strict=True) if rows else ((), (), ())
    return pl.DataFrame(
        {"run_id": list(run_ids), "status": list(statuses), "test.accuracy": list(accuracies)},
        schema={"run_id": pl.String, "status": pl.String, "test.accuracy": pl.Float64},
    )


def history_frame(run_ids: list[str], epochs: int = 2, loss: float = 1.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "run_id": [r for r in run_ids for _ in range(epochs)],
            "epoch": [e for _ in run_ids for e in range(epochs)],
            "train.loss": [loss / (e + 1) for _ in run_ids for e in range(epochs)],
        },
        schema={"run_id": pl.String, "epoch": pl.Int32, "train.loss": pl.Float64},
    )


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


# --- atomic writes -------------------------------------------------------------------------


def test_atomic_write_writes_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.txt"

    atomic_write_text(target, "hello\n")

    assert target.read_text() == "hello\n"
    assert files_in(target.parent) == ["out.txt"]


def test_atomic_write_json_is_sorted_and_readable(tmp_path):
    target = tmp_path / "p.json"

    atomic_write_json(target, {"b": 1, "a": [1, 2]})

    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert target.read_text().index('"a"') < target.read_text().index('"b"')


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt], ids=["exception", "interrupt"])
def test_failed_atomic_write_leaves_no_temp_and_no_partial_file(tmp_path, error):
    target = tmp_path / "runs.parquet"

    def write_half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"half a file")
        raise error

    with pytest.raises(error):
        atomic_write(target, write_half_then_fail)

    assert files_in(tmp_path) == []


def test_failed_atomic_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "report.txt"
    atomic_write_text(target, "old complete content")

    def write_half_then_fail(tmp: Path) -> None:
        tmp.write_text("new but inc")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(target, write_half_then_fail)

    assert target.read_text() == "old complete content"
    assert files_in(tmp_path) == ["report.txt"]


# --- append and read -----------------------------------------------------------------------


def test_empty_store_reads_empty_frames(tmp_path):
    store = Store(tmp_path / "none")

    assert store.read_runs().height == 0
    assert store.read_runs().columns == ["run_id", "status"]
    assert store.read_history().height == 0
    assert store.completed_ids() == set()


def test_append_then_read_runs_history_and_completed_ids(tmp_path):
    store = Store(tmp_path)
    store.append(
        runs_frame([("a", "ok", 0.9), ("b", "failed", float("nan")), ("c", "diverged", 0.1)]),
        history_frame(["a", "c"], epochs=3),
    )

    runs = store.read_runs()
    history = store.read_history()

    assert runs["run_id"].to_list() == ["a", "b", "c"]
    assert runs["status"].to_list() == ["ok", "failed", "diverged"]
    assert runs["test.accuracy"][0] == 0.9
    assert history.height == 6
    assert history.filter(pl.col("run_id") == "c")["epoch"].to_list() == [0, 1, 2]
    assert store.completed_ids() == {"a", "c"}


def test_append_writes_history_and_runs_part_pairs(tmp_path):
    store = Store(tmp_path)

    store.append(runs_frame([("a", "ok", 0.9)]), history_frame(["a"]))
    store.append(runs_frame([("b", "ok", 0.8)]), history_frame(["b"]))

    names = files_in(store.parts_dir)
    assert len(names) == 4
    assert sum(name.endswith(".runs.parquet") for name in names) == 2
    assert sum(name.endswith(".history.parquet") for name in names) == 2
    assert not store.runs_path.exists()
    assert store.read_runs()["run_id"].to_list() == ["a", "b"]


@pytest.mark.parametrize(
    ("first", "second", "completed"),
    [("failed", "ok", {"a"}), ("ok", "failed", set()), ("diverged", "ok", {"a"})],
)
def test_latest_row_of_a_run_id_wins(tmp_path, first, second, completed):
    store = Store(tmp_path)
    store.append(runs_frame([("a", first, 0.1)]), history_frame(["a"], loss=1.0))
    store.append(runs_frame([("a", second, 0.2)]), history_frame(["a"], loss=5.0))

    runs = store.read_runs()

    assert runs.height == 1
    assert runs["status"].to_list() == [second]
    assert runs["test.accuracy"].to_list() == [0.2]
    assert store.read_history()["train.loss"].to_list() == [5.0, 2.5]
    assert store.completed_ids() == completed


def test_parts_with_different_columns_are_combined(tmp_path):
    store = Store(tmp_path)
    store.append(runs_frame([("a", "ok", 0.9)]), history_frame(["a"]))
    failed = pl.DataFrame({"run_id": ["b"], "status": ["failed"], "error": ["out of memory"]})
    store.append(failed, history_frame([]))

    runs = store.read_runs()

    assert runs["run_id"].to_list() == ["a", "b"]
    assert runs["error"].to_list() == [None, "out of memory"]
    assert runs["test.accuracy"].to_list() == [0.9, None]


# --- merge ---------------------------------------------------------------------------------


def _filled_store(directory: Path) -> Store:
    store = Store(directory)
    store.append(runs_frame([("a", "failed", 0.0), ("b", "ok", 0.5)]), history_frame(["b"]))
    store.append(runs_frame([("a", "ok", 0.7), ("c", "ok", 0.6)]), history_frame(["a", "c"]))
    return store


def test_merge_folds_parts_into_main_files_and_removes_them(tmp_path):
    store = _filled_store(tmp_path)
    runs_before, history_before = store.read_runs(), store.read_history()

    store.merge()

    assert files_in(store.parts_dir) == []
    assert store.runs_path.is_file()
    assert store.history_path.is_file()
    assert_frame_equal(store.read_runs(), runs_before)
    assert_frame_equal(store.read_history(), history_before)
    assert_frame_equal(pl.read_parquet(store.runs_path), runs_before)
    assert store.completed_ids() == {"a", "b", "c"}


def test_append_after_merge_reads_main_file_and_new_parts(tmp_path):
    store = _filled_store(tmp_path)
    store.merge()

    store.append(runs_frame([("b", "ok", 0.99), ("d", "ok", 0.4)]), history_frame(["d"]))

    runs = store.read_runs().sort("run_id")
    assert runs["run_id"].to_list() == ["a", "b", "c", "d"]
    assert runs["test.accuracy"].to_list() == [0.7, 0.99, 0.6, 0.4]

    store.merge()

    assert_frame_equal(store.read_runs().sort("run_id"), runs)
    assert files_in(store.parts_dir) == []


def test_merge_of_an_empty_store_writes_nothing(tmp_path):
    store = Store(tmp_path)

    store.merge()
    store.parts_dir.mkdir()
    store.merge()

    assert files_in(tmp_path) == ["parts"]


# --- damaged files and permissions ---------------------------------------------------------


@pytest.mark.parametrize("damaged", ["main", "part"])
def test_corrupted_parquet_raises_store_error_naming_the_file(tmp_path, damaged):
    store = _filled_store(tmp_path)
    if damaged == "main":
        store.merge()
        bad = store.runs_path
    else:
        bad = sorted(store.parts_dir.glob("*.runs.parquet"))[0]
    bad.write_bytes(b"PAR1 this is not really parquet PAR1")

    with pytest.raises(StoreError) as caught:
        store.read_runs()

    assert str(bad) in str(caught.value)
    with pytest.raises(StoreError):
        store.completed_ids()


def test_truncated_history_part_raises_store_error(tmp_path):
    store = _filled_store(tmp_path)
    part = sorted(store.parts_dir.glob("*.history.parquet"))[-1]
    part.write_bytes(part.read_bytes()[:-20])

    with pytest.raises(StoreError, match=re.escape(part.name)):
        store.read_history()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_written_files_are_shareable_not_0600(tmp_path):
    store = _filled_store(tmp_path / "store")
    part_modes = {stat.S_IMODE(p.stat().st_mode) for p in store.parts_dir.iterdir()}
    store.merge()
    atomic_write_text(tmp_path / "index.html", "<html></html>")
    written = [store.runs_path, store.history_path, tmp_path / "index.html"]
    modes = part_modes | {stat.S_IMODE(p.stat().st_mode) for p in written}

    assert modes == {0o666 & ~_umask()}
    if _umask() == 0o022:  # the default: group and others may read, unlike mkstemp's 0600
        assert modes == {0o644}


# --- what a SIGKILLed writer leaves, and the lock ------------------------------------------

SOURCE = str(Path(__file__).resolve().parents[1] / "src")


def run_and_die(script: str, directory: Path) -> None:
    """Run ``script`` (with ``store`` imported and ``directory`` set) in a fresh Python process
    that must end by SIGKILL, as a sweep killed by a scheduler or the OOM killer does."""
    prelude = (
        "import os, signal\nfrom pathlib import Path\nimport polars as pl\n"
        f"import sweepbook.store as store\ndirectory = Path({str(directory)!r})\n"
        "def die(*_):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", prelude + script],
        env={**os.environ, "PYTHONPATH": SOURCE},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def test_debris_of_a_killed_writer_is_ignored_then_removed_by_the_lock_holder(tmp_path):
    store = _filled_store(tmp_path)
    runs_before, history_before = store.read_runs(), store.read_history()
    # Killed inside an atomic write, and killed between the two halves of an append.
    run_and_die("store.atomic_write(directory / 'runs.parquet', lambda tmp: die())", tmp_path)
    run_and_die(
        "real = store.atomic_write\n"
        "store.atomic_write = lambda path, write: "
        "die() if path.name.endswith('.runs.parquet') else real(path, write)\n"
        "store.Store(directory).append(pl.DataFrame({'run_id': ['z'], 'status': ['ok']}), "
        "pl.DataFrame({'run_id': ['z'], 'epoch': [1], 'train.loss': [9.0]}))",
        tmp_path,
    )
    tmp_files = list(tmp_path.glob(".runs.parquet.*.tmp"))
    assert len(tmp_files) == 1
    assert len(list(store.parts_dir.glob("*.history.parquet"))) == 3  # two pairs, one orphan

    # A history part without its runs part is not committed: readers skip it.
    assert_frame_equal(store.read_history(), history_before)
    assert_frame_equal(store.read_runs(), runs_before)

    # A temporary file of a live writer (this process) is left alone.
    fd, mine = tempfile.mkstemp(
        prefix=f".x.{os.getpid()}@{socket.gethostname()}.", suffix=".tmp", dir=tmp_path
    )
    os.close(fd)
    with store.lock():
        pass
    assert not list(tmp_path.glob(".runs.parquet.*.tmp"))
    assert len(list(store.parts_dir.glob("*.history.parquet"))) == 2
    assert Path(mine).exists()
    store.merge()
    assert_frame_equal(store.read_history(), history_before)


def test_the_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    store = Store(tmp_path / "store")
    with store.lock():
        with pytest.raises(StoreLocked) as refused, Store(tmp_path / "store").lock(hint="wait"):
            pass
        message = str(refused.value)
        assert message.startswith(f"{tmp_path / 'store'}: another sweepbook process (pid ")
        assert f"pid {os.getpid()} on host {socket.gethostname()}, since " in message
        assert message.endswith("is using this store; wait")
        assert isinstance(refused.value, StoreError)
    with Store(tmp_path / "store").lock():  # released at the end of the block
        pass


def test_a_lock_held_by_a_killed_process_does_not_block(tmp_path):
    run_and_die("with store.Store(directory).lock():\n    die()", tmp_path)
    holder = json.loads((tmp_path / LOCK_FILE).read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(holder["pid"], 0)

    with Store(tmp_path).lock():
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_part_written_during_a_merge_is_kept_for_the_next(tmp_path, monkeypatch):
    """Workers append without the lock; a part that lands while the holder merges survives."""
    store = _filled_store(tmp_path)
    read_history = Store.read_history

    def worker_appends_then_read(self: Store) -> pl.DataFrame:
        monkeypatch.setattr(Store, "read_history", read_history)  # once
        self.append(runs_frame([("late", "ok", 0.3)]), history_frame(["late"]))
        return read_history(self)

    monkeypatch.setattr(Store, "read_history", worker_appends_then_read)
    store.merge()

    assert len(list(store.parts_dir.glob("*.runs.parquet"))) == 1
    assert "late" in store.read_runs()["run_id"].to_list()
    store.merge()
    assert files_in(store.parts_dir) == []
    assert set(pl.read_parquet(store.runs_path)["run_id"]) == {"a", "b", "c", "late"}
