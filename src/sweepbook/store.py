"""The results store of one sweep: ``runs.parquet`` and ``history.parquet`` via Polars.

Completed work is appended as small part files under ``parts/`` (history first, then runs:
a runs part is the commit marker of its history) and merged into the two main files at the
end of a sweep. Every file is written to a temporary name and renamed, so a killed process
leaves either the old file or the new one, never half of one. Readers always see main files
plus parts, with duplicate rows dropped, so a sweep killed before its merge loses nothing.

Temporary files and parts carry their writer's ``pid@host``: what a killed writer left (a
temporary file, a history part whose runs part never came) is recognised as debris and removed
by the next lock holder, and ignored by readers meanwhile.

One process at a time owns a store: ``Store.lock()`` takes an exclusive ``flock`` on
``.sweepbook.lock`` that the kernel releases when its holder dies, even by SIGKILL. Only the
holder merges. ``append`` takes no lock, so that workers of the holder (array tasks of a cluster
launcher) can add parts while it runs; ``merge`` folds and deletes only complete part pairs that
it listed, so a part written during a merge stays for the next one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

RUNS_FILE = "runs.parquet"
HISTORY_FILE = "history.parquet"
PARTS_DIR = "parts"
LOCK_FILE = ".sweepbook.lock"
# Debris from another host cannot be checked for a live writer; after this long nobody is
# still writing it (a part or a report file takes seconds at most).
STALE_AFTER_SECONDS = 3600.0
DONE_STATUSES = ("ok", "diverged")  # a failed run is retried by the next sweep


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


class StoreError(RuntimeError):
    """A store file that cannot be read; the message names it."""


@dataclass(frozen=True)
class LockHolder:
    pid: int | None
    host: str | None
    since: str | None  # ISO time in UTC

    def describe(self) -> str:
        if self.pid is None:
            return "a process that has just started"
        since = "?"
        if self.since:
            with contextlib.suppress(ValueError):
                since = dt.datetime.fromisoformat(self.since).astimezone().strftime("%H:%M")
        return f"pid {self.pid} on host {self.host}, since {since}"


class StoreLocked(StoreError):
    """Another process holds the store's lock; the message says which and what to do."""

    def __init__(self, directory: Path, holder: LockHolder, hint: str) -> None:
        self.directory, self.holder = directory, holder
        super().__init__(f"{self.busy_line()}; {hint}")

    def busy_line(self) -> str:
        return (
            f"{self.directory}: another sweepbook process ({self.holder.describe()}) "
            "is using this store"
        )


def _writer_tag() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


# ".<target name>.<pid>@<host>.<mkstemp letters>.tmp" and "<ns>-<hex>-<pid>@<host>.<kind>.parquet"
_TMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)@(?P<host>[^/]+)\.[A-Za-z0-9_]+\.tmp$")
_PART_NAME = re.compile(r"^\d+-[0-9a-f]+-(?P<pid>\d+)@(?P<host>[^/]+)\.history\.parquet$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM  # alive, owned by someone else
    return True


def _writer_gone(path: Path, match: re.Match[str] | None) -> bool:
    """Whether the writer of ``path`` has certainly stopped: a dead process on this host, or an
    untouched file older than ``STALE_AFTER_SECONDS``."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_AFTER_SECONDS:
        return True
    if match is None or match["host"] != socket.gethostname():
        return False
    return not _pid_alive(int(match["pid"]))


def _is_debris(path: Path, *, parts: bool) -> bool:
    if path.name.endswith(".tmp"):
        return _writer_gone(path, _TMP_NAME.match(path.name))
    if parts and path.name.endswith(".history.parquet"):
        runs = path.with_name(path.name.removesuffix(".history.parquet") + ".runs.parquet")
        return not runs.exists() and _writer_gone(path, _PART_NAME.match(path.name))
    return False


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through ``write(tmp_path)`` to a temporary file beside ``path``, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; reports are meant to be shared
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as error:  # polars raises several types for a damaged file
        raise StoreError(
            f"{path}: cannot read Parquet file ({error}); delete it to redo its runs"
        ) from None


class Store:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def runs_path(self) -> Path:
        return self.directory / RUNS_FILE

    @property
    def history_path(self) -> Path:
        return self.directory / HISTORY_FILE

    @property
    def parts_dir(self) -> Path:
        return self.directory / PARTS_DIR

    def _read(
        self, main: Path, suffix: str, key: list[str], empty: Mapping[str, type[pl.DataType]]
    ) -> pl.DataFrame:
        """Main file plus parts, oldest first; the latest row of each ``key`` wins. With nothing
        stored, an empty frame of schema ``empty``."""
        frames = [_read_parquet(main)] if main.is_file() else []
        frames += [_read_parquet(part) for part in self._committed_parts(suffix)]
        if not frames:
            return pl.DataFrame(schema=empty)
        combined = pl.concat(frames, how="diagonal_relaxed")
        return combined.unique(subset=key, keep="last", maintain_order=True)

    def _committed_parts(self, suffix: str) -> list[Path]:
        """Parts of kind ``suffix`` whose runs part exists, oldest first: a history part alone
        is a chunk still being written, or one whose writer was killed."""
        if not self.parts_dir.is_dir():
            return []
        runs = sorted(self.parts_dir.glob("*.runs.parquet"))
        return runs if suffix == "runs" else _history_parts(runs)

    def read_runs(self) -> pl.DataFrame:
        """Every stored run (one row per run id)."""
        empty = {"run_id": pl.String, "status": pl.String}
        return self._read(self.runs_path, "runs", ["run_id"], empty)

    def read_history(self) -> pl.DataFrame:
        """Every stored epoch (one row per run id and epoch)."""
        empty = {"run_id": pl.String, "epoch": pl.Int32}
        return self._read(self.history_path, "history", ["run_id", "epoch"], empty)

    def completed_ids(self, also: tuple[str, ...] = ()) -> set[str]:
        """Runs not to train again: status ``ok`` or ``diverged``, or one of ``also`` (a halving
        sweep never trains a ``stopped`` run again; a sweep without halving trains it fully)."""
        runs = self.read_runs()
        done = runs.filter(pl.col("status").is_in([*DONE_STATUSES, *also]))
        return set(done["run_id"].to_list())

    def append(self, runs: pl.DataFrame, history: pl.DataFrame) -> None:
        """Persist finished runs now, as a part file pair (history first: runs commit it)."""
        stem = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}-{_writer_tag()}"
        atomic_write(self.parts_dir / f"{stem}.history.parquet", history.write_parquet)
        atomic_write(self.parts_dir / f"{stem}.runs.parquet", runs.write_parquet)

    def merge(self) -> None:
        """Fold complete part pairs into the main files and delete them. Only the lock holder
        merges (two merges could each delete parts the other folded before writing). Safe to
        kill at any point: until the parts are gone, readers dedupe them against the main files.
        A part that appears during the merge is not listed, so it stays for the next one."""
        runs_parts = self._committed_parts("runs")
        if not runs_parts:
            return
        folded = runs_parts + _history_parts(runs_parts)  # the pairs listed, nothing newer
        history, runs = self.read_history(), self.read_runs()
        atomic_write(self.history_path, history.write_parquet)
        atomic_write(self.runs_path, runs.write_parquet)
        # Runs parts first: a history part left alone by a kill here is ignored as uncommitted.
        for part in sorted(folded, key=lambda path: not path.name.endswith(".runs.parquet")):
            part.unlink(missing_ok=True)

    def remove_debris(self) -> list[Path]:
        """Delete what killed writers left: temporary files and uncommitted history parts whose
        writer is gone. Call it holding the lock; returns what it removed."""
        removed = []
        for folder in (self.directory, self.parts_dir):
            if folder.is_dir():
                for path in folder.iterdir():
                    if _is_debris(path, parts=folder == self.parts_dir):
                        path.unlink(missing_ok=True)
                        removed.append(path)
        return removed

    @contextlib.contextmanager
    def lock(self, *, hint: str = "wait for it to finish") -> Iterator[None]:
        """Own the store until the block ends: an exclusive, non-blocking ``flock`` on
        ``.sweepbook.lock``, which records who holds it; then remove debris. Raises
        ``StoreLocked`` naming the holder, with ``hint``. The file is never deleted: a lock on
        a new file would not exclude a process still holding the old one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreLocked(self.directory, _read_holder(path), hint) from None
            holder = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
            self.remove_debris()
            yield
        finally:
            os.close(fd)  # closing releases the flock


def _history_parts(runs_parts: list[Path]) -> list[Path]:
    """The history part of each runs part, where it exists (it is written first)."""
    paths = (
        part.with_name(part.name.removesuffix(".runs.parquet") + ".history.parquet")
        for part in runs_parts
    )
    return [path for path in paths if path.is_file()]


def _read_holder(path: Path) -> LockHolder:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(pid=int(data["pid"]), host=str(data["host"]), since=str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return LockHolder(pid=None, host=None, since=None)  # the holder has not written it yet
