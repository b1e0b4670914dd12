"""The store's layout, row schema and reader (sweepbook.results)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sweepbook.plan import PlannedRun, run_id
from sweepbook.results import (
    HISTORY_COLUMNS,
    PROVENANCE,
    SWEEP_RECORD,
    VERIFICATION_FILE,
    data_fingerprint,
    failed_row,
    history_frame,
    load_results,
    result_row,
    runs_frame,
)
from sweepbook.store import Store, StoreError
from sweepbook.train import EpochRecord, Evaluation, RunOutput
from synthetic_store import write_synthetic_store

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1"


def output(epochs_run: int, *, planned_epochs: int = 4, classes: int = 3) -> RunOutput:
    """What a compiled program returns for one run: curves NaN after the run stopped."""
    curve = np.full(planned_epochs, np.nan, dtype=np.float32)
    curve[:epochs_run] = np.linspace(1.0, 0.5, epochs_run)
    probabilities = np.eye(classes, dtype=np.float32)[[0, 1, 2, 0]]
    evaluation = Evaluation(np.float32(0.25), np.float32(1.0), np.float32(1.0), probabilities)
    return RunOutput(
        history=EpochRecord(*(curve.copy() for _ in EpochRecord._fields)),
        val=evaluation,
        test=evaluation,
        best_epoch=np.int32(epochs_run),
        epochs_run=np.int32(epochs_run),
        diverged=np.bool_(False),
        params=np.int32(100),
        nonzero_params=np.int32(90),
        model_bytes=np.float32(400.0),
    )


def test_history_rows_have_the_schema_columns_for_the_epochs_trained():
    frame = history_frame("abc", output(epochs_run=3))
    assert frame.columns == ["run_id", "epoch", *HISTORY_COLUMNS]
    assert frame["epoch"].to_list() == [1, 2, 3] and frame["epoch"].dtype == pl.Int32
    assert not frame["val.loss"].is_nan().any()  # the NaN tail of a stopped run is cut


def test_run_rows_of_a_trained_and_a_failed_run_share_the_identity_columns(make_run_config):
    config = make_run_config()
    run = PlannedRun(run_id(config), None, config)
    labels = np.array([0, 1, 2, 0])
    split = type("SplitLabels", (), {"y_val": labels, "y_test": labels})()
    origin = {"host": "h", "device": "cpu", "git_commit": None}
    trained = result_row(run, output(3), split, 1.5, "g0", origin)
    failed = failed_row(run, RuntimeError("out of memory"), "g0", origin)
    frame = runs_frame([trained, failed])
    assert frame["status"].to_list() == ["ok", "failed"]
    assert frame["error"].to_list() == [None, "RuntimeError: out of memory"]
    assert trained["test.accuracy"] == 1.0 and trained["epochs_run"] == 3
    assert "test.reliability_count" in trained and "val.reliability_count" not in trained
    for column in ("run_id", "config", "compile_group", "host", "finished_at", *run.flat):
        assert column in failed and column in trained


def test_load_results_reads_the_planned_runs_only(tmp_path):
    store = write_synthetic_store(tmp_path / "s", {"optimizer.learning_rate": [0.1, 0.2]}, seeds=2)
    record = json.loads((store / SWEEP_RECORD).read_text())
    planned = record["run_ids"][:3]  # the fourth run is in the store, not in this sweep
    (store / SWEEP_RECORD).write_text(json.dumps({**record, "run_ids": planned}))
    results = load_results(store)
    assert sorted(results.runs["run_id"]) == sorted(planned)
    assert set(results.history["run_id"]) == set(planned)
    assert results.planned == set(planned) and results.provenance == {"python": "3.11"}
    assert results.fingerprint() == data_fingerprint(results.runs, results.history)
    assert results.verification() is None


def test_load_results_sees_parts_not_yet_merged(tmp_path):
    store = shutil.copytree(FIXTURE, tmp_path / "store")
    before = load_results(store)
    extra = before.runs.head(1).with_columns(pl.lit("ok").alias("status"))
    Store(store).append(extra.with_columns(pl.lit(7).alias("epochs_run")), before.history.head(0))
    after = load_results(store)
    assert after.runs.height == before.runs.height
    assert after.fingerprint() != before.fingerprint()  # the part's row is the latest


def test_a_store_without_provenance_reads_for_freshness_but_not_for_the_report(tmp_path):
    store = shutil.copytree(FIXTURE, tmp_path / "store")
    (store / PROVENANCE).unlink()
    with pytest.raises(StoreError, match=r"provenance\.json: missing"):
        load_results(store)
    assert load_results(store, with_provenance=False).runs.height > 0


def test_verification_is_read_when_present(tmp_path):
    store = shutil.copytree(FIXTURE, tmp_path / "store")
    (store / VERIFICATION_FILE).write_text(json.dumps({"checked": 1}))
    assert load_results(store).verification() == {"checked": 1}
