"""``sweepbook verify``: stored runs retrained in their recorded chunk shape match bit for bit;
a tampered metric is caught and named; the report shows the last verification."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import write_project
from sweepbook.cli import EXIT_FAILURE, EXIT_OK, main
from sweepbook.store import Store, atomic_write
from sweepbook.verify import same_bits


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sweep (4 runs, one chunk of 4), trained once for the module."""
    root = write_project(tmp_path_factory.mktemp("verify"))
    out = root / "reports" / "tiny"
    cache = tmp_path_factory.getbasetemp() / "xla-cache"  # module scope: no autouse fixture yet
    command = ["run", str(root / "sweeps" / "tiny.toml"), "--out", str(out)]
    assert main([*command, "--no-report", "--compile-cache", str(cache)]) == EXIT_OK
    return out


@pytest.fixture
def store_dir(trained_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "reports" / "tiny"
    shutil.copytree(trained_store, copy)
    return copy


def test_verify_reproduces_stored_runs_bit_for_bit(store_dir: Path, capsys) -> None:
    assert main(["verify", str(store_dir), "--runs", "2"]) == EXIT_OK

    record = json.loads((store_dir / "verification.json").read_text())
    assert (record["checked"], record["reproduced"]) == (2, 2)
    chosen = sorted(Store(store_dir).read_runs()["run_id"])[:2]  # first two by run id
    assert [run["run_id"] for run in record["runs"]] == chosen
    assert all(run["chunk_size"] == 4 and run["difference"] is None for run in record["runs"])
    assert record["verified_at"] and record["device"].startswith("cpu")
    err = capsys.readouterr().err
    assert f"reproduced {chosen[0]} (chunk of 4)" in err
    assert "2/2 runs reproduced bit for bit" in err
    html = (store_dir / "index.html").read_text()
    assert "last verification" in html and "2/2 runs reproduced bit for bit" in html
    # The verification is not a stored result: the report stays up to date for --check.
    assert main(["report", "--check", str(store_dir)]) == EXIT_OK


def test_a_tampered_metric_is_reported_and_fails(store_dir: Path, capsys) -> None:
    store = Store(store_dir)
    runs = store.read_runs().sort("run_id")
    victim = runs["run_id"][1]
    nudged = pl.col("test.accuracy").map_elements(
        lambda value: float(np.nextafter(value, 2.0)), return_dtype=pl.Float64
    )
    tampered = runs.with_columns(
        pl.when(pl.col("run_id") == victim).then(nudged).otherwise(pl.col("test.accuracy"))
    )
    atomic_write(store.runs_path, tampered.write_parquet)  # one unit in the last place

    assert main(["verify", str(store_dir), "--runs", "4", "--no-report"]) == EXIT_FAILURE

    err = capsys.readouterr().err
    assert f"DIFFERS {victim}: test.accuracy: stored " in err
    assert "3/4 runs reproduced bit for bit" in err
    record = json.loads((store_dir / "verification.json").read_text())
    differing = [run for run in record["runs"] if not run["reproduced"]]
    assert [run["run_id"] for run in differing] == [victim]
    assert differing[0]["difference"].startswith("test.accuracy: stored ")
    # A figure no longer drawn is removed by the next render; another writer's temp file is not.
    (store_dir / "figures").mkdir(exist_ok=True)
    old_figure = store_dir / "figures" / "no_longer_drawn.svg"
    in_flight = store_dir / "figures" / ".learning_curves_loss.svg.1@elsewhere.abc.tmp"
    old_figure.write_text("<svg/>")
    in_flight.write_text("<sv")
    assert main(["report", str(store_dir)]) == EXIT_OK
    assert not old_figure.exists() and in_flight.exists()
    assert (store_dir / "figures" / "learning_curves_loss.svg").is_file()
    html = (store_dir / "index.html").read_text()
    assert f"3/4 runs reproduced bit for bit; differing: {victim} (test.accuracy" in html


@pytest.mark.parametrize(
    ("stored", "retrained", "same"),
    [
        (float("nan"), float("nan"), True),
        (0.0, -0.0, False),
        (0.1, 1 / 10, True),
        (0.1, float(np.nextafter(0.1, 1.0)), False),
        ([1.0, 2.0], [1.0, 2.0], True),
        ([1.0, 2.0], [1.0], False),
        (3, 3.0, False),
        (None, None, True),
        ("ok", "diverged", False),
    ],
)
def test_same_bits(stored, retrained, same) -> None:
    assert same_bits(stored, retrained) is same
