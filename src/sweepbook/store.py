"""The results store of one sweep: ``runs.parquet`` and ``history.parquet`` via Polars.

Completed work is appended as small part files under ``parts/`` (history first, then runs:
a runs part is the commit marker of its history) and merged into the two main files at the
end of a sweep. Every file is written to a temporary name and renamed, so a killed process
leaves either the old file or the new one, never half of one. Readers always see main files
plus parts, with duplicate rows dropped, so a sweep killed before its merge loses nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

RUNS_FILE = "runs.parquet"
HISTORY_FILE = "history.parquet"
PARTS_DIR = "parts"
DONE_STATUSES = ("ok", "diverged")  # a failed run is retried by the next sweep


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


class StoreError(RuntimeError):
    """A store file that cannot be read; the message names it."""


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through ``write(tmp_path)`` to a temporary file beside ``path``, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
        if self.parts_dir.is_dir():
            frames += [_read_parquet(p) for p in sorted(self.parts_dir.glob(f"*.{suffix}.parquet"))]
        if not frames:
            return pl.DataFrame(schema=empty)
        combined = pl.concat(frames, how="diagonal_relaxed")
        return combined.unique(subset=key, keep="last", maintain_order=True)

    def read_runs(self) -> pl.DataFrame:
        """Every stored run (one row per run id)."""
        empty = {"run_id": pl.String, "status": pl.String}
        return self._read(self.runs_path, "runs", ["run_id"], empty)

    def read_history(self) -> pl.DataFrame:
        """Every stored epoch (one row per run id and epoch)."""
        empty = {"run_id": pl.String, "epoch": pl.Int32}
        return self._read(self.history_path, "history", ["run_id", "epoch"], empty)

    def completed_ids(self) -> set[str]:
        runs = self.read_runs()
        return set(runs.filter(pl.col("status").is_in(DONE_STATUSES))["run_id"].to_list())

    def append(self, runs: pl.DataFrame, history: pl.DataFrame) -> None:
        """Persist finished runs now, as a part file pair (history first: runs commit it)."""
        stem = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        atomic_write(self.parts_dir / f"{stem}.history.parquet", history.write_parquet)
        atomic_write(self.parts_dir / f"{stem}.runs.parquet", runs.write_parquet)

    def merge(self) -> None:
        """Fold part files into the main files. Safe to kill at any point: readers dedupe."""
        if not self.parts_dir.is_dir():
            return
        parts = sorted(self.parts_dir.glob("*.parquet"))
        if not parts:
            return
        history, runs = self.read_history(), self.read_runs()
        atomic_write(self.history_path, history.write_parquet)
        atomic_write(self.runs_path, runs.write_parquet)
        for part in parts:
            part.unlink(missing_ok=True)
