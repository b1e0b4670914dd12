"""The shipped studies: every sweep file is a study `nox -s studies` runs (or the cluster
example), opens with its question, command and expected finding, and is listed in the README."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLUSTER_EXAMPLE = "sweeps/lr_batch_cluster.toml"  # the README's SLURM example, not a study


def nox_studies() -> list[str]:
    """STUDIES from noxfile.py, read without importing nox (not installed with the tests)."""
    tree = ast.parse((REPO / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "STUDIES" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("noxfile.py has no STUDIES")


SWEEP_FILES = sorted(f"sweeps/{p.name}" for p in (REPO / "sweeps").glob("*.toml"))


def test_every_sweep_is_a_study_or_the_cluster_example():
    studies = nox_studies()
    assert len(set(studies)) == len(studies)
    assert sorted([*studies, CLUSTER_EXAMPLE]) == SWEEP_FILES


@pytest.mark.parametrize("sweep_file", nox_studies())
def test_study_opens_with_question_command_and_expected_finding(sweep_file):
    lines = (REPO / sweep_file).read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").strip())
    assert "?" in " ".join(header[:3]), f"{sweep_file}: the opening comment asks no question"
    assert any(line.startswith("Run: nox -s sweep -- " + sweep_file) for line in header)
    assert any(line.startswith("Expected") for line in header)


@pytest.mark.parametrize("sweep_file", nox_studies())
def test_readme_lists_every_study(sweep_file):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert Path(sweep_file).name in readme
