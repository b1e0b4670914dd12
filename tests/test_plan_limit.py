"""Plans too big for the machine are refused in one line, before anything is planned or
written; the limit is sweepbook.plan.MAX_RUNS, and ``--max-runs N`` moves it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_project
from sweepbook import cli, plan
from sweepbook.cli import EXIT_BAD_INPUT, main
from sweepbook.config import ConfigError, load_sweep
from sweepbook.plan import expand, planned_size

HUGE_RANDOM = """\
experiment = "tiny"
seeds = [0, 1]

[random]
samples = 2147483647  # the most [random] accepts: 2**31 - 1
"optimizer.learning_rate" = { loguniform = [1e-4, 1e-1] }
"""

# A grid of 2 million runs: two axes of a thousand values, two seeds.
HUGE_GRID = f"""\
experiment = "tiny"
seeds = [0, 1]

[grid]
"optimizer.learning_rate" = {[round(1e-4 * (1 + i), 6) for i in range(1000)]}
"optimizer.b1" = {[round(0.5 + i * 4e-4, 6) for i in range(1000)]}
"""


@pytest.mark.parametrize(
    ("text", "key", "size"),
    [
        (HUGE_RANDOM, "random.samples", "4,294,967,294"),
        (HUGE_GRID, "grid.optimizer.learning_rate", "2,000,000"),
    ],
)
def test_a_plan_too_big_is_refused_in_one_line_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, size: str
) -> None:
    project = write_project(tmp_path, {"huge": text})
    assert main(["run", str(project / "sweeps" / "huge.toml")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "huge.toml" in err and key in err and f"plans {size} runs" in err
    assert "the limit is 100,000" in err and "--max-runs N" in err
    assert not (tmp_path / "reports").exists()


def test_max_runs_moves_the_limit(project: Path) -> None:
    sweep = load_sweep(project / "sweeps" / "tiny.toml")  # 2 learning rates x 2 seeds
    with pytest.raises(ConfigError, match=r"plans 4 runs: 2 \(grid.optimizer.learning_rate\)"):
        expand(sweep, max_runs=3)
    assert len(expand(sweep, max_runs=4)) == 4
    args = cli.build_parser().parse_args(["run", "x.toml"])
    assert args.max_runs == plan.MAX_RUNS == cli.MAX_RUNS  # one default, said once in --help


@pytest.mark.parametrize(
    "text",
    [
        # variants with their own seeds and repeats, zip, grid and random points together
        """experiment = "tiny"\nseeds = [0, 1]\nrepeat = 2\n[grid]\n"train.batch_size" = [64, 128]
[zip]\n"optimizer.learning_rate" = [1e-3, 1e-2]\n"optimizer.b1" = [0.8, 0.9]
[random]\nsamples = 3\n"optimizer.eps" = { loguniform = [1e-9, 1e-7] }
[[variant]]\nname = "a"\nseeds = [5]\n[[variant]]\nname = "b"\n"model.dropout" = 0.1\n""",
        # K-fold replicates over every fold
        """experiment = "tiny"\nseeds = [0]\nfolds = "all"\n[set]\n"data.split" = "kfold"
"data.folds" = 3\n[grid]\n"optimizer.learning_rate" = [1e-3, 1e-2]\n""",
    ],
)
def test_the_counted_size_is_the_expanded_size(tmp_path: Path, text: str) -> None:
    sweep = load_sweep(write_project(tmp_path, {"s": text}) / "sweeps" / "s.toml")
    size, _ = planned_size(sweep)
    assert size == len(expand(sweep))
