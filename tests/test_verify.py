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
from sweepbook import engine
from sweepbook.cli import EXIT_FAILURE, EXIT_OK, main
from sweepbook.models import FAST_CPU_NUMERICS, LEGACY_NUMERICS, PATCHES_NUMERICS, choose_numerics
from sweepbook.store import Store, atomic_write
from sweepbook.verify import device_note, same_bits


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
    assert {run["numerics"] for run in record["runs"]} == {"dense"}
    assert set(Store(store_dir).read_runs()["numerics"]) == {"dense"}
    assert record["verified_at"] and record["device"].startswith("cpu:0 cpu ")
    assert set(Store(store_dir).read_runs()["device"]) == {record["device"]}  # names the CPU
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


HERE = "cpu:0 cpu AMD EPYC (x86_64 AVX2 FMA)"


@pytest.mark.parametrize(
    ("trained_on", "says"),
    [
        (HERE, None),
        (None, None),
        ("cpu:0 cpu", "the store does not record which CPU trained it (retrained on " + HERE),
        ("cpu:0 cpu Intel Xeon (x86_64 AVX-512 FMA)", "trained on cpu:0 cpu Intel Xeon (x86_64"),
        ("gpu:0 NVIDIA H100", "trained on gpu:0 NVIDIA H100, retrained on " + HERE),
    ],
)
def test_a_difference_says_where_the_run_was_trained_when_not_here(trained_on, says) -> None:
    note = device_note(trained_on, HERE)
    assert (note == "") if says is None else (says in note and "round differently" in note)


def test_a_gpu_whose_name_extends_another_is_another_device_not_an_unrecorded_cpu() -> None:
    note = device_note("gpu:0 NVIDIA H100", "gpu:0 NVIDIA H100 80GB HBM3")
    assert "trained on gpu:0 NVIDIA H100, retrained on gpu:0 NVIDIA H100 80GB HBM3" in note


# --- conv nets: numerics recorded per run; stores from before the column ----------------------

CONV_SWEEP = """\
# Does LeNet-5 train on the 8x8 digits?
# Run: sweepbook run sweeps/conv.toml
experiment = "tiny"
seeds = [0, 1]

[set]
"model.kind" = "lenet5"
"model.widths" = []
"train.epochs" = 2
"""


@pytest.fixture(scope="module")
def older_conv_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 store as sweepbook wrote it before numerics existed: trained in the legacy
    formulation, with no ``numerics`` column."""
    root = write_project(tmp_path_factory.mktemp("older"), {"conv": CONV_SWEEP})
    out = root / "reports" / "conv"
    cache = tmp_path_factory.getbasetemp() / "xla-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "choose_numerics", lambda kind, platform: LEGACY_NUMERICS.name)
        command = ["run", str(root / "sweeps" / "conv.toml"), "--out", str(out), "--no-report"]
        assert main([*command, "--compile-cache", str(cache)]) == EXIT_OK
    store = Store(out)
    assert set(store.read_runs()["numerics"]) == {LEGACY_NUMERICS.name}
    atomic_write(store.runs_path, store.read_runs().drop("numerics").write_parquet)
    return root


@pytest.fixture
def older_conv(older_conv_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(older_conv_store, copy)
    return copy


def test_an_older_conv_store_verifies_resumes_and_renders(older_conv: Path, capsys) -> None:
    out = older_conv / "reports" / "conv"
    assert main(["verify", str(out), "--runs", "2", "--no-report"]) == EXIT_OK
    record = json.loads((out / "verification.json").read_text())
    assert record["reproduced"] == 2
    assert {run["numerics"] for run in record["runs"]} == {LEGACY_NUMERICS.name}

    sweep = older_conv / "sweeps" / "conv.toml"
    sweep.write_text(sweep.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    assert main(["run", str(sweep), "--out", str(out)]) == EXIT_OK
    assert "3 runs planned, 2 already stored, 1 to train" in capsys.readouterr().err
    runs = Store(out).read_runs().sort("seed")
    # The older runs keep their ids and say nothing; the new one says how it was trained.
    assert runs["numerics"].to_list() == [None, None, choose_numerics("lenet5", "cpu")]
    assert (out / "index.html").is_file()
    assert main(["report", "--check", str(out)]) == EXIT_OK


def test_verify_names_the_formulation_of_a_differing_run(older_conv: Path, capsys) -> None:
    out = older_conv / "reports" / "conv"
    store = Store(out)
    # Claim the fast formulation for runs trained in the legacy one: they differ by rounding.
    claimed = store.read_runs().with_columns(numerics=pl.lit(FAST_CPU_NUMERICS.name))
    atomic_write(store.runs_path, claimed.write_parquet)
    assert main(["verify", str(out), "--runs", "1", "--no-report"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert f"trained in numerics {FAST_CPU_NUMERICS.name}, replayed in the same" in err

    unknown = claimed.with_columns(numerics=pl.lit("conv=winograd,pool=reshape"))
    atomic_write(store.runs_path, unknown.write_parquet)
    assert main(["verify", str(out), "--runs", "1", "--no-report"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "not retrained: trained in numerics conv=winograd,pool=reshape" in err
    assert "cannot build" in err


def test_a_store_trained_in_patches_verifies_and_grows_in_slices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs stored by the sweepbook whose CPU formulation was patches (commit 8287de8 until
    slices) replay in it bit for bit; the runs a widened sweep adds train in slices."""
    root = write_project(tmp_path, {"conv": CONV_SWEEP})
    out = root / "reports" / "conv"
    sweep = root / "sweeps" / "conv.toml"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "choose_numerics", lambda kind, platform: PATCHES_NUMERICS.name)
        assert main(["run", str(sweep), "--out", str(out), "--no-report"]) == EXIT_OK
    assert main(["verify", str(out), "--runs", "2", "--no-report"]) == EXIT_OK
    record = json.loads((out / "verification.json").read_text())
    assert record["reproduced"] == 2
    assert {run["numerics"] for run in record["runs"]} == {PATCHES_NUMERICS.name}

    sweep.write_text(sweep.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    assert main(["run", str(sweep), "--out", str(out), "--no-report"]) == EXIT_OK
    runs = Store(out).read_runs().sort("seed")
    assert runs["numerics"].to_list() == [PATCHES_NUMERICS.name] * 2 + [FAST_CPU_NUMERICS.name]
    # Each replays in its own formulation, the new run in slices too.
    assert main(["verify", str(out), "--runs", "3", "--no-report"]) == EXIT_OK
    record = json.loads((out / "verification.json").read_text())
    assert record["reproduced"] == 3
    assert sorted(run["numerics"] for run in record["runs"]) == sorted(runs["numerics"])
    capsys.readouterr()
