"""Which sweep a store belongs to, so that two studies never share one ``runs.parquet``.

A store belongs to the sweep file that created it: ``sweep.json`` records that file's resolved
path, and its path as seen from the store. "The same sweep" is that file, however it is edited
or widened since, found either at the recorded path or at the recorded place relative to the
store (a project copied or moved whole, store included). A different sweep file is refused,
even one of the same name (``other/dir/x.toml`` would otherwise land in ``reports/x``). When
the recorded file no longer exists (the project was moved, the store copied to another
machine), the store is taken to be the same sweep if the sweep file and its experiment file
have the names recorded.
"""

from __future__ import annotations

from pathlib import Path

from sweepbook.config import ConfigError, Sweep
from sweepbook.report import SWEEP_RECORD, read_json, seen_from_store


def check_store_owner(directory: Path, sweep: Sweep) -> None:
    """Raise :class:`ConfigError` (one line naming both sweep files and suggesting ``--out``)
    when ``directory`` holds the store of another sweep; a new directory belongs to anyone."""
    record_path = directory / SWEEP_RECORD
    if not record_path.is_file():
        return
    record = read_json(record_path)
    recorded = Path(str(record.get("sweep_file", "")))
    from_store = record.get("sweep_file_from_store")  # absent in stores written before it
    if recorded == sweep.path or from_store == seen_from_store(sweep.path, directory):
        return
    recorded_experiment = Path(str(record.get("experiment_file", "")))
    moved = not recorded.exists()
    if moved and (recorded.name, recorded_experiment.name) == (
        sweep.path.name,
        sweep.experiment_path.name,
    ):
        return
    whose = f"{recorded} (no longer there; its experiment {recorded_experiment.name})"
    raise ConfigError(
        sweep.path,
        None,
        f"{directory} holds the runs of another sweep, {whose if moved else recorded}; "
        "pass --out DIR to store this sweep's runs apart",
    )
