"""Evaluation: the streamed shape metric Φ, Φ and accuracy per class for any registered interpreter, and the
experiment runner. The shape metric loads light; the rest (torch) on first use."""

from importlib import import_module
from typing import Any

from ..errors import EvaluationError
from .shape import ShapeStats, angular_distance

_LAZY = {
    "ExperimentConfig": "config", "HeatmapConfig": "config", "run_experiment": "experiment",
    "class_accuracy": "protocol", "class_phi": "protocol", "phi_of_pairs": "protocol", "defined_mean": "protocol",
    "read_results": "results", "RESULT_COLUMNS": "results",
}

__all__ = ["EvaluationError", "ShapeStats", "angular_distance", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
