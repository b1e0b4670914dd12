"""What a sweep found, computed from its stored runs: the winner, what is within seed noise of
it, what each compared axis does, whether two axes interact, and what went wrong; then the
same in plain sentences (:func:`sentences`), generated from the numbers, never typed per study.

Pure: a runs frame (one row per run, as ``runs.parquet`` holds it) and the sweep's report
settings in, a typed :class:`Findings` out. No I/O, no figures.

Statistical choices, each stated in the sentences it produces:

- The winner is chosen on validation where the headline is a ``test.*`` metric and the store
  has the matching ``val.*`` one: a configuration chosen on the test runs it is reported with
  has an optimistically biased mean (the maximum of noisy means), one chosen on validation
  does not. Without a validation metric the bias is stated instead.
- Other configurations are compared with the winner by Welch's t-test on the headline metric,
  Holm-Bonferroni-corrected over the k - 1 comparisons (:func:`stats.holm_adjust`).
- An axis "matters" when its main effect exceeds the within-configuration (seed) variance by an
  F-test (:func:`stats.main_effect_test`); two axes interact by the two-way ANOVA
  (:func:`stats.interaction_test`).
- The test set's own sampling noise (a Wilson interval from its size, read from the stored
  confusion matrix) is shown beside seed noise for accuracy metrics: every seed is scored on
  the same test set, so averaging seeds does not shrink it.
- Intervals of a mean: :func:`stats.mean_interval` (a t-interval below
  :data:`stats.BOOTSTRAP_MIN_RUNS` runs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from sweepbook import stats
from sweepbook.halving import STOPPED

ALPHA = 0.05  # the significance level of every verdict, as in the report's table
CONFIDENCE = 0.95
# Configurations a sentence names one by one; beyond this it names these and counts the rest.
NAMED_AT_MOST = 6


@dataclass(frozen=True)
class Configuration:
    """One configuration of the compared axes, over its runs."""

    label: str  # "learning_rate=0.003, batch_size=16"
    values: dict[str, Any]  # axis -> value
    runs: int
    mean: float  # of the headline metric
    std: float | None  # over runs (ddof=1); None for one run
    ci_low: float | None
    ci_high: float | None
    selection_mean: float  # of the metric the winner is chosen on
    p_vs_winner: float | None  # Welch's t-test; None for the winner itself
    p_adjusted: float | None  # Holm-Bonferroni over the k - 1 comparisons
    # "winner", "tie" (within seed noise of it), "worse", "better" (beyond noise, on the
    # headline, than a winner chosen on validation), or "untested" (too few runs to test).
    verdict: str


@dataclass(frozen=True)
class AxisEffect:
    """The headline metric's marginal mean per value of one compared axis."""

    axis: str
    levels: list[tuple[str, float]]  # (value as text, marginal mean), in the axis's order
    best_level: str
    worst_level: str
    spread: float  # best minus worst marginal mean, positive
    seed_std: float | None  # pooled within-configuration std; None when it cannot be measured
    test: stats.FTest
    beyond_noise: bool | None  # None: cannot be tested (one run per configuration)


@dataclass(frozen=True)
class Interaction:
    axes: tuple[str, str]
    test: stats.FTest
    interact: bool


@dataclass(frozen=True)
class TestSetNoise:
    """Sampling noise of an accuracy measured on ``examples`` test examples."""

    examples: int
    accuracy: float  # the winner's mean
    low: float  # Wilson interval
    high: float


@dataclass(frozen=True)
class Problem:
    status: str  # "diverged" or "failed"
    label: str


@dataclass(frozen=True)
class Findings:
    metric: str
    direction: Literal["max", "min"]
    selection_metric: str  # == metric unless the winner is chosen on validation
    compare: list[str]
    planned: int
    ok: int
    problems: list[Problem]
    # "ranked": tests ran; "thin": too little evidence to rank (the reason says why);
    # "no_runs": nothing finished.
    evidence: Literal["ranked", "thin", "no_runs"]
    thin_reason: str | None
    interval_method: str
    winner: Configuration | None
    configurations: list[Configuration]
    axes: list[AxisEffect]
    interaction: Interaction | None
    test_noise: TestSetNoise | None
    sampled: bool
    repeats_counted_once: bool = False  # runs repeating one seed were merged into one replicate

    @property
    def selected_on_validation(self) -> bool:
        return self.selection_metric != self.metric

    @property
    def all_within_noise(self) -> bool:
        """Ranked, and no configuration differs from the winner beyond seed noise: a figure
        should not colour these differences as structure."""
        others = [c for c in self.configurations if c.verdict != "winner"]
        if self.evidence != "ranked" or any(effect.beyond_noise for effect in self.axes):
            return False
        return all(c.verdict == "tie" for c in others)


def selection_metric_for(metric: str, columns: Sequence[str], runs: pl.DataFrame) -> str:
    """``val.X`` for a ``test.X`` headline when every run stored it, else ``metric``."""
    split, _, name = metric.partition(".")
    validation = f"val.{name}"
    if split != "test" or validation not in columns:
        return metric
    values = runs[validation].cast(pl.Float64)
    return metric if values.null_count() or values.is_nan().any() else validation


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple | pl.Series):
        return "[" + ", ".join(value_text(v) for v in list(value)) + "]"
    return "—" if value is None else str(value)


def short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def label_of(row: dict[str, Any], compare: Sequence[str]) -> str:
    return ", ".join(f"{short_key(k)}={value_text(row[k])}" for k in compare) or "all runs"


def compute_findings(
    runs: pl.DataFrame,
    *,
    metric: str,
    direction: Literal["max", "min"],
    compare: Sequence[str],
    planned: int | None = None,
    sampled: bool = False,
) -> Findings:
    """The findings of one sweep from its runs (every status; one row per run)."""
    compare = list(compare)
    problems = [
        Problem(row["status"], label_of(row, compare))
        # Runs a successive halving stopped at a rung are its design, not a problem.
        for row in runs.filter(~pl.col("status").is_in(["ok", STOPPED])).iter_rows(named=True)
    ]
    ok = runs.filter(pl.col("status") == "ok")
    if metric in ok.columns:
        ok = ok.filter(pl.col(metric).is_not_null() & pl.col(metric).cast(pl.Float64).is_not_nan())
    selection = selection_metric_for(metric, ok.columns, ok) if metric in ok.columns else metric
    repeated = "repeat" in ok.columns and ok["repeat"].drop_nulls().n_unique() > 1
    if metric in ok.columns:
        ok = one_row_per_replicate(ok, compare, list(dict.fromkeys([metric, selection])))
    base = dict(
        metric=metric,
        direction=direction,
        selection_metric=selection,
        compare=compare,
        planned=runs.height if planned is None else planned,
        ok=ok.height,
        problems=problems,
        sampled=sampled,
        repeats_counted_once=repeated,
    )
    if ok.is_empty() or metric not in ok.columns:
        return Findings(
            **base,  # type: ignore[arg-type]
            evidence="no_runs",
            thin_reason=None,
            interval_method="",
            winner=None,
            configurations=[],
            axes=[],
            interaction=None,
            test_noise=None,
        )
    summary = stats.summarize(ok, compare, list(dict.fromkeys([metric, selection])))
    winner_row = stats.best_index(summary, selection, direction)
    assert winner_row is not None  # every ok run has the metric, so some mean exists
    samples = [
        ok.filter(pl.col("run_id").is_in(ids))[metric].cast(pl.Float64).to_list()
        for ids in summary["run_ids"].to_list()
    ]
    thin_reason = _thin_reason(summary, winner_row)
    configurations = _configurations(
        summary, samples, compare, metric, selection, direction, winner_row, tested=not thin_reason
    )
    axes = (
        []
        if sampled or thin_reason == "one configuration"
        else _axis_effects(ok, compare, metric, direction)
    )
    return Findings(
        **base,  # type: ignore[arg-type]
        evidence="thin" if thin_reason else "ranked",
        thin_reason=thin_reason,
        interval_method=stats.mean_interval(samples[winner_row])[2],
        winner=configurations[winner_row],
        configurations=configurations,
        axes=axes,
        interaction=None if sampled else _interaction(ok, compare, metric),
        test_noise=_test_noise(ok, metric, configurations[winner_row].mean),
    )


def best_run_ids(runs: pl.DataFrame, record: Mapping[str, Any]) -> list[str]:
    """The ``ok`` runs of the best configuration that :func:`from_record` chooses (on the
    validation twin of a ``test.*`` headline, as the report does), every repeat included;
    none when nothing finished. ``--save-params best`` keeps these runs' parameters."""
    winner = from_record(runs, record).winner
    if winner is None:
        return []
    ok = runs.filter(pl.col("status") == "ok")
    compare = list(record["compare"])
    for row in stats.summarize(ok, compare, []).iter_rows(named=True):
        if {key: row[key] for key in compare} == winner.values:
            return sorted(row["run_ids"])
    return []


def one_row_per_replicate(ok: pl.DataFrame, compare: list[str], metrics: list[str]) -> pl.DataFrame:
    """Runs that repeat one seed (``[[variant]] repeat = N``) are not independent samples of seed
    noise: they are one replicate, trained N times (with bit-identical results, as sweepbook's
    explicit keys promise). Counting them as N runs would give a standard deviation of 0 and a
    spurious certainty, so each (configuration, seed, fold) becomes one row, its metrics the
    mean over its repeats."""
    if "repeat" not in ok.columns or ok["repeat"].drop_nulls().n_unique() < 2:
        return ok
    keys = [key for key in (*compare, "seed", "data.fold") if key in ok.columns]
    others = [c for c in ok.columns if c not in keys and c not in metrics]
    collapsed = ok.group_by(keys, maintain_order=True).agg(
        *(pl.col(m).cast(pl.Float64).mean() for m in metrics),
        *(pl.col(c).first() for c in others),
    )
    return collapsed.select(ok.columns)


def _thin_reason(summary: pl.DataFrame, winner: int) -> str | None:
    if summary.height < 2:
        return "one configuration"
    if summary["n"].max() < 2:  # type: ignore[operator]
        return "one run per configuration"
    if summary["n"][winner] < 2:
        return "one run of the best configuration"
    return None


def _configurations(
    summary: pl.DataFrame,
    samples: list[list[float]],
    compare: list[str],
    metric: str,
    selection: str,
    direction: Literal["max", "min"],
    winner: int,
    *,
    tested: bool,
) -> list[Configuration]:
    raw = [
        None if row == winner or not tested else stats.welch_t_test(sample, samples[winner])
        for row, sample in enumerate(samples)
    ]
    compared = {row: value for row, value in enumerate(raw) if value is not None}
    adjusted: list[float | None] = [None] * len(samples)
    for row, corrected in zip(compared, stats.holm_adjust(list(compared.values())), strict=True):
        adjusted[row] = corrected
    sign = 1.0 if direction == "max" else -1.0
    winner_mean = float(np.mean(samples[winner]))
    result = []
    for row, values in enumerate(summary.iter_rows(named=True)):
        low, high, _ = stats.mean_interval(samples[row], confidence=CONFIDENCE)
        mean = float(values[f"{metric}:mean"])
        p: float | None = adjusted[row]
        if row == winner:
            verdict = "winner"
        elif p is None or math.isnan(p):
            verdict = "untested"
        elif p >= ALPHA:
            verdict = "tie"
        else:
            verdict = "better" if sign * (mean - winner_mean) > 0 else "worse"
        result.append(
            Configuration(
                label=label_of(values, compare),
                values={k: values[k] for k in compare},
                runs=int(values["n"]),
                mean=mean,
                std=values[f"{metric}:std"],
                ci_low=None if math.isnan(low) else low,
                ci_high=None if math.isnan(high) else high,
                selection_mean=float(values[f"{selection}:mean"]),
                p_vs_winner=raw[row],
                p_adjusted=p,
                verdict=verdict,
            )
        )
    return result


def _ordered_levels(values: list[Any]) -> list[Any]:
    """An axis's values in reading order: ascending when numeric, else as first stored."""
    unique = list(dict.fromkeys(value_text(v) for v in values))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric:
        by_text = {value_text(v): v for v in values}
        return sorted(unique, key=lambda text: by_text[text])
    return unique


def _axis_effects(
    ok: pl.DataFrame, compare: list[str], metric: str, direction: Literal["max", "min"]
) -> list[AxisEffect]:
    values = ok[metric].cast(pl.Float64).to_numpy()
    cells = (
        [tuple(value_text(v) for v in row) for row in ok.select(compare).iter_rows()]
        if compare
        else []
    )
    error_ss, error_df = stats.within_cell_error(cells, values.tolist()) if cells else (0.0, 0)
    seed_std = math.sqrt(error_ss / error_df) if error_df > 0 else None
    effects = []
    for axis in compare:
        texts = [value_text(v) for v in ok[axis].to_list()]
        if len(set(texts)) < 2:
            continue
        order = _ordered_levels(ok[axis].to_list())
        means = {level: float(values[[t == level for t in texts]].mean()) for level in order}
        ranked = sorted(order, key=lambda level: means[level], reverse=direction == "max")
        test = stats.main_effect_test(texts, cells, values.tolist())
        effects.append(
            AxisEffect(
                axis=axis,
                levels=[(level, means[level]) for level in order],
                best_level=ranked[0],
                worst_level=ranked[-1],
                spread=abs(means[ranked[0]] - means[ranked[-1]]),
                seed_std=seed_std,
                test=test,
                beyond_noise=None if math.isnan(test.p) else test.p < ALPHA,
            )
        )
    return effects


def _interaction(ok: pl.DataFrame, compare: list[str], metric: str) -> Interaction | None:
    if len(compare) != 2:
        return None
    first, second = ([value_text(v) for v in ok[axis].to_list()] for axis in compare)
    if len(set(first)) < 2 or len(set(second)) < 2:
        return None
    test = stats.interaction_test(first, second, ok[metric].cast(pl.Float64).to_list())
    if test is None or math.isnan(test.p):
        return None
    return Interaction((compare[0], compare[1]), test, test.p < ALPHA)


def _test_noise(ok: pl.DataFrame, metric: str, accuracy: float) -> TestSetNoise | None:
    """The Wilson interval of an accuracy metric, its test-set size read from the stored
    confusion matrix of the same split (its entries count that split's examples)."""
    split, _, name = metric.partition(".")
    confusion = f"{split}.confusion"
    if name != "accuracy" or confusion not in ok.columns or ok[confusion].null_count():
        return None
    sizes = {int(np.asarray(matrix.to_list()).sum()) for matrix in ok[confusion]}
    if len(sizes) != 1:  # folds or subsets of different sizes: no single test-set size
        return None
    examples = sizes.pop()
    low, high = stats.wilson_interval(accuracy, examples, confidence=CONFIDENCE)
    return TestSetNoise(examples, accuracy, low, high)


# --- sentences -------------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:.4f}"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _named(labels: list[str]) -> str:
    if len(labels) <= NAMED_AT_MOST:
        return "; ".join(labels)
    return "; ".join(labels[:NAMED_AT_MOST]) + f"; and {len(labels) - NAMED_AT_MOST} more"


def _stat(configuration: Configuration, method: str) -> str:
    if configuration.std is None:
        return f"{_number(configuration.mean)} (one run)"
    text = f"{_number(configuration.mean)} ± {_number(configuration.std)} (mean ± std over "
    text += f"{configuration.runs} runs"
    if configuration.ci_low is not None and configuration.ci_high is not None:
        text += (
            f"; 95% {method} [{_number(configuration.ci_low)}, {_number(configuration.ci_high)}]"
        )
    return text + ")"


def sentences(findings: Findings) -> list[str]:
    """The findings in plain English, one finding per sentence, every number from ``findings``."""
    if findings.evidence == "no_runs":
        return [
            f"No run finished successfully ({findings.planned} planned), so there is nothing "
            "to compare yet.",
            *_problem_sentences(findings),
        ]
    winner = findings.winner
    assert winner is not None
    said = _winner_sentences(findings, winner)
    if findings.evidence == "thin":
        said += _thin_sentences(findings, winner)
    else:
        said += _comparison_sentences(findings)
    said += [_axis_sentence(findings, effect) for effect in findings.axes]
    if findings.interaction is not None:
        said.append(_interaction_sentence(findings.interaction))
    said += _test_noise_sentences(findings, winner)
    return said + _problem_sentences(findings)


def _lower_note(findings: Findings, before: str, after: str = "") -> str:
    """ "lower is better" where it is: a reader assumes higher of a score, so the sentence says
    so for losses and errors (higher-is-better metrics read as they always have)."""
    return f"{before}lower is better{after}" if findings.direction == "min" else ""


def _winner_sentences(findings: Findings, winner: Configuration) -> list[str]:
    metric = findings.metric
    if findings.evidence == "thin" and findings.thin_reason == "one configuration":
        return [
            f"One configuration ({winner.label}): "
            f"{metric} {_stat(winner, findings.interval_method)}."
        ]
    lead = (
        "Best"
        if findings.evidence == "ranked"
        else "Highest"
        if findings.direction == "max"
        else "Lowest"
    )
    if findings.selected_on_validation:
        return [
            f"{lead} configuration, chosen on mean {findings.selection_metric} "
            f"({_number(winner.selection_mean)}{_lower_note(findings, ', ')}): {winner.label}, "
            f"with {metric} "
            f"{_stat(winner, findings.interval_method)}.",
            f"It is chosen on validation, not on {metric}, so that its {metric} is not "
            "inflated by the choice (the default for test metrics where the sweep stores the "
            "validation one).",
        ]
    return [
        f"{lead} configuration by mean {metric}{_lower_note(findings, ' (', ')')}: "
        f"{winner.label}, with "
        f"{_stat(winner, findings.interval_method)}.",
        f"This mean is optimistically biased: the configuration was chosen on the same runs it "
        f"is reported with, and the store has no validation counterpart of {metric} to choose on.",
    ]


def _thin_sentences(findings: Findings, winner: Configuration) -> list[str]:
    if findings.thin_reason == "one configuration":
        return [
            "Evidence too thin to rank: the sweep has only one configuration, so there is "
            "nothing to compare it with."
        ]
    if findings.thin_reason == "one run of the best configuration":
        repeats = " (repeats of one seed count once)" if findings.repeats_counted_once else ""
        return [
            f"Evidence too thin to rank: the highest configuration has one independent run"
            f"{repeats}, so its seed noise cannot be measured and no other configuration can be "
            "shown worse than it."
        ]
    return [
        "Evidence too thin to rank: with one run per configuration seed noise cannot be "
        f"measured, so no configuration can be shown better than another; another seed could "
        f"reorder all {len(findings.configurations)}."
    ]


def _comparison_sentences(findings: Findings) -> list[str]:
    others = [c for c in findings.configurations if c.verdict != "winner"]
    tested = len([c for c in others if c.verdict != "untested"])
    method = (
        f"Welch's t-test of {findings.metric} against the best, Holm-Bonferroni-corrected over "
        f"the {tested} comparison{'s' if tested != 1 else ''}"
    )
    by_verdict = {
        verdict: [c.label for c in others if c.verdict == verdict]
        for verdict in ("tie", "worse", "better", "untested")
    }
    if findings.all_within_noise:
        said = [
            f"No other configuration differs from the best beyond seed noise ({method}, "
            f"adjusted p ≥ {ALPHA}): with these runs the sweep cannot tell its "
            f"{len(findings.configurations)} configurations apart, and the differences between "
            "their means are noise, not structure."
        ]
    elif by_verdict["tie"] and not (by_verdict["worse"] or by_verdict["better"]):
        moving = [effect.axis for effect in findings.axes if effect.beyond_noise]
        said = [
            f"No single configuration differs from the best beyond seed noise ({method}, "
            f"adjusted p ≥ {ALPHA}), yet the F-test finds that {', '.join(moving)} "
            f"{'moves' if len(moving) == 1 else 'move'} {findings.metric} as a whole: it pools "
            "the seed noise of every configuration, whereas each pairwise test has only the "
            "two configurations' runs and is corrected for the others. The configurations "
            "differ, but these runs cannot say which ones differ from the best."
        ]
    elif by_verdict["tie"]:
        said = [
            f"Within seed noise of the best ({method}, adjusted p ≥ {ALPHA}): "
            f"{_named(by_verdict['tie'])}."
        ]
    else:
        said = [
            "Every other configuration differs from the best beyond seed noise "
            f"({method}, adjusted p < {ALPHA})."
        ]
    if by_verdict["worse"] and by_verdict["tie"]:
        said.append(f"Worse beyond seed noise: {_named(by_verdict['worse'])}.")
    if by_verdict["better"]:
        said.append(
            f"Better on {findings.metric} than the configuration chosen on "
            f"{findings.selection_metric}, beyond seed noise: {_named(by_verdict['better'])} "
            "(validation and test disagree)."
        )
    if by_verdict["untested"]:
        said.append(f"Not tested (fewer than two runs): {_named(by_verdict['untested'])}.")
    return said


def _f_text(test: stats.FTest) -> str:
    return f"F({test.df_effect}, {test.df_error}) = {test.f:.2f}, {_p(test.p)}"


def _axis_sentence(findings: Findings, effect: AxisEffect) -> str:
    levels = dict(effect.levels)
    text = (
        f"{effect.axis}: mean {findings.metric} per value from "
        f"{_number(levels[effect.worst_level])} "
        f"({effect.worst_level}) to {_number(levels[effect.best_level])} ({effect.best_level}), "
        f"a range of {_number(effect.spread)}"
    )
    if effect.beyond_noise is None:
        return text + "; with one run per configuration it cannot be told from seed noise."
    test = _f_text(effect.test)
    noise = f"seed std {_number(effect.seed_std)}, " if effect.seed_std is not None else ""
    if effect.beyond_noise:
        return text + f": beyond seed noise ({noise}{test}), so this axis matters."
    separated = [c.label for c in findings.configurations if c.verdict in ("worse", "better")]
    if separated and len(findings.axes) == 1:
        # The pairwise tests found a difference the F-test over all values did not: one value
        # stands apart, while the axis as a whole moves the metric too little to detect.
        return text + (
            f": the F-test over all its values detects no effect ({noise}{test}), although the "
            f"pairwise tests separate {_named(separated)} from the best: one value differs, "
            "the axis as a whole does not move the metric beyond seed noise."
        )
    return text + f": within seed noise ({noise}{test}), so no effect of this axis is detected."


def _interaction_sentence(interaction: Interaction) -> str:
    first, second = interaction.axes
    test = f"two-way ANOVA, {_f_text(interaction.test)}"
    if interaction.interact:
        return (
            f"{first} and {second} interact: the effect of one depends on the value of the other "
            f"({test}); read them together, not one at a time."
        )
    return (
        f"No evidence that {first} and {second} interact ({test}): each axis's effect can be "
        "read on its own."
    )


def _test_noise_sentences(findings: Findings, winner: Configuration) -> list[str]:
    noise = findings.test_noise
    if noise is None:
        return []
    half = (noise.high - noise.low) / 2
    said = [
        f"The test set has {noise.examples} examples, so {findings.metric} itself carries "
        f"sampling noise: a 95% Wilson interval of [{_number(noise.low)}, {_number(noise.high)}] "
        f"(about ± {half:.3f}) around the best's {_number(noise.accuracy)}"
        + (f", against a seed std of {_number(winner.std)}" if winner.std is not None else "")
        + "; every seed is scored on this same test set, so averaging seeds does not remove it."
    ]
    close = [
        c
        for c in findings.configurations
        if c.verdict != "winner" and abs(c.mean - winner.mean) < half
    ]
    if close:
        others = len(findings.configurations) - 1
        if len(close) == others:
            counted = "The other configuration lies" if others == 1 else f"All {others} others lie"
        else:
            counted = f"{len(close)} of the other {others} configurations " + (
                "lie" if len(close) > 1 else "lies"
            )
        said.append(
            f"{counted} closer than that to the best's mean: another test set of the same size "
            "could reorder them."
        )
    return said


def _problem_sentences(findings: Findings) -> list[str]:
    said = []
    for status in ("diverged", "failed"):
        labels = [p.label for p in findings.problems if p.status == status]
        if labels:
            counted = dict.fromkeys(labels)
            named = _named(
                [
                    f"{label} ×{labels.count(label)}" if labels.count(label) > 1 else label
                    for label in counted
                ]
            )
            said.append(f"{len(labels)} run{'s' if len(labels) > 1 else ''} {status}: {named}.")
    return said


def findings_record(findings: Findings) -> dict[str, Any]:
    """The findings as JSON-ready data (``report.json``): the numbers and the sentences; NaN
    and infinity, which JSON lacks, become null."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, pl.Series):
            return clean(value.to_list())
        return value

    record: dict[str, Any] = clean(asdict(findings))
    record["selected_on_validation"] = findings.selected_on_validation
    record["all_within_noise"] = findings.all_within_noise
    record["sentences"] = sentences(findings)
    return record


def from_record(runs: pl.DataFrame, record: Mapping[str, Any]) -> Findings:
    """The findings of a stored sweep: its runs and its ``sweep.json`` record (headline metric,
    direction, compared axes, planned run ids, whether axes were sampled)."""
    return compute_findings(
        runs,
        metric=record["metric"],
        direction=record["direction"],
        compare=record["compare"],
        planned=len(record["run_ids"]),
        sampled=bool(record.get("sampled", False)),
    )
