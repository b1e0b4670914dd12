"""The benchmark's own arithmetic, and a quick run end to end."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from sweepbook import bench
from sweepbook.data import Split


def test_training_flops_counts_dense_layers():
    configs = bench._configs(bench.MNIST_EXPERIMENT, [1e-3], [0])
    split = Split(
        np.zeros((100, 28, 28, 1)),
        np.zeros(100),
        np.zeros((20, 28, 28, 1)),
        np.zeros(20),
        np.zeros((30, 28, 28, 1)),
        np.zeros(30),
        10,
    )
    weights = 784 * 784 + 784 * 10
    epochs = configs[0].train.epochs
    expected = 6 * weights * 100 * epochs + 2 * weights * (20 * (epochs + 1) + 30)
    assert bench.training_flops(configs[0], split) == expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        # conv 6@5x5 same on 28x28, conv 16@5x5 valid on 14x14, dense 400-120-84-10
        ("lenet5", 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10),
        # conv 32@3x3 on 28x28, conv 64@3x3 on 14x14, dense 7*7*64-32-10
        ("cnn", 28 * 28 * 32 * 9 + 14 * 14 * 64 * 32 * 9 + 7 * 7 * 64 * 32 + 32 * 10),
    ],
)
def test_multiply_adds_of_conv_nets(kind, expected):
    config = bench._configs(bench.CONV_NETS[kind][1], [1e-3], [0])[0]
    assert bench.multiply_adds(config.model, (28, 28, 1), 10) == expected


@pytest.mark.parametrize(("kind", "params"), [("lenet5", 61_706), ("cnn", 119_530)])
def test_the_pytorch_baseline_is_the_same_architecture(kind, params):
    pytest.importorskip("torch")
    config = bench._configs(bench.CONV_NETS[kind][1], [1e-3], [0])[0]
    model = bench._torch_model(config, (28, 28, 1), 10)
    assert sum(p.numel() for p in model.parameters()) == params


def test_matmul_peak_is_a_plausible_rate():
    peak = bench.matmul_peak_flops(sizes=(128, 256), repeats=3)
    assert 1e8 < peak < 1e14


def test_quick_benchmark_runs_and_writes_json(tmp_path):
    result = bench.run_benchmark(quick=True, log=lambda line: None)
    names = [t["name"] for t in result["digits_sweep"]["timings"]]
    assert names[:2] == ["sweepbook engine", "sequential JAX (jit once)"]
    assert result["compilations"]["engine"] == result["compilations"]["static_groups"] == 1
    assert 0 < result["mnist_mlp_784_784_10"]["engine_fraction_of_peak"] < 1.5
    assert result["report_render"]["runs"] == 100 and result["report_render"]["seconds"] > 0
    [lenet5] = result["conv_nets"]
    names = [t["name"] for t in lenet5["timings"]]
    assert names[:3] == [
        "engine (conv=slices,pool=reshape)",
        "engine, legacy (conv=xla,pool=reduce_window)",
        "sequential JAX (jit once)",
    ]
    assert lenet5["speedup_over_legacy"] > 0 and all(t["gflops"] > 0 for t in lenet5["timings"])
    table = bench.format_table(result)
    assert "faster" in table and "% of peak" in table
    assert "LeNet-5, 2 configs, 700 images, batch 32" in table
    path = bench.write_result(result, tmp_path)
    assert json.loads(path.read_text())["digits_sweep"]["configurations"] == 16


@pytest.mark.parametrize("engine_seconds", [1.0, 2.0])
def test_format_table_reports_ratios(engine_seconds):
    timing = {"compile_seconds": 0.0, "gflops": 1.0, "runs": 4, "compilations": 1}
    result = {
        "digits_sweep": {
            "configurations": 4,
            "timings": [
                {**timing, "name": "sweepbook engine", "seconds": engine_seconds},
                {**timing, "name": "PyTorch eager loop", "seconds": 8.0},
            ],
        },
        "mnist_mlp_784_784_10": {
            "runs": 1,
            "matmul_peak_gflops": 100.0,
            "engine_gflops": 70.0,
            "engine_fraction_of_peak": 0.7,
            "sequential_gflops": 50.0,
            "sequential_fraction_of_peak": 0.5,
        },
        "compilations": {"engine": 1, "static_groups": 1},
        "report_render": {
            "runs": 1000,
            "epochs": 50,
            "configurations": 100,
            "figures": 6,
            "seconds": 4.25,
        },
    }
    table = bench.format_table(result)
    assert f"{8.0 / engine_seconds:.1f}x faster" in table
    assert "70% of peak" in table
    assert "1,000 runs x 50 epochs" in table and "rendered in 4.2 s" in table


def test_render_benchmark_store_is_a_real_store_that_renders(tmp_path):
    from sweepbook.bench_render import time_render
    from sweepbook.report import MAX_SERIES
    from sweepbook.store import Store

    timing = time_render(tmp_path, runs=200, epochs=6)
    store = Store(tmp_path / "reports" / "render_bench")
    runs, history = store.read_runs(), store.read_history()
    assert timing.runs == runs.height == 200 and timing.configurations == 100
    assert history.height == 200 * 6
    assert runs["run_id"].n_unique() == 200 and set(runs["status"]) == {"ok"}
    # Accuracy follows the swept values, as in a real sweep: lr 1e-3 beats 1e-4 on average.
    by_lr = runs.group_by("optimizer.learning_rate").agg(pl.col("test.accuracy").mean())
    means = dict(by_lr.iter_rows())
    assert means[1e-3] > means[1e-4] + 0.02
    html = (tmp_path / "reports" / "render_bench" / "index.html").read_text()
    shown = f"the {MAX_SERIES} best of 100 configurations"
    assert "parallel_coordinates" in html and shown in html
    assert timing.figures >= 6 and timing.seconds > 0
