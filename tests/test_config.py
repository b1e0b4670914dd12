"""Experiment and sweep files: loading, dotted keys, and one clear ConfigError per bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY_EXPERIMENT
from sweepbook.config import (
    ConfigError,
    ReportConfig,
    flatten,
    load_experiment,
    load_sweep,
    metric_direction,
    unflatten,
)
from sweepbook.plan import expand

REPO = Path(__file__).resolve().parents[1]

EXPERIMENT = TINY_EXPERIMENT

VALID_SWEEP = """\
# Which learning rate suits a small MLP?
# (a second line of the question)
# Run: sweepbook run sweeps/y.toml
experiment = "x"
seeds = [0, 1, 2]

[set]
"train.epochs" = 3

[zip]
"optimizer.b1" = [0.8, 0.9]
"optimizer.b2" = [0.99, 0.999]

[grid]
"optimizer.learning_rate" = [1e-3, 1e-2]
"train.batch_size" = [16, 32, 64]

[[variant]]
name = "wide"
"model.widths" = [128]

[[variant]]
name = "dropout"
"model.dropout" = 0.1

[report]
title = "Learning rate"
compare = ["optimizer.learning_rate"]
"""

MINIMAL = 'experiment = "x"\nseeds = [0]\n'


def write_project(root: Path, sweep: str | None, experiment: str = EXPERIMENT) -> Path:
    """Write experiments/x.toml and sweeps/y.toml under ``root``; return the sweep path."""
    (root / "experiments").mkdir(exist_ok=True)
    (root / "sweeps").mkdir(exist_ok=True)
    (root / "experiments" / "x.toml").write_text(experiment)
    sweep_path = root / "sweeps" / "y.toml"
    if sweep is not None:
        sweep_path.write_text(sweep)
    return sweep_path


def test_valid_sweep_loads_axes_seeds_and_overrides(tmp_path):
    sweep = load_sweep(write_project(tmp_path, VALID_SWEEP))

    assert sweep.name == "y"
    assert sweep.experiment_path == (tmp_path / "experiments" / "x.toml").resolve()
    assert sweep.experiment.model.widths == [32]
    assert sweep.seeds == [0, 1, 2]
    assert sweep.set == {"train.epochs": 3}
    assert sweep.zip == {"optimizer.b1": [0.8, 0.9], "optimizer.b2": [0.99, 0.999]}
    assert sweep.grid == {
        "optimizer.learning_rate": [1e-3, 1e-2],
        "train.batch_size": [16, 32, 64],
    }
    assert sweep.variants == [
        ("wide", {"model.widths": [128]}),
        ("dropout", {"model.dropout": 0.1}),
    ]
    assert sweep.axes == [
        "variant",
        "optimizer.b1",
        "optimizer.b2",
        "optimizer.learning_rate",
        "train.batch_size",
    ]
    assert sweep.report.title == "Learning rate"
    assert sweep.report.compare == ["optimizer.learning_rate"]


def test_question_is_the_leading_comment_without_the_run_line(tmp_path):
    sweep = load_sweep(write_project(tmp_path, VALID_SWEEP))

    assert (
        sweep.question == "Which learning rate suits a small MLP? (a second line of the question)"
    )
    assert "sweepbook run" not in sweep.question


def test_report_question_overrides_the_leading_comment(tmp_path):
    text = VALID_SWEEP.replace('title = "Learning rate"', 'question = "Given explicitly?"')
    sweep = load_sweep(write_project(tmp_path, text))

    assert sweep.question == "Given explicitly?"


def test_experiment_given_as_relative_toml_path(tmp_path):
    sweep_path = write_project(tmp_path, 'experiment = "../experiments/x.toml"\nseeds = [4]\n')

    sweep = load_sweep(sweep_path)

    assert sweep.experiment_path == (tmp_path / "experiments" / "x.toml").resolve()
    assert sweep.seeds == [4]


@pytest.mark.parametrize(
    "path", sorted((REPO / "experiments").glob("*.toml")), ids=lambda p: p.name
)
def test_shipped_experiments_load(path):
    assert load_experiment(path).train.epochs > 0


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_sweeps_load_and_every_run_validates(path):
    assert expand(load_sweep(path))


@pytest.mark.parametrize(
    ("tree", "flat"),
    [
        ({}, {}),
        ({"a": 1}, {"a": 1}),
        ({"a": {"b": 1, "c": {"d": "x"}}}, {"a.b": 1, "a.c.d": "x"}),
        ({"a": {"widths": [1, 2]}, "seed": 0}, {"a.widths": [1, 2], "seed": 0}),
        ({"x": {"y": None, "z": True}}, {"x.y": None, "x.z": True}),
    ],
)
def test_flatten_and_unflatten_are_inverse(tree, flat):
    assert flatten(tree) == flat
    assert unflatten(flat) == tree
    assert unflatten(flatten(tree)) == tree


def test_flatten_of_a_real_experiment_round_trips(tmp_path):
    write_project(tmp_path, None)
    tree = load_experiment(tmp_path / "experiments" / "x.toml").model_dump()

    flat = flatten(tree)

    assert flat["optimizer.learning_rate"] == 1e-2
    assert flat["train.early_stopping.patience"] == 2  # as in TINY_EXPERIMENT
    assert unflatten(flat) == tree


# Each case: sweep text (None: no file), experiment text, expected key, blamed file, fragment.
BAD_INPUTS = {
    "toml_syntax": ('experiment = "x"\nseeds = [0\n', EXPERIMENT, None, "sweep", "invalid TOML"),
    "missing_file": (None, EXPERIMENT, None, "sweep", "file not found"),
    "duplicate_toml_key": (MINIMAL + "seeds = [1]\n", EXPERIMENT, None, "sweep", "invalid TOML"),
    "unknown_top_level_key": (
        MINIMAL + 'colour = "red"\n',
        EXPERIMENT,
        "colour",
        "sweep",
        "unknown",
    ),
    "missing_experiment_key": ("seeds = [0]\n", EXPERIMENT, "experiment", "sweep", "missing"),
    "unknown_set_key": (
        MINIMAL + '[set]\n"train.epoch" = 3\n',
        EXPERIMENT,
        "set.train.epoch",
        "sweep",
        "did you mean 'train.epochs'?",
    ),
    "unknown_grid_key": (
        MINIMAL + '[grid]\n"train.batch_siz" = [16]\n',
        EXPERIMENT,
        "grid.train.batch_siz",
        "sweep",
        "did you mean 'train.batch_size'?",
    ),
    "unknown_zip_key": (
        MINIMAL + '[zip]\n"optimizer.learnin_rate" = [0.1]\n',
        EXPERIMENT,
        "zip.optimizer.learnin_rate",
        "sweep",
        "did you mean 'optimizer.learning_rate'?",
    ),
    "unknown_variant_key": (
        MINIMAL + '[[variant]]\nname = "a"\n"model.dropuot" = 0.1\n',
        EXPERIMENT,
        "variant[0].model.dropuot",
        "sweep",
        "did you mean 'model.dropout'?",
    ),
    "unknown_experiment_key": (
        MINIMAL,
        EXPERIMENT.replace("[model]\n", "[model]\ndepth = 3\n"),
        "model.depth",
        "experiment",
        "unknown key",
    ),
    "string_for_number_in_experiment": (
        MINIMAL,
        EXPERIMENT.replace("learning_rate = 1e-2", 'learning_rate = "0.1"'),
        "optimizer.learning_rate",
        "experiment",
        "'0.1'",
    ),
    "string_for_number_in_set": (
        MINIMAL + '[set]\n"optimizer.learning_rate" = "0.1"\n',
        EXPERIMENT,
        "set.optimizer.learning_rate",
        "sweep",
        "'0.1'",
    ),
    "empty_axis": (
        MINIMAL + '[grid]\n"train.batch_size" = []\n',
        EXPERIMENT,
        "grid.train.batch_size",
        "sweep",
        "at least one value",
    ),
    "grid_value_not_a_list": (
        MINIMAL + '[grid]\n"train.batch_size" = 32\n',
        EXPERIMENT,
        "grid.train.batch_size",
        "sweep",
        "expected a list",
    ),
    "zip_unequal_lengths": (
        MINIMAL + '[zip]\n"optimizer.b1" = [0.8, 0.9]\n"optimizer.b2" = [0.99]\n',
        EXPERIMENT,
        "zip",
        "sweep",
        "'optimizer.b1' has 2, 'optimizer.b2' has 1",
    ),
    "set_and_swept_twice": (
        MINIMAL + '[set]\n"train.epochs" = 2\n[grid]\n"train.epochs" = [1, 3]\n',
        EXPERIMENT,
        "train.epochs",
        "sweep",
        "once",
    ),
    "variant_without_name": (
        MINIMAL + '[[variant]]\n"model.dropout" = 0.1\n',
        EXPERIMENT,
        "variant[0].name",
        "sweep",
        "name",
    ),
    "duplicate_variant_names": (
        MINIMAL + '[[variant]]\nname = "a"\n[[variant]]\nname = "a"\n',
        EXPERIMENT,
        "variant.name",
        "sweep",
        "unique",
    ),
    "empty_seeds": ('experiment = "x"\nseeds = []\n', EXPERIMENT, "seeds", "sweep", "at least 1"),
    "duplicate_seeds": (
        'experiment = "x"\nseeds = [1, 1]\n',
        EXPERIMENT,
        "seeds",
        "sweep",
        "unique",
    ),
    "negative_seed": ('experiment = "x"\nseeds = [-1]\n', EXPERIMENT, "seeds.0", "sweep", "-1"),
    "missing_experiment_file": (
        'experiment = "nope"\nseeds = [0]\n',
        EXPERIMENT,
        "experiment",
        "sweep",
        "nope.toml",
    ),
    "grid_value_violates_bound": (
        MINIMAL + '[grid]\n"train.batch_size" = [0, 16]\n',
        EXPERIMENT,
        "grid.train.batch_size",
        "sweep",
        "greater than 0",
    ),
    "compare_not_swept": (
        MINIMAL + '[grid]\n"train.epochs" = [1, 2]\n[report]\ncompare = ["train.batch_size"]\n',
        EXPERIMENT,
        "report.compare",
        "sweep",
        "not a swept axis",
    ),
    "compare_not_a_key": (
        MINIMAL + '[report]\ncompare = ["train.nothing"]\n',
        EXPERIMENT,
        "report.compare",
        "sweep",
        "not an experiment key",
    ),
    "metric_not_stored": (
        MINIMAL + '[report]\nmetric = "test.f1"\n',
        EXPERIMENT,
        "report.metric",
        "sweep",
        "not a stored metric",
    ),
    # Component names are checked against their registries, with the closest one as a hint.
    "unknown_model_kind": (
        MINIMAL,
        EXPERIMENT.replace('kind = "mlp"', 'kind = "mpl"'),
        "model.kind",
        "experiment",
        "unknown model 'mpl': expected one of 'mlp', 'lenet5', 'cnn'; did you mean 'mlp'?",
    ),
    "unknown_dataset_name": (
        MINIMAL,
        EXPERIMENT.replace('name = "digits"', 'name = "digit"'),
        "data.name",
        "experiment",
        "unknown dataset 'digit': expected one of 'digits', 'mnist5k', 'idx', 'npz'; did you",
    ),
    "unknown_optimizer_in_grid": (
        MINIMAL + '[grid]\n"optimizer.name" = ["adam", "adma"]\n',
        EXPERIMENT,
        "grid.optimizer.name",
        "sweep",
        "unknown optimizer 'adma'",
    ),
    "unknown_schedule_in_set": (
        MINIMAL + '[set]\n"schedule.name" = "cosin"\n',
        EXPERIMENT,
        "set.schedule.name",
        "sweep",
        "did you mean 'cosine'?",
    ),
    "unknown_loss_in_variant": (
        MINIMAL + '[[variant]]\nname = "f"\n"loss.name" = "focul"\n',
        EXPERIMENT,
        "variant[0].loss.name",
        "sweep",
        "unknown loss 'focul'",
    ),
}

CROSS_FIELD_INPUTS = {
    "idx_without_path": (
        MINIMAL,
        EXPERIMENT.replace('name = "digits"', 'name = "idx"'),
        "data.path",
        "experiment",
        "required",
    ),
}


def load_and_expand(sweep_path: Path) -> None:
    """What ``sweepbook run`` does before training: some errors only show per run."""
    expand(load_sweep(sweep_path))


def _assert_config_error(tmp_path, case, expected_key_check: bool = True) -> ConfigError:
    sweep_text, experiment_text, key, blamed, fragment = case
    sweep_path = write_project(tmp_path, sweep_text, experiment_text)
    blamed_path = sweep_path if blamed == "sweep" else tmp_path / "experiments" / "x.toml"

    with pytest.raises(ConfigError) as caught:
        load_and_expand(sweep_path)

    error = caught.value
    text = str(error)
    assert "\n" not in text
    assert Path(error.path).resolve() == blamed_path.resolve()
    assert str(error.path) in text
    assert fragment in text
    if expected_key_check:
        assert error.key == key
    return error


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_raises_one_line_config_error_naming_file_and_key(tmp_path, case):
    _assert_config_error(tmp_path, case)


@pytest.mark.parametrize("case", CROSS_FIELD_INPUTS.values(), ids=CROSS_FIELD_INPUTS.keys())
def test_cross_field_error_message_names_the_missing_key(tmp_path, case):
    error = _assert_config_error(tmp_path, case, expected_key_check=False)

    assert case[2] in str(error)


@pytest.mark.parametrize("case", CROSS_FIELD_INPUTS.values(), ids=CROSS_FIELD_INPUTS.keys())
def test_cross_field_error_key_is_the_missing_dotted_key(tmp_path, case):
    _assert_config_error(tmp_path, case)


def test_unknown_key_without_near_miss_has_no_hint(tmp_path):
    sweep_path = write_project(tmp_path, MINIMAL + '[set]\n"zzz.qqq" = 1\n')

    with pytest.raises(ConfigError) as caught:
        load_sweep(sweep_path)

    assert caught.value.key == "set.zzz.qqq"
    assert "did you mean" not in str(caught.value)


def test_same_key_written_dotted_and_nested_is_an_error(tmp_path):
    sweep_path = write_project(
        tmp_path, MINIMAL + '[set]\n"train.epochs" = 3\ntrain = {epochs = 5}\n'
    )

    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_sweep(sweep_path)


def test_bound_violation_in_grid_passes_load_and_fails_in_expand(tmp_path):
    sweep_path = write_project(tmp_path, MINIMAL + '[grid]\n"train.batch_size" = [0, 16]\n')

    sweep = load_sweep(sweep_path)

    assert sweep.grid == {"train.batch_size": [0, 16]}
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        expand(sweep)


@pytest.mark.parametrize(
    ("metric", "direction", "expected"),
    [
        ("test.accuracy", None, "max"),
        ("val.accuracy", None, "max"),
        ("val.loss", None, "min"),
        ("train.loss", None, "min"),
        ("test.error", None, "min"),
        ("test.accuracy", "min", "min"),
        ("val.loss", "max", "max"),
    ],
)
def test_metric_direction(metric, direction, expected):
    assert metric_direction(ReportConfig(metric=metric, direction=direction)) == expected


# --- minimal experiments, and errors that say where --------------------------------------

MINIMAL_EXPERIMENT = """\
[data]
name = "digits"
val_fraction = 0.2
test_fraction = 0.2
split_seed = 0

[model]
kind = "cnn"

[optimizer]
name = "OPTIMIZER"
learning_rate = 1e-3

[train]
epochs = 2
batch_size = 32
"""


@pytest.mark.parametrize(
    ("optimizer", "defaults"),
    [
        ("adam", {"b1": 0.9, "b2": 0.999, "eps": 1e-8}),
        ("adamw", {"b1": 0.9, "b2": 0.999, "eps": 1e-8}),
        ("rmsprop", {"decay": 0.9, "eps": 1e-8}),
        ("adagrad", {"eps": 1e-7, "initial_accumulator": 0.1}),
    ],
)
def test_a_minimal_experiment_gets_optax_defaults(tmp_path, optimizer, defaults):
    """Adam once needed b1, b2 and eps spelled out, and a cnn an activation."""
    path = tmp_path / "minimal.toml"
    path.write_text(MINIMAL_EXPERIMENT.replace("OPTIMIZER", optimizer))

    experiment = load_experiment(path)

    assert experiment.model.activation == "relu"
    assert {key: getattr(experiment.optimizer, key) for key in defaults} == defaults


def test_defaults_and_spelled_out_values_give_the_same_run_ids(tmp_path):
    """A stored run whose file spelled the defaults out is the same run as a minimal one."""
    minimal = MINIMAL_EXPERIMENT.replace("OPTIMIZER", "adam")
    spelled = minimal.replace("learning_rate = 1e-3\n", "learning_rate = 1e-3\nb1 = 0.9\n")
    spelled = spelled.replace('kind = "cnn"\n', 'kind = "cnn"\nactivation = "relu"\n')
    ids = []
    for experiment in (minimal, spelled):
        ids.append(
            [run.run_id for run in expand(load_sweep(write_project(tmp_path, MINIMAL, experiment)))]
        )

    assert ids[0] == ids[1]


def test_an_optimizer_switched_by_a_variant_gets_its_own_defaults(tmp_path):
    sweep = MINIMAL + '[[variant]]\nname = "rms"\n"optimizer.name" = "rmsprop"\n'
    (run,) = expand(load_sweep(write_project(tmp_path, sweep)))

    assert run.config.optimizer.decay == 0.9


@pytest.mark.parametrize(
    ("sweep", "key"),
    [
        ('[set]\n"train.epochs" = 0\n', "set.train.epochs"),
        (
            '[[variant]]\nname = "a"\n[[variant]]\nname = "b"\n"model.dropout" = 1.5\n',
            "variant[1].model.dropout",
        ),
        ('[zip]\n"train.epochs" = [1, -1]\n"train.batch_size" = [8, 16]\n', "zip.train.epochs"),
    ],
)
def test_a_bad_override_is_named_with_its_table(tmp_path, sweep, key):
    with pytest.raises(ConfigError) as caught:
        expand(load_sweep(write_project(tmp_path, MINIMAL + sweep)))

    assert caught.value.key == key
    assert f"key '{key}'" in str(caught.value)


def test_a_cross_field_problem_of_the_experiment_keys_blames_the_experiment(tmp_path):
    sweep = MINIMAL + '[set]\n"train.epochs" = 1\n'
    experiment = EXPERIMENT + "\n[schedule]\nwarmup_epochs = 2\n"

    with pytest.raises(ConfigError) as caught:
        expand(load_sweep(write_project(tmp_path, sweep, experiment)))

    assert caught.value.key == "schedule.warmup_epochs"
    assert caught.value.path == tmp_path / "experiments" / "x.toml"


def test_a_missing_experiment_suggests_the_closest_one(tmp_path):
    sweep_path = write_project(tmp_path, 'experiment = "y"\nseeds = [0]\n')
    (tmp_path / "experiments" / "digits_mlp.toml").write_text(EXPERIMENT)
    sweep_path.write_text('experiment = "digit_mlp"\nseeds = [0]\n')

    with pytest.raises(ConfigError) as caught:
        load_sweep(sweep_path)

    assert caught.value.key == "experiment"
    assert "did you mean 'digits_mlp'?" in str(caught.value)
    assert str((tmp_path / "experiments" / "digit_mlp.toml").resolve()) in str(caught.value)
