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


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (
            "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
            "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw\n",
            "Intel(R) Xeon(R) Platinum 8480+ (x86_64 AVX-512 FMA)",
        ),
        (
            "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
            "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx avx2 fma\n",
            "AMD EPYC (x86_64 AVX2 FMA)",
        ),
        ("processor\t: 0\nmodel name\t: Old\nflags\t\t: fpu sse4_2\n", "Old (x86_64 SSE4.2)"),
    ],
)
def test_cpu_names_the_vector_instructions_xla_compiles_for(monkeypatch, cpuinfo, expected):
    """Bits of a CPU run depend on them: an AVX-512 and an AVX2 machine round differently."""
    monkeypatch.setattr(provenance.platform, "machine", lambda: "x86_64")
    assert provenance.cpu_description(cpuinfo) == expected


def test_an_arm_cpu_without_a_model_name_is_its_architecture(monkeypatch):
    monkeypatch.setattr(provenance.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(provenance.platform, "processor", lambda: "")
    cpuinfo = "processor\t: 0\nFeatures\t: fp asimd evtstrm sve\nCPU part\t: 0xd40\n"
    assert provenance.cpu_description(cpuinfo) == "aarch64 SVE"
    assert provenance.cpu_description("") == "aarch64"


def test_a_cpu_runs_device_names_the_cpu_and_a_gpu_runs_its_gpu():
    cpu = {"backend": "cpu", "devices": ["cpu:0 cpu"], "count": 1, "cpu": "AMD EPYC (x86_64 AVX2)"}
    assert provenance.run_device(cpu) == "cpu:0 cpu AMD EPYC (x86_64 AVX2)"
    assert provenance.describe_devices(cpu) == "cpu (1 device); AMD EPYC (x86_64 AVX2)"
    gpu = {"backend": "gpu", "devices": ["gpu:0 NVIDIA H100"], "count": 1, "cpu": "AMD EPYC"}
    assert provenance.run_device(gpu) == "gpu:0 NVIDIA H100"
    assert provenance.describe_devices(gpu) == "gpu: 1 × NVIDIA H100"
    here = provenance.device_description()
    assert here["cpu"] == provenance.cpu_description()
