"""A run that diverges stops early and is stored as 'diverged'; a chunk whose program raises is
stored as 'failed' with its error; the sweep goes on, and the report lists both."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sweepbook import engine
from sweepbook.cli import EXIT_FAILURE, main
from sweepbook.store import Store


@pytest.fixture
def troubled_sweep(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Three learning rates x 2 seeds, one chunk per rate: 3e-3 trains, 1e37 diverges (SGD on
    tanh overflows), and the program raises for 3e-2 (as an out-of-memory error would)."""
    sweep = project / "sweeps" / "tiny.toml"
    sweep.write_text(
        sweep.read_text().replace(
            '[grid]\n"optimizer.learning_rate" = [3e-3, 3e-2]\n',
            '[set]\n"optimizer.name" = "sgd"\n"model.activation" = "tanh"\n\n'
            '[grid]\n"optimizer.learning_rate" = [3e-3, 3e-2, 1e37]\n',
        )
    )
    engine.forget_compiled_programs()  # the wrapper below must be what the engine calls
    real_compile = engine.compile_program

    def compile_with_a_raising_chunk(*args, **options):
        program = real_compile(*args, **options)

        def run(hyper, data):
            if np.isclose(float(hyper.learning_rate[0]), 3e-2):
                raise RuntimeError("RESOURCE_EXHAUSTED: injected out of memory")
            return program(hyper, data)

        return run

    monkeypatch.setattr(engine, "compile_program", compile_with_a_raising_chunk)
    monkeypatch.chdir(project)
    yield sweep
    engine.forget_compiled_programs()


def test_diverged_and_failed_runs_are_stored_reported_and_the_sweep_goes_on(
    troubled_sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["run", "sweeps/tiny.toml", "--runs-per-chunk", "2"]
    assert main(command) == EXIT_FAILURE  # some runs failed

    err = capsys.readouterr().err
    assert "2 ok, 2 diverged, 2 failed" in err
    assert err.count("RESOURCE_EXHAUSTED: injected out of memory") == 2
    store = Store(Path("reports/tiny"))
    runs = store.read_runs().sort("optimizer.learning_rate")
    assert runs["status"].to_list() == ["ok", "ok", "failed", "failed", "diverged", "diverged"]
    failed = runs.filter(pl.col("status") == "failed")
    assert (failed["error"] == "RuntimeError: RESOURCE_EXHAUSTED: injected out of memory").all()
    diverged = runs.filter(pl.col("status") == "diverged")
    epochs = diverged["epochs_run"].to_list()
    assert all(epoch < 4 for epoch in epochs)  # stopped before train.epochs
    history = store.read_history()
    for run_id, epoch in zip(diverged["run_id"], epochs, strict=True):
        assert history.filter(pl.col("run_id") == run_id).height == epoch
    assert history.filter(pl.col("run_id").is_in(failed["run_id"].to_list())).is_empty()

    html = Path("reports/tiny/index.html").read_text()
    assert "6 runs planned: 2 ok, 2 diverged, 2 failed." in html
    problems = html[html.index('<section id="problems">') :]
    problems = problems[: problems.index("</section>")]
    for row in runs.filter(pl.col("status") != "ok").iter_rows(named=True):
        cells = re.search(rf"<tr><td><code>{row['run_id']}</code></td>(.*?)</tr>", problems)
        assert cells is not None, row["run_id"]
        if row["status"] == "diverged":
            assert f"<td>diverged</td><td>{row['epochs_run']}</td><td></td>" in cells[1]
        else:
            assert "<td>failed</td><td>—</td><td>RuntimeError: RESOURCE_EXHAUSTED" in cells[1]

    # Diverged runs are done; failed ones are retried by the next sweep, and only they.
    assert main([*command, "--no-report"]) == EXIT_FAILURE
    assert "6 runs planned, 4 already stored, 2 to train" in capsys.readouterr().err
