from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from sweepbook import provenance


def _git(directory: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
        cwd=directory,
        check=True,
        capture_output=True,
    )


def test_git_state_reports_commit_and_dirty_flag(tmp_path: Path):
    _git(tmp_path, "init", "-q")
    tracked = tmp_path / "sweep.toml"
    tracked.write_text("seeds = [0]\n")
    _git(tmp_path, "add", "sweep.toml")
    _git(tmp_path, "commit", "-qm", "first")
    clean = provenance.git_state(tmp_path)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    tracked.write_text("seeds = [1]\n")
    assert provenance.git_state(tmp_path) == {"commit": clean["commit"], "dirty": True}


def test_outside_git_there_is_no_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}


def test_collect_names_versions_device_and_file_hashes(project: Path):
    sweep = project / "sweeps" / "tiny.toml"
    experiment = project / "experiments" / "tiny.toml"
    info = provenance.collect(sweep, experiment, ["sweepbook", "run", str(sweep)])
    assert info["files"]["sweep"]["sha256"] == hashlib.sha256(sweep.read_bytes()).hexdigest()
    assert info["files"]["experiment"]["sha256"] == provenance.sha256_file(experiment)
    for package in ("jax", "flax", "optax", "polars", "sweepbook"):
        assert info["packages"][package], package
    assert info["device"]["backend"] == "cpu" and info["device"]["count"] >= 1
    assert info["python"].count(".") == 2


@pytest.mark.parametrize(
    ("device", "line"),
    [
        ({"backend": "cpu", "devices": ["cpu:0 cpu"], "count": 1}, "cpu (1 device)"),
        (
            {"backend": "cpu", "devices": [f"cpu:{i} cpu" for i in range(4)], "count": 4},
            "cpu (4 devices)",
        ),
        (
            {"backend": "gpu", "devices": [f"gpu:{i} NVIDIA H100 80GB" for i in range(4)]},
            "gpu: 4 × NVIDIA H100 80GB",
        ),
        (
            {"backend": "gpu", "devices": ["gpu:0 NVIDIA A100", "gpu:1 NVIDIA H100"]},
            "gpu: 1 × NVIDIA A100, 1 × NVIDIA H100",
        ),
    ],
)
def test_device_line_names_each_kind_once(device, line):
    """It once read 'cpu: cpu:0 cpu'."""
    assert provenance.describe_devices(device) == line
