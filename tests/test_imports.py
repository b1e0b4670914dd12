"""The modules of src/ import each other along one road, without cycles: a cycle makes import
order matter and hides which module owns what (bench and bench_render had one)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sweepbook"


def imported_modules(path: Path) -> set[str]:
    """The sweepbook modules ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "sweepbook":  # from sweepbook import figures, latex
                found |= {f"sweepbook.{alias.name}" for alias in node.names}
            elif node.module.startswith("sweepbook."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sweepbook.")}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {f"sweepbook.{path.stem}": path for path in PACKAGE.glob("*.py")}
    return {name: imported_modules(path) & set(modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that returns to its start, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_src_has_no_import_cycle():
    graph = import_graph()
    assert "sweepbook.bench_render" in graph["sweepbook.bench"]  # the graph sees imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_report_reads_stores_without_the_training_code():
    """DESIGN: report reads only the store (results' row builders import train for types only)."""
    code = (
        "import sys, sweepbook.report, sweepbook.results; "
        "print(sorted(m for m in sys.modules if m in ('sweepbook.train', 'sweepbook.engine')))"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
