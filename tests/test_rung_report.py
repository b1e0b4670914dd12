"""The report's view of a successive halving from a hand-made store: the rung table's counts and
run-epochs, the stopped configurations listed apart, the curves across rungs; a store without
halving has none, and keeps its fingerprint."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sweepbook.halving import STOPPED
from sweepbook.results import RUNGS_SCHEMA, data_fingerprint, load_results
from sweepbook.rung_report import halving_view
from synthetic_store import write_synthetic_store

# 4 learning rates x 2 seeds; rungs end at 1, 3 and 6 epochs; eta 2: 4 -> 2 -> 1 configuration.
ENDS = [1, 3, 6]
RECORD = {
    "compare": ["lr"],
    "axes": ["lr"],
    "run_ids": [f"{c}{s}" for c in "abcd" for s in "01"],
    "halving": {
        "min_epochs": 1,
        "eta": 2,
        "metric": "val.accuracy",
        "direction": "max",
        "rung_epochs": ENDS,
    },
}
LR = {"a": 0.1, "b": 0.01, "c": 0.001, "d": 0.0001}
# Rung values: d is worst at rung 0, c next; at rung 1 b falls behind a.
VALUES = {"a": [0.5, 0.8, 0.9], "b": [0.6, 0.7], "c": [0.3], "d": [0.2]}
STOPPED_AT = {"b": 1, "c": 0, "d": 0}


def _runs_and_ledger() -> tuple[pl.DataFrame, pl.DataFrame]:
    runs, ledger = [], []
    for config, values in VALUES.items():
        for seed in (0, 1):
            run_id = f"{config}{seed}"
            stopped = config in STOPPED_AT
            runs.append(
                {
                    "run_id": run_id,
                    "status": STOPPED if stopped else "ok",
                    "lr": LR[config],
                    "seed": seed,
                    "rung": STOPPED_AT.get(config, len(ENDS) - 1),
                }
            )
            for rung, value in enumerate(values):
                # the seeds straddle the configuration's mean by 0.02
                noisy = value + (0.02 if seed else -0.02)
                ledger.append((run_id, rung, ENDS[rung], "val.accuracy", noisy))
    return pl.DataFrame(runs), pl.DataFrame(ledger, schema=RUNGS_SCHEMA, orient="row")


def test_the_rung_table_counts_configurations_runs_and_run_epochs() -> None:
    runs, ledger = _runs_and_ledger()
    view = halving_view(runs, ledger, RECORD)
    assert view is not None
    cells = [row.cells for row in view.table.rows]
    # rung, epochs, configurations, runs, run-epochs in it, so far, share of the full grid (48)
    assert cells == [
        ["1", "1", "4", "8", "8", "8", "17%"],
        ["2", "2–3", "2", "4", "8", "16", "33%"],
        ["3", "4–6", "1", "2", "6", "22", "46%"],
    ]
    assert "22 run-epochs of a full grid's 48 (8 runs × 6 epochs): 46%, saving 54%" in (
        view.summary
    )
    assert "rungs end at 1, 3, 6 epochs" in view.settings and "1/2" in view.settings


def test_stopped_configurations_are_listed_apart_latest_first_with_their_rung_mean() -> None:
    runs, ledger = _runs_and_ledger()
    view = halving_view(runs, ledger, RECORD)
    assert view is not None
    rows = [row.cells for row in view.stopped.rows]
    assert [row[:4] for row in rows] == [
        ["lr=0.01", "2", "3", "2"],
        ["lr=0.0001", "1", "1", "2"],
        ["lr=0.001", "1", "1", "2"],
    ]
    assert rows[0][4].startswith("0.7000 ± 0.0283")  # mean and std over the two seeds
    assert not any("lr=0.1" in row[0] for row in rows)  # the survivor is in the results table


def test_curves_follow_each_configuration_and_mark_the_survivors() -> None:
    runs, ledger = _runs_and_ledger()
    view = halving_view(runs, ledger, RECORD)
    assert view is not None
    curves = {curve.label: curve for curve in view.curves}
    assert curves["lr=0.1"].epochs == [1, 3, 6] and curves["lr=0.1"].reached_last
    assert [round(m, 6) for m in curves["lr=0.1"].means] == [0.5, 0.8, 0.9]
    assert curves["lr=0.01"].epochs == [1, 3] and not curves["lr=0.01"].reached_last
    assert view.curves[-1].label == "lr=0.1"  # drawn last, over the pale ones
    assert "3 epochs 0.8000" in curves["lr=0.1"].tip


def test_a_sweep_without_halving_has_no_view_and_keeps_its_fingerprint(tmp_path: Path) -> None:
    runs, ledger = _runs_and_ledger()
    assert halving_view(runs, ledger, {**RECORD, "halving": None}) is None
    store = write_synthetic_store(tmp_path / "plain", {"lr": [0.1, 0.01]})
    stored = load_results(store)
    assert stored.rungs.is_empty()
    assert stored.fingerprint() == data_fingerprint(stored.runs, stored.history)
