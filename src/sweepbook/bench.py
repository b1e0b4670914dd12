"""The performance benchmark (`sweepbook bench`, `nox -s bench`): ratios measured side by side
in one process, on the same sweep, written as a table and as JSON.

1. A digits-MLP sweep of 64 configurations (16 learning rates x 4 seeds), trained by
   (a) an eager PyTorch loop, one run after another (PyTorch only in the bench environment),
   (b) sequential JAX: the same pure ``train_run``, compiled once, one run per call,
   (c) the sweepbook engine: vmapped chunks, as ``sweepbook run`` trains them.
   Compile time is reported apart; ratios compare training time.
2. An MNIST-sized MLP 784-784-10 at batch 256 trained by the engine: achieved FLOP/s against
   the machine's float32 matmul peak, measured here with a large ``jnp.dot``.
3. Conv nets: LeNet-5 and the small CNN on MNIST-5k, trained by the engine in the layer
   formulation it chooses for this backend, by the engine in the legacy formulation (XLA's
   convolution and ``reduce_window`` pooling, what every conv net used before), by sequential
   JAX and by eager PyTorch; GFLOP/s from the layers' multiply-adds.
4. Compilations: the engine compiles once per static group.
5. Report rendering: a store of 1,000 runs x 50 epochs (100 configurations of three axes x 10
   seeds; :mod:`sweepbook.bench_render`) rendered into its report, every figure format included.
"""

from __future__ import annotations

import functools
import itertools
import os
import platform
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sweepbook import figures
from sweepbook.bench_render import time_render
from sweepbook.bench_workloads import (
    CNN_EXPERIMENT,
    DIGITS_EXPERIMENT,
    LENET5_EXPERIMENT,
    MNIST_EXPERIMENT,
)
from sweepbook.config import RunConfig, flatten, unflatten
from sweepbook.data import Split, load_split
from sweepbook.engine import forget_compiled_programs, group_runs, load_splits, train_runs
from sweepbook.models import (
    LEGACY_NUMERICS,
    MODELS,
    build_model,
    choose_numerics,
    multiply_adds,
)
from sweepbook.plan import PlannedRun, run_id
from sweepbook.store import Store, atomic_write_json
from sweepbook.train import data_arrays, hyper_from_config, static_spec, train_run


@dataclass
class Timing:
    name: str
    runs: int
    seconds: float
    compile_seconds: float = 0.0
    compilations: int = 0


def _configs(experiment: str, learning_rates: list[float], seeds: list[int]) -> list[RunConfig]:
    base = flatten(tomllib.loads(experiment))
    return [
        RunConfig.model_validate(unflatten({**base, "optimizer.learning_rate": lr, "seed": seed}))
        for seed in seeds
        for lr in learning_rates
    ]


def _planned(configs: list[RunConfig]) -> list[PlannedRun]:
    return [PlannedRun(run_id(config), None, config) for config in configs]


def time_engine(
    configs: list[RunConfig],
    name: str = "sweepbook engine",
    runs_per_chunk: int = 32,
    numerics: str | None = None,
) -> Timing:
    """The engine as ``sweepbook run`` trains; ``numerics`` overrides its layer formulation."""
    forget_compiled_programs()
    runs = _planned(configs)
    splits = load_splits(runs)
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        summary = train_runs(
            runs,
            Store(Path(directory)),
            splits=splits,
            runs_per_chunk=runs_per_chunk,
            numerics=numerics,
        )
        total = time.perf_counter() - started
    training = total - summary.compile_seconds
    return Timing(name, len(runs), training, summary.compile_seconds, summary.compilations)


def time_sequential_jax(configs: list[RunConfig]) -> Timing:
    """One run per call of the same program, in the formulation the engine chooses here."""
    split = load_split(configs[0].data)
    data = data_arrays(split)
    numerics = choose_numerics(configs[0].model.kind, jax.devices()[0].platform)
    program = functools.partial(train_run, static_spec(configs[0]), split.num_classes)
    trainer = jax.jit(functools.partial(program, numerics=numerics))
    started = time.perf_counter()
    compiled = trainer.lower(hyper_from_config(configs[0]), data).compile()
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for config in configs:
        jax.block_until_ready(compiled(hyper_from_config(config), data))
    seconds = time.perf_counter() - started
    return Timing("sequential JAX (jit once)", len(configs), seconds, compile_seconds, 1)


def _torch_model(config: RunConfig, image: tuple[int, ...], num_classes: int) -> Any:
    """The model of ``config`` in PyTorch, layer for layer as :mod:`sweepbook.models` builds it
    (channels first; SAME pooling of odd sizes is ``ceil_mode``)."""
    import torch

    flax_model = build_model(config.model, num_classes)
    layers: list[Any] = []
    features = int(np.prod(image))
    if MODELS[config.model.kind].convolutional:
        size, channels = image[0], image[-1]
        for layer, out_channels in enumerate(flax_model.convolutions):
            kernel = flax_model.kernel
            same = flax_model.padding(layer, size) == "SAME"
            layers += [
                torch.nn.Conv2d(channels, out_channels, kernel, padding="same" if same else 0),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2, ceil_mode=True),
            ]
            size = -(-(size if same else size - kernel + 1) // 2)
            channels = out_channels
        features = size * size * channels
    widths = [features, *(config.model.widths or flax_model.head)]
    layers.append(torch.nn.Flatten())
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], num_classes))


def time_torch_eager(configs: list[RunConfig]) -> Timing | None:
    """The same model, Adam and data order semantics (shuffle each epoch, partial last batch,
    validation every epoch, test at the end) in eager PyTorch, one run at a time."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    split = load_split(configs[0].data)
    tensors = {
        name: torch.from_numpy(np.ascontiguousarray(getattr(split, name)))
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    }

    def channels_first(x: Any) -> Any:  # [N, H, W, C] -> [N, C, H, W]; an MLP flattens anyway
        return x.permute(0, 3, 1, 2).contiguous() if x.ndim == 4 else x

    x_train, x_val, x_test = (channels_first(tensors[k]) for k in ("x_train", "x_val", "x_test"))
    y_train, y_val, y_test = (tensors[k].long() for k in ("y_train", "y_val", "y_test"))
    started = time.perf_counter()
    for config in configs:
        torch.manual_seed(config.seed)
        model = _torch_model(config, split.x_train.shape[1:], split.num_classes)
        opt = config.optimizer
        assert opt.b1 is not None and opt.b2 is not None and opt.eps is not None  # Adam config
        optimizer = torch.optim.Adam(
            model.parameters(), lr=opt.learning_rate, betas=(opt.b1, opt.b2), eps=opt.eps
        )
        loss_fn = torch.nn.CrossEntropyLoss()
        batch = config.train.batch_size
        for _ in range(config.train.epochs):
            model.train()
            for index in torch.randperm(len(x_train)).split(batch):
                optimizer.zero_grad()
                loss_fn(model(x_train[index]), y_train[index]).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                loss_fn(model(x_val), y_val)
        with torch.no_grad():
            loss_fn(model(x_test), y_test)
    return Timing("PyTorch eager loop", len(configs), time.perf_counter() - started)


def matmul_peak_flops(sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 10) -> float:
    """float32 FLOP/s of square matmuls, the fastest call of the fastest size: the machine's
    practical peak for dense math. Best, not mean, because a mean over calls of one size took
    in the machine's hiccups: on 2 AMD EPYC cores it read 105 GFLOP/s where 1024x1024 calls run
    at 177, and the 784-784-10 MLP then showed 125% of "peak"."""
    best = 0.0
    for size in sizes:
        a = jnp.ones((size, size), jnp.float32)
        dot = jax.jit(jnp.dot)
        jax.block_until_ready(dot(a, a))
        for _ in range(repeats):
            started = time.perf_counter()
            jax.block_until_ready(dot(a, a))
            best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best


def training_flops(config: RunConfig, split: Split) -> float:
    """FLOPs of one run: 6 per multiply-add per training example-step (forward 2, backward
    4), 2 per multiply-add per evaluated example (validation each epoch, test once)."""
    macs = multiply_adds(config.model, split.x_train.shape[1:], split.num_classes)
    epochs = config.train.epochs
    trained = len(split.y_train) * epochs
    evaluated = len(split.y_val) * (epochs + 1) + len(split.y_test)
    return 6 * macs * trained + 2 * macs * evaluated


CONV_NETS = {"lenet5": ("LeNet-5", LENET5_EXPERIMENT), "cnn": ("small CNN", CNN_EXPERIMENT)}


def conv_net_benchmark(
    kind: str, learning_rates: list[float], log: Callable[[str], None], *, quick: bool = False
) -> dict[str, Any]:
    """One conv net's sweep trained four ways, side by side in this process (``quick``: one
    epoch on 700 images)."""
    title, experiment = CONV_NETS[kind]
    if quick:
        experiment = experiment.replace("split_seed = 0", "split_seed = 0\nmax_samples = 1000")
        experiment = experiment.replace("epochs = 2", "epochs = 1")
    configs = _configs(experiment, learning_rates, [0])
    split = load_split(configs[0].data)
    numerics, legacy = choose_numerics(kind, jax.devices()[0].platform), LEGACY_NUMERICS.name
    log(f"{title}: {len(configs)} configurations, {len(split.y_train):,} training images")
    timings = [
        time_engine(configs, f"engine ({numerics})"),
        time_engine(configs, f"engine, legacy ({legacy})", numerics=legacy),
        time_sequential_jax(configs),
    ]
    torch_timing = time_torch_eager(configs)
    if torch_timing is not None:
        timings.append(torch_timing)
    flops = training_flops(configs[0], split) * len(configs)
    return {
        "model": kind,
        "title": title,
        "configurations": len(configs),
        "training_images": len(split.y_train),
        "batch_size": configs[0].train.batch_size,
        "epochs": configs[0].train.epochs,
        "numerics": numerics,
        "gflop": flops / 1e9,
        "timings": [{**asdict(t), "gflops": flops / t.seconds / 1e9} for t in timings],
        "speedup_over_legacy": timings[1].seconds / timings[0].seconds,
    }


def run_benchmark(*, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    learning_rates = [float(lr) for lr in np.geomspace(1e-4, 1e-1, 16)]
    seeds = [0, 1, 2, 3]
    digits = _configs(DIGITS_EXPERIMENT, learning_rates[: 4 if quick else 16], seeds)
    log(f"digits MLP sweep: {len(digits)} configurations")
    timings = [time_engine(digits), time_sequential_jax(digits)]
    torch_timing = time_torch_eager(digits)
    if torch_timing is None:
        log("PyTorch is not installed here: run `nox -s bench` for the eager baseline")
    else:
        timings.append(torch_timing)
    engine = timings[0]
    ratios = {t.name: t.seconds / engine.seconds for t in timings[1:]}
    digits_split = load_split(digits[0].data)
    digits_flops = training_flops(digits[0], digits_split) * len(digits)

    log("MNIST-sized MLP 784-784-10, batch 256: FLOP/s against matmul peak")
    mnist = _configs(MNIST_EXPERIMENT, learning_rates[::2][: 2 if quick else 8], [0])
    # No early stopping in these runs: every epoch runs, so the FLOP count is exact.
    split = load_split(mnist[0].data)
    peak = matmul_peak_flops()
    for timing in timings:
        log(f"  {timing.name}: {digits_flops / timing.seconds / peak:.1%} of matmul peak")
    mnist_engine = time_engine(mnist, "engine, MLP 784-784-10")
    mnist_sequential = time_sequential_jax(mnist)
    flops = training_flops(mnist[0], split) * len(mnist)
    lenet5_rates = learning_rates[4 : 12 : 4 if quick else 2]
    conv_nets = [conv_net_benchmark("lenet5", lenet5_rates, log, quick=quick)]
    if not quick:  # the small CNN's legacy formulation alone takes minutes on 2 cores
        conv_nets.append(conv_net_benchmark("cnn", learning_rates[4:12:2], log))
    planned = _planned(digits)
    groups = len(group_runs(planned, load_splits(planned)))
    log("report rendering: a store of 1,000 runs x 50 epochs" if not quick else "report rendering")
    with tempfile.TemporaryDirectory() as scratch:
        render = time_render(Path(scratch), runs=100 if quick else 1000, epochs=10 if quick else 50)
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
        },
        "digits_sweep": {
            "configurations": len(digits),
            "timings": [{**asdict(t), "gflops": digits_flops / t.seconds / 1e9} for t in timings],
            "engine_speedup": ratios,
            "dense_gflop": digits_flops / 1e9,
        },
        "mnist_mlp_784_784_10": {
            "runs": len(mnist),
            "matmul_peak_gflops": peak / 1e9,
            "engine_gflops": flops / mnist_engine.seconds / 1e9,
            "engine_fraction_of_peak": flops / mnist_engine.seconds / peak,
            "sequential_gflops": flops / mnist_sequential.seconds / 1e9,
            "sequential_fraction_of_peak": flops / mnist_sequential.seconds / peak,
            "timings": [asdict(mnist_engine), asdict(mnist_sequential)],
        },
        "conv_nets": conv_nets,
        "compilations": {"engine": engine.compilations, "static_groups": groups},
        "report_render": asdict(render),
    }
    return result


def format_table(result: dict[str, Any]) -> str:
    digits = result["digits_sweep"]
    lines = _timing_table(
        f"digits MLP, {digits['configurations']} configs", digits["timings"], width=34
    )
    for net in result.get("conv_nets", []):
        lines += ["", *_conv_net_lines(net)]
    mnist = result["mnist_mlp_784_784_10"]
    lines += [
        "",
        f"MLP 784-784-10, batch 256 ({mnist['runs']} runs): matmul peak "
        f"{mnist['matmul_peak_gflops']:.1f} GFLOP/s",
        f"  engine     {mnist['engine_gflops']:.1f} GFLOP/s = "
        f"{100 * mnist['engine_fraction_of_peak']:.0f}% of peak",
        f"  sequential {mnist['sequential_gflops']:.1f} GFLOP/s = "
        f"{100 * mnist['sequential_fraction_of_peak']:.0f}% of peak",
        "",
        f"compilations: {result['compilations']['engine']} "
        f"(static groups: {result['compilations']['static_groups']})",
    ]
    render = result["report_render"]
    lines += [
        "",
        f"report: {render['runs']:,} runs x {render['epochs']} epochs "
        f"({render['configurations']} configurations, {render['figures']} figures in "
        f"{len(figures.available_formats())} formats) rendered in {render['seconds']:.1f} s",
    ]
    return "\n".join(lines)


def _conv_net_lines(net: dict[str, Any]) -> list[str]:
    header = (
        f"{net['title']}, {net['configurations']} configs, {net['training_images']:,} images, "
        f"batch {net['batch_size']}, {net['epochs']} epoch(s)"
    )
    return _timing_table(header, net["timings"], width=58)


def _timing_table(header: str, timings: list[dict[str, Any]], *, width: int) -> list[str]:
    """A header row and one row per timing, each compared with the first (the engine's)."""
    lines = [f"{header:<{width}}{'train s':>9}{'compile s':>11}{'GFLOP/s':>9}{'engine is':>14}"]
    engine = timings[0]
    for timing in timings:
        ratio = timing["seconds"] / engine["seconds"]
        speed = "—" if timing is engine else f"{ratio:.1f}x faster"
        lines.append(
            f"{timing['name']:<{width}}{timing['seconds']:>9.2f}"
            f"{timing['compile_seconds']:>11.2f}{timing['gflops']:>9.1f}{speed:>14}"
        )
    return lines


def write_result(result: dict[str, Any], directory: Path) -> Path:
    path = directory / "bench.json"
    atomic_write_json(path, result)
    return path
