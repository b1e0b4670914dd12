"""LaTeX: escaping, shared by the tables and the PGF figures (whose text LaTeX sets), and the
columns of the paper tables."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sweepbook.metrics import METRICS, metric_info

_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_SYMBOLS = (("±", "pm"), ("×", "times"), ("≥", "geq"), ("≤", "leq"), ("≈", "approx"))
# Characters pdflatex's default input encoding does not set up ("R²", "prediction − target").
_UNICODE_MATH = {"²": "$^{2}$", "−": "$-$"}
# Matplotlib writes tick labels as math ("$\mathdefault{10^{-2}}$"): those are LaTeX already.
_MATH = re.compile(r"^\$[^$]*\$$")


def latex_escape(text: str) -> str:
    """Plain text as LaTeX that typesets the same characters."""
    escaped = "".join(_SPECIALS.get(char, _UNICODE_MATH.get(char, char)) for char in text)
    for symbol, command in _SYMBOLS:
        escaped = escaped.replace(symbol, f"$\\{command}$")
    return escaped.replace("—", "--")


def latex_text(text: str) -> str:
    """A figure text for LaTeX: math strings as they are, anything else escaped."""
    return text if _MATH.match(text) else latex_escape(text)


# --- the paper table: a few decimal-aligned columns that fit a column of a paper ------------
#
# Numbers align on the decimal point without any package beyond booktabs: each number is two
# tabular cells, its integer part right-aligned against its fraction left-aligned (``r@{}l``),
# so the point sits on the boundary whatever the digits' widths, bold ones included.

POINTS_PER_INCH = 72.27  # TeX points
_SPLITS = {"test": "Test", "val": "Validation", "train": "Training"}
_METRIC_NAMES = {"f1": "F1", "roc_auc": "ROC-AUC", "ece": "ECE", "mce": "MCE"}
# First words of the stored metrics' names ("train.batch_size" is an axis, not a metric).
_METRIC_KINDS = ("accuracy", "loss", "f1", "precision", "recall", "roc", "ece", "mce")
_COLUMN_NAMES = {
    "model_bytes": "Size (kB)",
    "nonzero_params": "Non-zero weights",
    "params": "Weights",
    "best_epoch": "Best epoch",
    "train_seconds": "Training time (s)",
    "runs": "Runs",
}
# Columns that are not metrics where less is better (the best is the lowest); a metric's
# direction is the store's or the registry's (:func:`sweepbook.metrics.metric_info`). These
# descriptions have no best.
LOWER_IS_BETTER = ("model_bytes", "nonzero_params", "params")
NO_BEST = ("best_epoch", "train_seconds", "runs")
STAT_SPEC = r"r@{}l@{\,$\pm$\,}r@{}l"
NUMBER_SPEC = r"r@{}l"
TIE_MARK = r"\rlap{$^\dagger$}"  # no width: the column stays aligned


def human_label(key: str, labels: dict[str, str], record: Mapping[str, Any] | None = None) -> str:
    """The name a paper gives ``key``: the sweep's own ``[report.labels]``, else a readable
    default ("optimizer.learning_rate" -> "Learning rate", "test.f1_macro" -> "Test F1
    (macro)"); a metric the store defines itself (``record["metrics"]``) or a registered one
    not named above ("test.r2" -> "Test R²") takes its label."""
    if key in labels:
        return labels[key]
    if key in _COLUMN_NAMES:
        return _COLUMN_NAMES[key]
    split, _, name = key.partition(".")
    kind, _, average = name.partition("_")
    defined = name in ((record or {}).get("metrics") or {})
    if split in _SPLITS and (defined or (kind not in _METRIC_KINDS and name in METRICS)):
        return f"{_SPLITS[split]} {metric_info(key, record)[1]}"
    if split in _SPLITS and kind in _METRIC_KINDS:
        if name in _METRIC_NAMES:
            shown = _METRIC_NAMES[name]
        elif average and kind in _METRIC_NAMES | {"precision": "", "recall": ""}:
            shown = f"{_METRIC_NAMES.get(kind, kind)} ({average})"
        else:
            shown = name.replace("_", " ")
        return f"{_SPLITS[split]} {shown}"
    short = key.rsplit(".", 1)[-1].replace("_", " ")
    return short[:1].upper() + short[1:]


def lower_is_better(key: str, record: Mapping[str, Any] | None = None) -> bool:
    """Whether the best of column ``key`` is its lowest: sizes, and metrics whose direction
    (the store's definition, else the registry's) is "min"."""
    return key in LOWER_IS_BETTER or metric_info(key, record)[0] == "min"


def _minus(text: str) -> str:
    return text.replace("-", "$-$")


def decimal_parts(text: str) -> tuple[str, str]:
    """A formatted number split at its decimal point: ("0", ".9712"), ("16", "")."""
    whole, point, fraction = text.partition(".")
    return _minus(whole), point + fraction


def scientific_parts(value: float) -> tuple[str, str]:
    """``3e-05`` as ("3", "$\\times10^{-5}$"): mantissa, then the power of ten."""
    mantissa, _, exponent = f"{value:e}".partition("e")
    whole, fraction = decimal_parts(f"{float(mantissa):g}")
    return whole, f"{fraction}$\\times10^{{{int(exponent)}}}$"


def _bold(parts: list[str], on: bool) -> list[str]:
    return [f"\\textbf{{{part}}}" if on and part else part for part in parts]


@dataclass(frozen=True)
class PaperColumn:
    """One column as a reader sees it: a header over ``len(spec cells)`` tabular columns."""

    header: str  # plain text; escaped when written
    spec: str  # tabular column specification
    cells: list[list[str]]  # per row, one LaTeX string per tabular column of ``spec``
    widths: list[float]  # each row's printed width in ems, to estimate the table's width

    @property
    def span(self) -> int:
        return len(self.cells[0]) if self.cells else 1


def text_column(header: str, values: list[str]) -> PaperColumn:
    return PaperColumn(
        header, "l", [[latex_escape(v)] for v in values], list(map(text_ems, values))
    )


def axis_column(header: str, values: list[Any], shown: list[str]) -> PaperColumn:
    """A swept axis: numbers aligned on the point (in scientific notation for the whole column
    when the HTML report writes any of its values that way: ``shown`` holds those texts),
    anything else as text."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not numeric:
        return text_column(header, shown)
    scientific = any("e" in text for text in shown)
    parts = [
        scientific_parts(float(v)) if scientific else decimal_parts(text)
        for v, text in zip(values, shown, strict=True)
    ]
    widths = [text_ems(text) + (1.5 if scientific else 0.0) for text in shown]  # "×10^"
    return PaperColumn(header, NUMBER_SPEC, [list(p) for p in parts], widths)


def decimals_for(stds: list[float | None], default: int, most: int = 4) -> int:
    """Two significant digits of the smallest spread, between 0 and ``most`` decimals."""
    spreads = [s for s in stds if s is not None and math.isfinite(s) and s > 0]
    if not spreads:
        return min(default, most)
    return max(0, min(most, 1 - math.floor(math.log10(min(spreads)))))


def stat_column(
    header: str,
    means: list[float | None],
    stds: list[float | None],
    *,
    best: Collection[int],
    ties: Collection[int] = (),
    scale: float = 1.0,
    default_decimals: int = 4,
    most_decimals: int = 4,
) -> PaperColumn:
    """Mean ± std per row, each aligned on its point; ``best`` rows bold, ``ties`` marked †.
    A column whose std is zero or missing in every row shows the mean alone."""
    means = [None if m is None else m * scale for m in means]
    stds = [None if s is None else s * scale for s in stds]
    decimals = decimals_for(stds, default_decimals, most_decimals)
    spread = any(s is not None and math.isfinite(s) and s > 0 for s in stds)
    cells, widths = [], []
    for index, (mean, std) in enumerate(zip(means, stds, strict=True)):
        if mean is None or not math.isfinite(mean):
            parts = ["--", "", "", ""] if spread else ["--", ""]
            cells.append(parts)
            widths.append(1.0)
            continue
        mean_text = f"{mean:,.{decimals}f}"
        parts = [*decimal_parts(mean_text)]
        width = text_ems(mean_text, bold=index in best)
        if spread:
            std_text = f"{std or 0.0:,.{decimals}f}"
            parts += decimal_parts(std_text)
            width += text_ems(std_text, bold=index in best) + PLUS_MINUS_EMS
        parts = _bold(parts, index in best)
        if index in ties:
            parts[-1] += TIE_MARK
        cells.append(parts)
        widths.append(width)
    return PaperColumn(header, STAT_SPEC if spread else NUMBER_SPEC, cells, widths)


def interval_column(
    header: str, lows: list[float | None], highs: list[float | None], decimals: int
) -> PaperColumn:
    """[low, high] per row, both ends aligned on their points."""
    cells, widths = [], []
    for low, high in zip(lows, highs, strict=True):
        if low is None or high is None or not math.isfinite(low) or not math.isfinite(high):
            cells.append(["--", "", "", ""])
            widths.append(1.0)
            continue
        low_text, high_text = f"{low:.{decimals}f}", f"{high:.{decimals}f}"
        low_whole, low_rest = decimal_parts(low_text)
        high_whole, high_rest = decimal_parts(high_text)
        cells.append([f"[{low_whole}", low_rest, high_whole, f"{high_rest}]"])
        widths.append(text_ems(f"[{low_text}, {high_text}]"))
    return PaperColumn(header, r"r@{}l@{, }r@{}l", cells, widths)


@dataclass(frozen=True)
class PaperTable:
    caption: str  # LaTeX
    label: str
    columns: list[PaperColumn]

    @property
    def rows(self) -> int:
        return len(self.columns[0].cells) if self.columns else 0

    def estimated_width_pt(self, font_pt: float = 10.0) -> float:
        """About how wide LaTeX sets the table: each column's widest text (see
        :func:`text_ems`) and 6 pt of space either side of it."""
        total = 0.0
        for column in self.columns:
            header = max(text_ems(line) for line in header_lines(column.header))
            total += max([header, *column.widths]) * font_pt + 12
        return total


# Widths in ems of Computer Modern at 10 pt (Times is narrower): digits are half an em in every
# text font; bold ones 15% wider; letters average a little less than digits.
_EMS = {".": 0.28, ",": 0.28, " ": 0.33, "[": 0.28, "]": 0.28, "-": 0.33}
PLUS_MINUS_EMS = 1.1  # "\,$\pm$\,"


def text_ems(text: str, *, bold: bool = False) -> float:
    """How wide ``text`` prints, in ems (an estimate good to a few percent)."""
    ems = sum(0.5 if char.isdigit() else _EMS.get(char, 0.46) for char in text)
    return ems * (1.15 if bold else 1.0)


STACK_HEADERS_LONGER_THAN = 10  # characters: a longer header of several words takes two lines


def header_lines(header: str) -> list[str]:
    """A header as one line, or as two split at the space nearest its middle when it is long
    (a header is often wider than its numbers: "Validation accuracy" over "0.9712")."""
    spaces = [i for i, char in enumerate(header) if char == " "]
    if len(header) <= STACK_HEADERS_LONGER_THAN or not spaces:
        return [header]
    middle = min(spaces, key=lambda i: abs(i - len(header) / 2))
    return [header[:middle], header[middle + 1 :]]


def header_tex(header: str, span: int) -> str:
    """A header cell: escaped, stacked when long, centred over ``span`` tabular columns."""
    lines = [latex_escape(line) for line in header_lines(header)]
    text = (
        lines[0]
        if len(lines) == 1
        else ("\\begin{tabular}[b]{@{}c@{}}" + "\\\\".join(lines) + "\\end{tabular}")
    )
    return text if span == 1 else f"\\multicolumn{{{span}}}{{c}}{{{text}}}"


def table_label(name: str, suffix: str = "") -> str:
    """``\\label`` key from a sweep name: characters LaTeX labels take safely."""
    return "tab:" + re.sub(r"[^A-Za-z0-9:._-]", "-", name) + suffix


def table_environment(table: PaperTable, *, fits_in_pt: float) -> str:
    """``table`` when the estimate fits ``fits_in_pt`` (one column), else ``table*``."""
    return "table" if table.estimated_width_pt() <= fits_in_pt else "table*"
