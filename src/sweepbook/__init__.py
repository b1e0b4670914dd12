"""sweepbook: declarative sweeps in JAX, Parquet results, self-contained HTML reports.

The pipeline as library calls (see :mod:`sweepbook.api`): :func:`run_sweep`,
:func:`render_report`, :func:`verify_store`, and :func:`load_run` (a stored run's trained
model). They load on first use, so that ``import
sweepbook`` (and the command line's argument parsing) does not import JAX; for their types,
import them from :mod:`sweepbook.api`.
"""

import importlib

__version__ = "0.1.0"

__all__ = [
    "RunSummary",
    "VerifySummary",
    "__version__",
    "load_run",
    "metric",
    "render_report",
    "run_sweep",
    "verify_store",
]

# Where each lazily imported name lives (the API's, and the decorator of users' metrics).
_HOMES = {"metric": "sweepbook.tasks", "load_run": "sweepbook.load"}

# Not typing.TYPE_CHECKING: importing typing would take longer than this whole module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def __getattr__(name: str) -> "Any":
    """The API's names, imported on first use. By name through importlib, not an import
    statement: every module imports from this package, so a statement would read as a cycle."""
    if name in __all__:
        return getattr(importlib.import_module(_HOMES.get(name, "sweepbook.api")), name)
    raise AttributeError(f"module 'sweepbook' has no attribute {name!r}")
