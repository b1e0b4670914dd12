"""Users' own metrics: computed on the host from a run's predictions, ranked like built-ins.

A metric is a function ``(predictions, targets) -> float`` declared with its direction::

    import sweepbook

    @sweepbook.metric(direction="max", label="balanced accuracy")
    def balanced_accuracy(predictions, targets):
        ...

and named in an experiment by code reference (``metrics = ["user_code/metrics.py:
balanced_accuracy"]``). ``predictions`` are what the model's outputs mean for the task: class
probabilities ``[N, C]`` for classification, the outputs in the shape of the targets for
regression; ``targets`` are the loader's (class indices ``[N]``, or numbers ``[N]`` /
``[N, T]``). Every run stores ``test.<name>`` and ``val.<name>``; the direction travels with
the store (``sweep.json``), so a report ranks by it without importing the user's code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sweepbook.metrics import METRICS, MetricSpec
from sweepbook.registry import Registry

MetricFunction = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class HostMetric:
    """A user's metric: its column ``name`` (``test.<name>``), the function, and how it ranks."""

    name: str
    compute: MetricFunction
    direction: Literal["max", "min"]
    label: str

    def __call__(self, predictions: np.ndarray, targets: np.ndarray) -> float:
        return float(self.compute(predictions, targets))


# Users' metrics by the reference an experiment names them with.
HOST_METRICS: Registry[HostMetric] = Registry("metric function")


def metric(
    direction: Literal["max", "min"], *, name: str | None = None, label: str | None = None
) -> Callable[[MetricFunction], HostMetric]:
    """Declare a function ``(predictions, targets) -> float`` a metric: ``direction`` says
    whether higher ("max") or lower ("min") is better; ``name`` (default the function's) is its
    column, ``label`` (default the name with spaces) its name in reports."""
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")

    def declare(function: MetricFunction) -> HostMetric:
        shown = name or function.__name__
        return HostMetric(shown, function, direction, label or shown.replace("_", " "))

    return declare


def user_metric(found: Any) -> HostMetric:
    """A reference's object as a metric, its name registered in :data:`metrics.METRICS` with
    its direction (so configs may rank by it); refused when it would shadow a built-in."""
    if not isinstance(found, HostMetric):
        raise TypeError(
            "expected a function declared with @sweepbook.metric(direction='max' or 'min'), "
            f"got {type(found).__name__}"
        )
    if not found.name.isidentifier():
        raise ValueError(f"metric name {found.name!r} must be a Python identifier")
    if found.name in METRICS and found.name not in _USERS_NAMES:
        raise ValueError(f"metric name '{found.name}' is a built-in metric's; pick another name")
    METRICS.unregister(found.name)  # an edited version of the user's metric replaces the old
    METRICS.register(found.name, MetricSpec(found.direction, found.label))
    _USERS_NAMES.add(found.name)
    return found


# Names in METRICS that users' metrics registered (they may be replaced, built-ins may not).
_USERS_NAMES: set[str] = set()


def user_metrics_info(references: list[str]) -> dict[str, dict[str, str]]:
    """What a store records of the users' metrics a sweep computes (``sweep.json``
    ``metrics``): direction and label by column name, for reports that never import them."""
    found = (HOST_METRICS[reference] for reference in references)
    return {m.name: {"direction": m.direction, "label": m.label} for m in found}


def user_metric_values(
    metrics: list[HostMetric], predictions: np.ndarray, targets: np.ndarray
) -> dict[str, float]:
    """Each metric on one split's predictions. A metric that raises or returns something that
    is not a finite-or-NaN real number raises ValueError naming it (the chunk is then stored as
    failed, as for any error of a user's code during training)."""
    values = {}
    for host_metric in metrics:
        try:
            value = host_metric(predictions, targets)
        except Exception as error:
            detail = " ".join(f"{type(error).__name__}: {error}".split())
            raise ValueError(f"metric '{host_metric.name}' raised {detail}") from error
        if math.isinf(value):
            raise ValueError(f"metric '{host_metric.name}' returned {value}")
        values[host_metric.name] = value
    return values
