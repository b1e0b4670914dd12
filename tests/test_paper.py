"""The paper files, checked by LaTeX itself: a paper of each venue ``\\input``s the paper table
and the full one, includes every PDF figure at its natural size and one PGF figure, and must
compile without an error, an overfull box or a font-size substitution; every figure file must
be exactly the venue's column or text width, with its text at the venue's sizes."""

from __future__ import annotations

import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from sweepbook.latex import POINTS_PER_INCH
from sweepbook.report import render_report
from sweepbook.venues import Venue, venue_named
from synthetic_store import write_synthetic_store


def _latex_packages_installed(*names: str) -> bool:
    if shutil.which("pdflatex") is None or shutil.which("kpsewhich") is None:
        return False
    found = subprocess.run(["kpsewhich", *names], capture_output=True, text=True, check=False)
    return len(found.stdout.split()) == len(names)


needs_pdflatex = pytest.mark.skipif(
    not _latex_packages_installed("booktabs.sty", "lmodern.sty", "pgf.sty"),
    reason="needs pdflatex with booktabs, lmodern and pgf (apt-get install texlive-latex-base "
    "texlive-latex-recommended texlive-pictures)",
)

QUICKSTART_AXES = {
    "optimizer.learning_rate": [3e-4, 1e-3, 3e-3, 1e-2],
    "train.batch_size": [16, 64, 256],
}
THREE_AXES = {
    "optimizer.learning_rate": [3e-3, 3e-2],
    "train.batch_size": [64, 128],
    "model.dropout": [0.0, 0.2],
}
BIG_POINTS_PER_INCH = 72.0  # PDF user space


def _rendered(root: Path, axes: dict[str, list[object]], name: str, venue: str) -> Path:
    store = write_synthetic_store(root / f"{name}-{venue}", axes, name=name)
    render_report(store, venue)
    return store


def _rendered_by_the_cli(root: Path, axes: dict[str, list[object]], name: str) -> Path:
    """As a user re-renders a store for another venue, by its unversioned name."""
    from sweepbook.cli import EXIT_OK, main

    store = write_synthetic_store(root / f"{name}-neurips", axes, name=name)
    assert main(["report", str(store), "--venue", "neurips"]) == EXIT_OK
    return store


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The quickstart's shape for two two-column venues (the default article and AAAI, whose
    widths differ) and a three-axis sweep for a one-column venue (NeurIPS)."""
    root = tmp_path_factory.mktemp("paper")
    return {
        "article": _rendered(root, QUICKSTART_AXES, "quickstart", "article"),
        "aaai2024": _rendered(root, QUICKSTART_AXES, "quickstart", "aaai2024"),
        "neurips2024": _rendered_by_the_cli(root, THREE_AXES, "three_axes"),
    }


def pdf_page_width_in(pdf: Path) -> float:
    box = re.search(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)", pdf.read_bytes())
    assert box is not None, pdf
    return (float(box[3]) - float(box[1])) / BIG_POINTS_PER_INCH


def pdf_font_sizes(pdf: Path) -> set[float]:
    """Sizes of the ``Tf`` (set font) operators in the PDF's content streams."""
    data = pdf.read_bytes()
    sizes: set[float] = set()
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            content = zlib.decompress(match[1])
        except zlib.error:
            content = match[1]
        sizes |= {round(float(size), 2) for size in re.findall(rb"/F\d+\s+([\d.]+)\s+Tf", content)}
    return sizes


def allowed_sizes(venue: Venue) -> set[float]:
    """The venue's two sizes, and the size matplotlib's mathtext sets exponents at (0.7 of
    its text: the "-3" of a 10^-3 tick label)."""
    sizes = {venue.font_size, venue.small_font_size}
    return {round(size, 2) for size in sizes} | {round(0.7 * size, 2) for size in sizes}


@pytest.mark.parametrize("venue_name", ["article", "aaai2024", "neurips2024"])
def test_every_figure_pdf_is_the_venues_width_with_text_at_its_sizes(rendered, venue_name):
    venue = venue_named(venue_name)
    pdfs = sorted((rendered[venue_name] / "figures").glob("*.pdf"))
    assert len(pdfs) >= 5
    check_figure_sizes(rendered[venue_name], venue)


def check_figure_sizes(store: Path, venue: Venue) -> None:
    for pdf in sorted((store / "figures").glob("*.pdf")):
        width = pdf_page_width_in(pdf)
        target = min((venue.column_width_in, venue.text_width_in), key=lambda w: abs(w - width))
        assert abs(width - target) <= 0.01 * target, f"{pdf.name}: {width:.3f} in"
        sizes = pdf_font_sizes(pdf)
        assert sizes and sizes <= allowed_sizes(venue), f"{pdf.name}: {sorted(sizes)}"
    for pgf in (store / "figures").glob("*.pgf"):
        sizes = {float(s) for s in re.findall(r"\\fontsize\{([\d.]+)\}", pgf.read_text())}
        # The one 10 pt in a PGF file is in its header comment (how to set \normalsize).
        assert sizes - {10.0} <= allowed_sizes(venue), f"{pgf.name}: {sorted(sizes)}"


def paper(store: Path, venue: Venue, pgf: str = "test_accuracy_vs_learning_rate.pgf") -> str:
    """A paper with the venue's page geometry that inputs the paper table and includes every
    figure as the report's snippets do (and the figure ``pgf`` set by LaTeX), and reports every
    measured width in its log."""
    column = venue.column_width_in if venue.two_column else venue.text_width_in
    columnsep = venue.text_width_in - 2 * column if venue.two_column else 0.25
    tex = (store / "tables" / "results.tex").read_text()
    tabular = tex[tex.index(r"\begin{tabular}") : tex.rindex(r"\end{tabular}")] + r"\end{tabular}"
    environment = re.search(r"\\begin\{(table\*?)\}", tex)
    assert environment is not None
    lines = [
        r"\documentclass[10pt" + (",twocolumn" if venue.two_column else "") + "]{article}",
        r"\usepackage[T1]{fontenc}",
        # Latin Modern for every venue: scalable, so any size is set exactly, and part of
        # texlive-latex-base (Times needs texlive-fonts-recommended). The face does not
        # change a width or a size, which is what this paper checks.
        r"\usepackage{lmodern}",
        rf"\usepackage[letterpaper,textwidth={venue.text_width_in}in,"
        rf"columnsep={columnsep:.4f}in,textheight=9in]{{geometry}}",
        r"\usepackage{booktabs,graphicx,pgf,rotating}",
        r"\providecommand{\mathdefault}[1]{#1}",
        r"\newsavebox\measured",
        r"\begin{document}",
        rf"\sbox\measured{{{tabular}}}",
        rf"\typeout{{MEASURE table {environment[1]} \the\wd\measured\space"
        r" column \the\columnwidth\space text \the\textwidth}",
        r"\input{tables/results.tex}",
        r"\input{tables/results_full.tex}",
    ]
    for pdf in sorted((store / "figures").glob("*.pdf")):
        wide = pdf_page_width_in(pdf) > venue.column_width_in * 1.01
        figure = "figure*" if wide and venue.two_column else "figure"
        lines += [
            rf"\sbox\measured{{\includegraphics{{figures/{pdf.name}}}}}",
            rf"\typeout{{MEASURE figure {pdf.name} \the\wd\measured}}",
            rf"\begin{{{figure}}}[t]\centering\includegraphics{{figures/{pdf.name}}}"
            rf"\caption{{{pdf.stem.replace('_', ' ')}}}\end{{{figure}}}",
        ]
    twin = store / "figures" / pgf.replace(".pgf", ".pdf")
    wide = pdf_page_width_in(twin) > venue.column_width_in * 1.01 and venue.two_column
    lines += [
        rf"\begin{{figure{'*' if wide else ''}}}[t]\centering",
        rf"\sbox\measured{{\input{{figures/{pgf}}}}}",
        rf"\typeout{{MEASURE figure {pgf} \the\wd\measured}}",
        rf"\usebox\measured\caption{{PGF}}\end{{figure{'*' if wide else ''}}}",
        r"\end{document}",
    ]
    return "\n".join(lines) + "\n"


def compile_paper(store: Path, venue: Venue, **options: str) -> str:
    (store / "paper.tex").write_text(paper(store, venue, **options))
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=store,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = (store / "paper.log").read_text(errors="replace")
    assert result.returncode == 0, log[-3000:]
    return log


def measured(log: str) -> dict[str, float]:
    """Widths (in inches) the paper's log reports: the table, its column and text width, and
    each figure as LaTeX set it."""
    widths: dict[str, float] = {}
    for line in log.splitlines():
        if line.startswith("MEASURE table"):
            values = re.findall(r"([\d.]+)pt", line)
            for key, value in zip(("table", "column", "text"), values, strict=True):
                widths[key] = float(value) / POINTS_PER_INCH
        elif line.startswith("MEASURE figure"):
            _, _, name, width = line.split()
            widths[name] = float(width.removesuffix("pt")) / POINTS_PER_INCH
    return widths


@needs_pdflatex
@pytest.mark.parametrize("venue_name", ["article", "aaai2024", "neurips2024"])
def test_paper_compiles_with_no_overfull_box_and_figures_at_natural_size(rendered, venue_name):
    assert len(list((rendered[venue_name] / "figures").glob("*.pdf"))) >= 5
    check_paper(rendered[venue_name], venue_named(venue_name))


def check_paper(store: Path, venue: Venue, **options: str) -> None:
    log = compile_paper(store, venue, **options)
    assert "Overfull \\hbox" not in log
    assert "LaTeX Error" not in log
    # LaTeX substitutes a font size it cannot set: the text would not be the size asked for.
    assert "Size substitutions" not in log and "Font shape" not in log
    widths = measured(log)
    assert widths["table"] <= widths["column"]
    figures = {k: v for k, v in widths.items() if k.endswith((".pdf", ".pgf"))}
    assert len(figures) == len(list((store / "figures").glob("*.pdf"))) + 1  # and the PGF
    for name, width in figures.items():
        # Natural size is the venue's width, so the fonts are at 100%.
        target = min((venue.column_width_in, venue.text_width_in), key=lambda w: abs(w - width))
        assert abs(width - target) <= 0.01 * target, f"{name}: {width:.3f} in"
        assert width <= widths["text"] + 1e-3


@pytest.fixture(scope="module")
def regression_rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regression sweep (two outputs: the figures take the text width) whose paper table
    names R² (typeset as R$^{2}$) and whose residual figure's label has a minus sign."""
    store = write_synthetic_store(
        tmp_path_factory.mktemp("paper") / "regression",
        {"optimizer.learning_rate": [1e-3, 1e-2, 1e-1]},
        name="regression",
        task="regression",
        outputs=2,
        report={"table": ["test.r2"]},
    )
    render_report(store, "article")
    return store


def test_regression_figures_are_the_venues_width_with_text_at_its_sizes(regression_rendered):
    stems = {pdf.stem for pdf in (regression_rendered / "figures").glob("*.pdf")}
    assert {"predicted_vs_true", "residuals"} <= stems
    check_figure_sizes(regression_rendered, venue_named("article"))


@needs_pdflatex
def test_a_regression_paper_compiles_with_its_labels_and_figures(regression_rendered):
    assert "Test R$^{2}$" in (regression_rendered / "tables" / "results.tex").read_text()
    check_paper(regression_rendered, venue_named("article"), pgf="residuals.pgf")


def test_a_venue_name_typo_is_bad_input_naming_the_sweep_file_and_key(project, capsys):
    from sweepbook.cli import EXIT_BAD_INPUT, main

    sweep = project / "sweeps" / "tiny.toml"
    sweep.write_text(sweep.read_text() + 'venue = "icm"\n')
    assert main(["run", str(sweep)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "tiny.toml: key 'report.venue'" in err and "did you mean 'icml'" in err
    assert not (project / "reports").exists()


def test_report_refuses_an_unknown_venue_before_rendering(tmp_path, capsys):
    from sweepbook.cli import main

    store = write_synthetic_store(tmp_path / "store", {"model.dropout": [0.0, 0.2]})
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(store), "--venue", "nips"])
    assert exit_.value.code == 2
    assert "unknown venue 'nips'" in capsys.readouterr().err
    assert not (store / "index.html").exists()
