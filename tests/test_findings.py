"""Findings on run frames with known answers: one axis with a large effect, one with none."""

from __future__ import annotations

import itertools
import json
from html import escape as html_escape
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import scipy.stats

from sweepbook import figures, stats
from sweepbook.findings import (
    Findings,
    compute_findings,
    findings_record,
    from_record,
    sentences,
)
from sweepbook.report import render_report
from synthetic_store import write_synthetic_store

LR = "optimizer.learning_rate"
BATCH = "train.batch_size"
TEST_EXAMPLES = 270
CLASSES = 3


def confusion_for(accuracy: float) -> list[list[int]]:
    """A confusion matrix of TEST_EXAMPLES examples with about ``accuracy`` on its diagonal."""
    correct = round(accuracy * TEST_EXAMPLES)
    per_class = TEST_EXAMPLES // CLASSES
    matrix = np.zeros((CLASSES, CLASSES), dtype=int)
    wrong = TEST_EXAMPLES - correct
    for row in range(CLASSES):
        matrix[row, row] = per_class
    matrix[0, 0] -= wrong
    matrix[0, 1] += wrong
    return matrix.tolist()


def grid_runs(
    axes: dict[str, list[Any]],
    mean_of: Any,
    *,
    seeds: int = 3,
    noise: float = 0.004,
    validation_shift: Any = None,
    seed: int = 0,
    with_validation: bool = True,
) -> pl.DataFrame:
    """One row per run, as runs.parquet holds it: accuracy = ``mean_of(config)`` + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, values in enumerate(itertools.product(*axes.values())):
        config = dict(zip(axes, values, strict=True))
        for run_seed in range(seeds):
            accuracy = float(mean_of(config) + rng.normal(0, noise))
            shift = validation_shift(config) if validation_shift else 0.0
            row = {
                "run_id": f"{index:03d}{run_seed}",
                "status": "ok",
                **config,
                "seed": run_seed,
                "test.accuracy": accuracy,
                "test.confusion": confusion_for(accuracy),
            }
            if with_validation:
                row["val.accuracy"] = accuracy + shift + rng.normal(0, noise)
            rows.append(row)
    return pl.DataFrame(rows)


AXES = {LR: [1e-4, 1e-3, 1e-2], BATCH: [16, 64, 256]}


def learning_rate_matters(config: dict[str, Any]) -> float:
    """A large effect of the learning rate (0.1 per decade), none of the batch size."""
    return 0.75 + 0.1 * float(np.log10(config[LR] / 1e-4))


def findings_of(runs: pl.DataFrame, compare: list[str] | None = None) -> Findings:
    return compute_findings(
        runs, metric="test.accuracy", direction="max", compare=compare or list(AXES)
    )


def test_winner_and_axis_verdicts_with_one_effective_axis() -> None:
    findings = findings_of(grid_runs(AXES, learning_rate_matters))
    assert findings.evidence == "ranked"
    assert findings.winner is not None
    assert findings.winner.values[LR] == 1e-2
    assert findings.selected_on_validation
    effects = {effect.axis: effect for effect in findings.axes}
    assert effects[LR].beyond_noise is True
    assert effects[LR].best_level == "0.01"
    assert effects[LR].spread == pytest.approx(0.2, abs=0.01)
    assert effects[BATCH].beyond_noise is False
    assert effects[BATCH].spread < 0.01
    # The axes add up: no interaction.
    assert findings.interaction is not None
    assert findings.interaction.interact is False
    # Every configuration with the best learning rate ties with the winner; the others lose.
    for configuration in findings.configurations:
        if configuration.verdict != "winner":
            expected = "tie" if configuration.values[LR] == 1e-2 else "worse"
            assert configuration.verdict == expected, configuration.label
    said = " ".join(sentences(findings))
    assert "learning_rate=0.01" in said
    assert f"{LR}: mean test.accuracy per value from" in said
    assert "so this axis matters" in said
    assert f"{BATCH}: mean" in said and "no effect of this axis is detected" in said
    assert f"No evidence that {LR} and {BATCH} interact" in said
    assert "Holm-Bonferroni-corrected over the 8 comparisons" in said


def test_interaction_is_detected_when_the_best_of_one_axis_depends_on_the_other() -> None:
    def crossed(config: dict[str, Any]) -> float:
        # Small batches want a small learning rate, large batches a large one.
        fit = {16: 1e-4, 64: 1e-3, 256: 1e-2}[config[BATCH]]
        return 0.9 if config[LR] == fit else 0.8

    findings = findings_of(grid_runs(AXES, crossed))
    assert findings.interaction is not None and findings.interaction.interact
    assert findings.interaction.test.p < 0.001
    assert any(f"{LR} and {BATCH} interact" in s for s in sentences(findings))


HOLM_SAMPLES = {
    "a": [0.900, 0.905, 0.910],  # the best
    "b": [0.880, 0.889, 0.895],  # raw p about 0.03: a tie only once corrected for 3 comparisons
    "c": [0.899, 0.902, 0.909],
    "d": [0.897, 0.904, 0.906],
}


def variant_runs(samples: dict[str, list[float]]) -> pl.DataFrame:
    """One run per value: the configurations are named variants, the values their seeds."""
    return pl.DataFrame(
        [
            {"run_id": f"{name}{i}", "status": "ok", "variant": name, "seed": i, "test.accuracy": v}
            for name, values in samples.items()
            for i, v in enumerate(values)
        ]
    )


def test_ties_use_holm_adjusted_p_values() -> None:
    """A configuration whose raw Welch p-value is below 0.05 is still a tie once corrected."""
    samples = HOLM_SAMPLES
    runs = variant_runs(samples)
    findings = compute_findings(runs, metric="test.accuracy", direction="max", compare=["variant"])
    raw = [
        scipy.stats.ttest_ind(samples[name], samples["a"], equal_var=False).pvalue for name in "bcd"
    ]
    assert raw[0] < 0.05
    # Holm by hand: the smallest p times 3, then the next times 2 (never below the previous).
    order = np.argsort(raw)
    hand = np.empty(3)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[index]))
        hand[index] = running
    by_name = {c.values["variant"]: c for c in findings.configurations}
    assert by_name["a"].verdict == "winner"
    for name, p_raw, p_holm in zip("bcd", raw, hand, strict=True):
        assert by_name[name].p_vs_winner == pytest.approx(p_raw)
        assert by_name[name].p_adjusted == pytest.approx(p_holm)
    assert by_name["b"].p_adjusted >= 0.05  # type: ignore[operator]
    assert by_name["b"].verdict == "tie"
    # No validation metric: chosen on test, and the bias is stated.
    assert not findings.selected_on_validation
    assert any("optimistically biased" in s for s in sentences(findings))


def test_a_value_separated_pairwise_but_not_by_the_f_test_is_explained() -> None:
    """The learning-rate-schedules case: one value (z) is worse than the best by Welch + Holm,
    while the F-test over all values, pooling their larger noise, detects nothing. The axis
    sentence must say both instead of 'no effect' beside 'worse beyond seed noise'."""
    samples = {"a": [0.950, 0.951, 0.952], "z": [0.940, 0.9405, 0.941]}
    samples.update({name: [0.935, 0.950, 0.965] for name in "bcdefg"})
    findings = compute_findings(
        variant_runs(samples), metric="test.accuracy", direction="max", compare=["variant"]
    )
    (effect,) = findings.axes
    assert effect.beyond_noise is False
    assert {c.label for c in findings.configurations if c.verdict == "worse"} == {"variant=z"}
    said = sentences(findings)
    assert "Worse beyond seed noise: variant=z." in said
    (axis,) = [s for s in said if s.startswith("variant: ")]
    assert "the F-test over all its values detects no effect" in axis
    assert "pairwise tests separate variant=z from the best" in axis
    assert "so no effect of this axis is detected" not in axis


def test_all_differences_within_noise_are_called_noise() -> None:
    findings = findings_of(grid_runs(AXES, lambda config: 0.94, noise=0.01))
    assert findings.all_within_noise
    said = " ".join(sentences(findings))
    assert "cannot tell its 9 configurations apart" in said
    assert "noise, not structure" in said
    assert all(effect.beyond_noise is False for effect in findings.axes)


def test_one_seed_is_too_thin_to_rank() -> None:
    findings = findings_of(grid_runs(AXES, learning_rate_matters, seeds=1))
    assert findings.evidence == "thin"
    assert findings.thin_reason == "one run per configuration"
    assert all(c.verdict in {"winner", "untested"} for c in findings.configurations)
    assert all(effect.beyond_noise is None for effect in findings.axes)
    said = sentences(findings)
    assert said[0].startswith("Highest configuration")
    assert any(s.startswith("Evidence too thin to rank") for s in said)
    assert not any("Within seed noise" in s or "Best configuration" in s for s in said)
    assert not any("axis matters" in s for s in said)


def test_one_configuration_is_too_thin_to_compare() -> None:
    runs = grid_runs({LR: [1e-3]}, lambda config: 0.9)
    findings = findings_of(runs, compare=[LR])
    assert findings.evidence == "thin" and findings.thin_reason == "one configuration"
    assert findings.axes == [] and findings.interaction is None
    said = sentences(findings)
    assert said[0].startswith("One configuration (learning_rate=0.001)")
    assert any("nothing to compare it with" in s for s in said)


def test_winner_is_chosen_on_validation_and_reported_on_test() -> None:
    """Validation prefers 1e-3 while test prefers 1e-2: the winner is the validation choice."""

    def prefers_1e3(config: dict[str, Any]) -> float:
        return 0.2 if config[LR] == 1e-3 else 0.0

    runs = grid_runs({LR: [1e-4, 1e-3, 1e-2]}, learning_rate_matters, validation_shift=prefers_1e3)
    findings = findings_of(runs, compare=[LR])
    assert findings.selection_metric == "val.accuracy"
    assert findings.winner is not None and findings.winner.values[LR] == 1e-3
    winner_test_mean = runs.filter(pl.col(LR) == 1e-3)["test.accuracy"].mean()
    assert findings.winner.mean == pytest.approx(winner_test_mean)
    by_lr = {c.values[LR]: c for c in findings.configurations}
    assert by_lr[1e-2].verdict == "better"
    said = " ".join(sentences(findings))
    assert "chosen on mean val.accuracy" in said
    assert "validation and test disagree" in said


def test_validation_is_not_used_when_some_run_lacks_it() -> None:
    runs = grid_runs({LR: [1e-4, 1e-3]}, learning_rate_matters)
    runs = runs.with_columns(
        pl.when(pl.col("seed") == 0)
        .then(None)
        .otherwise(pl.col("val.accuracy"))
        .alias("val.accuracy")
    )
    assert findings_of(runs, compare=[LR]).selection_metric == "test.accuracy"


def test_failed_and_diverged_runs_are_reported_and_left_out() -> None:
    runs = grid_runs({LR: [1e-4, 1e-3, 1e-2]}, learning_rate_matters)
    broken = pl.DataFrame(
        [
            {"run_id": "x1", "status": "diverged", LR: 1.0, "seed": 0},
            {"run_id": "x2", "status": "diverged", LR: 1.0, "seed": 1},
            {"run_id": "x3", "status": "failed", LR: 1e-5, "seed": 0},
        ]
    )
    findings = findings_of(pl.concat([runs, broken], how="diagonal_relaxed"), compare=[LR])
    assert findings.ok == runs.height and findings.planned == runs.height + 3
    assert findings.winner is not None and findings.winner.values[LR] == 1e-2
    said = sentences(findings)
    assert "2 runs diverged: learning_rate=1 ×2." in said
    assert "1 run failed: learning_rate=1e-05." in said


def test_no_finished_run() -> None:
    runs = pl.DataFrame([{"run_id": "x", "status": "failed", LR: 1e-3, "seed": 0}])
    findings = findings_of(runs, compare=[LR])
    assert findings.evidence == "no_runs" and findings.winner is None
    assert sentences(findings)[0].startswith("No run finished successfully (1 planned)")


def test_test_set_noise_from_the_stored_confusion_matrix() -> None:
    findings = findings_of(grid_runs(AXES, learning_rate_matters))
    noise = findings.test_noise
    assert noise is not None and findings.winner is not None
    assert noise.examples == TEST_EXAMPLES
    assert noise.accuracy == findings.winner.mean
    assert (noise.low, noise.high) == stats.wilson_interval(noise.accuracy, TEST_EXAMPLES)
    assert any("The test set has 270 examples" in s for s in sentences(findings))


def test_sampled_sweeps_skip_per_value_effects() -> None:
    findings = compute_findings(
        grid_runs(AXES, learning_rate_matters),
        metric="test.accuracy",
        direction="max",
        compare=list(AXES),
        sampled=True,
    )
    assert findings.axes == [] and findings.interaction is None
    assert findings.winner is not None


def test_lower_is_better_metrics() -> None:
    runs = grid_runs({LR: [1e-4, 1e-3, 1e-2]}, learning_rate_matters, with_validation=False)
    runs = runs.with_columns((1 - pl.col("test.accuracy")).alias("test.loss"))
    findings = compute_findings(runs, metric="test.loss", direction="min", compare=[LR])
    assert findings.winner is not None and findings.winner.values[LR] == 1e-2
    assert findings.test_noise is None  # a loss is not a proportion of examples
    assert findings.axes[0].best_level == "0.01"


def test_record_is_plain_json() -> None:
    record = findings_record(findings_of(grid_runs(AXES, learning_rate_matters)))
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text)["winner"]["values"][LR] == 1e-2
    assert record["sentences"] and record["selected_on_validation"] is True


QUICKSTART_RUNS = Path(__file__).parent / "fixtures" / "quickstart_runs.parquet"
QUICKSTART_RECORD = {
    "metric": "test.accuracy",
    "direction": "max",
    "compare": [LR, BATCH],
    "axes": [LR, BATCH],
    "sampled": False,
    "run_ids": [f"r{i}" for i in range(36)],
}


def test_quickstart_findings_match_its_expected_line() -> None:
    """sweeps/quickstart.toml expects: "the best configurations reach about 0.97 test accuracy;
    very small learning rates with large batches under-train within the epoch budget". The
    fixture holds the quickstart's stored runs (the columns findings read), trained on CPU
    at commit 63013a3."""
    findings = from_record(pl.read_parquet(QUICKSTART_RUNS), QUICKSTART_RECORD)
    assert findings.evidence == "ranked" and findings.winner is not None
    assert findings.winner.mean == pytest.approx(0.97, abs=0.005)
    by_config = {(c.values[LR], c.values[BATCH]): c for c in findings.configurations}
    smallest_lr_largest_batch = by_config[(3e-4, 256)]
    assert smallest_lr_largest_batch.verdict == "worse"
    assert smallest_lr_largest_batch.mean == min(c.mean for c in findings.configurations)
    effects = {effect.axis: effect for effect in findings.axes}
    assert effects[LR].worst_level == "0.0003" and effects[LR].beyond_noise
    assert findings.test_noise is not None and findings.test_noise.examples == 270


BATCH_SIZE_RUNS = Path(__file__).parent / "fixtures" / "batch_size_lenet5_runs.parquet"


def test_batch_size_study_findings_match_its_expected_line() -> None:
    """sweeps/batch_size_lenet5.toml expects: batch 16 chosen (0.949 test accuracy), accuracy
    falling with the batch size to 0.904 at 1024, the batch size mattering as a whole (F-test),
    yet no single batch size distinguishable from 16 after Holm's correction. The fixture holds
    the study's stored runs (the columns findings read), trained on 2 CPU cores at 3befe22."""
    runs = pl.read_parquet(BATCH_SIZE_RUNS)
    record = {
        "metric": "test.accuracy",
        "direction": "max",
        "compare": [BATCH],
        "axes": [BATCH],
        "sampled": False,
        "run_ids": runs["run_id"].to_list(),
    }
    findings = from_record(runs, record)
    assert findings.selected_on_validation and findings.winner is not None
    assert findings.winner.values[BATCH] == 16
    assert findings.winner.mean == pytest.approx(0.949, abs=0.0005)
    (effect,) = findings.axes
    assert effect.beyond_noise and effect.worst_level == "1024"
    others = [c for c in findings.configurations if c.verdict != "winner"]
    assert len(others) == 5 and {c.verdict for c in others} == {"tie"}
    assert findings.test_noise is not None and findings.test_noise.examples == 1000
    said = " ".join(sentences(findings))
    assert "cannot say which ones differ from the best" in said


LR_SCHEDULES_RUNS = Path(__file__).parent / "fixtures" / "lr_schedules_runs.parquet"


def test_learning_rate_schedules_findings_match_its_expected_line() -> None:
    """sweeps/lr_schedules.toml expects: every schedule within 0.940-0.947 (step 0.947),
    schedules differing by less than seed noise except cosine with warm restarts (0.940,
    worse). The fixture holds the study's stored runs, trained on 2 CPU cores at 88eeb81."""
    runs = pl.read_parquet(LR_SCHEDULES_RUNS)
    record = {
        "metric": "test.accuracy",
        "direction": "max",
        "compare": ["variant"],
        "axes": ["variant"],
        "sampled": False,
        "run_ids": runs["run_id"].to_list(),
    }
    findings = from_record(runs, record)
    assert findings.winner is not None and findings.winner.values["variant"] == "step"
    assert findings.winner.mean == pytest.approx(0.947, abs=0.0005)
    verdicts = {c.values["variant"]: c.verdict for c in findings.configurations}
    assert verdicts.pop("step") == "winner"
    assert verdicts.pop("cosine+restarts") == "worse"
    assert set(verdicts.values()) == {"tie"}
    assert min(c.mean for c in findings.configurations) == pytest.approx(0.940, abs=0.0005)


def test_report_opens_with_findings_and_records_them(tmp_path: Path) -> None:
    store = write_synthetic_store(
        tmp_path / "grid", {LR: [1e-4, 1e-3, 1e-2], BATCH: [16, 64]}, seeds=3
    )
    render_report(store)
    html = (store / "index.html").read_text(encoding="utf-8")
    record = json.loads((store / "report.json").read_text(encoding="utf-8"))
    sentences_stored = record["findings"]["sentences"]
    assert sentences_stored[0].startswith("Best configuration, chosen on mean val.accuracy")
    assert html.index('id="findings"') < html.index('id="results"')
    # The sentences are in the page as written (autoescaped: the apostrophe is an entity).
    assert html_escape(sentences_stored[0]) in html
    # Two axes: importance, as a figure and as a table in the findings block.
    assert (store / "figures" / "importance.svg").is_file()
    assert '<table class="importance">' in html and "Hyper-parameter importance" in html


def test_one_axis_report_has_findings_but_no_importance(tmp_path: Path) -> None:
    store = write_synthetic_store(tmp_path / "line", {LR: [1e-4, 1e-3, 1e-2]}, seeds=1)
    render_report(store)
    html = (store / "index.html").read_text(encoding="utf-8")
    assert "Evidence too thin to rank" in html
    assert not (store / "figures" / "importance.svg").exists()
    assert 'class="importance"' not in html


REGULARIZERS_RUNS = Path(__file__).parent / "fixtures" / "regularizers_runs.parquet"


def test_regularizers_findings_match_its_expected_line() -> None:
    """sweeps/regularizers.toml expects: "Label smoothing helps most (0.901 ...); early stopping
    ... costs accuracy (0.872)". The fixture holds its stored runs (trained on CPU at commit
    63013a3). With 3 seeds no pairwise comparison survives the correction while the F-test
    over all 11 variants does: the sentences must say both, not call it noise."""
    runs = pl.read_parquet(REGULARIZERS_RUNS)
    record = {
        "metric": "test.accuracy",
        "direction": "max",
        "compare": ["variant"],
        "axes": ["variant"],
        "run_ids": runs["run_id"].to_list(),
    }
    findings = from_record(runs, record)
    assert findings.winner is not None
    assert findings.winner.values["variant"] == "label smoothing 0.1"
    assert findings.winner.mean == pytest.approx(0.901, abs=0.001)
    (variant,) = findings.axes
    assert variant.worst_level == "early stopping" and variant.beyond_noise
    assert dict(variant.levels)["early stopping"] == pytest.approx(0.872, abs=0.001)
    assert not findings.all_within_noise
    said = " ".join(sentences(findings))
    assert "No single configuration differs from the best beyond seed noise" in said
    assert "the F-test finds that variant moves test.accuracy as a whole" in said
    assert "noise, not structure" not in said


def _table_of(runs: pl.DataFrame, compare: list[str]) -> Any:
    """The report's comparison of ``runs`` as a store of this sweep would show it."""
    from sweepbook.report import compare_configurations
    from sweepbook.venues import DEFAULT_VENUE, venue_named

    record = {
        "name": "s",
        "title": "S",
        "metric": "test.accuracy",
        "direction": "max",
        "compare": compare,
    }
    comparison = compare_configurations(
        runs.with_columns(best_epoch=pl.lit(1), train_seconds=pl.lit(1.0)),
        pl.DataFrame({"run_id": [], "epoch": [], "lr": []}),
        record,
        venue_named(DEFAULT_VENUE),
        replicates_text="3 seeds",
        seeds_text="3 seeds (seeds 0, 1, 2)",
    )
    axes = {planned.name: len(planned.figure.axes) for planned in comparison.figures}
    for planned in comparison.figures:
        figures.close(planned.figure)
    return comparison, axes


def test_the_table_stars_the_configuration_the_findings_choose_on_validation() -> None:
    """Validation prefers 1e-3, test 1e-2: the table's ★, the best sentence and the paper
    captions follow the validation choice, as the findings do, and say so."""

    def prefers_1e3(config: dict[str, Any]) -> float:
        return 0.2 if config[LR] == 1e-3 else 0.0

    runs = grid_runs({LR: [1e-4, 1e-3, 1e-2]}, learning_rate_matters, validation_shift=prefers_1e3)
    comparison, _ = _table_of(runs, [LR])
    starred = [row.cells[0] for row in comparison.table.rows if row.best]
    assert starred == ["0.001"]
    assert findings_of(runs, compare=[LR]).winner.values[LR] == 1e-3  # type: ignore[union-attr]
    assert "chosen on mean val.accuracy" in comparison.table.caption
    assert comparison.best_summary.startswith("Best configuration, chosen on mean val.accuracy")
    paper = comparison.paper_tables["results.tex"]
    assert "chosen on mean val.accuracy" in paper.caption


def test_the_table_decides_ties_with_holm_as_the_findings_do() -> None:
    """Raw p of 'b' against the best is below 0.05, Holm-adjusted above: ≈ in the table."""
    table = _table_of(variant_runs(HOLM_SAMPLES), ["variant"])[0].table
    marks = {row.cells[0]: ("★" if row.best else "≈" if row.tie else "") for row in table.rows}
    assert marks == {"a": "★", "b": "≈", "c": "≈", "d": "≈"}
    assert "Holm-Bonferroni-corrected over the 3 comparisons" in table.caption
    assert "p vs best (Holm)" in table.headers


def _heatmap_of(runs: pl.DataFrame) -> tuple[str, int]:
    """The heatmap's caption and its number of axes (2 with a colour bar)."""
    comparison, axes = _table_of(runs, [LR, BATCH])
    (heatmap,) = [f for f in comparison.figures if f.name.startswith("heatmap_")]
    return heatmap.caption, axes[heatmap.name]


def test_a_heatmap_of_noise_is_not_coloured_and_its_caption_says_why() -> None:
    nothing_matters = grid_runs({LR: [1e-3, 1e-2], BATCH: [16, 64]}, lambda config: 0.9)
    caption, axes = _heatmap_of(nothing_matters)
    assert "within seed noise of the best" in caption
    assert axes == 1  # no colour bar
    rate_matters = grid_runs({LR: [1e-3, 1e-2], BATCH: [16, 64]}, learning_rate_matters)
    caption, axes = _heatmap_of(rate_matters)
    assert "within seed noise" not in caption
    assert axes == 2  # the grid and its colour bar


def test_repeats_of_one_seed_count_once_not_as_seed_noise() -> None:
    """The reproducibility study's case: a configuration that repeats seed 0 five times (equal
    bits, std 0) is one replicate. Counted as five runs it would look certain and 'beat' the
    five-seed configuration; counted once, it cannot be ranked, and the findings say so."""
    rows = [
        {"run_id": f"r{i}", "status": "ok", "variant": "repeat", "repeat": i, "seed": 0}
        | {"test.accuracy": 0.911}
        for i in range(5)
    ] + [
        {"run_id": f"s{i}", "status": "ok", "variant": "seeds", "repeat": 0, "seed": i}
        | {"test.accuracy": 0.90 + 0.004 * (i - 2)}
        for i in range(5)
    ]
    findings = compute_findings(
        pl.DataFrame(rows), metric="test.accuracy", direction="max", compare=["variant"]
    )
    by_variant = {c.values["variant"]: c for c in findings.configurations}
    assert by_variant["repeat"].runs == 1 and by_variant["seeds"].runs == 5
    assert findings.evidence == "thin"
    assert findings.thin_reason == "one run of the best configuration"
    said = " ".join(sentences(findings))
    assert "repeats of one seed count once" in said
    assert "differs from the best beyond seed noise" not in said
    # Without repeats (one run per holdout split, as in kfold_vs_holdout) they go unmentioned.
    plain = pl.DataFrame(rows).filter(pl.col("repeat") == 0)
    thin = compute_findings(plain, metric="test.accuracy", direction="max", compare=["variant"])
    assert thin.thin_reason == "one run of the best configuration"
    assert "repeats" not in " ".join(sentences(thin))
