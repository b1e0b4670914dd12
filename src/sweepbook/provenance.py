"""How results were produced: code version, packages, device, input file hashes."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PACKAGES = (
    "sweepbook",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "polars",
    "scikit-learn",
    "matplotlib",
    "jinja2",
)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git(directory: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def git_state(directory: Path) -> dict[str, Any]:
    """Commit and dirty flag of the git work tree holding ``directory`` (None outside git)."""
    commit = _git(directory, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# x86 vector extensions from the widest down: XLA's CPU compiler vectorizes for the widest the
# machine has, so it decides the summation order of vectorized loops, hence a run's last bits.
_X86_VECTORS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"))
_ARM_VECTORS = (("sve", "SVE"), ("asimd", "NEON"))


def cpu_description(cpuinfo: str | None = None) -> str:
    """The CPU's model and the vector instructions XLA compiles for, e.g. ``AMD EPYC (x86_64
    AVX2 FMA)``. Bits of a CPU run are the same on CPUs of one kind, not on every CPU: an
    AVX-512 machine and an AVX2-only one round the same run differently. ``cpuinfo``: the text
    of ``/proc/cpuinfo`` (read when None; elsewhere than Linux only the architecture)."""
    machine = platform.machine() or "unknown architecture"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    vectors = [name for flag, name in (*_X86_VECTORS, *_ARM_VECTORS) if flag in flags][:1]
    if "fma" in flags:
        vectors.append("FMA")
    details = " ".join([machine, *vectors])
    model = fields.get("model name") or platform.processor()
    return f"{model} ({details})" if model and model != machine else details


def device_description() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
        "count": len(devices),
        "cpu": cpu_description(),
    }


def run_device(description: Mapping[str, Any]) -> str:
    """What a run's ``device`` column records of :func:`device_description`'s record: the
    first device, with the CPU after it on the CPU backend (its bits depend on the CPU)."""
    device = str(description["devices"][0])
    if description.get("backend") == "cpu" and description.get("cpu"):
        return f"{device} {description['cpu']}"
    return device


def describe_devices(device: dict[str, Any]) -> str:
    """One readable line for :func:`device_description`'s record: ``cpu (1 device); AMD EPYC
    (x86_64 AVX2 FMA)``, ``gpu: 4 × NVIDIA H100 80GB HBM3`` (devices of one kind counted
    together; the CPU where the CPU computes)."""
    line = _device_kinds(device)
    if device.get("backend") == "cpu" and device.get("cpu"):
        return f"{line}; {device['cpu']}"
    return line


def _device_kinds(device: dict[str, Any]) -> str:
    backend = str(device.get("backend", "?"))
    kinds: dict[str, int] = {}
    for entry in device.get("devices", []):
        kind = str(entry).partition(" ")[2] or str(entry)
        kinds[kind] = kinds.get(kind, 0) + 1
    if not kinds:
        return backend
    if set(kinds) == {backend}:
        count = kinds[backend]
        return f"{backend} ({count} device{'s' if count > 1 else ''})"
    return f"{backend}: " + ", ".join(f"{n} × {kind}" for kind, n in kinds.items())


def collect(
    sweep_path: Path,
    experiment_path: Path,
    command: list[str],
    user_code: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Everything needed to say how a sweep's results were produced, as JSON-able data.
    ``user_code``: ``{reference: (file, sha256)}`` of the users' code the sweep imported."""
    code = {
        f"code {reference}": {"path": file, "sha256": sha256}
        for reference, (file, sha256) in (user_code or {}).items()
    }
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "git": git_state(sweep_path.parent),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
        "packages": package_versions(),
        "device": device_description(),
        "files": {
            "sweep": {"path": str(sweep_path), "sha256": sha256_file(sweep_path)},
            "experiment": {"path": str(experiment_path), "sha256": sha256_file(experiment_path)},
            **code,
        },
    }
