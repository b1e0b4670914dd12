"""What a sweep file can make sweepbook do: its strings are escaped in HTML and LaTeX, its name
never leads outside the output directory, and nothing it holds is evaluated or unpickled."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import TINY_EXPERIMENT
from sweepbook.cli import EXIT_BAD_INPUT, EXIT_OK, main
from sweepbook.config import ConfigError, load_sweep
from sweepbook.report import templates_dir

SCRIPT = "<script>alert(1)</script>"
# Every LaTeX special, and mathtext that matplotlib cannot parse ($\nosuchcommand$).
LATEX = r"50% & #{~^}\ $\nosuchcommand$"

HOSTILE_SWEEP = f"""\
# Is {SCRIPT} escaped in the question?
# Run: sweepbook run sweeps/hostile.toml {SCRIPT}
experiment = "hostile"
seeds = [0]

[set]
"train.epochs" = 1

[[variant]]
name = "{SCRIPT}"

[[variant]]
name = '{LATEX}'
"model.widths" = [16]

[report]
title = "{SCRIPT}"
compare = ["variant"]
"""


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sweep whose every free-text field carries markup, trained and reported once."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "experiments").mkdir()
    (root / "sweeps").mkdir()
    experiment = TINY_EXPERIMENT.replace("tiny MLP on digits for tests", SCRIPT)
    (root / "experiments" / "hostile.toml").write_text(experiment)
    (root / "sweeps" / "hostile.toml").write_text(HOSTILE_SWEEP)
    out = root / "out"
    assert main(["run", str(root / "sweeps" / "hostile.toml"), "--out", str(out)]) == EXIT_OK
    return out


def test_sweep_strings_are_escaped_in_the_html_report(hostile_report: Path) -> None:
    html = (hostile_report / "index.html").read_text()

    # The report's only script is its own table sorter, verbatim: any other <script> would have
    # come from the input.
    own = (templates_dir() / "partials" / "sort.js").read_text(encoding="utf-8").strip()
    assert html.lower().count("<script") == 1
    (script,) = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    assert script.strip() == own
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    # Title, question, variant name in the table, run command, sweep and experiment text.
    assert html.count(escaped) >= 5
    assert "50% &amp; #{~^}" in html


def test_sweep_strings_are_escaped_in_the_latex_table(hostile_report: Path) -> None:
    tex = (hostile_report / "tables" / "results.tex").read_text()

    assert r"50\% \& \#\{\textasciitilde{}\textasciicircum{}\}\textbackslash{}" in tex
    assert r"\$\textbackslash{}nosuchcommand\$" in tex
    # The name's "&" is escaped: every row spans as many tabular columns as the header (whose
    # \multicolumn{n} headers span n).
    rows = [line for line in tex.splitlines() if line.rstrip().endswith("\\\\")]
    spans = {
        len(re.findall(r"(?<!\\)&", row))
        + 1
        + sum(int(n) - 1 for n in re.findall(r"\\multicolumn\{(\d+)\}", row))
        for row in rows
    }
    assert len(rows) == 3 and len(spans) == 1


def test_the_report_index_escapes_titles(hostile_report: Path) -> None:
    index = (hostile_report.parent / "index.html").read_text()

    assert SCRIPT not in index
    assert "&lt;script&gt;" in index


@pytest.mark.parametrize(
    "name",
    ["..\\..\\x.toml", ".hidden.toml", "-rf.toml", "with space.toml", "new\nline.toml"],
    ids=["backslashes", "dot-first", "dash-first", "space", "newline"],
)
def test_sweep_file_names_that_could_leave_the_output_directory_are_refused(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    sweep = project / "sweeps" / name
    sweep.write_text((project / "sweeps" / "tiny.toml").read_text())
    monkeypatch.chdir(project)

    with pytest.raises(ConfigError, match="sweep file name must be"):
        load_sweep(sweep)
    assert main(["run", str(sweep)]) == EXIT_BAD_INPUT
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (project / "reports").exists()


def test_a_sweep_reached_through_dot_dot_still_writes_under_reports_by_its_name(
    project: Path,
) -> None:
    """A path with ``..`` in it is fine; only the file's own name picks the output folder."""
    sweep = load_sweep(project / "sweeps" / ".." / "sweeps" / "tiny.toml")

    assert sweep.name == "tiny"


# --- no eval, exec or unpickling anywhere in the package -------------------------------------

SOURCES = sorted((Path(__file__).resolve().parents[1] / "src" / "sweepbook").rglob("*.py"))
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def unsafe_constructs(source: str) -> list[str]:
    """Calls that run or unpickle data: builtin eval/exec/compile, pickle-like modules,
    ``yaml.load`` / ``yaml.unsafe_load``, ``allow_pickle=True``, ``shell=True``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names]
            modules = [node.module] if isinstance(node, ast.ImportFrom) and node.module else names
            found += [f"import {m}" for m in modules if m.split(".")[0] in FORBIDDEN_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
            found.append(f"{func.id}()")
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "yaml"
            and func.attr in ("load", "unsafe_load", "full_load", "load_all")
        ):
            found.append(f"yaml.{func.attr}()")
        for keyword in node.keywords:
            risky = keyword.arg in ("allow_pickle", "shell")
            if risky and isinstance(keyword.value, ast.Constant) and keyword.value.value:
                found.append(f"{keyword.arg}=True")
    return found


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("eval(text)", ["eval()"]),
        ("import pickle", ["import pickle"]),
        ("from pickle import loads", ["import pickle"]),
        ("yaml.load(text)", ["yaml.load()"]),
        ("np.load(path, allow_pickle=True)", ["allow_pickle=True"]),
        ("subprocess.run(cmd, shell=True)", ["shell=True"]),
        ("jitted.lower(x).compile()", []),  # a method, not the builtin
        ("np.load(path, allow_pickle=False)", []),
    ],
)
def test_the_static_check_finds_what_it_looks_for(code: str, expected: list[str]) -> None:
    assert unsafe_constructs(code) == expected


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.name)
def test_no_module_evaluates_or_unpickles_its_input(path: Path) -> None:
    assert unsafe_constructs(path.read_text(encoding="utf-8")) == []
