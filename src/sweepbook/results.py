"""What a sweep's store holds and how it is read: the layout of a store directory, the row
schema of ``runs.parquet`` and ``history.parquet`` (the engine and the benchmark write rows with
the builders below), and :func:`load_results`, the one reader the report uses.

The layout and the columns are a contract with every store on disk: a new file or column is
fine, a renamed one needs a migration (see ``tests/test_compat.py``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from sweepbook.halving import RUNGS_FILE
from sweepbook.metrics import classification_metrics, regression_metrics, reliability
from sweepbook.store import HISTORY_FILE, RUNS_FILE, Store, StoreError, _read_parquet
from sweepbook.tasks import HOST_METRICS, HostMetric, user_metric_values

if TYPE_CHECKING:  # the report reads stores without importing the training code
    from sweepbook.data import Split
    from sweepbook.plan import PlannedRun
    from sweepbook.train import Evaluation, RunOutput

# --- the layout of a store directory (``reports/<sweep>/``) ----------------------------------

STORE_FILES = (RUNS_FILE, HISTORY_FILE)  # the Parquet results (see store.py)
SWEEP_RECORD = "sweep.json"  # what the sweep asked: axes, metric, the run ids it planned
PROVENANCE = "provenance.json"  # code version, packages, device of the latest run
SWEEP_COPY = "sweep.toml"  # copies of the files the sweep was run from
EXPERIMENT_COPY = "experiment.toml"
REPORT_FILE = "index.html"
FIGURES_DIR = "figures"
TABLES_DIR = "tables"
REPORT_RECORD = "report.json"  # the fingerprint of the results the report was rendered from
VERIFICATION_FILE = "verification.json"  # written by ``sweepbook verify``
COMPARE_RECORD = "compare.json"  # a comparison report's record (``sweepbook compare``)

# rungs.parquet (successive halving): one row per run and rung it reached.
RUNGS_SCHEMA = {
    "run_id": pl.String,
    "rung": pl.Int64,
    "epochs": pl.Int64,
    "metric": pl.String,
    "value": pl.Float64,
}

# --- the row schema --------------------------------------------------------------------------

# Where a run was trained: host, device, job, commit (engine.Origin); columns of its row.
Origin = Mapping[str, str | None]
# history.parquet: after ``run_id`` and ``epoch``, one column per field of the epoch record.
HISTORY_COLUMNS = {
    "lr": "lr",
    "train.loss": "train_loss",
    "train.accuracy": "train_accuracy",
    "val.loss": "val_loss",
    "val.accuracy": "val_accuracy",
    "val.f1_macro": "val_f1_macro",
}


def evaluation_columns(
    split: str,
    evaluation: Evaluation,
    targets: np.ndarray,
    task: str = "classification",
    metrics: Sequence[HostMetric] = (),
) -> dict[str, Any]:
    """``<split>.loss`` from the program, every other metric from the predictions: the class
    probabilities' metrics (and the test set's reliability bins), or a regression's errors (and
    the test set's predictions and targets, for the report's figures); then the users'
    ``metrics``, on the predictions in the shape of the targets."""
    predictions = np.asarray(evaluation.predictions, dtype=np.float64)
    computed: dict[str, Any]
    if task == "regression":
        predictions = predictions.reshape(targets.shape)
        computed = {**regression_metrics(predictions, targets)}
        if split == "test":
            computed["predictions"] = predictions.ravel().tolist()
            computed["targets"] = targets.astype(np.float64).ravel().tolist()
            computed["outputs"] = int(np.prod(targets.shape[1:], dtype=np.int64))
    else:
        computed = dict(classification_metrics(predictions, targets))
        if split == "test":  # the reliability diagram of the report
            computed.update(reliability(predictions, targets))
    computed.update(user_metric_values(list(metrics), predictions, targets))
    return {
        f"{split}.loss": float(evaluation.loss),
        **{f"{split}.{k}": v for k, v in computed.items()},
    }


def user_code_column(run: PlannedRun) -> dict[str, str]:
    """The ``user_code`` column of a run that used users' code: ``{reference: sha256}`` as
    JSON, what ``api.check_user_code`` compares before a store is resumed; no column else."""
    from sweepbook.usercode import identities

    found = identities(run.flat)
    if not found:
        return {}
    return {"user_code": json.dumps({ref: i.sha256 for ref, i in found.items()}, sort_keys=True)}


def result_row(
    run: PlannedRun,
    out: RunOutput,
    split: Split,
    seconds: float,
    group_id: str,
    origin: Origin,
) -> dict[str, Any]:
    """The ``runs.parquet`` row of a run that trained (status ``ok`` or ``diverged``)."""
    epochs_run = int(out.epochs_run)
    best_epoch = int(out.best_epoch)
    # Train metrics belong to the epoch whose parameters were evaluated.
    reported_epoch = best_epoch if run.config.train.early_stopping.restore_best else epochs_run
    index = max(reported_epoch, 1) - 1
    params = int(out.params)
    task = run.config.task
    metrics = [HOST_METRICS[reference] for reference in run.config.metrics]
    train_accuracy = (
        {"train.accuracy": float(out.history.train_accuracy[index])}
        if task == "classification"
        else {}
    )
    return {
        "run_id": run.run_id,
        "status": "diverged" if bool(out.diverged) else "ok",
        "error": None,
        "variant": run.variant,
        "search.trial": run.trial,
        "repeat": run.repeat,
        **run.flat,
        **evaluation_columns("test", out.test, split.y_test, task, metrics),
        **evaluation_columns("val", out.val, split.y_val, task, metrics),
        **train_accuracy,
        "train.loss": float(out.history.train_loss[index]),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "params": params,
        "nonzero_params": int(out.nonzero_params),
        "model_bytes": float(out.model_bytes),
        "train_seconds": seconds,
        "compile_group": group_id,
        **origin,
        **user_code_column(run),
        "config": run.config_json,
        "finished_at": dt.datetime.now(dt.UTC),
    }


def failed_row(
    run: PlannedRun, error: BaseException, group_id: str, origin: Origin
) -> dict[str, Any]:
    """The ``runs.parquet`` row of a run that raised: no metrics, the error in one line."""
    return {
        "run_id": run.run_id,
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "variant": run.variant,
        "search.trial": run.trial,
        "repeat": run.repeat,
        **run.flat,
        "compile_group": group_id,
        **origin,
        **user_code_column(run),
        "config": run.config_json,
        "finished_at": dt.datetime.now(dt.UTC),
    }


def history_frame(run_id: str, out: RunOutput) -> pl.DataFrame:
    """The ``history.parquet`` rows of a run: one per epoch it trained."""
    history = {name: np.asarray(values) for name, values in out.history._asdict().items()}
    epochs = int(out.epochs_run)
    return pl.DataFrame(
        {
            "run_id": [run_id] * epochs,
            "epoch": np.arange(1, epochs + 1, dtype=np.int32),
            **{column: history[field][:epochs] for column, field in HISTORY_COLUMNS.items()},
        }
    )


def runs_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows as one frame. Lists (e.g. model.widths) stay lists; None columns get a type from
    the other rows."""
    return pl.DataFrame(rows, infer_schema_length=None)


# --- reading a store -------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object of the store; :class:`StoreError` naming the file when it cannot be."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(
            f"{path}: missing; is this a sweepbook store? (run 'sweepbook run' first)"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise StoreError(f"{path}: cannot read ({error})") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object")
    return data


def data_fingerprint(runs: pl.DataFrame, history: pl.DataFrame) -> str:
    """sha256 of the results the report was built from (row order and file layout ignored)."""
    digest = hashlib.sha256()
    for frame, key in ((runs, ["run_id"]), (history, ["run_id", "epoch"])):
        ordered = frame.sort(key).select(sorted(frame.columns))
        buffer = io.BytesIO()
        ordered.write_ipc(buffer)
        digest.update(buffer.getvalue())
    return digest.hexdigest()


@dataclass(frozen=True)
class SweepResults:
    """A sweep's store as the report sees it: the sweep record, the provenance record, and the
    runs and epochs of the run ids the sweep planned (a store directory may hold others)."""

    directory: Path
    record: dict[str, Any]
    provenance: dict[str, Any]
    runs: pl.DataFrame
    history: pl.DataFrame
    # A successive halving's rung values (``rungs.parquet``); empty for every other sweep.
    rungs: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def planned(self) -> set[str]:
        return set(self.record["run_ids"])

    def fingerprint(self) -> str:
        """sha256 of the runs and history; of the rung values too where there are any (so a
        store without halving keeps the fingerprint it always had)."""
        digest = data_fingerprint(self.runs, self.history)
        if self.rungs.is_empty():
            return digest
        buffer = io.BytesIO()
        self.rungs.sort(["run_id", "rung"]).select(sorted(self.rungs.columns)).write_ipc(buffer)
        return hashlib.sha256(digest.encode() + buffer.getvalue()).hexdigest()

    def verification(self) -> dict[str, Any] | None:
        """What the last ``sweepbook verify`` found, if it ever ran on this store."""
        path = self.directory / VERIFICATION_FILE
        return read_json(path) if path.is_file() else None


def load_results(directory: Path, *, with_provenance: bool = True) -> SweepResults:
    """Read the store in ``directory``: ``sweep.json``, ``provenance.json`` (skipped, as an empty
    record, ``with_provenance=False``: checking a report's freshness needs only the results),
    then the planned runs and history (main files plus committed parts). Stores written by older
    versions read as they are: columns they lack are simply absent."""
    directory = Path(directory)
    record = read_json(directory / SWEEP_RECORD)
    provenance = read_json(directory / PROVENANCE) if with_provenance else {}
    planned = set(record["run_ids"])
    store = Store(directory)
    runs = store.read_runs().filter(pl.col("run_id").is_in(planned))
    history = store.read_history().filter(pl.col("run_id").is_in(planned))
    rungs = read_rungs(directory).filter(pl.col("run_id").is_in(planned))
    return SweepResults(directory, record, provenance, runs, history, rungs)


def read_rungs(directory: Path) -> pl.DataFrame:
    """``rungs.parquet`` of a successive halving: (run_id, rung, epochs, metric, value) per run
    and rung it reached; an empty frame of those columns where the sweep has none."""
    path = Path(directory) / RUNGS_FILE
    if not path.exists():
        return pl.DataFrame(schema=RUNGS_SCHEMA)
    return _read_parquet(path)
